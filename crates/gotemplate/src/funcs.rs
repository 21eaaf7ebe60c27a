//! The functions of Go's templates that a configuration template uses: logic, comparison,
//! `len`, `index` and the `print` family (`%s`, `%d`, `%v`, `%q` and `%%`). Others are refused
//! by name.

use super::{Error, Value};

fn arity(name: &str, args: &[Value], n: usize, line: usize) -> Result<(), Error> {
    if args.len() == n {
        Ok(())
    } else {
        Err(Error::run(
            line,
            &format!("{name} takes {n} arguments, got {}", args.len()),
        ))
    }
}

fn compare(name: &str, a: &Value, b: &Value, line: usize) -> Result<std::cmp::Ordering, Error> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        _ => Err(Error::run(
            line,
            &format!("{name}: incompatible types for comparison ({a} and {b})"),
        )),
    }
}

fn printf(args: &[Value], line: usize) -> Result<String, Error> {
    let Some((Value::Str(format), rest)) = args.split_first() else {
        return Err(Error::run(line, "printf needs a format string first"));
    };
    let mut out = String::new();
    let mut rest = rest.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let verb = chars.next();
        if verb == Some('%') {
            out.push('%');
            continue;
        }
        let arg = rest.next();
        match (verb, arg) {
            (Some('s' | 'v' | 'd'), Some(a)) => out.push_str(&a.to_string()),
            (Some('q'), Some(Value::Str(s))) => out.push_str(&format!("{s:?}")),
            (Some(v @ ('s' | 'v' | 'd' | 'q')), None) => out.push_str(&format!("%!{v}(MISSING)")),
            (v, _) => {
                return Err(Error::unsupported(
                    line,
                    &format!(
                        "the printf verb %{}",
                        v.map(String::from).unwrap_or_default()
                    ),
                    "use %s, %d, %v or %q",
                ));
            }
        }
    }
    Ok(out)
}

/// Go's `print`: a space between operands when neither side is a string.
fn print(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let string = |v: &Value| matches!(v, Value::Str(_));
        if i > 0 && !string(a) && !string(&args[i - 1]) {
            out.push(' ');
        }
        out.push_str(&a.to_string());
    }
    out
}

pub fn call(name: &str, args: &[Value], line: usize) -> Result<Value, Error> {
    use std::cmp::Ordering::*;
    Ok(match name {
        // The first false argument (`and`) or true one (`or`), else the last.
        "and" | "or" => {
            let Some(last) = args.last() else {
                return Err(Error::run(
                    line,
                    &format!("{name} takes at least 1 argument"),
                ));
            };
            let stops_at = name == "or";
            args.iter()
                .find(|a| a.truth() == stops_at)
                .unwrap_or(last)
                .clone()
        }
        "not" => {
            arity(name, args, 1, line)?;
            Value::Bool(!args[0].truth())
        }
        "eq" => {
            if args.len() < 2 {
                return Err(Error::run(line, "eq takes at least 2 arguments"));
            }
            Value::Bool(args[1..].iter().any(|b| b == &args[0]))
        }
        "ne" => {
            arity(name, args, 2, line)?;
            Value::Bool(args[0] != args[1])
        }
        "lt" | "le" | "gt" | "ge" => {
            arity(name, args, 2, line)?;
            let order = compare(name, &args[0], &args[1], line)?;
            Value::Bool(match name {
                "lt" => order == Less,
                "le" => order != Greater,
                "gt" => order == Greater,
                _ => order != Less,
            })
        }
        "len" => {
            arity(name, args, 1, line)?;
            Value::Int(match &args[0] {
                Value::Str(s) => s.len() as i64,
                Value::List(l) => l.len() as i64,
                other => return Err(Error::run(line, &format!("len of {other}"))),
            })
        }
        "index" => {
            let Some((mut item, keys)) = args.split_first().map(|(a, k)| (a.clone(), k)) else {
                return Err(Error::run(line, "index takes at least 1 argument"));
            };
            for key in keys {
                item = match (&item, key) {
                    (Value::List(l), Value::Int(i)) if *i >= 0 && (*i as usize) < l.len() => {
                        l[*i as usize].clone()
                    }
                    _ => {
                        return Err(Error::run(
                            line,
                            &format!("index of {key} out of range or not a list"),
                        ));
                    }
                };
            }
            item
        }
        "print" => Value::Str(print(args)),
        "println" => Value::Str(
            args.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
                + "\n",
        ),
        "printf" => Value::Str(printf(args, line)?),
        other => {
            return Err(Error::unsupported(
                line,
                &format!("the function {other}"),
                "sip's Go templates know and, or, not, eq, ne, lt, le, gt, ge, len, index, print, printf and println; write the template in Jinja for more",
            ));
        }
    })
}
