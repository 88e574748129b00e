//! Black-box tests of site auth on the reverse role (DESIGN §7.3): Basic accounts and bearer
//! tokens checked by ferry, and the auth-provider hook (`auth.forward`): what the auth service
//! is told, what its 2xx lets through (with the fields it vouches for), how its other answers
//! reach the client, and that a service that is down, slow or garbled never lets anyone in.

mod common;

use common::backend::{checksum, Fault};
use common::raw::{Raw, RawConn};
use common::wire::{site_get, Response};
use common::{dead_port, Backend, Ferry};
use std::time::{Duration, Instant};

/// `alice:wonderland` and `bob:builder` in base64.
const ALICE: &str = "YWxpY2U6d29uZGVybGFuZA==";
const BOB: &str = "Ym9iOmJ1aWxkZXI=";
/// `alice:wrong`.
const ALICE_WRONG: &str = "YWxpY2U6d3Jvbmc=";

/// A ferry publishing site `shop` (app.test) with `auth` (YAML flow mapping) in front of
/// backend `app`: routes `/` and the public `/pub` (`auth: none`).
fn shop(workers: usize, backends: &[&Backend], auth: &str) -> Ferry {
    Ferry::start_reverse_with(
        workers,
        backends,
        &format!(
            "access_log: true\nreverse:\n  sites:\n    - name: shop\n      hosts: [app.test]\n      auth: {auth}\n      routes:\n        - {{path: /, name: main, backend: app}}\n        - {{path: /pub, name: pub, backend: app, auth: none}}\n  backends:\n    app: {{servers: [{{url: @app}}]}}\n"
        ),
    )
}

/// `shop` whose site asks the auth service `auth_url` (a URL, or `@auth` for the fake
/// backend named `auth`), copying `Remote-User` and `Remote-Groups`, within 1 s.
fn guarded(workers: usize, backends: &[&Backend], auth_url: &str) -> Ferry {
    shop(
        workers,
        backends,
        &format!("{{forward: {{url: \"{auth_url}/verify?from=ferry\", timeout_secs: 1, copy_headers: [Remote-User, Remote-Groups]}}}}"),
    )
}

/// `GET path` for app.test with `extra` header lines.
fn get_with(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n{extra}\r\n").into_bytes()
}

fn basic(creds: &str) -> String {
    format!("Authorization: Basic {creds}\r\n")
}

// ---- basic and bearer ----

#[test]
fn given_basic_accounts_then_only_their_credentials_pass_and_others_get_401_with_the_realm() {
    let app = Backend::start("app");
    let ferry = shop(
        2,
        &[&app],
        "{basic: [{username: alice, password: wonderland}, {username: bob, password: builder}]}",
    );
    let mut c = ferry.reverse_client();
    for (extra, why) in [
        (String::new(), "no credentials"),
        (basic(ALICE_WRONG), "a wrong password"),
        (
            format!("Authorization: Bearer {ALICE}\r\n"),
            "another scheme",
        ),
        (
            basic(&ALICE[..ALICE.len() - 1]),
            "a prefix of the credentials",
        ),
    ] {
        // On one connection: a 401 keeps it, so that the client can try again.
        let r = c.roundtrip(&get_with("/x", &extra));
        assert_eq!(r.status, 401, "{why}: {}", r.text());
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"shop\""),
            "{why}"
        );
    }
    assert!(
        app.requests().is_empty(),
        "a refused request reached the app"
    );
    for creds in [ALICE, BOB] {
        let r = c.roundtrip(&get_with("/x", &basic(creds)));
        assert_eq!((r.status, r.served_by()), (200, Some("app")), "{creds}");
        // The backend gets the client's Authorization as it came.
        let sent = format!("Basic {creds}");
        assert_eq!(app.last().header("authorization"), Some(sent.as_str()));
    }
    // The scheme is case-insensitive (RFC 9110 §11.1).
    let r = c.roundtrip(&get_with(
        "/x",
        &format!("Authorization: bAsIc {ALICE}\r\n"),
    ));
    assert_eq!(r.status, 200);
    // A public route of the private site, and paths that only look like one.
    let r = c.roundtrip(&site_get("app.test", "/pub/free"));
    assert_eq!((r.status, r.served_by()), (200, Some("app")));
    for sneaky in ["/pub/../x", "/pub/%2e%2e/x", "/pub/..;/x", "/pubx"] {
        let r = c.roundtrip(&site_get("app.test", sneaky));
        assert_eq!(r.status, 401, "{sneaky} passed as public");
    }
    // Credentials never reach the log (the access log is on, the level is debug).
    let log = ferry.log_text();
    assert!(log.contains("status=401"), "{log}");
    for secret in [ALICE, BOB, ALICE_WRONG, "wonderland"] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

