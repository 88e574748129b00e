//! Getting an exchange connected: reuse a kept connection or resolve and connect (each
//! address in turn, within the bound on connects in progress), count failures against the
//! upstream and fail over to another member of the pool, and the exchange's timeouts.

use super::*;

/// Counts one connect in progress in its worker (and for its client) while it lives.
pub(in crate::session) struct PendingConnect {
    table: std::rc::Rc<std::cell::RefCell<crate::worker::PendingConnects>>,
    client: IpAddr,
}

impl PendingConnect {
    /// Takes a slot for `client`, if the worker and the client are under their bounds.
    pub(in crate::session) fn try_new(
        table: &std::rc::Rc<std::cell::RefCell<crate::worker::PendingConnects>>,
        client: IpAddr,
    ) -> Option<PendingConnect> {
        table.borrow_mut().take(client).then(|| PendingConnect {
            table: table.clone(),
            client,
        })
    }
}

impl Drop for PendingConnect {
    fn drop(&mut self) {
        self.table.borrow_mut().release(self.client);
    }
}

impl Session {
    /// Enters the exchange: reuses a kept connection or starts resolving and connecting.
    pub(in crate::session) fn begin_exchange(
        &mut self,
        mut ex: Exchange,
        ctx: &mut Ctx,
    ) -> Result<(), Fail> {
        if let Some(l) = ex.log.as_mut() {
            l.tls = self.client.tls_version();
        }
        // A reverse request first takes a slot of its backend, or waits for one (`queued`).
        let Some(ex) = self.take_backend_slot(ex, ctx)? else {
            return Ok(());
        };
        let tunnel_direct = ex.kind == MethodKind::Connect && ex.route == Route::Direct;
        let reusable = !tunnel_direct
            && self
                .server
                .as_ref()
                .is_some_and(|s| s.connected && ex.goes_to(&s.target, &self.config));
        let route = ex.route;
        self.phase = Phase::Exchange(Box::new(ex));
        self.begin_attempt(ctx);
        self.deadline = ctx.now + self.config.limits.connect_timeout;
        if reusable {
            if let Some(s) = self.server.as_mut() {
                s.reused = true;
            }
            self.connected(ctx)?;
            return Ok(());
        }
        self.drop_server(ctx);
        if route != Route::Direct {
            let config = self.config.clone();
            let key = match &self.phase {
                Phase::Exchange(ex) => ex.pool(&config).map(|(p, m)| &p.members[m].state.name),
                _ => None,
            };
            if let Some((stream, tls)) = key.and_then(|k| ctx.idle.take(k)) {
                let target = ServerTarget::Upstream(key.cloned().unwrap_or_default());
                if self
                    .attach_server((stream, tls), target, true, true, ctx)
                    .is_ok()
                {
                    self.connected(ctx)?;
                    return Ok(());
                }
            }
        }
        self.resolve_and_connect(ctx)
    }

    /// The TLS state for a new connection to the exchange's server, when it is `https://`.
    fn server_tls(&self) -> Result<crate::conn::Tls, String> {
        #[cfg(feature = "tls")]
        if let Phase::Exchange(ex) = &self.phase {
            if let Some((pool, m)) = ex.pool(&self.config) {
                return crate::tls::client_conn(&self.config, &pool.members[m]);
            }
        }
        Ok(None)
    }

    /// Starts the clock and the active-connection count of an attempt through an upstream.
    pub(super) fn begin_attempt(&mut self, ctx: &mut Ctx) {
        let config = self.config.clone();
        let Phase::Exchange(ex) = &mut self.phase else {
            return;
        };
        ex.attempt_started = ctx.now;
        // A half-open server's attempt holds the trial slot it was picked with.
        ex.guard = ex.trial.take().or_else(|| {
            ex.pool(&config)
                .map(|(pool, m)| pool.members[m].state.begin(ctx.worker))
        });
        let url = ex.served.as_ref().and(ex.server_url(&config));
        if let (Some(l), Some(url)) = (&mut ex.log, url) {
            // A reverse request's log line names the server that answered (or failed last).
            l.route.clear();
            l.route.push_str(url);
        }
    }

