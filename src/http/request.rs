//! Request heads: parsed in place from the worker's buffer with httparse, checked against the
//! limits and the framing rules of RFC 9112 before anything is forwarded.

use super::framing::Framing;
use super::{has_token, tokens, trim};
use std::net::{IpAddr, Ipv6Addr};

/// Most header fields accepted in one head (more gets 431).
pub const MAX_HEADERS: usize = 100;
/// Longest request line accepted (more gets 414).
pub const MAX_REQUEST_LINE: usize = 8192;

/// What a request head asks for, as far as framing and routing care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodKind {
    Connect,
    Head,
    Other,
}

/// Why a request head was refused; each maps to one status in `reply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// 400 with the reason.
    Malformed(&'static str),
    /// 414: the request line alone is over `MAX_REQUEST_LINE`.
    UriTooLong,
    /// 431: the head is over `max_header_bytes`, or has too many fields.
    TooLarge,
    /// 505: not HTTP/1.0 or HTTP/1.1 (an HTTP/2 preface lands here).
    Version,
}

/// Where the request goes: `host` is as written (IPv6 without brackets), `path` is the
/// origin-form rest of an absolute-form target (may be empty or start with `?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub host: &'a str,
    /// The address `host` denotes when it is an IP literal, numeric forms included, in
    /// canonical form (see `addr`); `None` for a name.
    pub ip: Option<IpAddr>,
    pub port: u16,
    pub path: &'a str,
}

impl Target<'_> {
    /// True when `host` is an IPv6 literal and must be bracketed in an authority.
    pub fn is_v6(&self) -> bool {
        self.host.contains(':')
    }
}

/// A parsed request head, borrowing from the buffer it was parsed from.
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    pub method: &'b str,
    pub kind: MethodKind,
    /// The `x` of `HTTP/1.x`.
    pub minor: u8,
    pub target: Target<'b>,
    pub headers: &'h [httparse::Header<'b>],
    pub framing: Framing,
    /// Whether the client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// `Connection: upgrade` with an `Upgrade` field (WebSocket through the proxy).
    pub upgrade: bool,
    /// `Max-Forwards` of an OPTIONS or TRACE request (RFC 9110 §7.6.2); other methods ignore
    /// the field.
    pub max_forwards: Option<u32>,
    /// The value of the `Host` field, if there is one (there is at most one).
    pub host: Option<&'b str>,
    /// Bytes of the head, terminator included.
    pub len: usize,
}

/// Parses the request head at the start of `buf`, which the caller has seen to contain a whole
/// head (see `find_head_end`). `Ok(None)` means httparse wants more bytes (blank lines before
/// the request line can make the first terminator a false one).
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
) -> Result<Option<RequestHead<'h, 'b>>, HeadError> {
    parse_in(buf, headers, false)
}

