//! Black-box tests of the upstream pool: selection modes, passive and active health,
//! failover, pools and rules. The fake upstreams tag their replies and answer the
//! generate_204 probe themselves; health intervals are 1 s so that probes come quickly.

mod common;

use common::wire::get;
use common::{banner_server, pattern, Fake, Ferry, Wire};
use std::sync::atomic::Ordering;

/// `upstream:` entries for `ups`, each with extra YAML keys (`weight: 3`, ...).
fn ups(list: &[(&Fake, &str)]) -> String {
    let mut y = String::from("upstream:\n");
    for (u, extra) in list {
        y.push_str(&format!("  - url: {}\n", u.url()));
        for kv in extra.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            y.push_str(&format!("    {kv}\n"));
        }
    }
    y
}

const FAST_HEALTH: &str = "health_check:\n  interval_secs: 1\n  timeout_secs: 1\n";

fn fetch(c: &mut Wire, path: &str) -> common::wire::Response {
    c.roundtrip(format!("GET http://o.test{path} HTTP/1.1\r\nHost: o.test\r\n\r\n").as_bytes())
}

fn served_by(c: &mut Wire) -> String {
    let r = fetch(c, "/size/3");
    assert_eq!(r.status, 200, "{}", r.text());
    r.served_by().unwrap().to_string()
}

#[test]
fn weighted_round_robin_is_one_to_three_and_interleaved() {
    let (a, b) = (Fake::proxy("up1", None), Fake::proxy("up2", None));
    let ferry = Ferry::start_with(1, &ups(&[(&a, "weight: 1"), (&b, "weight: 3")]));
    let mut c = ferry.client();
    let tags: Vec<String> = (0..400).map(|_| served_by(&mut c)).collect();
    let n1 = tags.iter().filter(|t| *t == "up1").count();
    assert!(
        (90..=110).contains(&n1),
        "{n1} of 400 to the weight-1 upstream"
    );
    // interleaved: never more than 3 in a row for the heavy one, never 2 for the light one
    let runs = |tag: &str| tags.split(|t| t != tag).map(|r| r.len()).max().unwrap_or(0);
    assert!(runs("up2") <= 3 && runs("up1") <= 1, "blocky order");
}

#[test]
fn best_prefers_the_fast_upstream() {
    let (fast, slow) = (Fake::proxy("fast", None), Fake::proxy("slow", None));
    slow.knobs.delay_ms.store(80, Ordering::SeqCst);
    let ferry = Ferry::start_with(
        1,
        &format!("mode: best\n{}", ups(&[(&fast, ""), (&slow, "")])),
    );
    let mut c = ferry.client();
    let tags: Vec<String> = (0..50).map(|_| served_by(&mut c)).collect();
    let n = tags.iter().filter(|t| *t == "fast").count();
    assert!(n >= 40, "only {n} of 50 to the 0 ms upstream");
}

#[test]
fn best_avoids_an_upstream_with_a_request_in_flight() {
    // A request in flight adds 50 ms to an upstream's score, against latency EMAs of about a
    // millisecond here. Under an emulator (qemu in CI) each request takes tens of ms, the two
    // EMAs drift apart by more than 50 ms and "best" rightly follows them, so the premise
    // of this test does not hold there; the selection rule itself has unit tests.
    if common::emulated() {
        eprintln!("skipped under FERRY_TEST_RUNNER: it depends on fast, equal latencies");
        return;
    }
    let (a, b) = (Fake::proxy("b1", None), Fake::proxy("b2", None));
    let ferry = Ferry::start_with(1, &format!("mode: best\n{}", ups(&[(&a, ""), (&b, "")])));
    let mut c = ferry.client();
    // Equal and fast: ties are shared, so both get a latency sample.
    let warm: Vec<String> = (0..6).map(|_| served_by(&mut c)).collect();
    assert!(
        warm.iter().any(|t| t == "b1") && warm.iter().any(|t| t == "b2"),
        "{warm:?}"
    );
    let mut hog = ferry.client();
    hog.send(b"GET http://o.test/sleep/3000 HTTP/1.1\r\nHost: o.test\r\n\r\n");
    common::wait_until("the long request to arrive", || {
        a.heads()
            .iter()
            .chain(b.heads().iter())
            .any(|h| h.contains("/sleep/3000"))
    });
    let busy = if a.heads().iter().any(|h| h.contains("/sleep/3000")) {
        "b1"
    } else {
        "b2"
    };
    let others = (0..10).filter(|_| served_by(&mut c) != busy).count();
    assert!(others >= 9, "{others} of 10 avoided the busy upstream");
    assert_eq!(hog.response().text(), "slept");
}

