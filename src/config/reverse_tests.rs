//! The reverse role's config: the documented example, and an error with its key path for
//! each mistake the issue names.

use super::*;

/// `reverse:` and the lines after it in ferry.example.yaml, uncommented.
fn documented_block() -> String {
    let text = include_str!("../../config/ferry.example.yaml");
    let start = text
        .find("# reverse:")
        .expect("the example documents reverse:");
    text[start..]
        .lines()
        .map(|l| {
            l.strip_prefix("# ")
                .unwrap_or(l.strip_prefix('#').unwrap_or(l))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn errors(yaml: &str) -> Vec<String> {
    match parse(yaml, None) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const BASE: &str = "reverse:\n  listen: [\"127.0.0.1:0\"]\n";

#[test]
fn the_documented_reverse_block_is_valid_and_means_what_it_says() {
    let c = parse(&documented_block(), None).unwrap();
    assert!(c.listen.is_none());
    let r = c.reverse.as_ref().unwrap();
    assert_eq!(r.sites[0].name, "app");
    assert_eq!(r.sites[0].routes.len(), 3);
    assert!(r.sites[0].routes[2].public);
    match &r.sites[0].auth {
        Some(SiteAuth::Forward(f)) => {
            assert_eq!(f.url, "http://127.0.0.1:9091/api/verify");
            assert_eq!(f.copy_headers, ["Remote-User", "Remote-Groups"]);
        }
        other => panic!("the example's site auth: {other:?}"),
    }
    let api = &r.backends[0];
    assert_eq!((api.name.as_str(), api.pool.members.len()), ("api", 2));
    assert_eq!(api.pool.health.expect, (200, 399));
    assert_eq!((api.pool.health.rise, api.pool.health.fall), (2, 3));
    assert_eq!(api.max_idle, 32);
    assert_eq!(api.pool.retries, 2);
    assert!(api.retries.on.has(RetryOn::CONNECT_FAILURE) && api.retries.on.has(RetryOn::RESET));
    assert!(!api.retries.on.has(RetryOn::S503));
    assert_eq!(
        api.pool.breaker,
        Some(Breaker {
            failures: 5,
            open: Duration::from_secs(10),
            half_open: 1
        })
    );
    assert_eq!(api.pool.passive_fall(), 5);
    let q = &api.queue;
    assert_eq!(
        (q.max_active, q.max_queued, q.timeout.as_secs()),
        (64, 128, 10)
    );
    assert_eq!(q.state.limits(), (64, 128));
    assert_eq!(r.hosts.lookup("x.app.example.com"), Some(0));
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}

#[test]
fn the_small_example_is_valid() {
    let c = parse(include_str!("../../config/reverse.example.yaml"), None).unwrap();
    let r = c.reverse.unwrap();
    assert_eq!((r.sites.len(), r.backends.len()), (2, 3));
    assert!(r.sites[0]
        .routes
        .iter()
        .any(|x| matches!(x.action, RouteAction::Redirect { .. })));
}

#[test]
fn one_role_is_required_and_both_may_be_given() {
    assert!(errors("workers: 1\n")[0].starts_with("listen: required unless reverse"));
    let both = format!(
        "listen: \"127.0.0.1:0\"\non_all_down: direct\n{BASE}  sites: [{{hosts: [\"*\"], routes: [{{backend: b}}]}}]\n  backends: {{b: {{servers: [{{url: \"http://127.0.0.1:1\"}}]}}}}\n"
    );
    let c = parse(&both, None).unwrap();
    assert!(c.listen.is_some() && c.reverse.is_some());
    let same =
        "listen: \"127.0.0.1:8080\"\nreverse:\n  listen: [\"127.0.0.1:8080\"]\n  sites: []\n";
    assert!(errors(same)
        .iter()
        .any(|e| e.starts_with("reverse.listen: 127.0.0.1:8080 is also the forward")));
}

#[test]
fn each_mistake_names_its_key() {
    let site = |routes: &str, backends: &str| {
        format!("{BASE}  sites:\n    - hosts: [\"a.test\"]\n      routes: {routes}\n  backends: {backends}\n")
    };
    let ok_backend = "{b: {servers: [{url: \"http://127.0.0.1:1\"}]}}";
    let cases = [
        (
            site("[{backend: nope}]", ok_backend),
            "reverse.sites[0].routes[0].backend: \"nope\" is not a name in reverse.backends",
        ),
        (
            site("[{backend: b}]", "{b: {servers: [{url: \"http://127.0.0.1\"}]}}"),
            "reverse.backends.b.servers[0].url: \"http://127.0.0.1\" needs a host and a port",
        ),
        (
            site("[{backend: b, redirect: {to: \"http://x\"}}]", ok_backend),
            "reverse.sites[0].routes[0]: a route has a backend or a redirect, not both",
        ),
        (
            site("[{backend: b, headers: {request: {set: {Content-Length: \"1\"}}}}]", ok_backend),
            "reverse.sites[0].routes[0].headers.request.set.Content-Length: Content-Length is set by ferry itself",
        ),
        (
            site("[{backend: b, host: \"a b\"}]", ok_backend),
            "reverse.sites[0].routes[0].host: \"a b\" is not keep, backend or a host[:port]",
        ),
        (
            site("[{backend: b}]", "{b: {servers: [{url: \"http://127.0.0.1:1\"}], hash_key: \"header:\"}}"),
            "reverse.backends.b.hash_key:",
        ),
        (
            site("[{backend: b}]", "{b: {servers: [{url: \"http://127.0.0.1:1\"}], health_check: {expect_status: \"399-200\"}}}"),
            "reverse.backends.b.health_check.expect_status:",
        ),
        (
            site("[{backend: b}]", "{b: {servers: [{url: \"http://127.0.0.1:1\"}], retries: {on: [connect_failure, \"500\"]}}}"),
            "reverse.backends.b.retries.on[1]: \"500\" is not connect_failure, reset, timeout, 502, 503 or 504",
        ),
        (
            site("[{backend: b}]", "{b: {servers: [{url: \"http://127.0.0.1:1\"}], retries: {backoff_ms: 50, backoff_max_ms: 10}}}"),
            "reverse.backends.b.retries.backoff_max_ms: 10 must be at least backoff_ms (50)",
        ),
        (
            site("[{backend: b}]", "{b: {servers: [{url: \"http://127.0.0.1:1\"}], circuit_breaker: {failures: 0}}}"),
            "reverse.backends.b.circuit_breaker.failures: 0 is out of range 1..=100",
        ),
        (
            site("[{backend: b}]", "{b: {servers: [{url: \"http://127.0.0.1:1\"}], queue: {max_queued: 5}}}"),
            "reverse.backends.b.queue.max_queued: needs max_active",
        ),
        (
            site("[{backend: b}]", "{b: {servers: [{url: \"http://127.0.0.1:1\"}], queue: {max_active: 1, timeout_secs: 0}}}"),
            "reverse.backends.b.queue.timeout_secs: 0 is out of range",
        ),
        (
            site("[{backend: b}]", "{b: {servers: [{url: \"http://127.0.0.1:1\"}], queue: {max_active: 1, max_wait: 3}}}"),
            "reverse.backends.b.queue: unknown field `max_wait`",
        ),
        (
            format!("{BASE}  proxy_protocol: true\n  sites: []\n"),
            "reverse.proxy_protocol: needs trusted_proxies",
        ),
        (
            site("[{backend: b}]", "{b: {servers: [{url: \"http://127.0.0.1:1\", tls_verify: false}]}}"),
            "reverse.backends.b.servers[0].tls_verify: applies to https:// servers only",
        ),
    ];
    // What TLS keys mean depends on the feature: errors that name it without, checks with.
    #[cfg(not(feature = "tls"))]
    let tls_cases = [
        (
            site("[{backend: b}]", "{b: {servers: [{url: \"https://127.0.0.1:1\"}]}}"),
            "reverse.backends.b.servers[0].url: https:// servers need a ferry built with the `tls` feature",
        ),
        (
            format!("{BASE}  tls_listen: [\"127.0.0.1:0\"]\n  sites: []\n"),
            "reverse.tls_listen: TLS listeners need",
        ),
    ];
    #[cfg(feature = "tls")]
    let tls_cases = [
        (
            format!("{BASE}  tls_listen: [\"127.0.0.1:0\"]\n  sites: []\n"),
            "tls: a TLS listener needs certificates",
        ),
        (
            format!(
                "tls: {{ca_file: /nonexistent/ca.pem}}\n{}",
                site(
                    "[{backend: b}]",
                    "{b: {servers: [{url: \"https://127.0.0.1:1\"}]}}"
                )
            ),
            "tls.ca_file: /nonexistent/ca.pem:",
        ),
    ];
    for (yaml, want) in cases.into_iter().chain(tls_cases) {
        let e = errors(&yaml);
        assert!(
            e.iter().any(|e| e.starts_with(want)),
            "want {want:?}, got {e:?}\n{yaml}"
        );
    }
}

#[test]
fn host_mistakes_name_the_host() {
    let two = |h1: &str, h2: &str| {
        format!("{BASE}  sites:\n    - {{hosts: [\"{h1}\"], routes: [{{backend: b}}]}}\n    - {{hosts: [\"{h2}\"], routes: [{{backend: b}}]}}\n  backends: {{b: {{servers: [{{url: \"http://127.0.0.1:1\"}}]}}}}\n")
    };
    let e = errors(&two("a.test", "A.test."));
    assert!(
        e.iter()
            .any(|e| e.starts_with("reverse.sites[1].hosts[0]:")),
        "{e:?}"
    );
    let e = errors(&two("a.*.test", "b.test"));
    assert!(
        e.iter()
            .any(|e| e.starts_with("reverse.sites[0].hosts[0]:")),
        "{e:?}"
    );
}

#[test]
fn without_a_circuit_breaker_block_the_circuit_opens_at_fall() {
    let yaml = format!("{BASE}  sites: [{{hosts: [\"*\"], routes: [{{backend: a}}]}}]\n  backends:\n    a: {{servers: [{{url: \"http://127.0.0.1:1\"}}], health_check: {{fall: 2}}, retries: {{attempts: 0}}}}\n");
    let c = parse(&yaml, None).unwrap();
    let a = &c.reverse.as_ref().unwrap().backends[0];
    assert_eq!(a.pool.passive_fall(), 2);
    assert_eq!(a.pool.breaker.unwrap().open, Duration::from_secs(10));
    assert_eq!(a.pool.retries, 1);
}

#[test]
fn server_state_is_one_per_backend_and_url() {
    let yaml = format!("{BASE}  sites: [{{hosts: [\"*\"], routes: [{{backend: a}}]}}]\n  backends:\n    a: {{servers: [{{url: \"http://127.0.0.1:1\"}}]}}\n    b: {{servers: [{{url: \"http://127.0.0.1:1\"}}]}}\n");
    let c = parse(&yaml, None).unwrap();
    let r = c.reverse.unwrap();
    let (a, b) = (
        &r.backends[0].pool.members[0],
        &r.backends[1].pool.members[0],
    );
    assert!(!Arc::ptr_eq(&a.state, &b.state));
    assert_eq!(a.state.name, "http://127.0.0.1:1 (backend a)");
}

/// A config with one site whose `auth` is `auth` (a YAML flow mapping) and whose routes are
/// `routes`.
fn with_auth(auth: &str, routes: &str) -> String {
    format!("{BASE}  sites:\n    - name: shop\n      hosts: [\"a.test\"]\n      auth: {auth}\n      routes: {routes}\n  backends: {{b: {{servers: [{{url: \"http://127.0.0.1:1\"}}]}}}}\n")
}

#[test]
fn site_auth_is_validated_into_what_it_means() {
    let yaml = with_auth(
        "{basic: [{username: alice, password: \"open sesame\"}, {username: bob, password: \"x:y\"}]}",
        "[{backend: b}, {path: /pub, backend: b, auth: none}]",
    );
    let c = parse(&yaml, None).unwrap();
    let site = &c.reverse.as_ref().unwrap().sites[0];
    match &site.auth {
        Some(SiteAuth::Basic {
            credentials,
            challenge,
        }) => {
            assert_eq!(
                credentials,
                &[base64(b"alice:open sesame"), base64(b"bob:x:y")]
            );
            assert_eq!(challenge, "Basic realm=\"shop\"");
        }
        other => panic!("{other:?}"),
    }
    assert!(!site.routes[0].public && site.routes[1].public);
    // Debug output never shows a secret.
    assert!(!format!("{:?}", site.auth).contains(&base64(b"alice:open sesame")));

    let c = parse(
        &with_auth("{bearer: [\"t0k3n-_.~+/==\"]}", "[{backend: b}]"),
        None,
    )
    .unwrap();
    match &c.reverse.as_ref().unwrap().sites[0].auth {
        Some(SiteAuth::Bearer { tokens, challenge }) => {
            assert_eq!(tokens, &["t0k3n-_.~+/==".to_string()]);
            assert_eq!(challenge, "Bearer realm=\"shop\"");
        }
        other => panic!("{other:?}"),
    }

    let yaml = with_auth(
        "{forward: {url: \"http://127.0.0.1:9091/verify?rd=1\", copy_headers: [Remote-User]}}",
        "[{backend: b}]",
    );
    let c = parse(&yaml, None).unwrap();
    match &c.reverse.as_ref().unwrap().sites[0].auth {
        Some(SiteAuth::Forward(f)) => {
            assert_eq!((f.host.as_str(), f.port), ("127.0.0.1", 9091));
            assert_eq!(f.authority, "127.0.0.1:9091");
            assert_eq!(f.path, "/verify?rd=1");
            assert_eq!(f.timeout, Duration::from_secs(5));
            assert_eq!(f.copy_headers, ["Remote-User"]);
            // A key no server or upstream state name can have: those start with a URL.
            assert_eq!(f.pool_key, "auth http://127.0.0.1:9091");
        }
        other => panic!("{other:?}"),
    }
    // No path: "/"; a numeric IPv4 form is the address it denotes, never a name to resolve.
    let yaml = with_auth("{forward: {url: \"http://[::1]:80\"}}", "[{backend: b}]");
    let c = parse(&yaml, None).unwrap();
    match &c.reverse.as_ref().unwrap().sites[0].auth {
        Some(SiteAuth::Forward(f)) => {
            assert_eq!((f.host.as_str(), f.path.as_str()), ("::1", "/"));
            assert_eq!(f.authority, "[::1]:80");
        }
        other => panic!("{other:?}"),
    }
    let yaml = with_auth("{forward: {url: \"http://127.1:80/a\"}}", "[{backend: b}]");
    match &parse(&yaml, None).unwrap().reverse.as_ref().unwrap().sites[0].auth {
        Some(SiteAuth::Forward(f)) => assert_eq!(f.host, "127.0.0.1"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn site_auth_mistakes_name_their_keys() {
    let at = "reverse.sites[0]";
    let cases = [
        (with_auth("{}", "[{backend: b}]"), format!("{at}.auth: exactly one of basic, bearer or forward")),
        (
            with_auth("{basic: [], bearer: [t]}", "[{backend: b}]"),
            format!("{at}.auth: exactly one of"),
        ),
        (with_auth("{basic: []}", "[{backend: b}]"), format!("{at}.auth.basic: at least one")),
        (
            with_auth("{basic: [{username: \"a:b\", password: p}]}", "[{backend: b}]"),
            format!("{at}.auth.basic[0].username: must be non-empty, without ':'"),
        ),
        (
            with_auth("{basic: [{username: a, password: p}, {username: a, password: q}]}", "[{backend: b}]"),
            format!("{at}.auth.basic[1].username: \"a\" is listed twice"),
        ),
        (with_auth("{bearer: []}", "[{backend: b}]"), format!("{at}.auth.bearer: at least one token")),
        (
            with_auth("{bearer: [ok, \"has space\"]}", "[{backend: b}]"),
            format!("{at}.auth.bearer[1]: a bearer token is"),
        ),
        (
            with_auth("{forward: {url: \"https://127.0.0.1:1/v\"}}", "[{backend: b}]"),
            format!("{at}.auth.forward.url: an https:// auth service needs a ferry built with the `tls` feature"),
        ),
        (
            with_auth("{forward: {url: \"ftp://127.0.0.1:1/v\"}}", "[{backend: b}]"),
            format!("{at}.auth.forward.url: \"ftp://127.0.0.1:1/v\" must be http://host:port/path"),
        ),
        (
            with_auth("{forward: {url: \"http://127.0.0.1/v\"}}", "[{backend: b}]"),
            format!("{at}.auth.forward.url: \"http://127.0.0.1/v\" needs a host and a port"),
        ),
        (
            with_auth("{forward: {url: \"http://u:p@127.0.0.1:1/v\"}}", "[{backend: b}]"),
            format!("{at}.auth.forward.url: the auth service's URL cannot hold credentials"),
        ),
        (
            with_auth("{forward: {url: \"http://127.0.0.1:1/a b\"}}", "[{backend: b}]"),
            format!("{at}.auth.forward.url: \"http://127.0.0.1:1/a b\": the path may not hold spaces"),
        ),
        (
            with_auth("{forward: {url: \"http://127.0.0.1:1/\", timeout_secs: 0}}", "[{backend: b}]"),
            format!("{at}.auth.forward.timeout_secs: 0 is out of range"),
        ),
        (
            with_auth("{forward: {url: \"http://127.0.0.1:1/\", copy_headers: [\"Remote User\"]}}", "[{backend: b}]"),
            format!("{at}.auth.forward.copy_headers[0]: \"Remote User\" is not a header name"),
        ),
        (
            with_auth("{forward: {url: \"http://127.0.0.1:1/\", copy_headers: [Remote-User, transfer-encoding]}}", "[{backend: b}]"),
            format!("{at}.auth.forward.copy_headers[1]: transfer-encoding describes the connection or the message's framing"),
        ),
        (
            with_auth("{forward: {url: \"http://127.0.0.1:1/\", copy_headers: [Connection]}}", "[{backend: b}]"),
            format!("{at}.auth.forward.copy_headers[0]: Connection describes the connection"),
        ),
        (
            with_auth("{forward: {url: \"http://127.0.0.1:1/\", copy_headers: [Proxy-Authorization]}}", "[{backend: b}]"),
            format!("{at}.auth.forward.copy_headers[0]: Proxy-Authorization describes the connection"),
        ),
        (
            with_auth("{forward: {url: \"http://127.0.0.1:1/\", copy_headers: [X-Forwarded-For]}}", "[{backend: b}]"),
            format!("{at}.auth.forward.copy_headers[0]: X-Forwarded-For is set by ferry itself"),
        ),
        (
            with_auth("{forward: {url: \"http://127.0.0.1:1/\", copy_headers: [Remote-User, remote-user]}}", "[{backend: b}]"),
            format!("{at}.auth.forward.copy_headers[1]: remote-user is listed twice"),
        ),
        (
            with_auth("{bearer: [t]}", "[{backend: b, auth: public}]"),
            format!("{at}.routes[0].auth: \"public\": a route's auth can only be none"),
        ),
    ];
    for (yaml, want) in cases {
        let e = errors(&yaml);
        assert!(
            e.iter().any(|e| e.starts_with(&want)),
            "want {want:?}, got {e:?}\n{yaml}"
        );
    }
    // Secrets are not repeated in messages.
    let e = errors(&with_auth("{bearer: [\"sec ret\"]}", "[{backend: b}]"));
    assert!(!e.iter().any(|e| e.contains("sec ret")), "{e:?}");
}
