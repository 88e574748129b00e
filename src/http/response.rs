//! Response heads from an origin or upstream proxy: parsed in place, framed by RFC 9112 §6.3.
//! A head ferry cannot frame with certainty is an upstream error (502), never guessed at.

use super::framing::Framing;
use super::request::{merge_length, MethodKind};
use super::{has_token, tokens};

/// Header fields parsed on the stack; a head with more is parsed again into a larger array.
pub const MAX_HEADERS: usize = 128;
/// The error `parse` gives when `headers` is too small for the head's fields.
pub const TOO_MANY_HEADERS: &str = "too many header fields";

/// A parsed response head, borrowing from the buffer it was parsed from.
#[derive(Debug)]
pub struct ResponseHead<'h, 'b> {
    pub code: u16,
    pub reason: &'b str,
    pub minor: u8,
    pub headers: &'h [httparse::Header<'b>],
    pub framing: Framing,
    /// The value of its `Content-Length` field(s), if any (all must agree).
    pub content_length: Option<u64>,
    /// Whether the sender will keep the connection open after this response.
    pub keep_alive: bool,
    /// Bytes of the head, terminator included.
    pub len: usize,
}

impl ResponseHead<'_, '_> {
    /// 1xx other than 101: relayed, then the real response follows (RFC 9110 §15.2).
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.code) && self.code != 101
    }
}

/// Parses the response head at the start of `buf` (which holds a whole head); `req` is the
/// method of the request it answers, which decides whether a body follows.
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
    req: MethodKind,
) -> Result<Option<ResponseHead<'h, 'b>>, &'static str> {
    let mut resp = httparse::Response::new(headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(TOO_MANY_HEADERS),
        Err(_) => return Err("malformed response head"),
    };
    let code = resp.code.unwrap_or(0);
    let minor = resp.version.unwrap_or(1);
    let reason = resp.reason.unwrap_or("");
    let headers: &'h [httparse::Header<'b>] = resp.headers;
    if !(100..=999).contains(&code) {
        return Err("invalid status code");
    }

    let mut keep_alive = minor == 1;
    let mut te_chunked: Option<bool> = None;
    let mut length: Option<u64> = None;
    for h in headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            if has_token(h.value, "close") {
                keep_alive = false;
            } else if minor == 0 && has_token(h.value, "keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te_chunked = Some(
                tokens(h.value)
                    .last()
                    .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")),
            );
        } else if h.name.eq_ignore_ascii_case("content-length") {
            length = Some(merge_length(length, h.value).map_err(|_| "invalid Content-Length")?);
        }
    }
    let bodiless = req == MethodKind::Head
        || (100..200).contains(&code)
        || code == 204
        || code == 304
        || (req == MethodKind::Connect && (200..300).contains(&code));
    let framing = if bodiless {
        Framing::None
    } else {
        match (te_chunked, length) {
            (Some(_), Some(_)) => return Err("both Content-Length and Transfer-Encoding"),
            (Some(true), None) => Framing::Chunked,
            (Some(false), None) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    // RFC 9112 §6.1: after an HTTP/1.0 message with Transfer-Encoding the connection closes,
    // whatever it says.
    if framing == Framing::UntilClose || (minor == 0 && te_chunked.is_some()) {
        keep_alive = false;
    }
    Ok(Some(ResponseHead {
        code,
        reason,
        minor,
        headers,
        framing,
        content_length: length,
        keep_alive,
        len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(raw: &[u8], req: MethodKind) -> Result<(u16, Framing, bool), &'static str> {
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        parse(raw, &mut hs, req).map(|r| {
            let r = r.unwrap();
            (r.code, r.framing, r.keep_alive)
        })
    }

    #[test]
    fn framing_by_status_and_method() {
        let g = MethodKind::Other;
        assert_eq!(
            p(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", g),
            Ok((200, Framing::Length(3), true))
        );
        assert_eq!(
            p(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
                MethodKind::Head
            ),
            Ok((200, Framing::None, true))
        );
        assert_eq!(
            p(b"HTTP/1.1 204 No Content\r\n\r\n", g),
            Ok((204, Framing::None, true))
        );
        assert_eq!(
            p(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", g),
            Ok((304, Framing::None, true))
        );
        assert_eq!(
            p(b"HTTP/1.1 100 Continue\r\n\r\n", g),
            Ok((100, Framing::None, true))
        );
        assert_eq!(
            p(b"HTTP/1.1 200 OK\r\n\r\n", g),
            Ok((200, Framing::UntilClose, false))
        );
        assert_eq!(
            p(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", g),
            Ok((200, Framing::Chunked, true))
        );
        assert_eq!(
            p(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", g),
            Ok((200, Framing::Length(1), false))
        );
        assert_eq!(
            p(
                b"HTTP/1.1 200 Connection established\r\n\r\n",
                MethodKind::Connect
            ),
            Ok((200, Framing::None, true))
        );
        assert!(p(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            g
        )
        .is_err());
        assert!(p(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            g
        )
        .is_err());
        assert!(p(b"HTTP/1.1 abc OK\r\n\r\n", g).is_err());
    }
}
