//! The reverse role's numbers (DESIGN §7.4): requests per site and route by status class with
//! a duration histogram, and the backends' servers from their shared state; rendered for
//! `/metrics` and for `/status`.
//!
//! A reverse request is counted once, when it ends, on the worker that holds it: by the
//! exchange when it is released (the status the client saw: the response's, ferry's own reply,
//! or the status of a response that was cut off after its head), or where ferry answers it
//! itself from the head (a redirect, a 404, a 503 with no server online). Requests that found
//! no site count under `site="-"`, those of a site that found no route under `route="-"`: the
//! config refuses `-` (and the empty name) as a site or route name, so the series never
//! collide. A client that leaves before any status reached it is not counted (the access
//! log writes no line for it either). Heads that cannot be parsed, and heads that do not
//! arrive in time, are no request to any site and counted only by `ferry_requests_total`.
//!
//! Every label value comes from the config (site, route, backend and server names, five
//! status classes), so the number of series is bounded by it, never by paths or hosts.

use super::{json, label, Counter64};
use crate::config::{Backend, Config, Mode, Reverse, RouteAction, Site};
use crate::route::reverse::Place;
use std::fmt::Write;
use std::time::Duration;

/// Upper bounds of the duration histogram's buckets, in µs (5 ms … 10 s).
pub const BOUNDS_US: [u64; 11] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];
/// The same bounds as Prometheus `le` labels, in seconds.
const LE: [&str; 11] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
];
/// The `code` label of each status class.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One worker's counts for one route (one writer: its worker).
#[repr(align(64))]
#[derive(Default)]
struct Cell {
    /// Requests by status class; their sum is also the histogram's count.
    codes: [Counter64; 5],
    /// Requests that took at most `BOUNDS_US[i]` and more than the bound before (not
    /// cumulative: a request bumps one bucket, or none beyond the last bound).
    buckets: [Counter64; 11],
    /// Durations summed, in µs.
    sum_us: Counter64,
}

/// The requests of one route, or of a site's requests with no route, or of the requests with
/// no site: per-worker cells summed on read. Its `Arc` goes with the config snapshot and is
/// carried over a reload by site and route name, so sessions still on the old snapshot count
/// into the same cells.
pub struct RouteStats {
    workers: Box<[Cell]>,
}

/// A `RouteStats` summed over workers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RouteTotals {
    /// Requests by status class (1xx … 5xx).
    pub codes: [u64; 5],
    /// Cumulative bucket counts, as Prometheus shows them (`le` = `LE[i]`).
    pub cumulative: [u64; 11],
    /// Durations summed, in µs.
    pub sum_us: u64,
}

impl RouteTotals {
    /// Requests counted (the histogram's `_count` and its `+Inf` bucket).
    pub fn requests(&self) -> u64 {
        self.codes.iter().sum()
    }
}

impl RouteStats {
    /// Zeroed counts for `workers` workers.
    pub fn new(workers: usize) -> RouteStats {
        RouteStats {
            workers: (0..workers.max(1)).map(|_| Cell::default()).collect(),
        }
    }

    /// How many workers it has cells for.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Counts one request that ended with `status` after `took`. Only worker `worker` may call
    /// this for its own index; an index it has no cell for (a config written for more
    /// workers than run) is not counted rather than shared, which would break the one-writer
    /// rule of `Counter64`.
    pub fn done(&self, worker: usize, status: u16, took: Duration) {
        let Some(c) = self.workers.get(worker) else {
            return;
        };
        // A status outside 100..=599 (a server may send any three digits) goes to the
        // nearest class: the label set stays the five the family promises.
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        // The class first, then the bucket: a reader that sums buckets before classes
        // never sees a bucket ahead of the count (see `totals`).
        c.codes[class].add(1);
        if let Some(b) = BOUNDS_US.iter().position(|&b| us <= b) {
            c.buckets[b].add(1);
        }
        c.sum_us.add(us);
    }

