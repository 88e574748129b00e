//! One request/response exchange of a session: connect (reusing a kept connection when it
//! can), send the rewritten head and the request body as framed, read the response head, relay
//! 1xx, rewrite the final head, relay its body as framed, then decide what survives.
//!
//! Through a pool, an attempt that fails for the upstream's reasons (connect refused or timed
//! out, reset or EOF before the response head, a malformed head, a CONNECT answered 5xx or 407)
//! counts against that upstream and the request moves to another member, up to the pool's
//! `retries`, while nothing has reached the client and the request can be replayed: no body
//! byte was sent yet, or it has no body. A reused keep-alive connection that dies before any
//! response byte is first retried once on a fresh connection to the same upstream, without
//! blame (it was most likely closed while idle).
//!
//! `connect` holds getting connected (resolve, connect, fail over, time out), `answer` the
//! response (heads, 1xx, tunnels), `body` the bodies both ways (copied, or spliced); this file
//! sends the request and decides what survives the exchange.

mod access_log;
mod answer;
mod body;
mod connect;
mod queued;
mod retry;
mod send;

pub use access_log::LogLine;

pub(in crate::session) use connect::PendingConnect;

use super::{Fail, Phase, ServerTarget, Session, Step};
use crate::buffer::Buf;
use crate::config::HostPolicy;
use crate::config::{Config, OnAllDown, RetryOn};
use crate::conn::Io;
use crate::http::framing::{BodyState, Framing};
use crate::http::reply::{Refusal, CONNECT_ESTABLISHED};
use crate::http::request::{MethodKind, RequestHead};
use crate::http::rewrite::{self, ConnectionField, TargetForm};
use crate::http::HeadScan;
use crate::resolve::{self, Asker};
use crate::route::{self, Via};
use crate::upstream::select;
use crate::upstream::state::ActiveGuard;
use crate::worker::Ctx;
use mio::net::TcpStream;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// Largest response head accepted from an origin or upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Where this request is being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Direct,
    /// Member `member` of pool `pool` (indexes into `Config::pools`).
    Upstream {
        pool: usize,
        member: usize,
    },
    /// Server `server` of backend `backend` (indexes into `Reverse::backends`).
    Server {
        backend: usize,
        server: usize,
    },
}

/// A reverse request: the site and route it was given, for the head's `Host`, replies, logs
/// and metrics.
pub struct Served {
    pub site: usize,
    pub route: usize,
    /// The Host the client asked for (sent on with `host: keep`).
    pub host: String,
    /// The `X-Request-Id` sent on.
    pub id: String,
    /// Request body bytes allowed (`max_body_bytes`); 0 = any.
    pub max_body: u64,
    /// Request body data seen so far (chunk framing left out), against `max_body`.
    pub body_seen: u64,
    /// What `hash` mode hashes for this request (empty in other modes).
    pub hash_key: Vec<u8>,
    /// The route's counts, where the request is counted when it ends (see `release`).
    pub stats: std::sync::Arc<crate::metrics::RouteStats>,
}

enum Stage {
    /// Waiting for a slot of the backend (`queued`); nothing is sent or read meanwhile.
    Queued(crate::upstream::queue::Ticket),
    Resolving,
    Connecting {
        addrs: Vec<SocketAddr>,
        next: usize,
        _pending: PendingConnect,
    },
    Connected,
    /// Waiting before a retry (the backend's backoff): nothing is connected.
    Backoff,
}

enum Resp {
    Head,
    Body(BodyState),
    Done,
}

