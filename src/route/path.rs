//! Request targets made canonical for the reverse role (RFC 3986 §5.2.4): the path a route is
//! chosen by and the path its backend receives are the same string, so a client cannot reach
//! one route's server with a path another route's rules were meant for.

/// Why a request target could not be normalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// A ".." segment would climb above "/".
    AboveRoot,
    /// The target does not start with '/' (not origin-form).
    NotAbsolute,
}

impl PathError {
    /// The reason, for a 400 body and the log.
    pub fn why(&self) -> &'static str {
        match self {
            PathError::AboveRoot => "the path climbs above \"/\"",
            PathError::NotAbsolute => "the request target does not start with \"/\"",
        }
    }
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.why())
    }
}

/// How many dots a segment stands for when it is a dot-segment ("." 1, ".." 2, where "%2e"
/// and "%2E" count as "."), 0 when it is any other segment.
pub(super) fn dots(seg: &str) -> usize {
    let mut s = seg.as_bytes();
    let mut n = 0;
    while !s.is_empty() {
        s = match s {
            [b'.', rest @ ..] => rest,
            [b'%', b'2', b'e' | b'E', rest @ ..] => rest,
            _ => return 0,
        };
        n += 1;
        if n > 2 {
            return 0;
        }
    }
    n
}

/// Normalizes an origin-form request target (path plus optional "?query") per RFC 3986 §6.2.2:
/// in the path, escapes of unreserved characters are decoded ("%61" is "a", "%2e" is "." and
/// "%7E" is "~") and the hex digits of the other escapes written in upper case ("%c3" is
/// "%C3"), as every server reads them so; then "." and ".." segments are removed (§5.2.4);
/// the query (from the first '?') is copied unchanged. Without the first step a route would be
/// chosen by one spelling of a path while the backend, which decodes, serves another: `/%61dmin`
/// reaching `/admin` under the rules of `/`. Writes into `out` (cleared first; left empty on
/// error). A path that would climb above "/" is an error (the caller answers 400), where
/// RFC 3986 would silently stay at the root: a client that asks for that is probing for files
/// a backend never meant to publish. A target that does not start with '/' is an error too.
/// Empty segments are merged ("//" is "/") and a dot-segment with path parameters ("..;x")
/// is that dot-segment, as common servers read them. Everything else is kept byte-for-byte
/// (reserved escapes such as "%2F" stay escaped, other path parameters stay). A trailing "/."
/// or "/.." leaves a trailing "/" (RFC 3986).
pub fn normalize_path(target: &str, out: &mut String) -> Result<(), PathError> {
    out.clear();
    if !target.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let (path, query) = target.split_at(target.find('?').unwrap_or(target.len()));
    // `out` holds the segments kept so far, each with its leading '/'.
    let mut segments = path[1..].split('/').peekable();
    while let Some(seg) = segments.next() {
        if seg.is_empty() && segments.peek().is_some() {
            // "//" is "/", as nginx (merge_slashes), Go and Spring read it: `//admin` must
            // not pass for a path outside the `/admin` route.
            continue;
        }
        let start = out.len();
        out.push('/');
        push_escapes_normalized(out, seg);
        // A dot-segment with path parameters (`..;x`) is that dot-segment to Tomcat, Jetty
        // and Spring: the same here, parameters dropped.
        let name_end = out[start + 1..]
            .find(';')
            .map_or(out.len(), |i| start + 1 + i);
        match dots(&out[start + 1..name_end]) {
            0 => continue,
            1 => out.truncate(start),
            _ => {
                out.truncate(start);
                match out.rfind('/') {
                    Some(i) => out.truncate(i),
                    None => return Err(PathError::AboveRoot),
                }
            }
        }
        if segments.peek().is_none() {
            out.push('/');
        }
    }
    out.push_str(query);
    Ok(())
}

