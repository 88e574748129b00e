//! Black-box regression tests for the reverse role as an outsider attacks it (DESIGN §7): each
//! test is a way a client on the internet, or a misconfiguration it can exploit, once got
//! past what a published site meant to allow: a response a kept connection lost its framing
//! to, a route a backend reached by another spelling of its path, a tunnel to a backend that
//! skips ferry's routing, forwarding fields believed from a client the PROXY header did not
//! name, and a redirect that leaves the site.

mod common;

use common::raw::Raw;
use common::wire::site_get;
use common::{Backend, Ferry, Wire};

/// Site `app.test` on backend `web`: `/admin` takes GET only, `/old` redirects elsewhere,
/// `/caf%C3%A9` goes to backend `menu`; `extra` adds keys under `reverse:`.
fn app(web: &Backend, menu: &Backend, extra: &str) -> Ferry {
    let routes = [
        r#"{path: "/", backend: web}"#,
        r#"{path: "/admin", backend: web, methods: [GET]}"#,
        r#"{path: "/old", redirect: {to: "https://new.test/base"}}"#,
        r#"{path: "/caf%C3%A9", backend: menu}"#,
    ]
    .join(", ");
    Ferry::start_reverse(
        &[web, menu],
        &format!(
            "reverse:\n{extra}\n  sites:\n    - {{name: app, hosts: [app.test], routes: [{routes}]}}\n  backends:\n    web: {{servers: [{{url: @web}}]}}\n    menu: {{servers: [{{url: @menu}}]}}\n"
        ),
    )
}

/// A HEAD response has no body (RFC 9110 §9.3.2), also when ferry writes it itself: a body
/// after it is read by the client (or a front proxy that pools connections for many
/// clients) as the start of the next response.
#[test]
fn given_head_requests_that_ferry_answers_itself_then_no_body_follows_and_the_next_answer_is_in_sync(
) {
    let (web, menu) = (Backend::start("web"), Backend::start("menu"));
    let ferry = app(&web, &menu, "");
    let mut c = ferry.reverse_client();
    // one packet: a 404 (no site), a 405 (GET only), a 308 (redirect), then a real request
    c.send(
        b"HEAD / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n\
          HEAD /admin HTTP/1.1\r\nHost: app.test\r\n\r\n\
          HEAD /old/x HTTP/1.1\r\nHost: app.test\r\n\r\n\
          GET /after HTTP/1.1\r\nHost: app.test\r\n\r\n",
    );
    for want in [404, 405, 308] {
        assert_eq!(c.response_to(true).status, want);
    }
    let r = c.response();
    assert_eq!(
        (r.status, r.served_by()),
        (200, Some("web")),
        "{}",
        r.text()
    );
    assert_eq!(web.last().target(), "/after");
}

