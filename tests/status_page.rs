//! Black-box tests of the live stats (`/api/v1/stats`, `/api/v1/stats/{site}`) and of the
//! status page (`GET /` on the admin server), DESIGN §9: figures that move with traffic, the
//! page naming every site, backend, server and upstream with its state, the admin token
//! (Bearer or, for a browser, Basic), and the page as a real browser renders it.
//!
//! The browser test runs headless Chromium when it is installed (`chromium` or
//! `chromium-browser` on the PATH, or `FERRY_CHROMIUM`); without it the test says so and
//! passes, unless `FERRY_REQUIRE_CHROMIUM=1` (as `.ci/run` sets) makes that a failure. The
//! browser is kept on loopback: every name it would resolve fails, and anything not on
//! loopback would go to a proxy on a dead loopback port. With `FERRY_STATUS_SCREENSHOT=FILE`
//! it also saves a screenshot of the page there (how `docs/status-page.png` was made).

mod common;

use common::backend::Backend;
use common::json::Json;
use common::{scratch_dir, wait_until, Fake, Ferry, Wire};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "s3cret";

/// Two sites over two backends (one with a server its health check keeps offline), and a
/// forward pool of one upstream proxy.
struct Setup {
    ferry: Ferry,
    up: Fake,
    web1: Backend,
    api1: Backend,
    api2: Backend,
}

impl Setup {
    fn start(token: bool) -> Setup {
        let (web1, api1, api2) = (
            Backend::start("web1"),
            Backend::start("api1"),
            Backend::start("api2"),
        );
        api2.set_health(503);
        let up = Fake::proxy("up1", None);
        let token = if token {
            format!("admin: {{token: {TOKEN}}}")
        } else {
            String::new()
        };
        let yaml = format!(
            r#"
            listen: "127.0.0.1:0"
            admin_listen: "127.0.0.1:0"
            {token}
            upstream: [{{url: "{}"}}]
            reverse:
              listen: ["127.0.0.2:0"]
              sites:
                - name: shop
                  hosts: ["shop.test"]
                  routes:
                    - {{path: "/", backend: web}}
                    - {{path: "/api", name: api, backend: api}}
                - name: blog
                  hosts: ["blog.test", "www.blog.test"]
                  routes: [{{path: "/", backend: web}}]
              backends:
                web:
                  servers: [{{url: "@web1"}}]
                api:
                  servers: [{{url: "@api1"}}, {{url: "@api2"}}]
                  health_check: {{path: /healthz, interval_secs: 1, timeout_secs: 1, fall: 1, rise: 1}}
                  queue: {{max_active: 8, max_queued: 16}}
            "#,
            up.url()
        );
        let ferry = Ferry::start_reverse(&[&web1, &api1, &api2], &yaml);
        Setup {
            ferry,
            up,
            web1,
            api1,
            api2,
        }
    }

    /// `n` requests to `host`, each on a fresh connection; every `fail_every`th one answered
    /// 500 by the backend. Returns when all were answered.
    fn traffic(&self, host: &str, path: &str, n: usize, fail_every: usize) {
        for i in 1..=n {
            let fake = if fail_every > 0 && i % fail_every == 0 {
                "X-Fake: status=500\r\n"
            } else {
                ""
            };
            let r = Wire::connect(self.ferry.reverse[0])
                .roundtrip(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{fake}\r\n").as_bytes());
            assert_eq!(r.status, if fake.is_empty() { 200 } else { 500 });
        }
    }

    /// One admin request with `auth` as the `Authorization` value (or none).
    fn admin(&self, method: &str, path: &str, auth: Option<&str>) -> common::wire::Response {
        let extra = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        self.ferry.admin_get(method, path, &extra)
    }

    fn stats(&self, path: &str) -> Json {
        let r = self.admin("GET", path, None);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        Json::parse(&r.text()).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
    }

    /// Waits until the admin server says `api2` is offline (its probe fails).
    fn wait_for_api2_offline(&self, auth: Option<&str>) {
        wait_until("api2 offline on the page", || {
            let page = self.admin("GET", "/", auth).text();
            entry(&page, &self.api2.url()).contains("offline")
        });
    }
}

/// The `<li>` of the page that names `url`.
fn entry<'a>(page: &'a str, url: &str) -> &'a str {
    let at = page
        .find(&format!("{url} "))
        .unwrap_or_else(|| panic!("{url} not on the page:\n{page}"));
    let start = page[..at].rfind("<li").unwrap_or(0);
    let end = page[at..].find("</li>").map_or(page.len(), |e| at + e);
    &page[start..end]
}

