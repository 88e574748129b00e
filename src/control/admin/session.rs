//! One admin connection's HTTP/1.1 exchange, without its socket: the server (or a fuzz target,
//! or a unit test) hands in the bytes it read and takes out the bytes to write, and this keeps
//! every bound DESIGN §6 asks of the admin server.
//!
//! Lifecycle: a request head is gathered (at most `MAX_REQUEST` bytes, within the header
//! timeout counted once from its first byte), then its body when it has a `Content-Length`
//! (at most `MAX_BODY` bytes, 413 beyond; chunked bodies get 411; the whole request within
//! the same timeout), answered into the output and consumed; pipelined requests are answered
//! in order. While the unsent output is at `OUT_LIMIT` or more, no head is
//! answered and no input is taken, so a client that does not read its answers stalls only
//! itself, with its memory bounded. After `Connection: close`, an error reply or the peer's
//! EOF the session is closing, and it is done once its output is written.

use super::answer;
use super::Host;
use std::time::{Duration, Instant};

/// Largest admin request head.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Largest request body (a control API call's JSON; a whole config fits many times).
pub const MAX_BODY: usize = 64 * 1024;
/// Unsent output at which the session stops answering and reading; one answer may overshoot
/// it, so output stays under this plus the largest answer (a `/metrics` text).
pub const OUT_LIMIT: usize = 16 * 1024;
/// How long a connection may sit idle between requests, or with its output not moving.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The input buffer's size: a whole head past the consumed bytes, so that moving the unread
/// tail to the front is needed only when the consumed bytes outnumber it (amortised O(1)).
const IN_CAP: usize = 2 * MAX_REQUEST;

/// One admin connection's protocol state.
pub struct AdminSession {
    /// Input; `inbuf[start..]` is not yet answered.
    inbuf: Vec<u8>,
    start: usize,
    /// How much of `inbuf[start..]` has been searched for a head's end, so that a head
    /// dripped in is scanned once.
    scanned: usize,
    /// A complete head waiting for its body: the head's length and the body's (the head is
    /// parsed once, however slowly the body comes).
    pending: Option<(usize, usize)>,
    /// Output; `out[sent..]` is not yet written.
    out: Vec<u8>,
    sent: usize,
    header_timeout: Duration,
    /// When the head being gathered must be complete. Set once, at its first byte (or, for
    /// a pipelined head, when the server turned to it); more bytes do not move it.
    head_deadline: Option<Instant>,
    /// The last sign of life: a request answered or output written.
    active_at: Instant,
    /// When the last request was answered (or the connection opened): how the server tells
    /// a useful connection from a stalled one when it must make room.
    answered_at: Instant,
    eof: bool,
    closing: bool,
}

impl AdminSession {
    /// A session for a connection accepted at `now`; heads must arrive within `header_timeout`.
    pub fn new(now: Instant, header_timeout: Duration) -> AdminSession {
        AdminSession {
            inbuf: Vec::new(),
            start: 0,
            scanned: 0,
            pending: None,
            out: Vec::new(),
            sent: 0,
            header_timeout,
            head_deadline: None,
            active_at: now,
            answered_at: now,
            eof: false,
            closing: false,
        }
    }

    /// How many bytes the session takes now; 0 while its output is over the bound, while a
    /// whole head's worth of input (or the rest of a body) waits, or once it is closing.
    pub fn input_room(&self) -> usize {
        if self.closing || self.eof || self.unsent().len() >= OUT_LIMIT {
            return 0;
        }
        let want = self.pending.map_or(MAX_REQUEST, |(head, body)| head + body);
        want.saturating_sub(self.inbuf.len() - self.start)
    }

