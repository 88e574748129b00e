//! Black-box tests of plain HTTP through ferry, direct to an origin.

mod common;

use common::wire::get;
use common::{pattern, Fake, Ferry};
use std::thread;
use std::time::Duration;

#[test]
fn methods_and_statuses_pass_through_unchanged() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let a = origin.addr;
    let mut c = ferry.client();
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
        let r = c.roundtrip(
            format!(
                "{method} http://{a}/echo HTTP/1.1\r\nHost: {a}\r\nContent-Length: 3\r\n\r\nabc"
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-method"), Some(method));
        assert_eq!(r.body, b"abc");
        assert_eq!(r.served_by(), Some("origin"));
    }
    for status in [200, 201, 301, 400, 404, 418, 500, 503] {
        let r = c.roundtrip(&get(a, &format!("/status/{status}")));
        assert_eq!(r.status, status);
        assert_eq!(r.text(), format!("status {status}"));
    }
}

#[test]
fn bodies_from_empty_to_ten_mebibytes_arrive_intact() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let a = origin.addr;
    let mut c = ferry.client();
    for n in [
        0usize,
        1,
        100,
        16 * 1024 - 1,
        16 * 1024 + 1,
        1 << 20,
        10 << 20,
    ] {
        let r = c.roundtrip(&get(a, &format!("/size/{n}")));
        assert_eq!(r.status, 200);
        assert!(r.body == pattern(n), "GET body of {n} bytes differs");
        // and the same size uploaded
        let body = pattern(n);
        let mut req =
            format!("POST http://{a}/echo HTTP/1.1\r\nHost: {a}\r\nContent-Length: {n}\r\n\r\n")
                .into_bytes();
        req.extend_from_slice(&body);
        let r = c.roundtrip(&req);
        assert!(r.body == body, "POST body of {n} bytes differs");
    }
}

#[test]
fn chunked_response_containing_the_terminator_text_is_relayed_whole() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let mut c = ferry.client();
    let r = c.roundtrip(&get(origin.addr, "/chunked"));
    assert_eq!(r.body, b"hello 0\r\n\r\n world0\r\n\r\nend");
    // the connection is still in sync
    let r = c.roundtrip(&get(origin.addr, "/size/10"));
    assert_eq!(r.body, pattern(10));
}

#[test]
fn chunked_request_bodies_arriving_with_the_head_and_slowly() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let a = origin.addr;
    let mut c = ferry.client();
    // all in one write, body text containing the terminator
    let r = c.roundtrip(format!("POST http://{a}/echo HTTP/1.1\r\nHost: {a}\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\n0\r\n\r\n\r\n0\r\n\r\n").as_bytes());
    assert_eq!(r.body, b"0\r\n\r\n");
    // piece by piece
    c.send(
        format!("POST http://{a}/echo HTTP/1.1\r\nHost: {a}\r\nTransfer-Encoding: chunked\r\n\r\n")
            .as_bytes(),
    );
    for piece in [
        &b"3\r"[..],
        b"\nabc",
        b"\r\n",
        b"4\r\ndefg\r\n",
        b"0\r\n",
        b"Trailer: x\r\n",
        b"\r\n",
    ] {
        thread::sleep(Duration::from_millis(30));
        c.send(piece);
    }
    let r = c.response();
    assert_eq!(r.body, b"abcdefg");
}

#[test]
fn head_204_and_304_keep_the_connection_in_sync() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let a = origin.addr;
    let mut c = ferry.client();
    c.send(format!("HEAD http://{a}/size/500 HTTP/1.1\r\nHost: {a}\r\n\r\n").as_bytes());
    let r = c.response_to(true);
    assert_eq!((r.status, r.header("content-length")), (200, Some("500")));
    let r = c.roundtrip(&get(a, "/status/204"));
    assert_eq!(r.status, 204);
    let r = c.roundtrip(&get(a, "/status/304"));
    assert_eq!(r.status, 304);
    let r = c.roundtrip(&get(a, "/size/7"));
    assert_eq!((r.status, r.body), (200, pattern(7)));
}

