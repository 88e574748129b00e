//! Black-box tests of hostile input and abuse: malformed requests and responses, many idle
//! clients, clients that never read, fd exhaustion, and a session that panics.

mod common;

use common::wire::get;
use common::{pattern, Fake, Ferry, Wire};

#[test]
fn every_malformed_request_gets_its_status_and_the_connection_closed() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let a = origin.addr;
    let many: String = (0..120).map(|i| format!("X-{i}: v\r\n")).collect();
    let cases: Vec<(String, u16)> = vec![
        (
            format!("GET http://{a}/ HTTP/1.1\r\nX: a\r\n folded\r\n\r\n"),
            400,
        ),
        (format!("GET http://{a}/ HTTP/1.1\r\nX: a\rb\r\n\r\n"), 400),
        (format!("GET http://{a}/ HTTP/1.1\r\nX: a\0b\r\n\r\n"), 400),
        (format!("GET http://{a}/ HTTP/1.1\r\nX Y: a\r\n\r\n"), 400),
        (format!("GET http://{a}/ HTTP/1.1\r\nX : a\r\n\r\n"), 400),
        (format!("GET http://{a}/\r\n\r\n"), 400),
        ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_string(), 505),
        (format!("GET http://{a}/ HTTP/1.1\r\n{many}\r\n"), 431),
        (format!("GET http://{a}:99999/ HTTP/1.1\r\n\r\n"), 400),
        (
            format!(
                "POST http://{a}/echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
            ),
            400,
        ),
    ];
    for (raw, status) in cases {
        let mut c = ferry.client();
        let r = c.roundtrip(raw.as_bytes());
        assert_eq!(r.status, status, "{raw:?}");
        assert!(c.closed(), "{raw:?} left the connection open");
    }
    assert!(
        origin.heads().is_empty(),
        "a malformed request reached the origin"
    );
}

#[test]
fn a_smuggled_request_never_reaches_a_lenient_upstream() {
    let up = Fake::proxy("up", None);
    let ferry = Ferry::start(&format!("upstream:\n  - url: {}\n", up.url()));
    let smuggle = "POST http://o.test/echo HTTP/1.1\r\nHost: o.test\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET http://o.test/admin HTTP/1.1\r\nX: y\r\n\r\n";
    let mut c = ferry.client();
    assert_eq!(c.roundtrip(smuggle.as_bytes()).status, 400);
    assert!(up.heads().is_empty());
}

#[test]
fn a_malformed_upstream_response_gets_502_and_the_connection_is_not_kept() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let mut c = ferry.client();
    let r = c.roundtrip(&get(origin.addr, "/malformed"));
    assert_eq!(r.status, 502);
    assert!(c.closed());
    let mut c = ferry.client();
    assert_eq!(c.roundtrip(&get(origin.addr, "/size/3")).body, pattern(3));
    assert_eq!(origin.conns.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// Raises this test process's open-files limit so it can hold thousands of sockets.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the rlimit we own, passed by valid pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

#[test]
fn two_thousand_idle_clients_then_a_normal_request_works() {
    raise_nofile();
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let idle: Vec<Wire> = (0..2000).map(|_| ferry.client()).collect();
    let mut c = ferry.client();
    assert_eq!(c.roundtrip(&get(origin.addr, "/size/9")).body, pattern(9));
    drop(idle);
}

#[test]
fn a_client_that_never_reads_does_not_grow_memory() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let before = ferry.rss_kib();
    let mut stuck: Vec<Wire> = Vec::new();
    for _ in 0..8 {
        let mut c = ferry.client();
        c.send(&get(origin.addr, &format!("/size/{}", 64 << 20)));
        stuck.push(c);
    }
    common::wait_until("the requests to reach the origin", || {
        origin.heads().len() == 8
    });
    // Give the bytes every chance to pile up; the bound below only gets harder to meet.
    std::thread::sleep(std::time::Duration::from_millis(700));
    let after = ferry.rss_kib();
    // 8 sessions may hold two 16 KiB buffers each; 64 MiB each would be 512 MiB.
    assert!(
        after < before + 2048,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn fd_exhaustion_backs_off_and_service_resumes() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start_with_fd_limit("", 64);
    let flood: Vec<std::net::TcpStream> = (0..120)
        .filter_map(|_| std::net::TcpStream::connect(ferry.addr).ok())
        .collect();
    common::wait_until("the back-off", || {
        ferry.log_text().contains("pausing new connections")
    });
    drop(flood);
    common::wait_until("service to resume", || {
        let mut c = ferry.client();
        c.send(&get(origin.addr, "/size/5"));
        let mut b = [0u8; 1];
        c.stream
            .set_read_timeout(Some(std::time::Duration::from_millis(500)))
            .unwrap();
        matches!(std::io::Read::read(&mut c.stream, &mut b), Ok(1))
    });
}

#[cfg(feature = "test-hooks")]
#[test]
fn a_panicking_session_is_closed_and_the_worker_keeps_serving() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start_with(1, "admin_listen: \"127.0.0.1:0\"\n");
    let mut bad = ferry.client();
    bad.send(b"GET http://panic.ferry.test/ HTTP/1.1\r\n\r\n");
    assert!(bad.closed());
    let mut c = ferry.client();
    assert_eq!(c.roundtrip(&get(origin.addr, "/size/2")).body, pattern(2));
    assert_eq!(ferry.metric("ferry_panics_total"), Some(1.0));
}

