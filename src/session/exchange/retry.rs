//! A reverse request's failed attempt made again (DESIGN §7.3): when the failure is one the
//! backend's `retries.on` names, the request can be replayed (the forward role's rule:
//! nothing of it sent, or an idempotent method and no body byte sent, and nothing of the
//! response reached the client), attempts are left and the backend's retry budget has room.
//! The next attempt prefers a server not tried yet, waits a full-jitter backoff as a session
//! timer (the worker never sleeps), and a response being retried (a 502-504 the backend
//! retries on) is dropped with its connection, never relayed and never reused half-read.

use super::*;
use std::time::Duration;

impl Exchange {
    /// The server the next attempt goes to (with its half-open trial slot, if any), when the
    /// failed one may be made again after a failure of kind `cond`. Takes a retry from the
    /// backend's budget.
    pub(super) fn next_server(
        &mut self,
        config: &Config,
        cond: RetryOn,
        ctx: &mut Ctx,
    ) -> Option<(usize, Option<ActiveGuard>)> {
        let Route::Server { backend, .. } = self.route else {
            return None;
        };
        let b = config.reverse.as_ref()?.backends.get(backend)?;
        if !b.retries.on.has(cond) || !self.replayable() || self.tried.len() >= b.pool.retries {
            return None;
        }
        // The budget is looked at before the pick: picking a half-open server takes its
        // trial slot and counts a request on it, which a retry the budget then refused
        // would never send.
        if !b.shared.has_retry(b.retries.budget_percent) {
            log::debug!("backend {}: the retry budget is spent", b.name);
            return None;
        }
        let key = self.served.as_ref().map_or(&[][..], |s| &s.hash_key[..]);
        // Another server if one is there, else the same one again (a lone server restarting).
        let next = ctx
            .select
            .pick_server(&b.pool, key, &self.tried, ctx.worker)
            .or_else(|| ctx.select.pick_server(&b.pool, key, &[], ctx.worker))?;
        // Taken only once there is a server to go to; another worker may have taken the
        // last retry meanwhile (rare: the pick's trial slot, if any, is then given back).
        if !b.shared.take_retry(b.retries.budget_percent) {
            log::debug!("backend {}: the retry budget is spent", b.name);
            return None;
        }
        Some(next)
    }
}

impl Session {
    /// A reverse request's attempt failed before anything reached the client: counted
    /// against its server (`blame`), then made again when `next_server` allows, else the
    /// client gets 502 (504 for a timeout) naming the site, route and server.
    pub(super) fn retry_server(
        &mut self,
        why: &'static str,
        blame: bool,
        cond: RetryOn,
        ctx: &mut Ctx,
    ) -> Result<bool, Fail> {
        let config = self.config.clone();
        let Phase::Exchange(ex) = &mut self.phase else {
            return Err(Fail::Abort);
        };
        let Some((pool, member)) = ex.pool(&config) else {
            return Err(Fail::Refuse(Refusal::new(502, why)));
        };
        if blame {
            let state = &pool.members[member].state;
            state.passive_failure(ctx.worker, pool.passive_fall(), why);
        }
        ex.guard = None;
        if let Some(next) = ex.next_server(&config, cond, ctx) {
            log::debug!(
                "{}: {why} ({}); trying {}",
                self.peer,
                pool.members[member].display(),
                pool.members[next.0].display()
            );
            self.start_next(next, ctx)?;
            return Ok(true);
        }
        let n = ex.tried.len();
        let url = &pool.members[member].config_url;
        let names = ex.served().map(|s| s.names(&config)).unwrap_or_default();
        let why = match n {
            1 => format!("{names}: server {url}: {why}"),
            _ => format!(
                "{names}: {n} attempts at backend {} failed; the last, at {url}: {why}",
                pool.name
            ),
        };
        let status = if cond == RetryOn::TIMEOUT { 504 } else { 502 };
        Err(Fail::Refuse(Refusal::new(status, why)))
    }

    /// Sends the request to `next` (a server and its trial slot): the head gets that
    /// server's `Host`, the failed attempt's connection and response are dropped, and after
    /// the backoff the attempt starts.
    pub(super) fn start_next(
        &mut self,
        (server, trial): (usize, Option<ActiveGuard>),
        ctx: &mut Ctx,
    ) -> Result<(), Fail> {
        let config = self.config.clone();
        let Phase::Exchange(ex) = &mut self.phase else {
            return Err(Fail::Abort);
        };
        let Route::Server { backend, .. } = ex.route else {
            return Err(Fail::Abort);
        };
        let Some(b) = config
            .reverse
            .as_ref()
            .and_then(|r| r.backends.get(backend))
        else {
            return Err(Fail::Abort);
        };
        ex.guard = None;
        ex.tried.push(server);
        ex.route = Route::Server { backend, server };
        if let (Some(h), Some(s)) = (ex.head.as_mut(), ex.served.as_ref()) {
            h.truncate(ex.head_base);
            crate::http::forwarded::finish(h, &s.sent_host(&config, ex.route));
        }
        ex.reset_attempt();
        ex.stale_retry = false;
        ex.trial = trial;
        let retry = ex.tried.len().saturating_sub(2) as u32;
        let r = &b.retries;
        let wait = backoff(r.backoff, r.backoff_max, retry, ctx.select.random());
        self.drop_server(ctx);
        if wait.is_zero() {
            self.begin_attempt(ctx);
            return self.resolve_and_connect(ctx);
        }
        if let Phase::Exchange(ex) = &mut self.phase {
            ex.stage = Stage::Backoff;
        }
        self.deadline = ctx.now + wait;
        ctx.wake_by(self.deadline);
        Ok(())
    }
}

/// Full-jitter exponential backoff: retry `n` (0 for the first) waits a uniformly random
/// time in `[0, min(max, base · 2^n)]`, drawn from `random`.
pub fn backoff(base: Duration, max: Duration, n: u32, random: u64) -> Duration {
    let ceiling = (base.as_millis() as u64)
        .saturating_mul(1u64 << n.min(30))
        .min(max.as_millis() as u64);
    Duration::from_millis(random % (ceiling + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_under_a_doubling_ceiling() {
        let ms = Duration::from_millis;
        let (base, max) = (ms(25), ms(1000));
        // The ceiling doubles and stops at max.
        for (n, ceiling) in [(0, 25), (1, 50), (2, 100), (5, 800), (6, 1000), (40, 1000)] {
            assert_eq!(
                backoff(base, max, n, u64::MAX),
                ms(u64::MAX % (ceiling + 1))
            );
            assert_eq!(backoff(base, max, n, ceiling), ms(ceiling), "{n}");
            assert_eq!(backoff(base, max, n, ceiling + 1), ms(0), "{n}");
        }
        // Spread: many draws cover the range.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut seen = [false; 4];
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = backoff(base, max, 2, x).as_millis() as usize;
            assert!(d <= 100);
            seen[d.min(99) / 25] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(backoff(ms(0), ms(0), 3, 12345), ms(0));
    }
}
