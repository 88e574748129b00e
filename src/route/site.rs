//! The reverse role's routing (DESIGN §7.1): which site a request's host names, and which of
//! that site's routes its path falls under. A reverse session, once it has parsed a head, asks
//! [`HostTable::lookup`] with the absolute-form authority or the Host value, then
//! [`normalize_path`](super::path::normalize_path) on the target (the normalized path is both what routes are matched on and
//! what the backend receives, so the two never disagree), then the site's
//! [`RouteTable::lookup`], and [`strip_prefix`] when the route says so. Host patterns and path
//! prefixes are kept in separate tables, as sozu's router does; both are built once from the
//! config and looked up without allocating.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Host patterns of every site, matched to a site index.
#[derive(Debug, Default, Clone)]
pub struct HostTable {
    /// Exact names, lower-case, without a trailing dot, sorted for a binary search.
    exact: Vec<(Box<str>, usize)>,
    /// Bracketed IPv6 literals, compared as addresses so that every spelling of one matches.
    v6: Vec<(Ipv6Addr, usize)>,
    /// The `x` of each `*.x` / `.x`, lower-case, sorted.
    wild: Vec<(Box<str>, usize)>,
    /// The site of `*`.
    any: Option<usize>,
}

/// One host pattern, normalized: equal values are the same pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Pattern {
    Exact(String),
    V6(Ipv6Addr),
    Wild(String),
    Any,
}

impl HostTable {
    /// `sites[i]` lists site i's host patterns: exact names ("app.example.com"), wildcards
    /// "*.x" or ".x" (x and every subdomain at any depth, like the forward role's suffix
    /// expressions), or "*" alone (the catch-all). Errors name (site index, host index,
    /// message): a pattern given twice across or within sites (after lowercasing and dropping a
    /// trailing dot; "*.x" and ".x" are the same pattern), a wildcard anywhere but the front,
    /// an empty name or label, characters that cannot be in a host name, a numeric name that is
    /// no dotted-quad IPv4 address, two catch-alls, a port in the pattern.
    pub fn new(sites: &[Vec<String>]) -> Result<HostTable, (usize, usize, String)> {
        let mut table = HostTable::default();
        let mut seen: HashMap<Pattern, (usize, usize)> = HashMap::new();
        for (s, hosts) in sites.iter().enumerate() {
            for (h, raw) in hosts.iter().enumerate() {
                let p = pattern(raw).map_err(|e| (s, h, e))?;
                if let Some(&(s0, h0)) = seen.get(&p) {
                    let what = if p == Pattern::Any {
                        format!("a second catch-all \"*\" (the first is site {s0}, host {h0})")
                    } else {
                        format!("{raw:?} is given twice (also as site {s0}, host {h0})")
                    };
                    return Err((s, h, what));
                }
                seen.insert(p.clone(), (s, h));
                match p {
                    Pattern::Exact(name) => table.exact.push((name.into(), s)),
                    Pattern::V6(addr) => table.v6.push((addr, s)),
                    Pattern::Wild(name) => table.wild.push((name.into(), s)),
                    Pattern::Any => table.any = Some(s),
                }
            }
        }
        table.exact.sort_unstable();
        table.wild.sort_unstable();
        Ok(table)
    }

    /// The site for a Host field value or absolute-form authority: port and one trailing dot
    /// ignored, ASCII case-insensitive, "[v6]:port" handled. Exact beats the longest wildcard
    /// beats "*". An empty host (HTTP/1.0 without Host) reaches only the catch-all; a host that
    /// cannot be a host name (bytes no name has, an empty label, a port that is not digits)
    /// reaches no site, not even the catch-all. None when no site matches. No allocation.
    pub fn lookup(&self, host: &str) -> Option<usize> {
        let name = match host_name(host)? {
            HostName::Empty => return self.any,
            HostName::V6(addr) => {
                let found = self.v6.iter().find(|(a, _)| *a == addr);
                return found.map(|&(_, s)| s).or(self.any);
            }
            HostName::Text(name) => name,
        };
        if let Ok(i) = self.exact.binary_search_by(|(k, _)| cmp_lower(k, name)) {
            return Some(self.exact[i].1);
        }
        if !self.wild.is_empty() {
            // From the whole name down to its last label: the first hit is the longest.
            let mut rest = name;
            loop {
                if let Ok(i) = self.wild.binary_search_by(|(k, _)| cmp_lower(k, rest)) {
                    return Some(self.wild[i].1);
                }
                match rest.find('.') {
                    Some(dot) => rest = &rest[dot + 1..],
                    None => break,
                }
            }
        }
        self.any
    }
}

