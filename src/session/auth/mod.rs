//! The auth sub-request of a site with `auth.forward` (DESIGN §7.3, the contract of Traefik's
//! ForwardAuth and nginx's `auth_request`): after routing and before a request goes to its
//! backend, the session asks the site's auth service `GET <url>` with `X-Forwarded-Method`,
//! `-Proto`, `-Host`, `-Uri`, `-For` and the client's `Authorization` and `Cookie`, no body.
//!
//! Lifecycle (the session's `Phase::Auth`, between `Head` and `Exchange`):
//!
//! ```text
//! Head ─► Auth: Resolving ─► Connecting ─► Connected (sub-request ►, ◄ answer read whole)
//!               (a kept connection to the service is Connected at once)
//!         then: 2xx ──────────────────► Head (the same head, let through) ─► Exchange
//!               any other answer ─────► relayed ─► Head (kept) | Closing
//!               down, slow, garbled ──► 503 ─► Closing
//! ```
//!
//! - The client's head stays at the front of `cin` meanwhile, and the client is not read from:
//!   a body waits in `cin` or the socket until the service has said yes.
//! - A 2xx leaves an `AuthPass` on the session and goes back to `Head`, which parses the same
//!   head again (same config snapshot) and starts its exchange with the pass's fields: those
//!   named in `copy_headers` are removed from the client's request (a client cannot forge
//!   `Remote-User`), then copied from the answer.
//! - Any other answer goes to the client as it is: status, fields (hop-by-hop ones removed),
//!   body re-framed with a `Content-Length`; the connection stays when the client wants it and
//!   no request body is left unread.
//! - Whatever goes wrong with the service is a 503, never access. The sub-request and its
//!   answer (64 KiB at most, in pooled buffers) are bounded by `timeout_secs` in all.
//! - Connections to the service are kept alive in the worker's idle pool under the key
//!   `auth http://host:port` (`ForwardAuth::pool_key`), reused by any session of the worker; a reused
//!   one that dies before any answer byte is replaced once by a fresh one.
//! - The auth connection takes the session's server token: a reverse session holds no server
//!   connection between requests (backend connections go to the idle pool).
//!
//! This file gates requests, connects and sends; `answer` reads the answer and acts on it.

mod answer;

use super::exchange::{host_or_dash, PendingConnect};
use super::*;
use crate::config::{ForwardAuth, Reverse, SiteAuth};
use crate::http::framing::{BodyState, Framing};
use crate::http::request::{MethodKind, RequestHead};
use crate::http::rewrite;
use crate::resolve::{self, Asker};
use crate::route::reverse::{Place, Plan};
use answer::{AnswerHead, MAX_ANSWER};
use std::io::Write;

/// Where a routed request goes once its site's auth has been looked at.
pub(super) enum Gated<'c> {
    /// To its backend, with this plan.
    Go(Plan),
    /// The site's auth service must be asked first.
    Ask(&'c ForwardAuth, Plan),
}

/// Applies the site's `auth` to a request that `plan` routes to a backend: Basic and bearer
/// credentials are checked at once (a 401 otherwise); a site behind an auth service is let
/// through only with a `passed` answer for this very head.
pub(super) fn gate<'c>(
    rev: &'c Reverse,
    plan: Plan,
    req: &RequestHead<'_, '_>,
    passed: Option<Box<AuthPass>>,
) -> Result<Gated<'c>, Refusal> {
    let service = match crate::access::site_gate(rev, &plan, req)? {
        crate::access::SiteGate::Ask(service) => service,
        crate::access::SiteGate::Open => {
            return Ok(Gated::Go(match &rev.sites[plan.site].auth {
                // A public route of a site behind an auth service: the fields the service
                // vouches for elsewhere on the site still cannot come from the client.
                Some(SiteAuth::Forward(service)) => with_fields(rev, service, plan, Vec::new()),
                _ => plan,
            }));
        }
    };
    match passed {
        Some(p) if p.site == plan.site && p.route == plan.route => {
            Ok(Gated::Go(with_fields(rev, service, plan, p.copied)))
        }
        _ => Ok(Gated::Ask(service, plan)),
    }
}

