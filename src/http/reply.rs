//! The replies ferry writes itself. Every error a session can meet ends here, so the mapping
//! from "what went wrong" to a status line lives in one place.

use super::request::{HeadError, RequestHead};
use crate::buffer::Buf;
use std::borrow::Cow;
use std::io::Write;

/// The reply to a CONNECT whose tunnel is open.
pub const CONNECT_ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// Seconds a client is asked to wait when a pool has no upstream online.
pub const RETRY_AFTER_SECS: u32 = 10;

/// A failure that ferry answers itself, with its status and a short reason for the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub why: Cow<'static, str>,
    /// Add `Retry-After` (the pool is down, not the request wrong).
    pub retry_after: bool,
    /// One more field: `Proxy-Authenticate` of a 407, `Location` of a redirect, `Allow` of
    /// a 405.
    pub field: Option<(&'static str, String)>,
    /// The request was understood and the connection can go on after this answer (a
    /// redirect, a 404): kept when the client wants it and no request body is left unread.
    pub keep: bool,
}

impl Refusal {
    pub fn new(status: u16, why: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal {
            status,
            why: why.into(),
            retry_after: false,
            field: None,
            keep: false,
        }
    }

    /// With one more header field.
    pub fn with(mut self, name: &'static str, value: String) -> Refusal {
        self.field = Some((name, value));
        self
    }

    /// Answered without closing the connection (when nothing else forces a close).
    pub fn kept(mut self) -> Refusal {
        self.keep = true;
        self
    }

    /// 502 because no upstream of a pool is online: ask the client to come back.
    pub fn pool_down(pool: &str) -> Refusal {
        Refusal {
            status: 502,
            why: format!("no upstream proxy of pool {pool} is online").into(),
            retry_after: true,
            field: None,
            keep: false,
        }
    }

    /// 502 because a pool has no upstream at all (`on_all_down: reject`): a pool with nothing
    /// online like any other, but the body says how to get a direct proxy.
    pub fn no_upstream(pool: &str) -> Refusal {
        Refusal {
            why: crate::config::empty_pool_reason(pool).into(),
            ..Refusal::pool_down(pool)
        }
    }
}

impl Refusal {
    /// 503 because no server of a route's backend can take the request now (every one
    /// offline or at its `max_active`): ask the client to come back.
    pub fn servers_down(site: &str, route: &str, backend: &str) -> Refusal {
        Refusal {
            retry_after: true,
            ..Refusal::new(
                503,
                format!("site {site}, route {route}: no server of backend {backend} is available"),
            )
        }
    }
}

impl From<HeadError> for Refusal {
    fn from(e: HeadError) -> Refusal {
        match e {
            HeadError::Malformed(why) => Refusal::new(400, why),
            HeadError::UriTooLong => Refusal::new(414, "request line too long"),
            HeadError::TooLarge => Refusal::new(431, "request head too large"),
            HeadError::Version => Refusal::new(505, "only HTTP/1.0 and HTTP/1.1 are supported"),
        }
    }
}

/// The reason phrase for the statuses ferry writes.
pub fn reason(status: u16) -> &'static str {
    match status {
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        407 => "Proxy Authentication Required",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// Writes a complete error response with a plain-text body saying why, and `Connection: close`
/// (a refusal ends the client connection: after one, what follows cannot be trusted to be in
/// sync).
pub fn write(out: &mut Buf, r: &Refusal) {
    write_answer(out, r, Some("Connection: close\r\n"), true);
}

/// Writes `r` as a complete response; `conn` is ferry's `Connection` field, if any (an
/// answer that keeps the connection: none for HTTP/1.1, `keep-alive` for 1.0). Without
/// `body` (the answer to a HEAD) only the head goes out, with the length the body would
/// have (RFC 9110 §9.3.2): on a kept connection a body would be read as the next response.
pub fn write_answer(out: &mut Buf, r: &Refusal, conn: Option<&str>, body: bool) {
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\n",
        r.status,
        reason(r.status)
    );
    if r.retry_after {
        let _ = write!(out, "Retry-After: {RETRY_AFTER_SECS}\r\n");
    }
    if let Some((name, value)) = &r.field {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    let _ = write!(
        out,
        "Content-Length: {}\r\n{}\r\n",
        r.why.len() + 1,
        conn.unwrap_or("")
    );
    if body {
        let _ = writeln!(out, "{}", r.why);
    }
}

/// The answer to an OPTIONS or TRACE whose `Max-Forwards` is 0: ferry is its final recipient
/// (RFC 9110 §7.6.2). OPTIONS gets the methods a proxy relays; TRACE gets the request as
/// received (§9.3.8), less the fields that carry credentials or cookies. `head` is the raw
/// head the request was parsed from.
pub fn write_final_recipient(out: &mut Buf, req: &RequestHead<'_, '_>, head: &[u8], keep: bool) {
    let conn: &str = match (keep, req.minor) {
        (false, _) => "Connection: close\r\n",
        (true, 0) => "Connection: keep-alive\r\n",
        (true, _) => "",
    };
    if req.method == "OPTIONS" {
        let _ = write!(
            out,
            "HTTP/1.1 200 OK\r\nAllow: GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE\r\nContent-Length: 0\r\n{conn}\r\n"
        );
        return;
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or(b"");
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let secret = |n: &str| {
        ["authorization", "proxy-authorization", "cookie"]
            .iter()
            .any(|s| n.eq_ignore_ascii_case(s))
    };
    let mut len = line.len() + 4;
    for h in req.headers.iter().filter(|h| !secret(h.name)) {
        len += h.name.len() + 2 + h.value.len() + 2;
    }
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: message/http\r\nContent-Length: {len}\r\n{conn}\r\n"
    );
    out.push(line);
    out.push(b"\r\n");
    for h in req.headers.iter().filter(|h| !secret(h.name)) {
        out.push(h.name.as_bytes());
        out.push(b": ");
        out.push(h.value);
        out.push(b"\r\n");
    }
    out.push(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_is_complete_and_closes() {
        let mut b = Buf::with_capacity(8);
        write(&mut b, &Refusal::new(502, "upstream refused"));
        let s = std::str::from_utf8(b.bytes()).unwrap();
        assert!(s.starts_with("HTTP/1.1 502 Bad Gateway\r\n"));
        assert!(s.contains("Content-Length: 17\r\n"));
        assert!(s.ends_with("\r\n\r\nupstream refused\n"));
        assert!(s.contains("Connection: close"));
        let mut b = Buf::with_capacity(8);
        write(&mut b, &Refusal::pool_down("default"));
        assert!(std::str::from_utf8(b.bytes())
            .unwrap()
            .contains("\r\nRetry-After: 10\r\n"));
    }
}
