//! Live stats: what happened over the last 10 and 60 seconds, for `GET /api/v1/stats`,
//! `GET /api/v1/stats/{site}` and the status page (DESIGN §9).
//!
//! It sits off the request path entirely. The workers only bump the counters they already
//! keep (per-worker request and failure counts, each route's status classes and duration
//! histogram, each server's attempts and failures); once a second the control thread copies
//! them into a ring of snapshots, and a window is the difference between the newest snapshot
//! and the one taken about 10 (60) seconds before it. Sampling runs only while an admin server
//! exists, since nothing else reads the ring.
//!
//! Counters are kept as their low 32 bits and subtracted with `wrapping_sub`: a server's
//! counters are `usize` (32 bits on MIPS) and may wrap, and no window holds 2^32 requests.
//! An entry is matched across snapshots by the identity of its `Arc` (the config carries the
//! same `Arc` over a reload), so a site or server that is new in the config counts from zero
//! instead of against some older namesake's totals.
//!
//! Latency percentiles are estimates: the rank is found in the histogram's bucket deltas and
//! interpolated linearly inside its bucket, as Prometheus's `histogram_quantile` does; a rank
//! beyond the last bound (10 s) is reported as that bound.

use crate::config::{Config, Site};
use crate::metrics::{decimal, json, RouteStats, Stats, BOUNDS_US};
use crate::shared::Shared;
use crate::upstream::UpstreamState;
use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the control thread takes a snapshot.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Snapshots kept: 63 intervals, so that a full 60 s window exists even when the control
/// thread's wakes run a little late.
const KEEP: usize = 64;
/// The two windows the API and the page report.
pub const SHORT: Duration = Duration::from_secs(10);
/// The long window, also the one latency percentiles cover.
pub const LONG: Duration = Duration::from_secs(60);
/// Where the API's stats live.
const PATH: &str = "/api/v1/stats";
/// Histogram buckets, the last one for requests beyond the last bound (`+Inf`).
const BUCKETS: usize = BOUNDS_US.len() + 1;

/// One route's counts (or a site's route-less requests, or the site-less ones) at a snapshot.
struct RouteSample {
    stats: Arc<RouteStats>,
    requests: u32,
    /// 5xx answers, a backend's or ferry's own.
    errors: u32,
    /// Per bucket, not cumulative; the last is beyond the last bound.
    buckets: [u32; BUCKETS],
}

/// One forward upstream's or backend server's counts at a snapshot.
struct MemberSample {
    state: Arc<UpstreamState>,
    requests: u32,
    failures: u32,
}

/// The counters at one moment.
struct Sample {
    at: Instant,
    /// Every request of both roles, and those ferry answered with an error itself.
    requests: u32,
    failed: u32,
    routes: Vec<RouteSample>,
    members: Vec<MemberSample>,
}

/// What happened between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Window {
    /// The time between the two snapshots, in ms.
    pub span_ms: u64,
    /// Requests that ended in the window (attempts, for a server).
    pub requests: u64,
    /// 5xx answers (sites), failed requests (the total) or failed attempts (a server).
    pub errors: u64,
    /// Duration histogram deltas per bucket (`BOUNDS_US`, then beyond), for sites.
    pub buckets: [u64; BUCKETS],
}

impl Window {
    /// `n` per second over the window, in hundredths.
    fn per_sec_x100(&self, n: u64) -> u64 {
        (n * 100_000).checked_div(self.span_ms).unwrap_or(0)
    }

    /// Requests per second, as a decimal with at most two places.
    pub fn requests_per_sec(&self) -> String {
        decimal(self.per_sec_x100(self.requests), 100)
    }

    /// Errors per second, as a decimal with at most two places.
    pub fn errors_per_sec(&self) -> String {
        decimal(self.per_sec_x100(self.errors), 100)
    }

