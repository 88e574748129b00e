//! Round-robin as one sequence for the whole process (DESIGN §5: N requests over equal
//! weights split exactly evenly, whichever workers they land on).
//!
//! Each `round_robin` pool, and each level of a `priority` pool, gets a `Rotation` when its
//! config snapshot is built: one whole cycle of smooth weighted round-robin (nginx's
//! algorithm: interleaved, never blocky) precomputed over its members, and a ticket counter
//! that every worker shares. A pick is a `fetch_add` on the ticket and an index into the
//! schedule: no lock, no allocation, no per-worker state, so consecutive requests take
//! consecutive slots wherever they run.
//!
//! A slot whose member is offline or already tried by this request is passed over by taking
//! the next ticket, so the members still eligible keep their order and their exact shares
//! among themselves. Failover is unchanged: it only ever asks for a member not yet tried.
//!
//! The cycle is Σweights/gcd slots long. Weights go up to 1000, so a pool of many heavy,
//! unequal members could need a long one: past `MAX_SCHEDULE` slots the weights are scaled
//! down (each kept at least 1) until the cycle fits, which keeps the split within one slot
//! per member per cycle of the configured ratio — exact-ish, and still interleaved. The
//! ticket is a `usize` that wraps (at 2³² on 32-bit targets); at the wrap one cycle may start
//! early, once per four billion requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The longest cycle precomputed: at 4 bytes a slot, 8 KiB at most per pool or level.
pub const MAX_SCHEDULE: usize = 2048;

/// One pool's (or priority level's) shared round-robin sequence.
pub struct Rotation {
    /// Member indexes (into the pool's `members`) in smooth-WRR order: one whole cycle.
    schedule: Box<[u32]>,
    /// The members it rotates over, each once.
    members: Box<[u32]>,
    /// The next slot, shared by every worker; kept across a reload that leaves the pool as it
    /// was.
    ticket: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Rotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rotation({} slots)", self.schedule.len())
    }
}