/// Compares a stored lower-case key with `name` lowered on the fly (no copy of `name`).
fn cmp_lower(key: &str, name: &str) -> Ordering {
    key.bytes()
        .cmp(name.bytes().map(|b| b.to_ascii_lowercase()))
}

/// A byte a host name may hold (RFC 952/1123 letters, digits, hyphen; plus `_`, which real
/// names carry and the forward role's domain expressions accept).
fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'
}

/// Reads one configured host pattern.
fn pattern(raw: &str) -> Result<Pattern, String> {
    if raw == "*" {
        return Ok(Pattern::Any);
    }
    if let Some(inner) = raw.strip_prefix('[') {
        let Some((addr, rest)) = inner.split_once(']') else {
            return Err(format!("{raw:?} opens a '[' it never closes"));
        };
        if rest.starts_with(':') {
            return Err(format!(
                "{raw:?} has a port: a host pattern matches on every port"
            ));
        }
        return match addr.parse::<Ipv6Addr>() {
            Ok(a) if rest.is_empty() => Ok(Pattern::V6(a)),
            _ => Err(format!("{raw:?} is not an IPv6 address in brackets")),
        };
    }
    let (wild, name) = match raw.strip_prefix("*.") {
        Some(n) => (true, n),
        None => match raw.strip_prefix('.') {
            Some(n) => (true, n),
            None => (false, raw),
        },
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(format!("{raw:?} has an empty name"));
    }
    if name.contains('*') {
        return Err(format!(
            "{raw:?}: a wildcard stands only first (\"*.x\" or \".x\") or alone (\"*\")"
        ));
    }
    if name.contains(':') {
        if name.parse::<Ipv6Addr>().is_ok() {
            return Err(format!("{raw:?}: an IPv6 address is written in brackets"));
        }
        if let Some((_, port)) = name.rsplit_once(':') {
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "{raw:?} has a port: a host pattern matches on every port"
                ));
            }
        }
    }
    if let Some(c) = name.chars().find(|&c| !c.is_ascii() || !name_byte(c as u8)) {
        return Err(format!("{raw:?} holds {c:?}, which no host name has"));
    }
    // RFC 1035 §2.3.4: labels of 1 to 63 bytes, names of at most 253 (without the root dot).
    if name.len() > 253 || name.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err(format!(
            "{raw:?} is not a host name (labels of 1 to 63 bytes, 253 in all)"
        ));
    }
    // A name ending in a number is an address (RFC 3696 §2: no top-level domain is all
    // digits): only the dotted-quad form is taken, and never under a wildcard, which would
    // match addresses by their text.
    let last = name.rsplit('.').next().unwrap_or(name);
    if last.bytes().all(|b| b.is_ascii_digit()) && (wild || name.parse::<Ipv4Addr>().is_err()) {
        return Err(format!(
            "{raw:?} is numeric, but not an IPv4 address in dotted-quad form"
        ));
    }
    let name = name.to_ascii_lowercase();
    Ok(if wild {
        Pattern::Wild(name)
    } else {
        Pattern::Exact(name)
    })
}

/// What a request's host reads as, port and one trailing dot gone.
enum HostName<'a> {
    Empty,
    V6(Ipv6Addr),
    Text(&'a str),
}

/// Splits the port off a Host value or authority and checks what is left could be a name.
fn host_name(host: &str) -> Option<HostName<'_>> {
    if host.is_empty() {
        return Some(HostName::Empty);
    }
    let port_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if let Some(inner) = host.strip_prefix('[') {
        let (addr, rest) = inner.split_once(']')?;
        let port = if rest.is_empty() {
            ""
        } else {
            rest.strip_prefix(':')?
        };
        if !port_ok(port) {
            return None;
        }
        return addr.parse().ok().map(HostName::V6);
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port_ok(port) => name,
        Some(_) => return None,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let b = name.as_bytes();
    let well_formed = !b.is_empty()
        && b[0] != b'.'
        && b[b.len() - 1] != b'.'
        && b.iter().copied().all(name_byte)
        && !b.windows(2).any(|w| w == b"..");
    well_formed.then_some(HostName::Text(name))
}

