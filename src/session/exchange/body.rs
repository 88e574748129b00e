//! Message bodies of an exchange, both ways. Bytes read together with a head (the request's in
//! `cin`, the response's in `sin`) go first, by copy through the session's buffers, framed by
//! `BodyState` (a chunked response de-chunked for an HTTP/1.0 client). Once that buffer is
//! empty, a body that can pass unread — of known length either way, or a response ended by the
//! close — moves socket → pipe → socket with splice(2) through a pipe of the worker's pool
//! (`relay::Splice`, the tunnels' mechanism), at most as many bytes as the message has left, so
//! what follows it (a pipelined request, the next response) stays in the socket for the head
//! reader. Chunked bodies, de-chunked ones, an upgrade's request body (its later bytes may
//! become a tunnel's), and any body for which the pool has no pipe (exhausted, or none on this
//! system) are copied.
//!
//! Where it sits: `write_server` hands the request body over once the head and `sout` are
//! out; `handle_response` hands over the response body once its head went into `cout`.
//! While a direction is spliced its buffer is not filled (`drive_exchange`, `fill_sin`): the
//! pipe alone holds that direction's bytes, and while it is full nothing more is taken from the
//! source, so a peer that does not read holds up the other one instead of ferry's memory.
//!
//! A pipe is taken when a body needs one and given back, empty, when the body ends; an
//! exchange that ends otherwise (an error, a timeout, a client gone, a panic) gives it back
//! through `Exchange::release`, or drops it, and a pipe with bytes left in it is closed then,
//! never reused. Spliced sockets are plain TCP sockets (`Conn`), both sides.

use super::*;
use crate::conn::Conn;
use crate::relay::{Failed, PipePool, Pumped, Splice};

/// How one direction's body moves.
#[derive(Debug, Default)]
enum Way {
    /// Not decided: no body has needed a pipe yet.
    #[default]
    Unasked,
    /// By copy, through the session's buffers.
    Copy,
    /// Through this pipe.
    Spliced(Splice),
}

impl Way {
    /// Takes a pipe for this direction unless it was decided already; true when the decision
    /// is made now.
    fn ask(&mut self, pipes: &mut PipePool) -> bool {
        if !matches!(self, Way::Unasked) {
            return false;
        }
        *self = Splice::take(pipes).map_or(Way::Copy, Way::Spliced);
        true
    }

    /// The body is over: an empty pipe goes back to the pool, one with bytes left is closed.
    fn finish(&mut self, pipes: &mut PipePool) {
        if let Way::Spliced(s) = std::mem::replace(self, Way::Copy) {
            s.release(pipes);
        }
    }

    fn held(&self) -> usize {
        match self {
            Way::Spliced(s) => s.held(),
            _ => 0,
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Way::Spliced(_) => "splice",
            _ => "copy",
        }
    }
}

/// The pipes an exchange's bodies are spliced through, each held only while its body lasts.
#[derive(Debug, Default)]
pub(super) struct BodyPipes {
    /// Client → server.
    up: Way,
    /// Server → client.
    down: Way,
}

impl BodyPipes {
    /// The request body is spliced: the client's bytes are not read into `cin` meanwhile.
    pub(super) fn splicing_request(&self) -> bool {
        matches!(self.up, Way::Spliced(_))
    }

    /// The response body is spliced: the server's bytes are not read into `sin` meanwhile.
    pub(super) fn splicing_response(&self) -> bool {
        matches!(self.down, Way::Spliced(_))
    }

    /// Nothing of the request body waits in a pipe.
    pub(super) fn request_flushed(&self) -> bool {
        self.up.held() == 0
    }

    /// Gives both pipes back (the exchange is over, however it ended).
    pub(super) fn release(&mut self, pipes: &mut PipePool) {
        self.up.finish(pipes);
        self.down.finish(pipes);
    }
}

/// One direction of a body, between its source and its destination socket.
struct Lane<'a> {
    way: &'a mut Way,
    body: &'a mut BodyState,
    /// Bytes of it still in the session's buffer (they go first, by copy).
    buffered: usize,
    /// Nothing owed to the destination waits in a buffer: the pipe's bytes may follow.
    dst_clear: bool,
    /// The source's EOF was seen.
    eof: &'a mut bool,
    /// The exchange's byte count for this direction.
    counted: &'a mut u64,
}

impl Lane<'_> {
    /// Takes a pipe when part of the body is still to come from the source (and `allowed`),
    /// then splices what can move now: never more than the body has left, and only once the
    /// session's buffer for this direction is empty.
    fn carry(
        self,
        allowed: bool,
        (src, dst): (&mut Conn, &mut Conn),
        pipes: &mut PipePool,
        (peer, what): (SocketAddr, &str),
    ) -> Pumped {
        let limit = self.body.blind_limit();
        let to_come = limit.is_some_and(|n| n > self.buffered as u64);
        // TLS records cannot be spliced: a TLS side moves its bytes by copy.
        let allowed = allowed && !src.is_tls() && !dst.is_tls();
        if to_come && allowed && !*self.eof && self.way.ask(pipes) {
            log::debug!("{peer}: {what} body relayed by {}", self.way.describe());
        }
        let Way::Spliced(splice) = self.way else {
            return Pumped::default();
        };
        if self.buffered > 0 {
            return Pumped::default();
        }
        let p = splice.pump(
            (!*self.eof).then_some(src),
            self.dst_clear.then_some(dst),
            limit.unwrap_or(0),
        );
        self.body.advance_blind(p.read as u64);
        *self.counted += p.read as u64;
        *self.eof |= p.eof;
        p
    }
}

