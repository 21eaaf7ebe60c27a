//! The actions of a Go template parsed into a tree: output, variable declarations, `if`,
//! `range` and `with` (each with `else`, `else if`), and pipelines of fields, variables,
//! literals and functions. Anything else Go has is refused here, by name.

use super::lex::Piece;
use super::{Error, MAX_DEPTH};

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Text(String),
    /// `{{ pipeline }}`, or a declaration (`:=`) or assignment (`=`) when `vars` is set
    /// (prints nothing).
    Output {
        vars: Vec<String>,
        assign: bool,
        pipeline: Pipeline,
        line: usize,
    },
    /// `if`, `range` or `with`; `vars` are declared (or, with `assign`, assigned) from its
    /// pipeline as Go does: visible in the body and the `else`.
    Block {
        kind: BlockKind,
        vars: Vec<String>,
        assign: bool,
        pipeline: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
        line: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    If,
    Range,
    With,
}

/// Commands joined by `|`: each result is the last argument of the next command.
pub type Pipeline = Vec<Command>;

#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    pub operands: Vec<Operand>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// `.A.B` (empty: `.` itself).
    Field(Vec<String>),
    /// `$x.A.B`; `$` alone is named "$".
    Variable(String, Vec<String>),
    Function(String),
    Str(String),
    Int(i64),
    Bool(bool),
    Nil,
    /// `(pipeline).A.B`
    Group(Pipeline, Vec<String>),
}

const UNSUPPORTED: [&str; 5] = ["define", "template", "block", "break", "continue"];

/// Splits an action into words: strings stay whole, `(`, `)`, `|`, `,` stand alone.
fn words(action: &str, line: usize) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    let chars: Vec<char> = action.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if matches!(c, '(' | ')' | '|' | ',') {
            out.push(c.to_string());
            i += 1;
        } else if matches!(c, '"' | '`' | '\'') {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && c != '`' {
                    i += 1;
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err(Error::syntax(line, "unterminated quoted string"));
            }
            i += 1;
            out.push(chars[start..i].iter().collect());
        } else {
            let start = i;
            while i < chars.len()
                && !chars[i].is_whitespace()
                && !matches!(chars[i], '(' | ')' | '|' | ',')
            {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        }
    }
    Ok(out)
}

fn unquote(word: &str, line: usize) -> Result<String, Error> {
    if let Some(raw) = word.strip_prefix('`') {
        return Ok(raw.trim_end_matches('`').to_string());
    }
    if word.starts_with('\'') {
        return Err(Error::unsupported(
            line,
            "character constants ('x')",
            "use a \"string\"",
        ));
    }
    let body = &word[1..word.len() - 1];
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            other => {
                return Err(Error::unsupported(
                    line,
                    &format!(
                        "the escape \\{}",
                        other.map(String::from).unwrap_or_default()
                    ),
                    "write the character itself",
                ));
            }
        }
    }
    Ok(out)
}

/// `.A.B` → ["A", "B"]; `.` → [].
fn path(chain: &str) -> Vec<String> {
    chain
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

struct Words<'a> {
    words: &'a [String],
    at: usize,
    line: usize,
    depth: usize,
}

impl Words<'_> {
    fn peek(&self) -> Option<&str> {
        self.words.get(self.at).map(String::as_str)
    }

    fn pipeline(&mut self) -> Result<Pipeline, Error> {
        let mut commands = vec![self.command()?];
        while self.peek() == Some("|") {
            self.at += 1;
            commands.push(self.command()?);
        }
        Ok(commands)
    }

    fn command(&mut self) -> Result<Command, Error> {
        let mut operands = Vec::new();
        while let Some(word) = self.peek() {
            if word == "|" || word == ")" {
                break;
            }
            operands.push(self.operand()?);
        }
        if operands.is_empty() {
            return Err(Error::syntax(self.line, "missing command in a pipeline"));
        }
        Ok(Command { operands })
    }

    fn operand(&mut self) -> Result<Operand, Error> {
        let line = self.line;
        let word = self.words[self.at].clone();
        self.at += 1;
        Ok(match word.as_str() {
            "(" => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(Error::too_deep(line, "parentheses"));
                }
                let inner = self.pipeline()?;
                self.depth -= 1;
                if self.peek() != Some(")") {
                    return Err(Error::syntax(line, "unclosed '('"));
                }
                self.at += 1;
                // `(pipeline).Field` comes as the word `.Field` right after `)`.
                let fields = match self.peek().filter(|w| w.starts_with('.')).map(path) {
                    Some(fields) => {
                        self.at += 1;
                        fields
                    }
                    None => Vec::new(),
                };
                Operand::Group(inner, fields)
            }
            "true" => Operand::Bool(true),
            "false" => Operand::Bool(false),
            "nil" => Operand::Nil,
            w if w.starts_with('.') => Operand::Field(path(w)),
            w if w.starts_with('$') => {
                let (name, fields) = w.split_once('.').map_or((w, ""), |(n, f)| (n, f));
                Operand::Variable(name.to_string(), path(fields))
            }
            w if w.starts_with(['"', '`', '\'']) => Operand::Str(unquote(w, line)?),
            w if w.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+') => {
                Operand::Int(w.parse().map_err(|_| {
                    Error::unsupported(line, &format!("the number {w}"), "use a whole number")
                })?)
            }
            w if w.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                Operand::Function(w.to_string())
            }
            w => return Err(Error::syntax(line, &format!("unexpected {w:?}"))),
        })
    }
}

