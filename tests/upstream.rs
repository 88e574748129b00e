//! Black-box tests of requests sent on through upstream HTTP proxies.

mod common;

use common::wire::get;
use common::{pattern, Fake, Ferry};
use std::sync::atomic::Ordering;

fn pool_yaml(ups: &[(&Fake, Option<(&str, &str)>)]) -> String {
    let mut y = String::from("upstream:\n");
    for (u, cred) in ups {
        y.push_str(&format!("  - url: {}\n", u.url()));
        if let Some((user, pass)) = cred {
            y.push_str(&format!("    username: {user}\n    password: \"{pass}\"\n"));
        }
    }
    y
}

#[test]
fn absolute_form_goes_to_the_upstream_with_its_own_credentials_only() {
    // "u:p@ss" → dTpwQHNz
    let up = Fake::proxy("up1", Some("Basic dTpwQHNz"));
    let ferry = Ferry::start(&pool_yaml(&[(&up, Some(("u", "p@ss")))]));
    let mut c = ferry.client();
    let r = c.roundtrip(b"GET http://origin.test:8080/headers?x=1 HTTP/1.1\r\nHost: origin.test:8080\r\nProxy-Authorization: Basic Y2xpZW50\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.served_by(), Some("up1"));
    let seen = r.text();
    assert!(
        seen.starts_with("GET http://origin.test:8080/headers?x=1 HTTP/1.1\r\n"),
        "{seen}"
    );
    assert!(
        seen.contains("Proxy-Authorization: Basic dTpwQHNz\r\n"),
        "{seen}"
    );
    assert!(
        !seen.contains("Y2xpZW50"),
        "the client's credentials leaked: {seen}"
    );
}

#[test]
fn methods_statuses_and_bodies_pass_through_an_upstream() {
    let up = Fake::proxy("up1", None);
    let ferry = Ferry::start(&pool_yaml(&[(&up, None)]));
    let mut c = ferry.client();
    for status in [200, 404, 500] {
        let r = c.roundtrip(
            format!("GET http://o.test/status/{status} HTTP/1.1\r\nHost: o.test\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, status);
    }
    let body = pattern(3 << 20);
    let mut req = format!(
        "PUT http://o.test/echo HTTP/1.1\r\nHost: o.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let r = c.roundtrip(&req);
    assert_eq!(r.header("x-method"), Some("PUT"));
    assert!(r.body == body);
}

#[test]
fn requests_alternate_between_upstreams() {
    let (a, b) = (Fake::proxy("up1", None), Fake::proxy("up2", None));
    let ferry = Ferry::start_with(1, &pool_yaml(&[(&a, None), (&b, None)]));
    let mut c = ferry.client();
    let tags: Vec<String> = (0..6)
        .map(|_| {
            c.roundtrip(b"GET http://o.test/size/1 HTTP/1.1\r\nHost: o.test\r\n\r\n")
                .served_by()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(tags.iter().filter(|t| *t == "up1").count(), 3, "{tags:?}");
    assert!(
        tags.windows(2).all(|w| w[0] != w[1]),
        "not interleaved: {tags:?}"
    );
}

#[test]
fn upstream_connections_are_kept_and_reused_across_clients() {
    let up = Fake::proxy("up1", None);
    let ferry = Ferry::start(&pool_yaml(&[(&up, None)]));
    for i in 0..20 {
        let mut c = ferry.client();
        let r = c.roundtrip(
            format!("GET http://o.test/size/{i} HTTP/1.1\r\nHost: o.test\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.body, pattern(i));
    }
    // one idle connection per worker at most
    assert!(
        up.conns.load(Ordering::SeqCst) <= 2,
        "{} upstream connections for 20 requests",
        up.conns.load(Ordering::SeqCst)
    );
}

#[test]
fn an_upstream_refusing_connect_gets_the_client_a_502_that_says_why() {
    // The only upstream answers 407 (wrong credentials): not the client's to fix, so no 407
    // reaches it; with nothing else to try, it gets a 502 that says why.
    let up = Fake::proxy("up1", Some("Basic c29tZTpvdGhlcg=="));
    let ferry = Ferry::start(&pool_yaml(&[(&up, Some(("wrong", "creds")))]));
    let mut c = ferry.client();
    c.send(b"CONNECT o.test:443 HTTP/1.1\r\nHost: o.test:443\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 502);
    assert!(
        r.text().contains("refused ferry's credentials"),
        "{}",
        r.text()
    );
}

#[test]
fn domain_policy_blacklist_sends_listed_hosts_direct() {
    let origin = Fake::origin("origin");
    let up = Fake::proxy("up1", None);
    let ferry = Ferry::start(&format!(
        "{}domain_policy:\n  mode: blacklist\n  domains: [\"domain:127.0.0.1\"]\n",
        pool_yaml(&[(&up, None)])
    ));
    let mut c = ferry.client();
    assert_eq!(
        c.roundtrip(&get(origin.addr, "/size/1")).served_by(),
        Some("origin")
    );
    assert_eq!(
        c.roundtrip(b"GET http://elsewhere.test/size/1 HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n")
            .served_by(),
        Some("up1")
    );
}

#[test]
fn a_dead_upstream_gets_the_client_a_502_that_says_why() {
    let dead = common::dead_port();
    let ferry = Ferry::start(&format!("upstream:\n  - url: http://{dead}\n"));
    let mut c = ferry.client();
    let r = c.roundtrip(b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n");
    assert_eq!(r.status, 502);
    assert!(r.text().contains("upstream proxy"), "{}", r.text());
}

/// One worker, one upstream, and one idle connection to it in the worker's pool.
fn one_pooled_connection() -> (Fake, Ferry) {
    let up = Fake::proxy("up1", None);
    let ferry = Ferry::start_with(1, &pool_yaml(&[(&up, None)]));
    let r = ferry
        .client()
        .roundtrip(b"GET http://o.test/size/1 HTTP/1.1\r\nHost: o.test\r\n\r\n");
    assert_eq!(r.status, 200);
    (up, ferry)
}

#[test]
fn a_reused_upstream_connection_that_dies_is_retried_on_a_fresh_one() {
    let (up, ferry) = one_pooled_connection();
    // The next request reuses the pooled connection, which the upstream drops unanswered.
    let mut c = ferry.client();
    let r = c.roundtrip(
        b"GET http://o.test/size/4 HTTP/1.1\r\nHost: o.test\r\nX-Die-On-Reuse: 1\r\n\r\n",
    );
    assert_eq!((r.status, r.body), (200, pattern(4)));
    assert_eq!(up.conns.load(Ordering::SeqCst), 2);
}

#[test]
fn a_request_with_a_body_is_not_replayed() {
    let (up, ferry) = one_pooled_connection();
    let mut c = ferry.client();
    let r = c.roundtrip(b"POST http://o.test/echo HTTP/1.1\r\nHost: o.test\r\nX-Die-On-Reuse: 1\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(r.status, 502);
    assert_eq!(
        up.conns.load(Ordering::SeqCst),
        1,
        "the POST was sent again"
    );
}