/// A request in flight and its response.
pub struct Exchange {
    kind: MethodKind,
    minor: u8,
    host: String,
    port: u16,
    keep_alive: bool,
    upgrade: bool,
    /// RFC 9110 §9.2.2: the method (or an `Idempotency-Key`) lets ferry send the request
    /// again after its head went out. CONNECT counts: nothing is relayed before its tunnel.
    idempotent: bool,
    route: Route,
    stage: Stage,
    /// The rewritten request head; kept until a response head arrives, for a replay.
    head: Option<Buf>,
    /// Where the head's per-upstream end (credentials, blank line) starts.
    head_base: usize,
    head_sent: usize,
    /// Body bytes written to the server in this attempt.
    body_sent: u64,
    /// Pool members tried so far.
    tried: Vec<usize>,
    /// The retry of a dead reused connection has been spent.
    stale_retry: bool,
    /// Holds the upstream's active-connection count while an attempt uses it.
    guard: Option<ActiveGuard>,
    /// A half-open server's trial slot, taken when it was picked, for the next attempt.
    trial: Option<ActiveGuard>,
    /// A reverse request's slot of its backend, held to the exchange's end (`queued`).
    slot: Option<crate::upstream::queue::Slot>,
    attempt_started: Instant,
    req_body: BodyState,
    /// The pipes the bodies are spliced through while they last.
    body_pipes: body::BodyPipes,
    resp: Resp,
    resp_scan: HeadScan,
    /// A 1xx response was received (and relayed to an HTTP/1.1 client): the response has
    /// begun for retry purposes, though a final status can still follow.
    interim: bool,
    /// A response came before the head was sent whole: nothing more goes to the server.
    head_cut: bool,
    /// The chunked response body goes to an HTTP/1.0 client de-chunked.
    dechunk: bool,
    /// When the connection of this attempt became usable.
    connected_at: Instant,
    status: u16,
    started: Instant,
    attempts: u8,
    server_eof: bool,
    client_keep: bool,
    server_keep: bool,
    response_started: bool,
    bytes_up: u64,
    bytes_down: u64,
    log: Option<LogLine>,
    /// Set for a request on a reverse listener.
    served: Option<Box<Served>>,
}

impl Exchange {
    /// Routes a parsed request and renders its head for the next hop. A rule `reject` or a
    /// pool with nothing online (and `on_all_down: reject`) refuses it here.
    pub fn start(
        req: &RequestHead<'_, '_>,
        peer: SocketAddr,
        started: Instant,
        config: &Config,
        ctx: &mut Ctx,
    ) -> Result<Exchange, Refusal> {
        let t = &req.target;
        // An IP literal, in whatever spelling, goes on as its canonical text: connected to as
        // a literal (never resolved), and hashed and reused as the one address it is.
        let host = t.ip.map_or_else(|| t.host.to_string(), |ip| ip.to_string());
        let route = match route::decide(config, t.host, t.ip, t.port) {
            Via::Reject => return Err(Refusal::new(403, "denied by a routing rule")),
            Via::Direct => Route::Direct,
            Via::Pool(p) => {
                let pool = &config.pools[p];
                let ip = ip_key(peer);
                let key = select::hash_key(pool.hash_key, &ip, &host);
                match ctx.select.pick(pool, key, &[]) {
                    Some(member) => Route::Upstream { pool: p, member },
                    None if pool.on_all_down == OnAllDown::Direct => Route::Direct,
                    None if pool.members.is_empty() => {
                        return Err(Refusal::no_upstream(&pool.name))
                    }
                    None => return Err(Refusal::pool_down(&pool.name)),
                }
            }
        };
        if let Route::Upstream { pool, .. } = route {
            // RFC 9110 §9.3.8: TRACE's final recipient echoes the request, which would carry
            // ferry's credentials for the upstream back to the client.
            if req.method == "TRACE" && config.pools[pool].members.iter().any(|m| m.auth.is_some())
            {
                return Err(Refusal::new(
                    403,
                    "TRACE is not relayed through upstream proxies that need credentials",
                ));
            }
        }
        let mut head_base = 0;
        let head = match (req.kind, route) {
            (MethodKind::Connect, Route::Direct) => None,
            (_, Route::Direct) => {
                let mut b = ctx.bufs.get();
                rewrite::request_head(&mut b, req, TargetForm::Origin, config.via);
                head_base = b.len();
                rewrite::finish_request_head(&mut b, None);
                Some(b)
            }
            (_, Route::Upstream { pool, member }) => {
                let mut b = ctx.bufs.get();
                rewrite::request_head(&mut b, req, TargetForm::Absolute, config.via);
                head_base = b.len();
                rewrite::finish_request_head(
                    &mut b,
                    config.pools[pool].members[member].auth.as_deref(),
                );
                Some(b)
            }
            (_, Route::Server { .. }) => None, // see `start_reverse`
        };
        let log = config.access_log.then(|| {
            let mut t = Buf::with_capacity(64);
            match req.kind {
                MethodKind::Connect => rewrite::write_authority(&mut t, &req.target, None),
                _ => {
                    t.push(b"http://");
                    rewrite::write_authority(&mut t, &req.target, Some(80));
                    t.push(req.target.path.as_bytes());
                }
            }
            LogLine {
                site: None,
                tls: None,
                method: req.method.to_string(),
                target: String::from_utf8_lossy(t.bytes()).into_owned(),
                route: match route {
                    Route::Direct => "direct".into(),
                    Route::Upstream { pool, member } => {
                        config.pools[pool].members[member].display()
                    }
                    Route::Server { .. } => String::new(),
                },
            }
        });
        Ok(Exchange::new(
            req, host, route, head, head_base, started, log, ctx,
        ))
    }

