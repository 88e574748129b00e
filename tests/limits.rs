//! Black-box tests of graceful drain and the limits: max_connections, request timeout (never
//! applied to tunnels), and the header timeout against slowloris clients.

mod common;

use common::wire::get;
use common::{banner_server, pattern, Fake, Ferry, Wire};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[test]
fn drain_finishes_in_flight_work_refuses_new_clients_and_exits_zero() {
    let origin = Fake::origin("origin");
    origin.knobs.delay_ms.store(1000, Ordering::SeqCst);
    let mut ferry = Ferry::start("admin_listen: \"127.0.0.1:0\"\n");
    let admin = ferry.admin();
    let mut c = ferry.client();
    c.send(&get(origin.addr, "/size/300000"));
    common::wait_until("the request to reach the origin", || {
        !origin.heads().is_empty()
    });
    ferry.signal(15);
    // new clients are refused promptly, /health says draining
    common::wait_until("the listener to close", || {
        std::net::TcpStream::connect(ferry.addr).is_err()
    });
    let mut a = Wire::connect(admin);
    let r = a.roundtrip(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(
        (r.status, r.text().as_str()),
        (503, "{\"status\":\"draining\"}")
    );
    // the download in flight completes intact, and says the connection ends
    let r = c.response();
    assert_eq!(r.body, pattern(300000));
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(ferry.wait_exit(), Some(0));
}

#[test]
fn a_second_stop_signal_exits_at_once() {
    let server = banner_server(b"x");
    let mut ferry = Ferry::start("limits:\n  shutdown_timeout_secs: 60\n");
    let mut t = ferry.client();
    t.send(format!("CONNECT {server} HTTP/1.1\r\n\r\n").as_bytes());
    t.read_head().unwrap();
    ferry.signal(15);
    common::wait_until("draining", || ferry.log_text().contains("draining"));
    let start = Instant::now();
    ferry.signal(15);
    assert_eq!(ferry.wait_exit(), Some(1));
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn max_connections_answers_503_and_capacity_returns() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("limits:\n  max_connections: 2\n");
    let mut a = ferry.client();
    let mut b = ferry.client();
    assert_eq!(a.roundtrip(&get(origin.addr, "/size/1")).status, 200);
    assert_eq!(b.roundtrip(&get(origin.addr, "/size/1")).status, 200);
    let mut c = ferry.client();
    let r = c.response();
    assert_eq!((r.status, r.header("connection")), (503, Some("close")));
    drop(a);
    common::wait_until("capacity to return", || {
        let mut d = ferry.client();
        d.send(&get(origin.addr, "/size/1"));
        d.response().status == 200
    });
    assert_eq!(b.roundtrip(&get(origin.addr, "/size/2")).body, pattern(2));
}

#[test]
fn request_timeout_gives_504_but_a_long_tunnel_survives() {
    let origin = Fake::origin("origin");
    let echo = banner_server(b"");
    let ferry = Ferry::start("limits:\n  request_timeout_secs: 1\n");
    let start = Instant::now();
    let r = ferry.client().roundtrip(&get(origin.addr, "/sleep/4000"));
    assert_eq!(r.status, 504);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    let mut t = ferry.client();
    t.send(format!("CONNECT {echo} HTTP/1.1\r\n\r\n").as_bytes());
    t.read_head().unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        t.send(b"ping");
        assert_eq!(t.read_exact_n(4), b"PING");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn slowloris_clients_are_cut_by_the_header_timeout_and_others_are_served() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("limits:\n  header_timeout_secs: 1\n");
    let mut slow: Vec<Wire> = (0..50).map(|_| ferry.client()).collect();
    for s in &mut slow {
        s.stream.write_all(b"GET http://x/ HTTP/1.1\r\n").unwrap();
    }
    let mut ok = ferry.client();
    assert_eq!(ok.roundtrip(&get(origin.addr, "/size/3")).body, pattern(3));
    // keep dripping bytes: the timeout runs from the first byte, so they are cut anyway
    let start = Instant::now();
    let mut open = slow.len();
    while open > 0 && start.elapsed() < Duration::from_secs(10) {
        open = 0;
        for s in &mut slow {
            if s.stream.write_all(b"X-A: b\r\n").is_ok() {
                open += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for s in &mut slow {
        assert_eq!(s.response().status, 408);
        assert!(s.closed());
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "slowloris lasted {:?}",
        start.elapsed()
    );
    assert_eq!(ok.roundtrip(&get(origin.addr, "/size/4")).body, pattern(4));
}

#[test]
fn a_client_opening_hundreds_of_connections_at_once_is_not_refused() {
    // A wrk run with 256 connections once got 503s: every session's first request starts an
    // origin connect in the same loop turn.
    let origin = Fake::origin("origin");
    let ferry = Ferry::start_with(1, "");
    let mut burst: Vec<Wire> = (0..300).map(|_| ferry.client()).collect();
    for c in &mut burst {
        c.send(&get(origin.addr, "/size/1"));
    }
    for c in &mut burst {
        assert_eq!(c.response().status, 200);
    }
}
