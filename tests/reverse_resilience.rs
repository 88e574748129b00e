//! Black-box tests of a reverse-proxy backend's resilience (DESIGN §7.3): retries on each
//! `retries.on` condition, which requests may be made again, where a retry goes, the jittered
//! backoff (a session timer), the retry budget, retries in the metrics, `/status` and the
//! access log, and each server's circuit breaker: open after `failures`, half-open after
//! `open_secs` with `half_open_requests` trials across workers, closed by a good trial or a
//! good probe, and ferry's own 503 when every circuit is open.
//!
//! Most tests put the server under test first in `mode: priority`, so that it gets every
//! first attempt while its circuit is closed and a retry moves down the list: counts per
//! server are then exact.

mod common;

use common::backend::Fault;
use common::json::Json;
use common::raw::Raw;
use common::wire::{site_get, Response};
use common::{dead_port, wait_until, Backend, Ferry, Wire};
use std::thread;
use std::time::{Duration, Instant};

const ADMIN: &str = "admin_listen: \"127.0.0.1:0\"";

/// A backend's servers as a YAML flow list, the first with priority 1, the next 2 and so on.
fn servers(urls: &[&str]) -> String {
    let list: Vec<String> = urls
        .iter()
        .enumerate()
        .map(|(i, u)| format!("{{url: \"{u}\", priority: {}}}", i + 1))
        .collect();
    format!("[{}]", list.join(", "))
}

/// A ferry with `workers` workers and the top-level keys `top`, publishing `app.test`: every
/// path goes (with the route keys `route`, each starting with ", ") to backend `app`, whose
/// servers are `urls` and which has the keys `keys` besides.
fn publish(workers: usize, top: &str, urls: &[&str], route: &str, keys: &[&str]) -> Ferry {
    let mut backend = format!("      servers: {}\n", servers(urls));
    for k in keys {
        backend.push_str(&format!("      {k}\n"));
    }
    Ferry::start_reverse_with(
        workers,
        &[],
        &format!(
            "{top}\nreverse:\n  sites:\n    - {{name: app, hosts: [app.test], routes: [{{path: /, name: main, backend: app{route}}}]}}\n  backends:\n    app:\n{backend}"
        ),
    )
}

/// A ferry (1 worker) publishing `app.test` with two routes over the same servers `urls`, in
/// priority order: `/with` goes to backend `with`, which makes one more attempt on `on`, and
/// `/without` to backend `without`, which makes one on `off` only. Circuits open only after
/// 100 failures, and there is no backoff.
fn with_and_without(urls: &[&str], on: &str, off: &str, route: &str) -> Ferry {
    let backend = |name: &str, cond: &str| {
        format!(
            "    {name}:\n      mode: priority\n      servers: {}\n      retries: {{attempts: 1, on: [\"{cond}\"], backoff_ms: 0}}\n      circuit_breaker: {{failures: 100}}\n",
            servers(urls)
        )
    };
    Ferry::start_reverse_with(
        1,
        &[],
        &format!(
            "reverse:\n  sites:\n    - name: app\n      hosts: [app.test]\n      routes:\n        - {{path: /with, backend: with{route}}}\n        - {{path: /without, backend: without{route}}}\n  backends:\n{}{}",
            backend("with", on),
            backend("without", off)
        ),
    )
}

/// One GET for app.test on a fresh connection.
fn get(ferry: &Ferry, path: &str) -> Response {
    ferry
        .reverse_client()
        .roundtrip(&site_get("app.test", path))
}

/// One request for app.test with the extra head lines `extra` (and no body unless they say
/// so and `body` is it) on a fresh connection.
fn ask(ferry: &Ferry, method: &str, path: &str, extra: &str, body: &str) -> Response {
    ferry.reverse_client().roundtrip(
        format!("{method} {path} HTTP/1.1\r\nHost: app.test\r\n{extra}\r\n{body}").as_bytes(),
    )
}

/// How many requests for exactly `path` the backend received.
fn seen(b: &Backend, path: &str) -> usize {
    b.requests().iter().filter(|s| s.target() == path).count()
}

