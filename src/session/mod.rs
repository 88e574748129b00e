//! The client-connection state machine.
//!
//! Lifecycle of a session (one accepted client connection):
//!
//! ```text
//! Head ──► Exchange: Resolving ─► Connecting ─► Connected (request ► / ◄ response) ──┐
//!  │ ▲                                                                                 │
//!  │ └── Auth (a site's auth service asked first, see `auth`) ◄── reverse, auth.forward │
//!  ▲                                   │                     │                       │
//!  │                                   │ CONNECT direct,     │ CONNECT 2xx from      │
//!  │                                   ▼ or 101              ▼ upstream, or 101      │
//!  │                                 Tunnel ◄────────────────┘                       │
//!  │                                   │                                             │
//!  └──────── keep-alive ◄──────────────┼──── response done, both sides keep-alive ◄──┘
//!                                      ▼
//!                  Closing (flush what the client is owed, half-close, linger) ─► closed
//! ```
//!
//! - `Head` reads and parses the next request head from the client (`cin`); pipelined bytes
//!   stay in `cin` until their turn.
//! - `Exchange` owns one request/response: the rewritten head, request body framing
//!   (`cin` → `sout`) and response framing (`sin` → `cout`).
//! - `Auth` asks a site's auth service about the head at the front of `cin` before its
//!   exchange may start (see `auth`).
//! - `Tunnel` relays raw bytes both ways (see `relay`).
//! - `Closing` writes out `cout` (often a refusal from `http::reply`), then closes.
//!
//! Buffers are taken from the worker's pool when bytes must wait and given back as soon as they
//! are empty, so a session at rest holds none.

mod auth;
mod exchange;
mod head;
mod tunnel;

use tunnel::TunnelState;

use crate::buffer::Buf;
use crate::config::Config;
use crate::conn::{Conn, Io, Tls};
use crate::http::reply::{self, Refusal};
use crate::http::request::{self, MAX_REQUEST_LINE};
use crate::http::HeadScan;
use crate::listener::Role;
use crate::relay::Tunnel;
use crate::resolve::Answer;
use crate::worker::Ctx;
use exchange::Exchange;
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::mem;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rounds one `drive` makes before the worker serves other sessions; the session is then
/// driven again on the next loop turn.
const MAX_ROUNDS: usize = 32;
/// Bytes owed to the client past which a session makes no more of them (no new request is
/// started, no further response head is read) until the client reads: a client that never
/// reads holds its buffers, not an ever-growing queue of answers.
pub(crate) const OUT_LIMIT: usize = crate::buffer::BUF_SIZE;

/// How long a closing connection keeps reading (and discarding) what the client still sends,
/// so that our last response is not destroyed by a reset.
const LINGER: Duration = Duration::from_secs(2);

/// What the worker should do with a session after driving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Wait for the next event or timer.
    Wait,
    /// Still has work; drive again soon.
    Again,
    /// Close it.
    Close,
}

/// Which connection of the session an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// The token of a session's client (even) or server (odd) socket.
pub fn token(slot: usize, side: Side) -> Token {
    Token(slot * 2 + (side == Side::Server) as usize)
}

/// What the poll said about one socket.
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
    /// The peer's FIN has arrived.
    pub read_closed: bool,
}

/// The slot and side a token stands for.
pub fn side_of(token: usize) -> (usize, Side) {
    (
        token / 2,
        if token.is_multiple_of(2) {
            Side::Client
        } else {
            Side::Server
        },
    )
}

/// Where the session's server connection leads, for reuse decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTarget {
    Origin(String, u16),
    /// An upstream proxy, by URL.
    Upstream(String),
}

/// The session's connection towards an origin or upstream proxy.
#[derive(Debug)]
pub struct Server {
    pub conn: Conn,
    pub target: ServerTarget,
    pub connected: bool,
    pub reused: bool,
}