/// RFC 3986 §6.2.2.2: `%61` is `a`, and every server decodes it so. A route chosen on the
/// encoded spelling sends `/admin` to the backend under the rules of `/`: its method list
/// (and any other rule of the route) does not hold. The same for hex digits in lower case
/// (`%c3%a9` is `%C3%A9`).
#[test]
fn given_a_route_when_its_path_comes_percent_encoded_then_that_route_still_applies() {
    let (web, menu) = (Backend::start("web"), Backend::start("menu"));
    let ferry = app(&web, &menu, "");
    for target in [
        "/%61dmin",
        "/%41dmin/../admin/x",
        "/adm%69n/x",
        "/%2e/%61dmin",
    ] {
        let r = ferry.reverse_client().roundtrip(
            format!("POST {target} HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, 405, "POST {target} passed: {}", r.text());
    }
    // what the backend gets is the same path its route was chosen by
    let r = ferry
        .reverse_client()
        .roundtrip(&site_get("app.test", "/%61dmin/%7Euser%2Fx?q=%61"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(web.last().target(), "/admin/~user%2Fx?q=%61");
    let r = ferry
        .reverse_client()
        .roundtrip(&site_get("app.test", "/caf%c3%a9/menu"));
    assert_eq!(r.served_by(), Some("menu"), "{}", r.text());
    assert_eq!(menu.last().target(), "/caf%C3%A9/menu");
}

/// `Upgrade: h2c` asks the backend to speak HTTP/2 on the connection: once it says 101, the
/// client sends frames straight to it, past ferry's routes, method lists and forwarding
/// fields (h2c smuggling). ferry does not offer it (as Envoy and HAProxy do not): the backend
/// gets a plain request.
#[test]
fn given_an_h2c_upgrade_then_the_backend_never_sees_it_and_no_tunnel_opens() {
    let raw = Raw::start(|c| {
        while let Some(head) = c.read_head() {
            if head.to_ascii_lowercase().contains("upgrade: h2c") {
                c.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nH2 FRAMES");
                return;
            }
            c.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain");
        }
    });
    let yaml = format!(
        r#"
        reverse:
          sites: [{{hosts: [app.test], routes: [{{backend: raw}}]}}]
          backends: {{raw: {{servers: [{{url: "{}"}}]}}}}
        "#,
        raw.url()
    );
    let ferry = Ferry::start_reverse(&[], &yaml);
    let mut c = ferry.reverse_client();
    let r = c.roundtrip(
        b"GET / HTTP/1.1\r\nHost: app.test\r\nUpgrade: h2c\r\n\
          Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    );
    assert_eq!((r.status, r.body.as_slice()), (200, &b"plain"[..]));
    let sent = raw.text().to_ascii_lowercase();
    assert!(
        !sent.contains("h2c"),
        "the backend was asked for h2c:\n{sent}"
    );
}

/// A PROXY header that names no client (v1 `UNKNOWN`, v2 `LOCAL` or an unspecified family)
/// leaves the balancer's address as the client, but what follows is still a client's
/// request: its forwarding fields are not believed because the balancer is trusted.
#[test]
fn given_a_proxy_header_naming_no_client_then_the_clients_forwarding_fields_are_replaced() {
    let (web, menu) = (Backend::start("web"), Backend::start("menu"));
    let ferry = app(
        &web,
        &menu,
        "  trusted_proxies: [\"127.0.0.2/32\"]\n  proxy_protocol: true",
    );
    let v2_local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    let v2_unspec = b"\r\n\r\n\0\r\nQUIT\n\x21\x00\x00\x00".to_vec();
    for preface in [b"PROXY UNKNOWN\r\n".to_vec(), v2_local, v2_unspec] {
        let mut c = Wire::connect_from("127.0.0.2", ferry.reverse[0]);
        c.send(&preface);
        let r = c.roundtrip(
            b"GET /x HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 203.0.113.9\r\n\
              X-Real-IP: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Request-Id: forged\r\n\r\n",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let got = web.last();
        assert_eq!(
            got.header("x-forwarded-for"),
            Some("127.0.0.2"),
            "{preface:?}"
        );
        assert_eq!(got.header("x-real-ip"), Some("127.0.0.2"), "{preface:?}");
        assert_eq!(got.header("x-forwarded-proto"), Some("http"), "{preface:?}");
        assert_ne!(got.header("x-request-id"), Some("forged"), "{preface:?}");
    }
}

/// A redirect's `to` with no host (`"https://"`) makes the request's path the authority: with
/// `strip_prefix`, `/go//evil.test/x` would be sent to `https://evil.test/x`. `--check`
/// refuses such a `to`.
#[test]
fn given_a_redirect_to_a_url_without_a_host_then_check_refuses_it() {
    for to in [
        "https://",
        "http://",
        "https:///",
        "http://?",
        "https://:443",
    ] {
        let dir = common::scratch_dir();
        let path = dir.join("c.yaml");
        let yaml = format!(
            "reverse:\n  listen: [\"127.0.0.1:0\"]\n  sites:\n    - hosts: [\"*\"]\n      routes: [{{path: /go, strip_prefix: true, redirect: {{to: \"{to}\"}}}}]\n"
        );
        std::fs::write(&path, yaml).unwrap();
        let out = common::ferry_command()
            .args(["--config", path.to_str().unwrap(), "--check"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{to:?} was accepted");
        assert!(err.contains("redirect.to"), "{to:?}: {err}");
    }
}

/// A site published for an IPv6 literal is reached by an absolute-form target naming it too
/// (an absolute-form target's host wins over Host, DESIGN §7.1).
#[test]
fn given_a_site_for_an_ipv6_literal_when_the_target_is_absolute_form_then_that_site_serves() {
    let web = Backend::start("web");
    let ferry = Ferry::start_reverse(
        &[&web],
        r#"
        reverse:
          sites: [{hosts: ["[::1]"], routes: [{backend: web}]}]
          backends: {web: {servers: [{url: @web}]}}
        "#,
    );
    for req in [
        &b"GET /x HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"[..],
        b"GET http://[::1]:8080/y HTTP/1.1\r\nHost: other.test\r\n\r\n",
    ] {
        let r = ferry.reverse_client().roundtrip(req);
        assert_eq!(r.served_by(), Some("web"), "{}", r.text());
    }
    assert_eq!(web.last().header("host"), Some("[::1]:8080"));
}

/// Many servers read `//admin` as `/admin` (nginx's merge_slashes, Go's ServeMux redirect,
/// Spring) and `/admin;p` or `/x/..;/admin` as `/admin` (Tomcat, Jetty, Spring path
/// parameters): the `/admin` route's rules must hold for them too.
#[test]
fn given_a_route_when_its_path_comes_with_empty_segments_or_path_parameters_then_that_route_still_applies(
) {
    let (web, menu) = (Backend::start("web"), Backend::start("menu"));
    let ferry = app(&web, &menu, "");
    for target in ["//admin", "/admin;p", "/x/..;/admin"] {
        let r = ferry.reverse_client().roundtrip(
            format!("POST {target} HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, 405, "POST {target} passed: {}", r.text());
    }
}
