//! Black-box tests of a backend's request queue (DESIGN §7.3, `queue:`): at most `max_active`
//! requests in flight across both workers, up to `max_queued` waiting in arrival order (a slot
//! freed on one worker wakes a request waiting on the other), 503 with `Retry-After` when the
//! queue is full or `timeout_secs` passes, a client that leaves frees its place, a reload keeps
//! the queue and applies new limits, and `/metrics` and `/status` show it all.
//!
//! Each client connection is kept alive and its worker learned first (the worker's number is
//! in the `X-Request-Id` ferry generates, which the fake backend records), so that a test can
//! put the request that holds the slot on one worker and the ones that wait on the other.

mod common;

use common::json::Json;
use common::wire::site_get;
use common::{prom, wait_until, Backend, Ferry, Wire};
use std::time::{Duration, Instant};

/// ferry (two workers) publishing `app.test` to backend `app` (the fake `b`, which must be
/// named "app") with `queue` as its `queue:`.
fn start(b: &Backend, queue: &str) -> Ferry {
    Ferry::start_reverse_with(2, &[b], &yaml(queue))
}

fn yaml(queue: &str) -> String {
    format!(
        r#"
        admin_listen: "127.0.0.1:0"
        reverse:
          sites: [{{name: app, hosts: [app.test], routes: [{{backend: app}}]}}]
          backends:
            app: {{servers: [{{url: "@app"}}], queue: {queue}}}
        "#
    )
}

/// `GET path` for app.test with `X-Fake: fake`.
fn request(path: &str, fake: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nX-Fake: {fake}\r\n\r\n").into_bytes()
}

/// Kept-alive client connections, at least `n` on each of the two workers: `[worker 0's,
/// worker 1's]`.
fn clients_on_each_worker(ferry: &Ferry, b: &Backend, n: usize) -> [Vec<Wire>; 2] {
    let mut by: [Vec<Wire>; 2] = [Vec::new(), Vec::new()];
    for i in 0..200 {
        if by.iter().all(|w| w.len() >= n) {
            return by;
        }
        let mut c = ferry.reverse_client();
        let path = format!("/warm/{i}");
        assert_eq!(c.roundtrip(&site_get("app.test", &path)).status, 200);
        by[worker_of(b, &path)].push(c);
    }
    panic!("200 connections and not {n} on each worker");
}

/// The worker that sent the backend the request for `path`: the 4 hex digits after the
/// first 16 of the `X-Request-Id` ferry generated.
fn worker_of(b: &Backend, path: &str) -> usize {
    let seen = b.requests();
    let r = seen
        .iter()
        .find(|s| s.target() == path)
        .unwrap_or_else(|| panic!("{path} did not reach the backend"));
    let id = r.header("x-request-id").expect("a request id");
    usize::from_str_radix(&id[16..20], 16).unwrap()
}

/// The paths the backend received, warm-up requests left out, in order.
fn paths(b: &Backend) -> Vec<String> {
    b.requests()
        .iter()
        .map(|s| s.target().to_string())
        .filter(|p| !p.starts_with("/warm/"))
        .collect()
}

/// The value of one series of `/metrics`, written as ferry writes it.
fn metric(ferry: &Ferry, series: &str) -> Option<f64> {
    prom::parse(&ferry.admin_get("GET", "/metrics", "").text())
        .into_iter()
        .find_map(|(s, v)| (s == series).then_some(v))
}

const LENGTH: &str = r#"ferry_backend_queue_length{backend="app"}"#;
const FULL: &str = r#"ferry_backend_queue_rejected_total{backend="app",reason="full"}"#;
const TIMED_OUT: &str = r#"ferry_backend_queue_rejected_total{backend="app",reason="timeout"}"#;

fn wait_for_metric(ferry: &Ferry, series: &str, n: f64) {
    wait_until(&format!("{series} = {n}"), || {
        metric(ferry, series) == Some(n)
    });
}

/// Backend `app` in `/status`.
fn status_of_app(ferry: &Ferry) -> Json {
    let text = ferry.admin_get("GET", "/status", "").text();
    let s = Json::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    s.get("backends")
        .unwrap()
        .as_array()
        .iter()
        .find(|b| b.get("name").map(Json::as_str) == Some("app"))
        .cloned()
        .unwrap_or_else(|| panic!("no backend app in {text}"))
}

fn number(j: &Json, key: &str) -> f64 {
    j.get(key)
        .unwrap_or_else(|| panic!("no {key} in {j:?}"))
        .as_f64()
}