#[test]
fn given_bearer_tokens_then_only_they_pass_and_others_get_401_with_a_bearer_challenge() {
    let app = Backend::start("app");
    let ferry = shop(2, &[&app], "{bearer: [\"t0ken-one\", \"t0ken-two\"]}");
    let mut c = ferry.reverse_client();
    let r = c.roundtrip(&get_with("/x", ""));
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"shop\""));
    let r = c.roundtrip(&get_with("/x", "Authorization: Bearer t0ken-on\r\n"));
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"shop\", error=\"invalid_token\"")
    );
    assert!(app.requests().is_empty());
    for (field, token) in [
        ("Bearer", "t0ken-one"),
        ("bearer", "t0ken-two"),
        ("BEARER", "t0ken-one"),
    ] {
        let r = c.roundtrip(&get_with(
            "/x",
            &format!("Authorization: {field}   {token}\r\n"),
        ));
        assert_eq!(
            (r.status, r.served_by()),
            (200, Some("app")),
            "{field} {token}"
        );
    }
    assert!(!ferry.log_text().contains("t0ken"));
}

#[test]
fn given_a_401_for_a_request_with_a_body_then_the_connection_closes_and_the_body_goes_nowhere() {
    let app = Backend::start("app");
    let ferry = shop(2, &[&app], "{bearer: [t0ken]}");
    let mut c = ferry.reverse_client();
    c.send(b"POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello");
    let r = c.response();
    assert_eq!((r.status, r.header("connection")), (401, Some("close")));
    assert!(c.closed());
    assert!(app.requests().is_empty());
}

// ---- the auth service ----

