//! One direction of bytes moved socket → pipe → socket with splice(2), never through user
//! space. Tunnels use it for both of their directions, exchanges for message bodies of known
//! length or ended by the close (`session::exchange::body`); both stop taking bytes from the
//! source while the pipe is full, so a destination that does not read holds up its source
//! instead of making ferry read on.
//!
//! Readiness is edge-triggered: a fill goes on until the socket says `WouldBlock`, the pipe is
//! full or the caller's limit is reached, and a drain until the pipe is empty or the socket's
//! send buffer is full. Readiness that was not used up stays set in `Conn`.
//!
//! Elsewhere than on Linux there is no splice: `Splice` has no values there, every caller
//! copies, and the code that uses it needs no `cfg` of its own.

use super::PipePool;
use crate::conn::Conn;
use std::io;

/// Rounds of drain and fill one `pump` makes before letting other sessions run.
const MAX_ROUNDS: usize = 16;

/// What one `Splice::pump` did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pumped {
    /// Bytes taken from the source into the pipe.
    pub read: usize,
    /// Bytes given from the pipe to the destination.
    pub written: usize,
    /// The source sent EOF.
    pub eof: bool,
    /// A socket failed; the counts above still tell what moved before it did.
    pub failed: Option<Failed>,
}

/// Which socket of a spliced direction failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Reading (splicing from) the source failed.
    Source(io::ErrorKind),
    /// Writing (splicing to) the destination failed.
    Destination(io::ErrorKind),
}

impl From<Failed> for io::Error {
    fn from(f: Failed) -> io::Error {
        match f {
            Failed::Source(k) | Failed::Destination(k) => k.into(),
        }
    }
}

/// A pooled pipe carrying one direction's bytes, and how many it holds.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub struct Splice {
    pipe: super::pipes::PooledPipe,
    /// Bytes in the pipe: taken from the source, not yet given to the destination.
    held: usize,
    /// splice into the pipe said EAGAIN while the pipe held data: it is full (in pages, not
    /// bytes), so wait for it to drain rather than take the socket for empty.
    full: bool,
}

/// Without splice(2) there are no spliced directions: this type has no values.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
pub struct Splice(std::convert::Infallible);

impl Splice {
    /// Bytes waiting in the pipe.
    pub fn held(&self) -> usize {
        #[cfg(target_os = "linux")]
        return self.held;
        #[cfg(not(target_os = "linux"))]
        match self.0 {}
    }

    /// Moves bytes from `src` (when given: its EOF is not yet known) into the pipe, at most
    /// `limit` of them, and from the pipe to `dst` (when given: nothing owed to it goes
    /// before the pipe's bytes), until neither can move or the rounds run out.
    pub fn pump(
        &mut self,
        mut src: Option<&mut Conn>,
        mut dst: Option<&mut Conn>,
        limit: u64,
    ) -> Pumped {
        let mut done = Pumped::default();
        for _ in 0..MAX_ROUNDS {
            let before = (done.read, done.written);
            if let Some(d) = dst.as_deref_mut().filter(|d| d.writable) {
                let (n, err) = self.drain(d);
                done.written += n;
                if let Some(k) = err {
                    done.failed = Some(Failed::Destination(k));
                    return done;
                }
            }
            if let Some(s) = src.as_deref_mut().filter(|s| s.readable && !done.eof) {
                let (n, end) = self.fill(s, limit - done.read as u64);
                done.read += n;
                match end {
                    Ok(eof) => done.eof = eof,
                    Err(k) => {
                        done.failed = Some(Failed::Source(k));
                        return done;
                    }
                }
            }
            if (done.read, done.written) == before {
                break;
            }
        }
        done
    }

    /// Splices from `src` into the pipe until the socket is drained, the pipe is full or
    /// `limit` bytes came; returns the bytes and whether the source ended (EOF).
    #[cfg(target_os = "linux")]
    fn fill(&mut self, src: &mut Conn, limit: u64) -> (usize, Result<bool, io::ErrorKind>) {
        use std::os::fd::AsRawFd;
        let mut total = 0;
        loop {
            let left = usize::try_from(limit - total as u64).unwrap_or(usize::MAX);
            let room = (self.pipe.pipe.capacity - self.held).min(left);
            if self.full || room == 0 {
                // The rest of the socket's bytes wait for room, or belong to the next message:
                // its readiness stays set for whoever reads next.
                return (total, Ok(false));
            }
            match crate::sys::splice(
                src.stream.as_raw_fd(),
                self.pipe.pipe.write.as_raw_fd(),
                room,
            ) {
                Ok(0) => return (total, Ok(true)),
                Ok(n) => {
                    self.held += n;
                    total += n;
                }
                // EAGAIN means an empty socket or a pipe full of partly used pages; with data
                // in the pipe assume the latter and wait for it to drain (the socket stays
                // readable, and is tried again once the pipe has room).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.held > 0 {
                        self.full = true;
                    } else {
                        src.readable = false;
                    }
                    return (total, Ok(false));
                }
                Err(e) => return (total, Err(e.kind())),
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn fill(&mut self, _src: &mut Conn, _limit: u64) -> (usize, Result<bool, io::ErrorKind>) {
        match self.0 {}
    }

    /// Splices from the pipe to `dst` until the pipe is empty or the socket's send buffer is
    /// full; returns the bytes and the error that stopped it, if one did.
    #[cfg(target_os = "linux")]
    fn drain(&mut self, dst: &mut Conn) -> (usize, Option<io::ErrorKind>) {
        use std::os::fd::AsRawFd;
        let mut total = 0;
        while self.held > 0 {
            match crate::sys::splice(
                self.pipe.pipe.read.as_raw_fd(),
                dst.stream.as_raw_fd(),
                self.held,
            ) {
                Ok(0) => return (total, Some(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    self.held -= n;
                    total += n;
                    self.full = false;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    dst.writable = false;
                    break;
                }
                Err(e) => return (total, Some(e.kind())),
            }
        }
        (total, None)
    }

    #[cfg(not(target_os = "linux"))]
    fn drain(&mut self, _dst: &mut Conn) -> (usize, Option<io::ErrorKind>) {
        match self.0 {}
    }

    /// A spliced direction, if the pool has a pipe to spare.
    pub fn take(pipes: &mut PipePool) -> Option<Splice> {
        #[cfg(target_os = "linux")]
        return pipes.get().map(Splice::with);
        #[cfg(not(target_os = "linux"))]
        {
            let _ = pipes;
            None
        }
    }

    /// Two spliced directions (a tunnel's), or none.
    pub fn pair(pipes: &mut PipePool) -> Option<(Splice, Splice)> {
        #[cfg(target_os = "linux")]
        return pipes
            .pair()
            .map(|(a, b)| (Splice::with(a), Splice::with(b)));
        #[cfg(not(target_os = "linux"))]
        {
            let _ = pipes;
            None
        }
    }

    #[cfg(target_os = "linux")]
    fn with(pipe: super::pipes::PooledPipe) -> Splice {
        Splice {
            pipe,
            held: 0,
            full: false,
        }
    }

    /// Gives the pipe back to the pool, or closes it when bytes are left in it.
    pub fn release(self, pipes: &mut PipePool) {
        #[cfg(target_os = "linux")]
        pipes.put(self.pipe, self.held == 0);
        #[cfg(not(target_os = "linux"))]
        {
            let _ = pipes;
            match self.0 {}
        }
    }
}
