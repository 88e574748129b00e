//! Black-box regressions of what an outsider's attack on the forward role found: peers that
//! make ferry queue answers for a client that never reads, upstreams blamed for what is not
//! their fault, credentials echoed by TRACE, tunnels by the back door, and heads that end or
//! begin in unusual (but valid) ways.

mod common;

use common::raw::Raw;
use common::wire::get;
use common::{Fake, Ferry};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DIRECT: &str = "on_all_down: direct\n";

/// Asserts that another client of the same (single) worker is served promptly, and that
/// ferry's memory stays bounded (grew by less than 8 MiB from `before`; under an emulator
/// RSS counts the emulator too, so growth is what counts), while `what` goes on.
fn others_are_served(ferry: &Ferry, origin: &Fake, before: u64, what: &str) {
    let started = Instant::now();
    let mut c = ferry.client();
    assert_eq!(c.roundtrip(&get(origin.addr, "/size/3")).status, 200);
    let took = started.elapsed();
    let rss = ferry.rss_kib();
    eprintln!("{what}: another client waited {took:?}; RSS {rss} KiB from {before} KiB");
    assert!(
        took < Duration::from_secs(5),
        "{what}: another client waited {took:?}"
    );
    assert!(
        rss < before + 8 * 1024,
        "{what}: RSS {before} KiB, then {rss} KiB"
    );
}

#[test]
fn a_1xx_storm_to_a_client_that_never_reads_stalls_nothing() {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let storm = Raw::start(move |c| {
        c.read_request();
        let end = Instant::now() + Duration::from_secs(15);
        let _ = c.stream.set_write_timeout(Some(Duration::from_millis(200)));
        while !s.load(Ordering::SeqCst) && Instant::now() < end {
            if c.stream
                .write_all(&b"HTTP/1.1 100 Continue\r\n\r\n".repeat(64))
                .is_err()
            {
                break; // ferry stopped reading us: the storm is held back
            }
        }
    });
    let origin = Fake::origin("origin");
    let ferry = Ferry::start_with(1, DIRECT);
    let before = ferry.rss_kib();
    let mut victim = ferry.client();
    victim.send(&get(storm.addr, "/"));
    std::thread::sleep(Duration::from_secs(2));
    others_are_served(&ferry, &origin, before, "a 1xx storm");
    stop.store(true, Ordering::SeqCst);
}

#[test]
fn pipelined_requests_ferry_answers_itself_wait_for_a_client_that_never_reads() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start_with(1, DIRECT);
    let before = ferry.rss_kib();
    let mut flood = ferry.client().stream;
    flood
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let flooder = std::thread::spawn(move || {
        // TRACE echoes each head, so every request asks for its size again in answers.
        let pad = "p".repeat(8000);
        let one = format!(
            "TRACE http://x/ HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\nX-Pad: {pad}\r\n\r\n"
        )
        .repeat(16)
        .into_bytes();
        let end = Instant::now() + Duration::from_secs(20);
        while !s.load(Ordering::SeqCst) && Instant::now() < end {
            let _ = flood.write(&one); // a timeout just means: try again
        }
    });
    std::thread::sleep(Duration::from_secs(6));
    others_are_served(&ferry, &origin, before, "a pipelined flood");
    stop.store(true, Ordering::SeqCst);
    flooder.join().unwrap();
}

#[test]
fn a_connect_refused_by_every_upstream_takes_none_offline() {
    // A proxy answers 503 to a CONNECT whose target it cannot reach: that is about the target.
    let (a, b) = (Fake::proxy("a", None), Fake::proxy("b", None));
    for u in [&a, &b] {
        u.knobs.connect_status.store(503, Ordering::SeqCst);
    }
    let ferry = Ferry::start_with(
        1,
        &format!(
            "admin_listen: \"127.0.0.1:0\"\nhealth_check:\n  interval_secs: 3600\nupstream:\n  - url: {}\n  - url: {}\n",
            a.url(),
            b.url()
        ),
    );
    let mut c = ferry.client();
    c.send(b"CONNECT no-such-host.invalid:443 HTTP/1.1\r\nHost: no-such-host.invalid:443\r\n\r\n");
    assert_eq!(c.response_to(true).status, 502);
    for u in [&a, &b] {
        let sample = format!("ferry_upstream_online{{url=\"{}\"}}", u.url());
        assert_eq!(ferry.metric(&sample), Some(1.0), "{} went offline", u.tag);
    }
    let mut c = ferry.client();
    let r = c.roundtrip(b"GET http://o.test/size/2 HTTP/1.1\r\nHost: o.test\r\n\r\n");
    assert_eq!(r.status, 200);
}