#[test]
fn given_an_auth_service_that_says_yes_then_the_request_goes_through_with_the_fields_it_vouches_for(
) {
    let app = Backend::start("app");
    let auth = Backend::start("auth");
    auth.set_fields(&[
        "Remote-User: alice",
        "Remote-Groups: admins",
        "Remote-Groups: staff",
        "X-Not-Copied: 1",
    ]);
    let ferry = guarded(2, &[&app, &auth], "@auth");
    let mut c = ferry.reverse_client();
    let body = b"a body that waits while the auth service is asked";
    let mut req = format!(
        "POST /orders/7?q=1 HTTP/1.1\r\nHost: app.test\r\nAuthorization: Basic {ALICE}\r\nCookie: session=s3ss10n\r\nRemote-User: mallory\r\nremote-groups: root\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let r = c.roundtrip(&req);
    assert_eq!(
        (r.status, r.served_by()),
        (200, Some("app")),
        "{}",
        r.text()
    );
    // The backend: the service's fields only (the client's forged ones removed), the body
    // whole, the client's Authorization as it came.
    let got = app.last();
    assert_eq!(got.req.header_all("remote-user"), ["alice"]);
    assert_eq!(got.req.header_all("remote-groups"), ["admins", "staff"]);
    assert_eq!(got.header("x-not-copied"), None);
    assert_eq!(
        got.header("authorization"),
        Some(format!("Basic {ALICE}").as_str())
    );
    assert_eq!(
        (got.body_len, got.body_sum.as_str()),
        (body.len(), checksum(body).as_str())
    );
    // The auth service: GET its own URL, told about the request, no body.
    let asked = auth.last();
    assert_eq!(
        (asked.req.method.as_str(), asked.target()),
        ("GET", "/verify?from=ferry")
    );
    assert_eq!(asked.header("host"), Some(auth.addr.to_string().as_str()));
    assert_eq!(asked.header("x-forwarded-method"), Some("POST"));
    assert_eq!(asked.header("x-forwarded-proto"), Some("http"));
    assert_eq!(asked.header("x-forwarded-host"), Some("app.test"));
    assert_eq!(asked.header("x-forwarded-uri"), Some("/orders/7?q=1"));
    assert_eq!(asked.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(
        asked.header("authorization"),
        Some(format!("Basic {ALICE}").as_str())
    );
    assert_eq!(asked.header("cookie"), Some("session=s3ss10n"));
    assert_eq!(
        asked.header("remote-user"),
        None,
        "the client's other fields went to the service"
    );
    assert_eq!((asked.body_len, asked.header("content-length")), (0, None));
    // The connection goes on: the next request is asked about again.
    let r = c.roundtrip(&site_get("app.test", "/again"));
    assert_eq!(r.status, 200);
    assert_eq!(auth.requests().len(), 2);
    assert_eq!(auth.last().header("x-forwarded-uri"), Some("/again"));
    let log = ferry.log_text();
    for secret in [ALICE, "s3ss10n"] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

#[test]
fn given_an_auth_service_that_redirects_to_its_login_page_then_the_client_gets_that_redirect() {
    let app = Backend::start("app");
    let auth = Backend::start("auth");
    auth.set_status(302);
    auth.set_fields(&[
        "Location: http://login.test/?rd=app.test",
        "Set-Cookie: csrf=1",
    ]);
    let ferry = guarded(2, &[&app, &auth], "@auth");
    let mut c = ferry.reverse_client();
    let r = c.roundtrip(&site_get("app.test", "/private"));
    assert_eq!((r.status, r.served_by()), (302, Some("auth")));
    assert_eq!(r.header("location"), Some("http://login.test/?rd=app.test"));
    assert_eq!(r.header("set-cookie"), Some("csrf=1"));
    // The body as the service sent it (the fake echoes the head it got), with its length.
    assert!(
        r.text().starts_with("GET /verify?from=ferry HTTP/1.1\r\n"),
        "{}",
        r.text()
    );
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    assert!(app.requests().is_empty(), "the app was reached");
    // A request with a body left unread: the same answer, then the connection closes.
    let mut post = ferry.reverse_client();
    post.send(b"POST /private HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nabc");
    let r = post.response();
    assert_eq!((r.status, r.header("connection")), (302, Some("close")));
    assert!(post.closed());
    // The connection stays: once the service says yes, the same client gets through.
    auth.set_status(200);
    let r = c.roundtrip(&site_get("app.test", "/private"));
    assert_eq!((r.status, r.served_by()), (200, Some("app")));
}

#[test]
fn given_an_auth_service_that_answers_401_then_its_challenge_reaches_the_client() {
    let app = Backend::start("app");
    let auth = Backend::start("auth");
    auth.set_status(401);
    auth.set_fields(&[
        "WWW-Authenticate: Basic realm=\"sso\"",
        "Keep-Alive: timeout=5",
    ]);
    let ferry = guarded(2, &[&app, &auth], "@auth");
    let mut c = ferry.reverse_client();
    let r = c.roundtrip(&site_get("app.test", "/"));
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"sso\""));
    // Hop-by-hop fields of the service's answer are not relayed.
    assert_eq!(r.header("keep-alive"), None);
    // A HEAD gets the head alone.
    let r = {
        c.send(b"HEAD / HTTP/1.1\r\nHost: app.test\r\n\r\n");
        c.response_to(true)
    };
    assert_eq!(r.status, 401);
    let r = c.roundtrip(&site_get("app.test", "/"));
    assert_eq!(r.status, 401, "the HEAD's answer carried a body");
    assert!(app.requests().is_empty());
}

#[test]
fn given_a_chunked_403_from_the_auth_service_then_the_client_gets_it_with_a_length() {
    let app = Backend::start("app");
    let auth = Raw::start(|c: &mut RawConn| {
        while c.read_head().is_some() {
            c.write(b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\nX-Served-By: raw-auth\r\n\r\n4\r\nnot \r\n8\r\nfor you!\r\n0\r\n\r\n");
        }
    });
    let ferry = guarded(2, &[&app], &auth.url());
    let mut c = ferry.reverse_client();
    let r = c.roundtrip(&site_get("app.test", "/"));
    assert_eq!((r.status, r.served_by()), (403, Some("raw-auth")));
    assert_eq!(
        (r.text().as_str(), r.header("content-length")),
        ("not for you!", Some("12"))
    );
    assert_eq!(r.header("transfer-encoding"), None);
    // Framed right: the connection carries the next answer too.
    let r = c.roundtrip(&site_get("app.test", "/"));
    assert_eq!(r.status, 403);
    assert!(app.requests().is_empty());
}

/// Asserts that `r` is the 503 of an auth service that failed, and the app got nothing.
fn refused(r: &Response, app: &Backend) {
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("the auth service"), "{}", r.text());
    assert!(app.requests().is_empty(), "the app was reached");
}

#[test]
fn given_an_auth_service_that_is_down_then_503_never_access() {
    let app = Backend::start("app");
    let ferry = guarded(2, &[&app], &format!("http://{}", dead_port()));
    let r = ferry.reverse_client().roundtrip(&site_get("app.test", "/"));
    refused(&r, &app);
    // A refusing fake (its port closed) too, also with credentials the app would take.
    let auth = Backend::start("auth");
    auth.set_fault(Fault::Refuse);
    let ferry = guarded(2, &[&app, &auth], "@auth");
    let r = ferry
        .reverse_client()
        .roundtrip(&get_with("/", &basic(ALICE)));
    refused(&r, &app);
}

#[test]
fn given_an_auth_service_that_hangs_then_503_after_timeout_secs() {
    let app = Backend::start("app");
    let auth = Backend::start("auth");
    auth.set_fault(Fault::Hang);
    let ferry = guarded(2, &[&app, &auth], "@auth");
    let mut c = ferry.reverse_client();
    let t0 = Instant::now();
    let r = c.roundtrip(&site_get("app.test", "/"));
    let took = t0.elapsed();
    refused(&r, &app);
    assert!(r.text().contains("did not answer in time"), "{}", r.text());
    // timeout_secs is 1; the worker's timers are checked every 250 ms.
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "503 after {took:?}"
    );
}