/// `parse`, where `origin_form` says whether an origin-form target (`/path?query`, or `*` for
/// OPTIONS) is what is expected: on a reverse listener it is, and the target then has an
/// empty host (the site is found by `Host`) and the whole target as its path (`*` gives an
/// empty path, as for an absolute-form OPTIONS without one).
pub fn parse_in<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
    origin_form: bool,
) -> Result<Option<RequestHead<'h, 'b>>, HeadError> {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    if line_end > MAX_REQUEST_LINE {
        return Err(HeadError::UriTooLong);
    }
    let mut req = httparse::Request::new(headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => return Err(HeadError::Version),
        Err(httparse::Error::HeaderName) => {
            return Err(HeadError::Malformed("invalid header name"))
        }
        Err(httparse::Error::HeaderValue) => {
            return Err(HeadError::Malformed("invalid header value"))
        }
        Err(httparse::Error::NewLine) => return Err(HeadError::Malformed("invalid line ending")),
        Err(_) => return Err(HeadError::Malformed("malformed request line")),
    };
    let method = req.method.unwrap_or("");
    let minor = req.version.unwrap_or(1);
    let raw_target = req.path.unwrap_or("");
    let headers: &'h [httparse::Header<'b>] = req.headers;

    let kind = if method == "CONNECT" {
        MethodKind::Connect
    } else if method == "HEAD" {
        MethodKind::Head
    } else {
        MethodKind::Other
    };
    let origin = |path| Target {
        host: "",
        ip: None,
        port: 0,
        path,
    };
    let target = match kind {
        MethodKind::Connect => parse_authority(raw_target, None)?,
        _ if origin_form && raw_target.starts_with('/') => origin(raw_target),
        _ if origin_form && raw_target == "*" && method == "OPTIONS" => origin(""),
        _ => parse_absolute(raw_target)?,
    };

    let mut keep_alive = minor == 1;
    let mut upgrade_token = false;
    let mut upgrade_field = false;
    let mut te_chunked: Option<bool> = None;
    let mut length: Option<u64> = None;
    let mut hosts = 0;
    let mut host = None;
    let mut max_forwards = None;
    let mut closes = false;
    for h in headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("proxy-connection")
        {
            if has_token(h.value, "close") {
                closes = true;
            } else if minor == 0 && has_token(h.value, "keep-alive") {
                keep_alive = true;
            }
            upgrade_token |= has_token(h.value, "upgrade");
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade_field = !trim(h.value).is_empty();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding of the last field decides (RFC 9112 §6.3 rule 4); chunked
            // applied twice is an error (§6.1), and so is anything after it.
            if tokens(h.value).next().is_none() {
                return Err(HeadError::Malformed("empty Transfer-Encoding"));
            }
            for t in tokens(h.value) {
                if te_chunked == Some(true) {
                    return Err(HeadError::Malformed("a coding after chunked"));
                }
                te_chunked = Some(t.eq_ignore_ascii_case(b"chunked"));
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(merge_length(length, h.value)?);
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            host = std::str::from_utf8(trim(h.value)).ok();
        } else if name.eq_ignore_ascii_case("max-forwards") && matches!(method, "OPTIONS" | "TRACE")
        {
            let n =
                parse_decimal(trim(h.value)).ok_or(HeadError::Malformed("invalid Max-Forwards"))?;
            // Several fields: the lowest counts (and is sent on as one field).
            let n = n.min(u32::MAX as u64) as u32;
            max_forwards = Some(max_forwards.map_or(n, |m: u32| m.min(n)));
        }
    }
    if hosts > 1 {
        return Err(HeadError::Malformed("more than one Host field"));
    }
    // `close` in any connection field wins over a `keep-alive` in another.
    keep_alive &= !closes;
    if minor == 0 && te_chunked.is_some() {
        // RFC 9112 §6.1: an HTTP/1.0 recipient cannot know chunked; a server must treat a
        // 1.0 message with Transfer-Encoding as faulty framing.
        return Err(HeadError::Malformed(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    let framing = match (te_chunked, length) {
        // RFC 9112 §6.3: a message with both could be smuggling; refuse it.
        (Some(_), Some(_)) => {
            return Err(HeadError::Malformed(
                "both Content-Length and Transfer-Encoding",
            ))
        }
        (Some(true), None) => Framing::Chunked,
        (Some(false), None) => {
            return Err(HeadError::Malformed(
                "Transfer-Encoding does not end in chunked",
            ))
        }
        (None, Some(n)) => Framing::Length(n),
        (None, None) => Framing::None,
    };
    if kind == MethodKind::Connect && framing != Framing::None {
        return Err(HeadError::Malformed("CONNECT with a body"));
    }
    Ok(Some(RequestHead {
        method,
        kind,
        minor,
        target,
        headers,
        framing,
        keep_alive,
        upgrade: upgrade_token && upgrade_field && kind != MethodKind::Connect,
        max_forwards,
        host,
        len,
    }))
}

/// Folds one Content-Length field into what earlier fields said: every value, across fields
/// and comma lists, must be the same number (RFC 9112 §6.3 rule 5).
pub fn merge_length(prev: Option<u64>, value: &[u8]) -> Result<u64, HeadError> {
    let mut seen = prev;
    let mut any = false;
    for t in value.split(|&b| b == b',').map(trim) {
        any = true;
        let n = parse_decimal(t).ok_or(HeadError::Malformed("invalid Content-Length"))?;
        if seen.is_some_and(|p| p != n) {
            return Err(HeadError::Malformed("conflicting Content-Length values"));
        }
        seen = Some(n);
    }
    match (any, seen) {
        (true, Some(n)) => Ok(n),
        _ => Err(HeadError::Malformed("invalid Content-Length")),
    }
}

/// A non-empty run of ASCII digits that fits in u64 (no sign, no spaces).
pub fn parse_decimal(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in t {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as u64;
    }
    Some(n)
}

/// False when the bytes at the start of a request head (leading empty lines dropped) cannot
/// begin a request line: its method is a token (RFC 9110 §9.1), so a byte that is not a token
/// character before the first space means the peer speaks something else (a TLS ClientHello
/// begins with 0x16). Only the method is looked at, so a head dripped in byte by byte costs
/// no rescanning past it.
pub fn plausible_start(bytes: &[u8]) -> bool {
    if bytes == b"\r" {
        return true; // the start of an empty line, the rest of which is still on its way
    }
    for (i, &b) in bytes.iter().enumerate() {
        if b == b' ' {
            return i > 0;
        }
        if !is_tchar(b) {
            return false;
        }
    }
    true
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `http://authority[/path?query]` → target; other schemes and origin-form are refused: a
/// forward proxy must be told where to go.
fn parse_absolute(raw: &str) -> Result<Target<'_>, HeadError> {
    let rest = match raw.get(..7) {
        Some(s) if s.eq_ignore_ascii_case("http://") => &raw[7..],
        _ if raw.starts_with('/') => {
            return Err(HeadError::Malformed(
                "origin-form request to a proxy (use an absolute http:// URL)",
            ))
        }
        _ => {
            return Err(HeadError::Malformed(
                "only http:// targets or CONNECT are proxied",
            ))
        }
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains('@') {
        return Err(HeadError::Malformed("userinfo in request target"));
    }
    let mut t = parse_authority(authority, Some(80))?;
    let path = &rest[end..];
    if path.starts_with('#') {
        return Err(HeadError::Malformed("fragment in request target"));
    }
    t.path = path;
    Ok(t)
}

/// `host[:port]` or `[v6]:port`; `default_port` None means the port is required (CONNECT).
pub fn parse_authority(raw: &str, default_port: Option<u16>) -> Result<Target<'_>, HeadError> {
    let bracketed = raw.starts_with('[');
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let close = rest
            .find(']')
            .ok_or(HeadError::Malformed("unclosed [ in host"))?;
        let host = &rest[..close];
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(HeadError::Malformed("invalid IPv6 literal"));
        }
        let after = &rest[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(HeadError::Malformed("junk after IPv6 literal")),
        };
        (host, port)
    } else {
        match raw.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (raw, None),
        }
    };
    // Only a bracketed literal may contain ':' (found by fuzzing: `h:h:80` is not IPv6).
    if !bracketed && !valid_host(host) {
        return Err(HeadError::Malformed("invalid host"));
    }
    let ip = crate::addr::host_ip(host).map_err(HeadError::Malformed)?;
    let port = match port {
        Some(p) => match parse_decimal(p.as_bytes()) {
            Some(n @ 1..=65535) => n as u16,
            _ => return Err(HeadError::Malformed("invalid port")),
        },
        None => default_port.ok_or(HeadError::Malformed("port missing in CONNECT target"))?,
    };
    Ok(Target {
        host,
        ip,
        port,
        path: "",
    })
}

