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
    assert_eq!(r.sites[0].routes.len(), 2);
    let api = &r.backends[0];
    assert_eq!((api.name.as_str(), api.pool.members.len()), ("api", 2));
    assert_eq!(api.pool.health.expect, (200, 399));
    assert_eq!((api.pool.health.rise, api.pool.health.fall), (2, 3));
    assert_eq!(api.max_idle, 32);
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
            site("[{backend: b}]", "{b: {servers: [{url: \"https://127.0.0.1:1\"}]}}"),
            "reverse.backends.b.servers[0].url: https:// servers need a ferry built with the `tls` feature",
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
            format!("{BASE}  tls_listen: [\"127.0.0.1:0\"]\n  sites: []\n"),
            "reverse.tls_listen: TLS listeners need",
        ),
    ];
    for (yaml, want) in cases {
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