#[test]
fn given_an_auth_service_that_sends_garbage_then_503() {
    let app = Backend::start("app");
    for answer in [
        &b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ncut short",
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    ] {
        let auth = Raw::start(move |c: &mut RawConn| {
            if c.read_head().is_some() {
                c.write_and_finish(answer);
            }
        });
        let ferry = guarded(1, &[&app], &auth.url());
        let r = ferry.reverse_client().roundtrip(&site_get("app.test", "/"));
        refused(&r, &app);
        assert_eq!(auth.connections(), 1, "{}", String::from_utf8_lossy(answer));
    }
    // An answer over 64 KiB.
    let auth = Raw::start(|c: &mut RawConn| {
        if c.read_head().is_some() {
            let mut a = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 70000\r\n\r\n".to_vec();
            a.resize(a.len() + 70_000, b'x');
            c.write_and_finish(&a);
        }
    });
    let ferry = guarded(1, &[&app], &auth.url());
    let r = ferry.reverse_client().roundtrip(&site_get("app.test", "/"));
    refused(&r, &app);
    assert!(r.text().contains("64 KiB"), "{}", r.text());
}

#[test]
fn given_a_public_route_then_it_passes_without_asking_and_forged_fields_are_still_removed() {
    let app = Backend::start("app");
    let auth = Backend::start("auth");
    auth.set_status(401);
    let ferry = guarded(2, &[&app, &auth], "@auth");
    let r = ferry.reverse_client().roundtrip(&get_with(
        "/pub/x",
        "Remote-User: mallory\r\nX-Other: kept\r\n",
    ));
    assert_eq!((r.status, r.served_by()), (200, Some("app")));
    assert!(auth.requests().is_empty(), "the auth service was asked");
    let got = app.last();
    assert_eq!(got.header("remote-user"), None);
    assert_eq!(got.header("x-other"), Some("kept"));
}

#[test]
fn given_keep_alive_then_one_connection_to_the_auth_service_serves_every_check() {
    let app = Backend::start("app");
    let auth = Backend::start("auth");
    let ferry = guarded(1, &[&app, &auth], "@auth");
    for i in 0..5 {
        // A new client each time: the worker's idle pool, not the session, keeps it.
        let r = ferry
            .reverse_client()
            .roundtrip(&site_get("app.test", &format!("/n{i}")));
        assert_eq!(r.status, 200, "request {i}");
    }
    assert_eq!(auth.requests().len(), 5);
    assert_eq!(auth.connections(), 1, "the auth connection was not reused");
    // Every check on the one connection.
    assert!(auth.requests().iter().all(|s| s.conn == 1));
}

#[test]
fn given_a_kept_auth_connection_that_dies_when_reused_then_a_fresh_one_answers() {
    let app = Backend::start("app");
    // The first connection answers once, then hangs up on the next request unanswered.
    let auth = Raw::start(|c: &mut RawConn| {
        let mut answered = 0;
        while c.read_head().is_some() {
            if c.index == 0 && answered == 1 {
                return; // the connection closes here
            }
            c.write(b"HTTP/1.1 204 No Content\r\n\r\n");
            answered += 1;
        }
    });
    let ferry = guarded(1, &[&app], &auth.url());
    for i in 0..2 {
        let r = ferry.reverse_client().roundtrip(&site_get("app.test", "/"));
        assert_eq!((r.status, r.served_by()), (200, Some("app")), "request {i}");
    }
    assert_eq!(auth.connections(), 2);
}

#[test]
fn given_a_client_that_pipelines_then_each_request_is_checked_and_answered_in_order() {
    let app = Backend::start("app");
    let auth = Backend::start("auth");
    auth.set_fields(&["Remote-User: alice"]);
    let ferry = guarded(2, &[&app, &auth], "@auth");
    let mut c = ferry.reverse_client();
    let mut reqs = Vec::new();
    for i in 0..3 {
        reqs.extend(site_get("app.test", &format!("/p{i}")));
    }
    c.send(&reqs);
    for i in 0..3 {
        let r = c.response();
        assert_eq!(r.status, 200);
        assert!(r.text().starts_with(&format!("GET /p{i} ")), "{}", r.text());
    }
    let uris: Vec<String> = auth
        .requests()
        .iter()
        .map(|s| s.header("x-forwarded-uri").unwrap_or("").to_string())
        .collect();
    assert_eq!(uris, ["/p0", "/p1", "/p2"]);
}
