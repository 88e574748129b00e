//! Black-box attacks on the reverse role's admission and resilience features (DESIGN §7.3):
//! site auth (Basic, bearer, the forward-auth hook), the per-backend queue, retries and their
//! budget, circuit breakers. Each test is a defect found by attacking ferry from outside, on
//! loopback, kept so that it stays fixed.

mod common;

use common::raw::Raw;
use common::wire::site_get;
use common::{wait_until, Backend, Ferry};
use std::sync::{Arc, Mutex};

/// A ferry publishing site `shop` (app.test) behind `auth` (YAML flow mapping) in front of
/// backend `app`: routes `/` (private) and `/pub` (`auth: none`).
fn shop(backends: &[&Backend], auth: &str) -> Ferry {
    Ferry::start_reverse_with(
        2,
        backends,
        &format!(
            "reverse:\n  sites:\n    - name: shop\n      hosts: [app.test]\n      auth: {auth}\n      routes:\n        - {{path: /, name: main, backend: app}}\n        - {{path: /pub, name: pub, backend: app, auth: none}}\n  backends:\n    app: {{servers: [{{url: @app}}]}}\n"
        ),
    )
}

/// A forward-auth `auth:` asking `url`, copying `Remote-User`.
fn forward(url: &str) -> String {
    format!("{{forward: {{url: \"{url}/verify\", timeout_secs: 2, copy_headers: [Remote-User]}}}}")
}

/// An auth service with path rules, as Authelia's or oauth2-proxy's are: everything under
/// `/admin` is forbidden (403), anything else allowed (200, `Remote-User: guest`). It keeps
/// the `X-Forwarded-Uri` of every check.
fn path_rules_service() -> (Raw, Arc<Mutex<Vec<String>>>) {
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = asked.clone();
    let raw = Raw::start(move |c| {
        while let Some(head) = c.read_head() {
            let uri = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("x-forwarded-uri")
                        .then(|| v.trim().to_string())
                })
                .unwrap_or_default();
            let admin = uri == "/admin" || uri.starts_with("/admin/") || uri.starts_with("/admin?");
            log.lock().unwrap().push(uri);
            c.write(match admin {
                true => b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n" as &[u8],
                false => b"HTTP/1.1 200 OK\r\nRemote-User: guest\r\nContent-Length: 0\r\n\r\n",
            });
        }
    });
    (raw, asked)
}

// ---- site auth ----

/// The auth service decides on `X-Forwarded-Uri`; the backend serves the normalized path
/// (DESIGN §7.1). Were the service told the raw target, `/x/../admin` or `/%61dmin` would be
/// judged as paths outside `/admin` and then served as `/admin`.
#[test]
fn given_an_auth_service_with_path_rules_then_it_judges_the_path_the_backend_gets() {
    let app = Backend::start("app");
    let (auth, asked) = path_rules_service();
    let ferry = shop(&[&app], &forward(&auth.url()));
    let mut c = ferry.reverse_client();
    // The plain spelling is refused: the rule works.
    assert_eq!(
        c.roundtrip(&site_get("app.test", "/admin/keys")).status,
        403
    );
    for sneaky in [
        "/x/../admin/keys",
        "/%61dmin/keys",
        "/x/%2e%2e/admin/keys",
        "//admin/keys",
        "/./admin/keys?q=1",
        "/admin;x/keys",
    ] {
        let r = c.roundtrip(&site_get("app.test", sneaky));
        assert_eq!(
            r.status, 403,
            "{sneaky} passed the auth service's /admin rule"
        );
    }
    assert!(
        app.requests()
            .iter()
            .all(|s| !s.target().starts_with("/admin")),
        "the app served /admin: {:?}",
        app.requests()
            .iter()
            .map(|s| s.target().to_string())
            .collect::<Vec<_>>()
    );
    // The service is told the path as the backend gets it, the query as it came.
    let told = asked.lock().unwrap().clone();
    assert!(told.contains(&"/admin/keys?q=1".to_string()), "{told:?}");
}

/// `Remote_User` is `Remote-User` to every CGI-style backend (PHP, WSGI, Rack map both to
/// `HTTP_REMOTE_USER`; nginx drops fields with underscores for that reason). A field the
/// auth service vouches for, or one ferry writes itself (`X-Forwarded-For`, `X-Real-IP`),
/// must not come from the client under that spelling either.
#[test]
fn given_copy_headers_then_a_client_cannot_forge_them_with_underscores() {
    let app = Backend::start("app");
    let (auth, _) = path_rules_service();
    let ferry = shop(&[&app], &forward(&auth.url()));
    let mut c = ferry.reverse_client();
    for path in ["/pub/page", "/page"] {
        let r = c.roundtrip(
            format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nRemote_User: admin\r\nremote_user: root\r\nRemote-user: x\r\nX_Forwarded_For: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\nX_Keep_Me: 1\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, 200, "{path}");
        let got = app.last();
        let forged: Vec<_> = got
            .req
            .headers
            .iter()
            .filter(|(n, _)| n.replace('_', "-").eq_ignore_ascii_case("remote-user"))
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        let want: Vec<String> = match path {
            "/page" => vec!["Remote-User: guest".into()],
            _ => vec![],
        };
        assert_eq!(forged, want, "{path}: the backend got forged identities");
        assert!(
            !String::from_utf8_lossy(&got.req.raw).contains("6.6.6.6"),
            "{path}: a forged client address went on"
        );
        assert_eq!(got.header("x_keep_me"), Some("1"), "other fields go on");
    }
}

