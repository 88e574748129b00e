//! Tests of config parsing and validation.
use super::*;

fn errors(yaml: &str) -> String {
    parse(yaml, None).unwrap_err().to_string()
}

#[test]
fn base64_matches_rfc4648_vectors() {
    for (i, o) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(i.as_bytes()), o);
    }
}

#[test]
fn http_proxy_lb_example_is_accepted_with_its_meaning() {
    let text = include_str!("../../config/http-proxy-lb.example.yaml");
    let c = parse(text, None).unwrap();
    assert_eq!(c.listen, Some("127.0.0.1:8080".parse().unwrap()));
    assert_eq!(c.admin_listen, Some("127.0.0.1:9090".parse().unwrap()));
    assert_eq!(c.pools[0].mode, Mode::RoundRobin);
    assert_eq!(c.domain_policy.mode, PolicyMode::Off);
    assert_eq!(c.pools.len(), 1);
    assert_eq!(c.pools[0].members.len(), 3);
    assert_eq!(c.pools[0].retries, 3);
    assert_eq!(c.pools[0].health.interval, Duration::from_secs(30));
    assert!(
        matches!(&c.pools[0].health.probe, Probe::Through { url, .. } if url == DEFAULT_PROBE_URL)
    );
    let b = &c.pools[0].members[1];
    assert_eq!((b.weight, b.priority), (2, 20));
    assert_eq!(b.auth.as_deref(), Some("Basic YWxpY2U6czNjcjpldA=="));
    assert_eq!(b.display(), "http://alice:***@proxy-b.example.net:3128");
    assert_eq!(c.limits.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(c.limits.request_timeout, None);
}

#[test]
fn embedded_default_is_a_direct_proxy_on_loopback() {
    let c = Config::embedded();
    assert_eq!(c.listen, Some("127.0.0.1:8080".parse().unwrap()));
    assert_eq!(c.upstreams().count(), 0);
    // Direct because it says so: its empty pool would otherwise answer 502.
    assert!(c.policy_uses_pool("example.com"));
    assert_eq!(c.pools[0].on_all_down, OnAllDown::Direct);
    assert!(c.warnings().is_empty());
}

#[test]
fn a_pool_with_no_upstream_fails_closed_and_is_warned_about() {
    let c = parse("listen: 127.0.0.1:1\n", None).unwrap();
    assert_eq!(c.pools[0].on_all_down, OnAllDown::Reject);
    assert!(c.policy_uses_pool("example.com"));
    assert_eq!(
        c.warnings(),
        ["pool default has no upstream; set on_all_down: direct for a direct proxy; its requests get 502"]
    );
}

#[test]
fn status_shows_the_url_as_configured_with_only_an_in_url_password_masked() {
    let c = parse(
        "listen: 127.0.0.1:1\nupstream:\n  - {url: 'http://Proxy.example:3128/', username: bob, password: pw}\n  - {url: 'HTTP://carol:p%40ss%3Aw@10.0.0.1:8118'}\npools:\n  eu:\n    upstream: [{url: 'http://proxy.example:3128', username: bob, password: pw}]\n  us:\n    upstream: [{url: 'http://proxy.example:3128', username: eve, password: pw}]\n",
        None,
    )
    .unwrap();
    let (b, carol) = (&c.pools[0].members[0], &c.pools[0].members[1]);
    assert_eq!(b.config_url, "http://Proxy.example:3128/");
    assert_eq!(b.url, "http://proxy.example:3128");
    assert_eq!(
        b.display(),
        "http://bob:***@proxy.example:3128",
        "logs say which user"
    );
    assert_eq!(carol.config_url, "HTTP://carol:***@10.0.0.1:8118");
    assert_eq!(carol.username.as_deref(), Some("carol"));
    assert_eq!(
        carol.auth.as_deref(),
        Some(format!("Basic {}", base64(b"carol:p@ss:w")).as_str())
    );
    // Identity is URL + username: bob in both pools is one upstream, eve another.
    let (eu, us) = (&c.pools[1].members[0], &c.pools[2].members[0]);
    assert!(Arc::ptr_eq(&eu.state, &b.state));
    assert!(!Arc::ptr_eq(&us.state, &b.state));
    let shown: Vec<&str> = c
        .unique_upstreams()
        .iter()
        .map(|u| u.config_url.as_str())
        .collect();
    assert_eq!(
        shown,
        [
            "http://Proxy.example:3128/",
            "HTTP://carol:***@10.0.0.1:8118",
            "http://proxy.example:3128"
        ]
    );
}

#[test]
fn credentials_in_the_url_are_checked() {
    for (url, want) in [
        (
            "http://bob@a:1",
            "upstream[0].url: credentials in the URL are user:password@",
        ),
        ("http://bob:%zz@a:1", "upstream[0].url: bad %-escape"),
    ] {
        let e = errors(&format!(
            "listen: 127.0.0.1:1\nupstream: [{{url: '{url}'}}]\n"
        ));
        assert!(e.starts_with(want), "{url}: {e}");
    }
    assert!(errors(
        "listen: 127.0.0.1:1\nupstream: [{url: 'http://a:b@h:1', username: a, password: b}]\n"
    )
    .contains("both in the URL and in username/password"));
}

#[test]
fn errors_name_the_key_path() {
    assert_eq!(
        errors("listen: 127.0.0.1:1\nupstream:\n  - url: http://a:1\n  - url: http://b\n"),
        "upstream[1].url: port missing"
    );
    assert!(
        errors("listen: 127.0.0.1:1\nupstream:\n  - url: http://a:1\n    wieght: 2\n")
            .contains("upstream[0]: unknown field `wieght`")
    );
    assert_eq!(
        errors("listen: 127.0.0.1:1\nupstream:\n  - url: http://a:1\n    weight: 0\n"),
        "upstream[0].weight: 0 is out of range 1..=1000"
    );
    assert_eq!(errors("listen: nope\n"), "listen: \"nope\" is not an address (expected host:port, e.g. 127.0.0.1:8080 or [::1]:8080)");
    assert_eq!(
        errors("upstream: []\n"),
        "listen: required unless reverse is set (e.g. \"127.0.0.1:8080\")"
    );
    assert_eq!(
        errors("listen: 127.0.0.1:1\nhealth_check:\n  interval_secs: 0\n"),
        "health_check.interval_secs: must be at least 1"
    );
    assert!(errors("listen: 127.0.0.1:1\nbogus: 1\n").contains("unknown field `bogus`"));
    assert!(
        errors("listen: 127.0.0.1:1\nlimits:\n  max_conections: 1\n")
            .contains("limits: unknown field `max_conections`")
    );
    assert_eq!(
        errors("listen: 127.0.0.1:1\nupstream:\n  - url: https://a:1\n"),
        "upstream[0].url: \"https://a:1\": only http:// upstream proxies are supported"
    );
    assert_eq!(
        errors("listen: 127.0.0.1:1\nupstream:\n  - url: http://a:1\n    username: u\n"),
        "upstream[0].password: missing (username is set)"
    );
}

#[test]
fn pools_rules_and_health_overrides() {
    let c = parse(
        "listen: 127.0.0.1:1\nmode: priority\nhealth_check: {interval_secs: 7, fall: 2}\nupstream: [{url: 'http://a:1'}, {url: 'http://b:1'}]\npools:\n  eu:\n    mode: hash\n    hash_key: host\n    retries: 1\n    on_all_down: direct\n    health_check: {rise: 3}\n    upstream: [{url: 'http://a:1'}, {url: 'http://c:1'}]\nrules:\n  - {match: ['suffix:eu.example', 'port:8443'], via: eu}\n  - {match: ['cidr:192.168.0.0/16'], via: direct}\n  - {match: ['domain:ads.example'], via: reject}\n",
        None,
    )
    .unwrap();
    let (d, eu) = (&c.pools[0], &c.pools[1]);
    assert_eq!(
        (d.mode, d.retries, d.health.fall, d.health.rise),
        (Mode::Priority, 2, 2, 1)
    );
    assert_eq!(
        (
            eu.name.as_str(),
            eu.mode,
            eu.hash_key,
            eu.retries,
            eu.on_all_down
        ),
        ("eu", Mode::Hash, HashKey::Host, 1, OnAllDown::Direct)
    );
    assert_eq!(
        (eu.health.interval, eu.health.fall, eu.health.rise),
        (Duration::from_secs(7), 2, 3)
    );
    // the same URL in two pools is one upstream
    assert!(Arc::ptr_eq(&d.members[0].state, &eu.members[0].state));
    assert_eq!(c.rules.lookup("x.eu.example", None, 80), Some(Via::Pool(1)));
    assert_eq!(
        c.rules
            .lookup("192.168.1.1", "192.168.1.1".parse().ok(), 80),
        Some(Via::Direct)
    );
    assert_eq!(c.rules.lookup("ads.example", None, 443), Some(Via::Reject));
    assert_eq!(c.rules.lookup("other.example", None, 443), None);
}

#[test]
fn pool_and_rule_errors_name_their_key() {
    assert_eq!(
        errors("listen: 127.0.0.1:1\npools:\n  eu:\n    upstream: [{url: 'http://a'}]\n"),
        "pools.eu.upstream[0].url: port missing"
    );
    assert_eq!(
        errors("listen: 127.0.0.1:1\nrules:\n  - {match: ['x.example'], via: nowhere}\n"),
        "rules[0].via: \"nowhere\" is not direct, reject or a pool name"
    );
    assert_eq!(
        errors("listen: 127.0.0.1:1\nrules:\n  - {match: ['x.example', 'cidr:1.2.3.4/40'], via: direct}\n"),
        "rules[0].match[1]: prefix length \"40\" is not 0..=32"
    );
    assert_eq!(
        errors("listen: 127.0.0.1:1\nrules:\n  - {match: ['x.example'], via: default}\n"),
        "rules[0].via: the default pool has no upstreams"
    );
    assert_eq!(
        errors("listen: 127.0.0.1:1\nhealth_check: {url: 'https://x/'}\n"),
        "health_check.url: \"https://x/\": the probe URL must be http://"
    );
    assert_eq!(
        errors("listen: 127.0.0.1:1\nretries: 0\n"),
        "retries: 0 is out of range 1..=10"
    );
    assert_eq!(
        errors("listen: 127.0.0.1:1\npools:\n  default: {upstream: [{url: 'http://a:1'}]}\n"),
        "pools.default: this name is reserved (the top-level upstream list is the pool named default)"
    );
}

#[test]
fn domain_policy_routes_hosts() {
    let c = parse(
        "listen: 127.0.0.1:1\nupstream: [{url: 'http://u:1'}]\ndomain_policy:\n  mode: blacklist\n  domains: ['suffix:lan', 'domain:Exact.com']\n",
        None,
    )
    .unwrap();
    assert!(!c.policy_uses_pool("router.lan"));
    assert!(!c.policy_uses_pool("exact.com"));
    assert!(c.policy_uses_pool("sub.exact.com"));
    assert!(c.policy_uses_pool("example.org"));
}

#[test]
fn times_that_would_overflow_a_clock_are_refused() {
    let e = errors(
        "listen: \"127.0.0.1:1\"\nreload_interval_secs: 18446744073709551615\nlimits:\n  idle_timeout_secs: 31536001\nhealth_check:\n  timeout_secs: 99999999999\n",
    );
    for key in [
        "reload_interval_secs",
        "limits.idle_timeout_secs",
        "health_check.timeout_secs",
    ] {
        assert!(e.contains(key), "{key} not named in {e}");
    }
}

#[test]
fn site_and_route_names_are_metric_labels_so_they_must_be_told_apart() {
    let text = |site: &str, routes: &str| {
        format!("reverse:\n  listen: ['127.0.0.1:1']\n  sites:\n    - {{name: {site}, hosts: [a.test], routes: [{routes}]}}\n  backends:\n    web: {{servers: [{{url: 'http://127.0.0.1:2'}}]}}\n")
    };
    let e = errors(&text(
        "app",
        "{path: /a, name: x, backend: web}, {path: /b, name: x, backend: web}",
    ));
    assert!(
        e.contains("reverse.sites[0].routes[1].name: \"x\" names two routes of the site"),
        "{e}"
    );
    let e = errors(&text("'-'", "{path: /, backend: web}"));
    assert!(e.contains("reverse.sites[0].name: \"-\" stands for"), "{e}");
    let e = errors(&text("app", "{path: /, name: '-', backend: web}"));
    assert!(
        e.contains("reverse.sites[0].routes[0].name: \"-\" stands for"),
        "{e}"
    );
    let e = errors(&text("''", "{path: /, backend: web}"));
    assert!(
        e.contains("reverse.sites[0].name: a name cannot be empty"),
        "{e}"
    );
    // A route's name defaults to its path: two paths, two names.
    assert!(parse(
        &text("app", "{path: /, backend: web}, {path: /a, backend: web}"),
        None
    )
    .is_ok());
}