/// `plan` with the route's request edits plus: every `copy_headers` field of the client's
/// removed, then `copied` added.
fn with_fields(
    rev: &Reverse,
    service: &ForwardAuth,
    mut plan: Plan,
    copied: Vec<(String, String)>,
) -> Plan {
    if service.copy_headers.is_empty() {
        return plan;
    }
    let mut edits = rev.sites[plan.site].routes[plan.route]
        .headers
        .request
        .clone();
    edits.remove.extend(service.copy_headers.iter().cloned());
    edits.add.extend(copied);
    plan.request_edits = Some(Box::new(edits));
    plan
}

/// A 2xx from the auth service for the head at the front of `cin`: the request may go on
/// with these fields.
pub(super) struct AuthPass {
    site: usize,
    route: usize,
    /// The `copy_headers` fields of the answer, as (configured name, value).
    copied: Vec<(String, String)>,
}

enum Stage {
    Resolving,
    Connecting {
        addrs: Vec<SocketAddr>,
        next: usize,
        _pending: PendingConnect,
    },
    Connected,
}

/// One sub-request to a site's auth service and what the session must remember of the
/// request waiting for it.
pub(super) struct AuthCheck {
    site: usize,
    route: usize,
    /// Bytes of the request's head, still at the front of `cin`.
    head_len: usize,
    minor: u8,
    keep_alive: bool,
    /// The request has a body (still unread): the client connection cannot be kept after a
    /// relayed answer.
    has_body: bool,
    head_method: bool,
    /// When the request's first byte came.
    started: Instant,
    deadline: Instant,
    /// The request's own deadline (`request_timeout_secs`), if earlier than the service's.
    request_deadline: Option<Instant>,
    /// `method host path` for the access log, when it is on.
    log: Option<String>,
    stage: Stage,
    conn: Option<Conn>,
    /// The connection came from the idle pool.
    reused: bool,
    /// The one retry on a fresh connection has been spent.
    stale_retry: bool,
    /// The sub-request, kept whole for that retry.
    out: Buf,
    sent: usize,
    answer: Option<Buf>,
    scan: HeadScan,
    head: Option<AnswerHead>,
    body: BodyState,
    /// Bytes of `answer` accounted for (head, then body as framed).
    fed: usize,
    eof: bool,
}

/// Why the auth service failed, in the words of the 503's body.
type Why = &'static str;

impl AuthCheck {
    /// The check of `req` (routed by `plan`) by `service`, its sub-request written.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        service: &ForwardAuth,
        req: &RequestHead<'_, '_>,
        plan: &Plan,
        client: SocketAddr,
        trusted: bool,
        started: Instant,
        config: &Config,
        ctx: &mut Ctx,
    ) -> AuthCheck {
        let mut absolute = Buf::with_capacity(0);
        let host = match (req.target.host, req.host) {
            ("", h) => h.unwrap_or(""),
            _ => {
                rewrite::write_authority(&mut absolute, &req.target, Some(80));
                std::str::from_utf8(absolute.bytes()).unwrap_or("")
            }
        };
        let mut out = ctx.bufs.get();
        let _ = write!(
            out,
            "GET {} HTTP/1.1\r\nHost: {}\r\n",
            service.path, service.authority
        );
        crate::http::forwarded::auth_request_fields(
            &mut out,
            req,
            &service_uri(req),
            client.ip().to_canonical(),
            trusted,
            "http",
            host,
        );
        out.push(b"\r\n");
        let deadline = ctx.now + service.timeout;
        let request_deadline = config
            .limits
            .request_timeout
            .map(|rt| started + rt)
            .filter(|&d| d < deadline);
        AuthCheck {
            site: plan.site,
            route: plan.route,
            head_len: req.len,
            minor: req.minor,
            keep_alive: req.keep_alive,
            has_body: !BodyState::new(req.framing).is_done(),
            head_method: req.kind == MethodKind::Head,
            started,
            deadline: request_deadline.unwrap_or(deadline),
            request_deadline,
            log: config
                .access_log
                .then(|| format!("{} {} {}", req.method, host_or_dash(host), req.target.path)),
            stage: Stage::Resolving,
            conn: None,
            reused: false,
            stale_retry: false,
            out,
            sent: 0,
            answer: None,
            scan: HeadScan::default(),
            head: None,
            body: BodyState::new(Framing::None),
            fed: 0,
            eof: false,
        }
    }

    /// True while the check waits for the addresses of `host`.
    pub(super) fn is_resolving(&self, host: &str, config: &Config) -> bool {
        matches!(self.stage, Stage::Resolving)
            && service(config, self.site).is_some_and(|s| s.host == host)
    }

    /// The session's server connection, if the check has one.
    pub(super) fn conn_mut(&mut self) -> Option<&mut Conn> {
        self.conn.as_mut()
    }

    /// Nothing of an answer has come on this connection.
    fn nothing_back(&self) -> bool {
        self.head.is_none() && self.answer.as_ref().is_none_or(|b| b.is_empty())
    }

    /// Forgets the connection and whatever came on it, for a fresh attempt.
    fn reset(&mut self, ctx: &mut Ctx) {
        if let Some(mut c) = self.conn.take() {
            let _ = ctx.registry.deregister(&mut c.stream);
        }
        if let Some(b) = self.answer.take() {
            ctx.bufs.put(b);
        }
        self.stage = Stage::Resolving;
        self.sent = 0;
        self.scan = HeadScan::default();
        self.head = None;
        self.fed = 0;
        self.eof = false;
        self.reused = false;
    }

    /// Gives back the connection (closed) and the buffers.
    pub(super) fn release(mut self, ctx: &mut Ctx) {
        self.reset(ctx);
        ctx.bufs.put(self.out);
    }
}

