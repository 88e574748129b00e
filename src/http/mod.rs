//! HTTP/1.x pieces of the request path: head parsing with limits, body framing, header
//! rewriting for the next hop, and the replies ferry writes itself.

pub mod framing;
pub mod reply;
pub mod request;
pub mod response;
pub mod rewrite;

/// Finds the end of a message head (`\r\n\r\n`, or `\n\n` which RFC 9112 §2.2 lets a recipient
/// accept) in `buf`, starting the search at `from` so that a head dripped in byte by byte is
/// scanned once, not once per read. Returns the index just past the terminator.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let mut i = start;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if i >= 1 && buf[i - 1] == b'\n' {
                return Some(i + 1);
            }
            if i >= 3 && &buf[i - 3..i] == b"\r\n\r" {
                return Some(i + 1);
            }
        }
        i += 1;
    }
    None
}

/// Splits a comma-separated header value into trimmed, non-empty tokens.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// Trims optional white space (SP / HTAB) from both ends.
pub fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// True when the comma-separated `value` contains `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &str) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_found_across_reads() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
        assert_eq!(find_head_end(head, 0), Some(head.len() - 4));
        for split in 1..head.len() - 4 {
            assert_eq!(find_head_end(&head[..split], 0), None);
            assert_eq!(find_head_end(head, split), Some(head.len() - 4));
        }
        assert_eq!(find_head_end(b"GET / HTTP/1.0\n\nx", 0), Some(16));
    }

    #[test]
    fn token_lists() {
        assert!(has_token(b" keep-alive , Upgrade", "upgrade"));
        assert!(!has_token(b"keep-alive", "close"));
        assert_eq!(tokens(b",a,, b ,").count(), 2);
    }
}
