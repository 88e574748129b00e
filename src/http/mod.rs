//! HTTP/1.x pieces of the request path: head parsing with limits, body framing, header
//! rewriting for the next hop, and the replies ferry writes itself.

pub mod forwarded;
pub mod framing;
pub mod proxy_protocol;
pub mod reply;
pub mod request;
pub mod response;
pub mod rewrite;

use crate::buffer::Buf;

/// Finds the end of a message head (`\r\n\r\n`, or `\n\n` which RFC 9112 §2.2 lets a recipient
/// accept) in `buf` whose last byte is at `from` or later, so that a head dripped in byte by
/// byte is scanned once, not once per read, and a terminator once reported is never reported
/// again. Returns the index just past the terminator.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            // `\n\n` and `\n\r\n` (an LF-ended line, then a CRLF empty line) as httparse
            // reads them; `\r\n\r\n` below.
            if i >= 1 && buf[i - 1] == b'\n' {
                return Some(i + 1);
            }
            if i >= 2 && &buf[i - 2..i] == b"\n\r" {
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

/// How many bytes of empty lines (`\r\n` or `\n`) stand at the start of `buf`. RFC 9112 §2.2:
/// a recipient ignores empty lines received before a request or status line, so they are
/// dropped before a head is looked for (a lone `\r` stays: more may complete it).
pub fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut n = 0;
    loop {
        match &buf[n..] {
            [b'\n', ..] => n += 1,
            [b'\r', b'\n', ..] => n += 2,
            _ => return n,
        }
    }
}

/// The search for the end of the next head in a buffer that grows at its end and is consumed
/// from its front. Every candidate it returns ends strictly past the last one, so a loop that
/// asks again when the parser wants more bytes always makes progress and stops at the end of
/// the buffer (two empty lines once made such a loop find the same terminator forever).
#[derive(Debug, Default, Clone, Copy)]
pub struct HeadScan {
    scanned: usize,
}

impl HeadScan {
    /// The end of the next candidate head in `buf` (a terminator not returned before), or
    /// `None` when `buf` holds no further terminator.
    pub fn next_end(&mut self, buf: &[u8]) -> Option<usize> {
        match find_head_end(buf, self.scanned) {
            Some(end) => {
                self.scanned = end;
                Some(end)
            }
            None => {
                self.scanned = buf.len();
                None
            }
        }
    }

    /// `n` bytes were consumed from the front of the buffer.
    pub fn consumed(&mut self, n: usize) {
        self.scanned = self.scanned.saturating_sub(n);
    }

    /// How far the buffer has been searched.
    pub fn scanned(&self) -> usize {
        self.scanned
    }
}

/// One step of the search for the next head in `buf`, the same for requests and responses:
/// drops empty lines before it (RFC 9112 §2.2), then returns the end of the next candidate
/// head, always past the last one `scan` returned (so a caller that loops when the parser
/// wants more bytes makes progress), or `None` when `buf` holds no further terminator.
pub fn seek_head(buf: &mut Buf, scan: &mut HeadScan) -> Option<usize> {
    let blank = leading_empty_lines(buf.bytes());
    if blank > 0 {
        buf.consume(blank);
        scan.consumed(blank);
    }
    scan.next_end(buf.bytes())
}

