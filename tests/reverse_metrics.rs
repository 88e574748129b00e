//! Black-box tests of the reverse role's observability (DESIGN §7.4): requests counted per
//! site, route and status class when they end (ferry's own answers included), the duration
//! histogram, the backends' servers in `/metrics` and `/status`, and `/readyz` following the
//! backends. The reverse listener is on 127.0.0.2 (the forward one the harness writes takes
//! 127.0.0.1:0, and one address cannot be both).

mod common;

use common::json::Json;
use common::raw::Raw;
use common::{prom, wait_until, Fake, Ferry, Wire};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

/// The reverse listener's address, from ferry's log.
fn reverse_addr(ferry: &Ferry) -> SocketAddr {
    let mut addr = None;
    wait_until("the reverse listening line", || {
        addr = ferry.logs.lock().unwrap().iter().find_map(|l| {
            l.split("reverse proxy listening on ")
                .nth(1)
                .and_then(|a| a.split_whitespace().next())
                .map(String::from)
        });
        addr.is_some()
    });
    addr.unwrap().parse().unwrap()
}

/// One request on a fresh connection; its final response.
fn ask(addr: SocketAddr, head: &str) -> common::wire::Response {
    Wire::connect(addr).roundtrip(head.as_bytes())
}

/// `/metrics`, parsed strictly.
fn metrics(ferry: &Ferry) -> Vec<(String, f64)> {
    prom::parse(&ferry.admin_get("GET", "/metrics", "").text())
}

/// The value of one series, written as ferry writes it.
fn value(ferry: &Ferry, series: &str) -> Option<f64> {
    metrics(ferry)
        .into_iter()
        .find_map(|(s, v)| (s == series).then_some(v))
}

/// `ferry_site_requests_total` for one site, route and class.
fn requests(site: &str, route: &str, code: &str) -> String {
    format!("ferry_site_requests_total{{site=\"{site}\",route=\"{route}\",code=\"{code}\"}}")
}

/// Waits until `series` is `n` (a request is counted as it ends, which may be a moment after
/// its last byte reached the client).
fn wait_for(ferry: &Ferry, series: &str, n: f64) {
    wait_until(&format!("{series} = {n}"), || {
        value(ferry, series) == Some(n)
    });
}

