//! Black-box regression tests for the reverse role as an outsider attacks it (DESIGN §7): each
//! test is a way a client on the internet, or a misconfiguration it can exploit, once got
//! past what a published site meant to allow: a response a kept connection lost its framing
//! to, a route a backend reached by another spelling of its path, a tunnel to a backend that
//! skips ferry's routing, forwarding fields believed from a client the PROXY header did not
//! name, and a redirect that leaves the site.

mod common;

use common::wire::site_get;
use common::{Backend, Ferry};

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
