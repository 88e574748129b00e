//! Upstream proxies and backend servers as a worker sees them: the idle keep-alive
//! connections to each, kept for reuse by the next request routed there, by any client.

use crate::conn::Tls;
use mio::net::TcpStream;
use std::time::Instant;

/// Idle connections a worker keeps per upstream proxy at most.
pub const MAX_IDLE_PER_UPSTREAM: usize = 16;

/// A worker's idle keep-alive connections, keyed by the upstream's or server's state name
/// (a server's names its backend), each with the time it must be closed by.
#[derive(Default)]
pub struct IdlePool {
    conns: Vec<(String, TcpStream, Tls, Instant)>,
}

impl IdlePool {
    /// Keeps `stream` (deregistered from the poll, with its TLS state if it speaks TLS) for
    /// `key` until `expires`, unless `max` connections to it are kept already.
    pub fn put(
        &mut self,
        key: &str,
        (stream, tls): (TcpStream, Tls),
        expires: Instant,
        max: usize,
    ) {
        if self.conns.iter().filter(|c| c.0 == key).count() >= max {
            return;
        }
        self.conns.push((key.to_string(), stream, tls, expires));
    }

    /// The most recently idled connection to `key` that still looks open.
    pub fn take(&mut self, key: &str) -> Option<(TcpStream, Tls)> {
        while let Some(i) = self.conns.iter().rposition(|c| c.0 == key) {
            let (_, stream, tls, _) = self.conns.swap_remove(i);
            // A peek that would block means the peer has neither closed nor sent anything
            // (over TLS: not even an alert).
            let mut b = [0u8; 1];
            match stream.peek(&mut b) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some((stream, tls)),
                _ => continue,
            }
        }
        None
    }

    /// Drops the connections whose time is up.
    pub fn expire(&mut self, now: Instant) {
        self.conns.retain(|c| now < c.3);
    }

    /// Drops them all (config change, shutdown).
    pub fn clear(&mut self) {
        self.conns.clear();
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}
