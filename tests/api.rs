#![cfg(feature = "api")]
//! Black-box tests of the control API on the admin server (DESIGN §9): each call with its
//! success and error statuses, traffic following sites and servers added and removed through
//! it, token rules, the body limit, maintenance drains, and persistence to the config file.

mod common;

use common::json::Json;
use common::wire::{site_get, Response};
use common::{wait_until, Backend, Ferry, Wire};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const AUTH: &str = "Authorization: Bearer s3cret\r\n";

/// A reverse proxy publishing `app.test` to backend `app` over `bs`, with a token; `extra`
/// is added to the top level (an `admin:` block's other keys go in `admin_keys`).
fn proxy(bs: &[&Backend], admin_keys: &str, extra: &str) -> Ferry {
    let servers: Vec<String> = bs.iter().map(|b| format!("{{url: @{}}}", b.name)).collect();
    Ferry::start_reverse(
        bs,
        &format!(
            "admin_listen: \"127.0.0.1:0\"\nadmin:\n  token: s3cret\n{admin_keys}{extra}reverse:\n  sites: [{{name: app, hosts: [app.test], routes: [{{backend: app}}]}}]\n  backends:\n    app:\n      servers: [{}]\n",
            servers.join(", ")
        ),
    )
}

/// One API request on a fresh admin connection, with the token unless `auth` says otherwise.
fn call_as(ferry: &Ferry, auth: &str, method: &str, path: &str, body: &str) -> Response {
    let mut w = Wire::connect(ferry.admin());
    let len = if body.is_empty() && method != "POST" && method != "PUT" {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    w.send(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: admin\r\n{auth}{len}Content-Type: application/json\r\n\r\n{body}"
        )
        .as_bytes(),
    );
    w.response_to(method == "HEAD")
}

fn call(ferry: &Ferry, method: &str, path: &str, body: &str) -> Response {
    call_as(ferry, AUTH, method, path, body)
}