#[test]
fn given_one_slot_and_two_places_when_four_requests_come_then_two_wait_in_order_across_workers_and_the_fourth_gets_503_at_once(
) {
    let b = Backend::start("app");
    let ferry = start(&b, "{max_active: 1, max_queued: 2, timeout_secs: 30}");
    let [mut w0, mut w1] = clients_on_each_worker(&ferry, &b, 2);
    let (mut a, mut c) = (w0.pop().unwrap(), w0.pop().unwrap());
    let (mut bq, mut d) = (w1.pop().unwrap(), w1.pop().unwrap());

    // A holds the one slot on worker 0; B waits on worker 1, then C on worker 0.
    a.send(&request("/a", "sleep=2000"));
    wait_until("A at the backend", || b.in_flight() == 1);
    bq.send(&request("/b", ""));
    wait_for_metric(&ferry, LENGTH, 1.0);
    c.send(&request("/c", ""));
    wait_for_metric(&ferry, LENGTH, 2.0);
    let st = status_of_app(&ferry);
    assert_eq!(
        (number(&st, "active"), number(&st, "queued")),
        (1.0, 2.0),
        "{st:?}"
    );
    assert_eq!(number(&st, "max_active"), 1.0);

    // D finds the queue full: 503 at once, long before A is done.
    let t = Instant::now();
    let r = d.roundtrip(&request("/d", ""));
    let took = t.elapsed();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    assert!(took < Duration::from_millis(1000), "took {took:?}");
    assert_eq!(b.in_flight(), 1, "A is still at the backend");

    // A ends on worker 0: B, waiting on worker 1 since before C, goes first.
    for (w, path) in [(&mut a, "/a"), (&mut bq, "/b"), (&mut c, "/c")] {
        let r = w.response();
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    assert_eq!(paths(&b), ["/a", "/b", "/c"]);
    assert_eq!(
        [
            worker_of(&b, "/a"),
            worker_of(&b, "/b"),
            worker_of(&b, "/c")
        ],
        [0, 1, 0]
    );
    assert_eq!(
        b.peak_in_flight(),
        1,
        "the backend had one request at a time"
    );

    wait_for_metric(&ferry, FULL, 1.0);
    assert_eq!(metric(&ferry, TIMED_OUT), Some(0.0));
    assert_eq!(metric(&ferry, LENGTH), Some(0.0));
    wait_until("every slot given back", || {
        number(&status_of_app(&ferry), "active") == 0.0
    });
    let st = status_of_app(&ferry);
    assert_eq!(
        (number(&st, "queued"), number(&st, "queue_rejected")),
        (0.0, 1.0)
    );
}

#[test]
fn given_a_queue_timeout_when_no_slot_frees_up_then_the_waiting_request_gets_503_after_it() {
    let b = Backend::start("app");
    let ferry = start(&b, "{max_active: 1, max_queued: 2, timeout_secs: 1}");
    let [mut w0, mut w1] = clients_on_each_worker(&ferry, &b, 1);
    let (mut a, mut bq) = (w0.pop().unwrap(), w1.pop().unwrap());
    a.send(&request("/a", "sleep=4000"));
    wait_until("A at the backend", || b.in_flight() == 1);
    let t = Instant::now();
    let r = bq.roundtrip(&request("/b", ""));
    let took = t.elapsed();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("no slot came free within 1 s"),
        "{}",
        r.text()
    );
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    // One second, give or take the 250 ms sweep and a busy machine.
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(3000),
        "took {took:?}"
    );
    assert_eq!(metric(&ferry, TIMED_OUT), Some(1.0));
    assert_eq!(metric(&ferry, FULL), Some(0.0));
    assert_eq!(metric(&ferry, LENGTH), Some(0.0));
    assert_eq!(number(&status_of_app(&ferry), "queue_rejected"), 1.0);
    assert_eq!(a.response().status, 200);
    assert_eq!(
        paths(&b),
        ["/a"],
        "the request that timed out never reached it"
    );
}

