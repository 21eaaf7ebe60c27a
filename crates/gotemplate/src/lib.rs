//! Go templates, as the predecessor (airshipit/sip) rendered its load balancers' template
//! ConfigMaps: `html/template` over `{ContainerPorts, Servers}`. sip's own templates are Jinja;
//! this renders a template written for the predecessor to the same text it rendered there, so
//! its users keep their ConfigMaps. What Go has beyond a configuration template's needs
//! (sub-templates, loop control, methods, most functions, HTML markup, whose escaping
//! depends on where it stands) is refused with an error that names the construct and how to
//! convert it.

mod exec;
mod funcs;
mod lex;
mod parse;

use std::fmt;

/// A value a template sees: Go's structs are lists of named fields, in declaration order
/// (Go prints them so).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<Value>),
    Struct(&'static str, Vec<(&'static str, Value)>),
    Nil,
}

impl Value {
    /// Go's truth: false, 0, nil and empty strings and lists are false; structs are true.
    fn truth(&self) -> bool {
        match self {
            Value::Str(s) => !s.is_empty(),
            Value::Int(i) => *i != 0,
            Value::Bool(b) => *b,
            Value::List(l) => !l.is_empty(),
            Value::Struct(..) => true,
            Value::Nil => false,
        }
    }

    fn field(&self, path: &[String], line: usize) -> Result<Value, Error> {
        let mut value = self.clone();
        for name in path {
            value = match &value {
                Value::Struct(type_name, fields) => fields
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| {
                        Error::run(
                            line,
                            &format!("can't evaluate field {name} in type {type_name}"),
                        )
                    })?,
                other => {
                    return Err(Error::run(
                        line,
                        &format!("can't evaluate field {name} in {other}"),
                    ));
                }
            };
        }
        Ok(value)
    }
}

/// Go's `%v`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join =
            |f: &mut fmt::Formatter<'_>, items: &mut dyn Iterator<Item = &Value>| -> fmt::Result {
                for (i, item) in items.enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{item}")?;
                }
                Ok(())
            };
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Nil => f.write_str("<no value>"),
            Value::List(items) => {
                f.write_str("[")?;
                join(f, &mut items.iter())?;
                f.write_str("]")
            }
            Value::Struct(_, fields) => {
                f.write_str("{")?;
                join(f, &mut fields.iter().map(|(_, v)| v))?;
                f.write_str("}")
            }
        }
    }
}

/// How deep blocks (`if`, `range`, `with`, and each `else if`) and parenthesised groups may
/// nest. Parsing and running recurse once a level, on the operator's one thread: a template
/// nested deeper is refused, never a stack overflow that would stop the operator for everyone.
pub const MAX_DEPTH: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub line: usize,
    pub message: String,
}

impl Error {
    fn syntax(line: usize, what: &str) -> Self {
        Error {
            line,
            message: format!("Go template syntax: {what}"),
        }
    }

    fn unsupported(line: usize, construct: &str, how: &str) -> Self {
        Error {
            line,
            message: format!("{construct} is not supported in Go templates here: {how}"),
        }
    }

    fn too_deep(line: usize, what: &str) -> Self {
        Error::unsupported(
            line,
            &format!("{what} nested more than {MAX_DEPTH} deep"),
            "flatten the template",
        )
    }

    fn run(line: usize, what: &str) -> Self {
        Error {
            line,
            message: what.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => f.write_str(&self.message),
            n => write!(f, "line {n}: {}", self.message),
        }
    }
}

/// The predecessor's data model: `{ContainerPorts: [corev1.ContainerPort], Servers: [{IP,
/// Name}]}`; `ports` are `(name, port)`, `servers` `(host name, IP)`.
pub fn load_balancer_model(ports: &[(String, u16)], servers: &[(String, String)]) -> Value {
    let ports = ports
        .iter()
        .map(|(name, port)| {
            Value::Struct(
                "v1.ContainerPort",
                vec![
                    ("Name", Value::Str(name.clone())),
                    ("HostPort", Value::Int(0)),
                    ("ContainerPort", Value::Int(i64::from(*port))),
                    ("Protocol", Value::Str(String::new())),
                    ("HostIP", Value::Str(String::new())),
                ],
            )
        })
        .collect();
    let servers = servers
        .iter()
        .map(|(name, ip)| {
            Value::Struct(
                "services.server",
                vec![
                    ("IP", Value::Str(ip.clone())),
                    ("Name", Value::Str(name.clone())),
                ],
            )
        })
        .collect();
    Value::Struct(
        "services.proxy",
        vec![
            ("ContainerPorts", Value::List(ports)),
            ("Servers", Value::List(servers)),
        ],
    )
}

/// Whether `text` is written for Go's templates rather than Jinja: it has no Jinja block
/// (`{%`) and one of its actions reads a field or variable (`.X`, `$x`) or opens a Go block.
pub fn looks_like_go(text: &str) -> bool {
    if text.contains("{%") {
        return false;
    }
    let Ok(pieces) = lex::pieces(text) else {
        return false;
    };
    pieces.iter().any(|p| match p {
        lex::Piece::Action(a, _) => {
            a.starts_with(['.', '$'])
                || ["range ", "if ", "with ", "end", "else"]
                    .iter()
                    .any(|k| a.starts_with(k))
        }
        lex::Piece::Text(_) => false,
    })
}

/// Renders `text` with `data` as the predecessor's `html/template` did.
pub fn render(text: &str, data: &Value) -> Result<String, Error> {
    // html/template changes its escaping inside tags, attributes and scripts, and strips
    // HTML comments: none of that belongs in a configuration file, and none is emulated.
    if let Some(at) = markup(text) {
        return Err(Error::unsupported(
            text[..at].matches('\n').count() + 1,
            "HTML markup ('<' before a letter, '/' or '!')",
            "the predecessor's html/template escaped values inside markup differently; write this template in Jinja",
        ));
    }
    let tree = parse::parse(lex::pieces(text)?)?;
    let mut exec = exec::Exec::new(data);
    exec.run(&tree, data)?;
    Ok(exec.out)
}

/// Where the template text (outside actions) opens HTML markup, if it does.
fn markup(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(1)).find(|&i| {
        bytes[i] == b'<'
            && (bytes[i + 1].is_ascii_alphabetic() || matches!(bytes[i + 1], b'/' | b'!'))
    })
}

#[cfg(test)]
mod tests;
