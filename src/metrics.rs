//! Counters and their two renderings: Prometheus text (format 0.0.4) for `/metrics` and JSON
//! for `/status`.
//!
//! Every counter a request bumps lives in its worker's own `WorkerStats` (one writer, on its
//! own cache line) and is summed when read. Counters are 64-bit values kept as two 32-bit
//! halves behind a sequence number, because 32-bit MIPS has no 64-bit atomics and a byte
//! counter passes 4 GiB quickly.

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
    #[cfg_attr(ferry_lean, optimize(speed))]
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
fn json(v: &str) -> String {
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
        o
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
        o.push_str("]}");
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

    #[test]
    fn escaping() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(json("a\"b\u{1}"), "a\\\"b\\u0001");
    }
}