/// The value of an ASCII hex digit.
fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// RFC 3986 §2.3: a character that means the same escaped or not.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Appends `seg` with its escapes of unreserved characters decoded and the hex digits of
/// the others in upper case (RFC 3986 §6.2.2.1-2). A '%' without two hex digits stays as it is.
pub(super) fn push_escapes_normalized(out: &mut String, seg: &str) {
    let b = seg.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let pair = (b[i] == b'%')
            .then(|| Some((hex(*b.get(i + 1)?)?, hex(*b.get(i + 2)?)?)))
            .flatten();
        match pair {
            Some((hi, lo)) if unreserved(hi << 4 | lo) => out.push((hi << 4 | lo) as char),
            Some(_) => {
                out.push('%');
                out.push(b[i + 1].to_ascii_uppercase() as char);
                out.push(b[i + 2].to_ascii_uppercase() as char);
            }
            None => {
                // Copy up to the next '%' at once (`seg` is a str: its bytes up to an ASCII
                // '%' are whole characters).
                let end = b[i + 1..]
                    .iter()
                    .position(|&c| c == b'%')
                    .map_or(b.len(), |p| i + 1 + p);
                out.push_str(&seg[i..end]);
                i = end;
                continue;
            }
        }
        i += 3;
    }
}

/// `path` (normalized, no query) with each segment's path parameters (from its first ';')
/// left out, into `out`: what a route is matched on, since `/admin;jsessionid=1` is `/admin`
/// to the servers that read parameters.
pub fn without_params<'a>(path: &'a str, out: &'a mut String) -> &'a str {
    if !path.contains(';') {
        return path;
    }
    out.clear();
    for seg in path.split('/').skip(1) {
        out.push('/');
        out.push_str(&seg[..seg.find(';').unwrap_or(seg.len())]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(target: &str) -> Result<String, PathError> {
        let mut out = String::from("left over");
        normalize_path(target, &mut out).map(|()| out)
    }

    #[test]
    fn dot_segments_are_removed_as_rfc_3986_says() {
        // RFC 3986 §5.4: the merged paths of its examples, as they reach remove_dot_segments.
        for (target, want) in [
            ("/b/c/g", "/b/c/g"),
            ("/b/c/./g", "/b/c/g"),
            ("/b/c/g/", "/b/c/g/"),
            ("/b/c/.", "/b/c/"),
            ("/b/c/./", "/b/c/"),
            ("/b/c/..", "/b/"),
            ("/b/c/../", "/b/"),
            ("/b/c/../g", "/b/g"),
            ("/b/c/../..", "/"),
            ("/b/c/../../", "/"),
            ("/b/c/../../g", "/g"),
            ("/b/c/g.", "/b/c/g."),
            ("/b/c/.g", "/b/c/.g"),
            ("/b/c/g..", "/b/c/g.."),
            ("/b/c/..g", "/b/c/..g"),
            ("/b/c/./../g", "/b/g"),
            ("/b/c/./g/.", "/b/c/g/"),
            ("/b/c/g/./h", "/b/c/g/h"),
            ("/b/c/g/../h", "/b/c/h"),
            ("/b/c/g;x=1/./y", "/b/c/g;x=1/y"),
            ("/b/c/g;x=1/../y", "/b/c/y"),
            // §5.2.4's own walk-through
            ("/a/b/c/./../../g", "/a/g"),
            ("/", "/"),
            ("/.", "/"),
            ("/./", "/"),
            ("/a/..", "/"),
            ("/...", "/..."),
            ("/a//b", "/a/b"),
            ("//a", "/a"),
            ("/a//..", "/"),
            ("/a/", "/a/"),
            ("/a//", "/a/"),
            ("/x/..;/admin", "/admin"),
            ("/x/.;p/y", "/x/y"),
            ("/x/%2e%2e;a=b", "/"),
            ("/a;x=1/b", "/a;x=1/b"),
            ("/a/%41%2F/b", "/a/A%2F/b"),
            ("/%61dmin/%7e%2d%5F%2E%30", "/admin/~-_.0"),
            ("/caf%c3%a9/%2f%3F", "/caf%C3%A9/%2F%3F"),
            ("/a%/%4/%zz/%%41", "/a%/%4/%zz/%A"),
            ("/caf\u{e9}%61", "/caf\u{e9}a"),
        ] {
            assert_eq!(norm(target).as_deref(), Ok(want), "{target}");
        }
    }

    #[test]
    fn escaped_dots_count_and_climbing_is_refused() {
        for (target, want) in [
            ("/a/%2e/b", "/a/b"),
            ("/a/%2E/b", "/a/b"),
            ("/a/b/%2e%2e/c", "/a/c"),
            ("/a/b/.%2E/c", "/a/c"),
            ("/a/b/%2e./c", "/a/c"),
            ("/a/b/%2e%2e", "/a/"),
            ("/a/%2e%2e%2e", "/a/..."),
            ("/a/%2e%2", "/a/.%2"),
            ("/a/%2f..", "/a/%2F.."),
            ("/a/b/%2E%2e", "/a/"),
            ("/a/%252e%252e/b", "/a/%252e%252e/b"),
        ] {
            assert_eq!(norm(target).as_deref(), Ok(want), "{target}");
        }
        for target in [
            "/..",
            "/../",
            "/a/../..",
            "/%2e%2e/x",
            "/a/%2E%2E/%2e./b",
            "/./../a",
            "/..?x",
            "//..",
            "/x/..;/..;",
        ] {
            assert_eq!(norm(target), Err(PathError::AboveRoot), "{target}");
        }
        for target in ["", "a/b", "*", "http://a/b", "?x", "%2F"] {
            assert_eq!(norm(target), Err(PathError::NotAbsolute), "{target}");
        }
        let mut out = String::from("stale");
        assert!(normalize_path("/..", &mut out).is_err());
        assert_eq!(out, "", "an error leaves no half-made path");
        assert!(PathError::AboveRoot.why().contains("above"));
        assert_eq!(
            PathError::NotAbsolute.to_string(),
            PathError::NotAbsolute.why()
        );
    }

    #[test]
    fn the_query_is_left_as_it_came() {
        for (target, want) in [
            ("/a/../b?x=/../y", "/b?x=/../y"),
            ("/a/.?", "/a/?"),
            ("/?./..", "/?./.."),
            ("/a/b?q?r#s/..", "/a/b?q?r#s/.."),
            ("/a/..?%2e%2e", "/?%2e%2e"),
        ] {
            assert_eq!(norm(target).as_deref(), Ok(want), "{target}");
        }
    }

    /// A small deterministic generator, so the property test needs no crate and repeats.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    #[test]
    fn normalized_paths_hold_no_dot_segment_and_stay_as_they_are() {
        const PIECES: &[&str] = &["/", "a", ".", "..", "%2e", "%2E", "?"];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut target, mut again) = (String::new(), String::new());
        let mut out = String::new();
        let (mut ok, mut refused) = (0, 0);
        for _ in 0..50_000 {
            // Origin-form targets (the refusal of others is tested above), so that the
            // property is checked on real work.
            target.clear();
            target.push('/');
            for _ in 0..rng.below(16) {
                target.push_str(PIECES[rng.below(PIECES.len())]);
            }
            match normalize_path(&target, &mut out) {
                Ok(()) => ok += 1,
                Err(_) => {
                    refused += 1;
                    continue;
                }
            }
            assert!(out.starts_with('/'), "{target:?} -> {out:?}");
            let path = out.split('?').next().unwrap();
            assert!(
                path.split('/').all(|s| dots(s) == 0),
                "{target:?} -> {out:?} keeps a dot-segment"
            );
            // The query is the target's, byte for byte.
            assert_eq!(
                out.find('?').map(|i| &out[i..]),
                target.find('?').map(|i| &target[i..])
            );
            normalize_path(&out, &mut again).unwrap();
            assert_eq!(again, out, "not idempotent for {target:?}");
        }
        // Both outcomes are common: a generator that only made refused paths would pass.
        assert!(ok > 10_000 && refused > 2_000, "{ok} {refused}");
    }
}