    /// Starts a reverse request that `plan` routed to a backend: its first server picked,
    /// its head rendered for it (DESIGN §7.1).
    #[allow(clippy::too_many_arguments)]
    pub fn start_reverse(
        req: &RequestHead<'_, '_>,
        plan: route::reverse::Plan,
        client: SocketAddr,
        trusted: bool,
        started: Instant,
        config: &Config,
        ctx: &mut Ctx,
    ) -> Result<Exchange, Refusal> {
        let rev = config
            .reverse
            .as_ref()
            .ok_or_else(|| Refusal::new(500, "no reverse role"))?;
        let (site, r) = (
            &rev.sites[plan.site],
            &rev.sites[plan.site].routes[plan.route],
        );
        let backend = &rev.backends[plan.backend];
        let host = match (req.target.host, req.host) {
            ("", h) => h.unwrap_or("").to_string(),
            _ => {
                let mut t = Buf::with_capacity(64);
                rewrite::write_authority(&mut t, &req.target, Some(80));
                String::from_utf8_lossy(t.bytes()).into_owned()
            }
        };
        let ip = ip_key(client);
        let key = match backend.pool.mode {
            crate::config::Mode::Hash => {
                reverse_hash_key(&backend.hash_key, req, &ip, &host).to_vec()
            }
            _ => Vec::new(),
        };
        backend.shared.count_request();
        let Some((server, trial)) = ctx.select.pick_server(&backend.pool, &key, &[], ctx.worker)
        else {
            return Err(Refusal::servers_down(&site.name, &r.name, &backend.name));
        };
        let mut b = ctx.bufs.get();
        let new_id = ctx.request_id();
        let f = crate::http::forwarded::Forwarding {
            target: &plan.target,
            client: client.ip().to_canonical(),
            trusted,
            scheme: "http",
            host: &host,
            new_id: &new_id,
            via: config.via,
            edits: plan.request_edits.as_deref().unwrap_or(&r.headers.request),
        };
        let id = crate::http::forwarded::request_head(&mut b, req, &f, rev);
        let head_base = b.len();
        let served = Served {
            site: plan.site,
            route: plan.route,
            host,
            id,
            max_body: r.max_body_bytes,
            body_seen: 0,
            hash_key: key,
            stats: r.stats.clone(),
        };
        let route = Route::Server {
            backend: plan.backend,
            server,
        };
        crate::http::forwarded::finish(&mut b, &served.sent_host(config, route));
        let log = config.access_log.then(|| LogLine {
            tls: None,
            method: req.method.to_string(),
            target: format!("{} {}", host_or_dash(&served.host), req.target.path),
            route: String::new(),
            site: Some((
                format!("site={} route={}", site.name, r.name),
                served.id.clone(),
            )),
        });
        let mut ex = Exchange::new(
            req,
            String::new(),
            route,
            Some(b),
            head_base,
            started,
            log,
            ctx,
        );
        ex.served = Some(Box::new(served));
        ex.trial = trial;
        Ok(ex)
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        req: &RequestHead<'_, '_>,
        host: String,
        route: Route,
        head: Option<Buf>,
        head_base: usize,
        started: Instant,
        log: Option<LogLine>,
        ctx: &Ctx,
    ) -> Exchange {
        Exchange {
            kind: req.kind,
            minor: req.minor,
            host,
            port: req.target.port,
            keep_alive: req.keep_alive,
            upgrade: req.upgrade,
            idempotent: is_idempotent(req),
            route,
            stage: Stage::Resolving,
            head,
            head_base,
            head_sent: 0,
            body_sent: 0,
            tried: match route {
                Route::Upstream { member, .. } => vec![member],
                Route::Server { server, .. } => vec![server],
                Route::Direct => Vec::new(),
            },
            stale_retry: false,
            guard: None,
            trial: None,
            slot: None,
            attempt_started: ctx.now,
            req_body: BodyState::new(req.framing),
            body_pipes: body::BodyPipes::default(),
            resp: Resp::Head,
            resp_scan: HeadScan::default(),
            interim: false,
            head_cut: false,
            dechunk: false,
            connected_at: ctx.now,
            status: 0,
            started,
            attempts: 0,
            server_eof: false,
            client_keep: false,
            server_keep: false,
            response_started: false,
            bytes_up: 0,
            bytes_down: 0,
            log,
            served: None,
        }
    }

