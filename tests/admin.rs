//! Black-box tests of the admin server: paths, methods, token, `/status`, and `/metrics`
//! checked by a strict parser of the Prometheus text format.

mod common;

use common::prom::parse as parse_prometheus;
use common::wire::get;
use common::{banner_server, wait_until, Fake, Ferry};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN: &str = "admin_listen: \"127.0.0.1:0\"\n";

#[test]
fn every_admin_path_and_method() {
    let ferry = Ferry::start(ADMIN);
    let r = ferry.admin_get("GET", "/health", "");
    assert_eq!((r.status, r.text().as_str()), (200, "{\"status\":\"ok\"}"));
    assert_eq!(ferry.admin_get("GET", "/readyz", "").status, 200);
    let r = ferry.admin_get("HEAD", "/status", "");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    for p in [
        "/healthzzz",
        "/health/",
        "/index.html",
        "/metrics?x",
        "/api/v1/statsx",
    ] {
        assert_eq!(ferry.admin_get("GET", p, "").status, 404, "{p}");
    }
    let r = ferry.admin_get("POST", "/health", "Content-Length: 0\r\n");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    // keep-alive: several requests on one connection
    let mut w = common::Wire::connect(ferry.admin());
    for _ in 0..3 {
        assert_eq!(
            w.roundtrip(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
                .status,
            200
        );
    }
}

#[test]
fn a_token_guards_every_path() {
    let ferry = Ferry::start(&format!("{ADMIN}admin:\n  token: s3cret\n"));
    let r = ferry.admin_get("GET", "/status", "");
    assert_eq!(r.status, 401);
    assert_eq!(
        ferry
            .admin_get("GET", "/metrics", "Authorization: Bearer wrong\r\n")
            .status,
        401
    );
    assert_eq!(
        ferry
            .admin_get("GET", "/status", "Authorization: Bearer s3cret\r\n")
            .status,
        200
    );
    // RFC 9110 §11.1: the scheme is case-insensitive; the token is not.
    assert_eq!(
        ferry
            .admin_get("GET", "/status", "Authorization: bearer s3cret\r\n")
            .status,
        200
    );
    assert_eq!(
        ferry
            .admin_get("GET", "/status", "Authorization: Bearer S3CRET\r\n")
            .status,
        401
    );
}

#[test]
fn metrics_parse_strictly_and_count_exactly() {
    let origin = Fake::origin("origin");
    let banner = banner_server(b"hi\n");
    let ferry = Ferry::start(ADMIN);
    let samples = parse_prometheus(&ferry.admin_get("GET", "/metrics", "").text());
    for family in [
        "ferry_uptime_seconds",
        "ferry_requests_total",
        "ferry_requests_success_total",
        "ferry_requests_failed_total",
        "ferry_connect_requests_total",
        "ferry_http_requests_total",
        "ferry_direct_requests_total",
        "ferry_bytes_received_total",
        "ferry_bytes_sent_total",
        "ferry_active_connections",
        "ferry_health_checks_total",
        "ferry_health_checks_success_total",
        "ferry_reloads_total",
        "ferry_reload_failures_total",
        "ferry_panics_total",
    ] {
        assert!(samples.iter().any(|(s, _)| s == family), "{family} missing");
    }
    let mut c = ferry.client();
    for _ in 0..3 {
        assert_eq!(c.roundtrip(&get(origin.addr, "/size/100")).status, 200);
    }
    assert_eq!(c.roundtrip(&get(origin.addr, "/status/500")).status, 500); // still a success
    let dead = common::dead_port();
    assert_eq!(ferry.client().roundtrip(&get(dead, "/")).status, 502); // ferry's own error
    let mut t = ferry.client();
    t.send(format!("CONNECT {banner} HTTP/1.1\r\n\r\n").as_bytes());
    t.read_head().unwrap();
    assert_eq!(t.read_exact_n(3), b"hi\n");
    drop(t); // the tunnel ends, and is counted then
    common::wait_until("the counters", || {
        ferry.metric("ferry_requests_total") == Some(6.0)
    });
    assert_eq!(ferry.metric("ferry_requests_success_total"), Some(5.0));
    assert_eq!(ferry.metric("ferry_requests_failed_total"), Some(1.0));
    assert_eq!(ferry.metric("ferry_connect_requests_total"), Some(1.0));
    assert_eq!(ferry.metric("ferry_http_requests_total"), Some(5.0));
    assert_eq!(ferry.metric("ferry_direct_requests_total"), Some(6.0));
    assert!(ferry.metric("ferry_bytes_sent_total").unwrap() >= 300.0);
    drop(c);
    common::wait_until("no active connections", || {
        ferry.metric("ferry_active_connections") == Some(0.0)
    });
}

#[test]
fn status_and_metrics_show_each_upstream() {
    let (a, b) = (Fake::proxy("up1", None), Fake::proxy("up2", None));
    a.set_down(true);
    let ferry = Ferry::start(&format!(
        "{ADMIN}upstream:\n  - url: {}\n    weight: 2\n    priority: 5\n  - url: {}\n    username: u\n    password: hunter2\n",
        a.url(),
        b.url()
    ));
    let mut c = ferry.client();
    for _ in 0..4 {
        assert_eq!(
            c.roundtrip(b"GET http://o.test/size/1 HTTP/1.1\r\nHost: o.test\r\n\r\n")
                .served_by(),
            Some("up2")
        );
    }
    let status = ferry.admin_get("GET", "/status", "").text();
    let want_a = format!(
        "{{\"url\":\"{}\",\"online\":false,\"active_connections\":0,",
        a.url()
    );
    assert!(status.contains(&want_a), "{status}");
    assert!(
        status.contains("\"consecutive_failures\":1,\"weight\":2,\"priority\":5"),
        "{status}"
    );
    // Credentials given as keys are shown nowhere: the url is the one configured.
    let masked = b.url();
    assert!(
        status.contains(&format!("{{\"url\":\"{masked}\",\"online\":true")),
        "{status}"
    );
    assert!(!status.contains("hunter2") && !status.contains("u:"));
    let metrics = ferry.admin_get("GET", "/metrics", "").text();
    parse_prometheus(&metrics);
    assert!(metrics.contains(&format!("ferry_upstream_online{{url=\"{}\"}} 0\n", a.url())));
    assert!(metrics.contains(&format!("ferry_upstream_online{{url=\"{masked}\"}} 1\n")));
    assert!(
        metrics.contains(&format!(
            "ferry_upstream_requests_total{{url=\"{masked}\"}} 4\n"
        )),
        "{metrics}"
    );
    assert!(!metrics.contains("hunter2"));
}

#[test]
fn active_counts_return_to_zero_after_timeouts_errors_and_aborts() {
    let up = Fake::proxy("slow", None);
    let ferry = Ferry::start(&format!(
        "{ADMIN}limits:\n  idle_timeout_secs: 1\nupstream:\n  - url: {}\n",
        up.url()
    ));
    // a timeout: the upstream takes 3 s, the idle timeout is 1 s
    let r = ferry
        .client()
        .roundtrip(b"GET http://o.test/sleep/3000 HTTP/1.1\r\nHost: o.test\r\n\r\n");
    assert_eq!(r.status, 504);
    // a client that gives up mid-request
    let mut quitter = ferry.client();
    quitter.send(b"GET http://o.test/sleep/500 HTTP/1.1\r\nHost: o.test\r\n\r\n");
    common::wait_until("the request to arrive", || {
        up.heads().iter().any(|h| h.contains("/sleep/500"))
    });
    drop(quitter);
    // a CONNECT tunnel through it, ended by the client
    let banner = banner_server(b"x");
    let mut t = ferry.client();
    t.send(format!("CONNECT {banner} HTTP/1.1\r\n\r\n").as_bytes());
    t.read_head().unwrap();
    drop(t);
    let url = up.url();
    common::wait_until("the upstream's active count to return to 0", || {
        ferry.metric(&format!(
            "ferry_upstream_active_connections{{url=\"{url}\"}}"
        )) == Some(0.0)
            && ferry.metric("ferry_active_connections") == Some(0.0)
    });
}

#[test]
fn status_says_why_an_upstream_is_offline_and_readyz_follows_the_pool() {
    let a = Fake::proxy("only", None);
    a.set_down(true);
    let ferry = Ferry::start(&format!("{ADMIN}upstream:\n  - url: {}\n", a.url()));
    assert_eq!(ferry.admin_get("GET", "/readyz", "").status, 200);
    let r = ferry
        .client()
        .roundtrip(b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n");
    assert_eq!(r.status, 502);
    let status = ferry.admin_get("GET", "/status", "").text();
    assert!(
        status.contains(
            "\"last_failure\":\"the upstream proxy closed the connection without responding\""
        ),
        "{status}"
    );
    let r = ferry.admin_get("GET", "/readyz", "");
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            503,
            r#"{"ready":false,"draining":false,"pools_down":["default"],"backends_down":[]}"#
        )
    );
}