enum Phase {
    /// Waiting for the PROXY protocol header a trusted proxy sends first (`proxy_protocol`);
    /// `tls`: the connection speaks TLS after it.
    Preface {
        tls: bool,
    },
    Head,
    /// A site's auth service is asked about the head at the front of `cin`.
    Auth(Box<auth::AuthCheck>),
    Exchange(Box<Exchange>),
    Tunnel(Box<TunnelState>),
    /// `shut`: our FIN went out; `reset`: close with a reset once `cout` is written.
    Closing {
        shut: bool,
        reset: bool,
    },
}

/// One client connection and everything it is doing.
pub struct Session {
    slot: usize,
    generation: u32,
    client: Conn,
    /// The client: the peer, or the address its trusted proxy's PROXY header announced.
    peer: SocketAddr,
    /// Forward proxy or published sites.
    role: Role,
    /// The peer is in `reverse.trusted_proxies`: its forwarding fields are believed.
    trusted: bool,
    server: Option<Server>,
    phase: Phase,
    /// Bytes from the client not yet handled (a head, body, pipelined requests).
    cin: Option<Buf>,
    /// Bytes for the client.
    cout: Option<Buf>,
    /// Bytes from the server not yet handled.
    sin: Option<Buf>,
    /// Body bytes for the server (the head goes from the exchange's own buffer).
    sout: Option<Buf>,
    /// The search of `cin` for the end of the next head.
    scan: HeadScan,
    /// The auth service said yes to the head at the front of `cin` (it is parsed again).
    auth_pass: Option<Box<auth::AuthPass>>,
    /// When the first byte of the head now arriving came (the header and request timeouts run
    /// from it); `None` while the connection waits idle between requests.
    head_started: Option<Instant>,
    client_eof: bool,
    /// The request being refused before it had an exchange was a CONNECT (for the counters).
    refused_connect: bool,
    deadline: Instant,
    /// The config snapshot this session started with.
    config: Arc<Config>,
}

impl Session {
    /// A session for a freshly accepted, already registered client connection.
    pub fn new(
        slot: usize,
        generation: u32,
        stream: TcpStream,
        peer: SocketAddr,
        (role, tls): (Role, Tls),
        ctx: &Ctx,
    ) -> Session {
        let rev = ctx
            .config
            .reverse
            .as_ref()
            .filter(|_| role == Role::Reverse);
        let preface = rev.is_some_and(|r| r.proxy_protocol);
        // Behind a PROXY header the TLS begins after it.
        let (tls_after_preface, tls) = if preface {
            (tls.is_some(), None)
        } else {
            (false, tls)
        };
        Session {
            slot,
            generation,
            client: Conn::with_tls(stream, tls),
            peer,
            role,
            trusted: rev.is_some_and(|r| r.trusts(peer.ip())),
            server: None,
            phase: if preface {
                Phase::Preface {
                    tls: tls_after_preface,
                }
            } else {
                Phase::Head
            },
            cin: None,
            cout: None,
            sin: None,
            sout: None,
            scan: HeadScan::default(),
            auth_pass: None,
            head_started: None,
            client_eof: false,
            refused_connect: false,
            deadline: ctx.now + ctx.config.limits.header_timeout,
            config: ctx.config.clone(),
        }
    }

