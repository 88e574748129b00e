//! Picking an upstream from a pool: smooth weighted round-robin, priority levels, best
//! (latency EMA + active × 50 ms), least connections, weighted random, and rendezvous hashing.
//! Each pick is O(pool size) with no allocation and no lock. Round-robin (also within a
//! priority level) is one sequence for the whole process, a shared ticket into the pool's
//! `Rotation`; the rest of the state (tie-breaking turn, a random generator) is per worker.

use crate::config::{HashKey, Mode, PoolSpec};
use crate::upstream::state::ActiveGuard;

/// What `best` adds per active connection, in ms.
const ACTIVE_PENALTY_MS: u64 = 50;

/// A worker's selection state (round-robin's lives in the pools, shared).
#[derive(Default)]
pub struct Selector {
    /// Rotates the start of tie-breaking scans so ties are shared fairly.
    turn: usize,
    rng: u64,
}

impl Selector {
    pub fn new(seed: u64) -> Selector {
        Selector {
            turn: 0,
            rng: seed | 1,
        }
    }

    /// Picks a member of `pool` (its index in `pool.members`) among online members not in
    /// `exclude`; `key` feeds `hash` mode. None when no member qualifies.
    pub fn pick(&mut self, pool: &PoolSpec, key: &[u8], exclude: &[usize]) -> Option<usize> {
        let n = pool.members.len();
        // An offline member is a candidate only while its half-open circuit has a trial
        // slot free (`pick_server` then takes it); a draining one (taken out through the
        // API) never is. Every pick, first, retry or after the queue, comes through here.
        let ok = |i: usize| {
            let m = &pool.members[i];
            (m.state.is_selectable() || pool.breaker.is_some_and(|b| m.state.trial_ready(&b)))
                && !exclude.contains(&i)
                && (m.max_active == 0 || m.state.active() < m.max_active)
        };
        self.turn = self.turn.wrapping_add(1);
        match pool.mode {
            Mode::RoundRobin => pool.rotations.first()?.1.pick(ok),
            Mode::Priority => {
                let level = (0..n)
                    .filter(|&i| ok(i))
                    .map(|i| pool.members[i].priority)
                    .min()?;
                let (_, rotation) = pool.rotations.iter().find(|(p, _)| *p == level)?;
                rotation.pick(ok)
            }
            Mode::Best => self.min_by(n, ok, |i| {
                let s = &pool.members[i].state;
                s.latency_ms() as u64 + s.active() as u64 * ACTIVE_PENALTY_MS
            }),
            Mode::LeastConn => self.min_by(n, ok, |i| pool.members[i].state.active() as u64),
            Mode::Random => {
                let total: u64 = (0..n)
                    .filter(|&i| ok(i))
                    .map(|i| pool.members[i].weight as u64)
                    .sum();
                if total == 0 {
                    return None;
                }
                let mut r = self.next_random() % total;
                for i in (0..n).filter(|&i| ok(i)) {
                    let w = pool.members[i].weight as u64;
                    if r < w {
                        return Some(i);
                    }
                    r -= w;
                }
                None
            }
            Mode::Hash => (0..n)
                .filter(|&i| ok(i))
                .max_by_key(|&i| rendezvous(key, pool.members[i].url.as_bytes())),
        }
    }

    /// `pick` for a backend: a member picked while its circuit is half-open comes with the
    /// trial slot taken for it (the guard of its attempt); when another worker took the last
    /// slot meanwhile, another member is picked.
    pub fn pick_server(
        &mut self,
        pool: &PoolSpec,
        key: &[u8],
        exclude: &[usize],
        worker: usize,
    ) -> Option<(usize, Option<ActiveGuard>)> {
        let mut lost: Vec<usize> = Vec::new();
        loop {
            let i = if lost.is_empty() {
                self.pick(pool, key, exclude)?
            } else {
                let all: Vec<usize> = exclude.iter().chain(&lost).copied().collect();
                self.pick(pool, key, &all)?
            };
            let m = &pool.members[i];
            let Some(b) = pool.breaker.filter(|_| !m.state.is_online()) else {
                return Some((i, None));
            };
            match m.state.begin_trial(&b, worker) {
                Some(g) => return Some((i, Some(g))),
                None => lost.push(i),
            }
        }
    }

    /// The eligible member with the lowest score; ties go round in turn.
    fn min_by(
        &self,
        n: usize,
        eligible: impl Fn(usize) -> bool,
        score: impl Fn(usize) -> u64,
    ) -> Option<usize> {
        let start = if n == 0 { 0 } else { self.turn % n };
        (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| eligible(i))
            .min_by_key(|&i| score(i))
    }

    /// A random number (for backoff jitter).
    pub fn random(&mut self) -> u64 {
        self.next_random()
    }

    /// xorshift64*: enough for spreading load, no crate needed.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A random-enough seed for worker `id`: the clock, the process and the worker mixed
/// (request ids and `random` mode need no more).
pub fn seed(id: usize) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    rendezvous(
        &t.to_le_bytes(),
        &[std::process::id().to_le_bytes(), (id as u32).to_le_bytes()].concat(),
    )
}

/// The key a `hash` pool hashes for a request.
pub fn hash_key<'a>(mode: HashKey, client_ip: &'a [u8], host: &'a str) -> &'a [u8] {
    match mode {
        HashKey::ClientIp => client_ip,
        HashKey::Host => host.as_bytes(),
    }
}