#[cfg(feature = "test-hooks")]
#[test]
fn a_worker_whose_loop_dies_is_restarted() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start_with(1, "admin_listen: \"127.0.0.1:0\"\n");
    let mut bad = ferry.client();
    bad.send(b"GET http://crash.ferry.test/ HTTP/1.1\r\n\r\n");
    common::wait_until("the worker stuck before its crash", || {
        ferry.log_text().contains("crashing this worker in")
    });
    // Connects while the loop is stuck and then dead: it waits in the listener's backlog,
    // which the restarted loop keeps, and is served (it used to be reset with the listener).
    let mut waiting = ferry.client();
    waiting.send(&get(origin.addr, "/size/6"));
    assert_eq!(waiting.response().body, pattern(6));
    // The log is read from ferry's stderr by another thread: it may lag a moment.
    common::wait_until("the restart log line", || {
        ferry.log_text().contains("crashed; restarting")
    });
}

/// An address whose connects hang: a listener whose backlog is full, so SYNs are dropped.
fn black_hole() -> (
    socket2::Socket,
    Vec<std::net::TcpStream>,
    std::net::SocketAddr,
) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    s.listen(1).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    // fill the accept queue (never accepted)
    let fillers: Vec<std::net::TcpStream> = (0..3)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(300)).ok()
        })
        .collect();
    (s, fillers, addr)
}

#[test]
fn a_flood_of_connects_to_a_dead_target_is_bounded_and_others_are_served() {
    raise_nofile();
    let origin = Fake::origin("origin");
    let (_hole, _fill, dead) = black_hole();
    let ferry = Ferry::start_with(1, "limits:\n  connect_timeout_secs: 5\n");
    let mut flood: Vec<Wire> = Vec::new();
    // one client opens more connects than half the worker's bound (512 of 1024)
    for _ in 0..600 {
        let mut c = ferry.client();
        c.send(format!("CONNECT {dead} HTTP/1.1\r\n\r\n").as_bytes());
        flood.push(c);
    }
    // beyond the bound, refused at once
    let mut refused = 0;
    for c in flood.iter_mut().rev().take(20) {
        let r = c.response();
        if r.status == 503 {
            assert!(r.text().contains("too many connections being opened"));
            refused += 1;
        }
    }
    assert!(refused > 0, "no CONNECT was refused");
    // another client is still served while the flood's connects hang
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(
        &"127.0.0.2:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    s.connect(&ferry.addr.into()).unwrap();
    let s: std::net::TcpStream = s.into();
    s.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    let mut ok = Wire::from_stream(s);
    assert_eq!(ok.roundtrip(&get(origin.addr, "/size/7")).body, pattern(7));
}