/// A site's path routes: prefixes matched on segment boundaries, longest first.
#[derive(Debug, Default, Clone)]
pub struct RouteTable {
    /// Each prefix without its trailing '/' ("/" is kept as ""), sorted, with its route index.
    keys: Vec<(Box<str>, usize)>,
    /// The longest key: no part of a path beyond it can decide a match, so a long path costs
    /// no more than the config's longest prefix.
    longest: usize,
}

impl RouteTable {
    /// `prefixes[i]` is route i's `path` ("/" matches everything; "/api" matches "/api",
    /// "/api/", "/api/x" but not "/apix"; "/api/" behaves as "/api"). Errors (route index,
    /// message): not starting with '/', containing '?' or '#', containing dot-segments or an
    /// empty segment ("//"), a byte a request path cannot hold (space, control, non-ASCII), a
    /// prefix given twice (after the trailing-slash rule).
    pub fn new(prefixes: &[String]) -> Result<RouteTable, (usize, String)> {
        let mut table = RouteTable::default();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, p) in prefixes.iter().enumerate() {
            let key = route_key(p).map_err(|e| (i, format!("{p:?}: {e}")))?;
            if let Some(j) = seen.insert(key, i) {
                return Err((i, format!("{p:?} is given twice (also as route {j})")));
            }
            table.longest = table.longest.max(key.len());
            table.keys.push((key.into(), i));
        }
        table.keys.sort_unstable();
        Ok(table)
    }

    /// The route whose prefix is the longest match for `path` (normalized, query excluded).
    /// No allocation.
    pub fn lookup(&self, path: &str) -> Option<usize> {
        let b = path.as_bytes();
        // Candidates are the path cut at each segment boundary, longest first; the empty cut
        // is the key of "/".
        let mut end = b.len().min(self.longest);
        loop {
            if end == 0 || end == b.len() || b[end] == b'/' {
                let cut = &b[..end];
                if let Ok(i) = self.keys.binary_search_by(|(k, _)| k.as_bytes().cmp(cut)) {
                    return Some(self.keys[i].1);
                }
            }
            if end == 0 {
                return None;
            }
            end -= 1;
        }
    }
}

/// Checks a route's `path` and returns the key it is matched by.
fn route_key(p: &str) -> Result<&str, &'static str> {
    if !p.starts_with('/') {
        return Err("a route path starts with '/'");
    }
    if p.contains(['?', '#']) {
        return Err("a route path holds no query or fragment ('?', '#')");
    }
    if !p.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a request path holds no space, control or non-ASCII byte (percent-encode it)");
    }
    let key = p.strip_suffix('/').unwrap_or(p);
    if key.ends_with('/') || key.contains("//") {
        return Err("an empty segment (\"//\") in a route path");
    }
    if key.split('/').any(|s| super::path::dots(s) > 0) {
        return Err("a dot-segment in a route path (paths are matched after they are removed)");
    }
    // Request paths are matched with their escapes normalized: a prefix written otherwise
    // would never match.
    let mut normalized = String::with_capacity(key.len());
    super::path::push_escapes_normalized(&mut normalized, key);
    if normalized != key {
        return Err("an escape of a letter, digit or \"-._~\", or lower-case hex digits in an escape (write \"%61\" as \"a\", \"%c3\" as \"%C3\")");
    }
    Ok(key)
}