/// Two sites on one backend: `open.test` public, `app.test` behind Basic auth.
fn two_sites(app: &Backend) -> Ferry {
    Ferry::start_reverse_with(
        2,
        &[app],
        "reverse:\n  sites:\n    - {name: open, hosts: [open.test], routes: [{backend: app}]}\n    - name: shop\n      hosts: [app.test]\n      auth: {basic: [{username: alice, password: wonderland}, {username: bob, password: builder}]}\n      routes: [{backend: app}]\n  backends:\n    app: {servers: [{url: @app}]}\n",
    )
}

/// An absolute-form target picks the site (RFC 9112 §3.2.2: its authority wins over Host);
/// the backend must then be told that site's host, not the Host field that named the private
/// one, or a backend serving both sites by Host serves the private one past its auth.
#[test]
fn given_an_absolute_form_target_then_the_backend_gets_the_host_the_site_was_chosen_by() {
    let app = Backend::start("app");
    let ferry = two_sites(&app);
    let mut c = ferry.reverse_client();
    let r = c.roundtrip(b"GET http://open.test/secret HTTP/1.1\r\nHost: app.test\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    let got = app.last();
    assert_eq!(got.header("host"), Some("open.test"));
    assert_eq!(got.header("x-forwarded-host"), Some("open.test"));
}

/// `Authorization` is a singleton (RFC 9110 §11.6.2). ferry checks the first field; a backend
/// may read another (many keep the last), and so learns an identity ferry never checked:
/// alice's password would log in as bob.
#[test]
fn given_basic_auth_then_a_request_with_two_authorization_fields_is_refused() {
    let app = Backend::start("app");
    let ferry = two_sites(&app);
    let mut c = ferry.reverse_client();
    // alice:wonderland, then bob with a wrong password.
    let r = c.roundtrip(
        b"GET /x HTTP/1.1\r\nHost: app.test\r\nAuthorization: Basic YWxpY2U6d29uZGVybGFuZA==\r\nAuthorization: Basic Ym9iOnd1dA==\r\n\r\n",
    );
    assert!(
        app.requests().is_empty(),
        "a second, unchecked Authorization reached the app (status {})",
        r.status
    );
    assert_eq!(r.status, 400, "{}", r.text());
}

// ---- circuit breaker ----

/// ferry (one worker, an admin server) publishing app.test to `app`, a lone server whose
/// circuit opens at its first failure for 1 s; no retries, no health check (a circuit then
/// heals through its trial only).
fn lone_breaker(app: &Backend) -> Ferry {
    Ferry::start_reverse_with(
        1,
        &[app],
        "admin_listen: \"127.0.0.1:0\"\nreverse:\n  sites: [{name: app, hosts: [app.test], routes: [{backend: app}]}]\n  backends:\n    app:\n      servers: [{url: @app}]\n      retries: {attempts: 0}\n      circuit_breaker: {failures: 1, open_secs: 1, half_open_requests: 1}\n",
    )
}

/// The circuit of the lone server of `app`, as `/status` says.
fn circuit_of(ferry: &Ferry, app: &Backend) -> String {
    let text = ferry.admin_get("GET", "/status", "").text();
    let s = common::json::Json::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let b = s.get("backends").unwrap().as_array()[0].clone();
    let servers = b.get("servers").unwrap().as_array().to_vec();
    let me = servers
        .iter()
        .find(|x| x.get("url").map(|u| u.as_str().to_string()) == Some(app.url()))
        .unwrap_or_else(|| panic!("no {} in {text}", app.url()));
    me.get("circuit").unwrap().as_str().to_string()
}

/// Opens the circuit with a 503 of the server's own, and waits out `open_secs`.
fn open_and_wait(ferry: &Ferry, app: &Backend) {
    let mut c = ferry.reverse_client();
    let r = c.roundtrip(b"GET /fail HTTP/1.1\r\nHost: app.test\r\nX-Fake: status=503\r\n\r\n");
    assert_eq!((r.status, r.served_by()), (503, Some("app")));
    // (Not "open" alone: a trial slot held elsewhere shows as "half_open".)
    wait_until("the circuit to open", || circuit_of(ferry, app) != "closed");
    let opened = std::time::Instant::now();
    wait_until("open_secs to pass", || {
        opened.elapsed() > std::time::Duration::from_millis(1200)
    });
}

/// A trial request whose response is long (a download, an event stream, a WebSocket) closed
/// the circuit at its head, but held its trial slot until its last byte: when the server
/// failed again meanwhile, its circuit could never send another trial, and a server healing
/// through trials only stayed out for as long as that one client cared to read slowly.
#[test]
fn given_a_trial_with_a_long_response_when_the_circuit_opens_again_then_a_new_trial_still_goes() {
    let app = Backend::start("app");
    let ferry = lone_breaker(&app);
    open_and_wait(&ferry, &app);
    // The trial: a big body that its client does not read (it stays in flight).
    let mut slow = ferry.reverse_client();
    slow.send(b"GET /big HTTP/1.1\r\nHost: app.test\r\nX-Fake: size=50000000\r\n\r\n");
    let head = String::from_utf8(slow.read_head().expect("a head")).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(circuit_of(&ferry, &app), "closed");
    // It fails again while the download goes on: open, with no trial in flight; once
    // open_secs passed, a trial goes.
    open_and_wait(&ferry, &app);
    assert_eq!(circuit_of(&ferry, &app), "open");
    let r = ferry
        .reverse_client()
        .roundtrip(&site_get("app.test", "/after"));
    assert_eq!(
        (r.status, r.served_by()),
        (200, Some("app")),
        "no trial went: {}",
        r.text()
    );
    assert_eq!(circuit_of(&ferry, &app), "closed");
    drop(slow);
}

// ---- queue ----

/// Clients that leave at every point (waiting, holding the slot mid-response) and a crowd
/// hammering a full queue: every slot and place comes back, the crowd gets 503 at once.
#[test]
fn given_clients_leaving_at_every_point_then_no_queue_slot_or_place_leaks() {
    let app = Backend::start("app");
    let ferry = Ferry::start_reverse_with(
        2,
        &[&app],
        "admin_listen: \"127.0.0.1:0\"\nreverse:\n  sites: [{name: app, hosts: [app.test], routes: [{backend: app}]}]\n  backends:\n    app: {servers: [{url: @app}], queue: {max_active: 1, max_queued: 3, timeout_secs: 30}}\n",
    );
    let counts = || {
        let text = ferry.admin_get("GET", "/status", "").text();
        let s = common::json::Json::parse(&text).unwrap();
        let b = s.get("backends").unwrap().as_array()[0].clone();
        (
            b.get("active").unwrap().as_f64(),
            b.get("queued").unwrap().as_f64(),
        )
    };
    // The slot: a big response its client does not read.
    let mut holder = ferry.reverse_client();
    holder.send(b"GET /big HTTP/1.1\r\nHost: app.test\r\nX-Fake: size=50000000\r\n\r\n");
    assert!(holder.read_head().is_some());
    let waiting: Vec<_> = (0..3)
        .map(|i| {
            let mut c = ferry.reverse_client();
            c.send(format!("GET /w{i} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes());
            c
        })
        .collect();
    wait_until("3 waiting", || counts() == (1.0, 3.0));
    // A crowd at the full queue: 503 with Retry-After, at once.
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let r = ferry
            .reverse_client()
            .roundtrip(&site_get("app.test", "/crowd"));
        assert_eq!(r.status, 503);
        assert!(r.header("retry-after").is_some());
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // Everyone leaves: the waiting ones, then the one mid-response.
    drop(waiting);
    wait_until("the waiting ones gone", || counts().1 == 0.0);
    drop(holder);
    wait_until("the slot back", || counts() == (0.0, 0.0));
    let r = ferry
        .reverse_client()
        .roundtrip(&site_get("app.test", "/last"));
    assert_eq!(r.status, 200);
    wait_until("the last slot back", || counts() == (0.0, 0.0));
}

/// An auth service whose 2xx has a body (chunked, with a trailer naming a user) after a 1xx:
/// the body and trailer go nowhere (not to the client, not copied), and the kept connection
/// serves the next check in sync.
#[test]
fn given_an_auth_2xx_with_a_body_and_trailers_then_nothing_of_it_leaks_and_the_next_check_is_in_sync(
) {
    let app = Backend::start("app");
    let auth = Raw::start(|c| {
        while c.read_head().is_some() {
            c.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Remote-User\r\nRemote-User: alice\r\n\r\n6\r\nSECRET\r\n0\r\nRemote-User: root\r\n\r\n");
        }
    });
    let ferry = shop(&[&app], &forward(&auth.url()));
    let mut c = ferry.reverse_client();
    for i in 0..3 {
        let r = c.roundtrip(&site_get("app.test", &format!("/p{i}")));
        assert_eq!(
            (r.status, r.served_by()),
            (200, Some("app")),
            "{}",
            r.text()
        );
        assert!(!r.text().contains("SECRET"));
        assert_eq!(app.last().req.header_all("remote-user"), ["alice"]);
    }
    assert_eq!(auth.connections(), 1, "the kept connection was not reused");
}