fn json(r: &Response) -> Json {
    Json::parse(&r.text()).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

/// Who serves `host`'s `/` on a fresh connection (`-` when ferry answered itself).
fn served(ferry: &Ferry, host: &str) -> (u16, String) {
    let r = ferry.reverse_client().roundtrip(&site_get(host, "/"));
    (r.status, r.served_by().unwrap_or("-").to_string())
}

/// The `/status` entry of server `url` of backend `backend`.
fn server_status(ferry: &Ferry, backend: &str, url: &str) -> Json {
    let s = json(&call(ferry, "GET", "/status", ""));
    let b = s
        .get("backends")
        .unwrap()
        .as_array()
        .iter()
        .find(|b| b.get("name").unwrap().as_str() == backend)
        .unwrap()
        .clone();
    b.get("servers")
        .unwrap()
        .as_array()
        .iter()
        .find(|s| s.get("url").unwrap().as_str() == url)
        .unwrap_or_else(|| panic!("no server {url} in /status"))
        .clone()
}

/// A URL as one path segment.
fn encode(url: &str) -> String {
    url.replace('%', "%25")
        .replace(':', "%3A")
        .replace('/', "%2F")
}

#[test]
fn given_the_api_when_a_backend_and_a_site_are_added_changed_and_removed_then_traffic_follows() {
    let (s1, s2) = (Backend::start("s1"), Backend::start("s2"));
    let ferry = proxy(&[&s1, &s2], "", "");
    let r = call(&ferry, "GET", "/api/v1/sites", "");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        r#"[{"name":"app","hosts":["app.test"],"routes":[{"backend":"app"}]}]"#
    );
    assert_eq!(call(&ferry, "GET", "/api/v1/sites/blog", "").status, 404);
    assert_eq!(call(&ferry, "HEAD", "/api/v1/sites/app", "").status, 200);

    let blog = format!(r#"{{"name":"blog","servers":[{{"url":"{}"}}]}}"#, s2.url());
    let r = call(&ferry, "POST", "/api/v1/backends", &blog);
    assert_eq!(r.status, 201, "{}", r.text());
    let b = json(&r);
    assert_eq!(b.get("name").unwrap().as_str(), "blog");
    assert!(!b.get("persisted").unwrap().as_bool());
    assert_eq!(call(&ferry, "POST", "/api/v1/backends", &blog).status, 409);
    let r = call(&ferry, "GET", "/api/v1/backends", "");
    assert_eq!(json(&r).as_array().len(), 2);

    // Validated as a whole config: the error names its key path.
    let bad = r#"{"name":"blog","hosts":["blog.test"],"routes":[{"backend":"nope"}]}"#;
    let r = call(&ferry, "POST", "/api/v1/sites", bad);
    assert_eq!(r.status, 400);
    let errors = json(&r).get("errors").unwrap().clone();
    assert_eq!(
        errors.as_array()[0].get("path").unwrap().as_str(),
        "reverse.sites[1].routes[0].backend",
        "{}",
        r.text()
    );
    assert_eq!(
        call(&ferry, "POST", "/api/v1/sites", "{not json").status,
        400
    );
    assert_eq!(served(&ferry, "blog.test").0, 404);

    let site = r#"{"name":"blog","hosts":["blog.test"],"routes":[{"backend":"blog"}]}"#;
    let r = call(&ferry, "POST", "/api/v1/sites", site);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.text(),
        r#"{"name":"blog","hosts":["blog.test"],"routes":[{"backend":"blog"}],"persisted":false}"#
    );
    assert_eq!(call(&ferry, "POST", "/api/v1/sites", site).status, 409);
    wait_until("the new site to serve", || {
        served(&ferry, "blog.test") == (200, "s2".into())
    });
    assert_eq!(served(&ferry, "app.test"), (200, "s1".into()));

    let r = call(&ferry, "DELETE", "/api/v1/backends/blog", "");
    assert_eq!(r.status, 409, "a site uses it: {}", r.text());
    let moved = r#"{"hosts":["blog.test"],"routes":[{"backend":"app"}]}"#;
    let r = call(&ferry, "PUT", "/api/v1/sites/blog", moved);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json(&r).get("name").unwrap().as_str(), "blog");
    assert_eq!(call(&ferry, "PUT", "/api/v1/sites/nope", moved).status, 404);
    wait_until("the site to move", || {
        served(&ferry, "blog.test") == (200, "s1".into())
    });

    let r = call(&ferry, "DELETE", "/api/v1/sites/blog", "");
    assert_eq!(r.text(), r#"{"deleted":{"site":"blog"},"persisted":false}"#);
    assert_eq!(call(&ferry, "DELETE", "/api/v1/sites/blog", "").status, 404);
    wait_until("the site to go", || served(&ferry, "blog.test").0 == 404);
    assert_eq!(
        call(&ferry, "DELETE", "/api/v1/backends/blog", "").status,
        200
    );
    assert_eq!(call(&ferry, "GET", "/api/v1/backends/blog", "").status, 404);
    let put = format!(r#"{{"servers":[{{"url":"{}"}}]}}"#, s2.url());
    assert_eq!(
        call(&ferry, "PUT", "/api/v1/backends/nope", &put).status,
        404
    );
    let r = call(&ferry, "PUT", "/api/v1/backends/app", &put);
    assert_eq!(r.status, 200, "{}", r.text());
    wait_until("the backend's new server", || {
        served(&ferry, "app.test") == (200, "s2".into())
    });
}

#[test]
fn given_servers_added_and_removed_through_the_api_then_only_the_listed_ones_serve() {
    let (s1, s2) = (Backend::start("s1"), Backend::start("s2"));
    let ferry = proxy(&[&s1], "", "");
    let add = format!(r#"{{"url":"{}"}}"#, s2.url());
    let r = call(&ferry, "POST", "/api/v1/backends/app/servers", &add);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(json(&r).get("servers").unwrap().as_array().len(), 2);
    assert_eq!(
        call(&ferry, "POST", "/api/v1/backends/app/servers", &add).status,
        409
    );
    assert_eq!(
        call(&ferry, "POST", "/api/v1/backends/nope/servers", &add).status,
        404
    );
    let r = call(
        &ferry,
        "POST",
        "/api/v1/backends/app/servers",
        r#"{"url":"ftp://x"}"#,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("reverse.backends.app.servers[2]"),
        "{}",
        r.text()
    );
    wait_until("the added server to serve", || {
        served(&ferry, "app.test").1 == "s2"
    });

    let one = format!("/api/v1/backends/app/servers/{}", encode(&s1.url()));
    assert_eq!(call(&ferry, "DELETE", &one, "").status, 200);
    assert_eq!(call(&ferry, "DELETE", &one, "").status, 404);
    assert_eq!(
        call(&ferry, "DELETE", "/api/v1/backends/app/servers/5", "").status,
        404
    );
    let before = s1.requests().len();
    for _ in 0..10 {
        assert_eq!(served(&ferry, "app.test"), (200, "s2".into()));
    }
    assert_eq!(s1.requests().len(), before, "a removed server got requests");
    // The last server cannot go: a backend needs one.
    let r = call(&ferry, "DELETE", "/api/v1/backends/app/servers/0", "");
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn given_api_changes_then_a_keep_alive_client_sees_no_failure() {
    let (s1, s2) = (Backend::start("s1"), Backend::start("s2"));
    let ferry = proxy(&[&s1], "", "");
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut c = ferry.reverse_client();
    let client = {
        let (stop, seen) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let r = c.roundtrip(&site_get("app.test", "/"));
                let by = r.served_by().unwrap_or("-").to_string();
                seen.lock().unwrap().push((r.status, by));
            }
        })
    };
    let add = format!(r#"{{"url":"{}"}}"#, s2.url());
    assert_eq!(
        call(&ferry, "POST", "/api/v1/backends/app/servers", &add).status,
        201
    );
    wait_until("s2 to serve the kept-alive client", || {
        seen.lock().unwrap().iter().any(|(_, by)| by == "s2")
    });
    let gone = format!("/api/v1/backends/app/servers/{}", encode(&s1.url()));
    assert_eq!(call(&ferry, "DELETE", &gone, "").status, 200);
    let n = seen.lock().unwrap().len();
    wait_until("more requests after the removal", || {
        seen.lock().unwrap().len() > n + 20
    });
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();
    let seen = seen.lock().unwrap();
    assert!(seen.iter().all(|(status, _)| *status == 200), "{seen:?}");
    assert_eq!(seen.last().unwrap().1, "s2");
}

#[test]
fn given_no_token_then_the_api_reads_but_refuses_changes_and_with_one_it_guards_both() {
    let s1 = Backend::start("s1");
    let open = Ferry::start_reverse(
        &[&s1],
        "admin_listen: \"127.0.0.1:0\"\nreverse:\n  sites: [{hosts: [a.test], routes: [{backend: b}]}]\n  backends: {b: {servers: [{url: @s1}]}}\n",
    );
    assert_eq!(
        call_as(&open, "", "GET", "/api/v1/backends/b", "").status,
        200
    );
    let r = call_as(&open, "", "DELETE", "/api/v1/sites/a.test", "");
    assert_eq!(r.status, 403);
    assert!(
        r.text().contains("set admin.token to enable changes"),
        "{}",
        r.text()
    );
    assert_eq!(
        call_as(&open, "", "GET", "/api/v1/sites/a.test", "").status,
        200
    );
    // A body is not even read without the token.
    let site = r#"{"hosts":["b.test"],"routes":[{"backend":"b"}]}"#;
    let r = call_as(&open, "", "POST", "/api/v1/sites", site);
    assert_eq!((r.status, r.header("connection")), (403, Some("close")));

    let ferry = proxy(&[&s1], "", "");
    assert_eq!(call_as(&ferry, "", "GET", "/api/v1/sites", "").status, 401);
    let wrong = "Authorization: Bearer nope\r\n";
    assert_eq!(
        call_as(&ferry, wrong, "DELETE", "/api/v1/sites/app", "").status,
        401
    );
    let r = call_as(&ferry, wrong, "PUT", "/api/v1/sites/app", site);
    assert_eq!((r.status, r.header("connection")), (401, Some("close")));
    assert_eq!(served(&ferry, "app.test").0, 200);
    let r = call(&ferry, "PATCH", "/api/v1/sites/app", "{}");
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, HEAD, PUT, DELETE"))
    );
    for p in ["/api/v1/stats/nope", "/api/v1/nope"] {
        assert_eq!(call(&ferry, "GET", p, "").status, 404, "{p}");
    }
}

