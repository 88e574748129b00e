//! Body framing: where a message body ends (RFC 9112 §6, §7.1).
//!
//! ferry forwards bodies byte for byte; this state machine only tells how many of the bytes that
//! follow a head belong to that message, so that pipelined requests or a reused connection's
//! next response are never sent as part of this one. Chunked bodies are parsed properly: sizes in
//! hex with overflow checks, extensions, trailers; never by looking for `0\r\n\r\n`.

/// Largest trailer section accepted after the last chunk.
const MAX_TRAILER_BYTES: u32 = 16 * 1024;
/// Longest chunk-size line (size, extensions) accepted.
const MAX_CHUNK_LINE: u32 = 4096;

/// How the body of one message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all (HEAD responses, 1xx/204/304, requests without length).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the sender closes (responses only).
    UntilClose,
}

/// A framing violation: the message cannot be delimited and the connection must not be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramingError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits of the size.
    Size {
        value: u64,
        digits: u8,
    },
    /// White space after the size: only more of it, an extension or the line end may follow.
    Bws(u64),
    /// Inside chunk extensions; the size is already known.
    Ext(u64),
    /// After the CR that ends the size line.
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Remaining(u64),
    Chunked { at: Chunk, line: u32, trailer: u32 },
    UntilClose,
    Done,
}

/// Tracks progress through one message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyState {
    state: State,
}

impl BodyState {
    /// Starts tracking a body framed as `framing`.
    pub fn new(framing: Framing) -> BodyState {
        let state = match framing {
            Framing::None | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Remaining(n),
            Framing::Chunked => State::Chunked {
                at: Chunk::Size {
                    value: 0,
                    digits: 0,
                },
                line: 0,
                trailer: 0,
            },
            Framing::UntilClose => State::UntilClose,
        };
        BodyState { state }
    }

    /// True once the whole body has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// True when the body only ends with the connection.
    pub fn until_close(&self) -> bool {
        self.state == State::UntilClose
    }

    /// Called when the sender closed: ends an until-close body. Returns false when the body was
    /// cut short, which the caller must treat as an error.
    pub fn finish_on_eof(&mut self) -> bool {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                true
            }
            _ => false,
        }
    }

    /// How many more bytes may pass without being looked at: the rest of a body of known
    /// length, or any number until the close; `None` for a chunked body (its sizes must be
    /// read) and for one that is over.
    pub fn blind_limit(&self) -> Option<u64> {
        match self.state {
            State::Remaining(n) => Some(n),
            State::UntilClose => Some(u64::MAX),
            State::Chunked { .. } | State::Done => None,
        }
    }

    /// Accounts for `n` body bytes that passed without being looked at (spliced); `n` is at
    /// most `blind_limit()`.
    pub fn advance_blind(&mut self, n: u64) {
        if let State::Remaining(left) = &mut self.state {
            debug_assert!(n <= *left, "{n} bytes spliced past a body's end");
            *left -= n.min(*left);
            if *left == 0 {
                self.state = State::Done;
            }
        }
    }

    /// Looks at `input` (bytes that follow what was already accounted for) and returns how many
    /// of them belong to this body. When the body ends inside `input`, the rest is the next
    /// message's and is left alone.
    pub fn advance(&mut self, input: &[u8]) -> Result<usize, FramingError> {
        self.advance_with(input, |_| {})
    }

    /// Like `advance`, and hands each run of body data (for a chunked body: the chunks'
    /// contents, without sizes, extensions or trailers) to `data`. This is how a chunked
    /// response is de-chunked for an HTTP/1.0 client.
    pub fn advance_with(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<usize, FramingError> {
        match &mut self.state {
            State::Done => Ok(0),
            State::UntilClose => {
                data(input);
                Ok(input.len())
            }
            State::Remaining(n) => {
                let take = (*n).min(input.len() as u64);
                *n -= take;
                if *n == 0 {
                    self.state = State::Done;
                }
                data(&input[..take as usize]);
                Ok(take as usize)
            }
            State::Chunked { at, line, trailer } => {
                let (mut at, mut line, mut trailer) = (*at, *line, *trailer);
                let r = advance_chunked(&mut at, &mut line, &mut trailer, input, &mut data);
                self.state = match r {
                    Ok((_, true)) => State::Done,
                    _ => State::Chunked { at, line, trailer },
                };
                r.map(|(n, _)| n)
            }
        }
    }
}

