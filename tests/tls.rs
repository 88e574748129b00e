//! Black-box tests of TLS (DESIGN §8, issue 13): termination on `reverse.tls_listen` with a
//! certificate per SNI name, the 421 rule, versions, redirects and HSTS, bodies and upgrades
//! over TLS, certificates replaced on disk while running, `https://` backends (verified,
//! unverified, kept alive, probed), the HTTPS forward proxy, and the TLS metrics.
//!
//! Every certificate is made by the test (tests/common/tls.rs); clients are rustls in this
//! process, the backends the tagged fakes of tests/common/backend.rs, plain or over TLS.
#![cfg(feature = "tls")]

mod common;

use common::backend::checksum;
use common::tls::{self, Ca, Leaf, TlsClient, TlsWire};
use common::wire::{site_get, Response};
use common::{banner_server, pattern, scratch_dir, wait_until, Backend, Fake, Ferry};
use rustls::pki_types::CertificateDer;
use rustls::{HandshakeKind, ProtocolVersion};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The names of the certificates a `Published` ferry serves, in its config's order: the first
/// is the default; the wildcard comes before the exact name it covers, so that a store that
/// takes the first match fails.
const NAMES: [&str; 4] = ["a.test", "b.test", "*.wild.test", "exact.wild.test"];

/// A ferry publishing sites over TLS, its certificates and its backends:
/// - `a.test` (backend `a`, HSTS 600 s), `b.test` (backend `b`), `*.wild.test` (backend `a`),
///   `r.test` (backend `a`, `https_redirect`);
/// - one certificate per name of `NAMES`, issued by `ca`, in files in `dir`.
struct Published {
    ferry: Ferry,
    ca: Ca,
    /// The leaves in `NAMES` order.
    leaves: Vec<Leaf>,
    /// Each leaf's (cert, key) files, in `NAMES` order.
    files: Vec<(PathBuf, PathBuf)>,
    a: Backend,
    b: Backend,
}

impl Published {
    /// Starts it; `tls_extra` is added to the `tls:` block (two-space indented lines), `top`
    /// to the top level.
    fn start(tls_extra: &str, top: &str) -> Published {
        let ca = Ca::new("ferry test CA");
        let dir = scratch_dir();
        let leaves: Vec<Leaf> = NAMES.iter().map(|n| ca.leaf(&[n])).collect();
        let files: Vec<(PathBuf, PathBuf)> = leaves
            .iter()
            .enumerate()
            .map(|(i, l)| l.write(&dir, &format!("cert{i}")))
            .collect();
        let (a, b) = (Backend::start("a"), Backend::start("b"));
        let yaml = format!(
            "{}{tls_extra}{top}{}",
            tls_block(&files),
            r#"
reverse:
  tls_listen: ["127.0.0.1:0"]
  sites:
    - {name: a, hosts: [a.test], hsts_max_age_secs: 600, routes: [{backend: a}]}
    - {name: b, hosts: [b.test], routes: [{backend: b}]}
    - {name: wild, hosts: ["*.wild.test"], routes: [{backend: a}]}
    - {name: r, hosts: [r.test], https_redirect: true, routes: [{backend: a}]}
  backends:
    a: {servers: [{url: @a}]}
    b: {servers: [{url: @b}]}
"#
        );
        let ferry = Ferry::start_reverse(&[&a, &b], &yaml);
        Published {
            ferry,
            ca,
            leaves,
            files,
            a,
            b,
        }
    }

    /// The first TLS listener.
    fn tls_addr(&self) -> SocketAddr {
        self.ferry.reverse_tls[0]
    }

    /// A connection to the TLS listener as `sni`, trusting the test CA.
    fn connect(&self, sni: &str) -> TlsWire {
        TlsClient::trusting(&[&self.ca.cert]).connect(self.tls_addr(), sni)
    }