/// Rendezvous (highest random weight) score of `key` on the member named `member`: removing a
/// member only moves the keys that scored highest on it.
fn rendezvous(key: &[u8], member: &[u8]) -> u64 {
    // FNV-1a over both, then a splitmix64 finish to spread the bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.iter().chain([0xffu8].iter()).chain(member) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn pool(yaml_upstreams: &str, mode: &str) -> config::Config {
        config::parse(
            &format!("listen: 127.0.0.1:1\nworkers: 1\nmode: {mode}\nupstream:\n{yaml_upstreams}"),
            None,
        )
        .unwrap()
    }

    #[test]
    fn smooth_wrr_is_weighted_and_interleaved() {
        let c = pool(
            "  - {url: 'http://a:1', weight: 1}\n  - {url: 'http://b:1', weight: 3}\n",
            "round_robin",
        );
        let mut s = Selector::new(1);
        let picks: Vec<usize> = (0..8)
            .map(|_| s.pick(&c.pools[0], b"", &[]).unwrap())
            .collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 2);
        assert!(
            picks.windows(4).all(|w| w.contains(&0)),
            "blocky: {picks:?}"
        );
    }

    #[test]
    fn priority_uses_the_best_online_level_and_falls_back() {
        let c = pool(
            "  - {url: 'http://a:1', priority: 10}\n  - {url: 'http://b:1', priority: 20}\n  - {url: 'http://c:1', priority: 20}\n",
            "priority",
        );
        let mut s = Selector::new(1);
        let p = &c.pools[0];
        assert_eq!(s.pick(p, b"", &[]), Some(0));
        p.members[0].state.passive_failure(0, 1, "test");
        let two: Vec<_> = (0..4).map(|_| s.pick(p, b"", &[]).unwrap()).collect();
        assert_eq!(two, vec![1, 2, 1, 2]);
        assert_eq!(s.pick(p, b"", &[1]), Some(2));
        p.members[0].state.probe_result(true, 1, 1, "");
        assert_eq!(s.pick(p, b"", &[]), Some(0));
    }

    #[test]
    fn best_prefers_low_latency_and_idle_members() {
        let c = pool("  - url: 'http://a:1'\n  - url: 'http://b:1'\n", "best");
        let p = &c.pools[0];
        p.members[0].state.passive_success(80);
        p.members[1].state.passive_success(0);
        let mut s = Selector::new(1);
        assert_eq!(s.pick(p, b"", &[]), Some(1));
        let _busy = [p.members[1].state.begin(0), p.members[1].state.begin(0)];
        assert_eq!(s.pick(p, b"", &[]), Some(0));
    }

    #[test]
    fn ties_are_shared() {
        let c = pool(
            "  - url: 'http://a:1'\n  - url: 'http://b:1'\n",
            "least_conn",
        );
        let mut s = Selector::new(1);
        let picks: Vec<_> = (0..4)
            .map(|_| s.pick(&c.pools[0], b"", &[]).unwrap())
            .collect();
        assert!(picks.contains(&0) && picks.contains(&1), "{picks:?}");
    }

    #[test]
    fn rendezvous_moves_only_the_removed_members_keys() {
        let c = pool(
            "  - url: 'http://a:1'\n  - url: 'http://b:1'\n  - url: 'http://c:1'\n",
            "hash",
        );
        let p = &c.pools[0];
        let mut s = Selector::new(1);
        let keys: Vec<String> = (0..300).map(|i| format!("host{i}.test")).collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|k| s.pick(p, k.as_bytes(), &[]).unwrap())
            .collect();
        for m in 0..3 {
            assert!(
                before.iter().filter(|&&b| b == m).count() > 60,
                "uneven spread"
            );
        }
        let after: Vec<usize> = keys
            .iter()
            .map(|k| s.pick(p, k.as_bytes(), &[1]).unwrap())
            .collect();
        for (b, a) in before.iter().zip(&after) {
            if *b != 1 {
                assert_eq!(a, b, "a key moved that was not on the removed member");
            }
        }
    }

    #[test]
    fn random_follows_weights() {
        let c = pool(
            "  - {url: 'http://a:1', weight: 1}\n  - {url: 'http://b:1', weight: 4}\n",
            "random",
        );
        let mut s = Selector::new(7);
        let n = 5000;
        let a = (0..n)
            .filter(|_| s.pick(&c.pools[0], b"", &[]) == Some(0))
            .count();
        assert!((800..1200).contains(&a), "{a} of {n} picks for weight 1/5");
    }

    #[test]
    fn nothing_online_means_none() {
        let c = pool("  - url: 'http://a:1'\n", "round_robin");
        c.pools[0].members[0].state.passive_failure(0, 1, "x");
        assert_eq!(Selector::new(1).pick(&c.pools[0], b"", &[]), None);
    }

    #[test]
    fn a_draining_member_is_never_picked() {
        let c = config::parse(
            "reverse:\n  listen: ['127.0.0.1:1']\n  sites: [{hosts: [a.test], routes: [{backend: web}]}]\n  backends:\n    web:\n      servers: [{url: 'http://127.0.0.1:2'}, {url: 'http://127.0.0.1:3'}]\n",
            None,
        )
        .unwrap();
        let p = &c.reverse.as_ref().unwrap().backends[0].pool;
        let mut s = Selector::new(1);
        p.members[0].state.set_draining(true);
        for _ in 0..4 {
            assert_eq!(s.pick_server(p, b"", &[], 0).map(|x| x.0), Some(1));
        }
        p.members[1].state.set_draining(true);
        assert!(s.pick_server(p, b"", &[], 0).is_none());
        p.members[0].state.set_draining(false);
        assert_eq!(s.pick_server(p, b"", &[], 0).map(|x| x.0), Some(0));
    }
}
