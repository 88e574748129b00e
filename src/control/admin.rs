//! The admin HTTP server, on the control thread: `GET /health`, `/readyz`, `/status` and
//! `/metrics` (HEAD too), exact paths only, and the control API under `/api/v1` (DESIGN §9);
//! anything else 404, other methods 405. With `admin.token` every request needs
//! `Authorization: Bearer <token>` (401 otherwise, compared in constant time).
//!
//! The control thread also runs probes, reloads and signals, so nothing here may hold it:
//! each connection's protocol (size limit, head deadline, bounded output, pipelining) lives
//! in [`session`], and this file moves bytes between it and the socket in short turns. A turn
//! that runs out of budget with work left is resumed on the next pass of the loop, after
//! whatever else is ready. When the slots are full, a new client takes the place of a stalled
//! one (see `Admin::slot_for`).

mod answer;
pub mod session;

pub use answer::constant_time_eq;

use crate::config::Config;
use crate::shared::Shared;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use session::AdminSession;
use std::io::{ErrorKind, Read, Write};
use std::net::IpAddr;
use std::time::Instant;

/// What the admin server's answers read and change: the control thread's running state.
pub trait Host {
    /// The config in force.
    fn config(&self) -> &Config;
    /// The counters and flags shared with the workers.
    fn shared(&self) -> &Shared;
    /// Answers one `/api/v1` request that passed the token checks (`method` is GET for a
    /// HEAD): status, JSON body, and `Allow` for a 405.
    #[cfg(feature = "api")]
    fn api(&mut self, method: &str, path: &str, body: &[u8]) -> super::api::Reply;
}

/// The listener's token; connections follow from `FIRST_CONN`.
pub const LISTENER: Token = Token(2);
const FIRST_CONN: usize = 1 << 20;
/// Admin connections open at most.
const MAX_CONNS: usize = 64;
/// Admin connections one peer address holds at most, so that one host flooding the port
/// churns only its own share of the slots.
const PER_PEER: usize = MAX_CONNS / 4;
/// Reads and writes one connection gets per turn before the others (and probes, reloads
/// and signals) have theirs.
const TURN_ROUNDS: usize = 8;
/// Connections accepted per turn of the listener.
const ACCEPTS_PER_TURN: usize = 64;

struct Conn {
    stream: TcpStream,
    peer: IpAddr,
    session: AdminSession,
    /// What the kernel last said: true until a read (write) hits `WouldBlock`. The session
    /// may decline to read for a while, and mio is edge-triggered, so this is remembered.
    readable: bool,
    writable: bool,
    /// The last turn ended on its budget, not for lack of work.
    again: bool,
}

/// How a connection's turn ended.
enum Turn {
    /// Waiting for the peer (or for its own output to drain).
    Idle,
    /// Out of budget with work left.
    Again,
    /// The connection is finished.
    Done,
}

/// The admin server's listener and connections.
pub struct Admin {
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    /// The listener's last turn ended on its budget.
    accept_again: bool,
}

