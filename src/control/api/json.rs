//! Config pieces written as JSON, for the control API's answers. A handful of lines instead of
//! serde_json: the document is already a `yaml_serde::Value`, and bodies are read by the YAML
//! parser (JSON is YAML's flow style), so JSON needs only this writer.

use std::fmt::Write;
use yaml_serde::Value;

/// Appends `v` as JSON. YAML has more than JSON: a key that is not a string is written as its
/// scalar text, a tag is dropped (its value kept), and a float that JSON cannot say
/// (`.inf`, `.nan`) is `null`.
pub fn write(o: &mut String, v: &Value) {
    match v {
        Value::Null => o.push_str("null"),
        Value::Bool(b) => {
            let _ = write!(o, "{b}");
        }
        Value::Number(n) if n.is_f64() && !n.is_finite() => o.push_str("null"),
        Value::Number(n) => {
            let _ = write!(o, "{n}");
        }
        Value::String(s) => string(o, s),
        Value::Sequence(items) => {
            o.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                write(o, item);
            }
            o.push(']');
        }
        Value::Mapping(m) => {
            o.push('{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                match k {
                    Value::String(s) => string(o, s),
                    other => {
                        let mut key = String::new();
                        write(&mut key, other);
                        string(o, key.trim_matches('"'));
                    }
                }
                o.push(':');
                write(o, v);
            }
            o.push('}');
        }
        Value::Tagged(t) => write(o, &t.value),
    }
}

fn string(o: &mut String, s: &str) {
    o.push('"');
    o.push_str(&crate::metrics::json(s));
    o.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(yaml: &str) -> String {
        let mut o = String::new();
        write(&mut o, &yaml_serde::from_str(yaml).unwrap());
        o
    }

    #[test]
    fn yaml_comes_out_as_json() {
        assert_eq!(
            json("a: [1, -2, 1.5, true, null, 'x\"\\y']\n3: .inf\nb: {c: \"\\t\"}\n"),
            r#"{"a":[1,-2,1.5,true,null,"x\"\\y"],"3":null,"b":{"c":"\u0009"}}"#
        );
    }

    #[test]
    fn json_goes_through_the_yaml_parser_and_back() {
        // Compact JSON, as clients send it: keys and values with no space after the colon.
        let text =
            r#"{"name":"app","hosts":["a.test"],"n":12,"x":{"y":[{"z":false}]},"u":"\u00e9\/"}"#;
        assert_eq!(
            json(text),
            r#"{"name":"app","hosts":["a.test"],"n":12,"x":{"y":[{"z":false}]},"u":"é/"}"#
        );
    }
}
