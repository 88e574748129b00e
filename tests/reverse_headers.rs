//! Black-box tests of the reverse-proxy role's head rewriting and admission (DESIGN §7.1):
//! forwarding headers from trusted and untrusted peers, X-Real-IP, Via, X-Request-Id, the
//! configured header edits, the Host sent on, hop-by-hop fields, `reverse.allow` and the PROXY
//! protocol. Clients connect from 127.0.0.1 (untrusted) or 127.0.0.2 (the trusted proxy).

mod common;

use common::backend::Seen;
use common::wire::{site_get, Response};
use common::{Backend, Ferry, Wire};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// The address the tests' trusted proxy connects from.
const TRUSTED: &str = "127.0.0.2";

/// A ferry publishing `app.test` (every path to backend `app`), with `extra` keys under
/// `reverse:` (indented by two spaces) and `top` keys at the top level.
fn app(b: &Backend, top: &str, extra: &str) -> Ferry {
    Ferry::start_reverse(
        &[b],
        &format!(
            "{top}\nreverse:\n{extra}\n  sites:\n    - {{name: app, hosts: [app.test], routes: [{{backend: app}}]}}\n  backends:\n    app: {{servers: [{{url: @app}}]}}\n"
        ),
    )
}

/// `trusted_proxies` naming the tests' trusted proxy and a private range.
const TRUST: &str = "  trusted_proxies: [\"127.0.0.2/32\", \"10.0.0.0/8\"]";

/// A request for app.test with extra head lines, from `from`.
fn ask(ferry: &Ferry, from: &str, extra: &str) -> Response {
    let mut c = Wire::connect_from(from, ferry.reverse[0]);
    c.roundtrip(format!("GET /x HTTP/1.1\r\nHost: app.test\r\n{extra}\r\n").as_bytes())
}

/// Asserts the values of fields as the backend received them, each list field joined
/// (`("x-forwarded-for", "a, b")` holds whether it came as one field or two; `""`: absent).
fn expect_fields(got: &Seen, want: &[(&str, &str)]) {
    for &(name, value) in want {
        assert_eq!(
            list(&got.req.header_all(name)).join(", "),
            value,
            "{name} in {:?}",
            got.req.headers
        );
    }
}

