//! Black-box tests of the reverse-proxy role's routing (DESIGN §7.1): the site chosen by Host,
//! the route by normalized path, the statuses ferry answers itself (400, 404, 405) and its
//! redirects. Every site's backend tags its answers, so each test checks who served.

mod common;

use common::wire::{site_get, Response};
use common::{Backend, Ferry, Wire};

/// Sites listed from the least to the most specific, so that a first-match table fails.
const SITES: &str = r#"
    reverse:
      sites:
        - {name: any, hosts: ["*"], routes: [{backend: any}]}
        - {name: wild, hosts: ["*.app.test"], routes: [{backend: wild}]}
        - {name: deep, hosts: ["*.api.app.test"], routes: [{backend: deep}]}
        - {name: dot, hosts: [".dot.test"], routes: [{backend: dot}]}
        - {name: exact, hosts: [www.app.test], routes: [{backend: exact}]}
      backends:
        any: {servers: [{url: @any}]}
        wild: {servers: [{url: @wild}]}
        deep: {servers: [{url: @deep}]}
        dot: {servers: [{url: @dot}]}
        exact: {servers: [{url: @exact}]}
"#;

/// A ferry publishing `SITES`, with their backends (kept alive with it).
fn sites() -> (Ferry, Vec<Backend>) {
    let bs: Vec<Backend> = ["any", "wild", "deep", "dot", "exact"]
        .into_iter()
        .map(Backend::start)
        .collect();
    let refs: Vec<&Backend> = bs.iter().collect();
    (Ferry::start_reverse(&refs, SITES), bs)
}

/// One request on a fresh connection.
fn send(ferry: &Ferry, req: &[u8]) -> Response {
    ferry.reverse_client().roundtrip(req)
}

/// Who served `GET path` for `host` (which must succeed), on a fresh connection.
fn server_for(ferry: &Ferry, host: &str, path: &str) -> String {
    server_for_on(&mut ferry.reverse_client(), host, path)
}

/// Who served `GET path` for `host` (which must succeed), on the connection `c`.
fn server_for_on(c: &mut Wire, host: &str, path: &str) -> String {
    let r = c.roundtrip(&site_get(host, path));
    assert_eq!(r.status, 200, "{host}{path}: {}", r.text());
    r.served_by().expect("a tagged answer").to_string()
}

/// Asserts who serves each `(host, path, backend)`.
fn expect_servers(ferry: &Ferry, cases: &[(&str, &str, &str)]) {
    for &(host, path, want) in cases {
        assert_eq!(server_for(ferry, host, path), want, "{host}{path}");
    }
}

#[test]
fn given_exact_and_wildcard_sites_when_host_is_the_exact_name_then_the_exact_site_serves() {
    let (ferry, _bs) = sites();
    expect_servers(
        &ferry,
        &[
            ("www.app.test", "/", "exact"),
            ("other.app.test", "/", "wild"),
        ],
    );
}

#[test]
fn given_two_wildcards_when_host_is_under_both_then_the_longest_wildcard_serves() {
    let (ferry, _bs) = sites();
    expect_servers(
        &ferry,
        &[
            ("v1.api.app.test", "/", "deep"),
            ("a.b.api.app.test", "/", "deep"),
            ("api.app.test", "/", "deep"),
            ("apix.app.test", "/", "wild"),
        ],
    );
}

#[test]
fn given_wildcard_sites_when_host_is_the_bare_domain_or_deeper_then_the_wildcard_serves() {
    let (ferry, _bs) = sites();
    expect_servers(
        &ferry,
        &[
            ("app.test", "/", "wild"),
            ("x.y.z.app.test", "/", "wild"),
            ("dot.test", "/", "dot"),
            ("a.dot.test", "/", "dot"),
        ],
    );
    // a name that merely ends with the same letters is another domain
    assert_eq!(server_for(&ferry, "xapp.test", "/"), "any");
}

#[test]
fn given_a_catch_all_site_when_no_other_site_matches_then_the_catch_all_serves() {
    let (ferry, _bs) = sites();
    expect_servers(
        &ferry,
        &[("elsewhere.test", "/", "any"), ("127.0.0.1", "/", "any")],
    );
}

