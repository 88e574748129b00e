//! The replies ferry writes itself. Every error a session can meet ends here, so the mapping
//! from "what went wrong" to a status line lives in one place.

use super::request::HeadError;
use crate::buffer::Buf;
use std::io::Write;

/// The reply to a CONNECT whose tunnel is open.
pub const CONNECT_ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// A failure that ferry answers itself, with its status and a short reason for the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub why: &'static str,
}

impl Refusal {
    pub const fn new(status: u16, why: &'static str) -> Refusal {
        Refusal { status, why }
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
        400 => "Bad Request",
        403 => "Forbidden",
        407 => "Proxy Authentication Required",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// Writes a complete error response with a plain-text body saying why, and `Connection: close`
/// (every refusal ends the client connection: after one, what follows cannot be trusted to be
/// in sync).
pub fn write(out: &mut Buf, r: Refusal) {
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}\n",
        r.status,
        reason(r.status),
        r.why.len() + 1,
        r.why
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_is_complete_and_closes() {
        let mut b = Buf::with_capacity(8);
        write(&mut b, Refusal::new(502, "upstream refused"));
        let s = std::str::from_utf8(b.bytes()).unwrap();
        assert!(s.starts_with("HTTP/1.1 502 Bad Gateway\r\n"));
        assert!(s.contains("Content-Length: 17\r\n"));
        assert!(s.ends_with("\r\n\r\nupstream refused\n"));
        assert!(s.contains("Connection: close"));
    }
}
