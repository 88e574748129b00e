//! Upstream proxies as a worker sees them: the idle keep-alive connections to each, kept for
//! reuse by the next request routed there.

use mio::net::TcpStream;
use std::time::{Duration, Instant};

/// Idle connections a worker keeps per upstream at most.
const MAX_IDLE_PER_UPSTREAM: usize = 16;

/// A worker's idle keep-alive connections to upstream proxies, keyed by upstream URL.
#[derive(Default)]
pub struct IdlePool {
    conns: Vec<(String, TcpStream, Instant)>,
}

impl IdlePool {
    /// Keeps `stream` (deregistered from the poll) for the upstream `url`.
    pub fn put(&mut self, url: &str, stream: TcpStream, now: Instant) {
        if self.conns.iter().filter(|c| c.0 == url).count() >= MAX_IDLE_PER_UPSTREAM {
            return;
        }
        self.conns.push((url.to_string(), stream, now));
    }

    /// The most recently idled connection to `url` that still looks open.
    pub fn take(&mut self, url: &str) -> Option<TcpStream> {
        while let Some(i) = self.conns.iter().rposition(|c| c.0 == url) {
            let (_, stream, _) = self.conns.swap_remove(i);
            // A peek that would block means the peer has neither closed nor sent anything.
            let mut b = [0u8; 1];
            match stream.peek(&mut b) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(stream),
                _ => continue,
            }
        }
        None
    }

    /// Drops connections idle for longer than `max_idle`.
    pub fn expire(&mut self, now: Instant, max_idle: Duration) {
        self.conns.retain(|c| now.duration_since(c.2) < max_idle);
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