    /// Takes bytes read from the peer; at most `input_room()` of them.
    pub fn received(&mut self, bytes: &[u8]) {
        debug_assert!(bytes.len() <= self.input_room());
        let take = bytes.len().min(self.input_room());
        // A request with a body may need more than `IN_CAP`; it then has the buffer to
        // itself (compacted), and `answer` shrinks it back once it is consumed.
        let cap = IN_CAP.max(self.pending.map_or(0, |(head, body)| head + body));
        if self.inbuf.len() + take > cap {
            // Only reached when more was consumed than is left (see IN_CAP).
            self.compact_input();
        }
        // Allocated once, whole, so that growth never overshoots it.
        self.inbuf.reserve_exact(cap - self.inbuf.len());
        self.inbuf.extend_from_slice(&bytes[..take]);
    }

    /// The peer will send nothing more: what is complete is still answered.
    pub fn received_eof(&mut self) {
        self.eof = true;
    }

    /// Answers the complete heads waiting, in order, until the output reaches its bound.
    /// Returns true when it answered anything or started closing.
    pub fn answer(&mut self, now: Instant, host: &mut dyn Host) -> bool {
        let was_closing = self.closing;
        let mut answered = false;
        if self.sent > 0 && self.sent >= self.unsent().len() {
            // Written bytes are dropped once they outnumber the unsent ones: each byte is
            // moved at most once on average.
            self.out.drain(..self.sent);
            self.sent = 0;
        }
        while !self.closing && self.unsent().len() < OUT_LIMIT {
            let (end, body) = match self.pending {
                Some(p) => p,
                None => match self.next_head(host) {
                    Some(p) => p,
                    None => break,
                },
            };
            if self.inbuf.len() - self.start < end + body {
                self.pending = Some((end, body));
                if self.eof {
                    // A half-sent body is dropped; the peer can no longer finish it.
                    self.closing = true;
                }
                break;
            }
            self.pending = None;
            let (head, rest) = self.inbuf[self.start..].split_at(end);
            self.closing = answer::answer(head, &rest[..body], host, &mut self.out);
            self.start += end + body;
            self.scanned = 0;
            self.head_deadline = None;
            self.answered_at = now;
            self.active_at = now;
            answered = true;
        }
        let waiting = self.inbuf.len() > self.start;
        if self.closing || !waiting || self.unsent().len() >= OUT_LIMIT {
            // Nothing is being gathered: a stalled output has its own deadline, and the
            // head's clock starts when the session turns back to its input.
            self.head_deadline = None;
        } else if self.head_deadline.is_none() {
            self.head_deadline = Some(now + self.header_timeout);
        }
        if self.start > 0 && self.start >= self.inbuf.len() - self.start {
            self.compact_input();
        }
        if self.inbuf.capacity() > IN_CAP && self.pending.is_none() && self.inbuf.len() <= IN_CAP {
            // A body's room is given back once it is consumed.
            self.inbuf.shrink_to(IN_CAP);
        }
        answered || self.closing != was_closing
    }

    /// Finds the next complete head and reads its framing: `(head length, body length)`.
    /// `None` while the head is incomplete, or when the session answered an error and is
    /// closing (too large a head, a body it does not take: too large, chunked, or sent
    /// without the token, which is answered from its head alone).
    fn next_head(&mut self, host: &mut dyn Host) -> Option<(usize, usize)> {
        // Empty lines before a request line are skipped (RFC 9112 §2.2), as on the data
        // path.
        let blank = crate::http::leading_empty_lines(&self.inbuf[self.start..]);
        self.start += blank;
        self.scanned = self.scanned.saturating_sub(blank);
        let tail = &self.inbuf[self.start..];
        match crate::http::find_head_end(tail, self.scanned) {
            Some(end) if end <= MAX_REQUEST => match answer::body_length(&tail[..end]) {
                Ok(n) if n > 0 && n <= MAX_BODY && !answer::may_send_body(&tail[..end], host) => {
                    // Its answer (401, 403, 405...) needs no body; the unread body would
                    // put the stream out of step, so the connection ends after it.
                    answer::answer_unread(&tail[..end], host, &mut self.out);
                    self.closing = true;
                    None
                }
                Ok(n) if n <= MAX_BODY => Some((end, n)),
                Ok(_) => {
                    answer::refuse(413, "request body too large\n", &mut self.out);
                    self.closing = true;
                    None
                }
                Err(status) => {
                    let why = match status {
                        411 => "send a Content-Length body, not a chunked one\n",
                        _ => "bad Content-Length\n",
                    };
                    answer::refuse(status, why, &mut self.out);
                    self.closing = true;
                    None
                }
            },
            found => {
                self.scanned = tail.len();
                if found.is_some() || tail.len() >= MAX_REQUEST {
                    answer::refuse(431, "request too large\n", &mut self.out);
                    self.closing = true;
                } else if self.eof {
                    // A half-sent head is dropped; the peer can no longer finish it.
                    self.closing = true;
                }
                None
            }
        }
    }

