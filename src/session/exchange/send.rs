//! The request half of an exchange: body bytes moved from the client as far as their
//! framing says they belong, and the head (kept for a replay) then the body written to the
//! server, never a body byte without its whole head.

use super::*;

impl Session {
    /// Moves request body bytes from `cin` to `sout`, as far as the framing says they belong.
    pub(super) fn feed_request_body(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let Phase::Exchange(ex) = &mut self.phase else {
            return Ok(false);
        };
        if ex.req_body.is_done() {
            return Ok(false);
        }
        let Some(cin) = self.cin.as_mut().filter(|b| !b.is_empty()) else {
            if self.client_eof {
                // The client gave up halfway through its body.
                return Err(Fail::Abort);
            }
            return Ok(false);
        };
        let sout = ctx.bufs.fill(&mut self.sout);
        let room = sout.room();
        if room == 0 {
            return Ok(false);
        }
        let avail = &cin.bytes()[..cin.len().min(room)];
        let bad = |e: crate::http::framing::FramingError| Fail::Refuse(Refusal::new(400, e.0));
        let limited = ex.served.as_deref_mut().filter(|s| s.max_body > 0);
        let n = match limited {
            // A chunked body has no length to check up front (a declared one was checked by
            // the routing): its data is counted as it comes, framing left out.
            Some(s) => {
                let mut data = 0;
                let n = ex
                    .req_body
                    .advance_with(avail, |d| data += d.len() as u64)
                    .map_err(bad)?;
                s.body_seen += data;
                if s.body_seen > s.max_body {
                    return Err(Fail::Refuse(Refusal::new(
                        413,
                        format!("request bodies here are limited to {} bytes", s.max_body),
                    )));
                }
                n
            }
            None => ex.req_body.advance(avail).map_err(bad)?,
        };
        sout.push(&avail[..n]);
        cin.consume(n);
        ex.bytes_up += n as u64;
        Ok(n > 0)
    }

    /// Sends the head (from the exchange's own buffer, so it can be replayed), then body bytes:
    /// those copied into `sout`, then the rest spliced (`body`).
    pub(super) fn write_server(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let Phase::Exchange(ex) = &mut self.phase else {
            return Ok(false);
        };
        let Some(s) = self.server.as_mut() else {
            return Err(Fail::Abort);
        };
        let mut progress = false;
        if let Some(head) = &ex.head {
            if ex.head_sent < head.len() && s.conn.writable {
                let (n, io) = s.conn.write_slice(&head.bytes()[ex.head_sent..]);
                ex.head_sent += n;
                progress |= n > 0;
                if let Io::Error(k) = io {
                    return self.server_failed(k, ctx);
                }
            }
            if ex.head_sent < head.len() {
                return Ok(progress);
            }
        }
        if ex.head_cut {
            return Ok(progress); // the server answered before it had the whole head
        }
        if let Some(sout) = self.sout.as_mut().filter(|b| !b.is_empty()) {
            if s.conn.writable {
                let (n, io) = s.conn.write_from(sout);
                ex.body_sent += n as u64;
                progress |= n > 0;
                if let Io::Error(k) = io {
                    return self.server_failed(k, ctx);
                }
            }
        }
        Ok(self.splice_request_body(ctx)? || progress)
    }
}