/// The path with the route's prefix removed: "/api/users" under "/api" is "/users"; the bare
/// prefix "/api" (or "/api/") becomes "/". `path` has no query. Prefix "/" leaves the path as
/// is, and so does a prefix that does not match `path` on a segment boundary.
pub fn strip_prefix<'a>(path: &'a str, prefix: &str) -> &'a str {
    let key = prefix.strip_suffix('/').unwrap_or(prefix);
    match path.strip_prefix(key) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(sites: &[&[&str]]) -> Result<HostTable, (usize, usize, String)> {
        let sites: Vec<Vec<String>> = sites
            .iter()
            .map(|s| s.iter().map(|h| h.to_string()).collect())
            .collect();
        HostTable::new(&sites)
    }

    fn routes(prefixes: &[&str]) -> Result<RouteTable, (usize, String)> {
        RouteTable::new(&prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn exact_beats_the_longest_wildcard_beats_the_catch_all() {
        let t = hosts(&[
            &["*"],
            &["*.example.com"],
            &["*.app.example.com"],
            &["app.example.com", "www.example.com"],
            &["api.app.example.com"],
        ])
        .unwrap();
        for (host, site) in [
            ("app.example.com", Some(3)),
            ("www.example.com", Some(3)),
            ("api.app.example.com", Some(4)),
            ("x.app.example.com", Some(2)),
            ("a.b.c.app.example.com", Some(2)),
            ("example.com", Some(1)),
            ("x.example.com", Some(1)),
            ("deep.down.x.example.com", Some(1)),
            ("other.org", Some(0)),
            ("com", Some(0)),
            ("xexample.com", Some(0)),
        ] {
            assert_eq!(t.lookup(host), site, "{host}");
        }
        let no_catch_all = hosts(&[&[".example.com"], &["a.org"]]).unwrap();
        assert_eq!(no_catch_all.lookup("other.org"), None);
        assert_eq!(no_catch_all.lookup("b.a.org"), None);
        assert_eq!(no_catch_all.lookup("sub.example.com"), Some(0));
        assert_eq!(no_catch_all.lookup("example.com"), Some(0));
        assert_eq!(HostTable::default().lookup("a.org"), None);
    }

    #[test]
    fn hosts_match_whatever_the_port_trailing_dot_or_case() {
        let t = hosts(&[
            &["App.Example.COM.", "127.0.0.1"],
            &["[::1]", "*.Wild.Example"],
            &["[2001:DB8::A]"],
        ])
        .unwrap();
        for (host, site) in [
            ("app.example.com", Some(0)),
            ("APP.example.Com", Some(0)),
            ("app.example.com.", Some(0)),
            ("app.example.com:8080", Some(0)),
            ("app.example.com.:443", Some(0)),
            ("app.example.com:", Some(0)),
            ("127.0.0.1:80", Some(0)),
            ("[::1]", Some(1)),
            ("[::1]:8443", Some(1)),
            ("[0:0:0:0:0:0:0:1]:80", Some(1)),
            ("X.WILD.example.", Some(1)),
            ("[2001:db8::a]", Some(2)),
            ("[2001:0db8:0:0::000a]:1", Some(2)),
            ("[::2]", None),
            ("app.example.com..", None),
            ("app.example.com:8o", None),
        ] {
            assert_eq!(t.lookup(host), site, "{host}");
        }
    }

    #[test]
    fn hosts_that_cannot_be_names_reach_no_site() {
        let t = hosts(&[&["*"], &["*.example.com"]]).unwrap();
        assert_eq!(t.lookup(""), Some(0), "no Host: the catch-all");
        for host in [
            "a b.example.com",
            "x/.example.com",
            "..example.com",
            ".example.com",
            "a..example.com",
            "*.example.com",
            ".",
            ":80",
            "::1",
            "[::1",
            "[::1]x",
            "[::1]:x",
            "[fe80::1%25eth0]",
            "ex\u{e4}mple.com",
        ] {
            assert_eq!(t.lookup(host), None, "{host:?}");
        }
    }

    #[test]
    fn host_patterns_that_cannot_be_are_refused_with_their_place() {
        let err = |sites: &[&[&str]]| hosts(sites).unwrap_err();
        let (s, h, e) = err(&[&["a.com"], &["b.com", "A.com."]]);
        assert_eq!((s, h), (1, 1));
        assert!(e.contains("twice") && e.contains("site 0, host 0"), "{e}");
        let (s, h, _) = err(&[&["*.x.com", ".X.com"]]);
        assert_eq!((s, h), (0, 1), "*.x and .x are one pattern");
        assert_eq!(err(&[&["x.com", "x.com"]]).1, 1);
        let (s, h, e) = err(&[&["*"], &["a.com", "*"]]);
        assert_eq!((s, h), (1, 1));
        assert!(e.contains("catch-all"), "{e}");
        assert_eq!(err(&[&["[::1]"], &["[0::1]"]]).0, 1);
        for bad in [
            "a.*.x",
            "a*",
            "*x",
            "**.x",
            "*.*.x",
            "",
            ".",
            "*.",
            "..",
            "x..",
            "a..b",
            "a b",
            "a/b",
            "a@b",
            "ex\u{e4}mple.com",
            "app.example.com:8080",
            "[::1]:80",
            "::1",
            "[::1",
            "[nope]",
            "[::1].",
            "1.2.3.256",
            "01.2.3.4",
            "127.1",
            "2130706433",
            "*.0.0.1",
            ".1.2.3.4",
            &format!("{}.com", "x".repeat(64)),
            &format!("{}com", "abcdefghi.".repeat(26)),
        ] {
            let e = err(&[&["ok.com"], &["fine.org", bad]]);
            assert_eq!((e.0, e.1), (1, 1), "{bad:?}");
            assert!(!e.2.is_empty());
        }
        // Exact x and wildcard x are two patterns, and may belong to two sites.
        let t = hosts(&[&["x.com"], &["*.x.com"], &["_srv.x.com", "1.2.3.4"]]).unwrap();
        assert_eq!(t.lookup("x.com"), Some(0));
        assert_eq!(t.lookup("y.x.com"), Some(1));
        assert_eq!(t.lookup("_SRV.x.com"), Some(2));
        assert_eq!(t.lookup("1.2.3.4"), Some(2));
    }

    #[test]
    fn routes_match_on_segment_boundaries_longest_first() {
        let t = routes(&["/", "/api", "/api/v2/", "/static/img"]).unwrap();
        for (path, route) in [
            ("/", Some(0)),
            ("/x", Some(0)),
            ("/apix", Some(0)),
            ("/api", Some(1)),
            ("/api/", Some(1)),
            ("/api/x", Some(1)),
            ("/api//x", Some(1)),
            ("/api/v2", Some(2)),
            ("/api/v2/", Some(2)),
            ("/api/v2/users/1", Some(2)),
            ("/api/v20", Some(1)),
            ("/static", Some(0)),
            ("/static/img/a.png", Some(3)),
            ("/static/imgs", Some(0)),
            ("/API", Some(0)),
            ("", Some(0)),
        ] {
            assert_eq!(t.lookup(path), route, "{path}");
        }
        let t = routes(&["/api/", "/a"]).unwrap();
        assert_eq!(t.lookup("/"), None);
        assert_eq!(t.lookup("/ap"), None);
        assert_eq!(t.lookup("/api"), Some(0));
        assert_eq!(t.lookup("/a/api"), Some(1));
        assert_eq!(t.lookup(&format!("/api{}", "/x".repeat(5000))), Some(0));
        assert_eq!(RouteTable::default().lookup("/"), None);
        // Prefixes are compared as written: escapes are not decoded.
        let t = routes(&["/caf%C3%A9"]).unwrap();
        assert_eq!(t.lookup("/caf%C3%A9/menu"), Some(0));
        assert_eq!(t.lookup("/caf%c3%a9/menu"), None);
    }

    #[test]
    fn route_paths_that_cannot_match_are_refused_with_their_index() {
        for bad in [
            "api",
            "",
            "/api?x",
            "/api#x",
            "/a/./b",
            "/a/../b",
            "/..",
            "/a/%2e%2e",
            "/a/%2E",
            "/a//b",
            "//",
            "/api//",
            "/a b",
            "/caf\u{e9}",
            "/a\tb",
            "/%61dmin",
            "/caf%c3%a9",
            "/a/%7E",
        ] {
            let (i, e) = routes(&["/ok", bad]).unwrap_err();
            assert_eq!(i, 1, "{bad:?}");
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        let (i, e) = routes(&["/api", "/x", "/api/"]).unwrap_err();
        assert_eq!(i, 2);
        assert!(e.contains("route 0"), "{e}");
        assert_eq!(routes(&["/", "/"]).unwrap_err().0, 1);
        assert!(routes(&["/...", "/.a", "/.%2F", "/caf%C3%A9"]).is_ok());
    }

    #[test]
    fn a_stripped_prefix_leaves_a_path_that_starts_with_a_slash() {
        for (path, prefix, want) in [
            ("/api/users", "/api", "/users"),
            ("/api/users", "/api/", "/users"),
            ("/api", "/api", "/"),
            ("/api/", "/api", "/"),
            ("/api", "/api/", "/"),
            ("/api/", "/api/", "/"),
            ("/api//x", "/api", "//x"),
            ("/a/b/c", "/a/b", "/c"),
            ("/x/y", "/", "/x/y"),
            ("/", "/", "/"),
            ("/apix", "/api", "/apix"),
            ("/other", "/api", "/other"),
        ] {
            assert_eq!(strip_prefix(path, prefix), want, "{path} under {prefix}");
        }
    }
}