#[test]
fn priority_fails_over_level_by_level_and_back() {
    let (a, b, c3) = (
        Fake::proxy("p10", None),
        Fake::proxy("p20", None),
        Fake::proxy("p30", None),
    );
    let ferry = Ferry::start(&format!(
        "mode: priority\n{FAST_HEALTH}{}",
        ups(&[
            (&a, "priority: 10"),
            (&b, "priority: 20"),
            (&c3, "priority: 30")
        ])
    ));
    let mut c = ferry.client();
    assert_eq!(served_by(&mut c), "p10");
    a.set_down(true);
    assert_eq!(served_by(&mut c), "p20"); // no client-visible error
    assert_eq!(served_by(&mut c), "p20");
    b.set_down(true);
    assert_eq!(served_by(&mut c), "p30");
    // p10 comes back: the next probe (1 s) restores it and traffic returns to the best level.
    a.set_down(false);
    common::wait_until("failback to priority 10", || served_by(&mut c) == "p10");
    // The log is read from ferry's stderr by another thread: it may lag a moment.
    let line = format!("upstream {} is online again", a.url());
    common::wait_until("the online-again log line", || {
        ferry.log_text().contains(&line)
    });
}

#[test]
fn hash_sticks_and_moves_only_the_removed_upstreams_hosts() {
    let fakes = [
        Fake::proxy("h1", None),
        Fake::proxy("h2", None),
        Fake::proxy("h3", None),
    ];
    let ferry = Ferry::start(&format!(
        "mode: hash\nhash_key: host\n{}",
        ups(&[(&fakes[0], ""), (&fakes[1], ""), (&fakes[2], "")])
    ));
    let mut c = ferry.client();
    let map = |c: &mut Wire| -> Vec<String> {
        (0..30)
            .map(|i| {
                let r = c.roundtrip(
                    format!("GET http://h{i}.test/size/1 HTTP/1.1\r\nHost: h{i}.test\r\n\r\n")
                        .as_bytes(),
                );
                assert_eq!(r.status, 200);
                r.served_by().unwrap().to_string()
            })
            .collect()
    };
    let before = map(&mut c);
    assert_eq!(map(&mut c), before, "not sticky");
    assert!(before.iter().any(|t| t == "h2"));
    fakes[1].set_down(true);
    let after = map(&mut c);
    for (b, a) in before.iter().zip(&after) {
        if b == "h2" {
            assert_ne!(a, "h2");
        } else {
            assert_eq!(a, b, "a host moved that was not on the removed upstream");
        }
    }
}

#[test]
fn random_and_least_conn_spread_the_load() {
    for mode in ["random", "least_conn"] {
        let (a, b) = (Fake::proxy("r1", None), Fake::proxy("r2", None));
        let ferry = Ferry::start(&format!("mode: {mode}\n{}", ups(&[(&a, ""), (&b, "")])));
        let mut c = ferry.client();
        let n1 = (0..60).filter(|_| served_by(&mut c) == "r1").count();
        assert!(
            (10..=50).contains(&n1),
            "{mode}: {n1} of 60 to one upstream"
        );
    }
}

#[test]
fn a_dead_upstream_causes_no_client_error_and_shows_offline() {
    let (a, b) = (Fake::proxy("d1", None), Fake::proxy("d2", None));
    a.set_down(true);
    let ferry = Ferry::start(&ups(&[(&a, ""), (&b, "")]));
    let mut c = ferry.client();
    for _ in 0..20 {
        assert_eq!(served_by(&mut c), "d2");
    }
    let want = format!("upstream {} is offline", a.url());
    common::wait_until("the offline log line", || ferry.log_text().contains(&want));
    // offline means not tried again: one failed attempt in all
    assert_eq!(a.conns.load(Ordering::SeqCst), 1);
}