    /// The estimated `permille`/1000 quantile of the durations, in µs; `None` without requests.
    pub fn quantile_us(&self, permille: u64) -> Option<u64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        // Ranks are kept in thousandths of a request so that the arithmetic stays integer.
        let rank = permille * total;
        let mut below = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            if (below + n) * 1000 >= rank && n > 0 {
                let Some(&upper) = BOUNDS_US.get(i) else {
                    break;
                };
                let lower = if i == 0 { 0 } else { BOUNDS_US[i - 1] };
                return Some(lower + (upper - lower) * (rank - below * 1000) / (n * 1000));
            }
            below += n;
        }
        BOUNDS_US.last().copied()
    }

    fn add(&mut self, other: &Window) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
    }
}

/// The ring of snapshots.
pub struct Ring {
    samples: VecDeque<Sample>,
}

impl Default for Ring {
    fn default() -> Ring {
        Ring::new()
    }
}

impl Ring {
    /// An empty ring (it allocates with its first snapshot).
    pub fn new() -> Ring {
        Ring {
            samples: VecDeque::new(),
        }
    }

    /// Takes a snapshot of every counter `config` and `stats` hold, at `at`.
    pub fn record(&mut self, at: Instant, config: &Config, stats: &Stats) {
        // The oldest snapshot's lists are reused: no allocation once the ring is full.
        let mut s = if self.samples.len() >= KEEP {
            self.samples.pop_front().expect("a full ring")
        } else {
            Sample {
                at,
                requests: 0,
                failed: 0,
                routes: Vec::new(),
                members: Vec::new(),
            }
        };
        s.at = at;
        s.requests = stats
            .workers
            .iter()
            .map(|w| w.requests.get() as u32)
            .fold(0, u32::wrapping_add);
        s.failed = stats
            .workers
            .iter()
            .map(|w| w.failed.get() as u32)
            .fold(0, u32::wrapping_add);
        s.routes.clear();
        s.members.clear();
        if let Some(rev) = config.reverse.as_ref() {
            route_sample(&mut s.routes, &rev.no_site);
            for site in &rev.sites {
                for r in site_routes(site) {
                    route_sample(&mut s.routes, r);
                }
            }
        }
        let pools = config.pools.iter();
        let backends = config
            .reverse
            .iter()
            .flat_map(|r| &r.backends)
            .map(|b| &b.pool);
        for m in pools.chain(backends).flat_map(|p| &p.members) {
            // An upstream may be a member of several pools; it is one set of counters.
            if s.members.iter().any(|o| Arc::ptr_eq(&o.state, &m.state)) {
                continue;
            }
            s.members.push(MemberSample {
                state: m.state.clone(),
                requests: m.state.requests() as u32,
                failures: m.state.failures() as u32,
            });
        }
        self.samples.push_back(s);
    }

    /// The newest snapshot and the newest one at least `span` older (or the oldest there is,
    /// when the ring is younger than that); `None` before there are two.
    fn ends(&self, span: Duration) -> Option<(&Sample, &Sample)> {
        let new = self.samples.back()?;
        let old = self
            .samples
            .iter()
            .rev()
            .find(|s| new.at.duration_since(s.at) >= span)
            .or(self.samples.front())?;
        (!std::ptr::eq(old, new)).then_some((old, new))
    }

    /// Every request of both roles over the last `span`; errors are those ferry answered with
    /// an error itself.
    pub fn total(&self, span: Duration) -> Option<Window> {
        let (old, new) = self.ends(span)?;
        Some(Window {
            span_ms: span_ms(old, new),
            requests: u64::from(new.requests.wrapping_sub(old.requests)),
            errors: u64::from(new.failed.wrapping_sub(old.failed)),
            buckets: [0; BUCKETS],
        })
    }