    /// The upstream of this attempt failed before anything reached the client: count it
    /// against that upstream, then try another member of the pool while the request can be
    /// replayed and the pool's `retries` allow. A direct request just gets the 502.
    /// `cond` says which kind of failure it was, for a backend's `retries.on`.
    pub(super) fn fail_over(
        &mut self,
        why: &'static str,
        cond: RetryOn,
        ctx: &mut Ctx,
    ) -> Result<bool, Fail> {
        self.move_on(why, true, cond, ctx)
    }

    /// `fail_over`, with `blame` saying whether the failure counts against the upstream (it
    /// does not when the upstream only passed on its verdict on the client's target, or a
    /// reused connection had simply been closed while idle).
    pub(super) fn move_on(
        &mut self,
        why: &'static str,
        blame: bool,
        cond: RetryOn,
        ctx: &mut Ctx,
    ) -> Result<bool, Fail> {
        if matches!(&self.phase, Phase::Exchange(ex) if ex.served.is_some()) {
            return self.retry_server(why, blame, cond, ctx);
        }
        let config = self.config.clone();
        let peer = self.peer;
        let Phase::Exchange(ex) = &mut self.phase else {
            return Err(Fail::Abort);
        };
        let Some((pool, member)) = ex.pool(&config) else {
            return Err(Fail::Refuse(Refusal::new(502, why)));
        };
        if blame {
            pool.members[member]
                .state
                .passive_failure(ctx.worker, pool.passive_fall(), why);
        }
        ex.guard = None;
        if ex.replayable() && ex.tried.len() < pool.retries {
            let ip = ip_key(peer);
            let key = select::hash_key(pool.hash_key, &ip, &ex.host);
            if let Some(next) = ctx.select.pick(pool, key, &ex.tried) {
                log::debug!(
                    "{peer}: {why} ({}); trying {}",
                    pool.members[member].display(),
                    pool.members[next].display()
                );
                ex.tried.push(next);
                if let Route::Upstream { member, .. } = &mut ex.route {
                    *member = next;
                }
                if let Some(h) = ex.head.as_mut() {
                    h.truncate(ex.head_base);
                    rewrite::finish_request_head(h, pool.members[next].auth.as_deref());
                }
                ex.reset_attempt();
                ex.stale_retry = false;
                self.drop_server(ctx);
                self.begin_attempt(ctx);
                self.resolve_and_connect(ctx)?;
                return Ok(true);
            }
        }
        if ex.replayable()
            && pool.on_all_down == OnAllDown::Direct
            && pool.members.iter().all(|m| !m.state.is_online())
        {
            // The pool is down and says to go direct: the head loses the upstream's
            // credentials and its request line becomes origin-form.
            log::debug!("{peer}: pool {} is down; going direct", pool.name);
            ex.route = Route::Direct;
            if let Some(h) = ex.head.as_mut() {
                h.truncate(ex.head_base);
                ex.head_base = rewrite::to_origin_form(h, ex.head_base);
                rewrite::finish_request_head(h, None);
            }
            ex.reset_attempt();
            self.drop_server(ctx);
            self.resolve_and_connect(ctx)?;
            return Ok(true);
        }
        let n = ex.tried.len();
        Err(Fail::Refuse(Refusal::new(
            502,
            if n > 1 {
                format!("{n} upstream proxies failed; the last: {why}")
            } else {
                why.to_string()
            },
        )))
    }

    /// Finds the addresses of the next hop: literal, cached, or asked of a resolver thread.
    pub(super) fn resolve_and_connect(&mut self, ctx: &mut Ctx) -> Result<(), Fail> {
        // An Arc clone (no allocation) so the host can be borrowed while the session changes.
        let config = self.config.clone();
        let Phase::Exchange(ex) = &mut self.phase else {
            return Err(Fail::Abort);
        };
        ex.attempts += 1;
        let (host, port) = ex.next_hop(&config);
        if let Some(a) = resolve::literal(host, port) {
            return self.connect_to(vec![a], 0, ctx);
        }
        match ctx.dns.get(host, port, ctx.now) {
            Some(Ok(addrs)) => return self.connect_to(addrs, 0, ctx),
            Some(Err(e)) => return self.cannot_resolve(&e, ctx),
            None => {}
        }
        if ctx.dns.wait_for(host, self.slot, self.generation) {
            let asker = Asker {
                worker: ctx.worker,
                slot: self.slot,
                generation: self.generation,
            };
            let deadline = ctx.now + config.limits.connect_timeout;
            ctx.resolver.ask(asker, host, deadline);
        }
        ex.stage = Stage::Resolving;
        Ok(())
    }