    /// The counts summed over workers. Buckets are read before the classes, the reverse of
    /// the order `done` writes them, so that `le="10"` never exceeds `+Inf` in one scrape.
    pub fn totals(&self) -> RouteTotals {
        let mut t = RouteTotals::default();
        let mut buckets = [0u64; 11];
        for c in self.workers.iter() {
            for (sum, b) in buckets.iter_mut().zip(&c.buckets) {
                *sum += b.get();
            }
        }
        for c in self.workers.iter() {
            for (sum, n) in t.codes.iter_mut().zip(&c.codes) {
                *sum += n.get();
            }
            t.sum_us += c.sum_us.get();
        }
        let mut run = 0;
        for (cum, b) in t.cumulative.iter_mut().zip(buckets) {
            run += b;
            *cum = run;
        }
        t
    }
}

impl std::fmt::Debug for RouteStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RouteStats({} requests)", self.totals().requests())
    }
}

/// Counts a reverse request that ferry answered from its head (`at`: how far routing got).
pub fn answered(config: &Config, at: Place, worker: usize, status: u16, took: Duration) {
    if let Some(rev) = config.reverse.as_ref() {
        stats_at(rev, at).done(worker, status, took);
    }
}

/// The counts a request placed at `at` goes to.
fn stats_at(rev: &Reverse, at: Place) -> &RouteStats {
    let site = at.site.and_then(|s| rev.sites.get(s));
    match (site, at.route) {
        (Some(s), Some(r)) => s.routes.get(r).map_or(&s.no_route, |r| &r.stats),
        (Some(s), None) => &s.no_route,
        (None, _) => &rev.no_site,
    }
}

/// Every series of the requests families: (site label, route label, its counts).
fn series(rev: &Reverse) -> Vec<(&str, &str, RouteTotals)> {
    let mut out = vec![("-", "-", rev.no_site.totals())];
    for s in &rev.sites {
        out.push((&s.name, "-", s.no_route.totals()));
        for r in &s.routes {
            out.push((&s.name, &r.name, r.stats.totals()));
        }
    }
    out
}

