//! A fake backend server for the reverse-proxy tests: the last hop of a published site's
//! request path. It tags every answer (`X-Served-By: <name>`), keeps every request head it got
//! with the length and checksum of its body and the connection it came on, and says the same in
//! its answer (`X-Conn`, `X-Body-Len`, `X-Body-Sum`, the received head as the body), so a test
//! can assert on what ferry forwarded and on how it reused connections.
//!
//! One fake with options rather than one per behaviour: a request picks what it gets with an
//! `X-Fake` field (items separated by `;`), which ferry forwards untouched and which survives
//! path rewriting:
//! - `size=N`: a body of N bytes (`pattern(N)`) instead of the echo; `chunked`: sent chunked
//! - `status=N`: that status; `sleep=MS`: answer after MS milliseconds
//! - `early`: answer (keep-alive) right after the head, then read the body
//! - `close`: answer with `Connection: close` and hang up
//! - `die-on-reuse`: on a connection that already carried a request, hang up unanswered (an
//!   idle connection the server dropped just as the proxy reused it)
//! - `hdr=Name:Value`: add that field to the answer (repeatable)
//!
//! It also counts the requests it is working on at once (from the end of a request's body to
//! the start of its answer, sleep included), and the most it ever had (`peak_in_flight`).
//!
//! Whatever the request says: `Expect: 100-continue` gets `100 Continue` before the body is
//! read, `Upgrade: websocket` gets `101` and then every byte echoed upper-cased, and
//! `GET /healthz` is the health probe, answered with the status `set_health` chose. The
//! `Fault` knob breaks the whole server: refuse connections, close them, or hang.
//!
//! A request that cannot say what it wants (the sub-request ferry sends a site's auth service
//! carries no `X-Fake`) gets what the knobs say: `set_status` and `set_fields` (fields added
//! to every answer), so one fake plays an auth service that answers 200 with `Remote-User`,
//! 302 to a login page or 401 with a challenge.
//!
//! `Backend::start_tls` is the same server behind TLS (an `https://` server for ferry): every
//! connection starts with a handshake, and all of the above holds inside the session.

use super::wire::{self, Request, Wire};
use super::{pattern, TIMEOUT};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The path of the active health probe the tests configure (`health_check.path`).
pub const HEALTH_PATH: &str = "/healthz";

/// How long the accept loop rests when nothing is waiting (its listener is non-blocking, so
/// that it can stop listening and start again on command).
const ACCEPT_NAP: Duration = Duration::from_millis(5);

/// How a whole backend misbehaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Fault {
    /// Serves normally.
    None = 0,
    /// Listens no more: connects are refused (the port is taken again when the fault ends).
    Refuse = 1,
    /// Accepts, then closes every connection (or a kept-alive one at its next request)
    /// without a word: EOF before any response head.
    Close = 2,
    /// Accepts and reads, never answers.
    Hang = 3,
}

impl Fault {
    fn from_u8(v: u8) -> Fault {
        match v {
            1 => Fault::Refuse,
            2 => Fault::Close,
            3 => Fault::Hang,
            _ => Fault::None,
        }
    }
}

/// Switches a test flips while the backend runs.
#[derive(Default)]
struct Knobs {
    fault: AtomicU8,
    /// The status of every answer that is not a probe and names none itself; 0 = 200.
    status: AtomicU16,
    /// The status the health probe gets; 0 = 200.
    health: AtomicU16,
    /// Field lines (`Name: value\r\n`) added to every answer that is not a probe.
    fields: Mutex<String>,
    /// Set when the `Backend` is dropped: the accept loop ends and frees the port.
    stop: AtomicBool,
}

/// One request as the backend received it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Which accepted connection it came on, from 1.
    pub conn: usize,
    pub req: Request,
    pub body_len: usize,
    /// `checksum` of the body.
    pub body_sum: String,
}

impl Seen {
    /// The first value of a field, as received.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.req.header(name)
    }

    /// The request target as received (path and query).
    pub fn target(&self) -> &str {
        &self.req.target
    }
}

/// A fake HTTP/1.1 backend server on 127.0.0.1.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    /// Served over TLS (`start_tls`).
    tls: bool,
    seen: Arc<Mutex<Vec<Seen>>>,
    conns: Arc<AtomicUsize>,
    knobs: Arc<Knobs>,
    load: Arc<Load>,
}

/// The requests a backend works on at once, and the most it had.
#[derive(Default)]
struct Load {
    now: AtomicUsize,
    peak: AtomicUsize,
}

/// Counts one request as being worked on until dropped.
struct Working<'a>(&'a Load);

