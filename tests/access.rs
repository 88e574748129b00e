//! Black-box tests of access control: client networks, client credentials, CONNECT ports,
//! requests aimed at ferry itself, and secrets kept out of logs, status and metrics.

mod common;

use common::wire::get;
use common::{banner_server, pattern, Fake, Ferry, Wire};

#[test]
fn a_client_outside_allow_gets_403_and_is_closed() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("access:\n  allow: [\"127.0.0.1/32\"]\n");
    let mut outsider = Wire::connect_from("127.0.0.2", ferry.addr);
    let r = outsider.response();
    assert_eq!(r.status, 403);
    assert!(outsider.closed());
    let mut insider = Wire::connect_from("127.0.0.1", ferry.addr);
    assert_eq!(
        insider.roundtrip(&get(origin.addr, "/size/3")).body,
        pattern(3)
    );
    assert!(origin.heads().len() == 1);
}

#[test]
fn users_need_valid_credentials() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("access:\n  users:\n    - {username: alice, password: \"s3cr:et\"}\n    - {username: bob, password: pw}\n");
    let r = ferry.client().roundtrip(&get(origin.addr, "/size/1"));
    assert_eq!(
        (r.status, r.header("proxy-authenticate")),
        (407, Some("Basic realm=\"ferry\""))
    );
    let a = origin.addr;
    // bob:wrong, then alice:s3cr:et (YWxpY2U6czNjcjpldA==)
    let r = ferry.client().roundtrip(format!("GET http://{a}/size/1 HTTP/1.1\r\nHost: {a}\r\nProxy-Authorization: Basic Ym9iOndyb25n\r\n\r\n").as_bytes());
    assert_eq!(r.status, 407);
    let r = ferry.client().roundtrip(format!("GET http://{a}/headers HTTP/1.1\r\nHost: {a}\r\nProxy-Authorization: Basic YWxpY2U6czNjcjpldA==\r\n\r\n").as_bytes());
    assert_eq!(r.status, 200);
    assert!(
        !r.text().contains("YWxpY2U6"),
        "the client's credentials reached the origin"
    );
    let mut t = ferry.client();
    t.send(b"CONNECT 127.0.0.1:9 HTTP/1.1\r\n\r\n");
    assert_eq!(t.response().status, 407);
}

#[test]
fn connect_ports_limit_tunnels() {
    let banner = banner_server(b"hi\n");
    let ferry = Ferry::start(&format!(
        "access:\n  connect_ports: [443, {}]\n",
        banner.port() + 1
    ));
    let mut t = ferry.client();
    t.send(format!("CONNECT {banner} HTTP/1.1\r\n\r\n").as_bytes());
    let r = t.response();
    assert_eq!(r.status, 403);
    assert!(r.text().contains("port is not allowed"));
}