#[test]
fn given_request_bodies_then_the_limit_holds_and_a_slow_client_stalls_no_one() {
    let s1 = Backend::start("s1");
    let ferry = proxy(&[&s1], "", "");
    // Exactly 64 KiB: a site padded with spaces.
    let site = r#"{"name":"big","hosts":["big.test"],"routes":[{"backend":"app"}]}"#;
    let body = format!("{site}{}", " ".repeat(65536 - site.len()));
    let r = call(&ferry, "POST", "/api/v1/sites", &body);
    assert_eq!(r.status, 201, "{}", r.text());

    let mut w = Wire::connect(ferry.admin());
    w.send(
        format!("POST /api/v1/sites HTTP/1.1\r\n{AUTH}Content-Length: 65537\r\n\r\n").as_bytes(),
    );
    let r = w.response();
    assert_eq!(r.status, 413);
    assert!(w.closed());
    let mut w = Wire::connect(ferry.admin());
    w.send(format!("POST /api/v1/sites HTTP/1.1\r\n{AUTH}Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n").as_bytes());
    assert_eq!(w.response().status, 411);

    // A client trickling a body holds only its own connection.
    let mut slow = Wire::connect(ferry.admin());
    let add = r#"{"name":"slow","hosts":["slow.test"],"routes":[{"backend":"app"}]}"#;
    slow.send(
        format!(
            "POST /api/v1/sites HTTP/1.1\r\n{AUTH}Content-Length: {}\r\n\r\n{}",
            add.len(),
            &add[..10]
        )
        .as_bytes(),
    );
    let t = Instant::now();
    assert_eq!(call(&ferry, "GET", "/health", "").status, 200);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    slow.send(&add.as_bytes()[10..]);
    assert_eq!(slow.response().status, 201);
}