#[test]
fn a_connect_refused_before_routing_counts_as_a_connect() {
    let ferry = Ferry::start(&format!("{ADMIN}access:\n  connect_ports: [443]\n"));
    let mut t = ferry.client();
    t.send(b"CONNECT 127.0.0.1:9 HTTP/1.1\r\n\r\n");
    assert_eq!(t.response().status, 403);
    common::wait_until("the count", || {
        ferry.metric("ferry_requests_failed_total") == Some(1.0)
    });
    assert_eq!(ferry.metric("ferry_connect_requests_total"), Some(1.0));
    assert_eq!(ferry.metric("ferry_http_requests_total"), Some(0.0));
}

/// The top-level keys of http-proxy-lb's `/status`, each with its meaning there.
const HTTP_PROXY_LB_KEYS: [&str; 14] = [
    "uptime_seconds",
    "requests_total",
    "requests_success",
    "requests_failed",
    "connect_requests",
    "http_requests",
    "direct_connections",
    "bytes_received",
    "bytes_sent",
    "active_connections",
    "health_checks_total",
    "health_checks_success",
    "hot_reloads",
    "upstreams",
];

#[test]
fn status_has_http_proxy_lb_keys_and_each_upstream_once_as_configured() {
    // up1 is in two pools (one upstream: same URL, same user); up2 has its credentials as
    // keys; up3 has them inside its URL (with a percent-escaped '@') and a trailing slash.
    let a = Fake::proxy("up1", None);
    let b = Fake::proxy("up2", Some("Basic Ym9iOmh1bnRlcjI=")); // bob:hunter2
    let c = Fake::proxy("up3", Some("Basic Y2Fyb2w6czNjckB0")); // carol:s3cr@t
    let c_url = format!("http://carol:s3cr%40t@{}/", c.addr);
    let c_shown = format!("http://carol:***@{}/", c.addr);
    let ferry = Ferry::start_with(
        1,
        &format!(
            "{ADMIN}upstream:\n  - {{url: '{}', weight: 2, priority: 5}}\n  - {{url: '{}', username: bob, password: hunter2}}\n  - {{url: '{c_url}'}}\npools:\n  eu:\n    upstream:\n      - {{url: '{}', weight: 2, priority: 5}}\n",
            a.url(),
            b.url(),
            a.url()
        ),
    );
    // Weights 2, 1, 1: the smooth round-robin sequence starts up1, up2, up3.
    let mut client = ferry.client();
    let mut tags: Vec<String> = (0..3)
        .map(|_| {
            let r = client.roundtrip(b"GET http://o.test/size/1 HTTP/1.1\r\nHost: o.test\r\n\r\n");
            assert_eq!(r.status, 200, "{}", r.text());
            r.served_by().unwrap().to_string()
        })
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        ["up1", "up2", "up3"],
        "each upstream's credentials work"
    );

    // A request is counted when it ends, which may be just after its response went out.
    let (mut text, mut status) = (String::new(), common::json::Json::Null);
    common::wait_until("the third request counted", || {
        text = ferry.admin_get("GET", "/status", "").text();
        status = common::json::Json::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        status.get("requests_total").map(|v| v.as_f64()) == Some(3.0)
    });
    let keys = status.keys();
    for k in HTTP_PROXY_LB_KEYS {
        assert!(keys.contains(&k), "{k} missing: {text}");
    }
    // ferry's extras sit beside them; its old spellings of the same counters are gone.
    for k in &keys {
        assert!(
            HTTP_PROXY_LB_KEYS.contains(k)
                || [
                    "status",
                    "panics",
                    "reload_failures",
                    "pools",
                    "sites",
                    "no_site",
                    "backends"
                ]
                .contains(k),
            "unexpected top-level key {k}"
        );
    }
    assert_eq!(status.get("requests_total").unwrap().as_f64(), 3.0);
    assert_eq!(status.get("requests_success").unwrap().as_f64(), 3.0);
    assert_eq!(status.get("http_requests").unwrap().as_f64(), 3.0);
    assert_eq!(status.get("direct_connections").unwrap().as_f64(), 0.0);
    assert_eq!(status.get("hot_reloads").unwrap().as_f64(), 0.0);

    let ups = status.get("upstreams").unwrap().as_array();
    let urls: Vec<&str> = ups.iter().map(|u| u.get("url").unwrap().as_str()).collect();
    assert_eq!(urls, [a.url().as_str(), b.url().as_str(), c_shown.as_str()]);
    for u in ups {
        for k in [
            "url",
            "online",
            "active_connections",
            "latency_ms",
            "consecutive_failures",
            "weight",
            "priority",
        ] {
            assert!(u.get(k).is_some(), "{k} missing in {u:?}");
        }
        assert!(u.get("online").unwrap().as_bool());
        assert_eq!(u.get("requests").unwrap().as_f64(), 1.0);
    }
    assert_eq!(ups[0].get("weight").unwrap().as_f64(), 2.0);
    assert_eq!(ups[0].get("priority").unwrap().as_f64(), 5.0);
    assert_eq!(ups[1].get("priority").unwrap().as_f64(), 100.0);
    let pools = status.get("pools").unwrap().as_array();
    assert_eq!(pools.len(), 2);

    let metrics = ferry.admin_get("GET", "/metrics", "").text();
    parse_prometheus(&metrics);
    for url in [a.url(), b.url(), c_shown] {
        let line = format!("ferry_upstream_requests_total{{url=\"{url}\"}} 1\n");
        assert!(metrics.contains(&line), "{line} missing: {metrics}");
    }
    for secret in ["hunter2", "bob", "s3cr"] {
        assert!(!text.contains(secret), "{secret} in /status: {text}");
        assert!(!metrics.contains(secret), "{secret} in /metrics");
    }
}

