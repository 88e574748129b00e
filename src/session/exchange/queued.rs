//! A reverse request and its backend's queue (DESIGN §7.3; the shared state is
//! `upstream::queue`). Before its first attempt a request takes one of the backend's slots,
//! and holds it until the exchange ends: its response relayed whole, ferry's own reply, the
//! client gone, or a 101 (the tunnel that follows holds its server's `active` count, not a
//! slot: a long-lived WebSocket must not keep the backend's requests waiting). Retries keep
//! the slot: they are the same request.
//!
//! ```text
//! begin_exchange ─► take_backend_slot ─┬─ Go ─────────────────────────► connect or reuse ...
//!                                      ├─ Full ─► 503 + Retry-After
//!                                      └─ Wait ─► Stage::Queued ─┬─ Turn (any worker's
//!                                                                │  request ended) ─► pick a
//!                                                                │  server again ─► begin_exchange
//!                                                                ├─ timeout_secs ─► 503 + Retry-After
//!                                                                └─ client closed ─► gone
//! ```
//!
//! While queued, the request holds its rendered head and no backend connection and no
//! request-body buffer: nothing is read from the client (its body waits in the kernel), only
//! its leaving is watched. A client that closes its sending side while its request waits is
//! taken as gone, as HAProxy's `option abortonclose` does: it cannot be told from one that
//! hung up.

use super::*;
use crate::upstream::queue::{Admission, Turn, Where};

impl Session {
    /// Takes a slot of the backend for a reverse request before its first attempt: the
    /// exchange back when it may go on (it holds the slot), `None` when it now waits in the
    /// queue (the session holds it in `Stage::Queued`), a 503 when the queue is full.
    pub(super) fn take_backend_slot(
        &mut self,
        mut ex: Exchange,
        ctx: &mut Ctx,
    ) -> Result<Option<Exchange>, Fail> {
        let Route::Server { backend, .. } = ex.route else {
            return Ok(Some(ex));
        };
        if ex.slot.is_some() {
            return Ok(Some(ex));
        }
        // Borrowed from the snapshot (no `Arc` clone on the fast path); only other fields of
        // the session change below.
        let Some(b) = self
            .config
            .reverse
            .as_ref()
            .and_then(|r| r.backends.get(backend))
        else {
            return Ok(Some(ex));
        };
        let (slot, generation) = (self.slot, self.generation);
        let at = || Where {
            mailbox: ctx.mailbox.clone(),
            slot,
            generation,
        };
        match b.queue.state.enter(ctx.worker, at) {
            Admission::Go(s) => {
                ex.slot = Some(s);
                Ok(Some(ex))
            }
            Admission::Wait(ticket) => {
                log::debug!(
                    "{}: waits in backend {}'s queue ({} waiting)",
                    self.peer,
                    b.name,
                    b.queue.state.queued()
                );
                ex.stage = Stage::Queued(ticket);
                let mut deadline = ctx.now + b.queue.timeout;
                if let Some(rt) = self.config.limits.request_timeout {
                    deadline = deadline.min(ex.started + rt);
                }
                self.phase = Phase::Exchange(Box::new(ex));
                self.deadline = deadline;
                Ok(None)
            }
            Admission::Full => {
                let (max_active, max_queued) = b.queue.state.limits();
                let why = format!(
                    "{}: backend {}: {max_active} requests in flight and {max_queued} waiting already",
                    names(&ex, &self.config),
                    b.name
                );
                self.phase = Phase::Exchange(Box::new(ex));
                Err(Fail::Refuse(busy(why)))
            }
        }
    }

    /// While queued: writes what the client is still owed of earlier responses, and notices
    /// the client leaving (its ticket then leaves the queue as the exchange is dropped).
    pub(super) fn drive_queued(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let progress = self.flush_client(ctx)?;
        if self.client.read_closed || self.client_eof {
            log::debug!(
                "{}: the client left while its request was queued",
                self.peer
            );
            return Err(Fail::Abort);
        }
        Ok(progress)
    }