    /// The next hop's name has no address (now, or a moment ago).
    fn cannot_resolve(&mut self, why: &str, ctx: &mut Ctx) -> Result<(), Fail> {
        log::debug!("{}: {why}", self.peer);
        match &self.phase {
            Phase::Exchange(ex) if ex.route != Route::Direct => {
                let why = ex.hop(
                    "cannot resolve the upstream proxy",
                    "cannot resolve the server",
                );
                self.fail_over(why, RetryOn::CONNECT_FAILURE, ctx)
                    .map(|_| ())
            }
            _ => Err(Fail::Refuse(Refusal::new(
                502,
                "cannot resolve the target host",
            ))),
        }
    }

    /// A resolver answered.
    pub(in crate::session) fn on_resolved(
        &mut self,
        r: Result<Vec<IpAddr>, String>,
        abandoned: bool,
        ctx: &mut Ctx,
    ) -> Step {
        let Phase::Exchange(ex) = &self.phase else {
            return Step::Wait;
        };
        let (_, port) = ex.next_hop(&self.config);
        let result = match r {
            // No resolver thread was free in time: ferry's own shortage, not the name's (nor
            // a named upstream's) fault.
            Err(e) if abandoned => {
                log::debug!("{}: {e}", self.peer);
                match ex.route {
                    Route::Direct => Err(Fail::Refuse(Refusal::new(
                        504,
                        "no resolver was free to look up the target host in time",
                    ))),
                    _ => self
                        .move_on(
                            ex.hop(
                                "no resolver was free to look up the upstream proxy",
                                "no resolver was free to look up the server",
                            ),
                            false,
                            RetryOn::CONNECT_FAILURE,
                            ctx,
                        )
                        .map(|_| ()),
                }
            }
            Ok(ips) => self.connect_to(
                ips.into_iter()
                    .map(|ip| SocketAddr::new(ip, port))
                    .collect(),
                0,
                ctx,
            ),
            Err(e) => self.cannot_resolve(&e, ctx),
        };
        match self.settle(result.map(|_| true), ctx) {
            Step::Again => Step::Wait,
            s => s,
        }
    }