/// Asks `/health` on a fresh connection and returns how long the whole answer took; fails if
/// it did not come, whole, within `within`.
fn health_within(admin: SocketAddr, within: Duration) -> Duration {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&admin, within).expect("connect to the admin port");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(within)).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .expect("send /health");
    let mut got = Vec::new();
    let mut b = [0u8; 1024];
    while !got.ends_with(b"{\"status\":\"ok\"}") && start.elapsed() < within {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    let took = start.elapsed();
    assert!(
        got.starts_with(b"HTTP/1.1 200") && got.ends_with(b"{\"status\":\"ok\"}"),
        "/health got {:?} after {took:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(took < within, "/health took {took:?}");
    took
}

/// A client that pipelines `GET /metrics` without ever reading an answer, until it has sent
/// `limit` bytes; when its connection is closed it opens another. `stalled` turns true once a
/// write has been blocked for a second: ferry stopped reading it.
struct Pipeliner {
    sent: Arc<AtomicUsize>,
    stalled: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Pipeliner {
    fn start(admin: SocketAddr, limit: usize) -> Pipeliner {
        let (sent, stalled, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (sent2, stalled2, stop2) = (sent.clone(), stalled.clone(), stop.clone());
        let connect = move || {
            let s = TcpStream::connect(admin).ok()?;
            s.set_write_timeout(Some(Duration::from_millis(100))).ok()?;
            Some(s)
        };
        let mut s = connect().unwrap();
        std::thread::spawn(move || {
            let batch = b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n".repeat(1000);
            let (mut off, mut blocked_since) = (0, None);
            while !stop2.load(Ordering::SeqCst) {
                if sent2.load(Ordering::SeqCst) >= limit {
                    // Stays connected, still not reading.
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                match s.write(&batch[off..]) {
                    Ok(n) => {
                        sent2.fetch_add(n, Ordering::SeqCst);
                        off = (off + n) % batch.len();
                        blocked_since = None;
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        let since = *blocked_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= Duration::from_secs(1) {
                            stalled2.store(true, Ordering::SeqCst);
                        }
                    }
                    Err(_) => match connect() {
                        Some(again) => (s, off) = (again, 0),
                        None => return,
                    },
                }
            }
        });
        Pipeliner {
            sent,
            stalled,
            stop,
        }
    }

    fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }
}

impl Drop for Pipeliner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// `n` slowloris clients: each opens a connection, begins a request head and adds one byte to
/// it every 100 ms, never finishing it; one that is closed opens a new one.
struct Slowloris {
    connects: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Slowloris {
    fn start(admin: SocketAddr, n: usize) -> Slowloris {
        let connects = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, stop2) = (connects.clone(), stop.clone());
        std::thread::spawn(move || {
            let open = || {
                let mut s = TcpStream::connect(admin).ok()?;
                s.set_nodelay(true).ok()?;
                s.write_all(b"GET /health HTTP/1.1\r\nX-Drip: ").ok()?;
                c2.fetch_add(1, Ordering::SeqCst);
                Some(s)
            };
            let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| open()).collect();
            while !stop2.load(Ordering::SeqCst) {
                for c in conns.iter_mut() {
                    if c.as_mut().is_none_or(|s| s.write_all(b"a").is_err()) {
                        *c = open();
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Slowloris { connects, stop }
    }
}

impl Drop for Slowloris {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_client_that_never_reads_its_answers_is_not_read_from() {
    let ferry = Ferry::start(ADMIN);
    let admin = ferry.admin();
    let before = ferry.rss_kib();
    let p = Pipeliner::start(admin, 256 << 20);
    let mut rss = before;
    // Stops early when memory runs away, so that the unfixed server fails without eating the
    // machine.
    wait_until("ferry to stop reading the pipeliner", || {
        rss = rss.max(ferry.rss_kib());
        p.stalled.load(Ordering::SeqCst) || rss > 256 * 1024
    });
    eprintln!(
        "pipeliner sent {} KiB; ferry's RSS {before} KiB before, {rss} KiB at most",
        p.sent() >> 10
    );
    assert!(
        rss < before + 16 * 1024,
        "RSS grew from {before} KiB to {rss} KiB"
    );
    // Still attached and not reading, it does not slow anyone else down.
    for _ in 0..5 {
        health_within(admin, Duration::from_secs(1));
    }
    assert!(ferry.rss_kib() < before + 16 * 1024);
}

#[test]
fn slow_clients_filling_every_slot_do_not_lock_out_health() {
    let ferry = Ferry::start(ADMIN);
    let admin = ferry.admin();
    // Growth, not size: under an emulator (FERRY_TEST_RUNNER) RSS counts the emulator too.
    let before = ferry.rss_kib();
    // The pipeliner first, until ferry stops reading it; the slow clients' churn then soon
    // pushes it out (it is the most stalled), and it comes back and pipelines again.
    let p = Pipeliner::start(admin, usize::MAX);
    wait_until("ferry to stop reading the pipeliner", || {
        p.stalled.load(Ordering::SeqCst) || ferry.rss_kib() > 256 * 1024
    });
    let loris = Slowloris::start(admin, 70);
    wait_until("70 slow connections", || {
        loris.connects.load(Ordering::SeqCst) >= 70
    });
    // Asked again and again while the slow clients, pushed out to make room, come back.
    let mut slowest = Duration::ZERO;
    wait_until("the slow clients to reconnect 100 times", || {
        slowest = slowest.max(health_within(admin, Duration::from_secs(1)));
        loris.connects.load(Ordering::SeqCst) >= 170
    });
    let rss = ferry.rss_kib();
    eprintln!(
        "/health took {slowest:?} at most; {} slow connections opened; RSS {rss} KiB",
        loris.connects.load(Ordering::SeqCst)
    );
    assert!(
        rss < before + 28 * 1024,
        "RSS {before} KiB before, {rss} KiB after"
    );
}

#[test]
fn bytes_dripping_in_do_not_extend_a_heads_deadline() {
    let ferry = Ferry::start(&format!("{ADMIN}limits:\n  header_timeout_secs: 1\n"));
    let mut s = TcpStream::connect(ferry.admin()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nX-Drip: ").unwrap();
    let start = Instant::now();
    let mut b = [0u8; 64];
    let closed = loop {
        // The read's timeout paces the drip: a byte every 100 ms, far inside the size limit.
        match s.read(&mut b) {
            Ok(0) => break true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break true,
        }
        if s.write_all(b"a").is_err() {
            break true;
        }
        if start.elapsed() > Duration::from_secs(6) {
            break false;
        }
    };
    let took = start.elapsed();
    assert!(closed, "still open after {took:?} of dripping");
    assert!(took < Duration::from_secs(4), "closed only after {took:?}");
}

/// A guard for the way consumed requests are dropped from the input (it passed before that
/// changed too): many pipelined requests, sent at once, are all answered, in order.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let ferry = Ferry::start(ADMIN);
    let mut w = common::Wire::connect(ferry.admin());
    let kinds: [(&str, u16); 4] = [
        ("GET /health HTTP/1.1\r\nHost: a\r\n\r\n", 200),
        ("GET /nope HTTP/1.1\r\nHost: a\r\n\r\n", 404),
        ("HEAD /status HTTP/1.1\r\nHost: a\r\n\r\n", 200),
        ("POST /health HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
    ];
    let n = 2000;
    let mut all = Vec::new();
    for i in 0..n {
        all.extend_from_slice(kinds[i % 4].0.as_bytes());
    }
    all.extend_from_slice(b"GET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n");
    let writer = {
        let mut s = w.stream.try_clone().unwrap();
        std::thread::spawn(move || s.write_all(&all).unwrap())
    };
    for i in 0..n {
        let r = w.response_to(i % 4 == 2);
        assert_eq!(r.status, kinds[i % 4].1, "answer {i}");
    }
    let last = w.response();
    assert_eq!(
        (last.status, last.text().as_str()),
        (
            200,
            r#"{"ready":true,"draining":false,"pools_down":[],"backends_down":[]}"#
        )
    );
    assert!(w.closed());
    writer.join().unwrap();
}

#[test]
fn the_access_log_is_written_whatever_the_log_level() {
    let origin = Fake::origin("origin");
    let yaml = format!("{ADMIN}access_log: true\non_all_down: direct\n");
    let ferry = Ferry::start_with_log_env(&yaml, None);
    ferry.admin();
    // Quieter by reload: the reload's own report is an info line, so it shows in the
    // metrics instead.
    std::fs::write(
        ferry.dir.join("ferry.yaml"),
        format!("listen: \"127.0.0.1:0\"\nworkers: 2\n{yaml}log_level: warn\n"),
    )
    .unwrap();
    ferry.signal(1);
    wait_until("the reload", || {
        ferry.metric("ferry_reloads_total") == Some(1.0)
    });
    let r = ferry.client().roundtrip(&get(origin.addr, "/size/7"));
    assert_eq!(r.status, 200);
    let want = format!("GET http://{}/size/7 via=direct status=200", origin.addr);
    wait_until("the access log line", || ferry.log_text().contains(&want));
    assert!(
        !ferry.log_text().contains("config reloaded"),
        "info lines are still logged"
    );
}

#[test]
fn readyz_is_503_while_a_pool_can_serve_nothing() {
    // An empty pool that rejects answers every request 502: not ready.
    let ferry = Ferry::start(&format!("{ADMIN}upstream: []\n"));
    assert_eq!(ferry.admin_get("GET", "/readyz", "").status, 503);
    // The same pool going direct serves everything.
    let ferry = Ferry::start(&format!("{ADMIN}upstream: []\non_all_down: direct\n"));
    assert_eq!(ferry.admin_get("GET", "/readyz", "").status, 200);
}

/// A connection to `to` from the loopback address `from` (any of 127.0.0.0/8).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    s.bind(&local.into()).unwrap();
    s.connect(&to.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    s
}

#[test]
fn a_full_admin_server_takes_room_from_the_busiest_address_not_an_idle_monitor() {
    let ferry = Ferry::start(ADMIN);
    let admin = ferry.admin();
    let ask = |w: &mut common::Wire| {
        w.send(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(w.response().status, 200);
    };
    // A monitor on a kept connection, answered first...
    let mut monitor = common::Wire::from_stream(connect_from("127.0.0.1", admin));
    ask(&mut monitor);
    // ...then 63 more connections from other addresses, each answered after it: the table
    // is full and the monitor is the one idle longest.
    let mut others = Vec::new();
    for i in 0..63 {
        let from = format!("127.0.0.{}", 2 + i / 15);
        let mut w = common::Wire::from_stream(connect_from(&from, admin));
        ask(&mut w);
        others.push(w);
    }
    // One more client: someone must make way, and it is not the monitor.
    let mut late = common::Wire::from_stream(connect_from("127.0.0.9", admin));
    ask(&mut late);
    ask(&mut monitor);
}

#[test]
fn empty_lines_before_an_admin_request_are_skipped() {
    let ferry = Ferry::start(ADMIN);
    let mut w = common::Wire::connect(ferry.admin());
    w.send(b"\r\n\r\nGET /health HTTP/1.1\r\nHost: a\r\n\r\n\r\nGET /health HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(w.response().status, 200);
    assert_eq!(w.response().status, 200);
}