/// `/status`, parsed.
fn status(ferry: &Ferry) -> Json {
    let text = ferry.admin_get("GET", "/status", "").text();
    Json::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The `/status` entry of backend `app`.
fn app_status(ferry: &Ferry) -> Json {
    let s = status(ferry);
    let b = s
        .get("backends")
        .unwrap_or_else(|| panic!("no backends in {s:?}"))
        .as_array()
        .iter()
        .find(|b| b.get("name").map(Json::as_str) == Some("app"))
        .unwrap_or_else(|| panic!("no backend app in {s:?}"))
        .clone();
    b
}

/// What `/status` says of the circuit of backend `app`'s server `url`.
fn circuit(ferry: &Ferry, url: &str) -> String {
    let b = app_status(ferry);
    let server = b
        .get("servers")
        .unwrap()
        .as_array()
        .iter()
        .find(|s| s.get("url").map(Json::as_str) == Some(url))
        .unwrap_or_else(|| panic!("no server {url} in {b:?}"))
        .get("circuit")
        .unwrap()
        .as_str()
        .to_string();
    server
}

/// `ferry_backend_server_circuit` of backend `app`'s server `url`.
fn circuit_metric(ferry: &Ferry, url: &str) -> Option<f64> {
    ferry.metric(&format!(
        "ferry_backend_server_circuit{{backend=\"app\",server=\"{url}\"}}"
    ))
}

/// `ferry_backend_retries_total` of backend `app`.
fn retries_metric(ferry: &Ferry) -> Option<f64> {
    ferry.metric("ferry_backend_retries_total{backend=\"app\"}")
}

// ---- retries on each condition ----

#[test]
fn given_on_connect_failure_when_the_first_server_refuses_then_the_other_answers() {
    let dead = format!("http://{}", dead_port());
    let good = Backend::start("good");
    let ferry = with_and_without(&[&dead, &good.url()], "connect_failure", "reset", "");
    let r = get(&ferry, "/with");
    assert_eq!(
        (r.status, r.served_by()),
        (200, Some("good")),
        "{}",
        r.text()
    );
    assert_eq!(good.requests().len(), 1);
    // without the condition in `on`, the refused connect is the client's 502
    let r = get(&ferry, "/without");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(
        good.requests().len(),
        1,
        "a request went on without connect_failure"
    );
}

#[test]
fn given_on_reset_when_the_first_server_closes_before_answering_then_the_other_answers() {
    let (bad, good) = (Backend::start("bad"), Backend::start("good"));
    bad.set_fault(Fault::Close);
    let ferry = with_and_without(&[&bad.url(), &good.url()], "reset", "connect_failure", "");
    let r = get(&ferry, "/with");
    assert_eq!(
        (r.status, r.served_by()),
        (200, Some("good")),
        "{}",
        r.text()
    );
    assert_eq!((bad.connections(), good.requests().len()), (1, 1));
    let r = get(&ferry, "/without");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!((bad.connections(), good.requests().len()), (2, 1));
}

#[test]
fn given_on_timeout_when_the_first_server_hangs_past_the_response_timeout_then_the_other_answers() {
    let (bad, good) = (Backend::start("bad"), Backend::start("good"));
    bad.set_fault(Fault::Hang);
    let ferry = with_and_without(
        &[&bad.url(), &good.url()],
        "timeout",
        "reset",
        ", response_timeout_secs: 1",
    );
    let t = Instant::now();
    let r = get(&ferry, "/with");
    let took = t.elapsed();
    assert_eq!(
        (r.status, r.served_by()),
        (200, Some("good")),
        "{}",
        r.text()
    );
    assert!(took >= Duration::from_millis(900), "retried after {took:?}");
    assert_eq!((bad.connections(), good.requests().len()), (1, 1));
    let r = get(&ferry, "/without");
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!((bad.connections(), good.requests().len()), (2, 1));
}

/// A first server answering `code`: with `code` in `on` the client gets the other server's
/// 200 and never sees `code`; without, `code` is relayed.
fn retried_on_status(code: u16) {
    let (bad, good) = (Backend::start("bad"), Backend::start("good"));
    bad.set_status(code);
    let ferry = with_and_without(&[&bad.url(), &good.url()], &code.to_string(), "reset", "");
    let r = get(&ferry, "/with");
    assert_eq!(
        (r.status, r.served_by()),
        (200, Some("good")),
        "{}",
        r.text()
    );
    assert_eq!((bad.requests().len(), good.requests().len()), (1, 1));
    let r = get(&ferry, "/without");
    assert_eq!(
        (r.status, r.served_by()),
        (code, Some("bad")),
        "{}",
        r.text()
    );
    assert_eq!((bad.requests().len(), good.requests().len()), (2, 1));
}

#[test]
fn given_on_502_when_the_first_server_answers_502_then_the_client_gets_the_others_200() {
    retried_on_status(502);
}

#[test]
fn given_on_503_when_the_first_server_answers_503_then_the_client_gets_the_others_200() {
    retried_on_status(503);
}

#[test]
fn given_on_504_when_the_first_server_answers_504_then_the_client_gets_the_others_200() {
    retried_on_status(504);
}

// ---- what may be made again ----

/// A server that reads one request head and hangs up without a word: the head was sent,
/// nothing came back.
fn closes_after_the_head() -> Raw {
    Raw::start(|c| {
        let _ = c.read_head();
    })
}

/// A ferry (1 worker) over `first` then `good` in priority order, with the default retries
/// (one more attempt on connect_failure and reset).
fn first_then(first: &str, good: &Backend) -> Ferry {
    publish(
        1,
        "",
        &[first, &good.url()],
        "",
        &["mode: priority", "circuit_breaker: {failures: 100}"],
    )
}

#[test]
fn given_a_post_without_idempotency_key_when_its_head_was_sent_then_it_is_not_retried() {
    let (closer, good) = (closes_after_the_head(), Backend::start("good"));
    let ferry = first_then(&closer.url(), &good);
    let r = ask(&ferry, "POST", "/order", "Content-Length: 0\r\n", "");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        closer.text().starts_with("POST /order "),
        "{}",
        closer.text()
    );
    assert_eq!(closer.connections(), 1);
    assert_eq!(good.requests().len(), 0, "a POST was sent twice");
}

