//! Tunnel relays: CONNECT tunnels and upgraded (101) connections. Each direction is a `Flow`
//! that moves bytes with splice(2) through a pooled pipe on Linux (`Splice`, which message
//! bodies use too), or through a pooled buffer elsewhere or when pipes run out. Half-close is
//! carried per direction: EOF from one side becomes `shutdown(Write)` on the other, and the
//! tunnel ends when both directions have ended.

mod pipes;
mod splice;

pub use pipes::{pipe_cap, PipePool, MAX_PIPES};
pub use splice::{Failed, Pumped, Splice};

use crate::buffer::{Buf, BufPool};
use crate::conn::{Conn, Io};
use std::io;

/// Rounds of read/write one copying `pump` makes before letting other sessions run.
const MAX_ROUNDS: usize = 16;

/// One direction of a tunnel.
#[derive(Debug)]
pub struct Flow {
    /// Bytes waiting to be written: what arrived with the head, or the copy path's buffer.
    pending: Option<Buf>,
    /// The pipe this direction is spliced through, if it is.
    splice: Option<Splice>,
    /// The source has sent EOF.
    eof: bool,
    /// EOF has been passed on as `shutdown(Write)`.
    pub shut: bool,
    /// Bytes delivered to the destination.
    pub bytes: u64,
}

impl Flow {
    /// A flow that first delivers `pending`, then relays through `splice`, or a buffer.
    fn new(pending: Option<Buf>, splice: Option<Splice>) -> Flow {
        Flow {
            pending,
            splice,
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
        self.splice.is_some()
    }

    /// Moves what can be moved from `src` to `dst` now. Returns whether anything happened;
    /// an error means the tunnel must be closed.
    pub fn pump(&mut self, src: &mut Conn, dst: &mut Conn, bufs: &mut BufPool) -> io::Result<bool> {
        let mut progress = false;
        if let Some(s) = self.splice.as_mut() {
            // What came with the head goes first; the pipe is filled and drained after it.
            progress |= write_pending(&mut self.pending, dst, &mut self.bytes)?;
            bufs.release_if_empty(&mut self.pending);
            let first = self.pending.is_none();
            let p = s.pump(
                (first && !self.eof).then_some(src),
                first.then_some(dst),
                u64::MAX,
            );
            self.bytes += p.written as u64;
            self.eof |= p.eof;
            progress |= p.read > 0 || p.written > 0 || p.eof;
            if let Some(f) = p.failed {
                return Err(f.into());
            }
        } else {
            progress |= self.copy(src, dst, bufs)?;
        }
        let empty = self.splice.as_ref().is_none_or(|s| s.held() == 0);
        if self.eof && !self.shut && self.pending.is_none() && empty {
            dst.shutdown_write();
            self.shut = true;
            progress = true;
        }
        Ok(progress)
    }

    /// The copy path: through a pooled buffer, read and written in turn.
    fn copy(&mut self, src: &mut Conn, dst: &mut Conn, bufs: &mut BufPool) -> io::Result<bool> {
        let mut progress = false;
        for _ in 0..MAX_ROUNDS {
            let mut moved = write_pending(&mut self.pending, dst, &mut self.bytes)?;
            bufs.release_if_empty(&mut self.pending);
            if !self.eof && src.readable {
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
        Ok(progress)
    }

    /// Gives the flow's buffer and pipe back to the worker's pools.
    pub fn release(mut self, bufs: &mut BufPool, pipes: &mut PipePool) {
        if let Some(b) = self.pending.take() {
            bufs.put(b);
        }
        if let Some(s) = self.splice.take() {
            s.release(pipes);
        }
    }
}

/// Writes what `pending` holds to `dst` while it takes it, counting the bytes.
fn write_pending(pending: &mut Option<Buf>, dst: &mut Conn, bytes: &mut u64) -> io::Result<bool> {
    let Some(b) = pending.as_mut().filter(|b| !b.is_empty()) else {
        return Ok(false);
    };
    if !dst.writable {
        return Ok(false);
    }
    let (n, io) = dst.write_from(b);
    *bytes += n as u64;
    if let Io::Error(k) = io {
        return Err(k.into());
    }
    Ok(n > 0)
}

/// A bidirectional relay between the client (`up` flows client → server) and the server.
#[derive(Debug)]
pub struct Tunnel {
    pub up: Flow,
    pub down: Flow,
}

impl Tunnel {
    /// A tunnel that first delivers `up` to the server and `down` to the client, then relays
    /// by splice if `pipes` has a pair of pipes to spare and neither side speaks TLS, else by
    /// copy.
    pub fn new(up: Option<Buf>, down: Option<Buf>, tls: bool, pipes: &mut PipePool) -> Tunnel {
        let (a, b) = if tls { None } else { Splice::pair(pipes) }.unzip();
        Tunnel {
            up: Flow::new(up, a),
            down: Flow::new(down, b),
        }
    }

    /// Moves bytes both ways; `Ok(true)` when anything happened.
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