/// Every value of a list field, whether sent as one field or several.
fn list(values: &[&str]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

#[test]
fn given_an_untrusted_peer_when_it_sends_forwarding_headers_then_they_are_replaced() {
    let b = Backend::start("app");
    let ferry = app(&b, "", TRUST);
    let r = ask(
        &ferry,
        "127.0.0.1",
        "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n",
    );
    assert_eq!(r.status, 200);
    expect_fields(
        &b.last(),
        &[
            ("x-forwarded-for", "127.0.0.1"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "app.test"),
            ("x-real-ip", "127.0.0.1"),
            // ferry speaks X-Forwarded-*; a Forwarded beside them could disagree
            ("forwarded", ""),
        ],
    );
}

#[test]
fn given_a_trusted_peer_when_it_sends_forwarding_headers_then_xff_is_appended_and_the_rest_kept() {
    let b = Backend::start("app");
    let ferry = app(&b, "", TRUST);
    let r = ask(
        &ferry,
        TRUSTED,
        "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: public.test\r\nForwarded: for=203.0.113.9\r\n",
    );
    assert_eq!(r.status, 200);
    expect_fields(
        &b.last(),
        &[
            ("x-forwarded-for", "203.0.113.9, 127.0.0.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "public.test"),
            ("x-real-ip", "203.0.113.9"),
            ("forwarded", ""),
        ],
    );
}

#[test]
fn given_a_chain_of_trusted_proxies_then_x_real_ip_is_the_rightmost_untrusted_entry() {
    let b = Backend::start("app");
    let ferry = app(&b, "", TRUST);
    let r = ask(
        &ferry,
        TRUSTED,
        "X-Forwarded-For: 192.0.2.1, 198.51.100.7, 10.1.2.3\r\n",
    );
    assert_eq!(r.status, 200);
    expect_fields(
        &b.last(),
        &[
            (
                "x-forwarded-for",
                "192.0.2.1, 198.51.100.7, 10.1.2.3, 127.0.0.2",
            ),
            ("x-real-ip", "198.51.100.7"),
        ],
    );
}

#[test]
fn given_any_request_then_via_1_1_ferry_is_added_after_what_came() {
    let b = Backend::start("app");
    let ferry = app(&b, "", "");
    assert_eq!(ask(&ferry, "127.0.0.1", "Via: 1.0 edge\r\n").status, 200);
    expect_fields(&b.last(), &[("via", "1.0 edge, 1.1 ferry")]);
    assert_eq!(ask(&ferry, "127.0.0.1", "").status, 200);
    expect_fields(&b.last(), &[("via", "1.1 ferry")]);
}

#[test]
fn given_an_untrusted_peer_when_it_sends_a_request_id_then_a_new_one_is_generated() {
    let b = Backend::start("app");
    let ferry = app(&b, "", TRUST);
    assert_eq!(
        ask(&ferry, "127.0.0.1", "X-Request-Id: chosen\r\n").status,
        200
    );
    let first = b.last().req.header_all("x-request-id").join(",");
    assert!(!first.is_empty() && first != "chosen", "{first:?}");
    assert!(!first.contains(','), "one id, not {first:?}");
    assert_eq!(ask(&ferry, "127.0.0.1", "").status, 200);
    let second = b.last().req.header_all("x-request-id").join(",");
    assert!(
        !second.is_empty() && second != first,
        "{first:?} then {second:?}"
    );
}

#[test]
fn given_a_trusted_peer_when_it_sends_a_request_id_then_it_is_kept() {
    let b = Backend::start("app");
    let ferry = app(&b, "", TRUST);
    assert_eq!(
        ask(&ferry, TRUSTED, "X-Request-Id: trace-123\r\n").status,
        200
    );
    expect_fields(&b.last(), &[("x-request-id", "trace-123")]);
}

#[test]
fn given_an_access_log_then_the_request_id_sent_on_is_in_its_line() {
    let b = Backend::start("app");
    let ferry = app(&b, "access_log: true", "");
    assert_eq!(ask(&ferry, "127.0.0.1", "").status, 200);
    let id = b.last().header("x-request-id").unwrap().to_string();
    common::wait_until("the access-log line with the request id", || {
        ferry
            .log_text()
            .lines()
            .any(|l| l.contains(&id) && l.contains("app.test"))
    });
}

#[test]
fn given_site_and_route_header_edits_then_the_route_applies_after_the_site() {
    let b = Backend::start("app");
    let ferry = Ferry::start_reverse(
        &[&b],
        "
        reverse:
          sites:
            - name: app
              hosts: [app.test]
              headers:
                request:
                  set: {X-Set: site, X-Both: site, X-Temp: site}
                  add: {X-Add: site}
                  remove: [X-Drop]
                response:
                  set: {Cache-Control: no-store, X-Resp-Both: site, X-Resp-Temp: site}
                  add: {X-Resp-Add: site}
                  remove: [X-Secret]
              routes:
                - path: /
                  backend: app
                  headers:
                    request: {set: {X-Both: route}, add: {X-Add: route}, remove: [X-Temp]}
                    response: {set: {X-Resp-Both: route}, add: {X-Resp-Add: route}, remove: [X-Resp-Temp]}
          backends:
            app: {servers: [{url: @app}]}
        ",
    );
    let r = ask(
        &ferry,
        "127.0.0.1",
        "X-Set: client\r\nX-Drop: bye\r\nX-Add: client\r\nX-Keep: yes\r\nX-Fake: hdr=X-Secret:s3;hdr=Cache-Control:private;hdr=X-Resp-Add:backend\r\n",
    );
    assert_eq!(r.status, 200);
    let got = b.last();
    expect_fields(
        &got,
        &[("x-set", "site"), ("x-both", "route"), ("x-keep", "yes")],
    );
    let mut added = list(&got.req.header_all("x-add"));
    added.sort();
    assert_eq!(added, ["client", "route", "site"]);
    assert!(got.header("x-drop").is_none());
    assert!(
        got.header("x-temp").is_none(),
        "the route removes what the site set"
    );
    // and the answer
    assert!(r.header("x-secret").is_none());
    assert_eq!(r.header_all("cache-control"), ["no-store"]);
    assert_eq!(r.header_all("x-resp-both"), ["route"]);
    assert!(r.header("x-resp-temp").is_none());
    let mut added = list(&r.header_all("x-resp-add"));
    added.sort();
    assert_eq!(added, ["backend", "route", "site"]);
    assert_eq!(r.served_by(), Some("app"));
}

#[test]
fn given_host_keep_backend_or_a_literal_then_the_backend_gets_that_host() {
    let b = Backend::start("app");
    let ferry = Ferry::start_reverse(
        &[&b],
        "
        reverse:
          sites:
            - name: app
              hosts: [app.test]
              routes:
                - {path: /keep, backend: app, host: keep}
                - {path: /be, backend: app, host: backend}
                - {path: /lit, backend: app, host: internal.test}
                - {path: /, backend: app}
          backends:
            app: {servers: [{url: @app}]}
        ",
    );
    let mut c = ferry.reverse_client();
    let mut host_for = |path: &str| {
        let r = c.roundtrip(&site_get("app.test:8080", path));
        assert_eq!(r.status, 200, "{path}");
        let got = b.last();
        assert_eq!(got.req.header_all("x-forwarded-host"), ["app.test:8080"]);
        got.req.header_all("host").join(",")
    };
    assert_eq!(host_for("/keep"), "app.test:8080");
    assert_eq!(host_for("/"), "app.test:8080", "keep is the default");
    assert_eq!(host_for("/be"), b.addr.to_string());
    assert_eq!(host_for("/lit"), "internal.test");
}

#[test]
fn given_hop_by_hop_fields_then_they_are_removed_both_ways() {
    let b = Backend::start("app");
    let ferry = app(&b, "", "");
    let r = ask(
        &ferry,
        "127.0.0.1",
        "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\nX-End: kept\r\nX-Fake: hdr=Connection:X-Resp-Hop;hdr=X-Resp-Hop:1;hdr=Keep-Alive:timeout=5;hdr=Proxy-Authenticate:Basic;hdr=X-Resp-End:kept\r\n",
    );
    assert_eq!(r.status, 200);
    let got = b.last();
    for name in [
        "x-hop",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
    ] {
        assert!(got.header(name).is_none(), "{name} reached the backend");
    }
    assert!(got
        .req
        .header_all("connection")
        .iter()
        .all(|v| !v.to_ascii_lowercase().contains("x-hop")));
    assert_eq!(got.header("x-end"), Some("kept"));
    for name in ["x-resp-hop", "keep-alive", "proxy-authenticate"] {
        assert!(r.header(name).is_none(), "{name} reached the client");
    }
    assert_eq!(r.header("x-resp-end"), Some("kept"));
}

/// Sends `bytes` from `from` and asserts that the connection ends, soon, without a successful
/// answer. ferry may close before all was sent, so a failed write is no failure.
fn refused(ferry: &Ferry, from: &str, bytes: &[u8]) {
    let mut c = Wire::connect_from(from, ferry.reverse[0]);
    let _ = c.stream.write_all(bytes);
    let t = Instant::now();
    c.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let _ = c.stream.read_to_end(&mut got);
    assert!(
        t.elapsed() < Duration::from_secs(9),
        "the connection stayed open"
    );
    let text = String::from_utf8_lossy(&got);
    assert!(!text.starts_with("HTTP/1.1 2"), "served: {text}");
}

#[test]
fn given_reverse_allow_when_a_client_is_outside_then_it_is_refused() {
    let b = Backend::start("app");
    let ferry = app(&b, "", "  allow: [\"127.0.0.2/32\"]");
    refused(&ferry, "127.0.0.1", &site_get("app.test", "/x"));
    assert!(b.requests().is_empty());
    assert_eq!(ask(&ferry, TRUSTED, "").served_by(), Some("app"));
}

/// `proxy_protocol: true` with the tests' trusted proxy.
const PROXY_PROTOCOL: &str = "  trusted_proxies: [\"127.0.0.2/32\"]\n  proxy_protocol: true";

/// A PROXY protocol v2 header for a TCP connection from `src:sport` to ferry's port 80.
fn proxy_v2(src: IpAddr, sport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    let (family, src, dst) = match src {
        IpAddr::V4(a) => (0x11, a.octets().to_vec(), vec![127, 0, 0, 1]),
        IpAddr::V6(a) => (
            0x21,
            a.octets().to_vec(),
            Ipv6Addr::LOCALHOST.octets().to_vec(),
        ),
    };
    let len = u16::try_from(src.len() * 2 + 4).unwrap();
    h.extend_from_slice(&[0x21, family]);
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&80u16.to_be_bytes());
    h
}

/// A trusted proxy sends `preface` (in pieces, a moment apart, as a slow peer would), then
/// two requests; the backend must see `client` as the client of both.
fn client_through_proxy(preface: &[&[u8]], client: &str) {
    let b = Backend::start("app");
    let ferry = app(&b, "", PROXY_PROTOCOL);
    let mut c = Wire::connect_from(TRUSTED, ferry.reverse[0]);
    for piece in preface {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(30));
    }
    // the header comes once per connection: the next request on it is the same client's
    for path in ["/first", "/again"] {
        let r = c.roundtrip(&site_get("app.test", path));
        assert_eq!(r.status, 200, "{}", r.text());
        expect_fields(
            &b.last(),
            &[("x-forwarded-for", client), ("x-real-ip", client)],
        );
    }
}

