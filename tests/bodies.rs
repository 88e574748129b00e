//! Message bodies through ferry, both ways: of known length and until the close, from empty to
//! ten mebibytes, checksummed at both ends; framing kept exact around them (pipelined requests,
//! a server that sends past its response); a server that stops mid-body; and peers that stop
//! reading, which must hold the other side back instead of filling ferry. Each test runs with
//! splicing (the default on Linux) and, in test-hooks builds, on the copy path.

mod common;

use common::{Ferry, TIMEOUT};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// The byte at `offset` of every test body (the fake origin's `/size/N` pattern).
fn byte_at(offset: usize) -> u8 {
    (offset.wrapping_mul(31) ^ (offset >> 9)) as u8
}

/// Fills `buf` with the body bytes from `offset` on.
fn body_bytes(offset: usize, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = byte_at(offset + i);
    }
}

/// FNV-1a (64 bits): a cheap hash both ends compute over the bytes as they pass.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Hash(u64);

impl Hash {
    fn new() -> Hash {
        Hash(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The hash of the first `n` body bytes.
    fn of_body(n: usize) -> Hash {
        let mut h = Hash::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut at = 0;
        while at < n {
            let k = buf.len().min(n - at);
            body_bytes(at, &mut buf[..k]);
            h.add(&buf[..k]);
            at += k;
        }
        h
    }
}

/// One end of a connection, reading heads and streaming bodies through a hash.
struct Peer {
    stream: TcpStream,
    /// Read ahead and not yet used.
    buf: Vec<u8>,
}

impl Peer {
    fn new(stream: TcpStream) -> Peer {
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        Peer {
            stream,
            buf: Vec::new(),
        }
    }

    fn connect(addr: SocketAddr) -> Peer {
        Peer::new(TcpStream::connect(addr).unwrap())
    }

    /// The next head, through its blank line; `None` on EOF.
    fn head(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                return Some(String::from_utf8(head).unwrap());
            }
            let mut b = [0u8; 4096];
            match self.stream.read(&mut b) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
            }
        }
    }

    /// Reads up to `n` bytes (fewer at EOF or on a reset) through a hash; returns the count.
    fn body(&mut self, n: usize, h: &mut Hash) -> usize {
        let first = self.buf.len().min(n);
        h.add(&self.buf[..first]);
        self.buf.drain(..first);
        let mut got = first;
        let mut b = vec![0u8; 256 * 1024];
        while got < n {
            let want = b.len().min(n - got);
            match self.stream.read(&mut b[..want]) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    h.add(&b[..k]);
                    got += k;
                }
            }
        }
        got
    }

    /// True when nothing arrives within a moment: no stray bytes follow what was read.
    fn quiet(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 64];
        let quiet = match self.stream.read(&mut b) {
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        self.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        quiet
    }
}

/// A header's value in a head, by name (case-insensitive).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// What `X-Got` says a server received: `<bytes> <hash>`.
fn got_line(n: usize) -> String {
    format!("{n} {:016x}", Hash::of_body(n).0)
}

/// A fake origin for bodies. Each request's body (by `Content-Length`) is read through a hash
/// and reported back as `X-Got`; the path says what comes back:
/// - `/len/N`: N body bytes with `Content-Length`;
/// - `/close/N`: N body bytes, then the close ends them;
/// - `/cut/N/M`: `Content-Length: N`, but only M bytes, then the close;
/// - `/extra/N`: N bytes with `Content-Length`, then at once a response nobody asked for;
/// - `/endless`: body bytes until the connection breaks, counted in `sent`;
/// - `/stall`: no reading of the body and no answer, until the test ends.
struct Origin {
    addr: SocketAddr,
    /// Body bytes `/endless` has written.
    sent: Arc<AtomicUsize>,
    /// Set when the test is over: a stalled connection may end.
    over: Arc<AtomicBool>,
}

