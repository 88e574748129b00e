//! Counters and their two renderings: Prometheus text (format 0.0.4) for `/metrics` and JSON
//! for `/status`.
//!
//! Every counter a request bumps lives in its worker's own `WorkerStats` (one writer, on its
//! own cache line) and is summed when read. Counters are 64-bit values kept as two 32-bit
//! halves behind a sequence number, because 32-bit MIPS has no 64-bit atomics and a byte
//! counter passes 4 GiB quickly.
//!
//! `site` holds the reverse role's families (per site and route, per backend server).

mod site;

pub use site::{answered as site_answered, decimal, mode_name, RouteStats, RouteTotals, BOUNDS_US};

use crate::config::Config;
use std::fmt::Write;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Instant;

/// A 64-bit counter with one writer and any number of readers, from 32-bit atomics only.
#[derive(Default)]
pub struct Counter64 {
    seq: AtomicU32,
    lo: AtomicU32,
    hi: AtomicU32,
}

impl Counter64 {
    /// Adds `n`. Only the owning thread may call this.
    pub fn add(&self, n: u64) {
        if n == 0 {
            return;
        }
        let v = self.get_unsynced() + n;
        // An odd sequence number tells readers a write is under way (a seqlock).
        self.seq.fetch_add(1, Ordering::AcqRel);
        self.lo.store(v as u32, Ordering::Release);
        self.hi.store((v >> 32) as u32, Ordering::Release);
        self.seq.fetch_add(1, Ordering::AcqRel);
    }

    fn get_unsynced(&self) -> u64 {
        (self.hi.load(Ordering::Relaxed) as u64) << 32 | self.lo.load(Ordering::Relaxed) as u64
    }

    /// The current value, from any thread.
    pub fn get(&self) -> u64 {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1.is_multiple_of(2) {
                let v = (self.hi.load(Ordering::Acquire) as u64) << 32
                    | self.lo.load(Ordering::Acquire) as u64;
                if self.seq.load(Ordering::Acquire) == s1 {
                    return v;
                }
            }
            std::hint::spin_loop();
        }
    }
}

/// One worker's counters.
#[repr(align(64))]
#[derive(Default)]
pub struct WorkerStats {
    pub requests: Counter64,
    pub success: Counter64,
    pub failed: Counter64,
    pub connect: Counter64,
    pub http: Counter64,
    pub direct: Counter64,
    pub bytes_received: Counter64,
    pub bytes_sent: Counter64,
}

impl WorkerStats {
    /// Counts one request or tunnel when it ends. `ok`: a response from the upstream or origin
    /// (any status), or a tunnel, reached the client; otherwise ferry answered with an error.
    pub fn request_done(&self, connect: bool, direct: bool, ok: bool, received: u64, sent: u64) {
        self.requests.add(1);
        if ok { &self.success } else { &self.failed }.add(1);
        if connect { &self.connect } else { &self.http }.add(1);
        if direct {
            self.direct.add(1);
        }
        self.bytes_received.add(received);
        self.bytes_sent.add(sent);
    }
}

/// Process-wide statistics.
pub struct Stats {
    pub started: Instant,
    pub workers: Box<[WorkerStats]>,
    /// Written by the control thread only.
    pub health_checks: AtomicUsize,
    pub health_checks_ok: AtomicUsize,
    pub reloads: AtomicUsize,
    pub reload_failures: AtomicUsize,
}

impl Stats {
    pub fn new(workers: usize) -> Stats {
        Stats {
            started: Instant::now(),
            workers: (0..workers.max(1))
                .map(|_| WorkerStats::default())
                .collect(),
            health_checks: AtomicUsize::new(0),
            health_checks_ok: AtomicUsize::new(0),
            reloads: AtomicUsize::new(0),
            reload_failures: AtomicUsize::new(0),
        }
    }