/// The `X-Forwarded-Uri` the service judges: the path as routes are matched on it (DESIGN
/// §7.1: dot-segments removed, unreserved escapes decoded, `//` merged, path parameters left
/// out, so `/x/../admin`, `/%61dmin` and `/admin;x` are all `/admin`), before any
/// `strip_prefix`, with the query as it came. Told the raw target instead, a service with
/// path rules (Authelia's, oauth2-proxy's) would judge one path while the backend serves
/// another.
fn service_uri(req: &RequestHead<'_, '_>) -> String {
    let path = req.target.path;
    if path.is_empty() {
        return if req.method == "OPTIONS" { "*" } else { "/" }.to_string();
    }
    let rooted = match path.starts_with('/') {
        true => std::borrow::Cow::Borrowed(path),
        false => std::borrow::Cow::Owned(format!("/{path}")),
    };
    let mut normal = String::with_capacity(rooted.len());
    // Routing normalized this very target already (it answers 400 when it cannot): an error
    // cannot happen here; the target as it came would be the fallback.
    if crate::route::path::normalize_path(&rooted, &mut normal).is_err() {
        return rooted.into_owned();
    }
    let (path, query) = normal.split_at(normal.find('?').unwrap_or(normal.len()));
    let mut plain = String::new();
    let mut uri = crate::route::path::without_params(path, &mut plain).to_string();
    uri.push_str(query);
    uri
}

/// The auth service of site `site`, if it has one.
fn service(config: &Config, site: usize) -> Option<&ForwardAuth> {
    match &config.reverse.as_ref()?.sites.get(site)?.auth {
        Some(SiteAuth::Forward(s)) => Some(s),
        _ => None,
    }
}

impl Session {
    /// Enters `Phase::Auth` for the head at the front of `cin` and starts its sub-request.
    pub(super) fn begin_auth(&mut self, check: AuthCheck, ctx: &mut Ctx) -> Result<(), Fail> {
        // The auth connection takes the server token (a reverse session has no server now).
        self.drop_server(ctx);
        self.deadline = check.deadline;
        self.phase = Phase::Auth(Box::new(check));
        self.auth_connect(ctx)
    }