#[test]
fn given_a_post_with_idempotency_key_when_its_head_was_sent_then_it_is_retried() {
    let (closer, good) = (closes_after_the_head(), Backend::start("good"));
    let ferry = first_then(&closer.url(), &good);
    let r = ask(
        &ferry,
        "POST",
        "/order",
        "Content-Length: 0\r\nIdempotency-Key: k-1\r\n",
        "",
    );
    assert_eq!(
        (r.status, r.served_by()),
        (200, Some("good")),
        "{}",
        r.text()
    );
    assert_eq!(closer.connections(), 1);
    let got = good.last();
    assert_eq!((got.req.method.as_str(), got.target()), ("POST", "/order"));
    assert_eq!(got.header("idempotency-key"), Some("k-1"));
}

#[test]
fn given_a_post_with_idempotency_key_when_its_body_was_sent_then_it_is_not_retried() {
    // ferry keeps no copy of bodies: once a body byte went, there is nothing to replay
    let closer = Raw::start(|c| {
        let _ = c.read_request();
    });
    let good = Backend::start("good");
    let ferry = first_then(&closer.url(), &good);
    let r = ask(
        &ferry,
        "POST",
        "/order",
        "Content-Length: 3\r\nIdempotency-Key: k-2\r\n",
        "abc",
    );
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(closer.text().ends_with("\r\n\r\nabc"), "{}", closer.text());
    assert_eq!(good.requests().len(), 0);
}

#[test]
fn given_a_post_with_a_body_when_its_connect_failed_then_it_is_retried_whole() {
    let dead = format!("http://{}", dead_port());
    let good = Backend::start("good");
    let ferry = first_then(&dead, &good);
    let r = ask(&ferry, "POST", "/order", "Content-Length: 3\r\n", "abc");
    assert_eq!(
        (r.status, r.served_by()),
        (200, Some("good")),
        "{}",
        r.text()
    );
    assert_eq!(r.header("x-body-len"), Some("3"));
    assert_eq!(good.last().req.method, "POST");
}