    /// The counters of worker `id`.
    pub fn worker(&self, id: usize) -> &WorkerStats {
        &self.workers[id.min(self.workers.len() - 1)]
    }

    fn sum(&self, f: impl Fn(&WorkerStats) -> &Counter64) -> u64 {
        self.workers.iter().map(|w| f(w).get()).sum()
    }
}

/// Everything `/metrics` and `/status` show, read once.
pub struct Snapshot<'a> {
    pub stats: &'a Stats,
    pub config: &'a Config,
    pub active: usize,
    pub panics: usize,
    pub draining: bool,
}

/// Escapes a label value (Prometheus text format: backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Escapes a JSON string's contents.
pub(crate) fn json(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o
}

impl Snapshot<'_> {
    /// Prometheus text format 0.0.4: one `# HELP`/`# TYPE` group per family.
    pub fn prometheus(&self) -> String {
        let s = self.stats;
        let n = |a: &AtomicUsize| a.load(Ordering::Relaxed) as u64;
        let families: [(&str, &str, &str, u64); 15] = [
            (
                "ferry_uptime_seconds",
                "gauge",
                "Seconds since ferry started.",
                s.started.elapsed().as_secs(),
            ),
            (
                "ferry_requests_total",
                "counter",
                "Requests and tunnels, counted when they end.",
                s.sum(|w| &w.requests),
            ),
            (
                "ferry_requests_success_total",
                "counter",
                "Requests whose response (any status) or tunnel reached the client.",
                s.sum(|w| &w.success),
            ),
            (
                "ferry_requests_failed_total",
                "counter",
                "Requests that ferry answered with an error.",
                s.sum(|w| &w.failed),
            ),
            (
                "ferry_connect_requests_total",
                "counter",
                "CONNECT requests.",
                s.sum(|w| &w.connect),
            ),
            (
                "ferry_http_requests_total",
                "counter",
                "Plain HTTP requests.",
                s.sum(|w| &w.http),
            ),
            (
                "ferry_direct_requests_total",
                "counter",
                "Requests sent directly rather than through an upstream.",
                s.sum(|w| &w.direct),
            ),
            (
                "ferry_bytes_received_total",
                "counter",
                "Bytes received from clients.",
                s.sum(|w| &w.bytes_received),
            ),
            (
                "ferry_bytes_sent_total",
                "counter",
                "Bytes sent to clients.",
                s.sum(|w| &w.bytes_sent),
            ),
            (
                "ferry_active_connections",
                "gauge",
                "Client connections open.",
                self.active as u64,
            ),
            (
                "ferry_health_checks_total",
                "counter",
                "Active health probes finished.",
                n(&s.health_checks),
            ),
            (
                "ferry_health_checks_success_total",
                "counter",
                "Active health probes that succeeded.",
                n(&s.health_checks_ok),
            ),
            (
                "ferry_reloads_total",
                "counter",
                "Configuration reloads applied.",
                n(&s.reloads),
            ),
            (
                "ferry_reload_failures_total",
                "counter",
                "Configuration reloads refused.",
                n(&s.reload_failures),
            ),
            (
                "ferry_panics_total",
                "counter",
                "Sessions closed after a panic.",
                self.panics as u64,
            ),
        ];
        type Read = fn(&crate::upstream::UpstreamState) -> u64;
        let per_upstream: [(&str, &str, &str, Read); 6] = [
            (
                "ferry_upstream_online",
                "gauge",
                "1 when the upstream is online.",
                |u| u.is_online() as u64,
            ),
            (
                "ferry_upstream_active_connections",
                "gauge",
                "Requests and tunnels using the upstream now.",
                |u| u.active() as u64,
            ),
            (
                "ferry_upstream_latency_ms",
                "gauge",
                "EMA of the time to the upstream's response head, in ms.",
                |u| u.latency_ms() as u64,
            ),
            (
                "ferry_upstream_consecutive_failures",
                "gauge",
                "Failures since the last success.",
                |u| u.consecutive_failures() as u64,
            ),
            (
                "ferry_upstream_requests_total",
                "counter",
                "Attempts sent through the upstream.",
                |u| u.requests() as u64,
            ),
            (
                "ferry_upstream_failures_total",
                "counter",
                "Attempts through the upstream that failed by its fault.",
                |u| u.failures() as u64,
            ),
        ];
        let mut o = String::with_capacity(4096);
        for (name, kind, help, v) in families {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        // Each upstream once, labelled with its URL as configured. Two upstreams may share a
        // URL (another username, in another pool): later ones get an `account` ordinal so
        // that every series stays unique, without naming the account.
        let uniq = self.config.unique_upstreams();
        let ups: Vec<_> = uniq
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let same = uniq[..i]
                    .iter()
                    .filter(|o| o.config_url == u.config_url)
                    .count();
                let mut l = format!("url=\"{}\"", label(&u.config_url));
                if same > 0 {
                    let _ = write!(l, ",account=\"{}\"", same + 1);
                }
                (l, &u.state)
            })
            .collect();
        for (name, kind, help, read) in per_upstream {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, state) in &ups {
                let _ = writeln!(o, "{name}{{{labels}}} {}", read(state));
            }
        }
        if let Some(rev) = self.config.reverse.as_ref() {
            site::prometheus(&mut o, rev);
        }
        #[cfg(feature = "tls")]
        crate::tls::write_metrics(&mut o, self.config);
        o
    }

    /// `/readyz`: ready unless draining, a pool of the forward role can serve nothing (none
    /// of its members online, and it does not go direct then; an empty pool that rejects
    /// cannot either) or a backend has no server online. The JSON body names what is not
    /// ready. Without a forward listener the pools serve nobody and do not count.
    pub fn readiness(&self) -> (bool, String) {
        let forward = self.config.listen.is_some();
        let pools: Vec<&str> = self
            .config
            .pools
            .iter()
            .filter(|_| forward)
            .filter(|p| {
                p.on_all_down != crate::config::OnAllDown::Direct
                    && !p.members.iter().any(|m| m.state.is_online())
            })
            .map(|p| p.name.as_str())
            .collect();
        let backends: Vec<&str> = self
            .config
            .reverse
            .iter()
            .flat_map(|r| &r.backends)
            // A server drained for maintenance serves no new request either.
            .filter(|b| !b.pool.members.iter().any(|m| m.state.is_selectable()))
            .map(|b| b.name.as_str())
            .collect();
        let ready = !self.draining && pools.is_empty() && backends.is_empty();
        let list = |names: &[&str]| {
            let quoted: Vec<String> = names.iter().map(|n| format!("\"{}\"", json(n))).collect();
            quoted.join(",")
        };
        let body = format!(
            "{{\"ready\":{ready},\"draining\":{},\"pools_down\":[{}],\"backends_down\":[{}]}}",
            self.draining,
            list(&pools),
            list(&backends)
        );
        (ready, body)
    }

    /// `/status`: http-proxy-lb's keys with their meanings (so its users' scripts keep
    /// working), then ferry's own beside them. `upstreams` is flat, each upstream once (see
    /// `Config::unique_upstreams`); `pools` lists every pool's members with their settings there.
    pub fn status_json(&self) -> String {
        let s = self.stats;
        let mut o = String::with_capacity(2048);
        let _ = write!(
            o,
            "{{\"uptime_seconds\":{},\"requests_total\":{},\"requests_success\":{},\"requests_failed\":{},\"connect_requests\":{},\"http_requests\":{},\"direct_connections\":{},\"bytes_received\":{},\"bytes_sent\":{},\"active_connections\":{},\"health_checks_total\":{},\"health_checks_success\":{},\"hot_reloads\":{},\"upstreams\":[",
            s.started.elapsed().as_secs(),
            s.sum(|w| &w.requests),
            s.sum(|w| &w.success),
            s.sum(|w| &w.failed),
            s.sum(|w| &w.connect),
            s.sum(|w| &w.http),
            s.sum(|w| &w.direct),
            s.sum(|w| &w.bytes_received),
            s.sum(|w| &w.bytes_sent),
            self.active,
            s.health_checks.load(Ordering::Relaxed),
            s.health_checks_ok.load(Ordering::Relaxed),
            s.reloads.load(Ordering::Relaxed),
        );
        for (i, u) in self.config.unique_upstreams().into_iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            upstream_json(&mut o, u);
        }
        let _ = write!(
            o,
            "],\"status\":\"{}\",\"panics\":{},\"reload_failures\":{},\"pools\":[",
            if self.draining { "draining" } else { "ok" },
            self.panics,
            s.reload_failures.load(Ordering::Relaxed),
        );
        for (pi, p) in self.config.pools.iter().enumerate() {
            if pi > 0 {
                o.push(',');
            }
            let online = p.members.iter().filter(|m| m.state.is_online()).count();
            let _ = write!(
                o,
                "{{\"name\":\"{}\",\"mode\":\"{:?}\",\"online\":{online},\"upstreams\":[",
                json(&p.name),
                p.mode
            );
            for (i, u) in p.members.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                upstream_json(&mut o, u);
            }
            o.push_str("]}");
        }
        o.push_str("],");
        site::status_json(&mut o, self.config.reverse.as_ref());
        #[cfg(feature = "tls")]
        crate::tls::status_json(&mut o, self.config);
        o.push('}');
        o
    }
}