    /// The requests counted in `routes` over the last `span`.
    /// (An iterator object rather than a generic one: one copy of this loop in the binary.)
    fn routes(
        &self,
        span: Duration,
        routes: &mut dyn Iterator<Item = &Arc<RouteStats>>,
    ) -> Option<Window> {
        let (old, new) = self.ends(span)?;
        let mut w = Window {
            span_ms: span_ms(old, new),
            ..Window::default()
        };
        for r in routes {
            // A route missing from the newest snapshot came with a config applied since:
            // nothing of it is in the window yet.
            let Some(n) = find_route(new, r) else {
                continue;
            };
            let o = find_route(old, r);
            let d = |f: fn(&RouteSample) -> u32| -> u64 {
                u64::from(f(n).wrapping_sub(o.map_or(0, f)))
            };
            let mut part = Window {
                requests: d(|x| x.requests),
                errors: d(|x| x.errors),
                ..Window::default()
            };
            for (i, b) in part.buckets.iter_mut().enumerate() {
                *b = u64::from(n.buckets[i].wrapping_sub(o.map_or(0, |o| o.buckets[i])));
            }
            w.add(&part);
        }
        Some(w)
    }

    /// One site's requests over the last `span`; errors are 5xx answers.
    pub fn site(&self, site: &Site, span: Duration) -> Option<Window> {
        self.routes(span, &mut site_routes(site))
    }

    /// Every reverse request over the last `span` (sites, and those that found none).
    pub fn reverse(&self, config: &Config, span: Duration) -> Option<Window> {
        let rev = config.reverse.as_ref()?;
        let mut all = std::iter::once(&rev.no_site).chain(rev.sites.iter().flat_map(site_routes));
        self.routes(span, &mut all)
    }

    /// One upstream's or server's attempts and failed attempts over the last `span`.
    pub fn member(&self, state: &Arc<UpstreamState>, span: Duration) -> Option<Window> {
        let (old, new) = self.ends(span)?;
        let find = |s: &Sample| {
            s.members
                .iter()
                .find(|m| Arc::ptr_eq(&m.state, state))
                .map(|m| (m.requests, m.failures))
        };
        let n = find(new)?;
        let o = find(old).unwrap_or((0, 0));
        Some(Window {
            span_ms: span_ms(old, new),
            requests: u64::from(n.0.wrapping_sub(o.0)),
            errors: u64::from(n.1.wrapping_sub(o.1)),
            buckets: [0; BUCKETS],
        })
    }

    /// The JSON of `GET /api/v1/stats` (`site: None`) or of one site; `None` when there is no
    /// site of that name.
    pub fn json(&self, config: &Config, site: Option<&str>) -> Option<String> {
        let sites = config.reverse.iter().flat_map(|r| &r.sites);
        let mut o = String::with_capacity(1024);
        let _ = write!(
            o,
            "{{\"interval_ms\":{},\"latency\":\"estimates from histogram buckets\",",
            INTERVAL.as_millis()
        );
        match site {
            Some(name) => {
                let s = sites.into_iter().find(|s| s.name == name)?;
                let _ = write!(o, "\"site\":\"{}\",", json(&s.name));
                windows_json(&mut o, [self.site(s, SHORT), self.site(s, LONG)], true);
            }
            None => {
                o.push_str("\"total\":{");
                windows_json(&mut o, [self.total(SHORT), self.total(LONG)], false);
                o.push_str("},\"reverse\":{");
                windows_json(
                    &mut o,
                    [self.reverse(config, SHORT), self.reverse(config, LONG)],
                    true,
                );
                o.push_str("},\"sites\":[");
                for (i, s) in sites.enumerate() {
                    if i > 0 {
                        o.push(',');
                    }
                    let _ = write!(o, "{{\"name\":\"{}\",", json(&s.name));
                    windows_json(&mut o, [self.site(s, SHORT), self.site(s, LONG)], true);
                    o.push('}');
                }
                o.push(']');
            }
        }
        o.push('}');
        Some(o)
    }
}

