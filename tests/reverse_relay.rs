//! Black-box tests of the reverse-proxy role's relaying (DESIGN §7.1, §7.3): bodies both ways
//! with either framing, 100-continue, WebSocket upgrades, keep-alive connections to backends
//! and when they must not be reused, body limits, and the statuses for backend failures.

mod common;

use common::backend::{checksum, Fault};
use common::raw::Raw;
use common::wire::{site_get, Response};
use common::{dead_port, pattern, Backend, Ferry, Wire};
use std::time::{Duration, Instant};

/// Sizes from empty to 10 MiB, around the 16 KiB buffers too.
const SIZES: [usize; 7] = [0, 1, 100, 16 * 1024 - 1, 16 * 1024 + 1, 1 << 20, 10 << 20];

/// A ferry publishing `app.test` with one route (`route` keys added to it) to backend `app`.
fn app_with(workers: usize, b: &Backend, route: &str) -> Ferry {
    Ferry::start_reverse_with(
        workers,
        &[b],
        &format!(
            "reverse:\n  sites:\n    - {{name: shop, hosts: [app.test], routes: [{{path: /, name: main, backend: app{route}}}]}}\n  backends:\n    app: {{servers: [{{url: @app}}]}}\n"
        ),
    )
}

fn app(b: &Backend) -> Ferry {
    app_with(2, b, "")
}

/// A request for app.test: `head_extra` lines, then `body` as given (already framed).
fn post(c: &mut Wire, head_extra: &str, body: &[u8]) -> Response {
    let mut req = format!("POST /up HTTP/1.1\r\nHost: app.test\r\n{head_extra}\r\n").into_bytes();
    req.extend_from_slice(body);
    c.roundtrip(&req)
}

