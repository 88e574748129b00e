//! Black-box tests of the reverse-proxy role's backends (DESIGN §7, §7.2): selection
//! (round_robin, hash), passive and active health, hot reload under a keep-alive client, both
//! roles in one process, and the shipped example config.

mod common;

use common::backend::Fault;
use common::wire::{get, site_get};
use common::{wait_until, Backend, Ferry, Wire};
use std::collections::HashMap;

/// A ferry publishing `app.test` to backend `app` over `bs`, with `keys` added to the backend
/// (indented by four spaces).
fn pool(bs: &[&Backend], keys: &str) -> Ferry {
    let servers: Vec<String> = bs.iter().map(|b| format!("{{url: @{}}}", b.name)).collect();
    Ferry::start_reverse(
        bs,
        &format!(
            "reverse:\n  sites: [{{name: app, hosts: [app.test], routes: [{{backend: app}}]}}]\n  backends:\n    app:\n      servers: [{}]\n{keys}\n",
            servers.join(", ")
        ),
    )
}

/// Who served one request on `c`, which must get an answer from a backend.
fn served(c: &mut Wire, path: &str) -> (u16, String) {
    let r = c.roundtrip(&site_get("app.test", path));
    let by = r
        .served_by()
        .unwrap_or_else(|| panic!("{}: {}", r.status, r.text()));
    (r.status, by.to_string())
}

#[test]
fn given_three_servers_round_robin_then_300_requests_split_exactly_100_each() {
    let bs = [
        Backend::start("s1"),
        Backend::start("s2"),
        Backend::start("s3"),
    ];
    let ferry = pool(&[&bs[0], &bs[1], &bs[2]], "      mode: round_robin");
    let mut count: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        // new client connections, so that both workers take some
        let mut c = ferry.reverse_client();
        for _ in 0..10 {
            let (status, by) = served(&mut c, "/");
            assert_eq!(status, 200);
            *count.entry(by).or_default() += 1;
        }
    }
    for b in &bs {
        assert_eq!(count.get(&b.name), Some(&100), "{count:?}");
    }
}

/// Sends 5 rounds of requests for 20 keys, each key given by `key_field(key, round)` as a
/// head line, and checks that each key stays on one server and that the keys spread.
fn hash_is_stable(hash_key: &str, key_field: impl Fn(&str, usize) -> String) {
    let bs = [
        Backend::start("s1"),
        Backend::start("s2"),
        Backend::start("s3"),
    ];
    let ferry = pool(
        &[&bs[0], &bs[1], &bs[2]],
        &format!("      mode: hash\n      hash_key: \"{hash_key}\""),
    );
    let mut home: HashMap<String, String> = HashMap::new();
    for round in 0..5 {
        let mut c = ferry.reverse_client();
        for user in 0..20 {
            let key = format!("user{user}");
            let r = c.roundtrip(
                format!(
                    "GET /r{round} HTTP/1.1\r\nHost: app.test\r\n{}\r\n\r\n",
                    key_field(&key, round)
                )
                .as_bytes(),
            );
            assert_eq!(r.status, 200);
            let by = r.served_by().unwrap().to_string();
            let first = home.entry(key.clone()).or_insert(by.clone());
            assert_eq!(*first, by, "{key} moved in round {round}");
        }
    }
    let mut used: Vec<&String> = home.values().collect();
    used.sort();
    used.dedup();
    assert!(used.len() >= 2, "20 keys all on {used:?}");
}

#[test]
fn given_hash_on_a_header_then_each_key_always_goes_to_the_same_server() {
    hash_is_stable("header:X-User", |k, _| format!("X-User: {k}"));
}

#[test]
fn given_hash_on_a_cookie_then_each_key_always_goes_to_the_same_server() {
    // the other cookies change every round: only the named one may count
    hash_is_stable("cookie:session", |k, round| {
        format!("Cookie: theme=t{round}; session={k}; lang=l{round}")
    });
}

#[test]
fn given_a_server_answering_503_when_fall_is_reached_then_it_gets_no_more_requests() {
    let (bad, good) = (Backend::start("bad"), Backend::start("good"));
    bad.set_status(503);
    // probes pass but are due only once a minute: the failures alone take `bad` out
    let ferry = pool(
        &[&bad, &good],
        "      health_check: {path: /healthz, interval_secs: 60, fall: 2, rise: 1}",
    );
    let mut c = ferry.reverse_client();
    let mut from_bad = 0;
    for _ in 0..20 {
        let (status, by) = served(&mut c, "/");
        if by == "bad" {
            assert_eq!(status, 503, "the server's own 503 is relayed");
            from_bad += 1;
        } else {
            assert_eq!(status, 200);
        }
    }
    // a probe between the two failures resets the count once at most
    let want = if bad.probes().is_empty() {
        2..=2
    } else {
        2..=3
    };
    assert!(
        want.contains(&from_bad),
        "{from_bad} requests to the failing server"
    );
    assert_eq!(bad.requests().len(), from_bad);
}

#[test]
fn given_a_server_answering_404_or_500_then_it_is_never_taken_out() {
    let (odd, good) = (Backend::start("odd"), Backend::start("good"));
    odd.set_status(500);
    let ferry = pool(
        &[&odd, &good],
        "      health_check: {path: /healthz, interval_secs: 60, fall: 1, rise: 1}",
    );
    let mut c = ferry.reverse_client();
    for _ in 0..10 {
        served(&mut c, "/");
    }
    odd.set_status(404);
    for _ in 0..10 {
        served(&mut c, "/");
    }
    assert_eq!(odd.requests().len(), 10);
}