impl<'a> Working<'a> {
    fn start(load: &'a Load) -> Working<'a> {
        let n = load.now.fetch_add(1, Ordering::SeqCst) + 1;
        load.peak.fetch_max(n, Ordering::SeqCst);
        Working(load)
    }
}

impl Drop for Working<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Backend {
    /// Starts a backend that tags its answers with `name`.
    pub fn start(name: &str) -> Backend {
        Backend::spawn(name, None)
    }

    /// Starts a backend that speaks TLS with `config` (`Leaf::server_config`) on every
    /// connection; its `url` is `https://`.
    pub fn start_tls(name: &str, config: Arc<ServerConfig>) -> Backend {
        Backend::spawn(name, Some(config))
    }

    fn spawn(name: &str, tls: Option<Arc<ServerConfig>>) -> Backend {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let b = Backend {
            name: name.to_string(),
            addr,
            tls: tls.is_some(),
            seen: Arc::default(),
            conns: Arc::default(),
            knobs: Arc::default(),
            load: Arc::default(),
        };
        let shared = Shared {
            name: b.name.clone(),
            seen: b.seen.clone(),
            conns: b.conns.clone(),
            knobs: b.knobs.clone(),
            load: b.load.clone(),
            tls,
        };
        thread::spawn(move || accept_loop(l, addr, &shared));
        b
    }

    /// `http://127.0.0.1:PORT`, or `https://` for a TLS backend.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// TCP connections accepted so far (probes included).
    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    /// The most requests it ever worked on at once (probes and upgrades left out).
    pub fn peak_in_flight(&self) -> usize {
        self.load.peak.load(Ordering::SeqCst)
    }

    /// The requests it works on now.
    pub fn in_flight(&self) -> usize {
        self.load.now.load(Ordering::SeqCst)
    }

    /// Every request received that was not a health probe, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen_where(|s| s.req.target != HEALTH_PATH)
    }

    /// The health probes received, in order.
    pub fn probes(&self) -> Vec<Seen> {
        self.seen_where(|s| s.req.target == HEALTH_PATH)
    }

    fn seen_where(&self, keep: impl Fn(&Seen) -> bool) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| keep(s))
            .cloned()
            .collect()
    }

    /// The last request that was not a probe; panics when there was none.
    pub fn last(&self) -> Seen {
        self.requests()
            .pop()
            .unwrap_or_else(|| panic!("backend {} received no request", self.name))
    }

    /// Breaks (or mends, with `Fault::None`) the whole server.
    pub fn set_fault(&self, f: Fault) {
        self.knobs.fault.store(f as u8, Ordering::SeqCst);
    }

    /// Answers every request with `status` (0: back to 200) unless it names one itself.
    pub fn set_status(&self, status: u16) {
        self.knobs.status.store(status, Ordering::SeqCst);
    }

    /// Adds `fields` (`Name: value` lines, without CRLF) to every answer but the probes' from
    /// now on (empty: none).
    pub fn set_fields(&self, fields: &[&str]) {
        let lines: String = fields.iter().map(|f| format!("{f}\r\n")).collect();
        *self.knobs.fields.lock().unwrap() = lines;
    }

    /// The status the health probe gets from now on (0: back to 200).
    pub fn set_health(&self, status: u16) {
        self.knobs.health.store(status, Ordering::SeqCst);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.knobs.stop.store(true, Ordering::SeqCst);
    }
}

/// What the accept loop and the connection threads share with the `Backend`.
#[derive(Clone)]
struct Shared {
    name: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    conns: Arc<AtomicUsize>,
    knobs: Arc<Knobs>,
    load: Arc<Load>,
    tls: Option<Arc<ServerConfig>>,
}

impl Shared {
    fn fault(&self) -> Fault {
        Fault::from_u8(self.knobs.fault.load(Ordering::SeqCst))
    }
}