fn status(ferry: &Ferry) -> Json {
    let text = ferry.admin_get("GET", "/status", "").text();
    Json::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn named<'a>(list: &'a Json, name: &str) -> &'a Json {
    list.as_array()
        .iter()
        .find(|e| e.get("name").map(Json::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no {name} in {list:?}"))
}

const ADMIN: &str = "admin_listen: \"127.0.0.1:0\"\n";

#[test]
fn given_a_site_when_requests_end_then_each_counts_once_under_its_route_and_status_class() {
    let web = Fake::origin("web");
    // A server that sends a head promising 100 bytes, 10 of them, and hangs up.
    let cut = Raw::start(|c| {
        if c.read_request().is_some() {
            c.write_and_finish(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b");
        }
    });
    let ferry = Ferry::start(&format!(
        r#"{ADMIN}reverse:
  listen: ["127.0.0.2:0"]
  sites:
    - name: app
      hosts: ["app.test"]
      routes:
        - {{path: "/", name: root, backend: web}}
        - {{path: "/slow", name: slow, backend: web, strip_prefix: true}}
        - {{path: "/old", redirect: {{to: "http://new.test"}}}}
        - {{path: "/api", name: api, backend: web, methods: [GET]}}
        - {{path: "/cut", name: cut, backend: cut}}
    - name: static
      hosts: ["static.test"]
      routes: [{{path: "/s", backend: web}}]
  backends:
    web: {{servers: [{{url: "{}"}}]}}
    cut: {{servers: [{{url: "{}"}}]}}
"#,
        web.url(),
        cut.url()
    ));
    let addr = reverse_addr(&ferry);
    let get = |path: &str, host: &str| {
        ask(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        )
        .status
    };
    assert_eq!(get("/status/200", "app.test"), 200);
    assert_eq!(get("/status/201", "app.test"), 201);
    assert_eq!(get("/status/404", "app.test"), 404);
    assert_eq!(get("/status/503", "app.test"), 503);
    // ferry's own answers: a redirect, a 405, a site without the route, no site at all
    assert_eq!(get("/old/x", "app.test"), 308);
    let r = ask(
        addr,
        "POST /api HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    assert_eq!(get("/x", "static.test"), 404);
    assert_eq!(get("/", "nowhere.test"), 404);
    assert_eq!(get("/slow/sleep/60", "app.test"), 200);

    wait_for(&ferry, &requests("app", "root", "2xx"), 2.0);
    for (site, route, code, n) in [
        ("app", "root", "4xx", 1.0),
        ("app", "root", "5xx", 1.0),
        ("app", "root", "3xx", 0.0),
        ("app", "/old", "3xx", 1.0),
        ("app", "api", "4xx", 1.0),
        ("app", "slow", "2xx", 1.0),
        ("static", "-", "4xx", 1.0),
        ("static", "/s", "4xx", 0.0),
        ("-", "-", "4xx", 1.0),
        ("app", "-", "4xx", 0.0),
    ] {
        wait_for(&ferry, &requests(site, route, code), n);
    }
    // The slow route's one request took at least its server's 60 ms: not in the 50 ms bucket.
    let h = "ferry_site_request_duration_seconds";
    let slow = "site=\"app\",route=\"slow\"";
    wait_for(&ferry, &format!("{h}_count{{{slow}}}"), 1.0);
    assert_eq!(
        value(&ferry, &format!("{h}_bucket{{{slow},le=\"0.05\"}}")),
        Some(0.0)
    );
    assert_eq!(
        value(&ferry, &format!("{h}_bucket{{{slow},le=\"+Inf\"}}")),
        Some(1.0)
    );
    let sum = value(&ferry, &format!("{h}_sum{{{slow}}}")).unwrap();
    assert!((0.06..20.0).contains(&sum), "{sum}");
    assert_eq!(
        value(&ferry, &format!("{h}_count{{site=\"app\",route=\"root\"}}")),
        Some(4.0)
    );

    // A response cut off after its head counts under the status the client saw.
    let mut w = Wire::connect(addr);
    w.send(b"GET /cut HTTP/1.1\r\nHost: app.test\r\n\r\n");
    let head = String::from_utf8(w.read_head().unwrap()).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    w.read_to_end();
    wait_for(&ferry, &requests("app", "cut", "2xx"), 1.0);
    assert_eq!(value(&ferry, &requests("app", "cut", "5xx")), Some(0.0));

    // An upgrade counts as its 101 goes out, not when the tunnel ends hours later.
    let mut ws = Wire::connect(addr);
    ws.send(
        b"GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    let head = String::from_utf8(ws.read_head().unwrap()).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    wait_for(&ferry, &requests("app", "root", "1xx"), 1.0);
    ws.send(b"still open");
    assert_eq!(ws.read_exact_n(10), b"STILL OPEN");

    // The backend's server: every request that went to it, its 503 a failure (DESIGN §7.2).
    let server = format!("backend=\"web\",server=\"{}\"", web.url());
    assert_eq!(
        value(&ferry, &format!("ferry_backend_server_up{{{server}}}")),
        Some(1.0)
    );
    assert_eq!(
        value(
            &ferry,
            &format!("ferry_backend_server_requests_total{{{server}}}")
        ),
        Some(6.0)
    );
    assert_eq!(
        value(
            &ferry,
            &format!("ferry_backend_server_failures_total{{{server}}}")
        ),
        Some(1.0)
    );
    let latency = value(
        &ferry,
        &format!("ferry_backend_server_latency_seconds{{{server}}}"),
    );
    assert!(
        latency.is_some_and(|l| (0.0..20.0).contains(&l)),
        "{latency:?}"
    );
    // The websocket is still open: it holds the server.
    assert_eq!(
        value(&ferry, &format!("ferry_backend_server_active{{{server}}}")),
        Some(1.0)
    );

    // /status: the same numbers, beside http-proxy-lb's keys.
    let s = status(&ferry);
    assert!(s.get("requests_total").is_some() && s.get("upstreams").is_some());
    let app = named(s.get("sites").unwrap(), "app");
    assert_eq!(app.get("hosts").unwrap().as_array()[0].as_str(), "app.test");
    let root = named(app.get("routes").unwrap(), "root");
    assert_eq!(root.get("path").unwrap().as_str(), "/");
    assert_eq!(root.get("backend").unwrap().as_str(), "web");
    assert_eq!(root.get("requests").unwrap().as_f64(), 5.0);
    let codes = root.get("codes").unwrap();
    assert_eq!(
        ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|c| codes.get(c).unwrap().as_f64()),
        [1.0, 2.0, 0.0, 1.0, 1.0]
    );
    let old = named(app.get("routes").unwrap(), "/old");
    assert_eq!(old.get("redirect").unwrap().as_str(), "http://new.test");
    assert_eq!(old.get("requests").unwrap().as_f64(), 1.0);
    let stat = named(s.get("sites").unwrap(), "static");
    assert_eq!(
        stat.get("no_route")
            .unwrap()
            .get("requests")
            .unwrap()
            .as_f64(),
        1.0
    );
    assert_eq!(
        s.get("no_site").unwrap().get("requests").unwrap().as_f64(),
        1.0
    );
    let web_backend = named(s.get("backends").unwrap(), "web");
    assert_eq!(web_backend.get("mode").unwrap().as_str(), "round_robin");
    let srv = &web_backend.get("servers").unwrap().as_array()[0];
    assert_eq!(srv.get("url").unwrap().as_str(), web.url());
    assert!(srv.get("online").unwrap().as_bool());
    assert_eq!(srv.get("requests").unwrap().as_f64(), 6.0);
    assert_eq!(srv.get("failures").unwrap().as_f64(), 1.0);
    assert_eq!(srv.get("active").unwrap().as_f64(), 1.0);
    for k in ["latency_ms", "consecutive_failures", "last_failure"] {
        assert!(srv.get(k).is_some(), "{k}");
    }
    drop(ws);
}

#[test]
fn given_a_backend_with_one_server_when_its_probes_fail_then_up_is_0_and_readyz_names_it() {
    let web = Fake::origin("web");
    let api = Fake::origin("api");
    let ferry = Ferry::start(&format!(
        r#"{ADMIN}reverse:
  listen: ["127.0.0.2:0"]
  sites:
    - name: app
      hosts: ["app.test"]
      routes:
        - {{path: "/", name: root, backend: web}}
        - {{path: "/api", name: api, backend: api}}
  backends:
    web:
      servers: [{{url: "{}"}}]
      health_check: {{path: "/generate_204", interval_secs: 1, timeout_secs: 1, fall: 1, rise: 1}}
    api: {{servers: [{{url: "{}"}}]}}
"#,
        web.url(),
        api.url()
    ));
    let addr = reverse_addr(&ferry);
    let up = format!(
        "ferry_backend_server_up{{backend=\"web\",server=\"{}\"}}",
        web.url()
    );
    let r = ferry.admin_get("GET", "/readyz", "");
    assert_eq!(r.status, 200, "{}", r.text());

    web.knobs.probe_status.store(503, Ordering::SeqCst);
    wait_for(&ferry, &up, 0.0);
    let r = ferry.admin_get("GET", "/readyz", "");
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            503,
            r#"{"ready":false,"draining":false,"pools_down":[],"backends_down":["web"]}"#
        )
    );
    // ferry answers the route itself (503) and counts it there; the other backend serves.
    let r = ask(addr, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
    assert_eq!(r.status, 503);
    wait_for(&ferry, &requests("app", "root", "5xx"), 1.0);
    let r = ask(
        addr,
        "GET /api/status/200 HTTP/1.1\r\nHost: app.test\r\n\r\n",
    );
    assert_eq!(r.served_by(), Some("api"));
    let s = status(&ferry);
    let web_backend = named(s.get("backends").unwrap(), "web");
    assert_eq!(web_backend.get("online").unwrap().as_f64(), 0.0);
    let srv = &web_backend.get("servers").unwrap().as_array()[0];
    assert!(!srv.get("online").unwrap().as_bool());
    assert!(
        !srv.get("last_failure").unwrap().as_str().is_empty(),
        "the failed probe says why"
    );

    web.knobs.probe_status.store(0, Ordering::SeqCst);
    wait_for(&ferry, &up, 1.0);
    let r = ferry.admin_get("GET", "/readyz", "");
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn given_counts_when_the_config_is_reloaded_then_routes_keep_theirs_by_name() {
    let web = Fake::origin("web");
    let config = |extra: &str| {
        format!(
            r#"{ADMIN}reverse:
  listen: ["127.0.0.2:0"]
  sites:
    - name: app
      hosts: ["app.test"]
      routes:
        - {{path: "/", name: root, backend: web}}
{extra}  backends:
    web: {{servers: [{{url: "{}"}}]}}
"#,
            web.url()
        )
    };
    let ferry = Ferry::start(&config(""));
    let addr = reverse_addr(&ferry);
    for _ in 0..2 {
        let r = ask(addr, "GET /status/200 HTTP/1.1\r\nHost: app.test\r\n\r\n");
        assert_eq!(r.status, 200);
    }
    wait_for(&ferry, &requests("app", "root", "2xx"), 2.0);
    assert!(ferry.reload(&config(
        "        - {path: \"/new\", name: new, backend: web}\n"
    )));
    // Same site and route name: the counter goes on (Prometheus sees no reset).
    assert_eq!(value(&ferry, &requests("app", "root", "2xx")), Some(2.0));
    assert_eq!(value(&ferry, &requests("app", "new", "2xx")), Some(0.0));
    let r = ask(
        addr,
        "GET /new/status/200 HTTP/1.1\r\nHost: app.test\r\n\r\n",
    );
    assert_eq!(r.status, 404, "the fake has no /new/status/200");
    wait_for(&ferry, &requests("app", "new", "4xx"), 1.0);
    assert_eq!(value(&ferry, &requests("app", "root", "2xx")), Some(2.0));
}