/// Checks that `page` (as served, or as a browser's DOM) names every site, backend, server
/// and upstream, each with its state in words.
fn check_page(s: &Setup, page: &str) {
    for site in ["shop", "blog"] {
        assert!(
            page.contains(&format!("<h3>{site} <small>")),
            "site {site}:\n{page}"
        );
    }
    assert!(page.contains("blog.test, www.blog.test"), "{page}");
    for backend in ["web", "api"] {
        assert!(
            page.contains(&format!("<h3>{backend} <small>")),
            "backend {backend}:\n{page}"
        );
    }
    assert!(page.contains("1/2 online"), "{page}");
    assert!(page.contains("queue 0/16"), "{page}");
    for (server, state, circuit) in [
        (&s.web1, "online", "circuit closed"),
        (&s.api1, "online", "circuit closed"),
        (&s.api2, "offline", "circuit open"),
    ] {
        let li = entry(page, &server.url());
        assert!(
            li.contains(&format!(">{state}<")),
            "{} {state}: {li}",
            server.url()
        );
        assert!(li.contains(circuit), "{} {circuit}: {li}", server.url());
    }
    assert!(page.contains("<h3>default <small>"), "{page}");
    let li = entry(page, &s.up.url());
    assert!(li.contains(">online<"), "{li}");
}

fn number(j: &Json, path: &[&str]) -> f64 {
    let mut v = j;
    for k in path {
        v = v.get(k).unwrap_or_else(|| panic!("no {k} in {j:?}"));
    }
    v.as_f64()
}

#[test]
fn given_traffic_then_the_stats_move_and_the_page_names_every_part_with_its_state() {
    let s = Setup::start(false);
    s.wait_for_api2_offline(None);
    // 20 requests to shop (every tenth a 500), 5 to blog, 3 through the forward pool.
    s.traffic("shop.test", "/x", 20, 10);
    s.traffic("blog.test", "/", 5, 0);
    for _ in 0..3 {
        let r = s
            .ferry
            .client()
            .roundtrip(b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n");
        assert_eq!(r.served_by(), Some("up1"));
    }

    // A request counts when it ends and the ring takes a snapshot a second: wait for both.
    let mut shop = Json::Null;
    wait_until("shop's 20 requests in the stats", || {
        shop = s.stats("/api/v1/stats/shop");
        shop.get("last_60s") != Some(&Json::Null)
            && number(&shop, &["last_60s", "requests"]) == 20.0
    });
    assert_eq!(shop.get("site").map(Json::as_str), Some("shop"));
    assert_eq!(number(&shop, &["last_60s", "errors"]), 2.0, "the two 500s");
    // Rates, loosely: requests over the span the window really covers.
    let short = shop.get("last_10s").unwrap();
    let (n, secs, rate) = (
        number(short, &["requests"]),
        number(short, &["secs"]),
        number(short, &["requests_per_sec"]),
    );
    assert!(secs > 0.0 && secs <= 10.5, "{short:?}");
    // The rate is written with two decimals, cut, not rounded.
    assert!(n > 0.0 && n <= 20.0, "{short:?}");
    assert!(
        (-1e-9..0.011 * secs).contains(&(n - rate * secs)),
        "{short:?}"
    );
    let lat = shop.get("last_60s").unwrap().get("latency_ms").unwrap();
    let (p50, p90, p99) = (
        number(lat, &["p50"]),
        number(lat, &["p90"]),
        number(lat, &["p99"]),
    );
    assert!(
        0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= 10_000.0,
        "{lat:?}"
    );

    let all = s.stats("/api/v1/stats");
    let sites = all.get("sites").unwrap().as_array();
    let names: Vec<&str> = sites
        .iter()
        .map(|x| x.get("name").unwrap().as_str())
        .collect();
    assert_eq!(names, ["shop", "blog"]);
    assert_eq!(number(&sites[1], &["last_60s", "requests"]), 5.0);
    assert_eq!(number(&all, &["reverse", "last_60s", "requests"]), 25.0);
    assert!(
        number(&all, &["total", "last_60s", "requests"]) >= 28.0,
        "{all:?}"
    );

    // The figures follow new traffic.
    s.traffic("blog.test", "/", 10, 0);
    wait_until("blog's 15 requests", || {
        number(&s.stats("/api/v1/stats/blog"), &["last_60s", "requests"]) == 15.0
    });

    for unknown in ["/api/v1/stats/nope", "/api/v1/stats/", "/api/v1/stats/sh%6"] {
        assert_eq!(s.admin("GET", unknown, None).status, 404, "{unknown}");
    }
    assert_eq!(s.admin("GET", "/api/v1/stats/sh%6Fp", None).status, 200);

    let r = s.admin("GET", "/", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let page = r.text();
    check_page(&s, &page);
    // The figures are on it too: shop's rate is not the dash shown before any snapshot.
    assert!(!page.contains("– req/s"), "{page}");
    eprintln!("status page: {} bytes", page.len());
    assert!(page.len() < 8 * 1024, "{} bytes", page.len());
    let head = s.admin("HEAD", "/", None);
    assert_eq!((head.status, head.body.len()), (200, 0));
}

#[test]
fn given_a_token_then_the_page_takes_basic_or_bearer_and_asks_a_browser_for_basic() {
    let s = Setup::start(true);
    let basic = |user: &str, pass: &str| {
        format!(
            "Basic {}",
            ferry::config::base64(format!("{user}:{pass}").as_bytes())
        )
    };
    let r = s.admin("GET", "/", None);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"ferry admin\"")
    );
    assert_eq!(s.admin("HEAD", "/", None).status, 401);
    assert_eq!(s.admin("GET", "/", Some(&basic("me", "wrong"))).status, 401);
    assert_eq!(s.admin("GET", "/", Some("Bearer wrong")).status, 401);
    for auth in [
        basic("admin", TOKEN),
        basic("anyone", TOKEN),
        format!("Bearer {TOKEN}"),
    ] {
        let r = s.admin("GET", "/", Some(&auth));
        assert_eq!(r.status, 200, "{auth}");
        assert!(r.text().contains("<h3>shop <small>"));
    }
    let r = s.admin("GET", "/api/v1/stats", None);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"ferry\""));
    assert_eq!(
        s.admin("GET", "/api/v1/stats", Some(&basic("x", TOKEN)))
            .status,
        200
    );
    assert_eq!(
        s.admin(
            "GET",
            "/api/v1/stats/shop",
            Some(&format!("Bearer {TOKEN}"))
        )
        .status,
        200
    );
}