    /// Reuses an idle connection to the service, or resolves and connects.
    fn auth_connect(&mut self, ctx: &mut Ctx) -> Result<(), Fail> {
        let config = self.config.clone();
        let Phase::Auth(a) = &mut self.phase else {
            return Err(Fail::Abort);
        };
        let Some(svc) = service(&config, a.site) else {
            return Err(Fail::Abort);
        };
        // After a stale pooled connection, a fresh one.
        let idle = match a.stale_retry {
            true => None,
            false => ctx.idle.take(&svc.pool_key),
        };
        // Auth services speak plain HTTP (their TLS state is always `None`).
        if let Some((mut stream, _)) = idle {
            if ctx
                .registry
                .register(
                    &mut stream,
                    token(self.slot, Side::Server),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_ok()
            {
                let mut conn = Conn::new(stream);
                conn.writable = true;
                a.conn = Some(conn);
                a.reused = true;
                a.stage = Stage::Connected;
                return Ok(());
            }
        }
        if let Some(addr) = resolve::literal(&svc.host, svc.port) {
            return self.auth_connect_to(vec![addr], 0, ctx);
        }
        match ctx.dns.get(&svc.host, svc.port, ctx.now) {
            Some(Ok(addrs)) => return self.auth_connect_to(addrs, 0, ctx),
            Some(Err(_)) => return Err(self.auth_failed("cannot be resolved", ctx)),
            None => {}
        }
        if ctx.dns.wait_for(&svc.host, self.slot, self.generation) {
            let asker = Asker {
                worker: ctx.worker,
                slot: self.slot,
                generation: self.generation,
            };
            ctx.resolver.ask(asker, &svc.host, a.deadline);
        }
        a.stage = Stage::Resolving;
        Ok(())
    }

    /// A resolver answered the service's name.
    pub(super) fn auth_resolved(
        &mut self,
        r: Result<Vec<std::net::IpAddr>, String>,
        abandoned: bool,
        ctx: &mut Ctx,
    ) -> Step {
        let port = match &self.phase {
            Phase::Auth(a) => service(&self.config, a.site).map_or(0, |s| s.port),
            _ => return Step::Wait,
        };
        let result = match r {
            Ok(ips) if !ips.is_empty() => {
                let addrs = ips.into_iter().map(|ip| SocketAddr::new(ip, port));
                self.auth_connect_to(addrs.collect(), 0, ctx)
            }
            // No resolver thread was free in time: says nothing of the name, still no access.
            _ if abandoned => Err(self.auth_failed("could not be looked up in time", ctx)),
            _ => Err(self.auth_failed("cannot be resolved", ctx)),
        };
        match self.settle(result.map(|_| true), ctx) {
            Step::Wait | Step::Again => self.drive(ctx),
            s => s,
        }
    }

    /// Starts a non-blocking connect to `addrs[next..]`, each in turn until one starts.
    fn auth_connect_to(
        &mut self,
        addrs: Vec<SocketAddr>,
        mut next: usize,
        ctx: &mut Ctx,
    ) -> Result<(), Fail> {
        if next == 0
            && addrs
                .iter()
                .any(|&a| crate::access::is_self(a, &ctx.listening, &self.config, &ctx.shared))
        {
            // A service that is ferry itself would ask itself again for each request.
            return Err(self.auth_failed("is this proxy itself", ctx));
        }
        let Some(pending) = PendingConnect::try_new(&ctx.connecting, self.peer.ip()) else {
            return Err(self.auth_failed(
                "cannot be reached now: too many connections being opened",
                ctx,
            ));
        };
        while next < addrs.len() {
            let addr = addrs[next];
            next += 1;
            let mut stream = match TcpStream::connect(addr) {
                Ok(s) => s,
                Err(e) => {
                    log::debug!("{}: connect to auth service {addr} failed: {e}", self.peer);
                    continue;
                }
            };
            let tok = token(self.slot, Side::Server);
            if let Err(e) =
                ctx.registry
                    .register(&mut stream, tok, Interest::READABLE | Interest::WRITABLE)
            {
                log::warn!("cannot register a connection: {e}");
                continue;
            }
            if let Phase::Auth(a) = &mut self.phase {
                a.conn = Some(Conn::new(stream));
                a.stage = Stage::Connecting {
                    addrs,
                    next,
                    _pending: pending,
                };
            }
            return Ok(());
        }
        Err(self.auth_failed("cannot be reached", ctx))
    }

    /// Does what the readiness allows: finish connecting, send, read, and act on a whole
    /// answer.
    pub(super) fn drive_auth(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let mut progress = self.flush_client(ctx)?;
        let Phase::Auth(a) = &mut self.phase else {
            return Ok(true);
        };
        if let Stage::Connecting { .. } = a.stage {
            let Some(c) = a.conn.as_mut() else {
                return Err(Fail::Abort);
            };
            match c.connect_outcome() {
                None => return Ok(progress),
                Some(Ok(())) => {
                    let _ = c.stream.set_nodelay(true);
                    a.stage = Stage::Connected;
                    progress = true;
                }
                Some(Err(e)) => {
                    log::debug!("{}: connect to the auth service failed: {e}", self.peer);
                    let Stage::Connecting { addrs, next, .. } =
                        mem::replace(&mut a.stage, Stage::Resolving)
                    else {
                        return Err(Fail::Abort);
                    };
                    a.reset(ctx);
                    self.auth_connect_to(addrs, next, ctx)?;
                    return Ok(true);
                }
            }
        }
        if !matches!(a.stage, Stage::Connected) {
            return Ok(progress);
        }
        let Some(c) = a.conn.as_mut() else {
            return Err(Fail::Abort);
        };
        if a.sent < a.out.len() && c.writable {
            let (n, io) = c.write_slice(&a.out.bytes()[a.sent..]);
            a.sent += n;
            progress |= n > 0;
            if let Io::Error(_) = io {
                return self.auth_broken(ctx);
            }
        }
        // Read while the socket has bytes and the answer has room (it may grow to the limit).
        while c.readable && !a.eof {
            let b = ctx.bufs.fill(&mut a.answer);
            if b.room() == 0 {
                if b.capacity() >= MAX_ANSWER {
                    break;
                }
                b.grow_to(MAX_ANSWER);
            }
            let (n, io) = c.read_into(b);
            progress |= n > 0;
            match io {
                Io::Closed => a.eof = true,
                Io::Error(_) => return self.auth_broken(ctx),
                Io::WouldBlock => break,
                Io::Continue => {}
            }
        }
        match a.examine() {
            Ok(false) => Ok(progress),
            Ok(true) => self.auth_answered(ctx),
            Err(_) if a.reused && !a.stale_retry && a.nothing_back() => self.auth_broken(ctx),
            Err(why) => Err(self.auth_failed(why, ctx)),
        }
    }

    /// The connection to the service broke. A pooled one that dies before any answer byte
    /// was most likely closed while idle: once more on a fresh connection (a GET may be
    /// sent again). Otherwise: 503.
    fn auth_broken(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let Phase::Auth(a) = &mut self.phase else {
            return Err(Fail::Abort);
        };
        if a.reused && !a.stale_retry && a.nothing_back() {
            a.stale_retry = true;
            a.reset(ctx);
            self.auth_connect(ctx)?;
            return Ok(true);
        }
        Err(self.auth_failed("broke the connection", ctx))
    }

    /// The service's timer fired: 503, or 504 when it is the request's own time that ran out.
    pub(super) fn auth_timeout(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let Phase::Auth(a) = &self.phase else {
            return Err(Fail::Abort);
        };
        if a.request_deadline.is_some_and(|d| ctx.now >= d) {
            let (site, route, started) = (a.site, a.route, a.started);
            let took = ctx.now.saturating_duration_since(started);
            let place = Place {
                site: Some(site),
                route: Some(route),
            };
            crate::metrics::site_answered(&self.config, place, ctx.worker, 504, took);
            return Err(Fail::Refuse(Refusal::new(
                504,
                "the request took longer than request_timeout_secs",
            )));
        }
        Err(self.auth_failed("did not answer in time", ctx))
    }

    /// Counts the 503 that an auth service's failure gives, and makes it.
    fn auth_failed(&mut self, why: &str, ctx: &mut Ctx) -> Fail {
        let Phase::Auth(a) = &self.phase else {
            return Fail::Abort;
        };
        let took = ctx.now.saturating_duration_since(a.started);
        let place = Place {
            site: Some(a.site),
            route: Some(a.route),
        };
        crate::metrics::site_answered(&self.config, place, ctx.worker, 503, took);
        let rev = self.config.reverse.as_ref();
        let site = rev.map_or("", |r| r.sites[a.site].name.as_str());
        let url = service(&self.config, a.site).map_or("", |s| s.url.as_str());
        log::debug!("{}: site {site}: auth service {url} {why}", self.peer);
        Fail::Refuse(Refusal::new(
            503,
            format!("site {site}: the auth service {url} {why}"),
        ))
    }
}