    /// The request waited `timeout_secs` without a slot, or its `request_timeout_secs` ran out
    /// first: 503 either way (the backend is busy), counted as a queue timeout.
    pub(super) fn queue_timed_out(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let Phase::Exchange(ex) = &self.phase else {
            return Err(Fail::Abort);
        };
        let Some((b, waited)) = backend_of(ex, &self.config) else {
            return Err(Fail::Abort);
        };
        b.queue.state.count_timeout(ctx.worker);
        let request_timeout = self
            .config
            .limits
            .request_timeout
            .filter(|rt| ctx.now >= ex.started + *rt);
        let why = match request_timeout {
            Some(rt) => format!(
                "{}: backend {}: no slot came free before the request timeout ({} s)",
                names(ex, &self.config),
                b.name,
                rt.as_secs()
            ),
            None => format!(
                "{}: backend {}: no slot came free within {} s",
                names(ex, &self.config),
                b.name,
                waited.as_secs()
            ),
        };
        Err(Fail::Refuse(busy(why)))
    }

    /// A worker's mailbox says a queued request was handed a slot: if it is this session's
    /// waiting request, it goes on (on this worker) with a server picked now.
    pub fn queue_turn(&mut self, turn: &Turn, ctx: &mut Ctx) -> Step {
        if self.generation != turn.generation {
            return Step::Wait;
        }
        let Phase::Exchange(ex) = &mut self.phase else {
            return Step::Wait;
        };
        if !matches!(&ex.stage, Stage::Queued(t) if t.is(turn)) {
            // A turn for a ticket that left (its slot was given back then).
            return Step::Wait;
        }
        if let Stage::Queued(t) = std::mem::replace(&mut ex.stage, Stage::Resolving) {
            ex.slot = Some(t.into_slot());
        }
        let r = self.leave_queue(ctx);
        match self.settle(r, ctx) {
            Step::Close => Step::Close,
            _ => self.drive(ctx),
        }
    }

    /// Starts the first attempt of a request that waited. The server picked when it came may
    /// be offline or at its `max_active` by now: one is picked again.
    fn leave_queue(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let config = self.config.clone();
        let Phase::Exchange(ex) = &mut self.phase else {
            return Err(Fail::Abort);
        };
        let (Route::Server { backend, .. }, Some(rev)) = (ex.route, config.reverse.as_ref()) else {
            return Err(Fail::Abort);
        };
        let (Some(b), Some(s)) = (rev.backends.get(backend), ex.served.as_ref()) else {
            return Err(Fail::Abort);
        };
        ex.trial = None; // a half-open server's slot is taken anew with the new pick
        let Some((server, trial)) = ctx
            .select
            .pick_server(&b.pool, &s.hash_key, &[], ctx.worker)
        else {
            let (site, route) = (&rev.sites[s.site], &rev.sites[s.site].routes[s.route]);
            return Err(Fail::Refuse(Refusal::servers_down(
                &site.name,
                &route.name,
                &b.name,
            )));
        };
        ex.aim_at(server, &config);
        ex.trial = trial;
        let Phase::Exchange(ex) = std::mem::replace(&mut self.phase, Phase::Head) else {
            return Err(Fail::Abort);
        };
        self.begin_exchange(*ex, ctx)?;
        Ok(true)
    }
}

impl Exchange {
    /// Sends a reverse request's first attempt to `server` of its backend instead of the one
    /// picked before: the route, the servers tried and the end of the head (its `Host`).
    fn aim_at(&mut self, server: usize, config: &Config) {
        let Route::Server {
            backend,
            server: was,
        } = self.route
        else {
            return;
        };
        if was == server {
            return;
        }
        self.route = Route::Server { backend, server };
        self.tried.clear();
        self.tried.push(server);
        if let (Some(h), Some(s)) = (self.head.as_mut(), self.served.as_ref()) {
            h.truncate(self.head_base);
            crate::http::forwarded::finish(h, &s.sent_host(config, self.route));
        }
    }
}

/// The backend of a reverse request, and how long its queue lets a request wait.
fn backend_of<'c>(
    ex: &Exchange,
    config: &'c Config,
) -> Option<(&'c crate::config::Backend, std::time::Duration)> {
    let Route::Server { backend, .. } = ex.route else {
        return None;
    };
    let b = config.reverse.as_ref()?.backends.get(backend)?;
    Some((b, b.queue.timeout))
}

/// "site S, route R" of a reverse request (its replies start with it).
fn names(ex: &Exchange, config: &Config) -> String {
    ex.served
        .as_ref()
        .map_or_else(String::new, |s| s.names(config))
}

/// 503 with `Retry-After`: the backend is busy, not the request wrong.
fn busy(why: String) -> Refusal {
    Refusal {
        retry_after: true,
        ..Refusal::new(503, why)
    }
}