    /// True while the exchange waits for the addresses of `host` (an answer for a name it
    /// asked for earlier, before a failover, is not for it).
    pub fn is_resolving(&self, host: &str, config: &Config) -> bool {
        matches!(self.stage, Stage::Resolving) && self.next_hop(config).0 == host
    }

    /// True once any byte of the final response went towards the client.
    pub fn response_started(&self) -> bool {
        self.response_started
    }

    /// The host and port to connect to, and what the connection will be to.
    fn next_hop<'a>(&'a self, config: &'a Config) -> (&'a str, u16) {
        match self.pool(config) {
            None => (&self.host, self.port),
            Some((pool, m)) => (&pool.members[m].host, pool.members[m].port),
        }
    }

    /// What a new connection to the next hop is, kept with it for later reuse (allocates:
    /// only called when a connection is attached).
    fn server_target(&self, config: &Config) -> ServerTarget {
        match self.pool(config) {
            None => ServerTarget::Origin(self.host.clone(), self.port),
            // A server's state name says its backend too: a connection to one backend's
            // server is never handed to another backend (they may differ in `Host`).
            Some((pool, m)) => ServerTarget::Upstream(pool.members[m].state.name.clone()),
        }
    }

    /// True when a kept connection to `target` can carry this request (no allocation).
    fn goes_to(&self, target: &ServerTarget, config: &Config) -> bool {
        match (self.pool(config), target) {
            (None, ServerTarget::Origin(h, p)) => *h == self.host && *p == self.port,
            (Some((pool, m)), ServerTarget::Upstream(name)) => *name == pool.members[m].state.name,
            _ => false,
        }
    }

    /// Counts and logs a request that ferry answered itself.
    pub fn refused(&mut self, r: &Refusal, peer: SocketAddr, ctx: &Ctx) {
        self.count(ctx, false);
        // A response cut short is logged with the status the client saw.
        let status = if self.response_started {
            self.status
        } else {
            r.status
        };
        // From here on `status` is the one the client saw (for `release`).
        self.status = status;
        if let Some(l) = self.log.take() {
            l.request(
                peer,
                status,
                self.bytes_up,
                self.bytes_down,
                self.attempts,
                self.started.elapsed().as_millis(),
            );
        }
    }

    /// Counts the request as ended.
    fn count(&self, ctx: &Ctx, ok: bool) {
        ctx.stats().request_done(
            self.kind == MethodKind::Connect,
            self.route == Route::Direct,
            ok,
            self.bytes_up,
            self.bytes_down,
        );
    }

    /// Whether it is a CONNECT, and goes direct (for the tunnel it becomes).
    pub fn tunnel_kind(&self) -> (bool, bool) {
        (
            self.kind == MethodKind::Connect,
            self.route == Route::Direct,
        )
    }

    /// The pool and member this attempt goes through, if any: an upstream proxy's pool, or
    /// a backend (its servers are the members).
    fn pool<'c>(&self, config: &'c Config) -> Option<(&'c crate::config::PoolSpec, usize)> {
        match self.route {
            Route::Upstream { pool, member } => Some((&config.pools[pool], member)),
            Route::Server { backend, server } => {
                let rev = config.reverse.as_ref()?;
                Some((&rev.backends.get(backend)?.pool, server))
            }
            Route::Direct => None,
        }
    }

    /// The URL of the upstream or server this attempt went to, as configured.
    pub fn server_url<'c>(&self, config: &'c Config) -> Option<&'c str> {
        self.pool(config)
            .map(|(p, m)| p.members[m].config_url.as_str())
    }

    /// The reverse request's site and route, if it is one.
    pub fn served(&self) -> Option<&Served> {
        self.served.as_deref()
    }

    /// `upstream` for a forward request, `server` for a reverse one: the words of a reply.
    fn hop<'w>(&self, upstream: &'w str, server: &'w str) -> &'w str {
        match self.route {
            Route::Server { .. } => server,
            _ => upstream,
        }
    }

    /// True while a failed attempt can be made again (DESIGN §3): nothing of the response
    /// came back (a 1xx included), the head is still at hand (body bytes never go without
    /// it), no body byte left ferry (it keeps no copy), and either nothing of the request was
    /// sent or its method is idempotent (RFC 9110 §9.2.2).
    fn replayable(&self) -> bool {
        self.head.is_some()
            && !self.interim
            && !self.response_started
            && self.body_sent == 0
            && (self.head_sent == 0 || self.idempotent)
    }

    /// Makes the exchange ready for another attempt: the head goes out again from its start
    /// and nothing of the failed attempt's response counts.
    fn reset_attempt(&mut self) {
        self.head_sent = 0;
        self.resp = Resp::Head;
        self.resp_scan = HeadScan::default();
        self.server_eof = false;
    }

    /// A CONNECT through an upstream whose answer has not come: getting it is part of getting
    /// connected, bounded by `connect_timeout_secs` and the upstream's fault when it fails.
    fn awaits_connect_answer(&self) -> bool {
        self.kind == MethodKind::Connect
            && self.route != Route::Direct
            && matches!(self.resp, Resp::Head)
    }

    /// True when the client learns where the response body ends only from the close (a
    /// chunked body de-chunked for HTTP/1.0).
    pub fn ends_with_close(&self) -> bool {
        self.dechunk
    }

    /// Takes the active-connection guard (a tunnel keeps it for its lifetime).
    pub fn take_guard(&mut self) -> Option<ActiveGuard> {
        self.guard.take()
    }

    /// Ends the exchange. A reverse request is counted here, once, whatever ended it: with
    /// the status the client saw (a response, ferry's reply, a 101 before a tunnel, or a
    /// response cut off after its head); a client that left before any status is not.
    pub fn release(mut self, ctx: &mut Ctx) {
        if let Some(s) = self.served.as_ref().filter(|_| self.status != 0) {
            let took = ctx.now.saturating_duration_since(self.started);
            s.stats.done(ctx.worker, self.status, took);
        }
        if let Some(b) = self.head.take() {
            ctx.bufs.put(b);
        }
        self.body_pipes.release(&mut ctx.pipes);
    }
}