#[test]
fn a_post_on_a_reused_connection_that_was_closed_is_not_blamed() {
    let up = Fake::proxy("up", None);
    let ferry = Ferry::start_with(
        1,
        &format!(
            "admin_listen: \"127.0.0.1:0\"\nhealth_check:\n  interval_secs: 3600\nupstream:\n  - url: {}\n",
            up.url()
        ),
    );
    let mut c = ferry.client();
    let r = c.roundtrip(
        b"GET http://o.test/size/4 HTTP/1.1\r\nHost: o.test\r\nX-Die-On-Reuse: 1\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    // The kept connection is reused; the upstream reads the POST and hangs up. ferry may not
    // send it again, but the upstream did nothing wrong.
    let r = c.roundtrip(b"POST http://o.test/echo HTTP/1.1\r\nHost: o.test\r\nX-Die-On-Reuse: 1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 502);
    let failures = format!("ferry_upstream_failures_total{{url=\"{}\"}}", up.url());
    assert_eq!(ferry.metric(&failures), Some(0.0));
}

#[test]
fn trace_never_goes_through_an_upstream_that_needs_credentials() {
    let up = Fake::proxy("up", Some("Basic YWxpY2U6czNjcmV0"));
    let ferry = Ferry::start_with(
        1,
        &format!(
            "upstream:\n  - url: {}\n    username: alice\n    password: s3cret\n",
            up.url()
        ),
    );
    let mut c = ferry.client();
    let r =
        c.roundtrip(b"TRACE http://o.test/ HTTP/1.1\r\nHost: o.test\r\nMax-Forwards: 1\r\n\r\n");
    assert_eq!(r.status, 403);
    assert!(!r.text().contains("YWxpY2U"));
    assert_eq!(up.requests(), 0);
}

#[test]
fn connect_ports_also_bound_upgrades() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start_with(1, &format!("{DIRECT}access:\n  connect_ports: [443]\n"));
    let mut c = ferry.client();
    let a = origin.addr;
    let r = c.roundtrip(
        format!("GET http://{a}/ws HTTP/1.1\r\nHost: {a}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 403);
    assert_eq!(origin.requests(), 0);
}

#[test]
fn an_empty_line_split_across_reads_is_still_skipped() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start_with(1, DIRECT);
    let mut c = ferry.client();
    c.send(b"\r");
    std::thread::sleep(Duration::from_millis(200));
    let mut rest = b"\n".to_vec();
    rest.extend(get(origin.addr, "/size/6"));
    let r = c.roundtrip(&rest);
    assert_eq!(r.status, 200);
}

#[test]
fn a_head_ended_by_lf_then_crlf_is_found() {
    let origin = Raw::start(|c| {
        while c.read_request().is_some() {
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nok");
        }
    });
    let ferry = Ferry::start_with(1, DIRECT);
    let mut c = ferry.client();
    let started = Instant::now();
    let r = c.roundtrip(&get(origin.addr, "/"));
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn chunked_applied_twice_is_refused() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start_with(1, DIRECT);
    let a = origin.addr;
    for te in ["chunked, chunked", "chunked\r\nTransfer-Encoding: chunked"] {
        let mut c = ferry.client();
        let r = c.roundtrip(
            format!("POST http://{a}/echo HTTP/1.1\r\nHost: {a}\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, 400, "{te}");
    }
    assert_eq!(origin.requests(), 0);
}

#[test]
fn a_head_that_times_out_gets_a_proper_408() {
    let ferry = Ferry::start_with(1, &format!("{DIRECT}limits:\n  header_timeout_secs: 1\n"));
    let mut c = ferry.client();
    c.send(b"GET http://x/ HTTP/1.1\r\n");
    let head = c.read_head().unwrap();
    assert!(head.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"));
}

#[test]
fn a_burst_of_slow_names_from_clients_that_left_does_not_hold_the_resolvers() {
    // test-hooks: every `*.slow-dns.ferry.test` look-up takes 4 s. Twenty clients ask for one
    // each and hang up; their look-ups wait in the queue past their deadline and are dropped
    // unasked, instead of keeping both resolver threads busy for 40 s.
    let origin = Fake::origin("origin");
    let ferry = Ferry::start_with(1, &format!("{DIRECT}limits:\n  connect_timeout_secs: 2\n"));
    for i in 0..20 {
        let mut c = ferry.client();
        c.send(
            format!("GET http://n{i}.slow-dns.ferry.test/ HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
    }
    // The first two take 4 s; then the rest are skipped at once, and a name is looked up
    // again well before the 40 s the queue would take to work through.
    let port = origin.addr.port();
    let started = Instant::now();
    loop {
        let mut c = ferry.client();
        let r = c.roundtrip(
            format!("GET http://localhost:{port}/size/3 HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .as_bytes(),
        );
        if r.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "still {} after {:?}: {}",
            r.status,
            started.elapsed(),
            r.text()
        );
    }
}

#[test]
fn an_upstream_that_is_ferry_itself_is_not_looped_through() {
    let ferry = Ferry::start_with(1, DIRECT);
    assert!(ferry.reload(&format!(
        "health_check:\n  interval_secs: 3600\nupstream:\n  - url: http://{}\n",
        ferry.addr
    )));
    let mut c = ferry.client();
    let r = c.roundtrip(b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n");
    assert_eq!(r.status, 502);
    assert!(r.text().contains("this proxy itself"), "{}", r.text());
    assert!(r.header("via").is_none(), "the request went round");
}

#[test]
fn a_dechunked_body_cut_short_ends_with_a_reset_not_a_clean_close() {
    // An HTTP/1.0 client knows the end of a de-chunked body only by the close: a clean close
    // after a cut would pass for the whole body.
    let origin = Raw::start(|c| {
        c.read_request();
        c.write_and_finish(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\npar",
        );
    });
    let ferry = Ferry::start_with(1, DIRECT);
    let mut c = ferry.client();
    c.send(format!("GET http://{}/ HTTP/1.0\r\n\r\n", origin.addr).as_bytes());
    let head = c.read_head().unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200"));
    let mut got = c.take_buffered();
    let mut b = [0u8; 64];
    let end = loop {
        match std::io::Read::read(&mut c.stream, &mut b) {
            Ok(0) => break "a clean close",
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break "a reset",
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(end, "a reset", "after {:?}", String::from_utf8_lossy(&got));
    assert!(
        got.starts_with(b"hello"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn requests_held_back_for_a_slow_reader_are_not_timed_out() {
    // A client with a small receive window pipelines requests whose answers (TRACE echoes)
    // back up, then reads nothing for longer than the header timeout. ferry holds the next
    // heads back meanwhile; that is no reason for a 408, and no answer may be lost.
    let ferry = Ferry::start_with(1, &format!("{DIRECT}limits:\n  header_timeout_secs: 1\n"));
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&ferry.addr.into()).unwrap();
    let stream: std::net::TcpStream = sock.into();
    stream.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let n = 700;
    let sender = std::thread::spawn(move || {
        let pad = "a".repeat(8000);
        for i in 0..n {
            let req = format!("TRACE http://127.0.0.1:9/t{i} HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\nX-Pad: {pad}\r\n\r\n");
            if writer.write_all(req.as_bytes()).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    let mut c = common::Wire::from_stream(stream);
    for i in 0..n {
        let r = c.response();
        assert_eq!(r.status, 200, "answer {i}: {}", r.text());
        assert!(r
            .text()
            .starts_with(&format!("TRACE http://127.0.0.1:9/t{i} ")));
    }
    sender.join().unwrap();
}