#[test]
fn given_a_server_marked_dead_then_it_drains_across_a_reload_until_alive() {
    let (s1, s2) = (Backend::start("s1"), Backend::start("s2"));
    let ferry = proxy(&[&s1, &s2], "", "");
    // A slow request in flight on one of them.
    let mut slow = ferry.reverse_client();
    slow.send(b"GET /slow HTTP/1.1\r\nHost: app.test\r\nX-Fake: sleep=1500\r\n\r\n");
    wait_until("the slow request to arrive", || {
        s1.in_flight() + s2.in_flight() == 1
    });
    let (busy, idle, index) = if s1.in_flight() == 1 {
        (&s1, &s2, 0)
    } else {
        (&s2, &s1, 1)
    };
    let dead = format!("/api/v1/backends/app/servers/{index}/dead");
    let r = call(&ferry, "POST", &dead, "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(json(&r).get("draining").unwrap().as_bool());
    assert!(server_status(&ferry, "app", &busy.url())
        .get("draining")
        .unwrap()
        .as_bool());
    // The status page says so in words.
    let page = call(&ferry, "GET", "/", "").text();
    assert!(page.contains("draining"), "{page}");
    for _ in 0..6 {
        assert_eq!(served(&ferry, "app.test"), (200, idle.name.clone()));
    }
    let r = slow.response();
    assert_eq!((r.status, r.served_by()), (200, Some(busy.name.as_str())));

    // A reload keeps the drain (the file is as it was: same backend, same URL).
    ferry.signal(1);
    wait_until("the reload", || {
        ferry.log_text().contains("SIGHUP: config reloaded")
    });
    assert!(server_status(&ferry, "app", &busy.url())
        .get("draining")
        .unwrap()
        .as_bool());
    let before = busy.requests().len();
    for _ in 0..6 {
        assert_eq!(served(&ferry, "app.test"), (200, idle.name.clone()));
    }
    assert_eq!(busy.requests().len(), before);

    let alive = format!("/api/v1/backends/app/servers/{}/alive", encode(&busy.url()));
    let r = call(&ferry, "POST", &alive, "");
    assert!(!json(&r).get("draining").unwrap().as_bool(), "{}", r.text());
    wait_until("the server to serve again", || {
        served(&ferry, "app.test").1 == busy.name
    });
    assert_eq!(
        call(&ferry, "POST", "/api/v1/backends/app/servers/9/dead", "").status,
        404
    );
    assert_eq!(
        call(&ferry, "GET", "/api/v1/backends/app/servers/0/dead", "").status,
        405
    );
}

#[test]
fn given_persist_then_a_change_is_written_kept_across_a_restart_and_the_old_file_kept() {
    let (s1, s2) = (Backend::start("s1"), Backend::start("s2"));
    let mut ferry = proxy(&[&s1], "  persist: true\n", "reload_interval_secs: 1\n");
    let file = ferry.dir.join("ferry.yaml");
    let original = std::fs::read_to_string(&file).unwrap();
    let add = format!(r#"{{"url":"{}"}}"#, s2.url());
    let r = call(&ferry, "POST", "/api/v1/backends/app/servers", &add);
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(json(&r).get("persisted").unwrap().as_bool());
    assert!(std::fs::read_to_string(&file).unwrap().contains(&s2.url()));
    assert_eq!(
        std::fs::read_to_string(ferry.dir.join("ferry.yaml.bak")).unwrap(),
        original
    );
    // Its own write is no outside edit: the poll (every second) reloads nothing.
    let reloads = || {
        let text = call(&ferry, "GET", "/metrics", "").text();
        let line = text.lines().find(|l| l.starts_with("ferry_reloads_total "));
        line.unwrap().to_string()
    };
    let before = reloads();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(reloads(), before);
    assert!(!ferry.log_text().contains("the config file changed"));

    ferry.restart();
    let r = call(&ferry, "GET", "/api/v1/backends/app", "");
    assert_eq!(
        json(&r).get("servers").unwrap().as_array().len(),
        2,
        "{}",
        r.text()
    );
    wait_until("the persisted server to serve", || {
        served(&ferry, "app.test").1 == "s2"
    });
}

#[test]
fn given_no_persist_then_a_reload_from_the_file_drops_api_changes() {
    let (s1, s2) = (Backend::start("s1"), Backend::start("s2"));
    let ferry = proxy(&[&s1], "", "");
    let file = ferry.dir.join("ferry.yaml");
    let original = std::fs::read_to_string(&file).unwrap();
    let add = format!(r#"{{"url":"{}"}}"#, s2.url());
    let r = call(&ferry, "POST", "/api/v1/backends/app/servers", &add);
    assert!(!json(&r).get("persisted").unwrap().as_bool());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    assert!(!ferry.dir.join("ferry.yaml.bak").exists());
    ferry.signal(1);
    wait_until("the reload", || {
        ferry.log_text().contains("SIGHUP: config reloaded")
    });
    let r = call(&ferry, "GET", "/api/v1/backends/app", "");
    assert_eq!(
        json(&r).get("servers").unwrap().as_array().len(),
        1,
        "{}",
        r.text()
    );
}

#[test]
fn given_a_write_that_fails_then_the_call_says_why_and_the_running_config_stays() {
    let (s1, s2) = (Backend::start("s1"), Backend::start("s2"));
    let ferry = proxy(&[&s1], "  persist: true\n", "");
    let file = ferry.dir.join("ferry.yaml");
    let original = std::fs::read_to_string(&file).unwrap();
    // A directory where the backup goes: the write fails for root too (a read-only mode
    // would not stop root).
    std::fs::create_dir(ferry.dir.join("ferry.yaml.bak")).unwrap();
    let add = format!(r#"{{"url":"{}"}}"#, s2.url());
    let r = call(&ferry, "POST", "/api/v1/backends/app/servers", &add);
    assert_eq!(r.status, 500);
    assert!(r.text().contains("ferry.yaml.bak"), "{}", r.text());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    let r = call(&ferry, "GET", "/api/v1/backends/app", "");
    assert_eq!(json(&r).get("servers").unwrap().as_array().len(), 1);
    for _ in 0..4 {
        assert_eq!(served(&ferry, "app.test"), (200, "s1".into()));
    }
    assert!(ferry.log_text().contains("not applied"));
    assert_eq!(
        std::fs::read_dir(&ferry.dir).unwrap().count(),
        2,
        "a temporary file was left"
    );

    // An edit on disk since ferry read the file is not overwritten.
    std::fs::remove_dir(ferry.dir.join("ferry.yaml.bak")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&file, format!("{original}# edited\n")).unwrap();
    let r = call(&ferry, "POST", "/api/v1/backends/app/servers", &add);
    assert_eq!(r.status, 409, "{}", r.text());
}