/// `"last_10s":{…},"last_60s":{…}` (`null` before two snapshots), the latter with
/// `latency_ms` when `latency`.
fn windows_json(o: &mut String, windows: [Option<Window>; 2], latency: bool) {
    for (i, (span, w)) in [SHORT, LONG].into_iter().zip(windows).enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(o, "\"last_{}s\":", span.as_secs());
        let Some(w) = w else {
            o.push_str("null");
            continue;
        };
        let _ = write!(
            o,
            "{{\"secs\":{},\"requests\":{},\"errors\":{},\"requests_per_sec\":{},\"errors_per_sec\":{}",
            decimal(w.span_ms, 1000),
            w.requests,
            w.errors,
            w.requests_per_sec(),
            w.errors_per_sec()
        );
        if latency && span == LONG {
            o.push_str(",\"latency_ms\":{");
            for (j, (name, q)) in [("p50", 500), ("p90", 900), ("p99", 990)]
                .iter()
                .enumerate()
            {
                if j > 0 {
                    o.push(',');
                }
                let _ = write!(o, "\"{name}\":{}", ms_json(w.quantile_us(*q)));
            }
            o.push('}');
        }
        o.push('}');
    }
}

/// A duration in µs as ms with one decimal (`null` for none).
fn ms_json(us: Option<u64>) -> String {
    us.map_or_else(|| "null".into(), |us| decimal(us / 100, 10))
}

fn find_route<'s>(s: &'s Sample, r: &Arc<RouteStats>) -> Option<&'s RouteSample> {
    s.routes.iter().find(|x| Arc::ptr_eq(&x.stats, r))
}

fn span_ms(old: &Sample, new: &Sample) -> u64 {
    u64::try_from(new.at.duration_since(old.at).as_millis()).unwrap_or(u64::MAX)
}

/// A site's counts: its routes' and those of its requests that found no route.
fn site_routes(site: &Site) -> impl Iterator<Item = &Arc<RouteStats>> {
    std::iter::once(&site.no_route).chain(site.routes.iter().map(|r| &r.stats))
}

fn route_sample(out: &mut Vec<RouteSample>, stats: &Arc<RouteStats>) {
    let t = stats.totals();
    let mut buckets = [0u32; BUCKETS];
    let mut below = 0;
    for (b, &cum) in buckets.iter_mut().zip(&t.cumulative) {
        *b = cum.wrapping_sub(below) as u32;
        below = cum;
    }
    buckets[BUCKETS - 1] = t.requests().wrapping_sub(below) as u32;
    out.push(RouteSample {
        stats: stats.clone(),
        requests: t.requests() as u32,
        errors: t.codes[4] as u32,
        buckets,
    });
}

/// Whether `path` is one of the stats API's.
pub fn owns(path: &str) -> bool {
    path == PATH || path.strip_prefix(PATH).is_some_and(|p| p.starts_with('/'))
}

/// The body of `GET /api/v1/stats` or `/api/v1/stats/{site}` (the name percent-encoded as
/// needed); `None` for a site that does not exist.
pub fn answer(path: &str, config: &Config, shared: &Shared) -> Option<String> {
    let ring = shared.recent();
    match path.strip_prefix(PATH)?.strip_prefix('/') {
        None => ring.json(config, None),
        Some(name) => ring.json(config, Some(&percent_decode(name)?)),
    }
}

/// `%XX` escapes decoded (a name with a space or a slash is sent encoded); `None` when an
/// escape is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// When the control thread takes its next snapshot.
pub struct Sampler {
    next: Instant,
}

impl Sampler {
    /// The first snapshot is due at once.
    pub fn new(now: Instant) -> Sampler {
        Sampler { next: now }
    }

    /// When `tick` is next due.
    pub fn next_wake(&self) -> Instant {
        self.next
    }