impl Origin {
    fn start() -> Origin {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let sent = Arc::new(AtomicUsize::new(0));
        let over = Arc::new(AtomicBool::new(false));
        let (s2, o2) = (sent.clone(), over.clone());
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let (sent, over) = (s2.clone(), o2.clone());
                thread::spawn(move || serve(Peer::new(s), &sent, &over));
            }
        });
        Origin { addr, sent, over }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.over.store(true, Ordering::SeqCst);
    }
}

fn serve(mut p: Peer, sent: &AtomicUsize, over: &AtomicBool) {
    while let Some(head) = p.head() {
        let path = head.split(' ').nth(1).unwrap_or("").to_string();
        let path = path.rsplit_once("://").map_or(path.as_str(), |(_, rest)| {
            rest.find('/').map_or("/", |i| &rest[i..])
        });
        let num = |i: usize| -> usize { path.split('/').nth(i).unwrap().parse().unwrap() };
        if path == "/stall" {
            // Neither the body nor an answer: the client's bytes back up.
            while !over.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        let len: usize = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
        let mut h = Hash::new();
        let got = p.body(len, &mut h);
        let tag = format!("X-Got: {got} {:016x}\r\n", h.0);
        let w = &mut p.stream;
        let ok = if path.starts_with("/len/") {
            let n = num(2);
            let _ = write!(w, "HTTP/1.1 200 OK\r\n{tag}Content-Length: {n}\r\n\r\n");
            send_body(w, n)
        } else if path.starts_with("/close/") {
            let _ = write!(w, "HTTP/1.1 200 OK\r\n{tag}Connection: close\r\n\r\n");
            send_body(w, num(2));
            false
        } else if path.starts_with("/cut/") {
            let _ = write!(
                w,
                "HTTP/1.1 200 OK\r\n{tag}Content-Length: {}\r\n\r\n",
                num(2)
            );
            send_body(w, num(3));
            false
        } else if path.starts_with("/extra/") {
            let n = num(2);
            let _ = write!(w, "HTTP/1.1 200 OK\r\n{tag}Content-Length: {n}\r\n\r\n");
            // The body's last bytes and the unasked response in one write, so that they arrive
            // together: a relay that took more than the body's length would take both.
            let tail = n.min(100);
            let mut last = body_slice(n - tail, n);
            last.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsmuggled!");
            send_body(w, n - tail) && w.write_all(&last).is_ok()
        } else if path == "/endless" {
            let _ = write!(w, "HTTP/1.1 200 OK\r\n{tag}Connection: close\r\n\r\n");
            let mut buf = vec![0u8; 64 * 1024];
            let mut at = 0;
            loop {
                body_bytes(at, &mut buf);
                let Ok(n) = w.write(&buf) else { break };
                at += n;
                sent.store(at, Ordering::SeqCst);
            }
            false
        } else {
            false
        };
        if !ok {
            let _ = p.stream.shutdown(Shutdown::Write);
            // Reads on until ferry closes too, so that the close is not turned into a reset.
            let mut b = [0u8; 4096];
            while matches!(p.stream.read(&mut b), Ok(n) if n > 0) {}
            return;
        }
    }
}

/// Writes `n` body bytes; false when the connection broke.
fn send_body(w: &mut TcpStream, n: usize) -> bool {
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = 0;
    while at < n {
        let k = buf.len().min(n - at);
        body_bytes(at, &mut buf[..k]);
        if w.write_all(&buf[..k]).is_err() {
            return false;
        }
        at += k;
    }
    true
}

/// Body bytes `from..to`.
fn body_slice(from: usize, to: usize) -> Vec<u8> {
    let mut v = vec![0u8; to - from];
    body_bytes(from, &mut v);
    v
}

/// A response as the test client saw it: the head, then its body's length and hash.
struct Seen {
    head: String,
    len: usize,
    hash: Hash,
}

impl Seen {
    fn x_got(&self) -> &str {
        header(&self.head, "x-got").unwrap_or("")
    }
}

/// Reads one response, its body by `Content-Length`, or to the close when it has none.
fn read_response(c: &mut Peer) -> Seen {
    let head = c.head().expect("a response head");
    let mut hash = Hash::new();
    let len = match header(&head, "content-length") {
        Some(n) => c.body(n.parse().unwrap(), &mut hash),
        None => c.body(usize::MAX, &mut hash),
    };
    Seen { head, len, hash }
}

/// The head of `METHOD http://origin/path` with a body of `n` bytes (a `Content-Length`
/// unless `n` is 0 and the method is GET).
fn request_head(origin: SocketAddr, method: &str, path: &str, n: usize) -> String {
    let length = if method == "GET" && n == 0 {
        String::new()
    } else {
        format!("Content-Length: {n}\r\n")
    };
    format!("{method} http://{origin}{path} HTTP/1.1\r\nHost: {origin}\r\n{length}\r\n")
}

/// Sends `request_head` and its body.
fn request(c: &mut Peer, origin: SocketAddr, method: &str, path: &str, n: usize) {
    c.stream
        .write_all(request_head(origin, method, path, n).as_bytes())
        .unwrap();
    assert!(send_body(&mut c.stream, n), "sending a body of {n} bytes");
}

/// The log says bodies went the expected way: by splice, unless splicing is off (the copy
/// run, or the whole suite run with FERRY_TEST_NO_SPLICE=1, or another system).
fn assert_relayed_by(ferry: &Ferry, splice: bool) {
    let splice =
        splice && cfg!(target_os = "linux") && std::env::var_os("FERRY_TEST_NO_SPLICE").is_none();
    let (want, not) = if splice {
        ("body relayed by splice", "body relayed by copy")
    } else {
        ("body relayed by copy", "body relayed by splice")
    };
    common::wait_until("a body relay log line", || ferry.log_text().contains(want));
    assert!(!ferry.log_text().contains(not), "{}", ferry.log_text());
}

const SIZES: [usize; 4] = [0, 1, 64 * 1024 + 1, 10 * MIB];

fn bodies_of_every_size_arrive_intact_both_ways(ferry: &Ferry, splice: bool) {
    let origin = Origin::start();
    // Known lengths both ways, one keep-alive connection for all of them.
    let mut c = Peer::connect(ferry.addr);
    for n in SIZES {
        request(&mut c, origin.addr, "POST", &format!("/len/{n}"), n);
        let r = read_response(&mut c);
        assert!(r.head.starts_with("HTTP/1.1 200"), "{}", r.head);
        assert_eq!(r.x_got(), got_line(n), "the request body of {n} bytes");
        assert_eq!((r.len, r.hash), (n, Hash::of_body(n)), "the response body");
    }
    // Responses that end with the close, each on a connection of its own.
    for n in SIZES {
        let mut c = Peer::connect(ferry.addr);
        request(&mut c, origin.addr, "GET", &format!("/close/{n}"), 0);
        let r = read_response(&mut c);
        assert!(r.head.starts_with("HTTP/1.1 200"), "{}", r.head);
        assert_eq!(
            (r.len, r.hash),
            (n, Hash::of_body(n)),
            "until-close body of {n}"
        );
    }
    assert_relayed_by(ferry, splice);
    assert!(ferry.log_text().contains("request body relayed by"));
}

fn pipelined_requests_after_a_large_body_stay_intact(ferry: &Ferry) {
    let origin = Origin::start();
    let mut c = Peer::connect(ferry.addr);
    let mut w = Peer::new(c.stream.try_clone().unwrap());
    let o = origin.addr;
    // Three requests in one go: a large body, then two requests right behind it. The body's
    // last bytes and the next requests go in one write, so that they arrive together: a relay
    // that took more than the body's length would take the next requests too.
    let sender = thread::spawn(move || {
        let n = 10 * MIB + 3;
        w.stream
            .write_all(request_head(o, "PUT", "/len/65537", n).as_bytes())
            .unwrap();
        assert!(send_body(&mut w.stream, n - 100));
        let mut last = body_slice(n - 100, n);
        last.extend_from_slice(request_head(o, "GET", "/len/5", 0).as_bytes());
        let big = format!("/len/{}", 10 * MIB);
        last.extend_from_slice(request_head(o, "POST", &big, 1).as_bytes());
        last.extend_from_slice(&body_slice(0, 1));
        w.stream.write_all(&last).unwrap();
    });
    let r = read_response(&mut c);
    assert_eq!(r.x_got(), got_line(10 * MIB + 3));
    assert_eq!((r.len, r.hash), (65537, Hash::of_body(65537)));
    let r = read_response(&mut c);
    assert_eq!(r.x_got(), got_line(0));
    assert_eq!((r.len, r.hash), (5, Hash::of_body(5)));
    let r = read_response(&mut c);
    assert_eq!(r.x_got(), got_line(1));
    assert_eq!((r.len, r.hash), (10 * MIB, Hash::of_body(10 * MIB)));
    sender.join().unwrap();
}

fn a_response_ends_where_its_length_says(ferry: &Ferry) {
    // The server sends an unasked response right behind a body: it must not reach the client,
    // neither as part of the body nor as an answer to the next request.
    let (origin, other) = (Origin::start(), Origin::start());
    let mut c = Peer::connect(ferry.addr);
    for n in [10 * MIB, 64 * 1024 + 1, 1] {
        request(&mut c, origin.addr, "GET", &format!("/extra/{n}"), 0);
        let r = read_response(&mut c);
        assert_eq!((r.len, r.hash), (n, Hash::of_body(n)));
        assert!(c.quiet(), "bytes after a response of {n}");
        // To another origin: whether ferry keeps the first server's connection is not the
        // question here, only where the client's messages end.
        request(&mut c, other.addr, "GET", "/len/7", 0);
        let r = read_response(&mut c);
        assert!(r.head.starts_with("HTTP/1.1 200"), "{}", r.head);
        assert_eq!((r.len, r.hash), (7, Hash::of_body(7)));
    }
}

fn a_server_that_closes_mid_body_leaves_a_truncated_message(ferry: &Ferry) {
    let origin = Origin::start();
    let (n, m) = (10 * MIB, 3 * MIB + 7);
    let mut c = Peer::connect(ferry.addr);
    request(&mut c, origin.addr, "GET", &format!("/cut/{n}/{m}"), 0);
    let head = c.head().unwrap();
    assert_eq!(
        header(&head, "content-length"),
        Some(n.to_string().as_str())
    );
    let mut h = Hash::new();
    // Everything the server sent, then the close (not a wait).
    assert_eq!(c.body(n, &mut h), m);
    assert_eq!(h, Hash::of_body(m));
}

/// Polls `count` until it has not moved for a second (or the timeout passes); returns it.
fn once_it_stops(count: impl Fn() -> usize, bound: usize) -> usize {
    let end = Instant::now() + TIMEOUT;
    let (mut last, mut since) = (count(), Instant::now());
    while Instant::now() < end && last <= bound {
        thread::sleep(Duration::from_millis(50));
        let now = count();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= Duration::from_secs(1) {
            break;
        }
    }
    last
}

/// More than every socket buffer and pipe between the two ends can hold, and far less than a
/// relay that reads on regardless would let through.
const HELD_BOUND: usize = 256 * MIB;

fn a_client_that_stops_reading_holds_the_server_back(ferry: &Ferry) {
    let origin = Origin::start();
    let rss_before = ferry.rss_kib();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(64 * 1024).unwrap();
    sock.connect(&ferry.addr.into()).unwrap();
    let mut c = Peer::new(sock.into());
    request(&mut c, origin.addr, "GET", "/endless", 0);
    c.head().unwrap();
    let mut h = Hash::new();
    assert_eq!(c.body(MIB, &mut h), MIB);
    assert_eq!(h, Hash::of_body(MIB));
    // The client reads no more: the server must be held back.
    let sent = once_it_stops(|| origin.sent.load(Ordering::SeqCst), HELD_BOUND);
    assert!(sent < HELD_BOUND, "the server got {sent} bytes out");
    let rss = ferry.rss_kib();
    assert!(
        rss < rss_before + 32 * 1024,
        "RSS {rss_before} KiB → {rss} KiB"
    );
    // Reading again, the client gets the body on, intact.
    let mut h = Hash::new();
    assert_eq!(c.body(4 * MIB, &mut h), 4 * MIB);
    let mut want = Hash::new();
    let mut buf = vec![0u8; 4 * MIB];
    body_bytes(MIB, &mut buf);
    want.add(&buf);
    assert_eq!(h, want);
}

fn a_server_that_stops_reading_holds_the_client_back(ferry: &Ferry) {
    let origin = Origin::start();
    let c = Peer::connect(ferry.addr);
    let total = 1 << 30;
    let written = Arc::new(AtomicUsize::new(0));
    let (mut w, o, wr) = (c.stream.try_clone().unwrap(), origin.addr, written.clone());
    thread::spawn(move || {
        let head = format!(
            "POST http://{o}/stall HTTP/1.1\r\nHost: {o}\r\nContent-Length: {total}\r\n\r\n"
        );
        w.write_all(head.as_bytes()).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut at = 0;
        while at < total {
            body_bytes(at, &mut buf);
            match w.write(&buf) {
                Ok(n) => at += n,
                Err(_) => return,
            }
            wr.store(at, Ordering::SeqCst);
        }
    });
    let sent = once_it_stops(|| written.load(Ordering::SeqCst), HELD_BOUND);
    assert!(sent < HELD_BOUND, "the client got {sent} bytes out");
    let _ = c.stream.shutdown(Shutdown::Both);
}

/// A request timeout while the server takes no more of the body is the server's doing (504),
/// even when the bytes it does not take wait in a pipe rather than a buffer.
fn a_server_that_stops_reading_is_blamed_for_the_timeout(ferry: &Ferry) {
    let origin = Origin::start();
    let mut c = Peer::connect(ferry.addr);
    let (mut w, o) = (c.stream.try_clone().unwrap(), origin.addr);
    thread::spawn(move || {
        let total = 1 << 30;
        let _ = w.write_all(request_head(o, "POST", "/stall", total).as_bytes());
        send_body(&mut w, total)
    });
    let head = c.head().expect("an answer");
    assert!(head.starts_with("HTTP/1.1 504"), "{head}");
}

const REQUEST_TIMEOUT: &str = "limits:\n  request_timeout_secs: 1\n";

#[test]
fn server_stalls_mid_body_timeout_spliced() {
    a_server_that_stops_reading_is_blamed_for_the_timeout(&Ferry::start(REQUEST_TIMEOUT));
}

#[cfg(feature = "test-hooks")]
#[test]
fn server_stalls_mid_body_timeout_copied() {
    let ferry = Ferry::start_without_splice(REQUEST_TIMEOUT);
    a_server_that_stops_reading_is_blamed_for_the_timeout(&ferry);
}

/// Declares each scenario twice: spliced, and (test-hooks builds) copied.
macro_rules! both_ways {
    ($($name:ident, $copy:ident => $body:expr;)*) => {$(
        #[test]
        fn $name() {
            let ferry = Ferry::start("");
            $body(&ferry, true);
        }

        #[cfg(feature = "test-hooks")]
        #[test]
        fn $copy() {
            let ferry = Ferry::start_without_splice("");
            $body(&ferry, false);
        }
    )*};
}

both_ways! {
    bodies_arrive_intact_spliced, bodies_arrive_intact_copied =>
        bodies_of_every_size_arrive_intact_both_ways;
    pipelined_requests_spliced, pipelined_requests_copied =>
        |f, _| pipelined_requests_after_a_large_body_stay_intact(f);
    response_length_spliced, response_length_copied =>
        |f, _| a_response_ends_where_its_length_says(f);
    server_closes_mid_body_spliced, server_closes_mid_body_copied =>
        |f, _| a_server_that_closes_mid_body_leaves_a_truncated_message(f);
    client_stops_reading_spliced, client_stops_reading_copied =>
        |f, _| a_client_that_stops_reading_holds_the_server_back(f);
    server_stops_reading_spliced, server_stops_reading_copied =>
        |f, _| a_server_that_stops_reading_holds_the_client_back(f);
}