    /// The certificate a fresh connection (no session to resume) is shown for `sni`; `None`
    /// sends no SNI.
    fn served_for(&self, sni: Option<&str>) -> CertificateDer<'static> {
        let client = TlsClient::any_certificate();
        let w = match sni {
            Some(name) => client.connect(self.tls_addr(), name),
            None => client.without_sni().connect(self.tls_addr(), "no-sni.test"),
        };
        tls::served_cert(&w)
    }

    /// Which of `NAMES` the certificate a fresh connection is shown for `sni` was issued for.
    fn served_name(&self, sni: Option<&str>) -> String {
        let got = self.served_for(sni);
        self.leaves
            .iter()
            .find(|l| l.cert == got)
            .map_or_else(|| "an unknown certificate".into(), |l| l.names[0].clone())
    }
}

/// The `tls:` block naming `files` as its certificates.
fn tls_block(files: &[(PathBuf, PathBuf)]) -> String {
    let mut out = String::from("tls:\n  certificates:\n");
    for (crt, key) in files {
        out.push_str(&format!(
            "    - {{cert: {}, key: {}}}\n",
            crt.display(),
            key.display()
        ));
    }
    out
}

/// Top-level config lines: the config poll, which also looks at the certificate files' mtimes,
/// every second (the default is a minute).
const POLL_EVERY_SECOND: &str = "reload_interval_secs: 1\n";

/// Puts `leaf` in place of the pair at `(crt, key)` the way a careful tool does: each file
/// written aside, then renamed over the old one.
fn replace_pair(leaf: &Leaf, (crt, key): &(PathBuf, PathBuf)) {
    let dir = crt.parent().unwrap();
    let (new_crt, new_key) = leaf.write(dir, "incoming");
    std::fs::rename(new_key, key).unwrap();
    std::fs::rename(new_crt, crt).unwrap();
}

/// A request on `c` that must be answered 200; returns who served it.
fn served(c: &mut TlsWire, host: &str, path: &str) -> String {
    let r = c.roundtrip(&site_get(host, path));
    assert_eq!(r.status, 200, "{host}{path}: {}", r.text());
    r.served_by().expect("a tagged answer").to_string()
}

#[test]
fn given_plain_and_tls_listeners_on_one_address_with_port_0_then_ferry_starts() {
    // The config of DESIGN §8's contract: port 0 is a fresh port for each listener, so the
    // two cannot collide (and a listener's identity across reloads includes `tls`).
    let ca = Ca::new("ferry test CA");
    let files = ca.leaf(&["a.test"]).write(&scratch_dir(), "a");
    let a = Backend::start("a");
    let ferry = Ferry::start_reverse(
        &[&a],
        &format!(
            "{}reverse:\n  listen: [\"127.0.0.1:0\"]\n  tls_listen: [\"127.0.0.1:0\"]\n  sites: [{{name: a, hosts: [a.test], routes: [{{backend: a}}]}}]\n  backends: {{a: {{servers: [{{url: @a}}]}}}}\n",
            tls_block(&[files])
        ),
    );
    let mut c = TlsClient::trusting(&[&ca.cert]).connect(ferry.reverse_tls[0], "a.test");
    assert_eq!(served(&mut c, "a.test", "/"), "a");
    let r = ferry.reverse_client().roundtrip(&site_get("a.test", "/"));
    assert_eq!(r.served_by(), Some("a"));
}

