//! The admin HTTP server, on the control thread: `GET /health`, `/readyz`, `/status` and
//! `/metrics` (HEAD too), exact paths only; anything else 404, other methods 405. With
//! `admin.token` every request needs `Authorization: Bearer <token>` (401 otherwise, compared
//! in constant time). Keep-alive, a read timeout and a size limit per request.

use crate::config::Config;
use crate::metrics::Snapshot;
use crate::worker::Shared;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The listener's token; connections follow from `FIRST_CONN`.
pub const LISTENER: Token = Token(2);
const FIRST_CONN: usize = 1 << 20;
/// Largest admin request head.
const MAX_REQUEST: usize = 8 * 1024;
/// An admin connection idle this long is closed.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Admin connections open at most.
const MAX_CONNS: usize = 64;

struct Conn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    close: bool,
    deadline: Instant,
}

/// The admin server's listener and connections.
pub struct Admin {
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
}

impl Admin {
    /// Binds `addr` and registers the listener.
    pub fn bind(addr: std::net::SocketAddr, registry: &Registry) -> std::io::Result<Admin> {
        let mut listener = TcpListener::bind(addr)?;
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Admin {
            listener,
            conns: Vec::new(),
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

    /// The earliest connection deadline.
    pub fn next_wake(&self) -> Option<Instant> {
        self.conns.iter().flatten().map(|c| c.deadline).min()
    }

    /// Closes connections past their deadline.
    pub fn expire(&mut self, registry: &Registry, now: Instant) {
        for i in 0..self.conns.len() {
            if self.conns[i].as_ref().is_some_and(|c| now >= c.deadline) {
                self.close(i, registry);
            }
        }
    }

    /// Handles readiness of the listener or a connection.
    pub fn ready(
        &mut self,
        token: Token,
        registry: &Registry,
        config: &Config,
        shared: &Arc<Shared>,
    ) {
        if token == LISTENER {
            self.accept(registry);
            return;
        }
        let i = token.0 - FIRST_CONN;
        let Some(Some(c)) = self.conns.get_mut(i) else {
            return;
        };
        let alive = serve(c, config, shared);
        if !alive {
            self.close(i, registry);
        }
    }

    fn accept(&mut self, registry: &Registry) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let slot = match self.conns.iter().position(Option::is_none) {
                        Some(s) => s,
                        None if self.conns.len() < MAX_CONNS => {
                            self.conns.push(None);
                            self.conns.len() - 1
                        }
                        None => continue, // full: drop it
                    };
                    if registry
                        .register(
                            &mut stream,
                            Token(FIRST_CONN + slot),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_ok()
                    {
                        self.conns[slot] = Some(Conn {
                            stream,
                            inbuf: Vec::new(),
                            out: Vec::new(),
                            close: false,
                            deadline: Instant::now() + READ_TIMEOUT,
                        });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("admin accept: {e}");
                    return;
                }
            }
        }
    }

    fn close(&mut self, i: usize, registry: &Registry) {
        if let Some(mut c) = self.conns[i].take() {
            let _ = registry.deregister(&mut c.stream);
        }
    }
}

