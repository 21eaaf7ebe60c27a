//! Cuts a Go template into text and actions, applying the trim markers (`{{- ` and ` -}}`
//! remove the white space next to them) and dropping comments (`{{/* ... */}}`).

use super::Error;

#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    Text(String),
    /// What stands between `{{` and `}}`, trim markers removed; with the line it starts on.
    Action(String, usize),
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// The end of the action starting at `from` (just after `{{`): the index of its `}}`,
/// skipping quoted strings, which may hold braces.
fn action_end(text: &str, from: usize, line: usize) -> Result<usize, Error> {
    let bytes = text.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'`' | b'\'' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    if bytes[i] == b'\\' && quote != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= bytes.len() {
                    return Err(Error::syntax(
                        line,
                        "unterminated quoted string in an action",
                    ));
                }
                i += 1;
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Ok(i),
            _ => i += 1,
        }
    }
    Err(Error::syntax(line, "unclosed action: '{{' without '}}'"))
}

pub fn pieces(text: &str) -> Result<Vec<Piece>, Error> {
    let mut out: Vec<Piece> = Vec::new();
    let mut rest = 0;
    let mut trim_next = false;
    // Lines counted as the scan moves on, not from the start for every action: a large
    // template costs its length, not its length squared.
    let (mut counted, mut lines) = (0, 1);
    let mut line_at = |i: usize| {
        lines += text[counted..i].matches('\n').count();
        counted = i;
        lines
    };
    while let Some(open) = text[rest..].find("{{").map(|i| rest + i) {
        let mut literal = &text[rest..open];
        if trim_next {
            literal = literal.trim_start_matches(is_space);
        }
        let line = line_at(open);
        let mut start = open + 2;
        // `{{-` trims only when white space follows it: `{{-3}}` is the number -3.
        let trim_before = text[start..].starts_with('-') && text[start + 1..].starts_with(is_space);
        if trim_before {
            literal = literal.trim_end_matches(is_space);
            start += 1;
        }
        if !literal.is_empty() {
            out.push(Piece::Text(literal.to_string()));
        }
        let end = if text[start..].trim_start_matches(is_space).starts_with("/*") {
            let close = text[start..]
                .find("*/")
                .map(|i| start + i + 2)
                .ok_or_else(|| Error::syntax(line, "unclosed comment"))?;
            let after = text[close..].trim_start_matches(is_space);
            if !(after.starts_with("}}") || after.starts_with("-}}")) {
                return Err(Error::syntax(line, "a comment must end its action: */}}"));
            }
            close + text[close..].find("}}").unwrap_or(0)
        } else {
            action_end(text, start, line)?
        };
        let mut inner = &text[start..end];
        // ` -}}` trims what follows; the dash must follow white space.
        trim_next = inner.ends_with('-') && inner[..inner.len() - 1].ends_with(is_space);
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        let inner = inner.trim_matches(is_space);
        if !inner.starts_with("/*") {
            out.push(Piece::Action(inner.to_string(), line));
        }
        rest = end + 2;
    }
    let mut literal = &text[rest..];
    if trim_next {
        literal = literal.trim_start_matches(is_space);
    }
    if !literal.is_empty() {
        out.push(Piece::Text(literal.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Piece {
        Piece::Text(s.into())
    }

    fn action(s: &str, line: usize) -> Piece {
        Piece::Action(s.into(), line)
    }

    #[test]
    fn trim_markers_remove_the_white_space_beside_them() {
        let cases: [(&str, Vec<Piece>, &str); 5] = [
            (
                "a {{ .X }} b",
                vec![text("a "), action(".X", 1), text(" b")],
                "plain",
            ),
            (
                "a \n{{- .X -}}\n b",
                vec![text("a"), action(".X", 2), text("b")],
                "both",
            ),
            (
                "a {{-3}}",
                vec![text("a "), action("-3", 1)],
                "a negative number",
            ),
            (
                "a {{/* note */}} b",
                vec![text("a "), text(" b")],
                "a comment",
            ),
            (
                "{{ \"}}\" }}x",
                vec![action("\"}}\"", 1), text("x")],
                "braces in a string",
            ),
        ];
        for (input, want, msg) in cases {
            assert_eq!(pieces(input).unwrap(), want, "{msg}");
        }
    }

    #[test]
    fn unclosed_actions_and_comments_are_errors_with_their_line() {
        for (input, needle) in [
            ("a\nb {{ .X", "line 2: Go template syntax: unclosed action"),
            ("{{/* x", "line 1: Go template syntax: unclosed comment"),
            ("{{ \"x }}", "unterminated quoted string"),
        ] {
            let err = pieces(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }
}
