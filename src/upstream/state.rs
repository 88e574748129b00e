//! The state of one upstream proxy that every worker and the control thread share: online or
//! not, consecutive failures and probe successes, latency EMA, active connections, and
//! per-worker request/failure counters. All atomics of at most 32 bits (32-bit MIPS has no
//! 64-bit atomics); no lock. The same `Arc` is carried across reloads by URL.

use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Marks "no latency sample yet".
const NO_SAMPLE: u32 = u32::MAX;

/// `flags`: health says it may serve.
const ONLINE: u8 = 1;
/// `flags`: taken out for maintenance through the API (`.../dead`): no new requests, whatever
/// health says, until `.../alive`.
const DRAINING: u8 = 2;

/// A counter on its own cache line, so workers bumping their own do not contend.
#[repr(align(64))]
#[derive(Default)]
pub struct Padded(pub AtomicUsize);

/// Shared state of one upstream.
pub struct UpstreamState {
    /// The URL with the password masked, for logs.
    pub name: String,
    /// "upstream" or "server", for logs.
    kind: &'static str,
    /// `ONLINE` and `DRAINING` in one atomic, so that selection tells "may take a request"
    /// with one load.
    flags: AtomicU8,
    consecutive_failures: AtomicU32,
    consecutive_successes: AtomicU32,
    latency_ema_ms: AtomicU32,
    active: AtomicU32,
    /// When it last went offline (its circuit opened), in `now_ms` time.
    opened_at: AtomicU32,
    /// Half-open trial requests in flight.
    trials: AtomicU32,
    requests: Box<[Padded]>,
    failures: Box<[Padded]>,
    /// Why the last failure happened, for `/status`. Written only when something fails,
    /// never on a request's success path.
    last_failure: Mutex<String>,
}

impl UpstreamState {
    /// A new upstream starts online.
    pub fn new(name: String, workers: usize) -> Arc<UpstreamState> {
        Self::of_kind("upstream", name, workers)
    }

    /// A backend's server (named `url` of backend `backend` in logs); starts online.
    pub fn server(backend: &str, url: &str, workers: usize) -> Arc<UpstreamState> {
        Self::of_kind("server", format!("{url} (backend {backend})"), workers)
    }

    fn of_kind(kind: &'static str, name: String, workers: usize) -> Arc<UpstreamState> {
        let counters = |n: usize| {
            (0..n.max(1))
                .map(|_| Padded::default())
                .collect::<Vec<_>>()
                .into_boxed_slice()
        };
        Arc::new(UpstreamState {
            name,
            kind,
            flags: AtomicU8::new(ONLINE),
            consecutive_failures: AtomicU32::new(0),
            consecutive_successes: AtomicU32::new(0),
            latency_ema_ms: AtomicU32::new(NO_SAMPLE),
            active: AtomicU32::new(0),
            opened_at: AtomicU32::new(0),
            trials: AtomicU32::new(0),
            requests: counters(workers),
            failures: counters(workers),
            last_failure: Mutex::new(String::new()),
        })
    }

    pub fn is_online(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & ONLINE != 0
    }

    /// True when selection may give it a new request: online and not draining (one load).
    pub fn is_selectable(&self) -> bool {
        self.flags.load(Ordering::Relaxed) == ONLINE
    }

    /// True while it is taken out for maintenance (`.../dead`).
    pub fn is_draining(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & DRAINING != 0
    }

    /// Takes it out for maintenance (true) or gives it back to health handling (false):
    /// requests in flight finish either way. Returns the previous setting.
    pub fn set_draining(&self, on: bool) -> bool {
        let was = if on {
            self.flags.fetch_or(DRAINING, Ordering::Relaxed)
        } else {
            self.flags.fetch_and(!DRAINING, Ordering::Relaxed)
        };
        was & DRAINING != 0
    }

    /// Sets `ONLINE`; true when it was off.
    fn go_online(&self) -> bool {
        self.flags.fetch_or(ONLINE, Ordering::Relaxed) & ONLINE == 0
    }