#[test]
fn given_active_health_when_a_probe_fails_then_the_server_is_out_until_probes_pass_again() {
    let (b1, b2) = (Backend::start("b1"), Backend::start("b2"));
    let ferry = pool(
        &[&b1, &b2],
        "      health_check: {path: /healthz, interval_secs: 1, timeout_secs: 1, fall: 1, rise: 1}",
    );
    wait_until("a first probe", || !b1.probes().is_empty());
    let probe = b1.probes().remove(0);
    assert_eq!(probe.req.method, "GET");
    assert_eq!(probe.header("host"), Some(b1.addr.to_string().as_str()));
    b1.set_health(503);
    let mut c = ferry.reverse_client();
    wait_until("b1 out", || (0..6).all(|_| served(&mut c, "/").1 == "b2"));
    let before = b1.requests().len();
    for _ in 0..10 {
        assert_eq!(served(&mut c, "/"), (200, "b2".to_string()));
    }
    assert_eq!(
        b1.requests().len(),
        before,
        "an offline server got requests"
    );
    b1.set_health(0);
    wait_until("b1 back", || served(&mut c, "/").1 == "b1");
}

#[test]
fn given_a_server_taken_out_by_failures_when_it_mends_then_probes_bring_it_back() {
    let (b1, b2) = (Backend::start("b1"), Backend::start("b2"));
    let ferry = pool(
        &[&b1, &b2],
        "      health_check: {path: /healthz, interval_secs: 1, timeout_secs: 1, fall: 2, rise: 1}",
    );
    let mut c = ferry.reverse_client();
    assert_eq!(served(&mut c, "/").0, 200);
    b1.set_status(502);
    b1.set_health(502);
    wait_until("b1 out", || (0..6).all(|_| served(&mut c, "/").1 == "b2"));
    b1.set_status(0);
    b1.set_health(0);
    wait_until("b1 back", || served(&mut c, "/") == (200, "b1".to_string()));
}

#[test]
fn given_a_server_refusing_connects_when_a_post_comes_then_another_server_takes_it() {
    // Nothing of the request was sent, so even a POST may move (DESIGN §7.3).
    let (down, up) = (Backend::start("down"), Backend::start("up"));
    down.set_fault(Fault::Refuse);
    let ferry = pool(&[&down, &up], "      mode: round_robin");
    let mut c = ferry.reverse_client();
    for i in 0..4 {
        let r = c.roundtrip(
            format!("POST /p{i} HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nabc")
                .as_bytes(),
        );
        assert_eq!((r.status, r.served_by()), (200, Some("up")), "request {i}");
        assert_eq!(r.header("x-body-len"), Some("3"));
    }
    assert_eq!(up.requests().len(), 4);
    assert_eq!(down.connections(), 0);
}

#[test]
fn given_a_keep_alive_client_when_the_config_is_reloaded_then_its_next_request_uses_the_new_one() {
    let (b1, b2, b3) = (
        Backend::start("b1"),
        Backend::start("b2"),
        Backend::start("b3"),
    );
    let ferry = Ferry::start_reverse(
        &[&b1],
        "
        reverse:
          sites: [{name: app, hosts: [app.test], routes: [{backend: app}]}]
          backends: {app: {servers: [{url: @b1}]}}
        ",
    );
    let mut c = ferry.reverse_client();
    assert_eq!(served(&mut c, "/"), (200, "b1".into()));
    assert_eq!(c.roundtrip(&site_get("new.test", "/")).status, 404);
    assert!(ferry.reload_reverse(
        &[&b2, &b3],
        "
        reverse:
          sites:
            - {name: app, hosts: [app.test], routes: [{backend: app}]}
            - {name: new, hosts: [new.test], routes: [{backend: fresh}]}
          backends:
            app: {servers: [{url: @b3}]}
            fresh: {servers: [{url: @b2}]}
        ",
    ));
    // the same client connection
    assert_eq!(served(&mut c, "/"), (200, "b3".into()));
    let r = c.roundtrip(&site_get("new.test", "/"));
    assert_eq!((r.status, r.served_by()), (200, Some("b2")));
    assert_eq!(b1.requests().len(), 1);
}

#[test]
fn given_forward_and_reverse_listeners_in_one_process_then_each_plays_its_role() {
    let (site, origin) = (Backend::start("site"), Backend::start("origin"));
    let ferry = Ferry::start_reverse(
        &[&site],
        "
        listen: \"127.0.0.1:0\"
        on_all_down: direct
        reverse:
          sites: [{name: app, hosts: [app.test], routes: [{backend: site}]}]
          backends: {site: {servers: [{url: @site}]}}
        ",
    );
    assert_ne!(ferry.addr, ferry.reverse[0]);
    // forward: an absolute-form request goes straight to the origin it names
    let r = ferry.client().roundtrip(&get(origin.addr, "/fwd"));
    assert_eq!((r.status, r.served_by()), (200, Some("origin")));
    assert_eq!(origin.last().target(), "/fwd");
    // reverse: a published site's request goes to its backend
    let r = ferry
        .reverse_client()
        .roundtrip(&site_get("app.test", "/rev"));
    assert_eq!((r.status, r.served_by()), (200, Some("site")));
    assert_eq!(site.last().target(), "/rev");
    assert!(site.requests().iter().all(|s| s.target() != "/fwd"));
}

#[test]
fn given_the_shipped_reverse_example_then_check_accepts_it() {
    let path = format!("{}/config/reverse.example.yaml", env!("CARGO_MANIFEST_DIR"));
    let out = common::ferry_command()
        .args(["--config", &path, "--check"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("config OK"), "{stdout}");
}
