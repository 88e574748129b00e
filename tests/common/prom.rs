//! A strict reader of Prometheus text format 0.0.4 for checking `/metrics` by parsing it
//! rather than by matching substrings: what `promtool check metrics` would complain about
//! fails the test.

use std::collections::{BTreeMap, HashSet};

/// One histogram series as read so far: its buckets (`le`, count) in order, `_count`, and
/// whether `_sum` came.
#[derive(Default)]
struct Histogram {
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: bool,
}

/// Parses `text` strictly: each family once, `# HELP` then `# TYPE` then its samples, names
/// prefixed `ferry_`, counters ending in `_total`, label names and escaped values well formed
/// and no label twice, no series twice, numeric values; a histogram's samples are
/// `_bucket`/`_sum`/`_count` only, its buckets rise with `le` and end at `+Inf`, which equals
/// `_count`. Returns the samples as written (`name{labels}`, value).
pub fn parse(text: &str) -> Vec<(String, f64)> {
    let mut families = HashSet::new();
    let mut series_seen = HashSet::new();
    let mut current: Option<(String, String)> = None;
    let mut samples = Vec::new();
    // Histogram series by their labels without `le`.
    let mut histograms: BTreeMap<String, Histogram> = BTreeMap::new();
    let mut lines = text.lines().peekable();
    assert!(text.ends_with('\n'), "the text must end with a newline");
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a name and a text");
            assert!(!help.is_empty());
            assert!(name.starts_with("ferry_"), "{name}");
            assert!(
                families.insert(name.to_string()),
                "family {name} appears twice"
            );
            let ty = lines.next().expect("TYPE follows HELP");
            let kind = ty
                .strip_prefix(&format!("# TYPE {name} "))
                .unwrap_or_else(|| panic!("bad TYPE line {ty:?}"));
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{kind}");
            if kind == "counter" {
                assert!(
                    name.ends_with("_total"),
                    "counter {name} must end in _total"
                );
            }
            current = Some((name.to_string(), kind.to_string()));
            continue;
        }
        assert!(!line.starts_with('#'), "stray comment {line:?}");
        let (family, kind) = current.as_ref().expect("a sample before any family");
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let name = series.split('{').next().unwrap();
        let suffix = match kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .into_iter()
                .find(|s| name.strip_suffix(s) == Some(family.as_str()))
                .unwrap_or_else(|| panic!("{name} is no sample of histogram {family}")),
            _ => {
                assert_eq!(name, family, "sample outside its family");
                ""
            }
        };
        let labels = labels(&series[name.len()..]);
        assert!(
            series_seen.insert(series.to_string()),
            "{series} appears twice"
        );
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        if kind == "histogram" {
            let key: Vec<String> = labels
                .iter()
                .filter(|(k, _)| k != "le")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let h = histograms
                .entry(format!("{family}{{{}}}", key.join(",")))
                .or_default();
            match suffix {
                "_bucket" => {
                    let le = labels
                        .iter()
                        .find(|(k, _)| k == "le")
                        .map(|(_, v)| v.as_str())
                        .expect("a bucket has le");
                    let le: f64 = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().expect("le is a number")
                    };
                    if let Some(&(prev_le, prev_n)) = h.buckets.last() {
                        assert!(le > prev_le, "buckets of {series} out of order");
                        assert!(v >= prev_n, "bucket {series} below the one before");
                    }
                    h.buckets.push((le, v));
                }
                "_count" => h.count = Some(v),
                _ => h.sum = true,
            }
        }
        samples.push((series.to_string(), v));
    }
    for (key, h) in histograms {
        let last = h
            .buckets
            .last()
            .unwrap_or_else(|| panic!("{key} has no bucket"));
        assert_eq!(last.0, f64::INFINITY, "{key} does not end at +Inf");
        assert_eq!(Some(last.1), h.count, "{key}: +Inf is not _count");
        assert!(h.sum, "{key} has no _sum");
    }
    samples
}

/// `{k="v",…}` (or nothing) as pairs, values unescaped.
fn labels(s: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    if s.is_empty() {
        return out;
    }
    let inner = s
        .strip_prefix('{')
        .and_then(|l| l.strip_suffix('}'))
        .unwrap_or_else(|| panic!("labels in braces: {s}"));
    let mut chars = inner.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
        assert!(
            name.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad label name {name:?} in {s}"
        );
        assert_eq!(chars.next(), Some('"'), "label value in quotes: {s}");
        let mut value = String::new();
        loop {
            match chars
                .next()
                .unwrap_or_else(|| panic!("unterminated value in {s}"))
            {
                '"' => break,
                '\\' => match chars.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => panic!("bad escape {other:?} in {s}"),
                },
                '\n' => panic!("raw newline in {s}"),
                c => value.push(c),
            }
        }
        assert!(
            !out.iter().any(|(n, _)| *n == name),
            "label {name} twice in {s}"
        );
        out.push((name, value));
        match chars.next() {
            None => break,
            Some(',') => {}
            other => panic!("expected , after a label, got {other:?} in {s}"),
        }
    }
    out
}