    /// Clears `ONLINE`; true when it was on.
    fn go_offline(&self) -> bool {
        self.flags.fetch_and(!ONLINE, Ordering::Relaxed) & ONLINE != 0
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// Latency EMA in ms (0 before the first sample).
    pub fn latency_ms(&self) -> u32 {
        match self.latency_ema_ms.load(Ordering::Relaxed) {
            NO_SAMPLE => 0,
            v => v,
        }
    }

    /// Connections in use now (requests and tunnels through it).
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// Requests sent to it, summed over workers.
    pub fn requests(&self) -> usize {
        self.requests
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .sum()
    }

    /// Failed attempts, summed over workers.
    pub fn failures(&self) -> usize {
        self.failures
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .sum()
    }

    /// The reason of the last failure (empty before any).
    pub fn last_failure(&self) -> String {
        self.last_failure
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Counts one use and holds an active connection until the guard drops.
    pub fn begin(self: &Arc<Self>, worker: usize) -> ActiveGuard {
        if let Some(c) = self.requests.get(worker) {
            c.0.fetch_add(1, Ordering::Relaxed);
        }
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self.clone(), false)
    }

    /// The circuit as `/status` and the metric show it (DESIGN §7.4).
    pub fn circuit(&self) -> Circuit {
        match (self.is_online(), self.trials.load(Ordering::Relaxed)) {
            (true, _) => Circuit::Closed,
            (false, 0) => Circuit::Open,
            (false, _) => Circuit::HalfOpen,
        }
    }

    /// True when `breaker` lets a trial request through this offline server now (no slot
    /// is taken: see `begin_trial`). A draining server takes no trial either.
    pub fn trial_ready(&self, breaker: &crate::config::Breaker) -> bool {
        self.flags.load(Ordering::Relaxed) == 0
            && self.open_for() >= breaker.open.as_millis().min(u32::MAX as u128 / 2) as u32
            && self.trials.load(Ordering::Relaxed) < breaker.half_open
    }

    /// Milliseconds since its circuit opened.
    fn open_for(&self) -> u32 {
        super::now_ms().wrapping_sub(self.opened_at.load(Ordering::Relaxed))
    }

    /// Takes one of the half-open circuit's trial slots (across all workers), for a request
    /// about to be sent: the guard of the attempt gives it back. False when none is left.
    pub fn begin_trial(
        self: &Arc<Self>,
        breaker: &crate::config::Breaker,
        worker: usize,
    ) -> Option<ActiveGuard> {
        if !self.trial_ready(breaker) {
            return None;
        }
        let took = self
            .trials
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < breaker.half_open).then_some(n + 1)
            })
            .is_ok();
        if !took {
            return None;
        }
        if self.trials.load(Ordering::Relaxed) == 1 {
            log::info!(
                "server {} is half-open: a trial request goes through",
                self.name
            );
        }
        let mut g = self.begin(worker);
        g.1 = true;
        Some(g)
    }

    /// A response head (or CONNECT 2xx) arrived after `ms`: the upstream works. The EMA has
    /// α = 0.25 and is fed only this time, never a tunnel's lifetime.
    pub fn passive_success(&self, ms: u32) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        if !self.is_online() && self.trials.load(Ordering::Relaxed) > 0 {
            // A half-open circuit's trial went through: closed again.
            if self.go_online() {
                log::info!(
                    "{} {} is online again: its circuit closed after a good trial request",
                    self.kind,
                    self.name
                );
            }
        }
        let ms = ms.min(NO_SAMPLE - 1);
        // A bounded CAS loop: lost races just retry with the newer value.
        let mut cur = self.latency_ema_ms.load(Ordering::Relaxed);
        for _ in 0..8 {
            let next = if cur == NO_SAMPLE {
                ms
            } else {
                ((cur as u64 * 3 + ms as u64) / 4) as u32
            };
            match self.latency_ema_ms.compare_exchange_weak(
                cur,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(v) => cur = v,
            }
        }
    }

    /// An attempt through it failed for a reason that is the upstream's; after `fall`
    /// consecutive failures it goes offline. Returns true when this call took it offline.
    pub fn passive_failure(&self, worker: usize, fall: u32, why: &str) -> bool {
        if let Some(c) = self.failures.get(worker) {
            c.0.fetch_add(1, Ordering::Relaxed);
        }
        if !self.is_online() && self.trials.load(Ordering::Relaxed) > 0 {
            // A half-open circuit's trial failed: open again, for another `open_secs`.
            self.opened_at.store(super::now_ms(), Ordering::Relaxed);
            if let Ok(mut last) = self.last_failure.lock() {
                last.clear();
                last.push_str(why);
            }
            log::warn!(
                "{} {}: the trial request failed; its circuit is open again (last: {why})",
                self.kind,
                self.name
            );
            return false;
        }
        self.count_failure(fall, "consecutive failures", why)
    }

    /// The result of one active probe; `rise` successes bring an offline upstream back,
    /// `fall` failures take an online one out (when online upstreams are probed).
    pub fn probe_result(&self, ok: bool, rise: u32, fall: u32, why: &str) {
        if !ok {
            self.count_failure(fall, "failed probes", why);
            return;
        }
        let n = self
            .consecutive_successes
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        if n >= rise && self.go_online() {
            log::info!(
                "{} {} is online again ({n} good probes)",
                self.kind,
                self.name
            );
        }
    }

    /// One more failure in a row; the `fall`-th takes the upstream offline (true then).
    fn count_failure(&self, fall: u32, what: &str, why: &str) -> bool {
        if let Ok(mut last) = self.last_failure.lock() {
            last.clear();
            last.push_str(why);
        }
        self.consecutive_successes.store(0, Ordering::Relaxed);
        let n = self
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if n >= fall && self.go_offline() {
            self.opened_at.store(super::now_ms(), Ordering::Relaxed);
            log::warn!(
                "{} {} is offline after {n} {what} (last: {why})",
                self.kind,
                self.name
            );
            return true;
        }
        false
    }
}

