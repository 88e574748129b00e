//! Tunnel relays: CONNECT tunnels and upgraded (101) connections. Each direction is a `Flow`
//! that moves bytes with splice(2) through a pooled pipe on Linux, or through a pooled buffer
//! elsewhere or when pipes run out. Half-close is carried per direction: EOF from one side
//! becomes `shutdown(Write)` on the other, and the tunnel ends when both directions have ended.

mod pipes;

pub use pipes::{pipe_cap, PipePool, MAX_PIPES};

use crate::buffer::{Buf, BufPool};
use crate::conn::{Conn, Io};
use std::io;

/// Rounds of read/write one `pump` call makes before letting other sessions run.
const MAX_ROUNDS: usize = 16;

/// One direction of a tunnel.
#[derive(Debug)]
pub struct Flow {
    /// Bytes waiting to be written: what arrived with the head, or the copy path's buffer.
    pending: Option<Buf>,
    #[cfg(target_os = "linux")]
    pipe: Option<crate::sys::Pipe>,
    /// Bytes sitting in the pipe.
    in_pipe: usize,
    /// splice into the pipe said EAGAIN while the pipe held data: it is full (in pages, not
    /// bytes), so wait for it to drain rather than take the socket for empty.
    #[cfg(target_os = "linux")]
    pipe_full: bool,
    /// The source has sent EOF.
    eof: bool,
    /// EOF has been passed on as `shutdown(Write)`.
    pub shut: bool,
    /// Bytes delivered to the destination.
    pub bytes: u64,
}

impl Flow {
    /// A flow that first delivers `pending`, then relays through a buffer (until given a pipe).
    fn new(pending: Option<Buf>) -> Flow {
        Flow {
            pending,
            #[cfg(target_os = "linux")]
            pipe: None,
            in_pipe: 0,
            #[cfg(target_os = "linux")]
            pipe_full: false,
            eof: false,
            shut: false,
            bytes: 0,
        }
    }

    /// Marks the source as already closed (its EOF arrived before the tunnel started).
    pub fn source_closed(&mut self) {
        self.eof = true;
    }

    /// True when this flow uses splice.
    pub fn spliced(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.pipe.is_some();
        #[cfg(not(target_os = "linux"))]
        return false;
    }

    /// Moves what can be moved from `src` to `dst` now. Returns whether anything happened;
    /// an error means the tunnel must be closed.
    #[cfg_attr(ferry_lean, optimize(speed))]
    pub fn pump(&mut self, src: &mut Conn, dst: &mut Conn, bufs: &mut BufPool) -> io::Result<bool> {
        let mut progress = false;
        for _ in 0..MAX_ROUNDS {
            let mut moved = false;
            if let Some(b) = self.pending.as_mut().filter(|b| !b.is_empty()) {
                if dst.writable {
                    let (n, io) = dst.write_from(b);
                    self.bytes += n as u64;
                    moved |= n > 0;
                    if let Io::Error(k) = io {
                        return Err(k.into());
                    }
                }
            }
            bufs.release_if_empty(&mut self.pending);
            moved |= self.splice_out(dst)?;
            if !self.eof && src.readable && self.pending.is_none() && self.spliced() {
                moved |= self.splice_in(src)?;
            } else if !self.eof && src.readable && !self.spliced() {
                let b = bufs.fill(&mut self.pending);
                let (n, io) = src.read_into(b);
                moved |= n > 0;
                match io {
                    Io::Closed => {
                        self.eof = true;
                        moved = true;
                    }
                    Io::Error(k) => return Err(k.into()),
                    _ => {}
                }
                bufs.release_if_empty(&mut self.pending);
            }
            if !moved {
                break;
            }
            progress = true;
        }
        if self.eof && !self.shut && self.pending.is_none() && self.in_pipe == 0 {
            dst.shutdown_write();
            self.shut = true;
            progress = true;
        }
        Ok(progress)
    }