impl Rotation {
    /// The rotation over `members`, given as (index in the pool, weight). Weights of 0 count
    /// as 1.
    pub fn new(members: &[(usize, u32)]) -> Rotation {
        Rotation {
            schedule: schedule(members).into_boxed_slice(),
            members: members.iter().map(|&(i, _)| i as u32).collect(),
            ticket: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The next eligible member in the shared sequence, or None when `eligible` admits none of
    /// this rotation's members.
    pub fn pick(&self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.schedule.len();
        if !self.members.iter().any(|&m| eligible(m as usize)) {
            // Nothing to find: taking tickets would only shift the sequence for nothing.
            return None;
        }
        // Every slot passed over takes its ticket too, so a member offline just lends its
        // turns to the next ones in order, and the rest keep their exact shares.
        for _ in 0..len {
            let t = self.ticket.fetch_add(1, Ordering::Relaxed);
            let m = self.schedule[t % len] as usize;
            if eligible(m) {
                return Some(m);
            }
        }
        // Other workers took every eligible slot meanwhile (or they went offline): take the
        // next eligible one without a ticket rather than spin.
        let start = self.ticket.load(Ordering::Relaxed);
        (0..len)
            .map(|k| self.schedule[(start + k) % len] as usize)
            .find(|&m| eligible(m))
    }

    /// Shares `old`'s ticket when both have the same cycle, so a reload that left the pool as
    /// it was does not restart the sequence (which would favour the first members).
    pub fn continue_from(&mut self, old: &Rotation) {
        if self.schedule == old.schedule {
            self.ticket = Arc::clone(&old.ticket);
        }
    }

    /// The cycle, for tests.
    #[cfg(test)]
    fn cycle(&self) -> &[u32] {
        &self.schedule
    }
}

/// One cycle of smooth weighted round-robin over `members` (index, weight), scaled down to at
/// most `MAX_SCHEDULE` slots (plus one per member) when the exact cycle is longer.
fn schedule(members: &[(usize, u32)]) -> Vec<u32> {
    if members.is_empty() {
        return Vec::new();
    }
    let mut w: Vec<u64> = members.iter().map(|&(_, w)| w.max(1) as u64).collect();
    let total: u64 = w.iter().sum();
    if total / w.iter().copied().fold(0, gcd) > MAX_SCHEDULE as u64 {
        for x in &mut w {
            *x = (*x * MAX_SCHEDULE as u64 / total).max(1);
        }
    }
    let g = w.iter().copied().fold(0, gcd);
    for x in &mut w {
        *x /= g;
    }
    let len: u64 = w.iter().sum();
    let sum = len as i64;
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(len as usize);
    for _ in 0..len {
        let mut best = 0;
        for (k, c) in current.iter_mut().enumerate() {
            *c += w[k] as i64;
        }
        for k in 1..current.len() {
            if current[k] > current[best] {
                best = k;
            }
        }
        current[best] -= sum;
        out.push(members[best].0 as u32);
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(s: &[u32], m: u32) -> usize {
        s.iter().filter(|&&x| x == m).count()
    }

    #[test]
    fn the_cycle_is_smooth_wrr_reduced_by_the_gcd() {
        assert_eq!(Rotation::new(&[(0, 1), (1, 1)]).cycle(), [0, 1]);
        assert_eq!(Rotation::new(&[(0, 1), (1, 2)]).cycle(), [1, 0, 1]);
        assert_eq!(Rotation::new(&[(0, 10), (1, 20)]).cycle(), [1, 0, 1]);
        // nginx's example: weights 5, 1, 1 interleave as a a b a c a a
        assert_eq!(
            Rotation::new(&[(0, 5), (1, 1), (2, 1)]).cycle(),
            [0, 0, 1, 0, 2, 0, 0]
        );
        // indexes are the pool's, not positions in the list (a priority level)
        assert_eq!(Rotation::new(&[(3, 1), (7, 1)]).cycle(), [3, 7]);
        assert!(Rotation::new(&[]).pick(|_| true).is_none());
    }

    #[test]
    fn consecutive_picks_split_exactly_and_interleave() {
        let r = Rotation::new(&[(0, 1), (1, 2), (2, 3)]);
        let picks: Vec<usize> = (0..60).map(|_| r.pick(|_| true).unwrap()).collect();
        for w in picks.chunks(6) {
            assert_eq!(
                [0, 1, 2].map(|m| w.iter().filter(|&&p| p == m).count()),
                [1, 2, 3]
            );
        }
        assert!(
            picks.windows(3).all(|w| !(w[0] == w[1] && w[1] == w[2])),
            "{picks:?}"
        );
    }

    #[test]
    fn picks_from_many_threads_share_one_sequence() {
        let r = Arc::new(Rotation::new(&[(0, 1), (1, 1)]));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .map(|_| r.pick(|_| true).unwrap())
                        .filter(|&m| m == 0)
                        .count()
                })
            })
            .collect();
        let zeros: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(zeros, 2000);
    }

    #[test]
    fn members_passed_over_lend_their_turns_and_the_rest_stay_exact() {
        let r = Rotation::new(&[(0, 1), (1, 1), (2, 2)]);
        let picks: Vec<usize> = (0..30).map(|_| r.pick(|m| m != 1).unwrap()).collect();
        let zeros = picks.iter().filter(|&&m| m == 0).count();
        assert!((9..=11).contains(&zeros), "{picks:?}");
        assert!(!picks.contains(&1));
        assert_eq!(r.pick(|m| m == 1), Some(1), "the one not yet tried");
        assert_eq!(r.pick(|_| false), None);
    }

    #[test]
    fn a_long_cycle_is_capped_and_keeps_the_ratio_closely() {
        let members: Vec<(usize, u32)> = (0..8).map(|i| (i, 1000 - i as u32)).collect();
        let r = Rotation::new(&members);
        assert!(r.cycle().len() <= MAX_SCHEDULE + members.len());
        for (i, w) in &members {
            let share = count(r.cycle(), *i as u32) as f64 / r.cycle().len() as f64;
            let want = *w as f64 / members.iter().map(|m| m.1 as f64).sum::<f64>();
            assert!(
                (share - want).abs() < 0.002,
                "member {i}: {share} vs {want}"
            );
        }
        let skewed = Rotation::new(&[(0, 1), (1, 1000), (2, 999), (3, 998)]);
        assert!(count(skewed.cycle(), 0) >= 1, "a light member keeps a slot");
    }

    #[test]
    fn an_unchanged_rotation_continues_its_sequence() {
        let old = Rotation::new(&[(0, 1), (1, 1)]);
        assert_eq!(old.pick(|_| true), Some(0));
        let mut same = Rotation::new(&[(0, 1), (1, 1)]);
        same.continue_from(&old);
        assert_eq!(same.pick(|_| true), Some(1));
        let mut other = Rotation::new(&[(0, 1), (1, 2)]);
        other.continue_from(&old);
        assert_eq!(
            other.pick(|_| true),
            Some(1),
            "a new cycle starts at its beginning"
        );
        assert_eq!(
            old.pick(|_| true),
            Some(0),
            "and leaves the old ticket alone"
        );
    }
}