impl Session {
    pub(super) fn drive_exchange(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        if matches!(&self.phase, Phase::Exchange(ex) if matches!(ex.stage, Stage::Queued(_))) {
            return self.drive_queued(ctx);
        }
        let mut progress = self.flush_client(ctx)?;
        if let Phase::Exchange(ex) = &self.phase {
            if matches!(ex.stage, Stage::Connecting { .. }) {
                progress |= self.check_connect(ctx)?;
            }
        }
        let Phase::Exchange(ex) = &self.phase else {
            return Ok(true);
        };
        let connected = matches!(ex.stage, Stage::Connected);
        // While the request body is spliced its bytes stay in the socket, for the pipe.
        if !ex.body_pipes.splicing_request() {
            progress |= self.fill_cin(ctx)?;
        }
        progress |= self.feed_request_body(ctx)?;
        if connected {
            progress |= self.write_server(ctx)?;
            // A write that failed may have started the attempt over (another connection, a
            // backoff): nothing is left to read from this one.
            if !self.attempt_connected() {
                return Ok(true);
            }
            progress |= self.fill_sin(ctx)?;
            progress |= self.handle_response(ctx)?;
            if !matches!(self.phase, Phase::Exchange(_)) {
                return Ok(true);
            }
            progress |= self.flush_client(ctx)?;
            progress |= self.finish_if_done(ctx)?;
            if progress {
                self.refresh_deadline(ctx);
            }
        }
        Ok(progress)
    }