/// `body` framed as chunks of uneven sizes.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, piece) in body.chunks(7000 + 1).enumerate() {
        // split each piece once more at an odd place, so sizes vary
        let cut = (i * 13) % piece.len().max(1);
        for part in [&piece[..cut], &piece[cut..]] {
            if !part.is_empty() {
                out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                out.extend_from_slice(part);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Uploads a body of every size, framed by `frame` (the framing field and the framed body),
/// and checks the length and checksum the backend got.
fn uploads_arrive_whole(frame: impl Fn(&[u8]) -> (String, Vec<u8>)) {
    let b = Backend::start("app");
    let ferry = app(&b);
    let mut c = ferry.reverse_client();
    for n in SIZES {
        let body = pattern(n);
        let (field, framed) = frame(&body);
        let r = post(&mut c, &field, &framed);
        assert_eq!(r.status, 200, "{n} bytes");
        assert_eq!(r.header("x-body-len"), Some(n.to_string().as_str()));
        assert_eq!(r.header("x-body-sum"), Some(checksum(&body).as_str()));
    }
}

/// Downloads a body of every size, the backend asked for it with `X-Fake: size=N{ask}`.
fn downloads_arrive_whole(ask: &str) {
    let b = Backend::start("app");
    let ferry = app(&b);
    let mut c = ferry.reverse_client();
    for n in SIZES {
        let r = c.roundtrip(
            format!("GET /down HTTP/1.1\r\nHost: app.test\r\nX-Fake: size={n}{ask}\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, 200);
        assert!(r.body == pattern(n), "{n} bytes differ");
    }
}

#[test]
fn given_uploads_from_0_to_10_mib_with_content_length_then_the_backend_gets_them_whole() {
    uploads_arrive_whole(|body| (format!("Content-Length: {}\r\n", body.len()), body.to_vec()));
}

#[test]
fn given_uploads_from_0_to_10_mib_chunked_then_the_backend_gets_them_whole() {
    uploads_arrive_whole(|body| ("Transfer-Encoding: chunked\r\n".into(), chunked(body)));
}

#[test]
fn given_downloads_from_0_to_10_mib_with_content_length_then_the_client_gets_them_whole() {
    downloads_arrive_whole("");
}

#[test]
fn given_downloads_from_0_to_10_mib_chunked_then_the_client_gets_them_whole() {
    downloads_arrive_whole(";chunked");
}

#[test]
fn given_expect_100_continue_then_the_100_reaches_the_client_before_it_sends_the_body() {
    let b = Backend::start("app");
    let ferry = app(&b);
    let mut c = ferry.reverse_client();
    c.send(
        b"POST /c HTTP/1.1\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    let interim = c.response_to(false);
    assert_eq!(interim.status, 100);
    c.send(b"hello");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-body-sum"), Some(checksum(b"hello").as_str()));
    assert_eq!(b.last().header("expect"), Some("100-continue"));
}

#[test]
fn given_a_websocket_upgrade_then_bytes_flow_both_ways_through_the_tunnel() {
    let b = Backend::start("app");
    let ferry = app(&b);
    let mut c = ferry.reverse_client();
    c.send(b"GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    let r = c.response_to(false);
    assert_eq!(r.status, 101);
    assert_eq!(r.served_by(), Some("app"));
    assert!(r
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    let got = b.last();
    assert!(got
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    for frame in [&b"hello"[..], b"second frame", &[b'x'; 70_000]] {
        c.send(frame);
        assert_eq!(c.read_exact_n(frame.len()), frame.to_ascii_uppercase());
    }
}

#[test]
fn given_keep_alive_when_clients_come_one_after_another_then_one_backend_connection_serves_all() {
    let b = Backend::start("app");
    let ferry = app_with(1, &b, "");
    for i in 0..5 {
        let mut c = ferry.reverse_client();
        let r = c.roundtrip(&site_get("app.test", &format!("/n{i}")));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-conn"), Some("1"), "request {i}");
    }
    assert_eq!(b.requests().len(), 5);
    assert_eq!(b.connections(), 1);
}

#[test]
fn given_an_answer_before_the_body_was_sent_then_that_backend_connection_is_not_reused() {
    let b = Backend::start("app");
    let ferry = app_with(1, &b, "");
    let mut c = ferry.reverse_client();
    // half of the body, then wait for the backend's early keep-alive answer
    c.send(b"POST /early HTTP/1.1\r\nHost: app.test\r\nX-Fake: early\r\nContent-Length: 10\r\n\r\nhello");
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (200, "early"));
    assert_eq!(r.header("x-conn"), Some("1"));
    let _ = std::io::Write::write_all(&mut c.stream, b"world");
    let r = ferry
        .reverse_client()
        .roundtrip(&site_get("app.test", "/next"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-conn"),
        Some("2"),
        "the early answer's connection was reused"
    );
    assert_eq!(b.last().target(), "/next");
}

#[test]
fn given_max_body_bytes_when_a_body_is_larger_then_413_and_the_backend_gets_nothing() {
    let b = Backend::start("app");
    let ferry = app_with(2, &b, ", max_body_bytes: 1000");
    let body = pattern(1001);
    let r = post(
        &mut ferry.reverse_client(),
        "Content-Length: 1001\r\n",
        &body,
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(b.requests().is_empty());
    let r = post(
        &mut ferry.reverse_client(),
        "Content-Length: 1000\r\n",
        &body[..1000],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-body-len"), Some("1000"));
}

#[test]
fn given_max_body_bytes_when_a_chunked_body_grows_larger_then_413() {
    let b = Backend::start("app");
    let ferry = app_with(2, &b, ", max_body_bytes: 1000");
    let r = post(
        &mut ferry.reverse_client(),
        "Transfer-Encoding: chunked\r\n",
        &chunked(&pattern(1500)),
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(b.requests().iter().all(|s| s.body_len <= 1000));
}

#[test]
fn given_max_body_bytes_when_a_chunked_body_is_exactly_that_long_then_it_is_served() {
    // "request bodies over it get 413": a body of the limit's size is not over it, however
    // it is framed (ten chunks of 100 bytes carry 1000 bytes of body).
    let b = Backend::start("app");
    let ferry = app_with(2, &b, ", max_body_bytes: 1000");
    let body = pattern(1000);
    let mut framed = Vec::new();
    for piece in body.chunks(100) {
        framed.extend_from_slice(b"64\r\n");
        framed.extend_from_slice(piece);
        framed.extend_from_slice(b"\r\n");
    }
    framed.extend_from_slice(b"0\r\n\r\n");
    let r = post(
        &mut ferry.reverse_client(),
        "Transfer-Encoding: chunked\r\n",
        &framed,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-body-sum"), Some(checksum(&body).as_str()));
}

#[test]
fn given_an_idle_backend_connection_that_dies_when_reused_then_the_get_is_retried_on_a_fresh_one() {
    let b = Backend::start("app");
    let ferry = app_with(1, &b, "");
    let mut c = ferry.reverse_client();
    assert_eq!(
        c.roundtrip(&site_get("app.test", "/1")).header("x-conn"),
        Some("1")
    );
    let r = c.roundtrip(b"GET /2 HTTP/1.1\r\nHost: app.test\r\nX-Fake: die-on-reuse\r\n\r\n");
    assert_eq!(
        (r.status, r.header("x-conn")),
        (200, Some("2")),
        "{}",
        r.text()
    );
    let conns: Vec<usize> = b.requests().iter().map(|s| s.conn).collect();
    assert_eq!(conns, [1, 1, 2]);
}

#[test]
fn given_a_head_request_then_the_connection_stays_in_sync() {
    let b = Backend::start("app");
    let ferry = app(&b);
    let mut c = ferry.reverse_client();
    c.send(b"HEAD /h HTTP/1.1\r\nHost: app.test\r\nX-Fake: size=500\r\n\r\n");
    let r = c.response_to(true);
    assert_eq!((r.status, r.header("content-length")), (200, Some("500")));
    let r = c.roundtrip(b"GET /g HTTP/1.1\r\nHost: app.test\r\nX-Fake: size=7\r\n\r\n");
    assert_eq!((r.status, r.body), (200, pattern(7)));
}

#[test]
fn given_an_http_1_0_client_when_the_backend_answers_chunked_then_it_gets_the_body_until_close() {
    let b = Backend::start("app");
    let ferry = app(&b);
    let mut c = ferry.reverse_client();
    let r =
        c.roundtrip(b"GET /old HTTP/1.0\r\nHost: app.test\r\nX-Fake: size=40000;chunked\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.header("transfer-encoding").is_none());
    assert!(r.body == pattern(40000), "the body differs");
    assert!(c.closed());
}

#[test]
fn given_a_refused_connect_then_502_naming_the_site_the_route_and_the_server() {
    let dead = dead_port();
    let ferry = Ferry::start_reverse(
        &[],
        &format!(
            "
            reverse:
              sites:
                - {{name: shop, hosts: [app.test], routes: [{{path: /cart, name: basket, backend: app}}]}}
              backends:
                app: {{servers: [{{url: http://{dead}}}]}}
            "
        ),
    );
    let r = ferry
        .reverse_client()
        .roundtrip(&site_get("app.test", "/cart/1"));
    assert_eq!(r.status, 502);
    let text = r.text();
    assert!(text.contains(&dead.to_string()), "no server in {text:?}");
    assert!(text.contains("shop"), "no site in {text:?}");
    assert!(text.contains("basket"), "no route in {text:?}");
}

#[test]
fn given_a_backend_that_closes_before_answering_then_502() {
    let b = Backend::start("app");
    b.set_fault(Fault::Close);
    let ferry = app(&b);
    let r = ferry.reverse_client().roundtrip(&site_get("app.test", "/"));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains(&b.addr.to_string()), "{}", r.text());
}

#[test]
fn given_a_backend_with_a_malformed_head_then_502() {
    let raw = Raw::start(|c| {
        if c.read_request().is_some() {
            c.write_and_finish(b"HTTP/1.1 200 OK\r\nBad Header Line\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let ferry = Ferry::start_reverse(
        &[],
        &format!(
            "
            reverse:
              sites: [{{name: app, hosts: [app.test], routes: [{{backend: raw}}]}}]
              backends: {{raw: {{servers: [{{url: {}}}]}}}}
            ",
            raw.url()
        ),
    );
    let r = ferry.reverse_client().roundtrip(&site_get("app.test", "/"));
    assert_eq!(r.status, 502, "{}", r.text());
}

/// Two distinct ports on 127.0.0.1 with nothing listening (both bound at once, then freed).
fn two_dead_ports() -> (std::net::SocketAddr, std::net::SocketAddr) {
    let l1 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let l2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (l1.local_addr().unwrap(), l2.local_addr().unwrap())
}

#[test]
fn given_every_server_offline_then_503_with_retry_after() {
    let (d1, d2) = two_dead_ports();
    let ferry = Ferry::start_reverse(
        &[],
        &format!(
            "
            reverse:
              sites: [{{name: app, hosts: [app.test], routes: [{{backend: app}}]}}]
              backends:
                app:
                  servers: [{{url: http://{d1}}}, {{url: http://{d2}}}]
                  health_check: {{path: /healthz, interval_secs: 60, fall: 1, rise: 1}}
            "
        ),
    );
    // each refused connect counts; once both servers are out, ferry answers 503 itself
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let r = ferry.reverse_client().roundtrip(&site_get("app.test", "/"));
        statuses.push(r.status);
        if r.status == 503 {
            assert!(r.header("retry-after").is_some(), "503 without Retry-After");
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&503), "{statuses:?}");
    assert!(
        statuses[..statuses.len() - 1].iter().all(|&s| s == 502),
        "{statuses:?}"
    );
    // and it stays so (no probe is due for a minute)
    let r = ferry.reverse_client().roundtrip(&site_get("app.test", "/"));
    assert_eq!(r.status, 503);
}

#[test]
fn given_response_timeout_when_the_backend_is_slower_then_504_in_time() {
    let b = Backend::start("app");
    let ferry = app_with(2, &b, ", response_timeout_secs: 1");
    b.set_fault(Fault::Hang);
    let t = Instant::now();
    let r = ferry
        .reverse_client()
        .roundtrip(&site_get("app.test", "/slow"));
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(4500),
        "504 after {took:?}"
    );
    // an answer that comes within the time is not cut
    b.set_fault(Fault::None);
    let r = ferry
        .reverse_client()
        .roundtrip(b"GET /quick HTTP/1.1\r\nHost: app.test\r\nX-Fake: sleep=100\r\n\r\n");
    assert_eq!(r.status, 200);
}