/// One upstream as `/status` shows it: http-proxy-lb's fields, then ferry's.
fn upstream_json(o: &mut String, u: &crate::config::UpstreamSpec) {
    let st = &u.state;
    let _ = write!(
        o,
        "{{\"url\":\"{}\",\"online\":{},\"active_connections\":{},\"latency_ms\":{},\"consecutive_failures\":{},\"weight\":{},\"priority\":{},\"requests\":{},\"failures\":{},\"last_failure\":\"{}\"}}",
        json(&u.config_url),
        st.is_online(),
        st.active(),
        st.latency_ms(),
        st.consecutive_failures(),
        u.weight,
        u.priority,
        st.requests(),
        st.failures(),
        json(&st.last_failure())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter64_carries_past_32_bits() {
        let c = Counter64::default();
        c.add(u32::MAX as u64);
        c.add(2);
        assert_eq!(c.get(), u32::MAX as u64 + 2);
        c.add(5 << 32);
        assert_eq!(c.get(), (5u64 << 32) + u32::MAX as u64 + 2);
    }

    #[test]
    fn counter64_reads_are_consistent_while_written() {
        let c = std::sync::Arc::new(Counter64::default());
        let w = c.clone();
        let t = std::thread::spawn(move || {
            for _ in 0..200_000 {
                w.add(0x8000_0000);
            }
        });
        let mut last = 0;
        for _ in 0..200_000 {
            let v = c.get();
            assert!(v >= last, "went backwards: {v} < {last}");
            assert_eq!(v % 0x8000_0000, 0, "torn read {v:#x}");
            last = v;
        }
        t.join().unwrap();
        assert_eq!(c.get(), 200_000 * 0x8000_0000);
    }

    #[test]
    fn status_is_flat_and_labels_stay_unique_when_two_accounts_share_a_url() {
        let c = crate::config::parse(
            "listen: 127.0.0.1:1\nupstream: [{url: 'http://a:1/', username: u, password: p}]\npools:\n  eu:\n    upstream: [{url: 'http://a:1/', username: u, password: p}, {url: 'http://b:1'}]\n  us:\n    upstream: [{url: 'http://a:1/', username: v, password: q}]\n",
            None,
        )
        .unwrap();
        let stats = Stats::new(1);
        let snap = Snapshot {
            stats: &stats,
            config: &c,
            active: 0,
            panics: 0,
            draining: false,
        };
        let status = snap.status_json();
        let flat =
            &status[status.find("\"upstreams\":[").unwrap()..status.find("],\"status\"").unwrap()];
        assert_eq!(flat.matches("\"url\":").count(), 3, "{flat}");
        let m = snap.prometheus();
        assert!(
            m.contains("ferry_upstream_online{url=\"http://a:1/\"} 1\n"),
            "{m}"
        );
        assert!(m.contains("ferry_upstream_online{url=\"http://a:1/\",account=\"2\"} 1\n"));
        assert!(!m.contains("u:") && !status.contains("u:"));
    }

    const REVERSE: &str = r#"
reverse:
  listen: ["127.0.0.1:1"]
  sites:
    - name: 'a"b\c'
      hosts: ["app.test", "*.app.test"]
      routes:
        - {path: "/", backend: web}
        - {path: "/api", name: api, backend: api}
        - {path: "/old", redirect: {to: "https://new.test"}}
  backends:
    api: {servers: [{url: "http://127.0.0.1:1"}, {url: "http://LOCALHOST:2/"}]}
    web: {servers: [{url: "http://127.0.0.1:3"}]}
workers: 2
"#;

    fn snapshot<'a>(stats: &'a Stats, config: &'a Config) -> Snapshot<'a> {
        Snapshot {
            stats,
            config,
            active: 0,
            panics: 0,
            draining: false,
        }
    }

    #[test]
    fn histogram_buckets_are_inclusive_upper_bounds_and_classes_clamp() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        let r = RouteStats::new(2);
        r.done(0, 200, ms(5)); // exactly on a bound: that bucket (`le` is "less or equal")
        r.done(1, 404, Duration::from_micros(5_001)); // just past it: the next
        r.done(0, 503, ms(10_001)); // beyond the last bound: +Inf only
        r.done(1, 101, Duration::ZERO);
        r.done(0, 999, ms(250)); // no sixth class: 5xx
        r.done(1, 42, ms(1)); // nor a zeroth: 1xx
        let t = r.totals();
        assert_eq!(t.codes, [2, 1, 0, 1, 2]);
        assert_eq!(t.requests(), 6);
        //               5ms 10 25 50 100 250 500 1s 2.5 5 10
        assert_eq!(t.cumulative, [3, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5]);
        assert_eq!(t.sum_us, 5_000 + 5_001 + 10_001_000 + 250_000 + 1_000);
    }

    #[test]
    fn route_counts_are_summed_across_workers_and_unknown_workers_are_not_counted() {
        let r = RouteStats::new(3);
        for w in 0..3 {
            for _ in 0..=w {
                r.done(w, 200, std::time::Duration::from_millis(20));
            }
        }
        // A worker index past the cells (a file written for more workers than run) would
        // share a single-writer counter: it is dropped instead.
        r.done(3, 200, std::time::Duration::ZERO);
        let t = r.totals();
        assert_eq!((t.codes[1], t.cumulative[2], t.sum_us), (6, 6, 120_000));
    }

    #[test]
    fn site_and_backend_families_are_well_formed_with_escaped_bounded_labels() {
        let c = crate::config::parse(REVERSE, None).unwrap();
        let rev = c.reverse.as_ref().unwrap();
        rev.sites[0].routes[1]
            .stats
            .done(1, 204, std::time::Duration::from_micros(1_500));
        rev.no_site
            .done(0, 404, std::time::Duration::from_micros(20));
        rev.backends[0].pool.members[1]
            .state
            .passive_failure(0, 1, "refused");
        rev.backends[0].pool.members[0].state.passive_success(1234);
        let stats = Stats::new(2);
        let m = snapshot(&stats, &c).prometheus();
        let site = r#"site="a\"b\\c""#;
        for line in [
            format!(r#"ferry_site_requests_total{{{site},route="api",code="2xx"}} 1"#),
            format!(r#"ferry_site_requests_total{{{site},route="api",code="5xx"}} 0"#),
            format!(r#"ferry_site_requests_total{{{site},route="-",code="4xx"}} 0"#),
            r#"ferry_site_requests_total{site="-",route="-",code="4xx"} 1"#.into(),
            format!(r#"ferry_site_request_duration_seconds_bucket{{{site},route="api",le="0.005"}} 1"#),
            format!(r#"ferry_site_request_duration_seconds_bucket{{{site},route="api",le="+Inf"}} 1"#),
            format!(r#"ferry_site_request_duration_seconds_sum{{{site},route="api"}} 0.0015"#),
            format!(r#"ferry_site_request_duration_seconds_count{{{site},route="api"}} 1"#),
            format!(r#"ferry_site_request_duration_seconds_count{{{site},route="/old"}} 0"#),
            r#"ferry_site_request_duration_seconds_sum{site="-",route="-"} 0.00002"#.into(),
            r#"ferry_backend_server_up{backend="api",server="http://LOCALHOST:2/"} 0"#.into(),
            r#"ferry_backend_server_up{backend="api",server="http://127.0.0.1:1"} 1"#.into(),
            r#"ferry_backend_server_failures_total{backend="api",server="http://LOCALHOST:2/"} 1"#.into(),
            r#"ferry_backend_server_latency_seconds{backend="api",server="http://127.0.0.1:1"} 1.234"#.into(),
            r#"ferry_backend_server_latency_seconds{backend="web",server="http://127.0.0.1:3"} 0"#.into(),
            r#"ferry_backend_server_active{backend="web",server="http://127.0.0.1:3"} 0"#.into(),
            r#"ferry_backend_server_requests_total{backend="web",server="http://127.0.0.1:3"} 0"#.into(),
            r#"ferry_backend_queue_length{backend="web"} 0"#.into(),
            r#"ferry_backend_queue_rejected_total{backend="api",reason="full"} 0"#.into(),
            r#"ferry_backend_queue_rejected_total{backend="api",reason="timeout"} 0"#.into(),
        ] {
            assert!(m.contains(&format!("{line}\n")), "missing {line}");
        }
        // What `promtool check metrics` looks at: every sample belongs to a family declared
        // once with HELP and TYPE before its samples, counters end in `_total`, histograms
        // only have `_bucket`/`_sum`/`_count`, and no series appears twice.
        let mut families: Vec<(String, String)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut help = None;
        for line in m.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                help = rest.split(' ').next().map(String::from);
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(help.as_deref(), Some(name), "HELP before TYPE for {name}");
                assert!(
                    !families.iter().any(|(n, _)| n == name),
                    "{name} declared twice"
                );
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "{name}");
                }
                families.push((name.into(), kind.into()));
                continue;
            }
            let series = line.rsplit_once(' ').unwrap().0;
            assert!(seen.insert(series.to_string()), "{series} twice");
            let name = &series[..series.find('{').unwrap_or(series.len())];
            let (family, kind) = families.last().unwrap();
            let ok = match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(family)),
                _ => name == family,
            };
            assert!(ok, "{name} outside its family {family}");
        }
        for f in [
            "ferry_site_requests_total",
            "ferry_site_request_duration_seconds",
            "ferry_backend_server_up",
            "ferry_backend_server_active",
            "ferry_backend_server_requests_total",
            "ferry_backend_server_failures_total",
            "ferry_backend_server_latency_seconds",
            "ferry_backend_queue_length",
            "ferry_backend_queue_rejected_total",
        ] {
            assert!(families.iter().any(|(n, _)| n == f), "{f} missing");
        }
        // Five classes for each of the four label pairs ("-"/"-", the site's "-", and its
        // three routes), and nothing else: bounded by the config.
        assert_eq!(m.matches("ferry_site_requests_total{").count(), 5 * 5);
    }

    #[test]
    fn a_forward_only_config_has_no_site_families_and_empty_site_keys() {
        let c = crate::config::parse("listen: 127.0.0.1:1\nupstream: []\n", None).unwrap();
        let stats = Stats::new(1);
        let snap = snapshot(&stats, &c);
        assert!(!snap.prometheus().contains("ferry_site_"));
        assert!(!snap.prometheus().contains("ferry_backend_"));
        assert!(snap.status_json().ends_with(",\"sites\":[],\"no_site\":{\"requests\":0,\"codes\":{\"1xx\":0,\"2xx\":0,\"3xx\":0,\"4xx\":0,\"5xx\":0},\"avg_ms\":0},\"backends\":[]}"));
    }

    #[test]
    fn status_lists_sites_with_routes_and_backends_with_servers() {
        let c = crate::config::parse(REVERSE, None).unwrap();
        let rev = c.reverse.as_ref().unwrap();
        let api = &rev.sites[0].routes[1].stats;
        api.done(0, 200, std::time::Duration::from_micros(1_000));
        api.done(1, 502, std::time::Duration::from_micros(2_001));
        rev.backends[0].pool.members[1]
            .state
            .passive_failure(0, 1, "connect: \"refused\"");
        let stats = Stats::new(2);
        let s = snapshot(&stats, &c).status_json();
        assert!(
            s.starts_with("{\"uptime_seconds\":"),
            "http-proxy-lb's keys stay first"
        );
        for part in [
            r#""sites":[{"name":"a\"b\\c","hosts":["app.test","*.app.test"],"no_route":{"requests":0,"#,
            r#"{"name":"api","path":"/api","backend":"api","requests":2,"codes":{"1xx":0,"2xx":1,"3xx":0,"4xx":0,"5xx":1},"avg_ms":1.5}"#,
            r#"{"name":"/old","path":"/old","redirect":"https://new.test","redirect_status":308,"requests":0,"#,
            r#""backends":[{"name":"api","mode":"round_robin","online":1,"retries":0,"active":0,"max_active":0,"queued":0,"max_queued":0,"queue_rejected":0,"queue_timeouts":0,"servers":[{"url":"http://127.0.0.1:1","online":true,"circuit":"closed","#,
            r#"{"url":"http://LOCALHOST:2/","online":false,"circuit":"open","draining":false,"active":0,"latency_ms":0,"consecutive_failures":1,"requests":0,"failures":1,"last_failure":"connect: \"refused\"","weight":1,"priority":100,"max_active":0}"#,
        ] {
            assert!(s.contains(part), "missing {part} in {s}");
        }
        assert!(s.ends_with("]}]}"), "{s}");
    }

    #[test]
    fn readiness_names_the_backends_with_no_server_online() {
        let c = crate::config::parse(REVERSE, None).unwrap();
        let stats = Stats::new(1);
        let (ready, body) = snapshot(&stats, &c).readiness();
        assert!(ready, "{body}");
        let rev = c.reverse.as_ref().unwrap();
        // One of api's two servers down and the other drained: api cannot serve.
        rev.backends[0].pool.members[0]
            .state
            .passive_failure(0, 1, "x");
        rev.backends[0].pool.members[1].state.set_draining(true);
        assert!(!snapshot(&stats, &c).readiness().0);
        // Back from maintenance: api can serve again.
        rev.backends[0].pool.members[1].state.set_draining(false);
        assert!(snapshot(&stats, &c).readiness().0);
        rev.backends[1].pool.members[0]
            .state
            .passive_failure(0, 1, "x");
        let (ready, body) = snapshot(&stats, &c).readiness();
        assert!(!ready);
        assert_eq!(
            body,
            r#"{"ready":false,"draining":false,"pools_down":[],"backends_down":["web"]}"#
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(json("a\"b\u{1}"), "a\\\"b\\u0001");
    }
}