/// A DNS name or IPv4 literal: letters, digits, `-`, `_`, `.`; at most 253 bytes.
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    type Summary = (MethodKind, String, u16, String, Framing, bool, bool);

    fn p(raw: &[u8]) -> Result<Option<Summary>, HeadError> {
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        parse(raw, &mut hs).map(|o| {
            o.map(|r| {
                (
                    r.kind,
                    r.target.host.to_string(),
                    r.target.port,
                    r.target.path.to_string(),
                    r.framing,
                    r.keep_alive,
                    r.upgrade,
                )
            })
        })
    }

    #[test]
    fn absolute_form_targets() {
        let r = p(b"GET http://Example.com:8081/a?b HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            r,
            (
                MethodKind::Other,
                "Example.com".into(),
                8081,
                "/a?b".into(),
                Framing::None,
                true,
                false
            )
        );
        let r = p(b"GET http://h?q HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!(
            (r.1.as_str(), r.2, r.3.as_str(), r.5),
            ("h", 80, "?q", false)
        );
        let r = p(b"GET http://[::1]:9/ HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!((r.1.as_str(), r.2), ("::1", 9));
    }

    #[test]
    fn connect_targets() {
        let r = p(b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!((r.0, r.1.as_str(), r.2), (MethodKind::Connect, "::1", 443));
        assert!(p(b"CONNECT host HTTP/1.1\r\n\r\n").is_err());
        assert!(p(b"CONNECT host:0 HTTP/1.1\r\n\r\n").is_err());
        assert!(p(b"CONNECT host:70000 HTTP/1.1\r\n\r\n").is_err());
        assert!(p(b"CONNECT h:h:80 HTTP/1.1\r\n\r\n").is_err());
        assert!(p(b"GET http://h:h:8080/x HTTP/1.1\r\n\r\n").is_err());
        assert!(p(b"GET http://::1/x HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn numeric_and_mapped_hosts_are_addresses() {
        let target = |raw: &[u8]| {
            let mut hs = [httparse::EMPTY_HEADER; 4];
            parse(raw, &mut hs).map(|o| o.map(|r| (r.target.host.to_string(), r.target.ip)))
        };
        let lo = Some("127.0.0.1".parse::<IpAddr>().unwrap());
        for raw in [
            &b"GET http://2130706433:8/ HTTP/1.1\r\n\r\n"[..],
            b"GET http://0177.0.0.1/ HTTP/1.1\r\n\r\n",
            b"GET http://127.1/ HTTP/1.1\r\n\r\n",
            b"CONNECT 0x7f.0.0.1:443 HTTP/1.1\r\n\r\n",
            b"CONNECT [::ffff:127.0.0.1]:443 HTTP/1.1\r\n\r\n",
            b"GET http://[::ffff:7f00:1]/ HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(target(raw).unwrap().unwrap().1, lo, "{raw:?}");
        }
        // The host stays as written: it is what the client named (and logs say).
        let (host, _) = target(b"GET http://127.1/ HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(host, "127.1");
        assert_eq!(
            target(b"GET http://a.example/ HTTP/1.1\r\n\r\n")
                .unwrap()
                .unwrap()
                .1,
            None
        );
        assert_eq!(
            target(b"CONNECT 4294967296:443 HTTP/1.1\r\n\r\n").unwrap_err(),
            HeadError::Malformed(crate::addr::NOT_AN_ADDRESS)
        );
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |raw: &[u8]| p(raw).unwrap().unwrap().5;
        assert!(ka(b"GET http://h/ HTTP/1.1\r\n\r\n"));
        assert!(!ka(b"GET http://h/ HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!ka(
            b"GET http://h/ HTTP/1.1\r\nProxy-Connection: close\r\n\r\n"
        ));
        assert!(!ka(b"GET http://h/ HTTP/1.0\r\n\r\n"));
        assert!(ka(
            b"GET http://h/ HTTP/1.0\r\nProxy-Connection: Keep-Alive\r\n\r\n"
        ));
    }

    #[test]
    fn framing_rules() {
        let f = |raw: &[u8]| p(raw).map(|o| o.unwrap().4);
        assert_eq!(
            f(b"POST http://h/ HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            f(b"POST http://h/ HTTP/1.1\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            f(b"POST http://h/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        assert!(f(
            b"POST http://h/ HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .is_err());
        assert!(
            f(b"POST http://h/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
                .is_err()
        );
        assert!(f(b"POST http://h/ HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n").is_err());
        assert!(f(b"POST http://h/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n").is_err());
        assert!(
            f(b"POST http://h/ HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n").is_err()
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(
            p(b"GET /local HTTP/1.1\r\n\r\n").unwrap_err(),
            HeadError::Malformed("origin-form request to a proxy (use an absolute http:// URL)")
        );
        assert!(p(b"GET https://h/ HTTP/1.1\r\n\r\n").is_err());
        assert!(p(b"GET http://u:p@h/ HTTP/1.1\r\n\r\n").is_err());
        assert!(p(b"GET http://h/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").is_err());
        assert_eq!(
            p(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap_err(),
            HeadError::Version
        );
        let mut long = b"GET http://h/".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_REQUEST_LINE));
        long.extend(b" HTTP/1.1\r\n\r\n");
        assert_eq!(p(&long).unwrap_err(), HeadError::UriTooLong);
        let mut many = b"GET http://h/ HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend(b"\r\n");
        assert_eq!(p(&many).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn upgrade_detected() {
        let r = p(b"GET http://h/ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(r.6);
    }
}