    /// Starts a non-blocking connect to `addrs[next..]`, trying each until one starts.
    pub(super) fn connect_to(
        &mut self,
        addrs: Vec<SocketAddr>,
        mut next: usize,
        ctx: &mut Ctx,
    ) -> Result<(), Fail> {
        let Phase::Exchange(ex) = &self.phase else {
            return Err(Fail::Abort);
        };
        let direct = matches!(ex.route, Route::Direct);
        if direct && next == 0 {
            // Every address before the first connect, so a name with one forbidden address
            // is refused whichever answers first: not ferry itself (no loops, no admin API by
            // the back door), and nothing the rules refuse as a literal.
            for &addr in &addrs {
                crate::access::check_address(addr, &ctx.listening, &self.config, &ctx.shared)
                    .map_err(Fail::Refuse)?;
            }
        }
        if !direct
            && next == 0
            && addrs
                .iter()
                .any(|&a| crate::access::is_self(a, &ctx.listening, &self.config, &ctx.shared))
        {
            // An upstream that is ferry itself would send each request round until its head
            // overflows with Via fields: a config mistake, held against that upstream.
            let why = ex.hop(
                "the upstream proxy is this proxy itself",
                "the server is this proxy itself",
            );
            return self
                .fail_over(why, RetryOn::CONNECT_FAILURE, ctx)
                .map(|_| ());
        }
        let target = ex.server_target(&self.config);
        // Taken before connecting: moved into the stage when a connect starts, given back
        // (dropped) when none does.
        let Some(pending) = PendingConnect::try_new(&ctx.connecting, self.peer.ip()) else {
            return Err(Fail::Refuse(Refusal::new(
                503,
                "too many connections being opened",
            )));
        };
        while next < addrs.len() {
            let addr = addrs[next];
            next += 1;
            match TcpStream::connect(addr) {
                Ok(stream) => {
                    let tls = match self.server_tls() {
                        Ok(t) => t,
                        Err(e) => {
                            return Err(Fail::Refuse(Refusal::new(
                                502,
                                format!("cannot start TLS to the server: {e}"),
                            )))
                        }
                    };
                    if let Err(e) =
                        self.attach_server((stream, tls), target.clone(), false, false, ctx)
                    {
                        log::warn!("cannot register a connection: {e}");
                        continue;
                    }
                    if let Phase::Exchange(ex) = &mut self.phase {
                        ex.stage = Stage::Connecting {
                            addrs,
                            next,
                            _pending: pending,
                        };
                    }
                    self.deadline = ctx.now + self.config.limits.connect_timeout;
                    return Ok(());
                }
                Err(e) if out_of_descriptors(&e) => {
                    // ferry's own shortage, not the upstream's or the origin's fault.
                    log::warn!("cannot open a connection: {e}");
                    return Err(Fail::Refuse(Refusal::new(
                        503,
                        "ferry is out of file descriptors",
                    )));
                }
                Err(e) => log::debug!("{}: connect to {addr} failed: {e}", self.peer),
            }
        }
        self.cannot_connect(ctx).map(|_| ())
    }

    /// Every address refused or failed.
    pub(super) fn cannot_connect(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        match &self.phase {
            Phase::Exchange(ex) if ex.route != Route::Direct => {
                let why = ex.hop(
                    "cannot connect to the upstream proxy",
                    "cannot connect to the server",
                );
                self.fail_over(why, RetryOn::CONNECT_FAILURE, ctx)
            }
            _ => Err(Fail::Refuse(Refusal::new(
                502,
                "cannot connect to the target",
            ))),
        }
    }

