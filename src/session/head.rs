//! The head phase of a session: reading the next request head from the client (empty lines
//! before it skipped, its first byte starting the header and request timeouts), refusing
//! bytes that cannot be HTTP at once, answering what ferry is the final recipient of, and
//! starting the exchange for the rest.

use super::*;

impl Session {
    pub(super) fn drive_head(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let mut progress = self.flush_client(ctx)?;
        // An idle kept origin connection with something to read has closed or sent junk: drop
        // it. (The flag alone can be left over from the last response's read.)
        if let Some(s) = self.server.as_mut().filter(|s| s.conn.readable) {
            let mut b = [0u8; 1];
            match s.conn.stream.peek(&mut b) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => s.conn.readable = false,
                _ => self.drop_server(ctx),
            }
        }
        progress |= self.fill_cin(ctx)?;
        let has_bytes = self.cin.as_ref().is_some_and(|b| !b.is_empty());
        let backlogged = self.cout.as_ref().is_some_and(|b| b.len() >= OUT_LIMIT);
        if backlogged {
            // ferry holds the next head back until the client reads its answers: that head's
            // clock does not run meanwhile (it starts again when the head is looked at), and
            // the client gets the idle timeout per write, as a slow reader does.
            if self.head_started.take().is_some() || progress {
                self.deadline = ctx.now + self.config.limits.idle_timeout;
            }
        } else if has_bytes && self.head_started.is_none() {
            // The header and request timeouts run from the first byte of a head (empty lines
            // before it included: they cannot keep a connection open for ever).
            self.head_started = Some(ctx.now);
            self.deadline = self.head_deadline(ctx.now);
        }
        if has_bytes && !backlogged && self.try_start_request(ctx)? {
            return Ok(true);
        }
        if self.client_eof && !(has_bytes && backlogged) {
            // The client is done: close once it has what it is owed.
            self.enter_closing(ctx);
            return Ok(true);
        }
        Ok(progress)
    }

    /// When a head whose first byte came at `started` must be complete.
    pub(super) fn head_deadline(&self, started: Instant) -> Instant {
        let limits = &self.config.limits;
        let d = started + limits.header_timeout;
        limits.request_timeout.map_or(d, |rt| d.min(started + rt))
    }

    /// Parses a head from `cin` if a whole one is there, and starts its exchange.
    fn try_start_request(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        // Each request starts with the newest config (a reload reaches keep-alive clients at
        // their next request); the exchange then keeps it to the end.
        if !Arc::ptr_eq(&self.config, &ctx.config) {
            self.config = ctx.config.clone();
        }
        let max = self.config.limits.max_header_bytes;
        let Some(cin) = self.cin.as_mut() else {
            return Ok(false);
        };
        loop {
            let Some(end) = crate::http::seek_head(cin, &mut self.scan) else {
                let bytes = cin.bytes();
                if !request::plausible_start(bytes) {
                    // Not HTTP (a TLS ClientHello sent to a plain proxy port, say): no point
                    // waiting for the rest.
                    return Err(Fail::Refuse(Refusal::new(400, "not an HTTP request")));
                }
                if bytes.len() > MAX_REQUEST_LINE && !bytes[..MAX_REQUEST_LINE].contains(&b'\n') {
                    return Err(Fail::Refuse(Refusal::from(request::HeadError::UriTooLong)));
                }
                if cin.len() >= max {
                    return Err(Fail::Refuse(Refusal::from(request::HeadError::TooLarge)));
                }
                if cin.room() == 0 {
                    cin.grow_to(max.max(cin.capacity() * 2).min(max + 1));
                }
                return Ok(false);
            };
            if end > max {
                return Err(Fail::Refuse(Refusal::from(request::HeadError::TooLarge)));
            }
            let mut headers = [httparse::EMPTY_HEADER; request::MAX_HEADERS];
            match request::parse(&cin.bytes()[..end], &mut headers) {
                // Not a head after all: `scan` looks past this terminator next time.
                Ok(None) => continue,
                Err(e) => return Err(Fail::Refuse(e.into())),
                Ok(Some(req)) => {
                    #[cfg(feature = "test-hooks")]
                    if req.target.host == "panic.ferry.test" {
                        panic!("test-hooks: a panic on request");
                    }
                    #[cfg(feature = "test-hooks")]
                    if req.target.host == "crash.ferry.test" {
                        ctx.crash = true;
                    }
                    let started = self.head_started.take().unwrap_or(ctx.now);
                    let allowed = crate::access::check_request(&self.config, &ctx.shared, &req);
                    if allowed.is_ok() && req.max_forwards == Some(0) {
                        // ferry is the final recipient. A body would be left to read as if
                        // it were the next request: with one, the connection closes.
                        let keep = req.keep_alive
                            && req.framing == crate::http::framing::Framing::None
                            && !ctx.draining;
                        let out = ctx.bufs.fill(&mut self.cout);
                        reply::write_final_recipient(out, &req, &cin.bytes()[..end], keep);
                        ctx.stats().request_done(false, false, true, 0, 0);
                        if self.config.access_log {
                            log::info!(target: crate::logging::ACCESS, "access: {} {} - via=ferry status=200 up=0 down=0 attempts=0 ms=0", self.peer, req.method);
                        }
                        let len = req.len;
                        cin.consume(len);
                        self.scan = HeadScan::default();
                        if !keep {
                            self.enter_closing(ctx);
                        } else {
                            self.deadline = ctx.now + self.config.limits.idle_timeout;
                        }
                        return Ok(true);
                    }
                    let begun = allowed.and_then(|()| {
                        Exchange::start(&req, self.peer, started, &self.config, ctx)
                    });
                    let len = req.len;
                    self.refused_connect = req.kind == request::MethodKind::Connect;
                    cin.consume(len);
                    self.scan = HeadScan::default();
                    self.begin_exchange(begun.map_err(Fail::Refuse)?, ctx)?;
                    return Ok(true);
                }
            }
        }
    }
}