/// One step of the chunked-coding grammar (RFC 9112 §7.1) over `input`; returns the bytes
/// consumed and whether the body ended.
fn advance_chunked(
    at: &mut Chunk,
    line: &mut u32,
    trailer: &mut u32,
    input: &[u8],
    data: &mut impl FnMut(&[u8]),
) -> Result<(usize, bool), FramingError> {
    let mut i = 0;
    while i < input.len() {
        if let Chunk::Data(left) = *at {
            let take = left.min((input.len() - i) as u64);
            data(&input[i..i + take as usize]);
            i += take as usize;
            *at = if left == take {
                Chunk::DataCr
            } else {
                Chunk::Data(left - take)
            };
            continue;
        }
        let b = input[i];
        i += 1;
        *at = match *at {
            Chunk::Size { value, digits } => {
                *line += 1;
                if *line > MAX_CHUNK_LINE {
                    return Err(FramingError("chunk-size line too long"));
                }
                match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if value > (u64::MAX >> 4) {
                            return Err(FramingError("chunk size overflows"));
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        Chunk::Size {
                            value: value * 16 + d,
                            digits: digits.saturating_add(1),
                        }
                    }
                    b';' if digits > 0 => Chunk::Ext(value),
                    // RFC 9112 §7.1.1: chunk-ext may be preceded by BWS, and only that:
                    // `5 junk` is not a size line (a next hop might read it otherwise).
                    b' ' | b'\t' if digits > 0 => Chunk::Bws(value),
                    b'\r' if digits > 0 => Chunk::SizeLf(value),
                    _ => return Err(FramingError("invalid chunk size")),
                }
            }
            Chunk::Bws(size) => {
                *line += 1;
                if *line > MAX_CHUNK_LINE {
                    return Err(FramingError("chunk-size line too long"));
                }
                match b {
                    b' ' | b'\t' => Chunk::Bws(size),
                    b';' => Chunk::Ext(size),
                    b'\r' => Chunk::SizeLf(size),
                    _ => return Err(FramingError("junk after a chunk size")),
                }
            }
            Chunk::Ext(size) => {
                *line += 1;
                if *line > MAX_CHUNK_LINE {
                    return Err(FramingError("chunk extension too long"));
                }
                match b {
                    b'\r' => Chunk::SizeLf(size),
                    b'\t' => Chunk::Ext(size),
                    0..=31 | 127 => return Err(FramingError("control byte in chunk extension")),
                    _ => Chunk::Ext(size),
                }
            }
            Chunk::SizeLf(size) => {
                if b != b'\n' {
                    return Err(FramingError("chunk size not ended by CRLF"));
                }
                *line = 0;
                if size == 0 {
                    Chunk::TrailerStart
                } else {
                    Chunk::Data(size)
                }
            }
            Chunk::Data(_) => unreachable!("data is consumed above"),
            Chunk::DataCr => match b {
                b'\r' => Chunk::DataLf,
                _ => return Err(FramingError("chunk data not followed by CRLF")),
            },
            Chunk::DataLf => match b {
                b'\n' => Chunk::Size {
                    value: 0,
                    digits: 0,
                },
                _ => return Err(FramingError("chunk data not followed by CRLF")),
            },
            Chunk::TrailerStart => match b {
                b'\r' => Chunk::EndLf,
                b'\n' => return Err(FramingError("bare LF in trailer")),
                _ => {
                    *trailer += 1;
                    Chunk::TrailerLine
                }
            },
            Chunk::TrailerLine => {
                *trailer += 1;
                if *trailer > MAX_TRAILER_BYTES {
                    return Err(FramingError("trailer section too large"));
                }
                match b {
                    b'\r' => Chunk::TrailerLf,
                    b'\n' => return Err(FramingError("bare LF in trailer")),
                    _ => Chunk::TrailerLine,
                }
            }
            Chunk::TrailerLf => match b {
                b'\n' => Chunk::TrailerStart,
                _ => return Err(FramingError("trailer line not ended by CRLF")),
            },
            Chunk::EndLf => match b {
                b'\n' => return Ok((i, true)),
                _ => return Err(FramingError("chunked body not ended by CRLF")),
            },
        };
    }
    Ok((i, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns bytes consumed and whether done.
    fn feed(framing: Framing, input: &[u8], step: usize) -> Result<(usize, bool), FramingError> {
        let mut st = BodyState::new(framing);
        let mut used = 0;
        while used < input.len() && !st.is_done() {
            let end = (used + step).min(input.len());
            let offered = end - used;
            let n = st.advance(&input[used..end])?;
            used += n;
            assert!(
                n == offered || st.is_done(),
                "short advance without completion"
            );
        }
        Ok((used, st.is_done()))
    }

    #[test]
    fn length_body_stops_at_its_end() {
        assert_eq!(feed(Framing::Length(5), b"helloGET /", 3), Ok((5, true)));
        assert_eq!(feed(Framing::Length(0), b"x", 1), Ok((0, true)));
        assert_eq!(feed(Framing::None, b"x", 1), Ok((0, true)));
    }

    #[test]
    fn chunked_body_containing_terminator_text_is_not_cut() {
        let body = b"7\r\n0\r\n\r\nab\r\n0\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(
                feed(Framing::Chunked, body, step),
                Ok((body.len() - 4, true))
            );
        }
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let body =
            b"4;name=\"v\"\r\nwiki\r\n5 ; x\r\npedia\r\n0\r\nExpires: never\r\nX: y\r\n\r\nrest";
        for step in [1, 5, 64] {
            assert_eq!(
                feed(Framing::Chunked, body, step),
                Ok((body.len() - 4, true))
            );
        }
    }

    #[test]
    fn chunked_rejects_garbage() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"4\r\nwikiXX",
            b"4\nwiki",
            b"11111111111111111\r\n",
            b"0\r\nbad\ntrailer",
            b"-1\r\n",
            b"5 junk\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(feed(Framing::Chunked, bad, 1).is_err(), "{:?}", bad);
        }
    }

    #[test]
    fn chunked_body_yields_its_data() {
        let body = b"4;name=\"v\"\r\nwiki\r\n5 ; x\r\npedia\r\n0\r\nExpires: never\r\n\r\nrest";
        for step in [1, 2, 5, 64] {
            let mut st = BodyState::new(Framing::Chunked);
            let mut out = Vec::new();
            let mut used = 0;
            while !st.is_done() {
                let end = (used + step).min(body.len());
                used += st
                    .advance_with(&body[used..end], |d| out.extend_from_slice(d))
                    .unwrap();
            }
            assert_eq!(out, b"wikipedia");
            assert_eq!(&body[used..], b"rest");
        }
    }

    #[test]
    fn chunked_accepts_largest_size() {
        let mut st = BodyState::new(Framing::Chunked);
        assert_eq!(st.advance(b"ffffffffffffffff\r\n"), Ok(18));
        assert!(!st.is_done());
    }

    #[test]
    fn until_close_ends_only_on_eof() {
        let mut st = BodyState::new(Framing::UntilClose);
        assert_eq!(st.advance(b"abc"), Ok(3));
        assert!(!st.is_done());
        assert!(st.finish_on_eof());
        assert!(st.is_done());
        let mut st = BodyState::new(Framing::Length(3));
        st.advance(b"a").unwrap();
        assert!(!st.finish_on_eof());
    }

    #[test]
    fn bytes_passed_blind_count_against_a_known_length_only() {
        let mut st = BodyState::new(Framing::Length(10));
        st.advance(b"abc").unwrap();
        assert_eq!(st.blind_limit(), Some(7));
        st.advance_blind(6);
        assert_eq!(st.blind_limit(), Some(1));
        st.advance_blind(1);
        assert!(st.is_done());
        assert_eq!(st.blind_limit(), None);
        let mut st = BodyState::new(Framing::UntilClose);
        st.advance_blind(1 << 40);
        assert_eq!(st.blind_limit(), Some(u64::MAX));
        assert!(!st.is_done());
        assert_eq!(BodyState::new(Framing::Chunked).blind_limit(), None);
        assert_eq!(BodyState::new(Framing::Length(0)).blind_limit(), None);
    }

    /// A small deterministic generator, so the property test needs no crate and is repeatable.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, below: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % below.max(1)
        }
    }

    /// Encodes `body` as chunks of random sizes with random extensions and trailers.
    fn encode(body: &[u8], rng: &mut Lcg) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < body.len() {
            let n = (rng.next(300) + 1).min(body.len() - at);
            out.extend(format!("{n:x}").as_bytes());
            if rng.next(3) == 0 {
                out.extend(b";ext=\"v\"");
            }
            out.extend(b"\r\n");
            out.extend(&body[at..at + n]);
            out.extend(b"\r\n");
            at += n;
        }
        out.extend(b"0\r\n");
        if rng.next(2) == 0 {
            out.extend(b"X-Trailer: 0\r\n");
        }
        out.extend(b"\r\n");
        out
    }

    #[test]
    fn property_random_chunked_bodies_end_exactly_wherever_reads_split() {
        let mut rng = Lcg(0x5eed);
        for _ in 0..2000 {
            let len = rng.next(2000);
            // bodies full of CR, LF and '0' to look like terminators
            let body: Vec<u8> = (0..len).map(|_| b"0\r\n;x"[rng.next(5)]).collect();
            let enc = encode(&body, &mut rng);
            let mut input = enc.clone();
            input.extend(b"GET / HTTP/1.1\r\n\r\n"); // the next message must be left alone
            let step = rng.next(64) + 1;
            assert_eq!(feed(Framing::Chunked, &input, step), Ok((enc.len(), true)));
            // any single corrupted byte in the framing is found, never read past
            let i = rng.next(enc.len());
            let mut bad = enc.clone();
            bad[i] = b'g';
            if let Ok((used, done)) = feed(Framing::Chunked, &bad, step) {
                assert!(used <= bad.len() && (done || used == bad.len()));
            }
        }
    }
}