impl Session {
    /// Splices the request body from the client to the server, after what `cin` and `sout`
    /// held of it (`write_server` calls it once the whole head is out).
    pub(super) fn splice_request_body(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let Phase::Exchange(ex) = &mut self.phase else {
            return Ok(false);
        };
        let Some(s) = self.server.as_mut() else {
            return Err(Fail::Abort);
        };
        // Never for an upgrade: what follows its head may become the tunnel's, which takes
        // over the session's buffers, not a pipe.
        let allowed = !ex.upgrade;
        let lane = Lane {
            way: &mut ex.body_pipes.up,
            body: &mut ex.req_body,
            buffered: self.cin.as_ref().map_or(0, |b| b.len()),
            dst_clear: self.sout.as_ref().is_none_or(|b| b.is_empty()),
            eof: &mut self.client_eof,
            counted: &mut ex.bytes_up,
        };
        let said = (self.peer, "request");
        let p = lane.carry(
            allowed,
            (&mut self.client, &mut s.conn),
            &mut ctx.pipes,
            said,
        );
        // Sent is sent: the request can no longer be replayed elsewhere.
        ex.body_sent += p.written as u64;
        if ex.req_body.is_done() && ex.body_pipes.up.held() == 0 {
            ex.body_pipes.up.finish(&mut ctx.pipes);
        }
        match p.failed {
            Some(Failed::Source(k)) => {
                log::debug!("{}: client read failed: {k:?}", self.peer);
                Err(Fail::Abort)
            }
            Some(Failed::Destination(k)) => self.server_failed(k, ctx),
            None => Ok(p.read > 0 || p.written > 0 || p.eof),
        }
    }

    /// Relays response body bytes to the client: those in `sin` by copy into `cout`, then the
    /// rest by splice when it can go so; ends the response when its framing or the server's
    /// close says it is over, and only once every byte of it left ferry.
    pub(super) fn relay_response_body(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let Phase::Exchange(ex) = &mut self.phase else {
            return Ok(false);
        };
        let Resp::Body(st) = &mut ex.resp else {
            return Ok(false);
        };
        let mut moved = 0;
        if let Some(sin) = self.sin.as_mut().filter(|b| !b.is_empty()) {
            let cout = ctx.bufs.fill(&mut self.cout);
            let room = cout.room();
            let avail = &sin.bytes()[..sin.len().min(room)];
            let r = if ex.dechunk {
                st.advance_with(avail, |data| cout.push(data))
            } else {
                st.advance(avail).inspect(|&n| {
                    cout.push(&avail[..n]);
                })
            };
            moved = r.map_err(|e| {
                log::debug!("{}: response body: {}", self.peer, e.0);
                Fail::Refuse(Refusal::new(502, e.0))
            })?;
            sin.consume(moved);
            ex.bytes_down += moved as u64;
        }
        let Some(s) = self.server.as_mut() else {
            return Err(Fail::Abort);
        };
        // A chunked body (and so every de-chunked one) has no blind limit: it is copied.
        let lane = Lane {
            way: &mut ex.body_pipes.down,
            body: st,
            buffered: self.sin.as_ref().map_or(0, |b| b.len()),
            dst_clear: self.cout.as_ref().is_none_or(|b| b.is_empty()),
            eof: &mut ex.server_eof,
            counted: &mut ex.bytes_down,
        };
        let said = (self.peer, "response");
        let p = lane.carry(true, (&mut s.conn, &mut self.client), &mut ctx.pipes, said);
        moved += p.read + p.written + p.eof as usize;
        match p.failed {
            Some(Failed::Source(k)) => return self.server_failed(k, ctx),
            Some(Failed::Destination(k)) => {
                log::debug!("{}: client write failed: {k:?}", self.peer);
                return Err(Fail::Abort);
            }
            None => {}
        }
        let Phase::Exchange(ex) = &mut self.phase else {
            return Ok(false);
        };
        let Resp::Body(st) = &mut ex.resp else {
            return Ok(false);
        };
        if ex.body_pipes.down.held() > 0 {
            return Ok(moved > 0); // the response is not over while bytes of it wait in a pipe
        }
        let sin_empty = self.sin.as_ref().is_none_or(|b| b.is_empty());
        if st.is_done() || (ex.server_eof && sin_empty && st.finish_on_eof()) {
            if ex.body_pipes.splicing_response() && !ex.server_eof {
                // Bytes the server sent past the body stay in its socket, where the copy path
                // would have read them into `sin` (which keeps the connection from reuse): a
                // connection with more to say is not reused either.
                let quiet = self.server.as_ref().is_some_and(|s| {
                    let mut b = [0u8; 1];
                    matches!(s.conn.stream.peek(&mut b),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                });
                ex.server_keep &= quiet;
            }
            ex.body_pipes.down.finish(&mut ctx.pipes);
            ex.resp = Resp::Done;
            return Ok(true);
        }
        if ex.server_eof && sin_empty {
            // Cut short: the client gets what came, then sees the connection close.
            return Err(Fail::Refuse(Refusal::new(
                502,
                "the server closed the connection before the response was complete",
            )));
        }
        Ok(moved > 0)
    }
}