// ---- where a retry goes ----

#[test]
fn given_servers_left_untried_then_each_retry_goes_to_one_of_them() {
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    a.set_status(503);
    b.set_status(503);
    let ferry = publish(
        1,
        "",
        &[&a.url(), &b.url(), &c.url()],
        "",
        &[
            "mode: priority",
            "retries: {attempts: 3, on: [\"503\"], backoff_ms: 0}",
            "circuit_breaker: {failures: 100}",
        ],
    );
    // one request: the budget's 3 retries of a quiet window would not cover two
    let r = get(&ferry, "/");
    assert_eq!((r.status, r.served_by()), (200, Some("c")), "{}", r.text());
    let counts = (a.requests().len(), b.requests().len(), c.requests().len());
    assert_eq!(counts, (1, 1, 1));
}

#[test]
fn given_a_lone_server_when_its_connection_resets_then_the_retry_goes_to_it_again() {
    // The first connection is dropped after the head (a server restarting), the next served.
    let lone = Raw::start(|c| {
        if c.read_head().is_some() && c.index > 0 {
            c.write_and_finish(
                b"HTTP/1.1 200 OK\r\nX-Served-By: lone\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            );
        }
    });
    let ferry = publish(1, "", &[&lone.url()], "", &[]);
    let r = get(&ferry, "/again");
    assert_eq!(
        (r.status, r.served_by()),
        (200, Some("lone")),
        "{}",
        r.text()
    );
    assert_eq!(lone.connections(), 2);
    assert_eq!(lone.text().matches("GET /again ").count(), 2);
}

// ---- backoff ----

#[test]
fn given_a_backoff_then_retries_wait_a_jittered_time_under_its_ceiling() {
    let b = Backend::start("b");
    let ferry = publish(
        1,
        "",
        &[&b.url()],
        "",
        &[
            "retries: {attempts: 3, on: [\"503\"], backoff_ms: 200, backoff_max_ms: 200, budget_percent: 100}",
            "circuit_breaker: {failures: 100}",
        ],
    );
    // 30 requests first, so that the budget (100 % of the window) has room for 15 retries
    for i in 0..30 {
        assert_eq!(get(&ferry, &format!("/warm{i}")).status, 200);
    }
    let mut total = Duration::ZERO;
    for i in 0..5 {
        let path = format!("/fail{i}");
        let t = Instant::now();
        let r = ask(&ferry, "GET", &path, "X-Fake: status=503\r\n", "");
        let took = t.elapsed();
        total += took;
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(seen(&b, &path), 4, "attempts at {path}");
        // three waits of at most 200 ms each, and the rest is loopback
        assert!(took < Duration::from_millis(1600), "{path} took {took:?}");
    }
    // 15 waits drawn from [0, 200] ms: they sum to less than 300 ms with a chance of 3e-10
    assert!(
        total >= Duration::from_millis(300),
        "5 requests took {total:?}"
    );
}

#[test]
fn given_a_request_waiting_out_its_backoff_then_the_worker_serves_others_meanwhile() {
    let b = Backend::start("b");
    let ferry = publish(
        1,
        ADMIN,
        &[&b.url()],
        "",
        &[
            "retries: {attempts: 1, on: [\"503\"], backoff_ms: 3000, backoff_max_ms: 3000, budget_percent: 100}",
            "circuit_breaker: {failures: 100}",
        ],
    );
    // A draw of the backoff may be short; a round is conclusive when the other request was
    // answered while the first had been retried but not yet sent again.
    for round in 0..5 {
        let waiting = format!("/waiting{round}");
        let mut first = ferry.reverse_client();
        first.send(
            format!("GET {waiting} HTTP/1.1\r\nHost: app.test\r\nX-Fake: status=503\r\n\r\n")
                .as_bytes(),
        );
        wait_until("the retry to be decided", || {
            retries_metric(&ferry) == Some(f64::from(round + 1))
        });
        let t = Instant::now();
        let r = get(&ferry, &format!("/meanwhile{round}"));
        let took = t.elapsed();
        assert_eq!(r.status, 200, "{}", r.text());
        let conclusive = seen(&b, &waiting) == 1;
        let r = first.response();
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(seen(&b, &waiting), 2);
        if conclusive {
            assert!(
                took < Duration::from_millis(2500),
                "answered after {took:?}"
            );
            return;
        }
    }
    panic!("no request was answered while another waited out its backoff, in 5 rounds");
}

#[test]
fn given_requests_backing_off_at_once_then_each_is_sent_again_at_its_own_time() {
    // When a server dies, every request in flight to it backs off at the same moment. Each
    // must go again when its own draw runs out, not when the soonest one's does plus the
    // 250 ms the worker otherwise waits between sweeps of its sessions' timers.
    let b = Backend::start("b");
    let ferry = publish(
        1,
        "",
        &[&b.url()],
        "",
        &[
            "retries: {attempts: 1, on: [\"503\"], backoff_ms: 50, backoff_max_ms: 50, budget_percent: 100}",
            "circuit_breaker: {failures: 100}",
        ],
    );
    // Requests first, so that the budget (100 % of the window) has room for 10 retries.
    for i in 0..20 {
        assert_eq!(get(&ferry, &format!("/warm{i}")).status, 200);
    }
    let took: Vec<Duration> = thread::scope(|s| {
        let clients: Vec<_> = (0..10)
            .map(|i| {
                let mut c = ferry.reverse_client();
                s.spawn(move || {
                    let t = Instant::now();
                    c.send(
                        format!(
                            "GET /fail{i} HTTP/1.1\r\nHost: app.test\r\nX-Fake: status=503\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                    let r = c.response();
                    assert_eq!(r.status, 503, "{}", r.text());
                    t.elapsed()
                })
            })
            .collect();
        clients.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for i in 0..10 {
        assert_eq!(seen(&b, &format!("/fail{i}")), 2, "attempts at /fail{i}");
    }
    // A wait of at most 50 ms each, and the rest is loopback: most answer well within 200 ms
    // (a busy machine may hold a few back). Woken only by the soonest draw, all but one
    // would take 250 ms or more.
    let quick = took
        .iter()
        .filter(|t| **t < Duration::from_millis(200))
        .count();
    assert!(
        quick >= 6,
        "only {quick} of 10 answered within 200 ms: {took:?}"
    );
}

// ---- the budget ----

#[test]
fn given_a_failing_backend_then_the_retry_budget_caps_the_extra_load() {
    let (s1, s2) = (Backend::start("s1"), Backend::start("s2"));
    s1.set_status(503);
    s2.set_status(503);
    let ferry = publish(
        1,
        ADMIN,
        &[&s1.url(), &s2.url()],
        "",
        &[
            "mode: round_robin",
            "retries: {attempts: 3, on: [\"503\"], backoff_ms: 0, budget_percent: 10}",
            "circuit_breaker: {failures: 100}",
        ],
    );
    let t = Instant::now();
    for i in 0..40 {
        let r = get(&ferry, &format!("/r{i}"));
        assert_eq!(r.status, 503, "{}", r.text());
    }
    let took = t.elapsed();
    // The window is 10 s: everything above holds only within it.
    assert!(took < Duration::from_secs(8), "40 requests took {took:?}");
    let seen_at = |i: usize| seen(&s1, &format!("/r{i}")) + seen(&s2, &format!("/r{i}"));
    // 3 retries a window at least: the first request takes them all...
    assert_eq!(seen_at(0), 4);
    // ...and the window's 10 % reaches a 4th retry only with its 40th request.
    for i in 1..39 {
        assert_eq!(seen_at(i), 1, "/r{i}");
    }
    assert_eq!(seen_at(39), 2);
    assert_eq!(s1.requests().len() + s2.requests().len(), 40 + 4);
    assert_eq!(retries_metric(&ferry), Some(4.0));
}

// ---- observability ----

#[test]
fn given_a_retried_request_then_metrics_status_and_access_log_count_it() {
    let (bad, good) = (Backend::start("bad"), Backend::start("good"));
    bad.set_status(503);
    let ferry = publish(
        1,
        &format!("{ADMIN}\naccess_log: true"),
        &[&bad.url(), &good.url()],
        "",
        &[
            "mode: priority",
            "retries: {attempts: 1, on: [\"503\"], backoff_ms: 0}",
            "circuit_breaker: {failures: 100}",
        ],
    );
    assert_eq!(retries_metric(&ferry), Some(0.0));
    let r = get(&ferry, "/once");
    assert_eq!((r.status, r.served_by()), (200, Some("good")));
    assert_eq!(retries_metric(&ferry), Some(1.0));
    assert_eq!(
        app_status(&ferry).get("retries").map(Json::as_f64),
        Some(1.0)
    );
    let id = good.last().header("x-request-id").unwrap().to_string();
    wait_until("the access-log line of the retried request", || {
        ferry.log_text().lines().any(|l| l.contains(&id))
    });
    let text = ferry.log_text();
    let line = text.lines().find(|l| l.contains(&id)).unwrap();
    assert!(line.contains("attempts=2"), "{line}");
    assert!(line.contains("status=200"), "{line}");
    assert!(line.contains(&format!("server={}", good.url())), "{line}");
}

// ---- the circuit breaker ----

/// Requests `/` one after another until `bad` has received `n` of them; returns when the
/// request that made the count `n` was sent. Each must be answered by `bad` (its status) or
/// by another server (200).
fn until_bad_saw(ferry: &Ferry, bad: &Backend, n: usize) -> Instant {
    let end = Instant::now() + common::TIMEOUT;
    loop {
        assert!(Instant::now() < end, "{} never got {n} requests", bad.name);
        // paced, so that a second of waiting is tens of requests, not thousands
        thread::sleep(Duration::from_millis(10));
        let sent = Instant::now();
        let r = get(ferry, "/");
        assert!(r.served_by().is_some(), "{}: {}", r.status, r.text());
        if bad.requests().len() >= n {
            assert_eq!(bad.requests().len(), n);
            return sent;
        }
    }
}

/// A breaker of 3 failures, `open_secs` and one trial over `bad` and `good` in round robin;
/// health probes are due only once a minute (so that only requests move the circuits).
fn breaker(workers: usize, bad: &Backend, good: &Backend, open_secs: u32) -> Ferry {
    publish(
        workers,
        ADMIN,
        &[&bad.url(), &good.url()],
        "",
        &[
            "mode: round_robin",
            &format!(
                "circuit_breaker: {{failures: 3, open_secs: {open_secs}, half_open_requests: 1}}"
            ),
            "health_check: {path: /healthz, interval_secs: 60, fall: 10, rise: 1}",
        ],
    )
}

#[test]
fn given_a_server_failing_3_times_then_its_circuit_opens_and_it_gets_no_traffic() {
    let (bad, good) = (Backend::start("bad"), Backend::start("good"));
    bad.set_status(503);
    let ferry = breaker(1, &bad, &good, 60);
    assert_eq!(circuit(&ferry, &bad.url()), "closed");
    assert_eq!(circuit_metric(&ferry, &bad.url()), Some(0.0));
    until_bad_saw(&ferry, &bad, 3);
    assert_eq!(circuit(&ferry, &bad.url()), "open");
    assert_eq!(circuit_metric(&ferry, &bad.url()), Some(1.0));
    assert_eq!(circuit(&ferry, &good.url()), "closed");
    for _ in 0..20 {
        let r = get(&ferry, "/");
        assert_eq!((r.status, r.served_by()), (200, Some("good")));
    }
    assert_eq!(bad.requests().len(), 3);
}

#[test]
fn given_an_open_circuit_when_open_secs_pass_then_one_trial_goes_and_its_failure_reopens_it() {
    let (bad, good) = (Backend::start("bad"), Backend::start("good"));
    bad.set_status(503);
    let ferry = breaker(1, &bad, &good, 1);
    let opened = until_bad_saw(&ferry, &bad, 3);
    // the trial: not before a second has passed since the circuit opened
    let first = until_bad_saw(&ferry, &bad, 4);
    let after_first = Instant::now();
    assert!(
        after_first - opened >= Duration::from_millis(990),
        "trial {:?} after the circuit opened",
        after_first - opened
    );
    assert!(first - opened < Duration::from_secs(5), "no trial in time");
    // it failed: open again for another second, whatever traffic comes meanwhile
    let second = until_bad_saw(&ferry, &bad, 5);
    let after_second = Instant::now();
    assert!(
        after_second - first >= Duration::from_millis(990),
        "second trial {:?} after the first",
        after_second - first
    );
    assert!(
        second - after_first < Duration::from_secs(5),
        "no second trial in time"
    );
}

#[test]
fn given_a_half_open_circuit_when_the_trial_succeeds_then_it_closes_and_traffic_resumes() {
    let (bad, good) = (Backend::start("bad"), Backend::start("good"));
    bad.set_status(503);
    let ferry = breaker(1, &bad, &good, 1);
    until_bad_saw(&ferry, &bad, 3);
    bad.set_status(0);
    until_bad_saw(&ferry, &bad, 4);
    assert_eq!(bad.last().target(), "/");
    assert_eq!(circuit(&ferry, &bad.url()), "closed");
    // round robin again: the next two requests go one to each
    let mut by = Vec::new();
    for _ in 0..2 {
        let r = get(&ferry, "/");
        assert_eq!(r.status, 200);
        by.push(r.served_by().unwrap().to_string());
    }
    by.sort();
    assert_eq!(by, ["bad", "good"]);
}

#[test]
fn given_a_half_open_circuit_when_clients_of_both_workers_come_at_once_then_one_trial_goes() {
    let (bad, good) = (Backend::start("bad"), Backend::start("good"));
    bad.set_status(503);
    let ferry = breaker(2, &bad, &good, 1);
    until_bad_saw(&ferry, &bad, 3);
    let opened = Instant::now();
    let good_before = good.requests().len();
    // mended, but slow: every request below is held 2 s, the trial too
    bad.set_status(0);
    wait_until("open_secs to pass", || {
        opened.elapsed() > Duration::from_millis(1200)
    });
    let addr = ferry.reverse[0];
    let clients: Vec<_> = (0..8)
        .map(|i| {
            thread::spawn(move || {
                Wire::connect(addr).roundtrip(
                    format!("GET /c{i} HTTP/1.1\r\nHost: app.test\r\nX-Fake: sleep=2000\r\n\r\n")
                        .as_bytes(),
                )
            })
        })
        .collect();
    wait_until("the trial", || bad.requests().len() >= 4);
    assert_eq!(circuit(&ferry, &bad.url()), "half_open");
    assert_eq!(circuit_metric(&ferry, &bad.url()), Some(2.0));
    for c in clients {
        let r = c.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(bad.requests().len(), 4, "more than one trial at once");
    assert_eq!(good.requests().len(), good_before + 7);
    assert_eq!(circuit(&ferry, &bad.url()), "closed");
}

#[test]
fn given_every_circuit_open_then_ferry_answers_503_with_retry_after() {
    let (d1, d2) = (dead_port(), dead_port());
    let (u1, u2) = (format!("http://{d1}"), format!("http://{d2}"));
    assert_ne!(u1, u2);
    let ferry = publish(
        1,
        "",
        &[&u1, &u2],
        "",
        &[
            "mode: round_robin",
            "circuit_breaker: {failures: 2, open_secs: 60}",
        ],
    );
    // each request tries both servers (one more attempt on connect_failure)
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = get(&ferry, "/");
        statuses.push(r.status);
        if r.status == 503 {
            assert!(r.header("retry-after").is_some(), "503 without Retry-After");
            assert!(r.text().contains("app"), "{}", r.text());
        }
    }
    assert_eq!(statuses, [502, 502, 503]);
}

#[test]
fn given_an_open_circuit_when_a_probe_succeeds_then_it_closes_before_open_secs() {
    let (bad, good) = (Backend::start("bad"), Backend::start("good"));
    bad.set_status(503);
    bad.set_health(503);
    let ferry = publish(
        1,
        ADMIN,
        &[&bad.url(), &good.url()],
        "",
        &[
            "mode: round_robin",
            "circuit_breaker: {failures: 3, open_secs: 3600}",
            "health_check: {path: /healthz, interval_secs: 1, timeout_secs: 1, fall: 10, rise: 1}",
        ],
    );
    until_bad_saw(&ferry, &bad, 3);
    assert_eq!(circuit(&ferry, &bad.url()), "open");
    bad.set_health(0);
    wait_until("a good probe", || circuit(&ferry, &bad.url()) == "closed");
    let before = bad.requests().len();
    wait_until("traffic to the server again", || {
        get(&ferry, "/");
        bad.requests().len() > before
    });
}

#[test]
fn given_a_spent_budget_when_a_retry_would_go_to_a_half_open_server_then_it_is_not_counted() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let ferry = publish(
        1,
        ADMIN,
        &[&a.url(), &b.url()],
        "",
        &[
            "mode: priority",
            "retries: {attempts: 1, on: [\"503\"], backoff_ms: 0, budget_percent: 0}",
            "circuit_breaker: {failures: 3, open_secs: 1}",
            "health_check: {path: /healthz, interval_secs: 60, fall: 10, rise: 1}",
        ],
    );
    // Three retries from `a` to `b` (the window's whole budget) open `b`'s circuit; `a`'s
    // own failures are reset by a success after each.
    b.set_status(503);
    for i in 0..3 {
        a.set_status(503);
        let r = get(&ferry, &format!("/spend{i}"));
        assert_eq!((r.status, r.served_by()), (503, Some("b")));
        a.set_status(0);
        assert_eq!(get(&ferry, "/mend").served_by(), Some("a"));
    }
    assert_eq!(circuit(&ferry, &b.url()), "open");
    let opened = Instant::now();
    wait_until("open_secs to pass", || {
        opened.elapsed() > Duration::from_millis(1200)
    });
    // `b` could take a trial now, but the budget has no retry for it: `a`'s 503 is the answer
    a.set_status(503);
    let r = get(&ferry, "/refused");
    assert_eq!((r.status, r.served_by()), (503, Some("a")));
    assert_eq!(b.requests().len(), 3);
    let servers = app_status(&ferry);
    let b_status = servers
        .get("servers")
        .unwrap()
        .as_array()
        .iter()
        .find(|s| s.get("url").map(Json::as_str) == Some(b.url().as_str()))
        .unwrap()
        .clone();
    assert_eq!(
        b_status.get("requests").map(Json::as_f64),
        Some(3.0),
        "a request counted that {} never got: {b_status:?}",
        b.url()
    );
    assert_eq!(circuit(&ferry, &b.url()), "open");
}

/// Without `health_check`, only the circuit's trial brings a server back: a server that
/// answers 503 still accepts connections, and a first cut's TCP-connect probe (every 5 s)
/// closed its circuit long before `open_secs`, with no trial.
#[test]
fn given_no_health_check_when_a_server_answering_503_opens_its_circuit_then_it_stays_open_for_open_secs(
) {
    let (bad, good) = (Backend::start("bad"), Backend::start("good"));
    bad.set_status(503);
    let ferry = publish(
        1,
        ADMIN,
        &[&bad.url(), &good.url()],
        "",
        &[
            "mode: round_robin",
            "circuit_breaker: {failures: 3, open_secs: 60, half_open_requests: 1}",
        ],
    );
    until_bad_saw(&ferry, &bad, 3);
    assert_eq!(circuit(&ferry, &bad.url()), "open");
    // Past the old probe's 5 s (and its first interval), the circuit is still open.
    let until = Instant::now() + Duration::from_millis(6500);
    while Instant::now() < until {
        assert_eq!(circuit(&ferry, &bad.url()), "open");
        let r = get(&ferry, "/");
        assert_eq!((r.status, r.served_by()), (200, Some("good")));
        thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(bad.requests().len(), 3);
}
