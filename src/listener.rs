//! Listening sockets: for each configured address (the forward `listen`, every
//! `reverse.listen`), one SO_REUSEPORT socket per worker, so the kernel spreads new
//! connections across workers without a shared accept lock. All are bound before any worker
//! serves, and a bind failure stops start-up (or a reload) with a clear error.

use crate::config::Config;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;

/// Which role a listener's connections get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Clients use ferry as their HTTP proxy.
    Forward,
    /// Clients reach the published sites.
    Reverse,
}

/// A configured listening address: its identity across reloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub role: Role,
    /// The address as configured (the port may be 0).
    pub addr: SocketAddr,
    /// Its connections speak TLS (`tls_listen`).
    pub tls: bool,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tls = if self.tls { " TLS" } else { "" };
        write!(f, "{:?}{tls} {}", self.role, self.addr)
    }
}

/// One of a worker's listening sockets.
pub struct Listening {
    pub endpoint: Endpoint,
    pub socket: mio::net::TcpListener,
}

/// The addresses `config` listens on, with their roles: forward first, plain before TLS.
pub fn wanted(config: &Config) -> Vec<Endpoint> {
    let at = |role, tls| move |&addr: &SocketAddr| Endpoint { role, addr, tls };
    let mut out: Vec<Endpoint> = config.listen.iter().map(at(Role::Forward, false)).collect();
    out.extend(config.tls_listen.iter().map(at(Role::Forward, true)));
    if let Some(r) = &config.reverse {
        out.extend(r.listen.iter().map(at(Role::Reverse, false)));
        out.extend(r.tls_listen.iter().map(at(Role::Reverse, true)));
    }
    out
}

/// Binds every address of `wanted` `n` times; element `i` of the result is worker `i`'s set.
pub fn bind_sets(wanted: &[Endpoint], n: usize) -> io::Result<Vec<Vec<Listening>>> {
    let mut sets: Vec<Vec<Listening>> = (0..n.max(1)).map(|_| Vec::new()).collect();
    for &endpoint in wanted {
        for (set, socket) in sets.iter_mut().zip(bind(endpoint.addr, n)?) {
            set.push(Listening { endpoint, socket });
        }
    }
    Ok(sets)
}

/// Backlog of each listener.
const BACKLOG: i32 = 1024;

/// Binds `n` listeners on `addr`. With port 0 the first picks a port and the rest share it.
pub fn bind(addr: SocketAddr, n: usize) -> io::Result<Vec<mio::net::TcpListener>> {
    let mut out = Vec::with_capacity(n);
    let mut addr = addr;
    for _ in 0..n.max(1) {
        let l = bind_one(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        addr = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

fn bind_one(addr: SocketAddr) -> io::Result<mio::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(mio::net::TcpListener::from_std(s.into()))
}

/// True for the accept errors that mean "out of file descriptors": back off, do not spin.
pub fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_shared_by_all_listeners() {
        let ls = bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = ls[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert!(ls.iter().all(|l| l.local_addr().unwrap().port() == port));
    }
}
