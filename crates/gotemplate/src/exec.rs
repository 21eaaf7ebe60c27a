//! Runs a parsed Go template over a [`Value`], as Go's `html/template` ran the predecessor's
//! templates: every action's output HTML-escaped, `if` and `with` by Go's truth, variables
//! scoped to their block, `$` the data.

use super::parse::{BlockKind, Command, Node, Operand, Pipeline};
use super::{Error, Value};

/// Bounds the output: a runaway template is an error, not a memory hog.
const MAX_OUTPUT: usize = 4 << 20;
/// Bounds the work: every node run and every range iteration is a step. Nested ranges that
/// write nothing would otherwise run unbounded on the operator's thread (ten ranges over ten
/// ports are 10^10 iterations); a load balancer's template takes a few thousand.
pub const MAX_STEPS: u64 = 1_000_000;

/// What `html/template` does to an action's output in text context.
fn escape_html(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\0' => out.push('\u{FFFD}'),
            '"' => out.push_str("&#34;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '+' => out.push_str("&#43;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

pub struct Exec {
    vars: Vec<(String, Value)>,
    pub out: String,
    steps: u64,
}

impl Exec {
    pub fn new(root: &Value) -> Self {
        Exec {
            vars: vec![("$".into(), root.clone())],
            out: String::new(),
            steps: 0,
        }
    }

    fn step(&mut self, line: usize) -> Result<(), Error> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(Error::run(
                line,
                &format!("the template takes more than {MAX_STEPS} steps; simplify its loops"),
            ));
        }
        Ok(())
    }

    pub fn run(&mut self, nodes: &[Node], dot: &Value) -> Result<(), Error> {
        for node in nodes {
            self.step(0)?;
            match node {
                Node::Text(t) => self.out.push_str(t),
                Node::Output {
                    vars,
                    assign,
                    pipeline,
                    line,
                } => {
                    let value = self.pipeline(pipeline, dot, *line)?;
                    if vars.is_empty() {
                        escape_html(&value.to_string(), &mut self.out);
                    }
                    self.bind(vars, *assign, &value, *line)?;
                }
                Node::Block {
                    kind,
                    vars,
                    assign,
                    pipeline,
                    body,
                    otherwise,
                    line,
                } => {
                    let mark = self.vars.len();
                    let value = self.pipeline(pipeline, dot, *line)?;
                    // As Go: the variables hold the pipeline's value (a range's, the list
                    // itself, which its `else` sees) before the block runs.
                    let result = self
                        .bind(vars, *assign, &value, *line)
                        .and_then(|()| self.block(*kind, vars, value, body, otherwise, dot, *line));
                    self.vars.truncate(mark);
                    result?;
                }
            }
            if self.out.len() > MAX_OUTPUT {
                return Err(Error::run(0, "the output passed 4 MiB"));
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        &mut self,
        kind: BlockKind,
        vars: &[String],
        value: Value,
        body: &[Node],
        otherwise: &[Node],
        dot: &Value,
        line: usize,
    ) -> Result<(), Error> {
        match kind {
            BlockKind::If if value.truth() => self.run(body, dot),
            BlockKind::With if value.truth() => self.run(body, &value),
            BlockKind::If | BlockKind::With => self.run(otherwise, dot),
            BlockKind::Range => {
                let items = match value {
                    Value::List(items) => items,
                    Value::Nil => Vec::new(),
                    other => {
                        return Err(Error::run(
                            line,
                            &format!("range can't iterate over {other}"),
                        ));
                    }
                };
                if items.is_empty() {
                    return self.run(otherwise, dot);
                }
                // The block's variables are bound already (declared just below this mark, or
                // assigned further out): each iteration sets them, as Go's range does.
                let mark = self.vars.len();
                for (i, item) in items.iter().enumerate() {
                    self.step(line)?;
                    self.vars.truncate(mark);
                    match vars {
                        [element] => self.assign(element, item.clone(), line)?,
                        [index, element] => {
                            self.assign(index, Value::Int(i as i64), line)?;
                            self.assign(element, item.clone(), line)?;
                        }
                        _ => {}
                    }
                    self.run(body, item)?;
                }
                Ok(())
            }
        }
    }

    /// `:=` pushes each variable, `=` sets the innermost of each name.
    fn bind(
        &mut self,
        vars: &[String],
        assign: bool,
        value: &Value,
        line: usize,
    ) -> Result<(), Error> {
        for name in vars {
            if assign {
                self.assign(name, value.clone(), line)?;
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(())
    }

    /// `=`: the innermost variable of that name takes the value, even from an inner block.
    fn assign(&mut self, name: &str, value: Value, line: usize) -> Result<(), Error> {
        let slot = self
            .vars
            .iter_mut()
            .rev()
            .find(|(n, _)| n == name)
            .ok_or_else(|| Error::run(line, &format!("undefined variable {name}")))?;
        slot.1 = value;
        Ok(())
    }

    fn variable(&self, name: &str, line: usize) -> Result<Value, Error> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| Error::run(line, &format!("undefined variable {name}")))
    }

    fn pipeline(&mut self, pipeline: &Pipeline, dot: &Value, line: usize) -> Result<Value, Error> {
        let mut last: Option<Value> = None;
        for command in pipeline {
            last = Some(self.command(command, dot, last, line)?);
        }
        Ok(last.unwrap_or(Value::Nil))
    }

    fn command(
        &mut self,
        command: &Command,
        dot: &Value,
        piped: Option<Value>,
        line: usize,
    ) -> Result<Value, Error> {
        let (head, rest) = command
            .operands
            .split_first()
            .ok_or_else(|| Error::syntax(line, "empty command"))?;
        if let Operand::Function(name) = head
            && matches!(name.as_str(), "and" | "or")
            && piped.is_none()
        {
            // Go evaluates them lazily: `and (len .S) (index .S 0)` stops at an empty list.
            if rest.is_empty() {
                return super::funcs::call(name, &[], line);
            }
            let mut last = Value::Nil;
            for operand in rest {
                last = self.operand(operand, dot, line)?;
                if last.truth() == (name == "or") {
                    break;
                }
            }
            return Ok(last);
        }
        if let Operand::Function(name) = head {
            let mut args = rest
                .iter()
                .map(|o| self.operand(o, dot, line))
                .collect::<Result<Vec<_>, _>>()?;
            args.extend(piped);
            return super::funcs::call(name, &args, line);
        }
        if !rest.is_empty() || piped.is_some() {
            return Err(Error::run(
                line,
                "only a function takes arguments (methods are not supported)",
            ));
        }
        self.operand(head, dot, line)
    }

    fn operand(&mut self, operand: &Operand, dot: &Value, line: usize) -> Result<Value, Error> {
        match operand {
            Operand::Field(path) => dot.field(path, line),
            Operand::Variable(name, path) => self.variable(name, line)?.field(path, line),
            Operand::Group(pipeline, path) => self.pipeline(pipeline, dot, line)?.field(path, line),
            Operand::Function(name) => super::funcs::call(name, &[], line),
            Operand::Str(s) => Ok(Value::Str(s.clone())),
            Operand::Int(i) => Ok(Value::Int(*i)),
            Operand::Bool(b) => Ok(Value::Bool(*b)),
            Operand::Nil => Ok(Value::Nil),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{lex, load_balancer_model, parse};

    fn run(text: &str, data: &Value) -> Result<String, Error> {
        let mut exec = Exec::new(data);
        exec.run(&parse::parse(lex::pieces(text)?)?, data)?;
        Ok(exec.out)
    }

    /// Both limits are inclusive: a template that takes exactly `MAX_STEPS` steps (a node run
    /// or a range iteration each) or writes exactly `MAX_OUTPUT` bytes renders; one more fails.
    #[test]
    fn the_limits_allow_exactly_their_bound() {
        let model = |n: usize| {
            let ports: Vec<_> = (0..n).map(|p| (format!("p{p}"), 1)).collect();
            let servers: Vec<_> = (0..n).map(|s| (format!("s{s}"), String::new())).collect();
            load_balancer_model(&ports, &servers)
        };
        // 1 (the outer range) + 999 * (1 iteration + 1 inner range + 999 iterations).
        let nested = "{{ range .Servers }}{{ range $.ContainerPorts }}{{ end }}{{ end }}";
        assert_eq!(1 + 999 * (2 + 999), MAX_STEPS);
        let data = model(999);
        assert_eq!(run(nested, &data), Ok(String::new()));
        let error = run(&format!("{nested}{{{{ \"\" }}}}"), &data).unwrap_err();
        assert!(error.message.contains("more than 1000000 steps"), "{error}");

        let empty = model(0);
        let text = "x".repeat(MAX_OUTPUT);
        assert_eq!(run(&text, &empty).map(|o| o.len()), Ok(MAX_OUTPUT));
        let error = run(&format!("{text}x"), &empty).unwrap_err();
        assert!(error.message.contains("passed 4 MiB"), "{error}");
    }

    #[test]
    fn html_escaping_is_html_templates() {
        let mut out = String::new();
        escape_html("a<b>&'\"+\0", &mut out);
        assert_eq!(out, "a&lt;b&gt;&amp;&#39;&#34;&#43;\u{FFFD}");
    }
}
