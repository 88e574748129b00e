//! A reverse listener's request path around its parsers: a head parsed as a reverse listener
//! parses it, routed through a fixed set of sites, rendered for the server. Nothing may panic;
//! a routed head, once rewritten, must parse again with the same framing, one `Host`, the
//! routed target (already normalized: normalizing it again changes nothing), and forwarding
//! fields a client that is not trusted cannot have written.
#![no_main]

use ferry::buffer::Buf;
use ferry::config::{Config, HeaderOps};
use ferry::http::forwarded::{finish, request_head, Forwarding};
use ferry::http::request::{parse_in, MAX_HEADERS};
use ferry::route::reverse::decide;
use ferry::route::path::normalize_path;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const SITES: &str = r#"
reverse:
  listen: ["127.0.0.1:0"]
  trusted_proxies: ["10.0.0.0/8"]
  sites:
    - name: app
      hosts: ["app.test", "*.app.test", "[::1]"]
      headers: {request: {set: {X-Site: "app"}, remove: [Cookie]}}
      routes:
        - {path: "/", backend: a}
        - {path: "/api", backend: b, strip_prefix: true, methods: [GET, POST]}
        - {path: "/api/v2/x", backend: a, host: backend, max_body_bytes: 100}
        - {path: "/go", redirect: {to: "https://x.test/b"}, strip_prefix: true}
    - name: all
      hosts: ["*"]
      https_redirect: false
      routes: [{path: "/static", backend: b, host: "literal.test:81"}]
  backends:
    a: {servers: [{url: "http://127.0.0.1:1"}]}
    b: {servers: [{url: "http://[::1]:2"}]}
"#;

fn config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| ferry::config::parse(SITES, None).expect("the fuzz config is valid"))
}

fuzz_target!(|data: &[u8]| {
    let Some(end) = ferry::http::find_head_end(data, 0) else { return };
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Ok(Some(req)) = parse_in(&data[..end], &mut hs, true) else { return };
    let rev = config().reverse.as_ref().unwrap();
    let plan = match decide(rev, &req, Default::default()) {
        Ok(p) => p,
        Err(r) => {
            assert!((300..600).contains(&r.status), "odd status {}", r.status);
            return;
        }
    };
    if plan.target != "*" {
        let mut again = String::new();
        normalize_path(&plan.target, &mut again).expect("a routed target normalizes");
        assert_eq!(again, plan.target, "a routed target is not normal");
    }
    let trusted = data.len() % 2 == 0;
    let client = if trusted { "10.1.2.3" } else { "192.0.2.1" };
    let route = &rev.sites[plan.site].routes[plan.route];
    let edits: &HeaderOps = &route.headers.request;
    let f = Forwarding {
        target: &plan.target,
        client: client.parse().unwrap(),
        trusted,
        scheme: "http",
        host: req.host.unwrap_or(""),
        new_id: "generated",
        via: true,
        edits,
    };
    let mut out = Buf::with_capacity(256);
    request_head(&mut out, &req, &f, rev);
    finish(&mut out, "server.test:1");
    let mut hs2 = [httparse::EMPTY_HEADER; MAX_HEADERS + 16];
    let r2 = match parse_in(out.bytes(), &mut hs2, true) {
        Ok(Some(r)) => r,
        other => panic!("rewritten head does not parse: {other:?}"),
    };
    assert_eq!(r2.framing, req.framing, "framing changed by rewriting");
    let want = if plan.target == "*" { "" } else { plan.target.as_str() };
    assert_eq!(r2.target.path, want, "the server is not sent the routed target");
    let fields = |n: &str| r2.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(n)).count();
    assert_eq!(fields("host"), 1);
    assert_eq!(fields("x-real-ip"), 1);
    assert_eq!(fields("cookie"), 0, "a removed field went on");
    if !trusted {
        for (name, value) in [("x-forwarded-for", client), ("x-real-ip", client)] {
            let h = r2.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).unwrap();
            assert_eq!(h.value, value.as_bytes(), "{name} spoofed");
        }
        assert_eq!(fields("x-forwarded-for"), 1);
        assert_eq!(fields("forwarded"), 0);
    }
});
