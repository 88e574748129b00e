//! What every worker shares about one backend: the retry budget (DESIGN §7.3). Retries may
//! add at most `budget_percent` of the backend's requests over the last 10 s, but at least 3
//! per window, so that when a backend is already failing, retries cannot multiply its load.
//!
//! The window is ten one-second buckets of 32-bit atomics, each tagged with the second it
//! counts; a bucket found holding an older second is claimed and emptied. No lock: two
//! workers racing over a bucket's turnover may lose a count or two, a small error either way
//! that a budget can live with.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Seconds the window spans.
const WINDOW: u32 = 10;
/// Retries a window always allows, however few requests it saw.
const MIN_RETRIES: u32 = 3;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Seconds since the process first asked (a clock all threads share).
pub fn now_secs() -> u32 {
    epoch().elapsed().as_secs() as u32
}

/// Milliseconds since the process first asked, wrapping after 49 days: compare two with
/// `wrapping_sub`, for spans much shorter than that.
pub fn now_ms() -> u32 {
    epoch().elapsed().as_millis() as u32
}

#[derive(Default)]
struct Bucket {
    /// The second it counts, plus one (0: never used).
    second: AtomicU32,
    requests: AtomicU32,
    retries: AtomicU32,
}

/// A backend's shared state.
#[derive(Default)]
pub struct BackendState {
    buckets: [Bucket; WINDOW as usize],
    /// Retries made, for `ferry_backend_retries_total` (wraps after 4 G, like a counter may).
    retried: AtomicU32,
}

impl std::fmt::Debug for BackendState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackendState(retried {})", self.retries())
    }
}

impl BackendState {
    pub fn new() -> Arc<BackendState> {
        Arc::new(BackendState::default())
    }

    /// The bucket of second `now`, emptied first if it still holds an older second.
    fn bucket(&self, now: u32) -> &Bucket {
        let b = &self.buckets[(now % WINDOW) as usize];
        let tag = now.wrapping_add(1);
        let seen = b.second.load(Ordering::Acquire);
        if seen != tag
            && b.second
                .compare_exchange(seen, tag, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            b.requests.store(0, Ordering::Relaxed);
            b.retries.store(0, Ordering::Relaxed);
        }
        b
    }

    /// Counts a request's first attempt.
    pub fn count_request(&self) {
        self.count_request_at(now_secs());
    }

    /// Takes a retry out of the budget of `percent`; false when the window has none left.
    pub fn take_retry(&self, percent: u32) -> bool {
        self.take_retry_at(percent, now_secs())
    }

    /// True when the window has a retry left for `percent`; none is taken (`take_retry`
    /// does), so that a retry with nowhere to go costs nothing.
    pub fn has_retry(&self, percent: u32) -> bool {
        self.has_retry_at(percent, now_secs())
    }

    fn count_request_at(&self, now: u32) {
        self.bucket(now).requests.fetch_add(1, Ordering::Relaxed);
    }

    fn has_retry_at(&self, percent: u32, now: u32) -> bool {
        let (requests, retries) = self.window(now);
        let allowed = (requests as u64 * percent as u64 / 100).max(MIN_RETRIES as u64);
        (retries as u64) < allowed
    }

    fn take_retry_at(&self, percent: u32, now: u32) -> bool {
        if !self.has_retry_at(percent, now) {
            return false;
        }
        self.bucket(now).retries.fetch_add(1, Ordering::Relaxed);
        self.retried.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Requests and retries over the seconds `now - 9 ..= now`.
    fn window(&self, now: u32) -> (u32, u32) {
        let mut sum = (0u32, 0u32);
        for b in &self.buckets {
            let tag = b.second.load(Ordering::Acquire);
            let age = now.wrapping_add(1).wrapping_sub(tag);
            if tag != 0 && age < WINDOW {
                sum.0 = sum.0.saturating_add(b.requests.load(Ordering::Relaxed));
                sum.1 = sum.1.saturating_add(b.retries.load(Ordering::Relaxed));
            }
        }
        sum
    }

    /// Retries made since start.
    pub fn retries(&self) -> u32 {
        self.retried.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_its_share_and_at_least_three() {
        let s = BackendState::default();
        // No traffic: three retries, then none.
        assert!(s.has_retry_at(20, 100));
        assert!((0..3).all(|_| s.take_retry_at(20, 100)));
        assert!(!s.has_retry_at(20, 100));
        assert!(!s.take_retry_at(20, 100));
        // 100 requests at 20 %: 20 retries in the window, these 3 included.
        for _ in 0..100 {
            s.count_request_at(101);
        }
        assert_eq!((0..30).filter(|_| s.take_retry_at(20, 102)).count(), 17);
        assert_eq!(s.retries(), 20);
    }

    #[test]
    fn the_window_slides_by_the_second() {
        let s = BackendState::default();
        for _ in 0..50 {
            s.count_request_at(200);
        }
        assert_eq!(s.window(200), (50, 0));
        assert_eq!(s.window(209), (50, 0));
        // Ten seconds on, second 200 has left the window.
        assert_eq!(s.window(210), (0, 0));
        for _ in 0..5 {
            assert!(s.take_retry_at(100, 209));
        }
        // Its bucket is reused by second 210 and starts empty.
        s.count_request_at(210);
        assert_eq!(s.window(210), (1, 5));
        assert_eq!(s.window(219), (1, 0));
    }
}