    #[cfg(target_os = "linux")]
    #[cfg_attr(ferry_lean, optimize(speed))]
    fn splice_out(&mut self, dst: &mut Conn) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let Some(pipe) = &self.pipe else {
            return Ok(false);
        };
        if self.in_pipe == 0 || !dst.writable {
            return Ok(false);
        }
        match crate::sys::splice(pipe.read.as_raw_fd(), dst.stream.as_raw_fd(), self.in_pipe) {
            Ok(n) => {
                self.in_pipe -= n;
                self.bytes += n as u64;
                self.pipe_full = false;
                Ok(n > 0)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                dst.writable = false;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    #[cfg(not(target_os = "linux"))]
    #[cfg_attr(ferry_lean, optimize(speed))]
    fn splice_out(&mut self, _dst: &mut Conn) -> io::Result<bool> {
        Ok(false)
    }

    #[cfg(target_os = "linux")]
    #[cfg_attr(ferry_lean, optimize(speed))]
    fn splice_in(&mut self, src: &mut Conn) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let Some(pipe) = &self.pipe else {
            return Ok(false);
        };
        if self.pipe_full || self.in_pipe >= pipe.capacity {
            return Ok(false);
        }
        match crate::sys::splice(
            src.stream.as_raw_fd(),
            pipe.write.as_raw_fd(),
            pipe.capacity - self.in_pipe,
        ) {
            Ok(0) => {
                self.eof = true;
                Ok(true)
            }
            Ok(n) => {
                self.in_pipe += n;
                Ok(true)
            }
            // EAGAIN means an empty socket or a pipe full of partly used pages; with data in the
            // pipe assume the latter and wait for it to drain (the socket stays readable).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if self.in_pipe > 0 {
                    self.pipe_full = true;
                } else {
                    src.readable = false;
                }
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    #[cfg(not(target_os = "linux"))]
    #[cfg_attr(ferry_lean, optimize(speed))]
    fn splice_in(&mut self, _src: &mut Conn) -> io::Result<bool> {
        Ok(false)
    }

    /// Gives the flow's buffer and pipe back to the worker's pools.
    pub fn release(mut self, bufs: &mut BufPool, pipes: &mut PipePool) {
        if let Some(b) = self.pending.take() {
            bufs.put(b);
        }
        #[cfg(target_os = "linux")]
        if let Some(p) = self.pipe.take() {
            pipes.put(p, self.in_pipe == 0);
        }
        let _ = pipes;
    }
}

/// A bidirectional relay between the client (`up` flows client → server) and the server.
#[derive(Debug)]
pub struct Tunnel {
    pub up: Flow,
    pub down: Flow,
}

impl Tunnel {
    /// A tunnel that first delivers `up` to the server and `down` to the client, then relays
    /// by splice if `pipes` has a pair of pipes to spare, else by copy.
    pub fn new(up: Option<Buf>, down: Option<Buf>, pipes: &mut PipePool) -> Tunnel {
        #[cfg(target_os = "linux")]
        if let Some((a, b)) = pipes.pair() {
            return Tunnel {
                up: Flow {
                    pipe: Some(a),
                    ..Flow::new(up)
                },
                down: Flow {
                    pipe: Some(b),
                    ..Flow::new(down)
                },
            };
        }
        #[cfg(not(target_os = "linux"))]
        let _ = pipes;
        Tunnel {
            up: Flow::new(up),
            down: Flow::new(down),
        }
    }

    /// Moves bytes both ways; `Ok(true)` when anything happened.
    #[cfg_attr(ferry_lean, optimize(speed))]
    pub fn pump(
        &mut self,
        client: &mut Conn,
        server: &mut Conn,
        bufs: &mut BufPool,
    ) -> io::Result<bool> {
        let a = self.up.pump(client, server, bufs)?;
        let b = self.down.pump(server, client, bufs)?;
        Ok(a || b)
    }

    /// Both directions have ended.
    pub fn done(&self) -> bool {
        self.up.shut && self.down.shut
    }

    pub fn release(self, bufs: &mut BufPool, pipes: &mut PipePool) {
        self.up.release(bufs, pipes);
        self.down.release(bufs, pipes);
    }
}