    /// Takes a snapshot when one is due. Snapshots keep a steady cadence; after a stall of
    /// more than an interval the next one is an interval from now, not a burst.
    pub fn tick(&mut self, now: Instant, config: &Config, shared: &Shared) {
        if now < self.next {
            return;
        }
        shared.recent().record(now, config, &shared.stats);
        self.next += INTERVAL;
        if self.next <= now {
            self.next = now + INTERVAL;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
listen: 127.0.0.1:1
upstream: [{url: "http://127.0.0.1:9"}]
reverse:
  listen: ["127.0.0.1:2"]
  sites:
    - name: app
      hosts: ["app.test"]
      routes: [{path: "/", backend: web}, {path: "/api", backend: web}]
    - name: other
      hosts: ["other.test"]
      routes: [{path: "/", backend: web}]
  backends:
    web: {servers: [{url: "http://127.0.0.1:3"}]}
workers: 2
"#;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn windows_take_the_snapshot_a_span_back_or_the_oldest_there_is() {
        let c = crate::config::parse(CONFIG, None).unwrap();
        let stats = Stats::new(2);
        let rev = c.reverse.as_ref().unwrap();
        let (app, api) = (&rev.sites[0], &rev.sites[0].routes[1].stats);
        let mut ring = Ring::new();
        let t0 = Instant::now();
        ring.record(t0, &c, &stats);
        assert_eq!(ring.site(app, SHORT), None, "one snapshot is no window");
        // One request a second for 70 s, on alternating workers, every tenth a 503.
        for sec in 1..=70u64 {
            let status = if sec % 10 == 0 { 503 } else { 200 };
            api.done((sec % 2) as usize, status, ms(20));
            stats
                .worker(0)
                .request_done(false, false, status == 200, 0, 0);
            ring.record(t0 + Duration::from_secs(sec), &c, &stats);
            if sec == 5 {
                // Younger than the window: the whole life of the ring, said as such.
                let w = ring.site(app, SHORT).unwrap();
                assert_eq!((w.span_ms, w.requests), (5_000, 5));
                assert_eq!(w.requests_per_sec(), "1");
            }
        }
        assert_eq!(ring.samples.len(), KEEP, "bounded");
        let short = ring.site(app, SHORT).unwrap();
        assert_eq!(
            (short.span_ms, short.requests, short.errors),
            (10_000, 10, 1)
        );
        let long = ring.site(app, LONG).unwrap();
        assert_eq!((long.span_ms, long.requests, long.errors), (60_000, 60, 6));
        assert_eq!(long.errors_per_sec(), "0.1");
        assert_eq!(ring.site(&rev.sites[1], LONG).unwrap().requests, 0);
        let total = ring.total(LONG).unwrap();
        assert_eq!((total.requests, total.errors), (60, 6));
        assert_eq!(ring.reverse(&c, SHORT).unwrap().requests, 10);
        // Uneven spacing: the newest snapshot at least the span back.
        ring.record(t0 + ms(70_400), &c, &stats);
        assert_eq!(ring.site(app, SHORT).unwrap().span_ms, 10_400);
    }

    #[test]
    fn counters_that_wrap_still_give_their_difference() {
        let c = crate::config::parse(CONFIG, None).unwrap();
        let web = &c.reverse.as_ref().unwrap().backends[0].pool.members[0].state;
        let mut ring = Ring::new();
        let t0 = Instant::now();
        let stats = Stats::new(1);
        ring.record(t0, &c, &stats);
        // As if the 32-bit counter stood 3 short of wrapping.
        ring.samples[0]
            .members
            .iter_mut()
            .for_each(|m| m.requests = u32::MAX - 2);
        ring.record(t0 + ms(1000), &c, &stats);
        ring.samples[1]
            .members
            .iter_mut()
            .for_each(|m| m.requests = 2);
        let w = ring.member(web, SHORT).unwrap();
        assert_eq!(w.requests, 5);
    }

    #[test]
    fn a_route_new_in_the_config_counts_from_zero_and_matches_by_identity() {
        let c = crate::config::parse(CONFIG, None).unwrap();
        let stats = Stats::new(1);
        let mut ring = Ring::new();
        let t0 = Instant::now();
        ring.record(t0, &c, &stats);
        // A config whose site "app" has fresh counters (as one re-created through the API):
        // its 3 requests all happened inside the window.
        let c2 = crate::config::parse(CONFIG, None).unwrap();
        let app2 = &c2.reverse.as_ref().unwrap().sites[0];
        for _ in 0..3 {
            app2.routes[0].stats.done(0, 200, ms(1));
        }
        ring.record(t0 + ms(1000), &c2, &stats);
        assert_eq!(ring.site(app2, SHORT).unwrap().requests, 3);
        // The old config's site is not in the newest snapshot: nothing of it in the window.
        let app1 = &c.reverse.as_ref().unwrap().sites[0];
        app1.routes[0].stats.done(0, 200, ms(1));
        assert_eq!(ring.site(app1, SHORT).unwrap().requests, 0);
    }

    #[test]
    fn percentiles_interpolate_inside_the_bucket_that_holds_the_rank() {
        let mut w = Window {
            span_ms: 60_000,
            ..Window::default()
        };
        assert_eq!(w.quantile_us(500), None);
        // 100 requests: 50 in (0, 5 ms], 40 in (5, 10 ms], 10 in (100, 250 ms].
        w.buckets[0] = 50;
        w.buckets[1] = 40;
        w.buckets[5] = 10;
        assert_eq!(
            w.quantile_us(500),
            Some(5_000),
            "rank 50 ends the first bucket"
        );
        assert_eq!(w.quantile_us(250), Some(2_500));
        assert_eq!(w.quantile_us(700), Some(7_500), "20 of 40 into (5, 10]");
        assert_eq!(w.quantile_us(900), Some(10_000));
        assert_eq!(w.quantile_us(990), Some(235_000), "9 of 10 into (100, 250]");
        // Beyond the last bound: the bound, as histogram_quantile answers.
        w.buckets[BUCKETS - 1] = 900;
        assert_eq!(w.quantile_us(990), Some(10_000_000));
        // Empty buckets before the rank are skipped, not interpolated into.
        let mut one = Window::default();
        one.buckets[7] = 1; // (500 ms, 1 s]
        assert_eq!(one.quantile_us(500), Some(750_000));
        assert_eq!(one.quantile_us(990), Some(995_000));
    }

    #[test]
    fn snapshots_put_each_request_in_one_bucket_and_the_overflow_last() {
        let c = crate::config::parse(CONFIG, None).unwrap();
        let api = &c.reverse.as_ref().unwrap().sites[0].routes[1].stats;
        api.done(0, 200, ms(3));
        api.done(0, 200, ms(7));
        api.done(1, 502, ms(20_000));
        let mut v = Vec::new();
        route_sample(&mut v, api);
        assert_eq!(v[0].buckets, [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!((v[0].requests, v[0].errors), (3, 1));
    }

    #[test]
    fn json_names_every_site_and_refuses_an_unknown_one() {
        let c = crate::config::parse(CONFIG, None).unwrap();
        let stats = Stats::new(1);
        let mut ring = Ring::new();
        assert!(ring.json(&c, Some("nope")).is_none());
        let early = ring.json(&c, None).unwrap();
        assert!(early.contains("\"last_10s\":null"), "{early}");
        let t0 = Instant::now();
        ring.record(t0, &c, &stats);
        c.reverse.as_ref().unwrap().sites[0].routes[0]
            .stats
            .done(0, 200, ms(12));
        ring.record(t0 + ms(2000), &c, &stats);
        let one = ring.json(&c, Some("app")).unwrap();
        assert!(one.contains("\"site\":\"app\",\"last_10s\":{\"secs\":2,\"requests\":1,\"errors\":0,\"requests_per_sec\":0.5,"), "{one}");
        assert!(
            one.contains("\"latency_ms\":{\"p50\":17.5,\"p90\":23.5,\"p99\":24.8}"),
            "{one}"
        );
        let all = ring.json(&c, None).unwrap();
        for part in [
            "\"total\":{",
            "\"reverse\":{",
            "{\"name\":\"app\",",
            "{\"name\":\"other\",",
        ] {
            assert!(all.contains(part), "{part} in {all}");
        }
    }

    #[test]
    fn stats_paths_and_names() {
        assert!(owns("/api/v1/stats") && owns("/api/v1/stats/app"));
        assert!(!owns("/api/v1/statsx") && !owns("/api/v1/stat"));
        assert_eq!(percent_decode("a%20b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("%zz"), None);
    }
}
