//! The head phase of a session: reading the next request head from the client (empty lines
//! before it skipped, its first byte starting the header and request timeouts), refusing
//! bytes that cannot be HTTP at once, answering what ferry is the final recipient of, and
//! starting the exchange for the rest.

use super::*;
use crate::http::framing::Framing;
use crate::route::reverse::Place;

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

    /// Reads the PROXY protocol header a trusted proxy sends before anything else: its
    /// client becomes the session's. A peer that sends something else is closed at once.
    pub(super) fn drive_preface(&mut self, tls: bool, ctx: &mut Ctx) -> Result<bool, Fail> {
        let progress = self.fill_cin(ctx)?;
        let Some(cin) = self.cin.as_mut().filter(|b| !b.is_empty()) else {
            if self.client_eof {
                return Err(Fail::Abort);
            }
            return Ok(progress);
        };
        match crate::http::proxy_protocol::parse(cin.bytes()) {
            Err(why) => {
                log::debug!("{}: bad PROXY header: {why}", self.peer);
                Err(Fail::Abort)
            }
            Ok(crate::http::proxy_protocol::Preface::Incomplete) if self.client_eof => {
                Err(Fail::Abort)
            }
            Ok(crate::http::proxy_protocol::Preface::Incomplete) => Ok(progress),
            Ok(crate::http::proxy_protocol::Preface::Header { len, source }) => {
                cin.consume(len);
                if let Some(src) = source {
                    self.peer = SocketAddr::new(src.ip().to_canonical(), src.port());
                }
                let rev = self.config.reverse.as_ref();
                // The client the header names is trusted or not. A header that names none
                // (v1 UNKNOWN, v2 LOCAL or another family) leaves the balancer's address as
                // the client, but what follows may still be a client's request: its
                // forwarding fields are not believed on the balancer's word.
                self.trusted = source.is_some() && rev.is_some_and(|r| r.trusts(self.peer.ip()));
                if !rev.is_some_and(|r| r.allows(self.peer.ip())) && tls {
                    // No plain answer on a TLS connection.
                    log::debug!("{}: not in reverse.allow", self.peer);
                    return Err(Fail::Abort);
                }
                if !rev.is_some_and(|r| r.allows(self.peer.ip())) {
                    log::debug!("{}: not in reverse.allow", self.peer);
                    ctx.bufs
                        .fill(&mut self.cout)
                        .push(crate::access::DENIED_SITE);
                    self.enter_closing(ctx);
                    return Ok(true);
                }
                if tls {
                    self.start_tls_after_preface(ctx)?;
                }
                self.phase = Phase::Head;
                Ok(true)
            }
        }
    }

    /// The PROXY header is read: the rest of the connection is TLS, and what came after the
    /// header is its first ciphertext.
    #[cfg(feature = "tls")]
    fn start_tls_after_preface(&mut self, ctx: &mut Ctx) -> Result<(), Fail> {
        let Some(mut t) = crate::tls::server_conn(&self.config) else {
            return Err(Fail::Abort);
        };
        if let Some(cin) = self.cin.as_mut() {
            t.feed(cin.bytes());
            cin.consume(cin.len());
        }
        ctx.bufs.release_if_empty(&mut self.cin);
        self.client.tls = Some(t);
        self.client.readable = true;
        self.client.progress();
        Ok(())
    }

    #[cfg(not(feature = "tls"))]
    fn start_tls_after_preface(&mut self, _: &mut Ctx) -> Result<(), Fail> {
        Err(Fail::Abort)
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
        // their next request); the exchange then keeps it to the end. A head the site's auth
        // service let through is judged again under the snapshot it was let through by.
        if !Arc::ptr_eq(&self.config, &ctx.config) && self.auth_pass.is_none() {
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
            let origin_form = self.role == Role::Reverse;
            match request::parse_in(&cin.bytes()[..end], &mut headers, origin_form) {
                // Not a head after all: `scan` looks past this terminator next time.
                Ok(None) => continue,
                Err(e) => return Err(Fail::Refuse(e.into())),
                Ok(Some(mut req)) => {
                    if self.role == Role::Reverse && req.upgrade && asks_for_h2c(&req) {
                        // h2c smuggling: after a 101 the client would speak HTTP/2 straight
                        // to the backend, past the routes, method lists and forwarding
                        // fields. Not offered (as Envoy and HAProxy do not): the Upgrade
                        // field is then hop-by-hop and the backend gets a plain request.
                        req.upgrade = false;
                    }
                    #[cfg(feature = "test-hooks")]
                    if req.target.host == "panic.ferry.test" {
                        panic!("test-hooks: a panic on request");
                    }
                    #[cfg(feature = "test-hooks")]
                    if req.target.host == "crash.ferry.test" {
                        ctx.crash = true;
                    }
                    let started = self.head_started.take().unwrap_or(ctx.now);
                    // A pass from a site's auth service is for this head only.
                    let passed = self.auth_pass.take();
                    let allowed = match self.role {
                        Role::Forward => crate::access::check_request(
                            &self.config,
                            &ctx.listening,
                            &ctx.shared,
                            &req,
                        ),
                        Role::Reverse => Ok(()),
                    };
                    if allowed.is_ok() && req.max_forwards == Some(0) {
                        // ferry is the final recipient. A body would be left to read as if
                        // it were the next request: with one, the connection closes.
                        let keep = req.keep_alive
                            && req.framing == crate::http::framing::Framing::None
                            && !ctx.draining;
                        let out = ctx.bufs.fill(&mut self.cout);
                        reply::write_final_recipient(out, &req, &cin.bytes()[..end], keep);
                        ctx.stats().request_done(false, false, true, 0, 0);
                        if self.role == Role::Reverse {
                            let took = ctx.now.saturating_duration_since(started);
                            crate::metrics::site_answered(
                                &self.config,
                                Place::default(),
                                ctx.worker,
                                200,
                                took,
                            );
                        }
                        if self.config.access_log {
                            log::info!(target: crate::logging::ACCESS, "access: {} {} - via=ferry status=200 up=0 down=0 attempts=0 ms=0 tls={}", self.peer, req.method, self.client.tls_version().unwrap_or("-"));
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
                    let mut at = Place::default();
                    let begun = match self.role {
                        Role::Forward => allowed.and_then(|()| {
                            Exchange::start(&req, self.peer, started, &self.config, ctx)
                        }),
                        Role::Reverse => {
                            let config = self.config.clone();
                            let rev = config.reverse.as_ref();
                            // Site auth (DESIGN §7.3) once the site and route are known.
                            let plan = rev
                                .ok_or_else(|| Refusal::new(404, "no site is published here"))
                                .and_then(|rev| {
                                    let tls = crate::route::reverse::Secure {
                                        https: self.client.is_tls(),
                                        sni: self.client.sni(),
                                        redirect_port: ctx.tls_port,
                                    };
                                    let plan =
                                        crate::route::reverse::decide_at(rev, &req, tls, &mut at)?;
                                    auth::gate(rev, plan, &req, passed)
                                });
                            match plan {
                                Ok(auth::Gated::Ask(service, plan)) => {
                                    // The head stays in `cin` until the service has answered.
                                    let check = auth::AuthCheck::new(
                                        service,
                                        &req,
                                        &plan,
                                        self.peer,
                                        self.trusted,
                                        started,
                                        &config,
                                        ctx,
                                    );
                                    self.scan = HeadScan::default();
                                    self.begin_auth(check, ctx)?;
                                    return Ok(true);
                                }
                                Ok(auth::Gated::Go(plan)) => Exchange::start_reverse(
                                    &req,
                                    plan,
                                    self.peer,
                                    self.trusted,
                                    started,
                                    &config,
                                    ctx,
                                ),
                                // Redirects, 404 and 405 leave the connection usable when
                                // nothing of the request is left to read.
                                Err(r) if r.keep && req.framing == Framing::None => {
                                    let took = ctx.now.saturating_duration_since(started);
                                    crate::metrics::site_answered(
                                        &config, at, ctx.worker, r.status, took,
                                    );
                                    let keep = req.keep_alive && !ctx.draining;
                                    let out = ctx.bufs.fill(&mut self.cout);
                                    answer_kept(out, &r, &req, keep);
                                    ctx.stats().request_done(false, false, r.status < 400, 0, 0);
                                    if self.config.access_log {
                                        log::info!(target: crate::logging::ACCESS, "access: {} {} {} {} site=- route=- server=- status={} up=0 down=0 attempts=0 ms={} id=- tls={}", self.peer, req.method, exchange::host_or_dash(req.host.unwrap_or("")), req.target.path, r.status, ctx.now.duration_since(started).as_millis(), self.client.tls_version().unwrap_or("-"));
                                    }
                                    self.deadline = ctx.now + self.config.limits.idle_timeout;
                                    let len = req.len;
                                    cin.consume(len);
                                    self.scan = HeadScan::default();
                                    if !keep {
                                        self.enter_closing(ctx);
                                    }
                                    return Ok(true);
                                }
                                Err(r) => Err(r),
                            }
                        }
                    };
                    if let (Role::Reverse, Err(r)) = (self.role, &begun) {
                        // Answered by ferry before any exchange began (a 400, a 413, a 503
                        // with no server online): counted here, where its site is known.
                        let took = ctx.now.saturating_duration_since(started);
                        crate::metrics::site_answered(&self.config, at, ctx.worker, r.status, took);
                    }
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

/// Writes ferry's own answer `r` to a request (a redirect, a 404), keeping the connection
/// when `keep`.
fn answer_kept(out: &mut Buf, r: &Refusal, req: &request::RequestHead<'_, '_>, keep: bool) {
    let conn = match (keep, req.minor) {
        (false, _) => Some("Connection: close\r\n"),
        (true, 0) => Some("Connection: keep-alive\r\n"),
        (true, _) => None,
    };
    reply::write_answer(out, r, conn, req.kind != request::MethodKind::Head);
}

/// True when the request's `Upgrade` names `h2c` (RFC 7540 §3.2's cleartext HTTP/2).
fn asks_for_h2c(req: &request::RequestHead<'_, '_>) -> bool {
    req.headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("upgrade") && crate::http::has_token(h.value, "h2c"))
}