#[test]
fn given_proxy_protocol_v1_from_a_trusted_peer_then_its_address_is_the_client() {
    client_through_proxy(
        &[b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 80\r\n"],
        "192.0.2.10",
    );
}

#[test]
fn given_proxy_protocol_v1_arriving_in_pieces_then_it_is_still_read_whole() {
    client_through_proxy(
        &[
            b"PROXY TCP4 192.0",
            b".2.11 127.0.0.1 400",
            b"00 80\r",
            b"\n",
        ],
        "192.0.2.11",
    );
}

#[test]
fn given_proxy_protocol_v2_from_a_trusted_peer_then_its_address_is_the_client() {
    let v2 = proxy_v2("198.51.100.20".parse().unwrap(), 40001);
    client_through_proxy(&[&v2], "198.51.100.20");
}

#[test]
fn given_proxy_protocol_v2_with_an_ipv6_client_then_that_address_is_the_client() {
    let v2 = proxy_v2("2001:db8::7".parse().unwrap(), 40003);
    client_through_proxy(&[&v2[..9], &v2[9..]], "2001:db8::7");
}

#[test]
fn given_proxy_protocol_when_an_untrusted_peer_connects_with_or_without_a_header_then_it_is_closed()
{
    let b = Backend::start("app");
    let ferry = app(&b, "", PROXY_PROTOCOL);
    let request = site_get("app.test", "/spoofed");
    let mut v1 = b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 80\r\n".to_vec();
    v1.extend_from_slice(&request);
    refused(&ferry, "127.0.0.1", &v1);
    let mut v2 = proxy_v2("192.0.2.10".parse().unwrap(), 40002);
    v2.extend_from_slice(&request);
    refused(&ferry, "127.0.0.1", &v2);
    // and without one: every peer outside trusted_proxies is closed
    refused(&ferry, "127.0.0.1", &request);
    assert!(b.requests().is_empty());
}

#[test]
fn given_proxy_protocol_when_a_trusted_peer_sends_no_header_then_it_is_closed() {
    let b = Backend::start("app");
    let ferry = app(&b, "", PROXY_PROTOCOL);
    refused(&ferry, TRUSTED, &site_get("app.test", "/bare"));
    assert!(b.requests().is_empty());
}