    /// The exchange's attempt has a connected server connection.
    fn attempt_connected(&self) -> bool {
        self.server.is_some()
            && matches!(&self.phase, Phase::Exchange(ex) if matches!(ex.stage, Stage::Connected))
    }

    fn refresh_deadline(&mut self, ctx: &Ctx) {
        let limits = &self.config.limits;
        let mut d = ctx.now + limits.idle_timeout;
        if let Phase::Exchange(ex) = &self.phase {
            if matches!(ex.stage, Stage::Backoff) {
                return; // the timer is the backoff's
            }
            if let Some(rt) = limits.request_timeout {
                d = d.min(ex.started + rt);
            }
            if ex.awaits_connect_answer() {
                d = d.min(ex.connected_at + limits.connect_timeout);
            }
            if let (Some(s), Resp::Head) = (&ex.served, &ex.resp) {
                // A route's `response_timeout_secs`: from the last byte of the request that
                // went out (or came back) to the response head.
                if let Some(rev) = self.config.reverse.as_ref() {
                    d = d.min(ctx.now + rev.sites[s.site].routes[s.route].response_timeout);
                }
            }
        }
        self.deadline = d;
    }

    /// Reads from the server into `sin` while there is room.
    fn fill_sin(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let Phase::Exchange(ex) = &mut self.phase else {
            return Ok(false);
        };
        let Some(s) = self.server.as_mut() else {
            return Err(Fail::Abort);
        };
        // While the response body is spliced its bytes stay in the socket, for the pipe.
        if !s.conn.readable || ex.server_eof || ex.body_pipes.splicing_response() {
            return Ok(false);
        }
        let b = ctx.bufs.fill(&mut self.sin);
        if b.room() == 0 {
            if matches!(ex.resp, Resp::Head) && b.capacity() < MAX_RESPONSE_HEAD {
                b.grow_to(MAX_RESPONSE_HEAD);
            } else {
                return Ok(false);
            }
        }
        let (n, io) = s.conn.read_into(b);
        match io {
            Io::Closed => ex.server_eof = true,
            Io::Error(k) => return self.server_failed(k, ctx),
            _ => {}
        }
        Ok(n > 0 || ex.server_eof)
    }

