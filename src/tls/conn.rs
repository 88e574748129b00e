//! One connection's TLS, driven from the worker's event loop: rustls' unbuffered API on the
//! session's non-blocking socket. [`crate::conn::Conn`] calls in here instead of reading and
//! writing the socket itself, so the session moves plaintext exactly as it does over plain TCP
//! and the handshake is only the first bytes that move.
//!
//! Memory: rustls keeps the keys and the protocol state; the bytes in flight live in three
//! buffers of this file (ciphertext in, plaintext decrypted but not yet taken, ciphertext
//! out), taken from the worker thread's pool when bytes must wait and given back the moment
//! they are empty. A TLS connection at rest holds none of them.
//!
//! Flow control: ciphertext is read from the socket only when no decrypted plaintext is
//! waiting, and every read is processed at once, so the incoming buffer never holds more than
//! one partial record and what is decrypted never exceeds one read. Output that the socket
//! does not take stays in `out`; the session's next write, or the next writable event
//! ([`TlsConn::flush`]), sends it first, so the order of records never changes.

use super::metrics;
use crate::buffer::Buf;
use crate::conn::Io;
use mio::net::TcpStream;
use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    AppDataRecord, ConnectionState, EncodeError, EncryptError, InsufficientSizeError,
    UnbufferedStatus,
};
use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};

/// The size of a TLS buffer: a whole record of the largest size a peer may send (16 KiB of
/// payload, 2 KiB of expansion, the 5-byte header), so one always fits.
pub const TLS_BUF_SIZE: usize = 16 * 1024 + 2048 + 5;
/// Plaintext encrypted into one record at most.
const MAX_FRAGMENT: usize = 16 * 1024;
/// What a record adds to its plaintext at most (header, content type, AEAD tag, explicit
/// nonce of TLS 1.2's GCM).
const RECORD_OVERHEAD: usize = 64;
/// Free TLS buffers a worker keeps.
const MAX_FREE: usize = 64;

thread_local! {
    /// The worker thread's free TLS buffers (each worker, and the control thread for its
    /// probes, has its own: nothing is shared, nothing is locked).
    static FREE: RefCell<Vec<Buf>> = const { RefCell::new(Vec::new()) };
    /// The SNI of the ClientHello being handled on this thread, left by the certificate
    /// resolver (rustls' unbuffered server connection does not tell it otherwise).
    static SNI: RefCell<Option<Box<str>>> = const { RefCell::new(None) };
    /// A ClientHello was resolved on this thread since the flag was last taken.
    static HELLO: Cell<bool> = const { Cell::new(false) };
}

/// Called by the certificate resolver while rustls handles a ClientHello on this thread.
pub fn note_sni(name: Option<&str>) {
    SNI.with(|s| *s.borrow_mut() = name.map(Box::from));
    HELLO.with(|h| h.set(true));
}

fn take_buf() -> Buf {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| Buf::with_capacity(TLS_BUF_SIZE))
}

fn give_back(slot: &mut Option<Buf>) {
    if slot.as_ref().is_some_and(|b| b.is_empty()) {
        if let Some(b) = slot.take() {
            if b.capacity() == TLS_BUF_SIZE {
                FREE.with(|f| {
                    let mut f = f.borrow_mut();
                    if f.len() < MAX_FREE {
                        f.push(b);
                    }
                });
            }
        }
    }
}

/// Which end of the handshake ferry is.
enum Side {
    /// A client of ferry's TLS listener.
    Server(UnbufferedServerConnection),
    /// ferry to an `https://` server.
    Client(UnbufferedClientConnection),
}

/// What a caller wants from one pass through the records.
#[derive(Clone, Copy)]
enum Goal<'a> {
    /// Take in what arrived (and answer the handshake).
    Input,
    /// Encrypt (a prefix of) these bytes.
    Encrypt(&'a [u8]),
    /// Say close_notify.
    CloseNotify,
}

/// How a pass ended.
enum Pass {
    /// Nothing more can happen without new bytes or room.
    Done(usize),
    Again,
    Failed(rustls::Error),
}

/// The TLS half of a [`crate::conn::Conn`].
pub struct TlsConn {
    side: Side,
    /// Ciphertext received and not yet processed (at most one partial record between calls).
    inc: Option<Buf>,
    /// Plaintext decrypted and not yet taken by the session.
    plain: Option<Buf>,
    /// Ciphertext the socket has not taken yet.
    out: Option<Buf>,
    /// The handshake is over (the metric counted it).
    established: bool,
    /// The peer said close_notify.
    peer_closed: bool,
    /// The socket said EOF.
    eof: bool,
    /// Our close_notify is queued.
    closing: bool,
    /// A read of this call drained the socket: the next one would block (reset by every
    /// call from outside, which may follow a new readiness edge).
    drained: bool,
    /// A fatal error: every later call reports it.
    failed: Option<io::ErrorKind>,
    /// The client's SNI (server side).
    sni: Option<Box<str>>,
    /// A ClientHello was handled (server side).
    hello_seen: bool,
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn")
            .field("established", &self.established)
            .field("sni", &self.sni)
            .finish()
    }
}