#[test]
fn given_several_certificates_when_clients_name_a_host_then_sni_picks_exact_then_wildcard_else_the_first(
) {
    let p = Published::start("", "");
    for (sni, want) in [
        (Some("a.test"), "a.test"),
        (Some("b.test"), "b.test"),
        // one label under the wildcard
        (Some("x.wild.test"), "*.wild.test"),
        // the exact name wins over the wildcard listed before it
        (Some("exact.wild.test"), "exact.wild.test"),
        // a wildcard covers one label only: no match, the first
        (Some("deep.x.wild.test"), "a.test"),
        (Some("unknown.test"), "a.test"),
        (None, "a.test"),
    ] {
        assert_eq!(p.served_name(sni), want, "SNI {sni:?}");
    }
    // A client that checks the chain and the name accepts what it is shown, and ALPN agrees
    // on http/1.1.
    let mut c = p.connect("b.test");
    assert_eq!(c.stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(served(&mut c, "b.test", "/"), "b");
}

#[test]
fn given_sni_for_one_site_when_host_names_another_then_421() {
    let p = Published::start("", "");
    let mut c = p.connect("a.test");
    assert_eq!(served(&mut c, "a.test", "/x"), "a");
    let r = c.roundtrip(&site_get("b.test", "/x"));
    assert_eq!(r.status, 421, "{}", r.text());
    assert!(
        p.b.requests().is_empty(),
        "the other site's backend got the request"
    );
    // Host and SNI naming the same site through its wildcard: no 421.
    let mut c = p.connect("x.wild.test");
    assert_eq!(served(&mut c, "y.wild.test", "/"), "a");
    // No SNI, no 421: Host alone picks the site.
    let mut c = TlsClient::trusting(&[&p.ca.cert])
        .without_sni()
        .connect(p.tls_addr(), "a.test");
    assert_eq!(served(&mut c, "b.test", "/"), "b");
}

#[test]
fn given_the_default_versions_then_tls_1_2_and_1_3_both_serve() {
    let p = Published::start("", "");
    for (version, want) in [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ] {
        let mut c =
            TlsClient::with_versions(&[&p.ca.cert], &[version]).connect(p.tls_addr(), "a.test");
        assert_eq!(tls::version(&c), want);
        assert_eq!(served(&mut c, "a.test", "/"), "a");
    }
}

#[test]
fn given_min_version_1_3_then_a_tls_1_2_client_is_refused_and_1_3_serves() {
    let p = Published::start("  min_version: \"1.3\"\n", "");
    let old = TlsClient::with_versions(&[&p.ca.cert], &[&rustls::version::TLS12]);
    assert!(
        old.try_connect(p.tls_addr(), "a.test").is_err(),
        "a TLS 1.2 handshake went through"
    );
    let mut c = TlsClient::with_versions(&[&p.ca.cert], &[&rustls::version::TLS13])
        .connect(p.tls_addr(), "a.test");
    assert_eq!(served(&mut c, "a.test", "/"), "a");
}

#[test]
fn given_https_redirect_then_the_plain_listener_answers_308_to_the_tls_port() {
    let p = Published::start("", "");
    let port = p.tls_addr().port();
    let mut plain = p.ferry.reverse_client();
    let r = plain.roundtrip(&site_get("r.test", "/some/path?q=1&b=2"));
    assert_eq!(r.status, 308, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("https://r.test:{port}/some/path?q=1&b=2").as_str())
    );
    assert!(
        p.a.requests().is_empty(),
        "a redirected request was relayed"
    );
    // The same site over TLS is served (r.test has no certificate of its own: the first is
    // shown), and a site without the redirect is served in plain.
    let mut c = TlsClient::any_certificate().connect(p.tls_addr(), "r.test");
    assert_eq!(served(&mut c, "r.test", "/"), "a");
    assert_eq!(plain.roundtrip(&site_get("b.test", "/")).status, 200);
}