    /// Checks a connect in progress; moves to the next address when it failed.
    pub(super) fn check_connect(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let Some(s) = self.server.as_mut() else {
            return Ok(false);
        };
        if !(s.conn.writable || s.conn.readable) {
            return Ok(false);
        }
        let failed = match s.conn.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match s.conn.stream.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == std::io::ErrorKind::NotConnected => {
                    // Woken before the handshake finished: wait for the next event.
                    s.conn.writable = false;
                    s.conn.readable = false;
                    return Ok(false);
                }
                Err(e) => Some(e),
            },
        };
        if let Some(e) = failed {
            log::debug!("{}: connect failed: {e}", self.peer);
            self.drop_server(ctx);
            let Phase::Exchange(ex) = &mut self.phase else {
                return Err(Fail::Abort);
            };
            let Stage::Connecting { addrs, next, .. } =
                std::mem::replace(&mut ex.stage, Stage::Resolving)
            else {
                return Err(Fail::Abort);
            };
            self.connect_to(addrs, next, ctx)?;
            return Ok(true);
        }
        let _ = s.conn.stream.set_nodelay(true);
        s.connected = true;
        self.connected(ctx)?;
        Ok(true)
    }

    /// The server connection is usable: a direct CONNECT becomes a tunnel now; anything else
    /// starts sending.
    pub(super) fn connected(&mut self, ctx: &mut Ctx) -> Result<(), Fail> {
        let Phase::Exchange(ex) = &mut self.phase else {
            return Err(Fail::Abort);
        };
        ex.stage = Stage::Connected;
        ex.connected_at = ctx.now;
        self.deadline = ctx.now + self.config.limits.idle_timeout;
        if ex.awaits_connect_answer() {
            self.deadline = ctx.now + self.config.limits.connect_timeout;
        }
        if ex.kind == MethodKind::Connect && ex.route == Route::Direct {
            ctx.bufs.fill(&mut self.cout).push(CONNECT_ESTABLISHED);
            let log = ex.log.take();
            let started = ex.started;
            self.start_tunnel(log, started, false, None, ctx);
        }
        Ok(())
    }

    /// The exchange's timer fired: connect, resolve, idle or request timeout.
    pub(in crate::session) fn exchange_timeout(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let Phase::Exchange(ex) = &mut self.phase else {
            return Err(Fail::Abort);
        };
        let upstream = ex.route != Route::Direct;
        let reverse = ex.served.is_some();
        // Everything the client sent went out and the server waits for the rest of the body:
        // the client is the one that stalled.
        let body_waits = !ex.req_body.is_done()
            && self.sout.as_ref().is_none_or(|b| b.is_empty())
            && self.cin.as_ref().is_none_or(|b| b.is_empty())
            && ex.body_pipes.request_flushed();
        match std::mem::replace(&mut ex.stage, Stage::Resolving) {
            Stage::Backoff => {
                // The backoff before a retry is over: the attempt starts now.
                self.begin_attempt(ctx);
                self.resolve_and_connect(ctx)?;
                Ok(true)
            }
            Stage::Queued(_) => self.queue_timed_out(ctx),
            Stage::Resolving if upstream => {
                let why = ex.hop(
                    "resolving the upstream proxy timed out",
                    "resolving the server timed out",
                );
                self.fail_over(why, RetryOn::CONNECT_FAILURE, ctx)
            }
            Stage::Resolving => Err(Fail::Refuse(Refusal::new(
                504,
                "resolving the target host timed out",
            ))),
            Stage::Connecting { addrs, next, .. } => {
                self.drop_server(ctx);
                if next < addrs.len() {
                    self.connect_to(addrs, next, ctx)?;
                    return Ok(true);
                }
                if upstream {
                    let why = match reverse {
                        true => "connecting to the server timed out",
                        false => "connecting to the upstream proxy timed out",
                    };
                    return self.fail_over(why, RetryOn::CONNECT_FAILURE, ctx);
                }
                Err(Fail::Refuse(Refusal::new(504, "connecting timed out")))
            }
            Stage::Connected => {
                ex.stage = Stage::Connected;
                if ex.awaits_connect_answer() {
                    // The upstream proxy answers a CONNECT itself: its silence is its fault.
                    return self.fail_over(
                        "the upstream proxy did not answer the CONNECT in time",
                        RetryOn::default(),
                        ctx,
                    );
                }
                if reverse && !ex.response_started && matches!(ex.resp, Resp::Head) && !body_waits {
                    // DESIGN §7.2: counts against the server; §7.3: retried on `timeout`.
                    return self.move_on(
                        "the server did not answer in time",
                        true,
                        RetryOn::TIMEOUT,
                        ctx,
                    );
                }
                if let (Some((pool, member)), Some(_)) = (ex.pool(&self.config), ex.served()) {
                    // DESIGN §7.2: a server's response timeout counts against it.
                    pool.members[member].state.passive_failure(
                        ctx.worker,
                        pool.passive_fall(),
                        "no response in time",
                    );
                } else if let Some((pool, member)) = ex.pool(&self.config) {
                    // Not held against the upstream (a slow origin behind a healthy proxy is
                    // not the proxy's fault), but an upstream that accepts and then answers
                    // nothing must still be found out: the control thread probes it now, and
                    // a failed probe counts.
                    ctx.control.send(crate::mailbox::Inbox::Probe(
                        pool.members[member].state.clone(),
                    ));
                }
                if ex.response_started {
                    return Err(Fail::Refuse(Refusal::new(
                        504,
                        "the server stopped sending its response",
                    )));
                }
                if body_waits {
                    return Err(Fail::Refuse(Refusal::new(
                        408,
                        "the request body did not arrive in time",
                    )));
                }
                // Not replayed (the request may be being acted on).
                Err(Fail::Refuse(Refusal::new(
                    504,
                    "the server did not answer in time",
                )))
            }
        }
    }
}

/// True for the errors that say this process (or the system) has no socket to give.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