    /// When the session's current timer fires.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// True when the session waits for a new request and holds no part of one: it can be
    /// closed without losing anything (drain, idle sweep).
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Head)
            && self.cin.as_ref().is_none_or(|b| b.is_empty())
            && self.cout.as_ref().is_none_or(|b| b.is_empty())
            && !self.client.has_pending_output()
    }

    /// Records readiness from the poll and drives the session.
    pub fn ready(&mut self, side: Side, ev: Readiness, ctx: &mut Ctx) -> Step {
        let (conn, connecting) = match side {
            Side::Client => (&mut self.client, false),
            Side::Server => match (&mut self.phase, &mut self.server) {
                // The auth sub-request has the server token (the session has no server then).
                (Phase::Auth(a), _) => match a.conn_mut() {
                    Some(c) => (c, false),
                    None => return Step::Wait,
                },
                (_, Some(s)) => (&mut s.conn, !s.connected),
                (_, None) => return Step::Wait,
            },
        };
        conn.readable |= ev.readable;
        conn.writable |= ev.writable;
        conn.read_closed |= ev.read_closed;
        // TLS output that waited for room, and the handshake, move first (a failure shows in
        // the session's next read or write of the connection). Not before a connect is known
        // to have worked: a write would take the connect's error from `connect_outcome`.
        if !connecting {
            conn.progress();
        }
        self.drive(ctx)
    }

    /// Takes a resolver's answer (ignored unless the session is still waiting for it).
    pub fn resolved(&mut self, answer: Answer, ctx: &mut Ctx) -> Step {
        if let Phase::Auth(a) = &self.phase {
            if a.is_resolving(&answer.host, &self.config) {
                return self.auth_resolved(answer.result, answer.abandoned, ctx);
            }
        }
        if let Phase::Exchange(ex) = &mut self.phase {
            if ex.is_resolving(&answer.host, &self.config) {
                let step = self.on_resolved(answer.result, answer.abandoned, ctx);
                if step != Step::Wait {
                    return step;
                }
                return self.drive(ctx);
            }
        }
        Step::Wait
    }

    /// The timer fired.
    pub fn expire(&mut self, ctx: &mut Ctx) -> Step {
        if ctx.now < self.deadline {
            return Step::Wait;
        }
        match &self.phase {
            // A head begun but not finished in time is answered (RFC 9110 §15.5.9); a
            // connection that sent nothing is just closed.
            Phase::Head if self.head_started.is_some() => {
                let r = Err(Fail::Refuse(Refusal::new(
                    408,
                    "the request head did not arrive in time",
                )));
                self.head_started = None;
                self.settle(r, ctx)
            }
            Phase::Preface { .. } | Phase::Head | Phase::Tunnel(_) | Phase::Closing { .. } => {
                Step::Close
            }
            Phase::Auth(_) => {
                let r = self.auth_timeout(ctx);
                self.settle(r, ctx)
            }
            Phase::Exchange(_) => {
                let r = self.exchange_timeout(ctx);
                self.settle(r, ctx)
            }
        }
    }

    /// Does all the work the current readiness allows.
    pub fn drive(&mut self, ctx: &mut Ctx) -> Step {
        for _ in 0..MAX_ROUNDS {
            let r = match self.phase {
                Phase::Preface { tls } => self.drive_preface(tls, ctx),
                Phase::Head => self.drive_head(ctx),
                Phase::Auth(_) => self.drive_auth(ctx),
                Phase::Exchange(_) => self.drive_exchange(ctx),
                Phase::Tunnel(_) => self.drive_tunnel(ctx),
                Phase::Closing { .. } => self.drive_closing(ctx),
            };
            match self.settle(r, ctx) {
                Step::Again => continue,
                step => {
                    self.release_empty(ctx);
                    return step;
                }
            }
        }
        self.release_empty(ctx);
        Step::Again
    }

    /// Turns the result of one round into what happens next; errors become replies here.
    fn settle(&mut self, r: Result<bool, Fail>, ctx: &mut Ctx) -> Step {
        match r {
            Ok(true) => Step::Again,
            Ok(false) => Step::Wait,
            Err(Fail::Abort) => Step::Close,
            Err(Fail::Refuse(refusal)) => {
                self.refuse(refusal, ctx);
                Step::Again
            }
        }
    }

    /// Answers the client with `r` and closes once it is written. When part of a response
    /// already went out, a reply would corrupt it, so the connection is just cut.
    fn refuse(&mut self, mut r: Refusal, ctx: &mut Ctx) {
        if let Phase::Exchange(ex) = &self.phase {
            // A reverse request's reply names its site and route, and the server tried.
            if let Some(s) = ex.served().filter(|_| !r.why.starts_with("site ")) {
                let server = ex.server_url(&self.config);
                r.why = match server {
                    Some(url) => format!("{}: server {url}: {}", s.names(&self.config), r.why),
                    None => format!("{}: {}", s.names(&self.config), r.why),
                }
                .into();
            }
        }
        let started = match &mut self.phase {
            Phase::Exchange(ex) => {
                ex.refused(&r, self.peer, ctx);
                ex.response_started()
            }
            // A head that could not be parsed is a request too.
            _ => {
                ctx.stats()
                    .request_done(self.refused_connect, false, false, 0, 0);
                if self.config.access_log {
                    log::info!(target: crate::logging::ACCESS, "access: {} - - via=- status={} up=0 down=0 attempts=0 ms=0 tls={}", self.peer, r.status, self.client.tls_version().unwrap_or("-"));
                }
                false
            }
        };
        self.drop_server(ctx);
        if started {
            // A reply would corrupt the response under way: the client gets what it is owed
            // of it (a message cut short, never an empty reply), then the connection closes.
            // Where the close itself ends the body (de-chunked for HTTP/1.0), a plain close
            // would pass for a complete message: that one ends with a reset.
            let reset = matches!(&self.phase, Phase::Exchange(ex) if ex.ends_with_close());
            self.enter_closing(ctx);
            if let Phase::Closing { reset: r, .. } = &mut self.phase {
                *r = reset;
            }
            return;
        }
        log::debug!("{}: {} {}", self.peer, r.status, r.why);
        reply::write(ctx.bufs.fill(&mut self.cout), &r);
        self.enter_closing(ctx);
    }

    /// Writes out what the client is owed, then closes.
    fn enter_closing(&mut self, ctx: &mut Ctx) {
        let old = mem::replace(
            &mut self.phase,
            Phase::Closing {
                shut: false,
                reset: false,
            },
        );
        self.release_phase(old, ctx);
        // Answers still owed get the idle timeout per write (see `drive_closing`); the linger
        // starts once they are out.
        self.deadline = if self.cout.as_ref().is_some_and(|b| !b.is_empty()) {
            ctx.now + self.config.limits.idle_timeout
        } else {
            ctx.now + LINGER
        };
    }

    // ---- Closing ----

    fn drive_closing(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let mut progress = self.flush_client(ctx)?;
        if self.cout.as_ref().is_some_and(|b| !b.is_empty()) || self.client.has_pending_output() {
            // A slow reader gets the idle timeout per write, not the linger time.
            if progress {
                self.deadline = ctx.now + self.config.limits.idle_timeout;
            }
            return Ok(progress);
        }
        let Phase::Closing { shut, reset } = &mut self.phase else {
            return Ok(false);
        };
        if *reset {
            // SO_LINGER 0: the close sends RST, which the client cannot take for an end.
            let _ = socket2::SockRef::from(&self.client.stream).set_linger(Some(Duration::ZERO));
            return Err(Fail::Abort);
        }
        if !*shut {
            self.client.shutdown_write();
            *shut = true;
            progress = true;
            self.deadline = ctx.now + LINGER;
        }
        // Linger: read and drop what the client still sends until it closes too.
        if self.client.readable {
            let b = ctx.bufs.fill(&mut self.cin);
            loop {
                let (_, io) = self.client.read_into(b);
                b.consume(b.len());
                match io {
                    Io::Continue => continue,
                    Io::WouldBlock => break,
                    Io::Closed | Io::Error(_) => return Err(Fail::Abort),
                }
            }
        }
        if self.client_eof {
            return Err(Fail::Abort);
        }
        Ok(progress)
    }

    // ---- shared pieces ----

    /// Writes what the client is owed.
    fn flush_client(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let Some(b) = self.cout.as_mut().filter(|b| !b.is_empty()) else {
            return Ok(false);
        };
        if !self.client.writable {
            return Ok(false);
        }
        let (n, io) = self.client.write_from(b);
        if let Io::Error(k) = io {
            log::debug!("{}: client write failed: {k:?}", self.peer);
            return Err(Fail::Abort);
        }
        ctx.bufs.release_if_empty(&mut self.cout);
        Ok(n > 0)
    }

    /// Reads from the client into `cin` while there is room.
    fn fill_cin(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        if !self.client.readable || self.client_eof {
            return Ok(false);
        }
        let b = ctx.bufs.fill(&mut self.cin);
        if b.room() == 0 {
            return Ok(false);
        }
        let (n, io) = self.client.read_into(b);
        match io {
            Io::Closed => self.client_eof = true,
            Io::Error(k) => {
                log::debug!("{}: client read failed: {k:?}", self.peer);
                return Err(Fail::Abort);
            }
            _ => {}
        }
        Ok(n > 0 || self.client_eof)
    }

    /// Registers a new server connection under this session's server token.
    fn attach_server(
        &mut self,
        (mut stream, tls): (TcpStream, Tls),
        target: ServerTarget,
        connected: bool,
        reused: bool,
        ctx: &mut Ctx,
    ) -> std::io::Result<()> {
        ctx.registry.register(
            &mut stream,
            token(self.slot, Side::Server),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let mut conn = Conn::with_tls(stream, tls);
        // A reused connection is writable at once; the poll will say so too, but saying it now
        // saves a loop turn.
        conn.writable = connected;
        self.server = Some(Server {
            conn,
            target,
            connected,
            reused,
        });
        Ok(())
    }

    /// Closes the server connection, if any.
    fn drop_server(&mut self, ctx: &mut Ctx) {
        if let Some(mut s) = self.server.take() {
            let _ = ctx.registry.deregister(&mut s.conn.stream);
        }
        // `sout` stays: body bytes not yet sent go to the next attempt.
        if let Some(b) = self.sin.take() {
            ctx.bufs.put(b);
        }
    }

    /// Gives back whatever a finished phase held.
    fn release_phase(&mut self, old: Phase, ctx: &mut Ctx) {
        match old {
            Phase::Exchange(ex) => ex.release(ctx),
            Phase::Auth(a) => a.release(ctx),
            Phase::Tunnel(t) => {
                ctx.stats().request_done(
                    t.connect,
                    t.direct,
                    true,
                    t.relay.up.bytes,
                    t.relay.down.bytes,
                );
                if let Some(log) = &t.log {
                    log.tunnel(
                        self.peer,
                        t.relay.up.bytes,
                        t.relay.down.bytes,
                        t.started,
                        ctx.now,
                    );
                }
                t.relay.release(&mut ctx.bufs, &mut ctx.pipes);
            }
            Phase::Preface { .. } | Phase::Head | Phase::Closing { .. } => {}
        }
    }

    fn release_empty(&mut self, ctx: &mut Ctx) {
        for slot in [&mut self.cin, &mut self.cout, &mut self.sin, &mut self.sout] {
            ctx.bufs.release_if_empty(slot);
        }
    }

    /// Gives everything back and deregisters both sockets.
    pub fn close(mut self, ctx: &mut Ctx) {
        self.client.abandon_handshake();
        let old = mem::replace(
            &mut self.phase,
            Phase::Closing {
                shut: true,
                reset: false,
            },
        );
        self.release_phase(old, ctx);
        self.drop_server(ctx);
        for b in [self.cin.take(), self.cout.take(), self.sout.take()]
            .into_iter()
            .flatten()
        {
            ctx.bufs.put(b);
        }
        let _ = ctx.registry.deregister(&mut self.client.stream);
    }
}

/// How a round of work failed.
#[derive(Debug)]
enum Fail {
    /// Close at once: the client is gone, or a reply would corrupt what it already got.
    Abort,
    /// Answer with this refusal, then close.
    Refuse(Refusal),
}
