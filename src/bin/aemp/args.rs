//! The reference's argument rule: exactly one argument starting with `[`
//! replaces the whole argument list with the decoded array; otherwise
//! every argument starting with `[`, `{` or `"` is decoded as JSON, and
//! everything else stays a string (`5`, `true` included).

use std::collections::VecDeque;

use serde_json::Value;

use crate::error::{CliError, CliResult};

/// Decodes the command line.
pub fn decode(raw: Vec<String>) -> CliResult<VecDeque<Value>> {
    if let [only] = raw.as_slice()
        && only.starts_with('[')
    {
        return match serde_json::from_str::<Value>(only) {
            Ok(Value::Array(a)) => Ok(a.into()),
            Ok(_) => Err(CliError::ArgsNotAnArray),
            Err(source) => Err(CliError::ArgJson { number: 1, source }),
        };
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, a)| {
            if a.starts_with(['[', '{', '"']) {
                serde_json::from_str(&a).map_err(|source| CliError::ArgJson {
                    number: i + 1,
                    source,
                })
            } else {
                Ok(Value::String(a))
            }
        })
        .collect()
}

/// A value as Perl's string interpolation shows it: strings as they are,
/// numbers as numbers, true as `1`, false as `0`, undef as nothing.
pub fn perl_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(true) => "1".into(),
        Value::Bool(false) => "0".into(),
        other => other.to_string(),
    }
}

/// Takes the next argument as text, or fails with `what … missing`.
pub fn next_text(args: &mut VecDeque<Value>, what: &str) -> CliResult<String> {
    next(args, what).map(|v| perl_text(&v))
}

/// Takes the next argument, or fails with `what … missing`.
pub fn next(args: &mut VecDeque<Value>, what: &str) -> CliResult<Value> {
    args.pop_front()
        .ok_or_else(|| CliError::Missing(what.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(a: &[&str]) -> Vec<Value> {
        decode(a.iter().map(|s| s.to_string()).collect())
            .unwrap()
            .into()
    }

    #[test]
    fn the_reference_rule() {
        assert_eq!(
            d(&["setbinds", "a,b"]),
            vec![json!("setbinds"), json!("a,b")]
        );
        assert_eq!(
            d(&["binds", "[\"*:4040\"]"]),
            vec![json!("binds"), json!(["*:4040"])]
        );
        assert_eq!(
            d(&["x", "\"quoted\"", "{\"a\":1}", "5", "true"]),
            vec![
                json!("x"),
                json!("quoted"),
                json!({"a": 1}),
                json!("5"),
                json!("true")
            ]
        );
        // one argument starting with [ replaces the list
        assert_eq!(
            d(&["[\"snd\",\"n#p\",1]"]),
            vec![json!("snd"), json!("n#p"), json!(1)]
        );
        assert!(decode(vec!["x".into(), "[1,".into()]).is_err());
        assert_eq!(perl_text(&json!(1.5)), "1.5");
        assert_eq!(perl_text(&json!(null)), "");
    }
}