fn accept_loop(l: TcpListener, addr: SocketAddr, sh: &Shared) {
    l.set_nonblocking(true).unwrap();
    let mut listener = Some(l);
    while !sh.knobs.stop.load(Ordering::SeqCst) {
        if sh.fault() == Fault::Refuse {
            // Closing the listening socket makes the kernel refuse connects (RST).
            listener = None;
            thread::sleep(ACCEPT_NAP);
            continue;
        }
        let Some(l) = listener.as_ref() else {
            listener = relisten(addr);
            continue;
        };
        match l.accept() {
            Ok((s, _)) => {
                let conn = sh.conns.fetch_add(1, Ordering::SeqCst) + 1;
                let sh = sh.clone();
                thread::spawn(move || serve(s, conn, &sh));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(ACCEPT_NAP),
            Err(_) => thread::sleep(ACCEPT_NAP),
        }
    }
}

/// Takes the backend's port again after a `Refuse` fault.
fn relisten(addr: SocketAddr) -> Option<TcpListener> {
    let end = Instant::now() + TIMEOUT;
    while Instant::now() < end {
        if let Ok(l) = TcpListener::bind(addr) {
            l.set_nonblocking(true).unwrap();
            return Some(l);
        }
        thread::sleep(ACCEPT_NAP);
    }
    panic!("backend could not listen on {addr} again");
}

/// What a request asked for in its `X-Fake` field.
#[derive(Default)]
struct Ask {
    size: Option<usize>,
    chunked: bool,
    status: Option<u16>,
    sleep_ms: u64,
    early: bool,
    close: bool,
    die_on_reuse: bool,
    extra: String,
}

impl Ask {
    fn parse(req: &Request) -> Ask {
        let mut a = Ask::default();
        for item in req.header("x-fake").unwrap_or("").split(';').map(str::trim) {
            let (k, v) = item.split_once('=').unwrap_or((item, ""));
            match k {
                "size" => a.size = v.parse().ok(),
                "chunked" => a.chunked = true,
                "status" => a.status = v.parse().ok(),
                "sleep" => a.sleep_ms = v.parse().unwrap_or(0),
                "early" => a.early = true,
                "close" => a.close = true,
                "die-on-reuse" => a.die_on_reuse = true,
                "hdr" => {
                    if let Some((n, val)) = v.split_once(':') {
                        a.extra.push_str(&format!("{n}: {val}\r\n"));
                    }
                }
                _ => {}
            }
        }
        a
    }
}

/// FNV-1a (32 bits) of `bytes`, in hex: what `X-Body-Sum` says of a request body.
pub fn checksum(bytes: &[u8]) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// Serves one connection until it ends; over TLS, the handshake comes with the first read.
fn serve(s: TcpStream, conn: usize, sh: &Shared) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(TIMEOUT));
    let _ = s.set_nodelay(true);
    match &sh.tls {
        None => serve_on(Wire::from_stream(s), conn, sh),
        Some(config) => {
            let Ok(session) = ServerConnection::new(config.clone()) else {
                return;
            };
            serve_on(Wire::from_stream(StreamOwned::new(session, s)), conn, sh);
        }
    }
}

/// Serves the requests of one connection (TCP or TLS) until it ends.
fn serve_on<S: Read + Write>(mut w: Wire<S>, conn: usize, sh: &Shared) {
    for nth in 1.. {
        // the fault is looked at on accept and again when a request came (it may have been
        // set while the connection was idle)
        if plays_fault(&mut w, sh) {
            return;
        }
        let Some(head) = w.read_head() else { return };
        if plays_fault(&mut w, sh) {
            return;
        }
        if !answer(&mut w, wire::parse_request(&head), (conn, nth), sh) {
            return;
        }
    }
}

/// Plays the backend's fault on this connection, if it has one: true when the connection
/// must end (a hanging one ends when the peer leaves).
fn plays_fault<S: Read + Write>(w: &mut Wire<S>, sh: &Shared) -> bool {
    match sh.fault() {
        Fault::None => false,
        Fault::Close | Fault::Refuse => true,
        Fault::Hang => {
            let mut buf = [0u8; 4096];
            while matches!(w.stream.read(&mut buf), Ok(n) if n > 0) {}
            true
        }
    }
}