#[test]
fn requests_aimed_at_ferry_itself_are_refused() {
    let ferry = Ferry::start("admin_listen: \"127.0.0.1:0\"\n");
    let admin = ferry.admin();
    let mut t = ferry.client();
    t.send(format!("CONNECT {admin} HTTP/1.1\r\n\r\n").as_bytes());
    assert_eq!(t.response().status, 403);
    let me = ferry.addr;
    assert_eq!(ferry.client().roundtrip(&get(me, "/")).status, 403);
    // by name, found out after resolution
    let r = ferry.client().roundtrip(
        format!(
            "GET http://localhost:{}/status HTTP/1.1\r\nHost: x\r\n\r\n",
            admin.port()
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 403);
    assert!(r.text().contains("the target is this proxy"));
}

#[test]
fn passwords_never_appear_in_logs_status_metrics_or_error_pages() {
    let up = Fake::proxy("up", Some("Basic dTpodW50ZXIy"));
    let ferry = Ferry::start(&format!(
        "admin_listen: \"127.0.0.1:0\"\naccess_log: true\naccess:\n  users: [{{username: c, password: cl13ntpw}}]\nupstream:\n  - {{url: {}, username: u, password: hunter2}}\n",
        up.url()
    ));
    // Y2w6Y2wxM250cHc= is c:cl13ntpw
    let auth = "Proxy-Authorization: Basic YzpjbDEzbnRwdw==\r\n";
    let r = ferry.client().roundtrip(
        format!("GET http://o.test/size/1 HTTP/1.1\r\nHost: o.test\r\n{auth}\r\n").as_bytes(),
    );
    assert_eq!(r.served_by(), Some("up"));
    up.set_down(true);
    let r = ferry.client().roundtrip(
        format!("GET http://o.test/size/1 HTTP/1.1\r\nHost: o.test\r\n{auth}\r\n").as_bytes(),
    );
    assert_eq!(r.status, 502);
    let everything = [
        r.text(),
        ferry.admin_get("GET", "/status", "").text(),
        ferry.admin_get("GET", "/metrics", "").text(),
        ferry.log_text(),
    ]
    .join("\n");
    common::wait_until("the access log", || {
        ferry.log_text().contains("via=http://u:***@")
    });
    for secret in ["hunter2", "dTpodW50ZXIy", "cl13ntpw", "YzpjbDEzbnRwdw"] {
        assert!(
            !everything.contains(secret) && !ferry.log_text().contains(secret),
            "{secret} leaked"
        );
    }
}

/// The numeric and IPv4-mapped spellings of 127.0.0.1 that resolvers accept (inet_aton's
/// forms, RFC 4291 §2.5.5.2); every one denotes loopback.
const LOOPBACK_FORMS: [&str; 6] = [
    "2130706433",
    "0177.0.0.1",
    "127.1",
    "0x7f.0.0.1",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
];

#[test]
fn every_spelling_of_a_rejected_address_gets_403_by_get_and_connect() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("rules:\n  - {match: [\"cidr:127.0.0.0/8\"], via: reject}\n");
    let port = origin.addr.port();
    for form in LOOPBACK_FORMS {
        let r = ferry.client().roundtrip(
            format!("GET http://{form}:{port}/size/1 HTTP/1.1\r\nHost: {form}\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 403, "GET {form}");
        let mut t = ferry.client();
        t.send(format!("CONNECT {form}:{port} HTTP/1.1\r\n\r\n").as_bytes());
        assert_eq!(t.response().status, 403, "CONNECT {form}");
        assert!(t.closed(), "CONNECT {form} left the connection open");
    }
    assert_eq!(
        origin.conns.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a rejected address was connected to"
    );
}

#[test]
fn a_mapped_address_of_ferrys_own_ports_gets_403() {
    let ferry = Ferry::start("admin_listen: \"127.0.0.1:0\"\n");
    let (admin, me) = (ferry.admin().port(), ferry.addr.port());
    for host in ["[::ffff:127.0.0.1]", "[::ffff:7f00:1]"] {
        for port in [admin, me] {
            let r = ferry.client().roundtrip(
                format!("GET http://{host}:{port}/status HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
            );
            assert_eq!(r.status, 403, "GET {host}:{port}");
            assert!(r.text().contains("the target is this proxy"));
            let mut t = ferry.client();
            t.send(format!("CONNECT {host}:{port} HTTP/1.1\r\n\r\n").as_bytes());
            assert_eq!(t.response().status, 403, "CONNECT {host}:{port}");
        }
    }
}

#[test]
fn a_chained_self_connect_is_closed_after_the_first() {
    let ferry = Ferry::start("admin_listen: \"127.0.0.1:0\"\n");
    let one = format!(
        "CONNECT [::ffff:127.0.0.1]:{} HTTP/1.1\r\n\r\n",
        ferry.addr.port()
    );
    let mut t = ferry.client();
    // One write that would open a tunnel into ferry, then one from there, 400 deep.
    t.send(one.repeat(400).as_bytes());
    let r = t.response();
    assert_eq!(r.status, 403);
    assert!(r.text().contains("the target is this proxy"));
    assert!(t.closed(), "something followed the first refusal");
    // Counted like any refusal: one failed CONNECT, and no connection left behind.
    common::wait_until("the refusal to be counted", || {
        ferry.metric("ferry_requests_failed_total") == Some(1.0)
            && ferry.metric("ferry_active_connections") == Some(0.0)
    });
    assert_eq!(ferry.metric("ferry_connect_requests_total"), Some(1.0));
}

#[test]
fn a_name_that_resolves_into_a_rejected_cidr_gets_403_on_a_direct_route() {
    let origin = Fake::origin("origin");
    let port = origin.addr.port();
    // A rule naming the host does not exempt its address: the name cannot reach what its
    // address may not.
    for rules in [
        "admin_listen: \"127.0.0.1:0\"\nrules:\n  - {match: [\"cidr:127.0.0.0/8\", \"cidr:::1/128\"], via: reject}\n",
        "rules:\n  - {match: [\"domain:localhost\"], via: direct}\n  - {match: [\"cidr:127.0.0.0/8\", \"cidr:::1/128\"], via: reject}\n",
    ] {
        let ferry = Ferry::start(rules);
        let r = ferry.client().roundtrip(
            format!("GET http://localhost:{port}/size/1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, 403, "GET with {rules}");
        let mut t = ferry.client();
        t.send(format!("CONNECT localhost:{port} HTTP/1.1\r\n\r\n").as_bytes());
        assert_eq!(t.response().status, 403, "CONNECT with {rules}");
        if rules.starts_with("admin_listen") {
            // Counted like any refusal.
            common::wait_until("both refusals to be counted", || {
                ferry.metric("ferry_requests_failed_total") == Some(2.0)
            });
        }
    }
    assert_eq!(origin.conns.load(std::sync::atomic::Ordering::SeqCst), 0);
    // An earlier rule for the address itself still lets it through, as it would a literal.
    let ferry = Ferry::start(
        "rules:\n  - {match: [\"cidr:127.0.0.1/32\", \"cidr:::1/128\"], via: direct}\n  - {match: [\"cidr:127.0.0.0/8\"], via: reject}\n",
    );
    let r = ferry.client().roundtrip(
        format!("GET http://localhost:{port}/size/3 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.body, pattern(3));
}