impl Admin {
    /// Binds `addr` and registers the listener.
    pub fn bind(addr: std::net::SocketAddr, registry: &Registry) -> std::io::Result<Admin> {
        let mut listener = TcpListener::bind(addr)?;
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Admin {
            listener,
            conns: Vec::new(),
            accept_again: false,
        })
    }

    /// Closes the listener and every connection.
    pub fn shutdown(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.listener);
        for i in 0..self.conns.len() {
            self.close(i, registry);
        }
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// True when `token` is one of the admin server's.
    pub fn owns(token: Token) -> bool {
        token == LISTENER || token.0 >= FIRST_CONN
    }

    /// When `tick` is next due: now if a turn was cut short, else the earliest deadline.
    pub fn next_wake(&self) -> Option<Instant> {
        let conns = self.conns.iter().flatten();
        if self.accept_again || conns.clone().any(|c| c.again) {
            return Some(Instant::now());
        }
        conns.map(|c| c.session.deadline()).min()
    }

    /// Resumes the turns that were cut short and closes connections past their deadline.
    pub fn tick(&mut self, registry: &Registry, now: Instant, host: &mut dyn Host) {
        if self.accept_again {
            self.accept(registry, host);
        }
        for i in 0..self.conns.len() {
            if self.conns[i].as_ref().is_some_and(|c| c.again) {
                self.turn(i, registry, host);
            }
            if self.conns[i]
                .as_ref()
                .is_some_and(|c| now >= c.session.deadline())
            {
                self.close(i, registry);
            }
        }
    }

    /// Handles readiness of the listener or a connection.
    pub fn ready(&mut self, token: Token, registry: &Registry, host: &mut dyn Host) {
        if token == LISTENER {
            self.accept(registry, host);
            return;
        }
        let i = token.0 - FIRST_CONN;
        let Some(Some(c)) = self.conns.get_mut(i) else {
            return;
        };
        // Any event may mean either direction moved; a wrong guess costs one WouldBlock.
        c.readable = true;
        c.writable = true;
        self.turn(i, registry, host);
    }

    fn accept(&mut self, registry: &Registry, host: &mut dyn Host) {
        self.accept_again = false;
        for _ in 0..ACCEPTS_PER_TURN {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    let now = Instant::now();
                    let slot = self.slot_for(peer.ip(), registry);
                    if registry
                        .register(
                            &mut stream,
                            Token(FIRST_CONN + slot),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_err()
                    {
                        continue;
                    }
                    self.conns[slot] = Some(Conn {
                        stream,
                        peer: peer.ip(),
                        session: AdminSession::new(now, host.config().limits.header_timeout),
                        readable: true,
                        writable: true,
                        again: false,
                    });
                    // The request is often here already: answering it now means a burst of
                    // newer connections cannot push this one out before it is served.
                    self.turn(slot, registry, host);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("admin accept: {e}");
                    return;
                }
            }
        }
        self.accept_again = true;
    }

    /// A free slot for a new connection from `peer`, making one if need be.
    ///
    /// Slow or idle clients must never lock the admin server out (DESIGN §6), and a deadline
    /// alone does not ensure that: enough slow clients hold every slot for as long as it
    /// runs. So when `peer` already holds `PER_PEER` connections, its own connection that
    /// has gone longest without an answered request makes way; else, when all slots are
    /// taken, that connection of the address holding the most slots does. A client that is
    /// being served moves its mark with every answer, so only connections that idle, never
    /// finish a head, or do not read their answers are pushed out, the longest-stalled first;
    /// and hosts that flood the port churn their own share while a lone client keeps its own.
    fn slot_for(&mut self, peer: IpAddr, registry: &Registry) -> usize {
        let stalest = |only: Option<IpAddr>| {
            self.conns
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
                .filter(|(_, c)| only.is_none_or(|p| c.peer == p))
                .min_by_key(|(_, c)| c.session.answered_at())
                .map(|(i, _)| i)
        };
        let held = self
            .conns
            .iter()
            .flatten()
            .filter(|c| c.peer == peer)
            .count();
        let evict = if held >= PER_PEER {
            stalest(Some(peer))
        } else if let Some(free) = self.conns.iter().position(Option::is_none) {
            return free;
        } else if self.conns.len() < MAX_CONNS {
            self.conns.push(None);
            return self.conns.len() - 1;
        } else {
            // Full: the address holding the most slots gives one up, so that clients spread
            // over a few addresses cannot push out a lone monitor that merely sat idle.
            let most = self
                .conns
                .iter()
                .flatten()
                .map(|c| {
                    (
                        self.conns
                            .iter()
                            .flatten()
                            .filter(|o| o.peer == c.peer)
                            .count(),
                        c.peer,
                    )
                })
                .max_by_key(|&(n, _)| n)
                .map(|(_, p)| p);
            stalest(most)
        };
        let i = evict.expect("a full table or a peer at its cap has a connection to evict");
        log::debug!("admin: closing a stalled connection to make room");
        self.close(i, registry);
        i
    }

    /// Gives connection `i` one turn and acts on how it ended.
    fn turn(&mut self, i: usize, registry: &Registry, host: &mut dyn Host) {
        let Some(Some(c)) = self.conns.get_mut(i) else {
            return;
        };
        match serve(c, host) {
            Turn::Idle => c.again = false,
            Turn::Again => c.again = true,
            Turn::Done => self.close(i, registry),
        }
    }

    fn close(&mut self, i: usize, registry: &Registry) {
        if let Some(mut c) = self.conns[i].take() {
            let _ = registry.deregister(&mut c.stream);
        }
    }
}

/// Writes, reads and answers for at most `TURN_ROUNDS` rounds, each moving at most one read's
/// worth of input and one write.
fn serve(c: &mut Conn, host: &mut dyn Host) -> Turn {
    let mut b = [0u8; 4096];
    for _ in 0..TURN_ROUNDS {
        let now = Instant::now();
        let mut moved = false;
        if c.writable && !c.session.unsent().is_empty() {
            match c.stream.write(c.session.unsent()) {
                Ok(0) => return Turn::Done,
                Ok(n) => {
                    c.session.wrote(n, now);
                    moved = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => moved = true,
                Err(_) => return Turn::Done,
            }
        }
        let room = c.session.input_room().min(b.len());
        if c.readable && room > 0 {
            match c.stream.read(&mut b[..room]) {
                Ok(0) => {
                    c.session.received_eof();
                    c.readable = false;
                    moved = true;
                }
                Ok(n) => {
                    c.session.received(&b[..n]);
                    moved = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => moved = true,
                Err(_) => return Turn::Done,
            }
        }
        moved |= c.session.answer(now, host);
        if c.session.done() {
            return Turn::Done;
        }
        if !moved {
            return Turn::Idle;
        }
    }
    Turn::Again
}