#[test]
fn twenty_five_requests_share_one_client_and_one_origin_connection() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let mut c = ferry.client();
    for i in 0..25 {
        let r = c.roundtrip(&get(origin.addr, &format!("/size/{i}")));
        assert_eq!(r.body, pattern(i));
        assert_eq!(r.header("connection"), None);
    }
    assert_eq!(origin.conns.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let a = origin.addr;
    let mut c = ferry.client();
    let r = c.roundtrip(format!("GET http://{a}/size/5 HTTP/1.0\r\n\r\n").as_bytes());
    assert_eq!(r.body, pattern(5));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed());
    let mut c = ferry.client();
    let r = c.roundtrip(
        format!("GET http://{a}/size/5 HTTP/1.0\r\nProxy-Connection: keep-alive\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.header("connection"), Some("keep-alive"));
    let r = c.roundtrip(
        format!("GET http://{a}/size/6 HTTP/1.0\r\nProxy-Connection: keep-alive\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.body, pattern(6));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let a = origin.addr;
    let mut c = ferry.client();
    let mut all = Vec::new();
    for n in [3, 1, 4, 1, 5] {
        all.extend(get(a, &format!("/size/{n}")));
    }
    all.extend(
        format!("POST http://{a}/echo HTTP/1.1\r\nHost: {a}\r\nContent-Length: 2\r\n\r\nhi")
            .as_bytes(),
    );
    all.extend(get(a, "/size/9"));
    c.send(&all);
    for n in [3, 1, 4, 1, 5] {
        assert_eq!(c.response().body, pattern(n));
    }
    assert_eq!(c.response().body, b"hi");
    assert_eq!(c.response().body, pattern(9));
}

#[test]
fn expect_100_continue_is_relayed_before_the_final_response() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let a = origin.addr;
    let mut c = ferry.client();
    c.send(format!("POST http://{a}/continue HTTP/1.1\r\nHost: {a}\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n").as_bytes());
    let interim = c.response_to(false);
    assert_eq!(interim.status, 100);
    c.send(b"data");
    let r = c.response();
    assert_eq!((r.status, r.body), (200, b"data".to_vec()));
}

#[test]
fn close_delimited_response_reaches_the_client_then_closes() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let mut c = ferry.client();
    let r = c.roundtrip(&get(origin.addr, "/close"));
    assert_eq!(r.body, b"until close");
    assert_eq!(r.header("connection"), Some("close"));
}

#[test]
fn hop_by_hop_fields_and_client_credentials_never_reach_the_origin() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let a = origin.addr;
    let mut c = ferry.client();
    let r = c.roundtrip(
        format!("GET http://{a}/headers?q=1 HTTP/1.1\r\nHost: {a}\r\nProxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\nConnection: X-Private\r\nX-Private: 1\r\nTE: trailers\r\nX-Kept: yes\r\n\r\n").as_bytes(),
    );
    let seen = r.text();
    assert!(seen.starts_with("GET /headers?q=1 HTTP/1.1\r\n"), "{seen}");
    assert!(seen.contains("X-Kept: yes"));
    for gone in [
        "Proxy-Authorization",
        "c2VjcmV0",
        "Proxy-Connection",
        "X-Private",
        "TE:",
    ] {
        assert!(!seen.contains(gone), "{gone} leaked: {seen}");
    }
}

#[test]
fn smuggling_shapes_are_refused_and_never_forwarded() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let a = origin.addr;
    for bad in [
        format!("POST http://{a}/echo HTTP/1.1\r\nHost: {a}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        format!("POST http://{a}/echo HTTP/1.1\r\nHost: {a}\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        format!("POST http://{a}/echo HTTP/1.1\r\nHost: {a}\r\nTransfer-Encoding: chunked, identity\r\n\r\n"),
    ] {
        let mut c = ferry.client();
        let r = c.roundtrip(bad.as_bytes());
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.closed());
    }
    assert!(
        origin.heads().is_empty(),
        "a refused request reached the origin"
    );
}

#[test]
fn oversized_head_gets_431_and_long_request_line_414() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("limits:\n  max_header_bytes: 4096\n");
    let a = origin.addr;
    let mut c = ferry.client();
    let big = "x".repeat(5000);
    let r = c.roundtrip(
        format!("GET http://{a}/ HTTP/1.1\r\nHost: {a}\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 431);
    let ferry = Ferry::start("");
    let mut c = ferry.client();
    let long = "a".repeat(9000);
    let r = c.roundtrip(format!("GET http://{a}/{long} HTTP/1.1\r\n\r\n").as_bytes());
    assert_eq!(r.status, 414);
    assert!(origin.heads().is_empty());
}

#[test]
fn malformed_and_unroutable_requests_get_400_and_dead_targets_502() {
    let ferry = Ferry::start("");
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /local HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET https://127.0.0.1/ HTTP/1.1\r\n\r\n",
    ] {
        let mut c = ferry.client();
        assert_eq!(c.roundtrip(bad).status, 400);
    }
    let dead = common::dead_port();
    let mut c = ferry.client();
    let r = c.roundtrip(&get(dead, "/"));
    assert_eq!(r.status, 502);
    assert!(r.text().contains("cannot connect"));
}

#[test]
fn hostnames_are_resolved_off_the_worker() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let mut c = ferry.client();
    let port = origin.addr.port();
    let r = c.roundtrip(
        format!("GET http://localhost:{port}/size/3 HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n")
            .as_bytes(),
    );
    // localhost may resolve to ::1 first; the fake listens on 127.0.0.1, so this also shows
    // that each resolved address is tried in turn.
    assert_eq!(r.body, pattern(3));
}

#[test]
fn access_log_has_one_line_per_request() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("access_log: true\n");
    let mut c = ferry.client();
    c.roundtrip(&get(origin.addr, "/size/10"));
    let want = format!("GET http://{}/size/10 via=direct status=200", origin.addr);
    common::wait_until("the access log line", || ferry.log_text().contains(&want));
}

#[test]
fn pipelined_requests_then_half_close_all_get_answers() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let mut c = ferry.client();
    let mut all = Vec::new();
    for n in [2, 7, 1] {
        all.extend(get(origin.addr, &format!("/size/{n}")));
    }
    c.send(&all);
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    for n in [2, 7, 1] {
        assert_eq!(c.response().body, pattern(n));
    }
    assert!(c.closed());
}

#[test]
fn a_malformed_request_gets_an_access_log_line_too() {
    let ferry = Ferry::start("access_log: true\n");
    let mut c = ferry.client();
    assert_eq!(c.roundtrip(b"GARBAGE\r\n\r\n").status, 400);
    common::wait_until("the access line", || {
        ferry.log_text().contains("via=- status=400")
    });
}