    /// The server connection broke. Before any response byte a bodiless request on a reused
    /// connection is replayed once on a fresh one; otherwise the client gets a 502, or is cut
    /// off when part of the response already went out.
    fn server_failed(&mut self, kind: std::io::ErrorKind, ctx: &mut Ctx) -> Result<bool, Fail> {
        log::debug!("{}: server connection failed: {kind:?}", self.peer);
        if self
            .server
            .as_ref()
            .is_some_and(|s| s.conn.tls_handshake_failed())
        {
            // Nothing of the request reached the server: a failed connect, its fault.
            let why = "the TLS handshake with the server failed";
            return self.move_on(why, true, RetryOn::CONNECT_FAILURE, ctx);
        }
        self.server_gone(ctx)
    }

    fn server_gone(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let Phase::Exchange(ex) = &mut self.phase else {
            return Err(Fail::Abort);
        };
        let nothing_back =
            matches!(ex.resp, Resp::Head) && self.sin.as_ref().is_none_or(|b| b.is_empty());
        if ex.response_started {
            // The client keeps what it got so far, then sees the connection close.
            return Err(Fail::Refuse(Refusal::new(
                502,
                "the server closed the connection before the response was complete",
            )));
        }
        let reused = self.server.as_ref().is_some_and(|s| s.reused);
        if nothing_back && reused && !ex.stale_retry && ex.replayable() {
            // Most likely closed while it sat idle: once more on a fresh connection, no blame.
            ex.stale_retry = true;
            ex.reset_attempt();
            self.drop_server(ctx);
            self.resolve_and_connect(ctx)?;
            return Ok(true);
        }
        if ex.route != Route::Direct {
            // A reused connection that ends with nothing back was most likely closed while
            // idle: not the upstream's fault, even when the request may not be replayed.
            let why = match (nothing_back, ex.served.is_some()) {
                (true, false) => "the upstream proxy closed the connection without responding",
                (false, false) => "the upstream proxy sent an incomplete response",
                (true, true) => "the server closed the connection without responding",
                (false, true) => "the server sent an incomplete response",
            };
            return self.move_on(why, !(reused && nothing_back), RetryOn::RESET, ctx);
        }
        Err(Fail::Refuse(if nothing_back {
            Refusal::new(502, "the server closed the connection without responding")
        } else {
            Refusal::new(502, "the server sent an incomplete response")
        }))
    }

    /// After the whole response: log, keep or close the server connection, and go back to
    /// reading the next request or close.
    fn finish_if_done(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let Phase::Exchange(ex) = &mut self.phase else {
            return Ok(false);
        };
        if !matches!(ex.resp, Resp::Done) {
            return Ok(false);
        }
        let request_sent = ex.req_body.is_done()
            && !ex.head_cut
            && ex.head.as_ref().is_none_or(|h| ex.head_sent >= h.len())
            && self.sout.as_ref().is_none_or(|b| b.is_empty())
            && ex.body_pipes.request_flushed();
        ex.count(ctx, true);
        if let Some(l) = ex.log.take() {
            l.request(
                self.peer,
                ex.status,
                ex.bytes_up,
                ex.bytes_down,
                ex.attempts.max(1),
                ctx.now.duration_since(ex.started).as_millis(),
            );
        }
        let keep_server = ex.server_keep
            && request_sent
            && !ex.server_eof
            && self.sin.as_ref().is_none_or(|b| b.is_empty());
        // A response that ended before its request did leaves the rest of the request body on
        // the client connection, where it cannot be told from a next request: close.
        let keep_client = ex.client_keep && ex.req_body.is_done();
        if keep_server && ex.route != Route::Direct {
            // Upstream and server connections go to the worker's pool, for any client's next
            // request: upstreams for `idle_timeout_secs`, a backend's as its `keepalive` says.
            let (expires, max) = match (ex.route, self.config.reverse.as_ref()) {
                (Route::Server { backend, .. }, Some(rev)) => {
                    let b = &rev.backends[backend];
                    (ctx.now + b.idle_timeout, b.max_idle)
                }
                _ => (
                    ctx.now + self.config.limits.idle_timeout,
                    crate::upstream::MAX_IDLE_PER_UPSTREAM,
                ),
            };
            if let Some(mut s) = self.server.take() {
                let _ = ctx.registry.deregister(&mut s.conn.stream);
                if let ServerTarget::Upstream(key) = &s.target {
                    ctx.idle.put(key, (s.conn.stream, s.conn.tls), expires, max);
                }
            }
        } else if keep_server {
            // An origin connection stays with this client for its next request there.
            if let Some(s) = self.server.as_mut() {
                s.reused = false;
            }
        } else {
            self.drop_server(ctx);
        }
        if keep_client && !ctx.draining {
            let old = std::mem::replace(&mut self.phase, Phase::Head);
            self.release_phase(old, ctx);
            self.deadline = ctx.now + self.config.limits.idle_timeout;
        } else {
            self.enter_closing(ctx);
        }
        Ok(true)
    }
}