/// Reads, answers and writes what it can; false when the connection is done.
fn serve(c: &mut Conn, config: &Config, shared: &Arc<Shared>) -> bool {
    let mut b = [0u8; 4096];
    loop {
        match c.stream.read(&mut b) {
            Ok(0) => return !c.out.is_empty() && flush(c),
            Ok(n) => {
                c.inbuf.extend_from_slice(&b[..n]);
                c.deadline = Instant::now() + READ_TIMEOUT;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    while !c.close {
        let Some(end) = crate::http::find_head_end(&c.inbuf, 0) else {
            if c.inbuf.len() > MAX_REQUEST {
                respond(c, 431, "text/plain", b"request too large\n", false, &[]);
                c.close = true;
            }
            break;
        };
        let head: Vec<u8> = c.inbuf.drain(..end).collect();
        answer(c, &head, config, shared);
    }
    flush(c) && !(c.close && c.out.is_empty())
}

fn flush(c: &mut Conn) -> bool {
    while !c.out.is_empty() {
        match c.stream.write(&c.out) {
            Ok(0) => return false,
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// Answers one request head.
fn answer(c: &mut Conn, head: &[u8], config: &Config, shared: &Arc<Shared>) {
    let mut hs = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut hs);
    let Ok(httparse::Status::Complete(_)) = req.parse(head) else {
        respond(c, 400, "text/plain", b"bad request\n", false, &[]);
        c.close = true;
        return;
    };
    let method = req.method.unwrap_or("");
    let path = req.path.unwrap_or("");
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if header("content-length").is_some_and(|v| v != b"0") || header("transfer-encoding").is_some()
    {
        // Admin requests carry no body; refusing keeps the stream in sync.
        respond(
            c,
            400,
            "text/plain",
            b"no request body expected\n",
            false,
            &[],
        );
        c.close = true;
        return;
    }
    if req.version == Some(0)
        || header("connection").is_some_and(|v| crate::http::has_token(v, "close"))
    {
        c.close = true;
    }
    let head_only = method == "HEAD";
    if let Some(token) = &config.admin_token {
        let ok = header("authorization")
            .and_then(|v| v.strip_prefix(b"Bearer "))
            .is_some_and(|t| constant_time_eq(t, token.as_bytes()));
        if !ok {
            respond(
                c,
                401,
                "text/plain",
                b"unauthorized\n",
                head_only,
                &["WWW-Authenticate: Bearer realm=\"ferry\""],
            );
            return;
        }
    }
    let known = matches!(path, "/health" | "/readyz" | "/status" | "/metrics");
    if !known {
        respond(c, 404, "text/plain", b"not found\n", head_only, &[]);
        return;
    }
    if method != "GET" && method != "HEAD" {
        respond(
            c,
            405,
            "text/plain",
            b"method not allowed\n",
            false,
            &["Allow: GET, HEAD"],
        );
        return;
    }
    let draining = shared.draining.load(Ordering::Relaxed);
    let snap = Snapshot {
        stats: &shared.stats,
        config,
        active: shared.active.load(Ordering::Relaxed),
        panics: shared.panics.load(Ordering::Relaxed),
        draining,
    };
    match path {
        "/health" if draining => respond(
            c,
            503,
            "application/json",
            b"{\"status\":\"draining\"}",
            head_only,
            &[],
        ),
        "/health" => respond(
            c,
            200,
            "application/json",
            b"{\"status\":\"ok\"}",
            head_only,
            &[],
        ),
        "/readyz" => {
            let any_upstreams = config.upstreams().next().is_some();
            let ready =
                !draining && (!any_upstreams || config.upstreams().any(|u| u.state.is_online()));
            if ready {
                respond(
                    c,
                    200,
                    "application/json",
                    b"{\"ready\":true}",
                    head_only,
                    &[],
                );
            } else {
                respond(
                    c,
                    503,
                    "application/json",
                    b"{\"ready\":false}",
                    head_only,
                    &[],
                );
            }
        }
        "/status" => respond(
            c,
            200,
            "application/json",
            snap.status_json().as_bytes(),
            head_only,
            &[],
        ),
        _ => respond(
            c,
            200,
            "text/plain; version=0.0.4",
            snap.prometheus().as_bytes(),
            head_only,
            &[],
        ),
    }
}

fn respond(c: &mut Conn, status: u16, ctype: &str, body: &[u8], head_only: bool, extra: &[&str]) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n", body.len());
    for e in extra {
        head.push_str(e);
        head.push_str("\r\n");
    }
    if c.close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    c.out.extend_from_slice(head.as_bytes());
    if !head_only {
        c.out.extend_from_slice(body);
    }
}

/// Compares without an early exit, so the time taken does not tell how much of a guess
/// was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