/// Where a server's circuit stands (DESIGN §7.3): the numbers are the metric's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl Circuit {
    /// The word `/status` uses.
    pub fn name(self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::Open => "open",
            Circuit::HalfOpen => "half_open",
        }
    }
}

/// Holds one active connection of an upstream (and, when `.1`, a half-open trial slot);
/// dropping it (on every path: success, error, timeout, panic unwinding) gives them back, so
/// the counts cannot get stuck.
pub struct ActiveGuard(Arc<UpstreamState>, bool);

impl ActiveGuard {
    pub fn state(&self) -> &Arc<UpstreamState> {
        &self.0
    }

    /// Gives back the half-open trial slot it holds, if any, keeping the active count: the
    /// trial's verdict is in once its response head came (the circuit closed or opened again
    /// by then), and a long response (a download, an event stream, a WebSocket) must not keep
    /// the slot, or a circuit that opens again meanwhile could send no trial until it ends.
    pub fn end_trial(&mut self) {
        if std::mem::take(&mut self.1) {
            let _ = self
                .0
                .trials
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.end_trial();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_starts_at_the_first_sample_and_moves_a_quarter() {
        let s = UpstreamState::new("u".into(), 1);
        assert_eq!(s.latency_ms(), 0);
        s.passive_success(100);
        assert_eq!(s.latency_ms(), 100);
        s.passive_success(0);
        assert_eq!(s.latency_ms(), 75);
    }

    #[test]
    fn fall_and_rise_hysteresis() {
        let s = UpstreamState::new("u".into(), 2);
        assert!(!s.passive_failure(0, 2, "x"));
        assert!(s.is_online());
        assert!(s.passive_failure(1, 2, "x"));
        assert!(!s.is_online());
        assert_eq!(s.failures(), 2);
        s.probe_result(true, 2, 2, "");
        assert!(!s.is_online());
        s.probe_result(false, 2, 2, "503");
        s.probe_result(true, 2, 2, "");
        assert!(!s.is_online());
        s.probe_result(true, 2, 2, "");
        assert!(s.is_online());
    }

    #[test]
    fn draining_is_apart_from_health_and_ends_on_alive() {
        let s = UpstreamState::new("u".into(), 1);
        assert!(s.is_selectable());
        assert!(!s.set_draining(true));
        assert!((s.is_online(), s.is_selectable(), s.is_draining()) == (true, false, true));
        // Health still moves underneath: fall and rise do not end the drain.
        assert!(s.passive_failure(0, 1, "x"));
        s.probe_result(true, 1, 1, "");
        assert!(s.is_online() && !s.is_selectable());
        assert!(s.set_draining(false));
        assert!(s.is_selectable() && !s.is_draining());
    }

    #[test]
    fn a_draining_server_gets_no_trial_request() {
        let s = UpstreamState::server("web", "http://a:1", 1);
        let breaker = crate::config::Breaker {
            failures: 1,
            open: std::time::Duration::from_secs(1),
            half_open: 1,
        };
        assert!(s.passive_failure(0, 1, "x"));
        // Its circuit opened long enough ago to be half-open.
        s.opened_at
            .store(super::super::now_ms().wrapping_sub(5000), Ordering::Relaxed);
        assert!(s.trial_ready(&breaker));
        s.set_draining(true);
        assert!(!s.trial_ready(&breaker));
        assert!(s.begin_trial(&breaker, 0).is_none());
        s.set_draining(false);
        assert!(s.begin_trial(&breaker, 0).is_some());
    }

    #[test]
    fn guards_return_active_connections() {
        let s = UpstreamState::new("u".into(), 1);
        let a = s.begin(0);
        let b = s.begin(0);
        assert_eq!((s.active(), s.requests()), (2, 2));
        drop(a);
        drop(b);
        assert_eq!(s.active(), 0);
    }
}