/// Answers the `nth` request of connection `conn`; false when the connection must end.
fn answer<S: Read + Write>(
    w: &mut Wire<S>,
    req: Request,
    (conn, nth): (usize, usize),
    sh: &Shared,
) -> bool {
    let ask = Ask::parse(&req);
    let record = |body: &[u8]| {
        sh.seen.lock().unwrap().push(Seen {
            conn,
            req: req.clone(),
            body_len: body.len(),
            body_sum: checksum(body),
        });
    };
    if ask.die_on_reuse && nth > 1 {
        record(&[]);
        return false;
    }
    let tag = &sh.name;
    let close = ask.close
        || req.minor == 0
        || req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    if req.target == HEALTH_PATH {
        record(&[]);
        let status = match sh.knobs.health.load(Ordering::SeqCst) {
            0 => 200,
            s => s,
        };
        let conn_field = if close { "Connection: close\r\n" } else { "" };
        let out = format!(
            "HTTP/1.1 {status} Probe\r\nX-Served-By: {tag}\r\nContent-Length: 6\r\n{conn_field}\r\nhealth"
        );
        return w.stream.write_all(out.as_bytes()).is_ok() && !close;
    }
    if req
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    {
        record(&[]);
        return upgrade(w, tag);
    }
    if ask.early {
        // The answer goes out before the body is read, and says the connection stays open: a
        // proxy that relays it must still not reuse this connection (DESIGN §7.1).
        record(&[]);
        let out = format!(
            "HTTP/1.1 200 Early\r\nX-Served-By: {tag}\r\nX-Conn: {conn}\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nearly"
        );
        if w.stream.write_all(out.as_bytes()).is_err() {
            return false;
        }
        return w.try_read_body(&req).is_some();
    }
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        let _ = w.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let Some(body) = w.try_read_body(&req) else {
        return false;
    };
    // Counted as worked on until the answer starts: a proxy cannot have the whole answer
    // before that, so it never sees a request end that this still counts.
    let working = Working::start(&sh.load);
    record(&body);
    if ask.sleep_ms > 0 {
        thread::sleep(Duration::from_millis(ask.sleep_ms));
    }
    let status = ask
        .status
        .unwrap_or(match sh.knobs.status.load(Ordering::SeqCst) {
            0 => 200,
            s => s,
        });
    let mut head = format!(
        "HTTP/1.1 {status} Fake\r\nX-Served-By: {tag}\r\nX-Conn: {conn}\r\nX-Body-Len: {}\r\nX-Body-Sum: {}\r\n{}{}",
        body.len(),
        checksum(&body),
        ask.extra,
        sh.knobs.fields.lock().unwrap()
    );
    if close {
        head.push_str("Connection: close\r\n");
    }
    let payload = match ask.size {
        Some(n) => pattern(n),
        None => req.raw.clone(),
    };
    let bodiless = req.method == "HEAD" || status == 204 || status == 304;
    drop(working);
    let ok = if ask.chunked && !bodiless {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        w.stream.write_all(head.as_bytes()).is_ok() && write_chunked(&mut w.stream, &payload)
    } else {
        if status != 204 && status != 304 {
            head.push_str(&format!("Content-Length: {}\r\n", payload.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !bodiless {
            out.extend_from_slice(&payload);
        }
        w.stream.write_all(&out).is_ok()
    };
    ok && !close
}

/// Sends `payload` as chunks of uneven sizes, then the last chunk.
fn write_chunked(s: &mut impl Write, payload: &[u8]) -> bool {
    let mut at = 0;
    let mut i = 0usize;
    while at < payload.len() {
        let n = (1 + i.wrapping_mul(7919) % 20_000).min(payload.len() - at);
        let mut chunk = format!("{n:x}\r\n").into_bytes();
        chunk.extend_from_slice(&payload[at..at + n]);
        chunk.extend_from_slice(b"\r\n");
        if s.write_all(&chunk).is_err() {
            return false;
        }
        at += n;
        i += 1;
    }
    s.write_all(b"0\r\n\r\n").is_ok()
}

/// Switches to the echo protocol: `101`, then every byte comes back upper-cased until EOF.
fn upgrade<S: Read + Write>(w: &mut Wire<S>, tag: &str) -> bool {
    let out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Served-By: {tag}\r\n\r\n"
    );
    if w.stream.write_all(out.as_bytes()).is_err() {
        return false;
    }
    let pending = w.take_buffered();
    let _ = w.stream.write_all(&pending.to_ascii_uppercase());
    let mut buf = [0u8; 4096];
    loop {
        match w.stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                if w.stream.write_all(&buf[..n].to_ascii_uppercase()).is_err() {
                    return false;
                }
            }
        }
    }
}

/// Removes the common indentation of `text`'s lines, so tests can indent their YAML with
/// the code around it.
pub fn dedent(text: &str) -> String {
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for l in text.lines().skip_while(|l| l.trim().is_empty()) {
        out.push_str(l.get(indent..).unwrap_or("").trim_end());
        out.push('\n');
    }
    out
}

/// A config file for a reverse proxy from a test's YAML: dedented, `@name` replaced by the URL
/// of the backend of that name, and `reverse.listen` put on 127.0.0.1:0 unless the YAML
/// gives it.
pub fn reverse_yaml(yaml: &str, backends: &[&Backend]) -> String {
    let mut text = dedent(yaml);
    let mut by_length: Vec<&&Backend> = backends.iter().collect();
    // "@ab" before "@a", so that one name that starts another is not replaced inside it
    by_length.sort_by_key(|b| std::cmp::Reverse(b.name.len()));
    for b in by_length {
        text = text.replace(&format!("@{}", b.name), &b.url());
    }
    assert!(
        !text.contains('@'),
        "a backend named in the YAML is missing:\n{text}"
    );
    if !text.contains("\n  listen:") && !text.starts_with("  listen:") {
        text = text.replacen("reverse:\n", "reverse:\n  listen: [\"127.0.0.1:0\"]\n", 1);
    }
    assert!(text.contains("reverse:\n"), "no reverse section:\n{text}");
    text
}
