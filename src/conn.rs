//! A socket plus what the kernel last said about it. Readiness (`readable`, `writable`) is kept
//! apart from what the session wants to do: mio is edge-triggered, so a flag stays set until an
//! operation answers `WouldBlock`, and the session decides when to act on it.

use crate::buffer::Buf;
use mio::net::TcpStream;
use std::io::{self, Read, Write};

/// What the last I/O call said, next to the byte count it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// More may be possible (the buffer filled or emptied first).
    Continue,
    /// The kernel has nothing more for now; wait for the next readiness event.
    WouldBlock,
    /// The peer closed its sending side (read returned 0).
    Closed,
    /// The connection failed.
    Error(io::ErrorKind),
}

/// A connection's TLS state, when it speaks TLS.
#[cfg(feature = "tls")]
pub type Tls = Option<Box<crate::tls::conn::TlsConn>>;
/// Without the `tls` feature a connection never speaks TLS.
#[cfg(not(feature = "tls"))]
pub type Tls = Option<std::convert::Infallible>;

/// One TCP connection of a session, with its readiness.
#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    /// Its TLS, if any: reads and writes then move plaintext through it.
    pub tls: Tls,
    pub readable: bool,
    pub writable: bool,
    /// The poll reported the peer's FIN: a read that drains the data must still go on to see
    /// EOF, because no new edge will announce it.
    pub read_closed: bool,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn::with_tls(stream, None)
    }

    /// A connection that speaks TLS through `tls` (or plain TCP with `None`).
    pub fn with_tls(stream: TcpStream, tls: Tls) -> Conn {
        Conn {
            stream,
            tls,
            readable: false,
            writable: false,
            read_closed: false,
        }
    }

    /// Reads into `buf` until it is full or the socket is drained.
    pub fn read_into(&mut self, buf: &mut Buf) -> (usize, Io) {
        #[cfg(feature = "tls")]
        if let Some(t) = self.tls.as_mut() {
            let (n, io) = t.read_into(&mut self.stream, self.read_closed, buf);
            if io == Io::WouldBlock {
                self.readable = false;
            }
            return (n, io);
        }
        let mut total = 0;
        loop {
            let spare = buf.spare();
            if spare.is_empty() {
                return (total, Io::Continue);
            }
            let want = spare.len();
            match self.stream.read(spare) {
                Ok(0) => return (total, Io::Closed),
                Ok(n) => {
                    buf.filled(n);
                    total += n;
                    if n < want && !self.read_closed {
                        // A short read drained the socket: later data brings a new edge. (Not
                        // so for a FIN that is already queued: then read on to see it.)
                        self.readable = false;
                        return (total, Io::WouldBlock);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return (total, Io::WouldBlock);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (total, Io::Error(e.kind())),
            }
        }
    }

    /// Writes from `buf` until it is empty or the socket's send buffer is full.
    pub fn write_from(&mut self, buf: &mut Buf) -> (usize, Io) {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            let (n, io) = self.write_slice(buf.bytes());
            buf.consume(n);
            return (n, io);
        }
        let mut total = 0;
        while !buf.is_empty() {
            let want = buf.len();
            match self.stream.write(buf.bytes()) {
                Ok(0) => return (total, Io::Error(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    buf.consume(n);
                    total += n;
                    if n < want {
                        self.writable = false;
                        return (total, Io::WouldBlock);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return (total, Io::WouldBlock);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (total, Io::Error(e.kind())),
            }
        }
        (total, Io::Continue)
    }

    /// Writes from `bytes` (which the caller keeps) until done or the send buffer is full.
    pub fn write_slice(&mut self, bytes: &[u8]) -> (usize, Io) {
        #[cfg(feature = "tls")]
        if let Some(t) = self.tls.as_mut() {
            let (n, io, socket_full) = t.write_slice(&mut self.stream, bytes);
            if socket_full && io == Io::WouldBlock {
                self.writable = false;
            }
            return (n, io);
        }
        let mut total = 0;
        while total < bytes.len() {
            match self.stream.write(&bytes[total..]) {
                Ok(0) => return (total, Io::Error(io::ErrorKind::WriteZero)),
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return (total, Io::WouldBlock);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (total, Io::Error(e.kind())),
            }
        }
        (total, Io::Continue)
    }

    /// Where a non-blocking connect stands once the poll has said something of the socket:
    /// `None` while the handshake goes on (the flags are cleared: wait for the next event),
    /// `Some(Ok(()))` once connected, `Some(Err(_))` when it failed.
    pub fn connect_outcome(&mut self) -> Option<io::Result<()>> {
        if !(self.writable || self.readable) {
            return None;
        }
        match self.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(Err(e)),
            Ok(None) => match self.stream.peer_addr() {
                Ok(_) => Some(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    // Woken before the handshake finished.
                    self.writable = false;
                    self.readable = false;
                    None
                }
                Err(e) => Some(Err(e)),
            },
        }
    }

    /// Ends our sending side (half-close); errors mean the peer is gone, which the next read
    /// will tell.
    pub fn shutdown_write(&mut self) {
        #[cfg(feature = "tls")]
        if let Some(t) = self.tls.as_mut() {
            t.close_notify(&mut self.stream);
            if t.has_output() {
                // The close follows when the session ends; a FIN now would cut the alert.
                return;
            }
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    /// The server name the TLS client asked for (SNI).
    pub fn sni(&self) -> Option<&str> {
        #[cfg(feature = "tls")]
        if let Some(t) = self.tls.as_ref() {
            return t.sni();
        }
        None
    }

    /// The TLS version agreed ("1.2", "1.3"); None for plain TCP.
    pub fn tls_version(&self) -> Option<&'static str> {
        #[cfg(feature = "tls")]
        if let Some(t) = self.tls.as_ref() {
            return t.version();
        }
        None
    }

    /// True when the TLS handshake failed (a bad certificate, no common version).
    pub fn tls_handshake_failed(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(t) = self.tls.as_ref() {
            return !t.established() && t.failed();
        }
        false
    }

    /// The connection closes: a TLS handshake it had begun and neither finished nor failed
    /// ran out of time (counted as such).
    pub fn abandon_handshake(&mut self) {
        #[cfg(feature = "tls")]
        if let Some(t) = self.tls.as_mut() {
            t.abandon();
        }
    }

    /// True when the connection speaks TLS (its bytes cannot be spliced).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// True when bytes written to this connection still wait inside it (TLS records the
    /// socket has not taken): it is not done writing yet.
    pub fn has_pending_output(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(t) = self.tls.as_ref() {
            return t.has_output();
        }
        false
    }

    /// After a readiness event: moves TLS output that waits and, while the handshake goes
    /// on, the handshake itself. False when the connection failed.
    pub fn progress(&mut self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(t) = self.tls.as_mut() {
            if self.writable {
                match t.flush(&mut self.stream) {
                    Io::Error(_) => return false,
                    Io::WouldBlock => self.writable = false,
                    _ => {}
                }
            }
            if self.readable && !t.established() {
                match t.handshake(&mut self.stream, self.read_closed) {
                    Io::Error(_) => return false,
                    Io::WouldBlock => self.readable = false,
                    _ => {}
                }
            }
            // Decrypted bytes wait: the session should read even without a new edge.
            self.readable |= t.has_plaintext();
        }
        true
    }
}