    /// The bytes waiting to be written.
    pub fn unsent(&self) -> &[u8] {
        &self.out[self.sent..]
    }

    /// Records that the first `n` unsent bytes were written at `now`.
    pub fn wrote(&mut self, n: usize, now: Instant) {
        self.sent += n.min(self.out.len() - self.sent);
        if n > 0 {
            self.active_at = now;
        }
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
            if self.out.capacity() > 2 * OUT_LIMIT {
                // One large answer need not stay allocated on an idle connection.
                self.out.shrink_to(OUT_LIMIT);
            }
        }
    }

    /// True once the session has closed and everything it had to say is written.
    pub fn done(&self) -> bool {
        self.closing && self.unsent().is_empty()
    }

    /// When the connection is to be closed if nothing happens: the head's deadline while one
    /// is being gathered, else the idle timeout from the last sign of life.
    pub fn deadline(&self) -> Instant {
        self.head_deadline.unwrap_or(self.active_at + IDLE_TIMEOUT)
    }

    /// When the last request was answered, or the connection opened.
    pub fn answered_at(&self) -> Instant {
        self.answered_at
    }

    /// Moves the unanswered input to the front of the buffer.
    fn compact_input(&mut self) {
        self.inbuf.copy_within(self.start.., 0);
        self.inbuf.truncate(self.inbuf.len() - self.start);
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::Config;
    #[cfg(feature = "api")]
    use crate::control::api::Reply;
    use crate::shared::Shared;

    const GET: &[u8] = b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n";

    /// A host whose API echoes the call and the body it got, so that a test sees which
    /// bytes the session took for a body.
    struct Echo(Config, Shared);

    impl Host for Echo {
        fn config(&self) -> &Config {
            &self.0
        }
        fn shared(&self) -> &Shared {
            &self.1
        }
        #[cfg(feature = "api")]
        fn api(&mut self, method: &str, path: &str, body: &[u8]) -> Reply {
            Reply {
                status: 200,
                body: format!("{method} {path} {}", String::from_utf8_lossy(body)),
                allow: None,
            }
        }
    }

    fn context() -> Echo {
        let token = "listen: 127.0.0.1:1\non_all_down: direct\nadmin:\n  token: t\n";
        Echo(
            crate::config::parse(token, None).unwrap(),
            Shared::new(1, 0),
        )
    }

    /// Feeds `input` in pieces of `piece` bytes, reading every answer at once, then the EOF;
    /// returns all that was written.
    fn run(input: &[u8], piece: usize) -> Vec<u8> {
        let mut host = context();
        let now = Instant::now();
        let mut s = AdminSession::new(now, Duration::from_secs(10));
        let mut written = Vec::new();
        let mut rest = input;
        let mut drain = |s: &mut AdminSession| {
            written.extend_from_slice(s.unsent());
            let n = s.unsent().len();
            s.wrote(n, now);
        };
        while !rest.is_empty() && !s.done() {
            let n = piece.min(rest.len()).min(s.input_room());
            s.received(&rest[..n]);
            rest = &rest[n..];
            s.answer(now, &mut host);
            drain(&mut s);
        }
        s.received_eof();
        s.answer(now, &mut host);
        drain(&mut s);
        assert!(s.done());
        written
    }

    fn statuses(out: &[u8]) -> Vec<&str> {
        std::str::from_utf8(out)
            .unwrap()
            .split("HTTP/1.1 ")
            .skip(1)
            .map(|r| &r[..3])
            .collect()
    }

    // The bodies these two see come back through the API's echo (the `api` feature).
    #[cfg(feature = "api")]
    #[test]
    fn pipelined_heads_cut_anywhere_get_the_same_answers_in_order() {
        let input = b"GET /health HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\nGET /nope HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\nHEAD /readyz HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\nPOST /status HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\nPOST /api/v1/sites HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: 11\r\n\r\n{\"a\":\"b\r\n\"}GET /health HTTP/1.1\r\nAuthorization: Bearer t\r\nConnection: close\r\n\r\nGET /health HTTP/1.1\r\n\r\n";
        let whole = run(input, input.len());
        assert_eq!(statuses(&whole), ["200", "404", "200", "405", "200", "200"]);
        let text = String::from_utf8_lossy(&whole);
        assert!(
            text.contains("POST /api/v1/sites {\"a\":\"b\r\n\"}"),
            "{text}"
        );
        for piece in 1..input.len() {
            assert_eq!(run(input, piece), whole, "in pieces of {piece}");
        }
    }

    #[test]
    fn a_client_that_does_not_read_is_not_read_from() {
        let mut host = context();
        let now = Instant::now();
        let mut s = AdminSession::new(now, Duration::from_secs(10));
        let req = b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\n";
        let mut metrics = Vec::new();
        answer::answer(req, b"", &mut host, &mut metrics);
        let input = req.repeat(10_000);
        let mut taken = 0;
        while s.input_room() > 0 {
            let n = s.input_room().min(input.len() - taken);
            s.received(&input[taken..taken + n]);
            taken += n;
            s.answer(now, &mut host);
            assert!(s.unsent().len() < OUT_LIMIT + metrics.len() + 64);
        }
        assert!(taken < OUT_LIMIT / metrics.len() * req.len() + 2 * MAX_REQUEST);
        let waiting = s.unsent().len();
        assert!(waiting >= OUT_LIMIT);
        // Once the client reads, the session answers and reads again.
        s.wrote(waiting, now);
        assert!(s.answer(now, &mut host));
        assert!(!s.unsent().is_empty());
    }

    #[test]
    fn a_heads_deadline_runs_from_its_first_byte() {
        let mut host = context();
        let t0 = Instant::now();
        let limit = Duration::from_secs(1);
        let mut s = AdminSession::new(t0, limit);
        assert_eq!(s.deadline(), t0 + IDLE_TIMEOUT);
        for (i, b) in GET[..GET.len() - 1].iter().enumerate() {
            let now = t0 + Duration::from_millis(10 * i as u64);
            s.received(&[*b]);
            s.answer(now, &mut host);
            assert_eq!(s.deadline(), t0 + limit, "byte {i} moved the deadline");
        }
        let now = t0 + Duration::from_millis(900);
        s.received(&GET[GET.len() - 1..]);
        assert!(s.answer(now, &mut host));
        assert_eq!(s.deadline(), now + IDLE_TIMEOUT);
    }

    #[test]
    fn an_oversized_head_is_refused_and_ends_the_connection() {
        let mut input = b"GET /health HTTP/1.1\r\nX: ".to_vec();
        input.resize(3 * MAX_REQUEST, b'a');
        assert_eq!(statuses(&run(&input, 1000)), ["431"]);
    }

    #[test]
    fn consumed_input_does_not_grow_the_buffer() {
        let mut host = context();
        let now = Instant::now();
        let mut s = AdminSession::new(now, Duration::from_secs(10));
        let input = GET.repeat(2000);
        for piece in input.chunks(7) {
            s.received(piece);
            s.answer(now, &mut host);
            let n = s.unsent().len();
            s.wrote(n, now);
            assert!(s.inbuf.capacity() <= IN_CAP);
        }
    }

    fn post(body: &[u8]) -> Vec<u8> {
        let mut req = format!(
            "PUT /api/v1/sites/a HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        req
    }

    #[cfg(feature = "api")]
    #[test]
    fn a_body_up_to_the_limit_is_read_in_pieces_and_its_room_given_back() {
        let body = vec![b'x'; MAX_BODY];
        let mut input = post(&body);
        input.extend_from_slice(GET);
        for piece in [1000, 4096, input.len()] {
            let out = run(&input, piece);
            assert_eq!(statuses(&out), ["200", "401"], "in pieces of {piece}");
            let text = String::from_utf8_lossy(&out);
            assert!(text.contains(&format!("PUT /api/v1/sites/a {}HTTP", "x".repeat(MAX_BODY))));
        }
        let mut host = context();
        let now = Instant::now();
        let mut s = AdminSession::new(now, Duration::from_secs(10));
        let mut rest = &input[..];
        while !rest.is_empty() {
            let n = s.input_room().min(rest.len()).min(4096);
            s.received(&rest[..n]);
            rest = &rest[n..];
            s.answer(now, &mut host);
            assert!(s.inbuf.capacity() <= MAX_REQUEST + MAX_BODY + IN_CAP);
            let n = s.unsent().len();
            s.wrote(n, now);
        }
        assert!(s.inbuf.capacity() <= IN_CAP, "{}", s.inbuf.capacity());
    }

    #[test]
    fn bodies_too_large_chunked_or_cut_short_end_the_connection() {
        let big = b"POST /api/v1/sites HTTP/1.1\r\nContent-Length: 65537\r\n\r\nxx";
        assert_eq!(statuses(&run(big, 7)), ["413"]);
        let chunked =
            b"POST /api/v1/sites HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n";
        assert_eq!(statuses(&run(chunked, 7)), ["411"]);
        let two =
            b"POST /api/v1/sites HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx";
        assert_eq!(statuses(&run(two, 7)), ["400"]);
        let mut short = post(b"{}");
        short.pop();
        assert!(run(&short, 3).is_empty(), "a half-sent body gets no answer");
    }

    #[test]
    fn a_body_must_arrive_within_the_heads_deadline() {
        let mut host = context();
        let t0 = Instant::now();
        let mut s = AdminSession::new(t0, Duration::from_secs(1));
        let req = post(b"{\"hosts\":[]}");
        for (i, b) in req[..req.len() - 1].iter().enumerate() {
            s.received(&[*b]);
            s.answer(t0 + Duration::from_millis(i as u64), &mut host);
            assert_eq!(s.deadline(), t0 + Duration::from_secs(1));
        }
    }

    #[test]
    fn a_body_without_the_token_is_not_read() {
        let mut req = b"POST /api/v1/sites HTTP/1.1\r\nAuthorization: Bearer x\r\nContent-Length: 60000\r\n\r\n".to_vec();
        req.extend_from_slice(&[b' '; 60000]);
        let out = run(&req, 4096);
        assert_eq!(statuses(&out), ["401"]);
        assert!(String::from_utf8_lossy(&out).contains("Connection: close"));
        // With no token configured, changes are refused before their body is read.
        let mut host = Echo(Config::embedded(), Shared::new(1, 0));
        let mut s = AdminSession::new(Instant::now(), Duration::from_secs(10));
        s.received(&req[..200]);
        s.answer(Instant::now(), &mut host);
        // (Without the `api` feature there is no such call: 404, from the head alone too.)
        let want = if cfg!(feature = "api") {
            "HTTP/1.1 403"
        } else {
            "HTTP/1.1 404"
        };
        assert!(String::from_utf8_lossy(s.unsent()).starts_with(want));
        assert_eq!(s.input_room(), 0);
    }
}