/// Appends the site and backend families to `/metrics`.
pub fn prometheus(o: &mut String, rev: &Reverse) {
    let all = series(rev);
    let labels: Vec<String> = all
        .iter()
        .map(|(s, r, _)| format!("site=\"{}\",route=\"{}\"", label(s), label(r)))
        .collect();
    let name = "ferry_site_requests_total";
    let _ = writeln!(
        o,
        "# HELP {name} Reverse requests by site, route and status class, counted when they end.\n# TYPE {name} counter"
    );
    for (l, (_, _, t)) in labels.iter().zip(&all) {
        for (class, n) in CLASSES.iter().zip(t.codes) {
            let _ = writeln!(o, "{name}{{{l},code=\"{class}\"}} {n}");
        }
    }
    let name = "ferry_site_request_duration_seconds";
    let _ = writeln!(
        o,
        "# HELP {name} Reverse requests from the first byte of the head to their end.\n# TYPE {name} histogram"
    );
    for (l, (_, _, t)) in labels.iter().zip(&all) {
        for (le, n) in LE.iter().zip(t.cumulative) {
            let _ = writeln!(o, "{name}_bucket{{{l},le=\"{le}\"}} {n}");
        }
        let n = t.requests();
        let _ = writeln!(o, "{name}_bucket{{{l},le=\"+Inf\"}} {n}");
        let _ = writeln!(o, "{name}_sum{{{l}}} {}", seconds(t.sum_us));
        let _ = writeln!(o, "{name}_count{{{l}}} {n}");
    }

    type Read = fn(&crate::upstream::UpstreamState) -> String;
    let per_server: [(&str, &str, &str, Read); 6] = [
        (
            "ferry_backend_server_up",
            "gauge",
            "1 when the server is online.",
            |u| (u.is_online() as u8).to_string(),
        ),
        (
            "ferry_backend_server_active",
            "gauge",
            "Requests and upgraded connections using the server now.",
            |u| u.active().to_string(),
        ),
        (
            "ferry_backend_server_requests_total",
            "counter",
            "Attempts sent to the server.",
            |u| u.requests().to_string(),
        ),
        (
            "ferry_backend_server_failures_total",
            "counter",
            "Attempts to the server that failed by its fault.",
            |u| u.failures().to_string(),
        ),
        (
            "ferry_backend_server_latency_seconds",
            "gauge",
            "EMA of the time to the server's response head (0 before the first).",
            |u| seconds(u64::from(u.latency_ms()) * 1000),
        ),
        (
            "ferry_backend_server_circuit",
            "gauge",
            "The server's circuit: 0 closed, 1 open, 2 half-open.",
            |u| (u.circuit() as u8).to_string(),
        ),
    ];
    for (name, kind, help, read) in per_server {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for b in &rev.backends {
            for m in &b.pool.members {
                let _ = writeln!(
                    o,
                    "{name}{{backend=\"{}\",server=\"{}\"}} {}",
                    label(&b.name),
                    label(&m.config_url),
                    read(&m.state)
                );
            }
        }
    }
    let name = "ferry_backend_retries_total";
    let _ = writeln!(
        o,
        "# HELP {name} Attempts made again after a failure the backend retries on.\n# TYPE {name} counter"
    );
    for b in &rev.backends {
        let n = b.shared.retries();
        let _ = writeln!(o, "{name}{{backend=\"{}\"}} {n}", label(&b.name));
    }

    // DESIGN §7.3: each backend's queue (the same numbers whichever snapshot asked).
    let name = "ferry_backend_queue_length";
    let _ = writeln!(
        o,
        "# HELP {name} Requests waiting for a slot of the backend (queue.max_active).\n# TYPE {name} gauge"
    );
    for b in &rev.backends {
        let q = &b.queue.state;
        let _ = writeln!(o, "{name}{{backend=\"{}\"}} {}", label(&b.name), q.queued());
    }
    let name = "ferry_backend_queue_rejected_total";
    let _ = writeln!(
        o,
        "# HELP {name} Requests answered 503 by the backend's queue: reason=\"full\" (max_queued already waiting) or \"timeout\" (no slot within timeout_secs).\n# TYPE {name} counter"
    );
    for b in &rev.backends {
        let (full, timeout) = b.queue.state.rejected();
        for (reason, n) in [("full", full), ("timeout", timeout)] {
            let _ = writeln!(
                o,
                "{name}{{backend=\"{}\",reason=\"{reason}\"}} {n}",
                label(&b.name)
            );
        }
    }
}

/// `us` µs as seconds.
fn seconds(us: u64) -> String {
    decimal(us, 1_000_000)
}

/// `n / unit` (`unit` a power of ten) written exactly, from integers: no float rounding, and
/// no float formatting code in the binary for it.
pub fn decimal(n: u64, unit: u64) -> String {
    let (whole, frac) = (n / unit, n % unit);
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let s = format!("{whole}.{frac:0width$}");
    s.trim_end_matches('0').to_string()
}

/// Appends `"sites":[…],"no_site":{…},"backends":[…]` to `/status` (empty without a reverse
/// role).
pub fn status_json(o: &mut String, rev: Option<&Reverse>) {
    o.push_str("\"sites\":[");
    for (i, s) in rev.iter().flat_map(|r| &r.sites).enumerate() {
        if i > 0 {
            o.push(',');
        }
        site_json(o, s, rev.map_or(&[][..], |r| &r.backends));
    }
    o.push_str("],\"no_site\":");
    match rev {
        Some(r) => counts_json(o, &r.no_site.totals()),
        None => counts_json(o, &RouteTotals::default()),
    }
    o.push_str(",\"backends\":[");
    for (i, b) in rev.iter().flat_map(|r| &r.backends).enumerate() {
        if i > 0 {
            o.push(',');
        }
        backend_json(o, b);
    }
    o.push(']');
}

