//! Black-box tests of hot reload: everything in the file applies, bad files change nothing,
//! state carries over by URL, and no client notices.

mod common;

use common::{pattern, Fake, Ferry, Wire};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

const ADMIN: &str = "admin_listen: \"127.0.0.1:0\"\n";

fn tag(c: &mut Wire) -> String {
    let r = c.roundtrip(b"GET http://o.test/size/2 HTTP/1.1\r\nHost: o.test\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    r.served_by().unwrap().to_string()
}

#[test]
fn upstreams_mode_rules_and_limits_all_apply() {
    let (a, b) = (Fake::proxy("a", None), Fake::proxy("b", None));
    let ferry = Ferry::start(&format!("{ADMIN}upstream:\n  - url: {}\n", a.url()));
    let mut c = ferry.client();
    assert_eq!(tag(&mut c), "a");
    // the upstream list
    assert!(ferry.reload(&format!("{ADMIN}upstream:\n  - url: {}\n", b.url())));
    let mut c = ferry.client();
    assert_eq!(tag(&mut c), "b");
    // mode and priorities
    assert!(ferry.reload(&format!(
        "{ADMIN}mode: priority\nupstream:\n  - {{url: {}, priority: 20}}\n  - {{url: {}, priority: 10}}\n",
        b.url(),
        a.url()
    )));
    let mut c = ferry.client();
    assert_eq!((tag(&mut c), tag(&mut c)), ("a".into(), "a".into()));
    // rules
    assert!(ferry.reload(&format!(
        "{ADMIN}upstream:\n  - url: {}\nrules:\n  - {{match: ['o.test'], via: reject}}\n",
        a.url()
    )));
    let r = ferry
        .client()
        .roundtrip(b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n");
    assert_eq!(r.status, 403);
    // limits
    assert!(ferry.reload(&format!(
        "{ADMIN}limits:\n  max_header_bytes: 1024\nupstream:\n  - url: {}\n",
        a.url()
    )));
    let big = "x".repeat(2000);
    let r = ferry
        .client()
        .roundtrip(format!("GET http://o.test/ HTTP/1.1\r\nX: {big}\r\n\r\n").as_bytes());
    assert_eq!(r.status, 431);
    assert_eq!(ferry.metric("ferry_reloads_total"), Some(4.0));
}

#[test]
fn state_carries_over_by_url_and_new_credentials_apply() {
    let (a, b) = (
        Fake::proxy("a", None),
        Fake::proxy("b", Some("Basic bmV3OnB3")),
    );
    let ferry = Ferry::start(&format!(
        "{ADMIN}upstream:\n  - url: {}\n  - {{url: {}, username: old, password: pw}}\n",
        a.url(),
        b.url()
    ));
    a.set_down(true);
    let mut c = ferry.client();
    for _ in 0..3 {
        // a fails once and goes offline; b refuses the old credentials with 407, which is
        // relayed for plain HTTP as the upstream's answer
        c.roundtrip(b"GET http://o.test/size/1 HTTP/1.1\r\nHost: o.test\r\n\r\n");
    }
    common::wait_until("a offline", || {
        ferry
            .admin_get("GET", "/status", "")
            .text()
            .contains(&format!("\"url\":\"{}\",\"online\":false", a.url()))
    });
    a.set_down(false);
    // new weight for a (same URL: its offline state carries over), new credentials for b
    assert!(ferry.reload(&format!(
        "{ADMIN}upstream:\n  - {{url: {}, weight: 3}}\n  - {{url: {}, username: new, password: pw}}\n",
        a.url(),
        b.url()
    )));
    let status = ferry.admin_get("GET", "/status", "").text();
    assert!(
        status.contains(&format!("\"url\":\"{}\",\"online\":false", a.url())),
        "{status}"
    );
    let mut c = ferry.client();
    assert_eq!(tag(&mut c), "b");
    assert!(b
        .heads()
        .last()
        .unwrap()
        .contains("Proxy-Authorization: Basic bmV3OnB3"));
}

#[test]
fn a_bad_file_changes_nothing_and_the_watcher_survives() {
    let a = Fake::proxy("a", None);
    let good = format!(
        "{ADMIN}reload_interval_secs: 1\nupstream:\n  - url: {}\n",
        a.url()
    );
    let ferry = Ferry::start(&good);
    let mut c = ferry.client();
    for bad in [
        "upstream: [unclosed\n",
        "upstream:\n  - url: http://nope\n",
        "mode: fastest\n",
    ] {
        assert!(
            !ferry.reload(&format!("{ADMIN}{bad}")),
            "{bad} was accepted"
        );
        assert_eq!(tag(&mut c), "a");
    }
    assert!(ferry.log_text().contains("upstream[0].url: port missing"));
    assert_eq!(ferry.metric("ferry_reload_failures_total"), Some(3.0));
    // the mtime watcher still works: a good file is picked up without a signal
    let b = Fake::proxy("b", None);
    std::fs::write(
        ferry.dir.join("ferry.yaml"),
        format!("listen: \"127.0.0.1:0\"\nworkers: 2\n{ADMIN}reload_interval_secs: 1\nupstream:\n  - url: {}\n", b.url()),
    )
    .unwrap();
    common::wait_until("the watcher to apply the file", || {
        tag(&mut ferry.client()) == "b"
    });
}

#[test]
fn a_new_listen_address_is_bound_and_the_old_one_closed() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start(ADMIN);
    let old = ferry.addr;
    assert!(ferry.reload(&format!("listen: \"127.0.0.2:0\"\n{ADMIN}")));
    let line = ferry
        .log_text()
        .lines()
        .find_map(|l| l.split("listening on 127.0.0.2:").nth(1).map(String::from))
        .unwrap();
    let port: u16 = line.split_whitespace().next().unwrap().parse().unwrap();
    let mut c = Wire::connect(format!("127.0.0.2:{port}").parse().unwrap());
    let r = c.roundtrip(&common::wire::get(origin.addr, "/size/5"));
    assert_eq!(r.body, pattern(5));
    common::wait_until("the old listener to close", || {
        std::net::TcpStream::connect(old).is_err()
    });
}

#[test]
fn a_request_in_flight_finishes_with_the_config_it_started_with() {
    let (a, b) = (Fake::proxy("a", None), Fake::proxy("b", None));
    let ferry = Ferry::start(&format!("upstream:\n  - url: {}\n", a.url()));
    let mut slow = ferry.client();
    slow.send(b"GET http://o.test/sleep/800 HTTP/1.1\r\nHost: o.test\r\n\r\n");
    common::wait_until("the slow request to arrive", || {
        a.heads().iter().any(|h| h.contains("/sleep/800"))
    });
    assert!(ferry.reload(&format!("upstream:\n  - url: {}\n", b.url())));
    let r = slow.response();
    assert_eq!((r.status, r.served_by()), (200, Some("a")));
    assert_eq!(tag(&mut ferry.client()), "b");
}

#[test]
fn reloading_under_load_loses_no_request() {
    let (a, b) = (Fake::proxy("a", None), Fake::proxy("b", None));
    let ferry = Ferry::start(&format!(
        "upstream:\n  - url: {}\n  - url: {}\n",
        a.url(),
        b.url()
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let (done, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, done, bad, addr) = (stop.clone(), done.clone(), bad.clone(), ferry.addr);
            std::thread::spawn(move || {
                let mut c = Wire::connect(addr);
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    // every tenth request on a new connection
                    if n % 10 == 0 {
                        c = Wire::connect(addr);
                    }
                    let r = c.roundtrip(
                        format!("GET http://o.test/size/{i}{n} HTTP/1.1\r\nHost: o.test\r\n\r\n")
                            .as_bytes(),
                    );
                    if r.status != 200
                        || r.body.len() != format!("{i}{n}").parse::<usize>().unwrap()
                    {
                        bad.fetch_add(1, Ordering::SeqCst);
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    // At least ten reloads, and on until enough requests ran through them (under emulation a
    // request is slower than a reload).
    let until = std::time::Instant::now() + common::TIMEOUT;
    let mut i = 0;
    while i < 10 || (done.load(Ordering::SeqCst) <= 100 && std::time::Instant::now() < until) {
        i += 1;
        let w = 1 + i % 3;
        assert!(ferry.reload(&format!(
            "upstream:\n  - {{url: {}, weight: {w}}}\n  - url: {}\n",
            a.url(),
            b.url()
        )));
    }
    stop.store(true, Ordering::SeqCst);
    for t in clients {
        t.join().unwrap();
    }
    assert!(
        done.load(Ordering::SeqCst) > 100,
        "too few requests to mean anything"
    );
    assert_eq!(bad.load(Ordering::SeqCst), 0);
}

#[test]
fn a_keep_alive_client_gets_the_new_config_at_its_next_request() {
    let (a, b) = (Fake::proxy("a", None), Fake::proxy("b", None));
    let ferry = Ferry::start(&format!("upstream:\n  - url: {}\n", a.url()));
    let mut c = ferry.client();
    assert_eq!(tag(&mut c), "a");
    assert!(ferry.reload(&format!("upstream:\n  - url: {}\n", b.url())));
    assert_eq!(tag(&mut c), "b");
}

#[test]
fn a_new_admin_address_is_bound_and_the_old_one_closed() {
    let ferry = Ferry::start(ADMIN);
    let old = ferry.admin();
    assert!(ferry.reload("admin_listen: \"127.0.0.2:0\"\n"));
    // The control thread logs the new admin address just after the reload line: poll for it.
    let mut line = None;
    common::wait_until("the new admin address", || {
        line = ferry.log_text().lines().find_map(|l| {
            l.split("admin listening on 127.0.0.2:")
                .nth(1)
                .map(String::from)
        });
        line.is_some()
    });
    let line = line.unwrap();
    let new: std::net::SocketAddr = format!("127.0.0.2:{}", line.trim()).parse().unwrap();
    let mut w = Wire::connect(new);
    assert_eq!(
        w.roundtrip(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .status,
        200
    );
    common::wait_until("the old admin listener to close", || {
        std::net::TcpStream::connect(old).is_err()
    });
}
