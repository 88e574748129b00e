//! The reverse role's routing (`route::site`). Input, in three parts split at NUL bytes: host
//! patterns (a line per site, patterns separated by spaces), route prefixes (a line each), and
//! probes (a line each), looked up as hosts and as request targets. A pattern or prefix the
//! tables refuse is dropped and the table built again from the rest, so refusals and look-ups
//! are both exercised.
//!
//! Nothing may panic; an exact pattern finds its own site, in any case and with a port; a
//! wildcard's name finds a site; a probe finds the same site upper-cased and with a port; a
//! normalized target starts with '/', keeps its query, holds no dot-segment and normalizes to
//! itself; the route found is the one a plain scan of every prefix finds (the longest that
//! matches on a segment boundary); a stripped path starts with '/'.
#![no_main]

use ferry::route::path::normalize_path;
use ferry::route::site::{strip_prefix, HostTable, RouteTable};
use libfuzzer_sys::fuzz_target;

/// A dot-segment, "%2e" counting as ".".
fn is_dot_segment(seg: &str) -> bool {
    let s = seg.replace("%2e", ".").replace("%2E", ".");
    s == "." || s == ".."
}

/// The route a plain scan picks: the longest prefix equal to the path or followed in it by
/// '/' ("/" matching everything).
fn longest_match(prefixes: &[String], path: &str) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, p) in prefixes.iter().enumerate() {
        let key = p.strip_suffix('/').unwrap_or(p);
        let hit = key.is_empty()
            || path == key
            || (path.starts_with(key) && path.as_bytes().get(key.len()) == Some(&b'/'));
        if hit && best.is_none_or(|(len, _)| key.len() > len) {
            best = Some((key.len(), i));
        }
    }
    best.map(|(_, i)| i)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let mut sites: Vec<Vec<String>> = parts
        .next()
        .unwrap_or("")
        .lines()
        .take(16)
        .map(|l| l.split(' ').take(16).map(String::from).collect())
        .collect();
    let mut prefixes: Vec<String> = parts
        .next()
        .unwrap_or("")
        .lines()
        .take(32)
        .map(String::from)
        .collect();
    let probes = parts.next().unwrap_or("");

    let hosts = loop {
        match HostTable::new(&sites) {
            Ok(t) => break t,
            Err((s, h, why)) => {
                assert!(!why.is_empty());
                sites[s].remove(h);
            }
        }
    };
    let routes = loop {
        match RouteTable::new(&prefixes) {
            Ok(t) => break t,
            Err((i, why)) => {
                assert!(!why.is_empty());
                prefixes.remove(i);
            }
        }
    };

    let mut catch_all = None;
    for (s, patterns) in sites.iter().enumerate() {
        for p in patterns {
            if p == "*" {
                catch_all = Some(s);
            } else if let Some(name) = p.strip_prefix("*.").or_else(|| p.strip_prefix('.')) {
                assert!(
                    hosts.lookup(name).is_some(),
                    "{p:?}: its name finds no site"
                );
                assert!(hosts.lookup(&format!("a.{name}")).is_some(), "{p:?}");
            } else {
                assert_eq!(hosts.lookup(p), Some(s), "{p:?}");
                assert_eq!(hosts.lookup(&p.to_ascii_uppercase()), Some(s), "{p:?}");
                assert_eq!(hosts.lookup(&format!("{p}:8080")), Some(s), "{p:?}");
            }
        }
    }
    assert_eq!(hosts.lookup(""), catch_all);

    let (mut out, mut again) = (String::new(), String::new());
    for probe in probes.lines().take(64) {
        let site = hosts.lookup(probe);
        assert_eq!(hosts.lookup(&probe.to_ascii_uppercase()), site, "{probe:?}");
        if !probe.is_empty() && !probe.contains(':') {
            assert_eq!(hosts.lookup(&format!("{probe}:443")), site, "{probe:?}");
        }
        // Route look-up takes any string; the contract is only for normalized paths, but the
        // longest-match rule holds for every string.
        assert_eq!(
            routes.lookup(probe),
            longest_match(&prefixes, probe),
            "{probe:?}"
        );
        if normalize_path(probe, &mut out).is_err() {
            assert!(out.is_empty());
            continue;
        }
        assert!(out.starts_with('/'), "{probe:?} -> {out:?}");
        let (path, query) = out.split_at(out.find('?').unwrap_or(out.len()));
        assert_eq!(query, &probe[probe.find('?').unwrap_or(probe.len())..]);
        assert!(
            !path.split('/').any(is_dot_segment),
            "{probe:?} -> {out:?} keeps a dot-segment"
        );
        normalize_path(&out, &mut again).unwrap();
        assert_eq!(again, out, "{probe:?} is not normalized for good");
        let route = routes.lookup(path);
        assert_eq!(route, longest_match(&prefixes, path), "{path:?}");
        if let Some(r) = route {
            let rest = strip_prefix(path, &prefixes[r]);
            assert!(
                rest.starts_with('/') && rest.len() <= path.len(),
                "{path:?} -> {rest:?}"
            );
        }
    }
});