#[test]
fn given_hsts_max_age_then_tls_responses_carry_it_and_plain_ones_do_not() {
    let p = Published::start("", "");
    let r = p.connect("a.test").roundtrip(&site_get("a.test", "/"));
    assert_eq!(r.status, 200);
    let sts = r
        .header("strict-transport-security")
        .expect("HSTS on a TLS response");
    assert!(sts.starts_with("max-age=600"), "{sts}");
    let r = p.ferry.reverse_client().roundtrip(&site_get("a.test", "/"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("strict-transport-security"), None, "HSTS in plain");
    // A site without hsts_max_age_secs sends none over TLS either.
    let r = p.connect("b.test").roundtrip(&site_get("b.test", "/"));
    assert_eq!(r.header("strict-transport-security"), None);
}

#[test]
fn given_a_tls_client_when_it_keeps_its_connection_then_every_request_is_served_on_it() {
    let p = Published::start("", "");
    let mut c = p.connect("a.test");
    for i in 0..20 {
        let r = c.roundtrip(&site_get("a.test", &format!("/n{i}")));
        assert_eq!((r.status, r.served_by()), (200, Some("a")), "request {i}");
        assert_ne!(r.header("connection"), Some("close"), "request {i}");
    }
    assert_eq!(p.a.requests().len(), 20);
    assert_eq!(
        tls::handshake_kind(&c),
        HandshakeKind::Full,
        "one handshake for all of them"
    );
}

/// 8 MiB, framed by Content-Length or chunked.
const BIG: usize = 8 << 20;

/// Uploads `BIG` bytes on `c` and downloads as many, each way with both framings, and checks
/// every byte.
fn big_bodies_both_ways(c: &mut TlsWire, host: &str) {
    let body = pattern(BIG);
    let mut req =
        format!("POST /up HTTP/1.1\r\nHost: {host}\r\nContent-Length: {BIG}\r\n\r\n").into_bytes();
    req.extend_from_slice(&body);
    let r = c.roundtrip(&req);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-body-len"), Some(BIG.to_string().as_str()));
    assert_eq!(r.header("x-body-sum"), Some(checksum(&body).as_str()));
    for ask in ["", ";chunked"] {
        let r: Response = c.roundtrip(
            format!("GET /down HTTP/1.1\r\nHost: {host}\r\nX-Fake: size={BIG}{ask}\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), BIG, "download{ask}");
        assert!(r.body == body, "download{ask}: the bytes differ");
    }
}

#[test]
fn given_8_mib_bodies_then_they_cross_tls_whole_both_ways() {
    let p = Published::start("", "");
    big_bodies_both_ways(&mut p.connect("a.test"), "a.test");
}

#[test]
fn given_a_websocket_upgrade_over_tls_then_bytes_are_relayed_both_ways() {
    let p = Published::start("", "");
    let mut c = p.connect("a.test");
    c.send(
        b"GET /chat HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    let r = c.response_to(false);
    assert_eq!((r.status, r.served_by()), (101, Some("a")));
    for msg in [&b"hello over tls"[..], &[b'x'; 50_000][..], b"again"] {
        c.send(msg);
        assert_eq!(c.read_exact_n(msg.len()), msg.to_ascii_uppercase());
    }
}

#[test]
fn given_a_certificate_replaced_on_disk_then_new_connections_get_it_and_old_ones_keep_working() {
    let p = Published::start("", POLL_EVERY_SECOND);
    let mut old = p.connect("a.test");
    assert_eq!(served(&mut old, "a.test", "/before"), "a");
    let renewed = p.ca.leaf(&["a.test"]);
    replace_pair(&renewed, &p.files[0]);
    wait_until("the renewed certificate served", || {
        p.served_for(Some("a.test")) == renewed.cert
    });
    // A client that checks the chain takes it, and the connection made before is still served.
    assert_eq!(served(&mut p.connect("a.test"), "a.test", "/new"), "a");
    assert_eq!(tls::served_cert(&old), p.leaves[0].cert);
    assert_eq!(served(&mut old, "a.test", "/after"), "a");
    assert_eq!(p.served_for(Some("b.test")), p.leaves[1].cert);
}

#[test]
fn given_a_bad_replacement_then_the_old_certificate_keeps_serving_until_a_good_one_comes() {
    let p = Published::start("", POLL_EVERY_SECOND);
    // The refusal is an error or a warning naming the pair's certificate or its key file
    // (both are `cert0.*`).
    let stem = format!("{}.", p.files[0].0.file_stem().unwrap().to_str().unwrap());
    let named_before = |ferry: &Ferry| {
        ferry
            .logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&stem) && (l.contains("[ERROR]") || l.contains("[WARN]")))
            .count()
    };
    let before = named_before(&p.ferry);
    // A certificate with another certificate's key: parses, but does not match.
    let other = p.ca.leaf(&["a.test"]);
    let mismatched = p.ca.leaf(&["a.test"]).with_key_of(&other);
    replace_pair(&mismatched, &p.files[0]);
    wait_until("an error line about the refused pair", || {
        named_before(&p.ferry) > before
    });
    for _ in 0..3 {
        assert_eq!(
            p.served_for(Some("a.test")),
            p.leaves[0].cert,
            "ferry's log:\n{}",
            p.ferry.log_text()
        );
    }
    assert_eq!(served(&mut p.connect("a.test"), "a.test", "/"), "a");
    // A good pair after the bad one is taken.
    let good = p.ca.leaf(&["a.test"]);
    replace_pair(&good, &p.files[0]);
    wait_until("the good certificate served", || {
        p.served_for(Some("a.test")) == good.cert
    });
}

/// A ferry publishing `app.test` in plain HTTP, relaying to `servers` (a `servers:` list
/// body), with `tls_extra` in its `tls:` block; `workers` worker threads.
fn relay_to(
    workers: usize,
    backends: &[&Backend],
    servers: &str,
    tls_extra: &str,
    backend_extra: &str,
) -> Ferry {
    Ferry::start_reverse_with(
        workers,
        backends,
        &format!(
            "tls:\n{tls_extra}reverse:\n  sites: [{{name: app, hosts: [app.test], routes: [{{backend: app}}]}}]\n  backends:\n    app:\n      servers: [{servers}]\n{backend_extra}"
        ),
    )
}

/// A `tls:` block line trusting `ca` (written to a file of its own) for https:// servers.
fn trusting(ca: &Ca, dir: &Path) -> String {
    format!("  ca_file: {}\n", ca.write(dir, "ca.pem").display())
}

#[test]
fn given_an_https_backend_signed_by_ca_file_then_requests_and_bodies_reach_it() {
    let ca = Ca::new("backend CA");
    let secure = Backend::start_tls("secure", ca.leaf(&["127.0.0.1"]).server_config());
    let ferry = relay_to(
        1,
        &[&secure],
        "{url: @secure}",
        &trusting(&ca, &scratch_dir()),
        "",
    );
    let mut c = ferry.reverse_client();
    let r = c.roundtrip(&site_get("app.test", "/hello"));
    assert_eq!(
        (r.status, r.served_by()),
        (200, Some("secure")),
        "{}",
        r.text()
    );
    assert!(
        r.text().starts_with("GET /hello HTTP/1.1\r\n"),
        "{}",
        r.text()
    );
    // Bodies both ways through TLS to the backend.
    let body = pattern(1 << 20);
    let mut req = format!(
        "POST /up HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let r = c.roundtrip(&req);
    assert_eq!(r.header("x-body-sum"), Some(checksum(&body).as_str()));
    let r = c
        .roundtrip(b"GET /down HTTP/1.1\r\nHost: app.test\r\nX-Fake: size=1048576;chunked\r\n\r\n");
    assert!(r.body == body, "the download differs");
}

#[test]
fn given_an_https_backend_that_ca_file_does_not_vouch_for_then_502() {
    let (ours, theirs) = (Ca::new("ours"), Ca::new("theirs"));
    let dir = scratch_dir();
    for (name, leaf) in [
        ("stranger", theirs.leaf(&["127.0.0.1"])),
        ("expired", ours.expired_leaf(&["127.0.0.1"])),
        ("misnamed", ours.leaf(&["elsewhere.test"])),
    ] {
        let b = Backend::start_tls(name, leaf.server_config());
        let ferry = relay_to(
            1,
            &[&b],
            &format!("{{url: @{name}}}"),
            &trusting(&ours, &dir),
            "",
        );
        let r = ferry.reverse_client().roundtrip(&site_get("app.test", "/"));
        assert_eq!(r.status, 502, "{name}: {}", r.text());
        assert!(
            b.requests().is_empty(),
            "{name}: a request went to an unverified server"
        );
    }
}

#[test]
fn given_tls_verify_false_then_a_self_signed_backend_is_used_and_without_it_refused() {
    let b = Backend::start_tls("self", Leaf::self_signed(&["127.0.0.1"]).server_config());
    let dir = scratch_dir();
    let ca = trusting(&Ca::new("unrelated"), &dir);
    let ferry = relay_to(1, &[&b], "{url: @self, tls_verify: false}", &ca, "");
    let r = ferry.reverse_client().roundtrip(&site_get("app.test", "/"));
    assert_eq!(
        (r.status, r.served_by()),
        (200, Some("self")),
        "{}",
        r.text()
    );
    let ferry = relay_to(1, &[&b], "{url: @self}", &ca, "");
    assert_eq!(
        ferry
            .reverse_client()
            .roundtrip(&site_get("app.test", "/"))
            .status,
        502
    );
}

#[test]
fn given_an_https_backend_then_its_tls_connections_are_kept_alive_and_reused() {
    let ca = Ca::new("backend CA");
    let b = Backend::start_tls("kept", ca.leaf(&["127.0.0.1"]).server_config());
    let ferry = relay_to(1, &[&b], "{url: @kept}", &trusting(&ca, &scratch_dir()), "");
    for i in 0..10 {
        // A new client connection each time: only ferry's pool can keep the backend's.
        let r = ferry
            .reverse_client()
            .roundtrip(&site_get("app.test", &format!("/r{i}")));
        assert_eq!(
            (r.status, r.header("x-conn")),
            (200, Some("1")),
            "request {i}"
        );
    }
    assert_eq!(b.connections(), 1, "one TLS connection for ten requests");
}

#[test]
fn given_https_backends_with_health_checks_when_one_fails_its_probe_then_it_goes_down() {
    let ca = Ca::new("backend CA");
    let b1 = Backend::start_tls("b1", ca.leaf(&["127.0.0.1"]).server_config());
    let b2 = Backend::start_tls("b2", ca.leaf(&["127.0.0.1"]).server_config());
    let ferry = relay_to(
        2,
        &[&b1, &b2],
        "{url: @b1}, {url: @b2}",
        &trusting(&ca, &scratch_dir()),
        "      health_check: {path: /healthz, interval_secs: 1, timeout_secs: 1, fall: 1, rise: 1}\n",
    );
    // The fakes speak only TLS: a probe they record came over TLS.
    wait_until("probes over TLS", || {
        !b1.probes().is_empty() && !b2.probes().is_empty()
    });
    b1.set_health(503);
    let mut c = ferry.reverse_client();
    let who = |c: &mut common::Wire| {
        c.roundtrip(&site_get("app.test", "/"))
            .served_by()
            .unwrap_or("")
            .to_string()
    };
    wait_until("b1 down", || (0..6).all(|_| who(&mut c) == "b2"));
    b1.set_health(0);
    wait_until("b1 back", || who(&mut c) == "b1");
}

/// A forward proxy also listening with TLS (`tls_listen`), its certificate for
/// `proxy.test`; returns it and the CA to trust.
fn https_proxy() -> (Ferry, Ca) {
    let ca = Ca::new("proxy CA");
    let files = ca.leaf(&["proxy.test"]).write(&scratch_dir(), "proxy");
    let ferry = Ferry::start(&format!(
        "{}tls_listen: \"127.0.0.1:0\"\n",
        tls_block(&[files])
    ));
    (ferry, ca)
}

#[test]
fn given_an_https_forward_proxy_then_gets_and_connect_tunnels_go_through_its_tls() {
    let (ferry, ca) = https_proxy();
    let addr = ferry.forward_tls.expect("the forward TLS listener");
    let client = TlsClient::trusting(&[&ca.cert]);
    let origin = Fake::origin("origin");
    let mut c = client.connect(addr, "proxy.test");
    for _ in 0..3 {
        let r = c.roundtrip(
            format!(
                "GET http://{0}/size/3000 HTTP/1.1\r\nHost: {0}\r\n\r\n",
                origin.addr
            )
            .as_bytes(),
        );
        assert_eq!((r.status, r.served_by()), (200, Some("origin")));
        assert!(r.body == pattern(3000));
    }
    // A tunnel to a plain server inside the proxy's TLS.
    let server = banner_server(b"220 banner\r\n");
    let mut c = client.connect(addr, "proxy.test");
    c.send(format!("CONNECT {server} HTTP/1.1\r\nHost: {server}\r\n\r\n").as_bytes());
    let head = c.read_head().expect("an answer to CONNECT");
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    c.send(b"through tls\n");
    assert_eq!(c.read_exact_n(24), b"220 banner\r\nTHROUGH TLS\n");
    // TLS inside the tunnel inside TLS: what `curl -x https://proxy https://site` does.
    let inner = tls::TlsOrigin::start();
    let mut c = client.connect(addr, "proxy.test");
    c.send(format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", inner.addr).as_bytes());
    let head = c.read_head().expect("an answer to CONNECT");
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut nested = rustls::StreamOwned::new(inner.client(), &mut c.stream);
    nested
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    nested.read_to_end(&mut got).unwrap();
    assert!(
        got.ends_with(tls::BODY),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

/// The sum of every `ferry_tls_handshakes_total` sample whose result is a failure.
fn failed_handshakes(ferry: &Ferry) -> f64 {
    let text = ferry.admin_get("GET", "/metrics", "").text();
    common::prom::parse(&text)
        .into_iter()
        .filter(|(series, _)| {
            series.starts_with("ferry_tls_handshakes_total{")
                && !series.contains("result=\"ok\"")
                && !series.contains("result=\"resumed\"")
        })
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn given_handshakes_then_metrics_status_and_the_access_log_count_them() {
    let p = Published::start("", "admin_listen: \"127.0.0.1:0\"\naccess_log: true\n");
    let ferry = &p.ferry;
    let metric = |s: &str| ferry.metric(s).unwrap_or(0.0);
    let ok = "ferry_tls_handshakes_total{result=\"ok\"}";
    let resumed = "ferry_tls_handshakes_total{result=\"resumed\"}";
    let (ok0, resumed0, failed0) = (metric(ok), metric(resumed), failed_handshakes(ferry));
    // A full handshake, then one resumed from the session it left.
    let client = TlsClient::with_versions(&[&p.ca.cert], &[&rustls::version::TLS13]);
    let mut c = client.connect(p.tls_addr(), "a.test");
    assert_eq!(served(&mut c, "a.test", "/tls"), "a");
    tls::close(c);
    let mut c = client.connect(p.tls_addr(), "a.test");
    assert_eq!(tls::handshake_kind(&c), HandshakeKind::Resumed);
    assert_eq!(served(&mut c, "a.test", "/resumed"), "a");
    // Failures: a client that does not trust the certificate, and one that speaks no TLS.
    let stranger = TlsClient::trusting(&[&Ca::new("stranger").cert]);
    assert!(stranger.try_connect(p.tls_addr(), "a.test").is_err());
    let mut plain = common::Wire::connect(p.tls_addr());
    plain.send(&site_get("a.test", "/"));
    let _ = plain.read_to_end();
    wait_until("the handshake counters", || {
        metric(ok) > ok0 && metric(resumed) > resumed0 && failed_handshakes(ferry) >= failed0 + 2.0
    });
    // A TLS 1.2 session is counted by its version too.
    let mut c = TlsClient::with_versions(&[&p.ca.cert], &[&rustls::version::TLS12])
        .connect(p.tls_addr(), "b.test");
    assert_eq!(served(&mut c, "b.test", "/"), "b");
    wait_until("the sessions by version", || {
        metric("ferry_tls_sessions_total{version=\"1.2\"}") >= 1.0
            && metric("ferry_tls_sessions_total{version=\"1.3\"}") >= 1.0
    });
    // Each certificate's expiry, in the metrics and in /status, decades away.
    let text = ferry.admin_get("GET", "/metrics", "").text();
    let expiries: Vec<f64> = common::prom::parse(&text)
        .into_iter()
        .filter(|(s, _)| s.starts_with("ferry_tls_certificate_expiry_seconds{"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(expiries.len(), NAMES.len(), "{text}");
    assert!(
        expiries.iter().all(|&v| v > 86400.0 * 365.0),
        "{expiries:?}"
    );
    let status = common::json::Json::parse(&ferry.admin_get("GET", "/status", "").text()).unwrap();
    let certs = status
        .get("tls")
        .and_then(|t| t.get("certificates"))
        .expect("status.tls.certificates");
    let mut names: Vec<String> = certs
        .as_array()
        .iter()
        .flat_map(|c| {
            c.get("names")
                .unwrap()
                .as_array()
                .iter()
                .map(|n| n.as_str().to_string())
        })
        .collect();
    names.sort();
    let mut want: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
    want.sort();
    assert_eq!(names, want);
    assert!(certs
        .as_array()
        .iter()
        .all(|c| c.get("expires_in_secs").unwrap().as_f64() > 86400.0 * 365.0));
    // The access log says which requests came over TLS.
    assert_eq!(
        p.ferry
            .reverse_client()
            .roundtrip(&site_get("b.test", "/plain"))
            .status,
        200
    );
    wait_until("access log lines", || {
        let log = ferry.log_text();
        let logged =
            |path: &str, tls: &str| log.lines().any(|l| l.contains(path) && l.contains(tls));
        logged("/tls ", "tls=1.3") && logged("/plain ", "tls=-")
    });
    assert!(p.a.requests().len() >= 2);
}

/// `/api/v1/certificates` (issue 14, with the `api` feature): an upload is checked, written to
/// cert_dir and served to the next handshake; the list shows names and expiry, never a key.
#[cfg(feature = "api")]
#[test]
fn given_a_certificate_uploaded_through_the_api_then_a_new_connection_gets_it() {
    use common::json::Json;
    let dir = scratch_dir().join("uploads");
    let extra = format!("  cert_dir: {}\n", dir.display());
    let p = Published::start(&extra, "admin_listen: 127.0.0.1:0\nadmin:\n  token: t\n");
    let call = |auth: &str, method: &str, path: &str, body: &str| {
        let mut w = common::Wire::connect(p.ferry.admin());
        w.send(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: admin\r\n{auth}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        w.response_to(false)
    };
    let auth = "Authorization: Bearer t\r\n";
    let upload = |leaf: &Leaf| {
        format!(
            "{{\"cert\": {:?}, \"key\": {:?}}}",
            leaf.cert_pem(),
            leaf.key_pem()
        )
    };
    // Before: an unknown name gets the first certificate.
    assert_eq!(p.served_name(Some("new.test")), "a.test");
    let fresh = p.ca.leaf(&["new.test"]);
    // Refused without the token, and when the key is not the certificate's.
    assert_eq!(
        call("", "POST", "/api/v1/certificates", &upload(&fresh)).status,
        401
    );
    let other = p.ca.leaf(&["new.test"]);
    let r = call(
        auth,
        "POST",
        "/api/v1/certificates",
        &upload(&fresh.with_key_of(&other)),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("match"), "{}", r.text());
    assert_eq!(p.served_name(Some("new.test")), "a.test");

    let r = call(auth, "POST", "/api/v1/certificates", &upload(&fresh));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        Json::parse(&r.text())
            .unwrap()
            .get("name")
            .unwrap()
            .as_str(),
        "new.test"
    );
    // Served at once to a new handshake, a client that checks the chain included.
    assert_eq!(p.served_for(Some("new.test")), fresh.cert);
    let mut c = p.connect("new.test");
    c.send(b"GET / HTTP/1.1\r\nHost: new.test\r\n\r\n");
    // No site is published for new.test: ferry's own 404, over the new certificate.
    assert_eq!(c.response().status, 404);
    // Stored in cert_dir, the key readable by its owner only.
    let key = dir.join("new.test.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Listed with its expiry; no key material in the list.
    let list = call(auth, "GET", "/api/v1/certificates", "").text();
    assert!(
        list.contains("\"new.test\"") && list.contains("expires_in_secs"),
        "{list}"
    );
    assert!(!list.contains("PRIVATE KEY"), "{list}");
}
