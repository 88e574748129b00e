//! The admin server's per-connection request handling (`AdminSession`, the code the server
//! runs between its socket reads and writes): arbitrary bytes, cut at arbitrary points,
//! pipelining included, with a peer that reads its answers in arbitrary amounts or not at all.
//!
//! Input: the first byte says how many schedule bytes follow; the rest is the byte stream.
//! Each schedule byte (used in turn, round and round) is one step: offer the next 1..=64 or
//! (bit 6) 1..=4096 stream bytes, and let the peer read nothing, a little, 4 KiB or all
//! (bits 7 and 5). A step takes a millisecond, and heads must arrive within 50.
//!
//! Bodies (`Content-Length`) are taken too; `/api/v1` calls reach a host that echoes them, so
//! the bytes taken as a body show in the answers.
//!
//! Nothing may panic; bytes go in only while there is room; unsent output stays under its
//! bound plus one answer; a session with nothing to write takes input or is done; a stalled
//! session makes no answers; and the answers are exactly those of the same stream fed whole
//! and read at once (a prefix of them when a head deadline cut the connection short).
#![no_main]

use ferry::config::Config;
use ferry::control::admin::session::{AdminSession, OUT_LIMIT};
use ferry::control::admin::Host;
use ferry::control::api::Reply;
use ferry::shared::Shared;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const HEAD_TIMEOUT: Duration = Duration::from_millis(50);
const STEP: Duration = Duration::from_millis(1);

struct Context {
    configs: [Config; 2],
    shared: Shared,
}

fn context() -> &'static Context {
    static CONTEXT: OnceLock<Context> = OnceLock::new();
    CONTEXT.get_or_init(|| Context {
        configs: [
            Config::embedded(),
            ferry::config::parse(
                "listen: \"127.0.0.1:0\"\nadmin_listen: \"127.0.0.1:0\"\nadmin:\n  token: s3cret\n",
                None,
            )
            .expect("the token config is valid"),
        ],
        shared: Shared::new(1, 0),
    })
}

/// The control thread as the session sees it: the config and counters, and an API that
/// answers with what it was given.
struct Fixed<'a>(&'a Config, &'a Shared);

impl Host for Fixed<'_> {
    fn config(&self) -> &Config {
        self.0
    }
    fn shared(&self) -> &Shared {
        self.1
    }
    fn api(&mut self, method: &str, path: &str, body: &[u8]) -> Reply {
        Reply {
            status: 200,
            body: format!("{method} {path} {}", String::from_utf8_lossy(body)),
            allow: None,
        }
    }
}

/// The largest single answer: `/metrics`, `/status` or an echoed body of the largest size,
/// and a little for the head and its `Connection: close` (the uptime's digits may grow
/// meanwhile).
fn largest_answer(config: &Config, shared: &Shared) -> usize {
    let mut s = AdminSession::new(Instant::now(), HEAD_TIMEOUT);
    s.received(b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\nGET /status HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n");
    s.answer(Instant::now(), &mut Fixed(config, shared));
    let status = s.unsent().len();
    status.max(ferry::control::admin::session::MAX_BODY + 256) + 256
}

/// One step of a peer that sends what fits (then EOF) and reads every answer at once.
fn feed_and_read_all(
    s: &mut AdminSession,
    rest: &mut &[u8],
    out: &mut Vec<u8>,
    now: Instant,
    config: &Config,
    shared: &Shared,
) {
    let n = s.input_room().min(rest.len());
    s.received(&rest[..n]);
    *rest = &rest[n..];
    if rest.is_empty() {
        s.received_eof();
    }
    s.answer(now, &mut Fixed(config, shared));
    out.extend_from_slice(s.unsent());
    s.wrote(s.unsent().len(), now);
}

/// Feeds `stream` whole (as far as there is room) and reads everything at once, then EOF.
fn reference(stream: &[u8], config: &Config, shared: &Shared) -> Vec<u8> {
    let now = Instant::now();
    let mut s = AdminSession::new(now, HEAD_TIMEOUT);
    let mut out = Vec::new();
    let mut rest = stream;
    for _ in 0..stream.len() + 16 {
        feed_and_read_all(&mut s, &mut rest, &mut out, now, config, shared);
        if s.done() {
            return out;
        }
    }
    panic!("the reference run never finished");
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n as usize % 16).min(rest.len());
    let (schedule, stream) = rest.split_at(n);
    let schedule = if schedule.is_empty() {
        &[0xff][..]
    } else {
        schedule
    };
    let ctx = context();
    let config = &ctx.configs[stream.len() % 2];
    let shared = &ctx.shared;
    let bound = OUT_LIMIT + largest_answer(config, shared);

    let t0 = Instant::now();
    let mut now = t0;
    let mut s = AdminSession::new(now, HEAD_TIMEOUT);
    let mut out = Vec::new();
    let mut rest = stream;
    let mut expired = false;
    let mut steps = 0usize;
    // Every step either moves bytes or ends the loop; the cap only guards the fuzzer.
    while !s.done() && steps < 4 * stream.len() + 64 {
        let b = schedule[steps % schedule.len()];
        steps += 1;
        now += STEP;
        if now >= s.deadline() {
            expired = true; // the server closes it here
            break;
        }
        let want = if b & 0x40 != 0 {
            1 + (b as usize & 0x3f) * 64
        } else {
            1 + (b as usize & 0x3f)
        };
        let room = s.input_room();
        let offer = want.min(rest.len()).min(room);
        s.received(&rest[..offer]);
        rest = &rest[offer..];
        if rest.is_empty() && room > 0 {
            s.received_eof();
        }
        let before = s.unsent().len();
        s.answer(now, &mut Fixed(config, shared));
        if before >= OUT_LIMIT {
            assert_eq!(
                s.unsent().len(),
                before,
                "answered while the output was full"
            );
        }
        assert!(
            s.unsent().len() <= bound.max(before),
            "output past its bound"
        );
        if s.unsent().is_empty() {
            assert!(
                s.input_room() > 0 || s.done(),
                "stuck with nothing to write"
            );
        }
        let read = match b >> 5 & 0b101 {
            0b000 => 0,
            0b001 => 1 + (b as usize & 0x1f),
            0b100 => 4096,
            _ => usize::MAX,
        }
        .min(s.unsent().len());
        out.extend_from_slice(&s.unsent()[..read]);
        s.wrote(read, now);
    }
    if !expired {
        // The peer reads the rest; the session must finish.
        for _ in 0..stream.len() + 16 {
            if s.done() {
                break;
            }
            feed_and_read_all(&mut s, &mut rest, &mut out, now, config, shared);
        }
        assert!(s.done(), "the session never finished");
    }
    // Uptimes tick between the two runs; compare only what cannot change.
    let whole = reference(stream, config, shared);
    if !out.windows(6).any(|w| w == b"uptime") && !whole.windows(6).any(|w| w == b"uptime") {
        if expired {
            assert!(
                whole.starts_with(&out),
                "answers differ from the whole stream's"
            );
        } else {
            assert_eq!(out, whole, "answers differ from the whole stream's");
        }
    }
});