impl TlsConn {
    /// The server side of a connection accepted on a TLS listener.
    pub fn server(config: std::sync::Arc<rustls::ServerConfig>) -> io::Result<TlsConn> {
        let c = UnbufferedServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsConn::new(Side::Server(c)))
    }

    /// The client side of a connection to an `https://` server named `name`.
    pub fn client(
        config: std::sync::Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<TlsConn> {
        let c = UnbufferedClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut t = TlsConn::new(Side::Client(c));
        // The ClientHello goes out with the first flush after the TCP connect.
        if let Pass::Failed(e) = t.process(Goal::Input) {
            return Err(io::Error::other(e));
        }
        Ok(t)
    }

    fn new(side: Side) -> TlsConn {
        TlsConn {
            side,
            inc: None,
            plain: None,
            out: None,
            established: false,
            peer_closed: false,
            eof: false,
            closing: false,
            drained: false,
            failed: None,
            sni: None,
            hello_seen: false,
        }
    }

    /// Takes ciphertext that was read before the connection was known to speak TLS (after a
    /// PROXY header); a failure shows in the next read.
    pub fn feed(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.inc.get_or_insert_with(take_buf).push(bytes);
        if let Pass::Failed(e) = self.process(Goal::Input) {
            self.fail(e);
        }
        give_back(&mut self.inc);
    }

    /// The client's SNI, once the ClientHello was read.
    pub fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }

    /// The negotiated version ("1.2", "1.3"), once the handshake is over.
    pub fn version(&self) -> Option<&'static str> {
        let v = match &self.side {
            Side::Server(c) => c.protocol_version(),
            Side::Client(c) => c.protocol_version(),
        };
        match v? {
            rustls::ProtocolVersion::TLSv1_3 => Some("1.3"),
            rustls::ProtocolVersion::TLSv1_2 => Some("1.2"),
            _ => None,
        }
    }

    /// True once the handshake is over.
    pub fn established(&self) -> bool {
        self.established
    }

    /// The connection closes: a server-side handshake that began (a ClientHello came) and
    /// neither finished nor failed is counted as timed out.
    pub fn abandon(&mut self) {
        let begun = self.sni.is_some() || self.hello_seen;
        if matches!(self.side, Side::Server(_))
            && begun
            && !self.established
            && self.failed.is_none()
        {
            metrics::failed("timeout");
            self.failed = Some(io::ErrorKind::TimedOut);
        }
    }

    /// True after a fatal error.
    pub fn failed(&self) -> bool {
        self.failed.is_some()
    }

    /// True when ciphertext waits for the socket.
    pub fn has_output(&self) -> bool {
        self.out.as_ref().is_some_and(|b| !b.is_empty())
    }

    /// True when decrypted bytes wait for the session.
    pub fn has_plaintext(&self) -> bool {
        self.plain.as_ref().is_some_and(|b| !b.is_empty())
    }

    /// Reads plaintext into `buf` until it is full or nothing more has arrived. `read_closed`:
    /// the poll saw the peer's FIN (read on to see EOF even after a short read).
    pub fn read_into(
        &mut self,
        s: &mut TcpStream,
        read_closed: bool,
        buf: &mut Buf,
    ) -> (usize, Io) {
        self.drained = false;
        let mut total = 0;
        loop {
            if let Some(p) = self.plain.as_mut() {
                let spare = buf.spare();
                let n = spare.len().min(p.len());
                spare[..n].copy_from_slice(&p.bytes()[..n]);
                buf.filled(n);
                p.consume(n);
                total += n;
                if !p.is_empty() {
                    return (total, Io::Continue);
                }
                give_back(&mut self.plain);
            }
            if buf.spare().is_empty() {
                return (total, Io::Continue);
            }
            if let Some(k) = self.failed {
                return (total, Io::Error(k));
            }
            if self.peer_closed || self.eof {
                return (total, Io::Closed);
            }
            match self.fill(s, read_closed) {
                Io::Continue => {}
                io => return (total, io),
            }
        }
    }

    /// Reads and answers the handshake with what the socket has, until it is over, the
    /// socket has nothing more, or the peer's first plaintext arrived.
    pub fn handshake(&mut self, s: &mut TcpStream, read_closed: bool) -> Io {
        self.drained = false;
        loop {
            if self.established || self.has_plaintext() {
                return Io::Continue;
            }
            if let Some(k) = self.failed {
                return Io::Error(k);
            }
            if self.eof {
                return Io::Closed;
            }
            match self.fill(s, read_closed) {
                Io::Continue => {}
                io => return io,
            }
        }
    }

    /// One read of ciphertext from the socket, processed, and the handshake's answer sent.
    /// `Continue` when something was read.
    fn fill(&mut self, s: &mut TcpStream, read_closed: bool) -> Io {
        if self.drained && !read_closed {
            self.drained = false;
            return Io::WouldBlock;
        }
        self.drained = false;
        let inc = self.inc.get_or_insert_with(take_buf);
        let spare = inc.spare();
        let want = spare.len();
        if want == 0 {
            // A record larger than any peer may send.
            return self.fail(rustls::Error::General("record too large".into()));
        }
        let n = loop {
            match s.read(spare) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    give_back(&mut self.inc);
                    return Io::WouldBlock;
                }
                Err(e) => {
                    give_back(&mut self.inc);
                    if !self.established {
                        metrics::failed("eof");
                    }
                    self.failed = Some(e.kind());
                    return Io::Error(e.kind());
                }
            }
        };
        if n == 0 {
            give_back(&mut self.inc);
            self.eof = true;
            if !self.established {
                metrics::failed("eof");
                self.failed = Some(io::ErrorKind::UnexpectedEof);
            }
            return Io::Closed;
        }
        inc.filled(n);
        self.drained = n < want;
        if let Pass::Failed(e) = self.process(Goal::Input) {
            return self.fail(e);
        }
        give_back(&mut self.inc);
        // The handshake's answer (and session tickets) go out at once; what the socket does
        // not take waits for the next writable event.
        if let Io::Error(k) = self.flush(s) {
            return Io::Error(k);
        }
        Io::Continue
    }

    fn fail(&mut self, e: rustls::Error) -> Io {
        if !self.established {
            metrics::failed(metrics::reason(&e));
        }
        log::debug!("TLS: {e}");
        self.inc = None;
        self.plain = None;
        self.failed = Some(io::ErrorKind::InvalidData);
        Io::Error(io::ErrorKind::InvalidData)
    }

    /// Encrypts from `bytes` and writes until all is sent or the socket is full; returns the
    /// plaintext bytes taken. Before the handshake is over nothing is taken (`WouldBlock`
    /// without the socket being full: the caller tries again after the next event).
    pub fn write_slice(&mut self, s: &mut TcpStream, bytes: &[u8]) -> (usize, Io, bool) {
        let mut total = 0;
        loop {
            match self.flush(s) {
                Io::Continue => {}
                io => return (total, io, true),
            }
            if total == bytes.len() {
                return (total, Io::Continue, false);
            }
            if let Some(k) = self.failed {
                return (total, Io::Error(k), false);
            }
            match self.process(Goal::Encrypt(&bytes[total..])) {
                Pass::Done(0) => return (total, Io::WouldBlock, false),
                Pass::Done(n) => total += n,
                Pass::Again => {}
                Pass::Failed(e) => return (total, self.fail(e), false),
            }
        }
    }

    /// Queues close_notify (once) and sends what it can.
    pub fn close_notify(&mut self, s: &mut TcpStream) {
        if !self.closing && self.established && self.failed.is_none() {
            self.closing = true;
            let _ = self.process(Goal::CloseNotify);
        }
        let _ = self.flush(s);
    }

    /// Writes waiting ciphertext. `Continue` when none is left.
    pub fn flush(&mut self, s: &mut TcpStream) -> Io {
        let Some(out) = self.out.as_mut() else {
            return Io::Continue;
        };
        while !out.is_empty() {
            match s.write(out.bytes()) {
                Ok(0) => return Io::Error(io::ErrorKind::WriteZero),
                Ok(n) => out.consume(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Io::WouldBlock,
                Err(e) => {
                    self.failed = Some(e.kind());
                    return Io::Error(e.kind());
                }
            }
        }
        give_back(&mut self.out);
        Io::Continue
    }

    /// One pass through rustls' states towards `goal`.
    fn process(&mut self, goal: Goal) -> Pass {
        loop {
            let mut empty = [0u8; 0];
            let incoming: &mut [u8] = match self.inc.as_mut() {
                Some(b) => b.bytes_mut(),
                None => &mut empty,
            };
            let mut flags = Flags {
                peer_closed: false,
                established: false,
                resumed: false,
            };
            let (discard, pass) = match &mut self.side {
                Side::Server(c) => {
                    HELLO.with(|h| h.set(false));
                    let st = c.process_tls_records(incoming);
                    let r = act(st, &mut self.plain, &mut self.out, goal, &mut flags);
                    if HELLO.with(|h| h.replace(false)) {
                        self.sni = SNI.with(|s| s.borrow_mut().take());
                        self.hello_seen = true;
                    }
                    let established = !c.is_handshaking();
                    flags.established = established;
                    flags.resumed =
                        matches!(c.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
                    r
                }
                Side::Client(c) => {
                    let st = c.process_tls_records(incoming);
                    let r = act(st, &mut self.plain, &mut self.out, goal, &mut flags);
                    flags.established = !c.is_handshaking();
                    r
                }
            };
            if let Some(inc) = self.inc.as_mut() {
                inc.consume(discard.min(inc.len()));
            }
            self.peer_closed |= flags.peer_closed;
            if flags.established && !self.established {
                self.established = true;
                if matches!(self.side, Side::Server(_)) {
                    metrics::established(flags.resumed, self.version());
                }
            }
            match pass {
                Pass::Again => continue,
                done => return done,
            }
        }
    }
}

/// What a pass learnt besides its result.
struct Flags {
    peer_closed: bool,
    established: bool,
    resumed: bool,
}

/// Acts on one state of the connection. Returns the bytes of `incoming` to discard.
fn act<Data>(
    status: UnbufferedStatus<'_, '_, Data>,
    plain: &mut Option<Buf>,
    out: &mut Option<Buf>,
    goal: Goal,
    flags: &mut Flags,
) -> (usize, Pass) {
    let UnbufferedStatus { mut discard, state } = status;
    let state = match state {
        Ok(s) => s,
        Err(e) => return (discard, Pass::Failed(e)),
    };
    let pass = match state {
        ConnectionState::ReadTraffic(mut r) => {
            while let Some(rec) = r.next_record() {
                match rec {
                    Ok(AppDataRecord {
                        discard: d,
                        payload,
                    }) => {
                        discard += d;
                        plain.get_or_insert_with(take_buf).push(payload);
                    }
                    Err(e) => return (discard, Pass::Failed(e)),
                }
            }
            Pass::Again
        }
        ConnectionState::EncodeTlsData(mut e) => {
            let o = out.get_or_insert_with(take_buf);
            loop {
                match e.encode(o.spare()) {
                    Ok(n) => {
                        o.filled(n);
                        break;
                    }
                    Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                        // A handshake message larger than a buffer (a long chain): this
                        // buffer grows and is dropped afterwards instead of pooled.
                        o.grow_to(o.len() + required_size);
                    }
                    Err(_) => break,
                }
            }
            Pass::Again
        }
        // `out` keeps the order of what was encoded; it is written by the next flush.
        ConnectionState::TransmitTlsData(t) => {
            t.done();
            Pass::Again
        }
        ConnectionState::WriteTraffic(mut w) => match goal {
            Goal::Input => Pass::Done(0),
            Goal::Encrypt(data) => {
                let o = out.get_or_insert_with(take_buf);
                let room = o.spare().len().saturating_sub(RECORD_OVERHEAD);
                let n = data.len().min(MAX_FRAGMENT).min(room);
                if n == 0 {
                    // Full of ciphertext the socket has not taken: flush first.
                    return (discard, Pass::Done(0));
                }
                match w.encrypt(&data[..n], o.spare()) {
                    Ok(m) => {
                        o.filled(m);
                        Pass::Done(n)
                    }
                    Err(EncryptError::InsufficientSize(InsufficientSizeError {
                        required_size,
                    })) => {
                        o.grow_to(o.len() + required_size);
                        Pass::Again
                    }
                    Err(EncryptError::EncryptExhausted) => {
                        Pass::Failed(rustls::Error::EncryptError)
                    }
                }
            }
            Goal::CloseNotify => {
                let o = out.get_or_insert_with(take_buf);
                match w.queue_close_notify(o.spare()) {
                    Ok(m) => {
                        o.filled(m);
                        Pass::Done(0)
                    }
                    Err(EncryptError::InsufficientSize(InsufficientSizeError {
                        required_size,
                    })) => {
                        o.grow_to(o.len() + required_size);
                        Pass::Again
                    }
                    Err(_) => Pass::Done(0),
                }
            }
        },
        ConnectionState::PeerClosed => {
            flags.peer_closed = true;
            Pass::Again
        }
        ConnectionState::Closed => {
            flags.peer_closed = true;
            Pass::Done(0)
        }
        ConnectionState::BlockedHandshake => Pass::Done(0),
        // Early data is never enabled.
        ConnectionState::ReadEarlyData(_) => {
            Pass::Failed(rustls::Error::General("unexpected early data".into()))
        }
        _ => Pass::Done(0),
    };
    (discard, pass)
}