/// The Chromium binary, if there is one.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FERRY_CHROMIUM") {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Runs headless Chromium on `url` with `args` and returns its standard output. It may reach
/// loopback only: no name resolves, and any other address would go through a proxy that is a
/// closed loopback port. (Traced with strace: its only non-loopback socket call is its IPv6
/// reachability check at start, a UDP `connect` to 2001:4860:4860::8888 then `getsockname`
/// and `close`, a route lookup that sends no packet.)
fn run_chromium(bin: &Path, args: &[String], url: &str) -> String {
    let profile = scratch_dir();
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
        ])
        .arg(format!("--proxy-server=http://{}", common::dead_port()))
        .arg("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1")
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    // A browser's first start on a busy machine is slow; still, it must end.
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&profile);
    reader.join().unwrap()
}

#[test]
fn a_real_browser_renders_each_site_backend_and_server_with_its_state() {
    let Some(bin) = chromium() else {
        if std::env::var_os("FERRY_REQUIRE_CHROMIUM").is_some_and(|v| v == "1") {
            panic!(
                "FERRY_REQUIRE_CHROMIUM=1 but no chromium on the PATH (apt-get install chromium)"
            );
        }
        eprintln!("skipped: no chromium or chromium-browser on the PATH (set FERRY_REQUIRE_CHROMIUM=1 to fail instead)");
        return;
    };
    // Behind the token, as on a router: the browser sends the token as a Basic password.
    let s = Setup::start(true);
    let auth = format!(
        "Basic {}",
        ferry::config::base64(format!("admin:{TOKEN}").as_bytes())
    );
    s.wait_for_api2_offline(Some(&auth));
    s.traffic("shop.test", "/x", 30, 10);
    s.traffic("shop.test", "/api/y", 12, 0);
    s.traffic("blog.test", "/", 8, 0);
    for _ in 0..4 {
        let r = s
            .ferry
            .client()
            .roundtrip(b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n");
        assert_eq!(r.served_by(), Some("up1"));
    }
    let admin: SocketAddr = s.ferry.admin();
    assert!(admin.ip().is_loopback());
    wait_until("shop's requests in the stats", || {
        let j = Json::parse(&s.admin("GET", "/api/v1/stats/shop", Some(&auth)).text()).unwrap();
        j.get("last_60s") != Some(&Json::Null) && number(&j, &["last_60s", "requests"]) == 42.0
    });
    let url = format!("http://admin:{TOKEN}@{admin}/");
    let dom = run_chromium(&bin, &["--dump-dom".into()], &url);
    assert!(
        dom.contains("<title>ferry status</title>"),
        "not the page: {dom}"
    );
    check_page(&s, &dom);
    if let Some(file) = std::env::var_os("FERRY_STATUS_SCREENSHOT") {
        let file = std::path::absolute(PathBuf::from(file)).unwrap();
        let _ = std::fs::remove_file(&file);
        run_chromium(
            &bin,
            &[
                format!("--screenshot={}", file.display()),
                "--window-size=480,820".into(),
                "--hide-scrollbars".into(),
            ],
            &url,
        );
        assert!(file.is_file(), "no screenshot at {}", file.display());
    }
}