/// Drives head scanning over a byte stream that arrives in `chunks`, step for step as a
/// session does (empty lines dropped, `HeadScan` for the next terminator, the real parser,
/// a parsed head consumed), and checks that every step makes progress: each pass of the loop
/// consumes bytes or searches strictly further, and the loop ends when the bytes do. Returns
/// the heads found, or what went wrong. For the property test and the `scan` fuzz target:
/// the parsers were fuzzed alone once, while the loop around them spun on two empty lines.
#[doc(hidden)]
pub fn check_scan_progress(chunks: &[&[u8]], responses: bool) -> Result<usize, String> {
    let mut buf = Buf::with_capacity(64);
    let mut scan = HeadScan::default();
    let mut heads = 0;
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    // Every pass consumes a byte or moves the search past at least one, or waits.
    let mut budget = 2 * total + chunks.len() + 1;
    for chunk in chunks {
        buf.push(chunk);
        loop {
            budget = budget
                .checked_sub(1)
                .ok_or_else(|| format!("the scan loop spun ({heads} heads, {:?})", buf.bytes()))?;
            let (len, before) = (buf.len(), scan.scanned());
            let Some(end) = seek_head(&mut buf, &mut scan) else {
                if !responses && !request::plausible_start(buf.bytes()) {
                    return Ok(heads); // refused at once
                }
                break; // wait for more bytes
            };
            let blank = len - buf.len();
            let before = before.saturating_sub(blank);
            if end <= before || end > buf.len() {
                return Err(format!("the scan did not advance: {before} -> {end}"));
            }
            let head = &buf.bytes()[..end];
            let parsed = if responses {
                let mut hs = [httparse::EMPTY_HEADER; response::MAX_HEADERS];
                response::parse(head, &mut hs, request::MethodKind::Other)
                    .map(|h| h.map(|h| h.len))
                    .map_err(|_| ())
            } else {
                let mut hs = [httparse::EMPTY_HEADER; request::MAX_HEADERS];
                request::parse(head, &mut hs)
                    .map(|h| h.map(|h| h.len))
                    .map_err(|_| ())
            };
            match parsed {
                Ok(Some(len)) if len == 0 || len > end => {
                    return Err(format!("a head of {len} bytes from a scan to {end}"))
                }
                Ok(Some(len)) => {
                    buf.consume(len);
                    scan = HeadScan::default();
                    heads += 1;
                }
                Ok(None) => {} // not a head after all: the scan goes past it
                Err(()) => return Ok(heads), // refused, connection closed
            }
        }
    }
    Ok(heads)
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

/// Decodes `%XX` escapes (RFC 3986 §2.1); None when one is malformed or the result is not
/// UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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
        // A terminator is reported once: searching on from its end finds nothing more.
        assert_eq!(find_head_end(b"\n\n", 0), Some(2));
        assert_eq!(find_head_end(b"\n\n", 2), None);
        assert_eq!(find_head_end(b"\r\n\r\n", 4), None);
        // An LF-ended field line, then a CRLF empty line (httparse takes it as the end).
        assert_eq!(
            find_head_end(b"HTTP/1.1 200 OK\r\nA: b\n\r\nx", 0),
            Some(24)
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.0\n\nx", 0), Some(16));
    }

    /// A small deterministic generator, so the property test needs no crate and repeats.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn scan_loop_always_advances() {
        // Streams built mostly of the bytes that end lines and heads, split anywhere.
        const PIECES: &[&[u8]] = &[
            b"\r",
            b"\n",
            b"\r\n",
            b"\n\n",
            b"\r\n\r\n",
            b" ",
            b":",
            b"GET",
            b" / ",
            b"GET http://a/ HTTP/1.1",
            b"HTTP/1.1 200 OK",
            b"HTTP/1.1 100 Continue",
            b"Host: a",
            b"X: y",
            b"\x16\x03",
            b"\t",
            b"POST http://a/ HTTP/1.0",
        ];
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for case in 0..20_000 {
            let mut stream = Vec::new();
            for _ in 0..rng.below(24) {
                stream.extend_from_slice(PIECES[rng.below(PIECES.len())]);
            }
            let mut cuts: Vec<usize> = (0..rng.below(6))
                .map(|_| rng.below(stream.len() + 1))
                .collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([stream.len()]) {
                chunks.push(&stream[at..c]);
                at = c;
            }
            for responses in [false, true] {
                if let Err(e) = check_scan_progress(&chunks, responses) {
                    panic!("case {case} {:?}: {e}", String::from_utf8_lossy(&stream));
                }
            }
        }
        // The streams that spun a worker before.
        for s in [&b"\n\n"[..], b"\r\n\r\n", b"\n\nGET http://a/ HTTP/1.1\n\n"] {
            assert!(check_scan_progress(&[s], false).is_ok());
            assert!(check_scan_progress(&[s], true).is_ok());
        }
        assert_eq!(
            check_scan_progress(&[b"\r\n\r\nGET http://a/ HTTP/1.1\r\n\r\n"], false),
            Ok(1)
        );
    }

    #[test]
    fn token_lists() {
        assert!(has_token(b" keep-alive , Upgrade", "upgrade"));
        assert!(!has_token(b"keep-alive", "close"));
        assert_eq!(tokens(b",a,, b ,").count(), 2);
    }
}
