//! Black-box regressions of the defects an adversarial review found in the forward role
//! (issue "Security and robustness defects"): scan loops that must make progress, framing that
//! `Connection` must not remove, retries that must not replay, responses cut short, silent
//! upstreams, timeouts that name the right side, and the RFC musts of a proxy. Servers that
//! misbehave in one exact way are `Raw` scripts that keep every byte they received.

mod common;

use common::raw::{Raw, RawConn};
use common::wire::get;
use common::{pattern, wait_until, Fake, Ferry};
use std::io::Write;
use std::time::{Duration, Instant};

const DIRECT: &str = "on_all_down: direct\n";

/// A response with `body`, kept alive.
fn ok(c: &mut RawConn, body: &str) {
    c.write(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

/// A pool of `members` (url, extra keys) in priority order: the first is always tried first.
fn priority_pool(members: &[String]) -> String {
    let mut y = String::from(
        "mode: priority\nhealth_check:\n  interval_secs: 3600\n  timeout_secs: 1\nupstream:\n",
    );
    for (i, url) in members.iter().enumerate() {
        y.push_str(&format!("  - url: {url}\n    priority: {}\n", i + 1));
    }
    y
}

#[test]
fn empty_lines_from_a_client_do_not_stop_its_worker() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start_with(1, DIRECT);
    // Each of these once spun the worker for ever: the scan found the same empty "head" again.
    let mut idle = Vec::new();
    for junk in [&b"\n\n"[..], b"\r\n\r\n", b"\r\n\n\r\n\n"] {
        let mut c = ferry.client();
        c.send(junk);
        idle.push(c);
    }
    let mut c = ferry.client();
    assert_eq!(c.roundtrip(&get(origin.addr, "/size/5")).body, pattern(5));
    // RFC 9112 §2.2: empty lines before a request line are skipped.
    let mut c = ferry.client();
    let mut req = b"\r\n\n\r\n".to_vec();
    req.extend(get(origin.addr, "/size/7"));
    assert_eq!(c.roundtrip(&req).body, pattern(7));
    // ...also between keep-alive requests (after a body, say).
    let mut req = b"\r\n".to_vec();
    req.extend(get(origin.addr, "/size/8"));
    assert_eq!(c.roundtrip(&req).body, pattern(8));
}

#[test]
fn empty_lines_from_an_origin_do_not_stop_the_worker() {
    let origin = Raw::start(|c| {
        while c.read_request().is_some() {
            c.write(b"\n\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    let blank = Raw::start(|c| {
        c.read_request();
        c.write(b"\r\n\r\n\n\n");
    });
    let ferry = Ferry::start_with(1, DIRECT);
    let mut c = ferry.client();
    let r = c.roundtrip(&get(origin.addr, "/"));
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let mut c = ferry.client();
    let r = c.roundtrip(&get(blank.addr, "/"));
    assert_eq!(r.status, 502);
    let mut c = ferry.client();
    assert_eq!(c.roundtrip(&get(origin.addr, "/")).status, 200);
}

#[test]
fn connection_cannot_remove_a_request_length_and_smuggle_its_body() {
    let origin = Raw::start(|c| {
        while c.read_request().is_some() {
            ok(c, "one");
        }
    });
    let ferry = Ferry::start_with(1, DIRECT);
    let smuggled = format!("GET /admin HTTP/1.1\r\nHost: {}\r\n\r\n", origin.addr);
    let mut c = ferry.client();
    c.send(
        format!(
            "POST http://{}/ HTTP/1.1\r\nHost: {}\r\nConnection: Content-Length\r\nContent-Length: {}\r\n\r\n{smuggled}",
            origin.addr,
            origin.addr,
            smuggled.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.response().text(), "one");
    wait_until("the origin got the body", || {
        origin.text().contains("GET /admin")
    });
    let seen = origin.text();
    // One request, whose body is the would-be second one: its length went with it.
    assert_eq!(seen.matches("HTTP/1.1\r\n").count(), 2, "{seen}");
    assert!(
        seen.contains(&format!("Content-Length: {}\r\n", smuggled.len())),
        "{seen}"
    );
}

#[test]
fn connection_cannot_remove_a_response_transfer_encoding() {
    let origin = Raw::start(|c| {
        c.read_request();
        c.write(b"HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    });
    let ferry = Ferry::start_with(1, DIRECT);
    let mut c = ferry.client();
    let r = c.roundtrip(&get(origin.addr, "/"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.text(), "hello");
}

#[test]
fn no_failover_after_a_relayed_100_continue() {
    // The first upstream says "100 Continue", then hangs up; the second must never see the
    // body (without its head it would read it as a request of its own).
    let first = Raw::start(|c| {
        c.read_head();
        c.write_and_finish(b"HTTP/1.1 100 Continue\r\n\r\n");
    });
    let second = Raw::start(|c| {
        c.drain(Duration::from_secs(5));
    });
    let ferry = Ferry::start_with(1, &priority_pool(&[first.url(), second.url()]));
    let mut c = ferry.client();
    c.send(b"PUT http://o.test/ HTTP/1.1\r\nHost: o.test\r\nExpect: 100-continue\r\nContent-Length: 28\r\n\r\n");
    assert_eq!(c.response_to(false).status, 100);
    c.send(b"GET /smuggled HTTP/1.1\r\n\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 502, "{}", r.text());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !second.text().contains("smuggled"),
        "body sent without its head: {:?}",
        second.text()
    );
}

#[test]
fn early_hints_then_a_close_on_a_kept_connection_is_a_prompt_502() {
    let origin = Raw::start(|c| {
        if c.index == 0 {
            c.read_request();
            ok(c, "first");
            c.read_request();
            c.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n");
        } else {
            // A retry would land here, with nothing sent: answer nothing.
            c.drain(Duration::from_secs(30));
        }
    });
    let ferry = Ferry::start_with(1, &format!("{DIRECT}limits:\n  idle_timeout_secs: 60\n"));
    let mut c = ferry.client();
    assert_eq!(c.roundtrip(&get(origin.addr, "/1")).text(), "first");
    let started = Instant::now();
    c.send(&get(origin.addr, "/2"));
    assert_eq!(c.response_to(false).status, 103);
    assert_eq!(c.response().status, 502);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(origin.connections(), 1, "retried after a 1xx");
}

#[test]
fn a_non_idempotent_request_is_not_replayed_on_another_upstream() {
    let first = Raw::start(|c| {
        c.read_request();
        // Took it, then hung up.
    });
    let second = Raw::start(|c| {
        while c.read_request().is_some() {
            ok(c, "second");
        }
    });
    let ferry = Ferry::start_with(1, &priority_pool(&[first.url(), second.url()]));
    let mut c = ferry.client();
    let r = c.roundtrip(b"POST http://shop.test/charge-card HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(first.text().contains("charge-card"));
    assert!(!second.text().contains("charge-card"), "charged twice");
    // An idempotent one may move on, and so may a POST that says it may be repeated.
    let mut c = ferry.client();
    let r = c.roundtrip(
        b"PUT http://shop.test/cart HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.text(), "second");
}

#[test]
fn a_response_cut_short_reaches_the_client_as_far_as_it_came() {
    // The answer and the FIN arrive together, so that ferry reads bytes and end at once.
    let origin = Raw::start(|c| {
        c.read_request();
        c.write_and_finish(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n1234567");
    });
    let ferry = Ferry::start_with(1, DIRECT);
    let mut c = ferry.client();
    c.send(&get(origin.addr, "/"));
    let got = c.read_to_end();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
    assert!(text.ends_with("\r\n\r\n1234567"), "{text:?}");
}

/// An upstream proxy that accepts connections and never answers.
fn silent() -> Raw {
    Raw::start(|c| c.drain(Duration::from_secs(30)))
}

#[test]
fn a_connect_to_a_silent_upstream_fails_over_at_the_connect_timeout() {
    let (mute, good) = (silent(), Fake::proxy("good", None));
    let target = common::banner_server(b"hello\n");
    let ferry = Ferry::start_with(
        1,
        &format!(
            "limits:\n  connect_timeout_secs: 1\n  idle_timeout_secs: 60\n{}",
            priority_pool(&[mute.url(), good.url()])
        ),
    );
    let mut c = ferry.client();
    let started = Instant::now();
    c.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes());
    assert_eq!(c.response_to(true).status, 200);
    assert_eq!(c.read_exact_n(6), b"hello\n");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(mute.text().contains("CONNECT"));
    assert!(good.heads().iter().any(|h| h.starts_with("CONNECT")));
}

#[test]
fn a_response_timeout_through_an_upstream_probes_it_at_once() {
    let mute = silent();
    let ferry = Ferry::start_with(
        1,
        &format!(
            "admin_listen: \"127.0.0.1:0\"\nlimits:\n  idle_timeout_secs: 1\n{}",
            priority_pool(&[mute.url()])
        ),
    );
    let mut c = ferry.client();
    let r = c.roundtrip(b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n");
    assert_eq!(r.status, 504);
    // The probe (interval 3600 s, so only the timeout can have started it) times out too,
    // and the upstream goes offline.
    let sample = format!("ferry_upstream_online{{url=\"{}\"}}", mute.url());
    wait_until("the silent upstream goes offline", || {
        ferry.metric(&sample) == Some(0.0)
    });
    let mut c = ferry.client();
    let r = c.roundtrip(b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n");
    assert_eq!(r.status, 502);
}

#[test]
fn a_client_that_stalls_mid_body_gets_408() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start_with(1, &format!("{DIRECT}limits:\n  idle_timeout_secs: 1\n"));
    let mut c = ferry.client();
    c.send(
        format!(
            "POST http://{}/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
            origin.addr
        )
        .as_bytes(),
    );
    let r = c.response();
    assert_eq!(r.status, 408, "{}", r.text());
}

#[test]
fn http_1_0_requests_with_transfer_encoding_are_refused() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start_with(1, DIRECT);
    let mut c = ferry.client();
    let r = c.roundtrip(
        format!(
            "POST http://{}/echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            origin.addr
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 400);
    assert_eq!(origin.requests(), 0);
}

#[test]
fn a_chunked_response_reaches_an_http_1_0_client_dechunked() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start_with(1, DIRECT);
    let mut c = ferry.client();
    c.send(format!("GET http://{}/chunked HTTP/1.0\r\n\r\n", origin.addr).as_bytes());
    let got = c.read_to_end();
    let text = String::from_utf8_lossy(&got);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert_eq!(body, "hello 0\r\n\r\n world0\r\n\r\nend");
}

#[test]
fn options_and_trace_with_max_forwards_0_are_answered_by_ferry() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start_with(1, DIRECT);
    let mut c = ferry.client();
    let a = origin.addr;
    let r = c.roundtrip(
        format!("OPTIONS http://{a}/ HTTP/1.1\r\nHost: {a}\r\nMax-Forwards: 0\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert!(r.header("allow").is_some_and(|v| v.contains("TRACE")));
    let r = c.roundtrip(format!("TRACE http://{a}/t HTTP/1.1\r\nHost: {a}\r\nMax-Forwards: 0\r\nCookie: secret\r\nX-Mine: 1\r\n\r\n").as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("message/http"));
    let echo = r.text();
    assert!(
        echo.starts_with(&format!("TRACE http://{a}/t HTTP/1.1\r\n")),
        "{echo}"
    );
    assert!(
        echo.contains("X-Mine: 1") && !echo.contains("secret"),
        "{echo}"
    );
    assert_eq!(origin.requests(), 0);
    // Above 0 it goes on, one less.
    let r = c.roundtrip(
        format!("OPTIONS http://{a}/headers HTTP/1.1\r\nHost: {a}\r\nMax-Forwards: 3\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert!(r.text().contains("Max-Forwards: 2\r\n"), "{}", r.text());
}

#[test]
fn via_is_added_both_ways_unless_turned_off() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start_with(1, DIRECT);
    let mut c = ferry.client();
    let r = c.roundtrip(&get(origin.addr, "/headers"));
    assert!(r.text().contains("Via: 1.1 ferry\r\n"), "{}", r.text());
    assert_eq!(r.header("via"), Some("1.1 ferry"));
    let ferry = Ferry::start_with(1, &format!("{DIRECT}via: false\n"));
    let mut c = ferry.client();
    let r = c.roundtrip(&get(origin.addr, "/headers"));
    assert!(!r.text().contains("Via:"), "{}", r.text());
    assert_eq!(r.header("via"), None);
}

#[test]
fn identical_duplicate_lengths_are_sent_as_one() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start_with(1, DIRECT);
    let mut c = ferry.client();
    let a = origin.addr;
    let r = c.roundtrip(format!("POST http://{a}/echo HTTP/1.1\r\nHost: {a}\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc").as_bytes());
    assert_eq!(r.text(), "abc");
    let head = &origin.heads()[0];
    assert_eq!(head.matches("Content-Length").count(), 1, "{head}");
}

#[test]
fn a_response_with_many_header_fields_is_relayed() {
    let origin = Raw::start(|c| {
        c.read_request();
        let mut r = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..300 {
            r.push_str(&format!("X-F{i}: {i}\r\n"));
        }
        r.push_str("Content-Length: 2\r\n\r\nok");
        c.write(r.as_bytes());
    });
    let ferry = Ferry::start_with(1, DIRECT);
    let mut c = ferry.client();
    c.send(&get(origin.addr, "/"));
    let head = c.read_head().unwrap();
    let text = String::from_utf8_lossy(&head);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("X-F299: 299\r\n"));
    assert_eq!(c.read_exact_n(2), b"ok");
}

#[test]
fn bytes_that_cannot_start_a_request_are_refused_at_once() {
    let ferry = Ferry::start_with(1, DIRECT);
    let mut c = ferry.client();
    // The start of a TLS ClientHello, as a client set up for an https:// proxy sends it.
    let started = Instant::now();
    c.send(&[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ]);
    let r = c.response();
    assert_eq!(r.status, 400);
    assert!(c.closed());
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_head_trickled_past_the_request_timeout_is_cut() {
    let ferry = Ferry::start_with(
        1,
        &format!("{DIRECT}limits:\n  request_timeout_secs: 1\n  header_timeout_secs: 30\n"),
    );
    let mut c = ferry.client();
    c.stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let started = Instant::now();
    c.send(b"GET http://o.test/ HTTP/1.1\r\n");
    let mut stream = c.stream.try_clone().unwrap();
    let dripper = std::thread::spawn(move || {
        for _ in 0..100 {
            if stream.write_all(b"X-Drip: 1\r\n").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let r = c.response();
    assert_eq!(r.status, 408);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(c);
    let _ = dripper.join();
}