fn site_json(o: &mut String, s: &Site, backends: &[Backend]) {
    let _ = write!(o, "{{\"name\":\"{}\",\"hosts\":[", json(&s.name));
    for (i, h) in s.hosts.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(o, "\"{}\"", json(h));
    }
    o.push_str("],\"no_route\":");
    counts_json(o, &s.no_route.totals());
    o.push_str(",\"routes\":[");
    for (i, r) in s.routes.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"name\":\"{}\",\"path\":\"{}\",",
            json(&r.name),
            json(&r.path)
        );
        match &r.action {
            RouteAction::Backend(b) => {
                let name = backends.get(*b).map_or("", |b| b.name.as_str());
                let _ = write!(o, "\"backend\":\"{}\",", json(name));
            }
            RouteAction::Redirect { to, status } => {
                let _ = write!(
                    o,
                    "\"redirect\":\"{}\",\"redirect_status\":{status},",
                    json(to)
                );
            }
        }
        counts_fields(o, &r.stats.totals());
        o.push('}');
    }
    o.push_str("]}");
}

/// `{"requests":N,"codes":{"1xx":…},"avg_ms":…}`.
fn counts_json(o: &mut String, t: &RouteTotals) {
    o.push('{');
    counts_fields(o, t);
    o.push('}');
}

/// `"requests":N,"codes":{"1xx":…},"avg_ms":…`: the mean in ms with µs precision.
fn counts_fields(o: &mut String, t: &RouteTotals) {
    let n = t.requests();
    let _ = write!(o, "\"requests\":{n},\"codes\":{{");
    for (i, (class, c)) in CLASSES.iter().zip(t.codes).enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(o, "\"{class}\":{c}");
    }
    let avg_us = t.sum_us.checked_div(n).unwrap_or(0);
    let _ = write!(o, "}},\"avg_ms\":{}", decimal(avg_us, 1000));
}

/// A mode as the config spells it.
pub fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::RoundRobin => "round_robin",
        Mode::Best => "best",
        Mode::Priority => "priority",
        Mode::Random => "random",
        Mode::LeastConn => "least_conn",
        Mode::Hash => "hash",
    }
}

fn backend_json(o: &mut String, b: &Backend) {
    let online = b
        .pool
        .members
        .iter()
        .filter(|m| m.state.is_online())
        .count();
    // The queue: slots held (every request in flight counts, with or without a limit), the
    // limits in force, requests waiting, and those refused (full or timed out).
    let q = &b.queue.state;
    let (max_active, max_queued) = q.limits();
    let (full, timed_out) = q.rejected();
    let _ = write!(
        o,
        "{{\"name\":\"{}\",\"mode\":\"{}\",\"online\":{online},\"retries\":{},\"active\":{},\"max_active\":{max_active},\"queued\":{},\"max_queued\":{max_queued},\"queue_rejected\":{},\"queue_timeouts\":{timed_out},\"servers\":[",
        json(&b.name),
        mode_name(b.pool.mode),
        b.shared.retries(),
        q.active(),
        q.queued(),
        full + timed_out,
    );
    for (i, m) in b.pool.members.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let st = &m.state;
        let _ = write!(
            o,
            "{{\"url\":\"{}\",\"online\":{},\"circuit\":\"{}\",\"draining\":{},\"active\":{},\"latency_ms\":{},\"consecutive_failures\":{},\"requests\":{},\"failures\":{},\"last_failure\":\"{}\",\"weight\":{},\"priority\":{},\"max_active\":{}}}",
            json(&m.config_url),
            st.is_online(),
            st.circuit().name(),
            st.is_draining(),
            st.active(),
            st.latency_ms(),
            st.consecutive_failures(),
            st.requests(),
            st.failures(),
            json(&st.last_failure()),
            m.weight,
            m.priority,
            m.max_active,
        );
    }
    o.push_str("]}");
}