#[test]
fn all_dead_gets_a_502_with_the_reason_and_retry_after() {
    let (a, b) = (Fake::proxy("x1", None), Fake::proxy("x2", None));
    a.set_down(true);
    b.set_down(true);
    let ferry = Ferry::start(&ups(&[(&a, ""), (&b, "")]));
    let r = fetch(&mut ferry.client(), "/size/1");
    assert_eq!(r.status, 502);
    assert!(
        r.text().contains("2 upstream proxies failed"),
        "{}",
        r.text()
    );
    let r = fetch(&mut ferry.client(), "/size/1");
    assert_eq!(r.status, 502);
    assert!(
        r.text()
            .contains("no upstream proxy of pool default is online"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("retry-after"), Some("10"));
}

#[test]
fn at_most_three_attempts_by_default() {
    let fakes: Vec<Fake> = (0..5)
        .map(|i| Fake::proxy(&format!("z{i}"), None))
        .collect();
    for f in &fakes {
        f.set_down(true);
    }
    let list: Vec<(&Fake, &str)> = fakes.iter().map(|f| (f, "")).collect();
    let ferry = Ferry::start(&ups(&list));
    let r = fetch(&mut ferry.client(), "/size/1");
    assert_eq!(r.status, 502);
    assert!(
        r.text().contains("3 upstream proxies failed"),
        "{}",
        r.text()
    );
    let tried: usize = fakes.iter().map(|f| f.conns.load(Ordering::SeqCst)).sum();
    assert_eq!(tried, 3);
}

#[test]
fn a_body_already_streamed_is_not_replayed() {
    let (a, b) = (Fake::proxy("s1", None), Fake::proxy("s2", None));
    let ferry = Ferry::start_with(1, &ups(&[(&a, ""), (&b, "")]));
    let mut c = ferry.client();
    let r = c.roundtrip(
        b"POST http://o.test/drop HTTP/1.1\r\nHost: o.test\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(r.status, 502);
    assert_eq!(a.requests() + b.requests(), 1, "the POST was sent twice");
}

#[test]
fn connect_fails_over_on_503_and_407() {
    let server = banner_server(b"hello\n");
    for status in [503u16, 407] {
        let (a, b) = (Fake::proxy("c1", None), Fake::proxy("c2", None));
        a.knobs.connect_status.store(status, Ordering::SeqCst);
        let ferry = Ferry::start(&format!(
            "mode: priority\n{}",
            ups(&[(&a, "priority: 1"), (&b, "priority: 2")])
        ));
        let mut c = ferry.client();
        c.send(format!("CONNECT {server} HTTP/1.1\r\nHost: {server}\r\n\r\n").as_bytes());
        let head = c.read_head().unwrap();
        assert!(
            head.starts_with(b"HTTP/1.1 200"),
            "{status}: {}",
            String::from_utf8_lossy(&head)
        );
        assert_eq!(c.read_exact_n(6), b"hello\n");
        assert_eq!(a.heads().len(), 1);
    }
}

#[test]
fn fall_and_rise_hysteresis() {
    let (a, b) = (Fake::proxy("f1", None), Fake::proxy("f2", None));
    let ferry = Ferry::start_with(
        1,
        &format!(
            "mode: priority\nhealth_check:\n  interval_secs: 1\n  timeout_secs: 1\n  fall: 2\n  rise: 2\n{}",
            ups(&[(&a, "priority: 1"), (&b, "priority: 2")])
        ),
    );
    let mut c = ferry.client();
    a.set_down(true);
    let offline = format!("upstream {} is offline", a.url());
    assert_eq!(served_by(&mut c), "f2"); // failure 1 of 2: still online
    assert!(!ferry.log_text().contains(&offline));
    assert_eq!(served_by(&mut c), "f2"); // failure 2 of 2
    common::wait_until("the offline line", || ferry.log_text().contains(&offline));
    assert_eq!(a.conns.load(Ordering::SeqCst), 2);
    a.set_down(false);
    let online = format!("upstream {} is online again (2 good probes)", a.url());
    common::wait_until("two good probes", || ferry.log_text().contains(&online));
    assert!(a.probes().len() >= 2);
    assert_eq!(served_by(&mut c), "f1");
}

#[test]
fn a_probe_answering_503_or_200_keeps_it_offline_and_204_restores_it() {
    let (a, b) = (Fake::proxy("q1", None), Fake::proxy("q2", None));
    let ferry = Ferry::start(&format!(
        "mode: priority\n{FAST_HEALTH}{}",
        ups(&[(&a, "priority: 1"), (&b, "priority: 2")])
    ));
    let mut c = ferry.client();
    a.set_down(true);
    assert_eq!(served_by(&mut c), "q2");
    a.set_down(false);
    for status in [503u16, 200] {
        a.knobs.probe_status.store(status, Ordering::SeqCst);
        let seen = a.probes().len();
        common::wait_until("two more probes", || a.probes().len() >= seen + 2);
        assert_eq!(served_by(&mut c), "q2", "a {status} probe brought it back");
    }
    a.knobs.probe_status.store(0, Ordering::SeqCst);
    common::wait_until("the 204 probe to restore it", || served_by(&mut c) == "q1");
}

#[test]
fn probes_carry_the_upstreams_credentials() {
    // "u:pw" → dTpwdw==
    let a = Fake::proxy("a1", Some("Basic dTpwdw=="));
    let ferry = Ferry::start(&format!(
        "health_check:\n  interval_secs: 1\n  timeout_secs: 1\n  probe_online: true\n{}",
        ups(&[(&a, "username: u, password: pw")])
    ));
    common::wait_until("a probe", || !a.probes().is_empty());
    let probe = &a.probes()[0];
    assert!(
        probe.starts_with("GET http://connectivitycheck.gstatic.com/generate_204 HTTP/1.1\r\n"),
        "{probe}"
    );
    assert!(
        probe.contains("Proxy-Authorization: Basic dTpwdw==\r\n"),
        "{probe}"
    );
    assert_eq!(served_by(&mut ferry.client()), "a1");
}

#[test]
fn a_client_abort_and_an_origin_500_do_not_count_against_the_upstream() {
    let (a, b) = (Fake::proxy("k1", None), Fake::proxy("k2", None));
    let ferry = Ferry::start(&format!(
        "mode: priority\n{}",
        ups(&[(&a, "priority: 1"), (&b, "priority: 2")])
    ));
    let mut hog = ferry.client();
    hog.send(b"GET http://o.test/sleep/300 HTTP/1.1\r\nHost: o.test\r\n\r\n");
    common::wait_until("the request to arrive", || {
        a.heads().iter().any(|h| h.contains("/sleep/300"))
    });
    drop(hog);
    let mut c = ferry.client();
    for _ in 0..3 {
        let r = fetch(&mut c, "/status/500");
        assert_eq!((r.status, r.served_by()), (500, Some("k1")));
    }
    std::thread::sleep(std::time::Duration::from_millis(400)); // let the aborted exchange end
    for _ in 0..5 {
        assert_eq!(served_by(&mut c), "k1");
    }
    assert!(!ferry.log_text().contains("offline"));
}

#[test]
fn rules_route_by_domain_port_and_cidr_before_the_default_pool() {
    let origin = Fake::origin("origin");
    let (d, eu) = (Fake::proxy("default", None), Fake::proxy("eu", None));
    let ferry = Ferry::start(&format!(
        "{}pools:\n  eu:\n    upstream:\n      - url: {}\nrules:\n  - {{match: ['domain:blocked.test'], via: reject}}\n  - {{match: ['port:8443', 'suffix:eu.test'], via: eu}}\n  - {{match: ['cidr:127.0.0.0/8'], via: direct}}\n",
        ups(&[(&d, "")]),
        eu.url()
    ));
    let mut c = ferry.client();
    let r = c.roundtrip(b"GET http://blocked.test/ HTTP/1.1\r\nHost: blocked.test\r\n\r\n");
    assert_eq!(r.status, 403);
    let mut c = ferry.client();
    let tag = |c: &mut Wire, req: &[u8]| c.roundtrip(req).served_by().map(String::from);
    assert_eq!(
        tag(
            &mut c,
            b"GET http://x.eu.test/size/1 HTTP/1.1\r\nHost: x.eu.test\r\n\r\n"
        )
        .as_deref(),
        Some("eu")
    );
    assert_eq!(
        tag(
            &mut c,
            b"GET http://other.test:8443/size/1 HTTP/1.1\r\nHost: other.test:8443\r\n\r\n"
        )
        .as_deref(),
        Some("eu")
    );
    assert_eq!(
        tag(&mut c, &get(origin.addr, "/size/1")).as_deref(),
        Some("origin")
    );
    assert_eq!(
        tag(
            &mut c,
            b"GET http://other.test/size/1 HTTP/1.1\r\nHost: other.test\r\n\r\n"
        )
        .as_deref(),
        Some("default")
    );
}

#[test]
fn on_all_down_direct_sends_requests_straight_to_the_origin() {
    let origin = Fake::origin("origin");
    let a = Fake::proxy("gone", None);
    a.set_down(true);
    let ferry = Ferry::start(&format!("on_all_down: direct\n{}", ups(&[(&a, "")])));
    let mut c = ferry.client();
    for _ in 0..3 {
        let r = c.roundtrip(&get(origin.addr, "/size/4"));
        assert_eq!((r.status, r.served_by()), (200, Some("origin")));
        assert_eq!(r.body, pattern(4));
    }
}

#[test]
fn an_upstream_given_by_name_is_probed() {
    let a = Fake::proxy("n1", None);
    let url = format!("http://localhost:{}", a.addr.port());
    let ferry = Ferry::start_with(
        1,
        &format!("{FAST_HEALTH}  probe_online: true\nupstream:\n  - url: {url}\n"),
    );
    // The name goes to the resolver threads; if it gives ::1 first, the probe goes on to
    // 127.0.0.1, where the fake listens.
    common::wait_until("a probe through the name", || !a.probes().is_empty());
    let ok = format!("probe of {url}: ok");
    common::wait_until("the probe's success", || ferry.log_text().contains(&ok));
}

#[cfg(feature = "test-hooks")]
#[test]
fn a_slow_name_lookup_for_a_probe_does_not_stall_the_control_thread() {
    let ferry = Ferry::start_with(
        1,
        "admin_listen: \"127.0.0.1:0\"\nhealth_check:\n  interval_secs: 1\n  timeout_secs: 10\n  probe_online: true\nupstream:\n  - url: http://up.slow-dns.ferry.test:3128\n",
    );
    common::wait_until("the probe's look-up", || {
        ferry
            .log_text()
            .contains("looking up up.slow-dns.ferry.test")
    });
    // The look-up takes 4 s (test-hooks); the admin server answers meanwhile, before the
    // failed probe is counted. (It used to wait: the control thread looked names up itself.)
    assert_eq!(ferry.metric("ferry_health_checks_total"), Some(0.0));
    common::wait_until("the failed look-up counted", || {
        ferry.metric("ferry_health_checks_total") >= Some(1.0)
    });
    common::wait_until("the slow-DNS log line", || {
        ferry.log_text().contains("slow DNS")
    });
}

#[test]
fn an_empty_pool_answers_502_and_says_how_to_get_a_direct_proxy() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("upstream: []\n");
    let r = ferry.client().roundtrip(&get(origin.addr, "/size/4"));
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(
        r.header("retry-after"),
        Some("10"),
        "a pool that is down, as any other"
    );
    assert!(
        r.text()
            .contains("pool default has no upstream; set on_all_down: direct for a direct proxy"),
        "{}",
        r.text()
    );
    let mut t = ferry.client();
    t.send(format!("CONNECT {} HTTP/1.1\r\n\r\n", origin.addr).as_bytes());
    assert_eq!(t.response().status, 502);
    assert_eq!(
        origin.conns.load(Ordering::SeqCst),
        0,
        "nothing went direct"
    );
    common::wait_until("the start-up warning", || {
        ferry.log_text().contains("set on_all_down: direct")
    });
}

#[test]
fn an_empty_pool_with_on_all_down_direct_is_a_direct_proxy() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("on_all_down: direct\nupstream: []\n");
    let r = ferry.client().roundtrip(&get(origin.addr, "/size/4"));
    assert_eq!((r.status, r.served_by()), (200, Some("origin")));
    assert!(!ferry.log_text().contains("set on_all_down: direct"));
}
