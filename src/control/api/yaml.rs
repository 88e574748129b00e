//! The config document written back as YAML text, for validation and for `admin.persist`. A
//! small block-style writer instead of yaml_serde's serializer: that one links libyaml's
//! emitter, which made the binary about 10 % larger (measured, see the note in `api.rs`).
//!
//! Strings are written double-quoted with JSON's escapes (a subset of YAML's), so no string
//! can be read back as a number, a bool or null; keys are plain when they cannot be mistaken
//! for anything but a string. What is written parses back to the same document.

use std::fmt::Write;
use yaml_serde::Value;

/// `doc` as YAML text.
pub fn write(doc: &Value) -> String {
    let mut o = String::new();
    match doc {
        Value::Mapping(m) if !m.is_empty() => mapping(&mut o, m, 0),
        other => {
            scalar_or_empty(&mut o, other);
            o.push('\n');
        }
    }
    o
}

/// Writes the entries of `m`, each on its own line at `indent`.
fn mapping(o: &mut String, m: &yaml_serde::Mapping, indent: usize) {
    for (k, v) in m {
        pad(o, indent);
        key(o, k);
        o.push(':');
        value(o, v, indent);
    }
}

/// Writes the items of `s`, each on its own line at `indent`.
fn sequence(o: &mut String, s: &[Value], indent: usize) {
    for v in s {
        pad(o, indent);
        o.push('-');
        match v {
            // A mapping in a list starts on the dash's line: `- name: app`.
            Value::Mapping(m) if !m.is_empty() => {
                let mut first = true;
                for (k, v) in m {
                    if first {
                        o.push(' ');
                        first = false;
                    } else {
                        pad(o, indent + 2);
                    }
                    key(o, k);
                    o.push(':');
                    value(o, v, indent + 2);
                }
            }
            other => value(o, other, indent),
        }
    }
}

/// Writes what follows a `key:` or a `-` at `indent`: a scalar on the same line, or a
/// collection on the lines below, two columns in.
fn value(o: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            o.push('\n');
            mapping(o, m, indent + 2);
        }
        Value::Sequence(s) if !s.is_empty() => {
            o.push('\n');
            sequence(o, s, indent + 2);
        }
        Value::Tagged(t) => value(o, &t.value, indent),
        other => {
            o.push(' ');
            scalar_or_empty(o, other);
            o.push('\n');
        }
    }
}

fn scalar_or_empty(o: &mut String, v: &Value) {
    match v {
        Value::Null => o.push_str("null"),
        Value::Bool(b) => {
            let _ = write!(o, "{b}");
        }
        Value::Number(n) => {
            let _ = write!(o, "{n}");
        }
        Value::String(s) => quoted(o, s),
        Value::Mapping(_) => o.push_str("{}"),
        Value::Sequence(_) => o.push_str("[]"),
        Value::Tagged(t) => scalar_or_empty(o, &t.value),
    }
}

/// A key: plain when it is a word no YAML reader takes for a bool, null or number.
fn key(o: &mut String, k: &Value) {
    let Value::String(s) = k else {
        return scalar_or_empty(o, k);
    };
    let word = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    let special = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"]
        .iter()
        .any(|w| s.eq_ignore_ascii_case(w));
    if word && !special {
        o.push_str(s);
    } else {
        quoted(o, s);
    }
}

fn quoted(o: &mut String, s: &str) {
    o.push('"');
    o.push_str(&crate::metrics::json(s));
    o.push('"');
}

fn pad(o: &mut String, indent: usize) {
    o.extend(std::iter::repeat_n(' ', indent));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) {
        let doc: Value = yaml_serde::from_str(text).unwrap();
        let written = write(&doc);
        let back: Value =
            yaml_serde::from_str(&written).unwrap_or_else(|e| panic!("{e}\n{written}"));
        assert_eq!(back, doc, "{written}");
    }

    #[test]
    fn what_is_written_reads_back_the_same() {
        round_trip(
            "a: 1\nb: [true, null, -2, 1.5, 1e300, '1', 'true', 'null', '', ' x ', \"q\\\"\\\\\\n\\t\u{e9}\"]\n\
             'yes': {}\n'1': []\n'a b': x\n_k.e-y: [[1, [2]], [], {}, {p: [q], r: {s: t}}]\n\
             list:\n  - {name: app, hosts: [a.test, '*.a.test'], routes: [{path: /, backend: web}]}\n\
             empty:\nnested: {x: {y: {z: [a, {b: c}]}}}\n",
        );
    }

    #[test]
    fn the_example_configs_read_back_the_same_and_stay_valid() {
        for text in [
            include_str!("../../../config/ferry.example.yaml"),
            include_str!("../../../config/reverse.example.yaml"),
            include_str!("../../../config/http-proxy-lb.example.yaml"),
        ] {
            round_trip(text);
            let doc: Value = yaml_serde::from_str(text).unwrap();
            crate::config::parse(&write(&doc), None).unwrap();
        }
    }

    #[test]
    fn lists_of_mappings_look_as_people_write_them() {
        let doc: Value = yaml_serde::from_str("sites: [{name: app, hosts: [a.test]}]\n").unwrap();
        assert_eq!(
            write(&doc),
            "sites:\n  - name: \"app\"\n    hosts:\n      - \"a.test\"\n"
        );
    }
}