#[test]
fn given_host_with_port_capitals_and_trailing_dot_when_matched_then_they_are_ignored() {
    let (ferry, _bs) = sites();
    expect_servers(
        &ferry,
        &[
            ("www.app.test:8080", "/", "exact"),
            ("WWW.App.TEST", "/", "exact"),
            ("www.app.test.", "/", "exact"),
            ("www.app.test.:80", "/", "exact"),
        ],
    );
}

#[test]
fn given_an_absolute_form_target_when_host_differs_then_the_target_host_picks_the_site() {
    let (ferry, bs) = sites();
    let r = send(
        &ferry,
        b"GET http://www.app.test/p?q=1 HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n",
    );
    assert_eq!((r.status, r.served_by()), (200, Some("exact")));
    // the backend gets the origin form
    assert_eq!(bs[4].last().target(), "/p?q=1");
}

#[test]
fn given_http11_without_host_then_400_and_no_backend_is_asked() {
    let (ferry, bs) = sites();
    let r = send(&ferry, b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(bs.iter().all(|b| b.requests().is_empty()));
}

#[test]
fn given_http11_with_two_host_fields_then_400_and_no_backend_is_asked() {
    let (ferry, bs) = sites();
    let r = send(
        &ferry,
        b"GET / HTTP/1.1\r\nHost: www.app.test\r\nHost: other.test\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(bs.iter().all(|b| b.requests().is_empty()));
}

#[test]
fn given_no_catch_all_when_no_site_matches_then_404_names_the_host() {
    let b = Backend::start("app");
    let ferry = Ferry::start_reverse(
        &[&b],
        "
        reverse:
          sites:
            - {name: app, hosts: [app.test], routes: [{backend: app}]}
          backends:
            app: {servers: [{url: @app}]}
        ",
    );
    let r = send(&ferry, &site_get("nowhere.test", "/x"));
    assert_eq!(r.status, 404);
    assert!(r.text().contains("nowhere.test"), "{}", r.text());
    assert!(b.requests().is_empty());
}

#[test]
fn given_a_reverse_listener_when_asked_as_a_forward_proxy_then_it_publishes_nothing_else() {
    // An absolute-form request naming a backend's own address picks a site by that address;
    // with no site for it ferry answers 404 and does not act as an open proxy.
    let (b, other) = (Backend::start("app"), Backend::start("other"));
    let ferry = Ferry::start_reverse(
        &[&b],
        "
        reverse:
          sites:
            - {name: app, hosts: [app.test], routes: [{backend: app}]}
          backends:
            app: {servers: [{url: @app}]}
        ",
    );
    let a = other.addr;
    let r = send(
        &ferry,
        format!("GET http://{a}/ HTTP/1.1\r\nHost: {a}\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(other.connections(), 0);
}

/// Routes of one site, listed shortest first so that a first-match table fails.
const ROUTES: &str = r#"
    reverse:
      sites:
        - name: app
          hosts: [app.test]
          routes:
            - {path: /, backend: root}
            - {path: /api, backend: api}
            - {path: /api/v2, backend: v2}
            - {path: /strip, backend: api, strip_prefix: true}
            - {path: /ro, backend: api, methods: [GET, HEAD]}
      backends:
        root: {servers: [{url: @root}]}
        api: {servers: [{url: @api}]}
        v2: {servers: [{url: @v2}]}
"#;

fn routes() -> (Ferry, [Backend; 3]) {
    let bs = [
        Backend::start("root"),
        Backend::start("api"),
        Backend::start("v2"),
    ];
    let ferry = Ferry::start_reverse(&[&bs[0], &bs[1], &bs[2]], ROUTES);
    (ferry, bs)
}

#[test]
fn given_prefix_api_when_path_is_apix_then_the_root_route_serves() {
    let (ferry, _bs) = routes();
    expect_servers(
        &ferry,
        &[
            ("app.test", "/apix", "root"),
            ("app.test", "/apix/y", "root"),
            ("app.test", "/api", "api"),
            ("app.test", "/api/", "api"),
            ("app.test", "/api?x=1", "api"),
            ("app.test", "/api/users", "api"),
        ],
    );
}

#[test]
fn given_api_and_api_v2_routes_when_path_is_under_v2_then_the_longest_prefix_serves() {
    let (ferry, _bs) = routes();
    expect_servers(
        &ferry,
        &[
            ("app.test", "/api/v2/items", "v2"),
            ("app.test", "/api/v2", "v2"),
            ("app.test", "/api/v2x", "api"),
        ],
    );
}

/// Asserts, for each `(path, backend, target)` on app.test, who served it and the request
/// target that backend received.
fn expect_targets(ferry: &Ferry, bs: &[Backend], cases: &[(&str, &str, &str)]) {
    for &(path, server, target) in cases {
        assert_eq!(server_for(ferry, "app.test", path), server, "{path}");
        let b = bs.iter().find(|b| b.name == server).unwrap();
        assert_eq!(b.last().target(), target, "{path}");
    }
}

#[test]
fn given_a_route_without_strip_prefix_then_the_backend_gets_the_whole_path_and_query() {
    let (ferry, bs) = routes();
    let path = "/api/users?id=7&x=%20";
    expect_targets(&ferry, &bs, &[(path, "api", path)]);
}

#[test]
fn given_strip_prefix_when_path_has_more_then_the_backend_gets_the_rest_and_the_query() {
    let (ferry, bs) = routes();
    expect_targets(&ferry, &bs, &[("/strip/users?id=7", "api", "/users?id=7")]);
}

#[test]
fn given_strip_prefix_when_path_is_the_bare_prefix_then_the_backend_gets_slash() {
    let (ferry, bs) = routes();
    expect_targets(&ferry, &bs, &[("/strip", "api", "/")]);
}

#[test]
fn given_dot_segments_when_the_path_climbs_into_api_then_api_serves_the_normalized_path() {
    let (ferry, bs) = routes();
    expect_targets(
        &ferry,
        &bs,
        &[
            ("/static/../api/x", "api", "/api/x"),
            ("/api/./v2/./y", "v2", "/api/v2/y"),
            // and out of a route: the route decision follows the normalized path
            ("/api/../admin", "root", "/admin"),
        ],
    );
}

#[test]
fn given_percent_encoded_dot_segments_then_they_count_as_dots() {
    let (ferry, bs) = routes();
    expect_targets(
        &ferry,
        &bs,
        &[
            ("/api/%2e%2e/admin", "root", "/admin"),
            ("/x/%2E%2E/api/%2E/z", "api", "/api/z"),
        ],
    );
}

#[test]
fn given_a_path_climbing_above_root_then_400_and_no_backend_is_asked() {
    let (ferry, bs) = routes();
    for path in [
        "/..",
        "/../api/x",
        "/a/../../api",
        "/%2e%2e/api",
        "/api/%2E%2E/%2e%2e/x",
    ] {
        let r = send(&ferry, &site_get("app.test", path));
        assert_eq!(r.status, 400, "{path}: {}", r.text());
    }
    assert!(bs.iter().all(|b| b.requests().is_empty()));
}

#[test]
fn given_a_route_with_methods_when_another_method_comes_then_405_with_allow() {
    let (ferry, bs) = routes();
    let r = send(
        &ferry,
        b"POST /ro/x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert_eq!(r.status, 405, "{}", r.text());
    let allow = r.header("allow").expect("an Allow field");
    let mut methods: Vec<&str> = allow.split(',').map(str::trim).collect();
    methods.sort_unstable();
    assert_eq!(methods, ["GET", "HEAD"]);
    // the shorter route "/" that takes any method did not take over
    assert!(bs.iter().all(|b| b.requests().is_empty()));
    assert_eq!(server_for(&ferry, "app.test", "/ro/x"), "api");
}

#[test]
fn given_a_reverse_listener_when_connect_comes_then_405() {
    let (ferry, bs) = routes();
    let r = send(
        &ferry,
        b"CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n",
    );
    assert_eq!(r.status, 405, "{}", r.text());
    assert!(bs.iter().all(|b| b.connections() == 0));
}

#[test]
fn given_a_site_without_a_matching_route_then_404() {
    let b = Backend::start("api");
    let ferry = Ferry::start_reverse(
        &[&b],
        "
        reverse:
          sites:
            - {name: app, hosts: [app.test], routes: [{path: /api, backend: api}]}
          backends:
            api: {servers: [{url: @api}]}
        ",
    );
    assert_eq!(send(&ferry, &site_get("app.test", "/other")).status, 404);
    assert_eq!(send(&ferry, &site_get("app.test", "/apix")).status, 404);
    assert!(b.requests().is_empty());
    assert_eq!(server_for(&ferry, "app.test", "/api/1"), "api");
}

/// A site whose routes redirect.
const REDIRECTS: &str = r#"
    reverse:
      sites:
        - name: app
          hosts: [app.test]
          routes:
            - {path: /old, redirect: {to: "https://new.test"}}
            - {path: /moved, redirect: {to: "https://new.test/base", status: 301}}
            - {path: /short, strip_prefix: true, redirect: {to: "https://new.test/v2"}}
            - {path: /, backend: app}
        - {name: secure, hosts: [secure.test], https_redirect: true, routes: [{backend: app}]}
      backends:
        app: {servers: [{url: @app}]}
"#;

#[test]
fn given_a_redirect_route_then_308_to_the_target_plus_path_and_query() {
    let b = Backend::start("app");
    let ferry = Ferry::start_reverse(&[&b], REDIRECTS);
    let r = send(&ferry, &site_get("app.test", "/old/a/b?x=1&y=2"));
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("https://new.test/old/a/b?x=1&y=2")
    );
    assert!(b.requests().is_empty());
}

#[test]
fn given_a_redirect_with_a_status_then_that_status_is_used() {
    let b = Backend::start("app");
    let ferry = Ferry::start_reverse(&[&b], REDIRECTS);
    let r = send(&ferry, &site_get("app.test", "/moved/x?q"));
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://new.test/base/moved/x?q")
    );
}

#[test]
fn given_a_redirect_with_strip_prefix_then_the_path_after_the_prefix_is_kept() {
    let b = Backend::start("app");
    let ferry = Ferry::start_reverse(&[&b], REDIRECTS);
    let r = send(&ferry, &site_get("app.test", "/short/a/b?x=1"));
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://new.test/v2/a/b?x=1"));
}

#[test]
fn given_https_redirect_then_plain_requests_get_308_to_https() {
    let b = Backend::start("app");
    let ferry = Ferry::start_reverse(&[&b], REDIRECTS);
    let r = send(&ferry, &site_get("secure.test", "/p/q?x=1"));
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://secure.test/p/q?x=1"));
    assert!(b.requests().is_empty());
    // a site without it is served
    assert_eq!(server_for(&ferry, "app.test", "/p"), "app");
}

#[test]
fn given_pipelined_requests_for_two_sites_then_each_reaches_its_own_backend_in_order() {
    let (ferry, bs) = sites();
    let mut c = ferry.reverse_client();
    let mut burst = site_get("www.app.test", "/1");
    burst.extend(site_get("elsewhere.test", "/2"));
    burst.extend(site_get("www.app.test", "/3"));
    c.send(&burst);
    for (want, path) in [("exact", "/1"), ("any", "/2"), ("exact", "/3")] {
        let r = c.response();
        assert_eq!((r.status, r.served_by()), (200, Some(want)), "{path}");
        assert!(r.text().starts_with(&format!("GET {path} ")), "{path}");
    }
    assert_eq!(bs[0].requests().len(), 1);
    assert_eq!(bs[4].requests().len(), 2);
}

#[test]
fn given_a_keep_alive_client_when_ferry_answers_404_or_a_redirect_then_it_can_go_on() {
    // docs/DESIGN-NOTES.md 26: answers that are not errors keep the connection.
    let b = Backend::start("app");
    let ferry = Ferry::start_reverse(&[&b], REDIRECTS);
    let mut c = ferry.reverse_client();
    assert_eq!(c.roundtrip(&site_get("nowhere.test", "/")).status, 404);
    assert_eq!(c.roundtrip(&site_get("app.test", "/old/x")).status, 308);
    assert_eq!(server_for_on(&mut c, "app.test", "/p"), "app");
}
