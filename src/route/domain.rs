//! Domain expressions as http-proxy-lb writes them: `domain:x` (exactly x), `suffix:x`, `*.x`,
//! `.x` (x and its subdomains) and plain `x` (the same: exact or suffix). Matching is
//! case-insensitive, ignores a trailing dot, and costs one hash look-up per label of the host.

use std::collections::HashSet;

/// A compiled set of domain expressions.
#[derive(Debug, Default, Clone)]
pub struct DomainSet {
    exact: HashSet<String>,
    suffix: HashSet<String>,
}

impl DomainSet {
    /// Adds one expression.
    pub fn add(&mut self, expr: &str) -> Result<(), &'static str> {
        match parse_expr(expr)? {
            (true, name) => self.exact.insert(name),
            (false, name) => self.suffix.insert(name),
        };
        Ok(())
    }

    /// True when `host` is matched by any expression.
    pub fn matches(&self, host: &str) -> bool {
        if self.exact.is_empty() && self.suffix.is_empty() {
            return false;
        }
        let host = normalize(host);
        if self.exact.contains(&host) {
            return true;
        }
        let mut rest = host.as_str();
        loop {
            if self.suffix.contains(rest) {
                return true;
            }
            match rest.find('.') {
                Some(i) => rest = &rest[i + 1..],
                None => return false,
            }
        }
    }
}

/// Parses a domain expression into (exact?, normalized name).
pub fn parse_expr(expr: &str) -> Result<(bool, String), &'static str> {
    let expr = expr.trim();
    let (exact, name) = if let Some(n) = expr.strip_prefix("domain:") {
        (true, n)
    } else if let Some(n) = expr.strip_prefix("suffix:") {
        (false, n)
    } else if let Some(n) = expr.strip_prefix("*.") {
        (false, n)
    } else if let Some(n) = expr.strip_prefix('.') {
        (false, n)
    } else {
        (false, expr)
    };
    let name = normalize(name);
    // Every label non-empty and at most 63 bytes (found by fuzzing: `a.example..` was taken,
    // and could never match, because only one trailing dot is ignored).
    let labels_ok = name.split('.').all(|l| !l.is_empty() && l.len() <= 63);
    if name.is_empty()
        || !labels_ok
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err("not a domain expression (domain:x, suffix:x, *.x, .x or x)");
    }
    Ok((exact, name))
}

/// Lower-case, without a trailing dot.
pub fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(exprs: &[&str]) -> DomainSet {
        let mut s = DomainSet::default();
        for e in exprs {
            s.add(e).unwrap();
        }
        s
    }

    #[test]
    fn forms_match_like_http_proxy_lb() {
        let s = set(&["domain:a.com", "suffix:b.com", "*.c.com", ".d.com", "e.com"]);
        for (h, want) in [
            ("a.com", true),
            ("x.a.com", false),
            ("b.com", true),
            ("x.y.b.com", true),
            ("xb.com", false),
            ("c.com", true),
            ("x.c.com", true),
            ("x.d.com", true),
            ("E.COM.", true),
            ("x.e.com", true),
            ("com", false),
        ] {
            assert_eq!(s.matches(h), want, "{h}");
        }
    }

    #[test]
    fn rejects_junk() {
        assert!(DomainSet::default().add("domain:").is_err());
        assert!(DomainSet::default().add("domain:a.example..").is_err());
        assert!(DomainSet::default().add("a..example").is_err());
        assert!(DomainSet::default()
            .add(&format!("{}.example", "x".repeat(64)))
            .is_err());
        assert!(DomainSet::default().add("a b").is_err());
    }
}