/// `$a := ...`, `$a = ...` (or, in a `range`, `$i, $e := ...` and `$i, $e = ...`) at the start
/// of `words`: the names, whether it assigns (`=`) rather than declares, and where the
/// pipeline starts. `context` is the block's keyword, or "command".
fn declaration(
    words: &[String],
    context: &str,
    line: usize,
) -> Result<(Vec<String>, bool, usize), Error> {
    let is_var = |w: &String| w.starts_with('$') && !w.contains('.');
    let is_op = |w: &String| w == ":=" || w == "=";
    Ok(match words {
        [a, op, ..] if is_var(a) && is_op(op) => (vec![a.clone()], op == "=", 2),
        [a, comma, b, op, ..] if is_var(a) && comma == "," && is_var(b) && is_op(op) => {
            if context != "range" {
                return Err(Error::syntax(
                    line,
                    &format!("too many declarations in {context}"),
                ));
            }
            (vec![a.clone(), b.clone()], op == "=", 4)
        }
        _ => (Vec::new(), false, 0),
    })
}

fn pipeline_of(words: &[String], line: usize) -> Result<Pipeline, Error> {
    let mut w = Words {
        words,
        at: 0,
        line,
        depth: 0,
    };
    let pipeline = w.pipeline()?;
    if let Some(extra) = w.peek() {
        return Err(Error::syntax(line, &format!("unexpected {extra:?}")));
    }
    Ok(pipeline)
}

/// Where a list of nodes stopped: the end of the input, `{{end}}`, or `{{else ...}}` (its
/// words after `else`).
enum Stop {
    Eof,
    End,
    Else(Vec<String>, usize),
}

struct Parser {
    pieces: std::vec::IntoIter<Piece>,
    /// Blocks open around the one being parsed.
    depth: usize,
}

impl Parser {
    fn list(&mut self) -> Result<(Vec<Node>, Stop), Error> {
        let mut nodes = Vec::new();
        while let Some(piece) = self.pieces.next() {
            let (action, line) = match piece {
                Piece::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Piece::Action(a, line) => (a, line),
            };
            let words = words(&action, line)?;
            let Some(first) = words.first().map(String::as_str) else {
                return Err(Error::syntax(line, "empty action"));
            };
            match first {
                "end" if words.len() == 1 => return Ok((nodes, Stop::End)),
                "else" => return Ok((nodes, Stop::Else(words[1..].to_vec(), line))),
                "if" | "range" | "with" => nodes.push(self.block(first, &words[1..], line)?),
                w if UNSUPPORTED.contains(&w) => {
                    return Err(Error::unsupported(
                        line,
                        &format!("{{{{{w}}}}}"),
                        "sip renders one template without sub-templates or loop control; inline it, or write the template in Jinja",
                    ));
                }
                _ => {
                    let (vars, assign, at) = declaration(&words, "command", line)?;
                    nodes.push(Node::Output {
                        vars,
                        assign,
                        pipeline: pipeline_of(&words[at..], line)?,
                        line,
                    });
                }
            }
        }
        Ok((nodes, Stop::Eof))
    }

    fn block(&mut self, keyword: &str, words: &[String], line: usize) -> Result<Node, Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::too_deep(line, "blocks"));
        }
        let node = self.block_within(keyword, words, line);
        self.depth -= 1;
        node
    }

    fn block_within(
        &mut self,
        keyword: &str,
        words: &[String],
        line: usize,
    ) -> Result<Node, Error> {
        let kind = match keyword {
            "if" => BlockKind::If,
            "range" => BlockKind::Range,
            _ => BlockKind::With,
        };
        let (vars, assign, at) = declaration(words, keyword, line)?;
        let pipeline = pipeline_of(&words[at..], line)?;
        let (body, stop) = self.list()?;
        let otherwise = match stop {
            Stop::End => Vec::new(),
            Stop::Eof => {
                return Err(Error::syntax(
                    line,
                    &format!("{keyword} without {{{{end}}}}"),
                ));
            }
            Stop::Else(rest, else_line) if rest.is_empty() => {
                let (otherwise, stop) = self.list()?;
                if !matches!(stop, Stop::End) {
                    return Err(Error::syntax(else_line, "else without {{end}}"));
                }
                otherwise
            }
            // `else if ...` / `else with ...`: a nested block sharing this one's `end`.
            Stop::Else(rest, else_line) if matches!(rest[0].as_str(), "if" | "with") => {
                vec![self.block(&rest[0].clone(), &rest[1..], else_line)?]
            }
            Stop::Else(rest, else_line) => {
                return Err(Error::syntax(
                    else_line,
                    &format!("unexpected else {}", rest[0]),
                ));
            }
        };
        Ok(Node::Block {
            kind,
            vars,
            assign,
            pipeline,
            body,
            otherwise,
            line,
        })
    }
}

pub fn parse(pieces: Vec<Piece>) -> Result<Vec<Node>, Error> {
    let mut parser = Parser {
        pieces: pieces.into_iter(),
        depth: 0,
    };
    match parser.list()? {
        (nodes, Stop::Eof) => Ok(nodes),
        (_, Stop::End) => Err(Error::syntax(0, "{{end}} without a block to end")),
        (_, Stop::Else(_, line)) => Err(Error::syntax(line, "{{else}} outside a block")),
    }
}

#[cfg(test)]
mod tests;