#[test]
fn given_a_full_queue_when_a_waiting_client_leaves_then_its_place_is_free_for_the_next() {
    let b = Backend::start("app");
    let ferry = start(&b, "{max_active: 1, max_queued: 1, timeout_secs: 30}");
    let [mut w0, mut w1] = clients_on_each_worker(&ferry, &b, 1);
    let (mut a, mut c) = (w0.pop().unwrap(), w1.pop().unwrap());
    a.send(&request("/a", "sleep=1500"));
    wait_until("A at the backend", || b.in_flight() == 1);
    let mut leaving = ferry.reverse_client();
    leaving.send(&request("/gone", ""));
    wait_for_metric(&ferry, LENGTH, 1.0);
    drop(leaving);
    // Noticed without any slot freeing up: A is still at the backend.
    wait_for_metric(&ferry, LENGTH, 0.0);
    assert_eq!(b.in_flight(), 1);
    // The place is free again: C waits there (the queue holds one) and is served after A.
    c.send(&request("/c", ""));
    assert_eq!(a.response().status, 200);
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        paths(&b),
        ["/a", "/c"],
        "the client that left was never sent"
    );
    assert_eq!(metric(&ferry, FULL), Some(0.0));
    wait_until("every slot given back", || {
        number(&status_of_app(&ferry), "active") == 0.0
    });
}

#[test]
fn given_many_clients_on_both_workers_then_the_backend_never_has_more_than_max_active() {
    let b = Backend::start("app");
    let ferry = start(&b, "{max_active: 2, max_queued: 40, timeout_secs: 30}");
    let [w0, w1] = clients_on_each_worker(&ferry, &b, 6);
    let clients: Vec<Wire> = w0.into_iter().zip(w1).flat_map(|(x, y)| [x, y]).collect();
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            std::thread::spawn(move || {
                (0..3)
                    .map(|k| {
                        c.roundtrip(&request(&format!("/r{i}-{k}"), "sleep=40"))
                            .status
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), [200, 200, 200]);
    }
    assert_eq!(paths(&b).len(), 36);
    assert_eq!(
        b.peak_in_flight(),
        2,
        "at most two at once, and two were used"
    );
    assert_eq!(metric(&ferry, FULL), Some(0.0));
    wait_until("every slot given back", || {
        number(&status_of_app(&ferry), "active") == 0.0
    });
}

#[test]
fn given_requests_waiting_when_a_reload_raises_max_active_then_they_go_and_the_counts_go_on() {
    let b = Backend::start("app");
    let ferry = start(&b, "{max_active: 1, max_queued: 1, timeout_secs: 30}");
    let [mut w0, mut w1] = clients_on_each_worker(&ferry, &b, 2);
    let (mut a, mut d) = (w0.pop().unwrap(), w0.pop().unwrap());
    let mut bq = w1.pop().unwrap();
    a.send(&request("/a", "sleep=4000"));
    wait_until("A at the backend", || b.in_flight() == 1);
    bq.send(&request("/b", ""));
    wait_for_metric(&ferry, LENGTH, 1.0);
    assert_eq!(d.roundtrip(&request("/d", "")).status, 503);
    wait_for_metric(&ferry, FULL, 1.0);

    assert!(ferry.reload_reverse(
        &[&b],
        &yaml("{max_active: 2, max_queued: 1, timeout_secs: 30}")
    ));
    // B goes now, while A still holds its slot.
    let r = bq.response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(b.in_flight(), 1, "A is still at the backend");
    assert_eq!(metric(&ferry, FULL), Some(1.0), "the count went on");
    let st = status_of_app(&ferry);
    assert_eq!(number(&st, "max_active"), 2.0);
    assert_eq!(a.response().status, 200);
    wait_until("every slot given back", || {
        number(&status_of_app(&ferry), "active") == 0.0
    });
}

#[test]
fn given_one_slot_when_a_websocket_is_upgraded_then_its_tunnel_gives_the_slot_back() {
    let b = Backend::start("app");
    let ferry = start(&b, "{max_active: 1, max_queued: 1, timeout_secs: 2}");
    let mut ws = ferry.reverse_client();
    ws.send(b"GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    assert_eq!(ws.response_to(false).status, 101);
    ws.send(b"ping");
    assert_eq!(ws.read_exact_n(4), b"PING");
    // The tunnel still counts at its server, not in the backend's slots.
    let st = status_of_app(&ferry);
    let server = &st.get("servers").unwrap().as_array()[0];
    assert_eq!(number(server, "active"), 1.0, "{st:?}");
    assert_eq!(number(&st, "active"), 0.0, "{st:?}");
    // A request gets the slot at once rather than a 503 after timeout_secs.
    let t = Instant::now();
    let r = ferry.reverse_client().roundtrip(&request("/after", ""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    ws.send(b"still open");
    assert_eq!(ws.read_exact_n(10), b"STILL OPEN");
}