/// RFC 9110 §9.2.2's idempotent methods, or a request that says it may be repeated.
fn is_idempotent(req: &RequestHead<'_, '_>) -> bool {
    matches!(
        req.method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE" | "CONNECT"
    ) || req
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("idempotency-key"))
}

impl Served {
    /// The `Host` the route's `host` key gives a request sent to `route`'s server.
    pub fn sent_host(&self, config: &Config, route: Route) -> String {
        let Some(rev) = config.reverse.as_ref() else {
            return self.host.clone();
        };
        let Route::Server { backend, server } = route else {
            return self.host.clone();
        };
        match &rev.sites[self.site].routes[self.route].host {
            HostPolicy::Keep => self.host.clone(),
            HostPolicy::Literal(h) => h.clone(),
            HostPolicy::Backend => {
                let m = &rev.backends[backend].pool.members[server];
                match m.host.contains(':') {
                    true => format!("[{}]:{}", m.host, m.port),
                    false => format!("{}:{}", m.host, m.port),
                }
            }
        }
    }

    /// "site S, route R": where a reply of ferry's says it comes from.
    pub fn names(&self, config: &Config) -> String {
        match config.reverse.as_ref() {
            Some(rev) => {
                let site = &rev.sites[self.site];
                format!("site {}, route {}", site.name, site.routes[self.route].name)
            }
            None => String::new(),
        }
    }
}

/// A host for a log line, which separates fields by spaces.
pub fn host_or_dash(host: &str) -> &str {
    if host.is_empty() {
        "-"
    } else {
        host
    }
}

/// What a backend in `hash` mode hashes for `req` (empty when the header or cookie is
/// missing: those requests then share one server).
fn reverse_hash_key<'a>(
    key: &'a crate::config::BackendHashKey,
    req: &'a RequestHead<'_, '_>,
    ip: &'a [u8],
    host: &'a str,
) -> &'a [u8] {
    use crate::config::BackendHashKey as K;
    let field = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| crate::http::trim(h.value))
    };
    match key {
        K::ClientIp => ip,
        K::Host => host.as_bytes(),
        K::Path => {
            let p = req.target.path;
            &p.as_bytes()[..p.find('?').unwrap_or(p.len())]
        }
        K::Header(name) => field(name).unwrap_or_default(),
        K::Cookie(name) => req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .flat_map(|h| h.value.split(|&b| b == b';'))
            .find_map(|c| {
                let c = crate::http::trim(c);
                let (n, v) = c.split_at(c.iter().position(|&b| b == b'=')?);
                (n == name.as_bytes()).then_some(&v[1..])
            })
            .unwrap_or_default(),
    }
}

/// The client's address as 16 bytes (IPv4 mapped), the `client_ip` hash key.
fn ip_key(peer: SocketAddr) -> [u8; 16] {
    match peer.ip() {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}
