//! Black-box tests of CONNECT tunnels and protocol upgrades, direct and through an upstream.

mod common;

use common::{banner_server, Fake, Ferry};
use std::io::{Read, Write};
use std::net::Shutdown;

fn connect_line(target: std::net::SocketAddr) -> Vec<u8> {
    format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").into_bytes()
}

#[test]
fn bytes_sent_with_connect_and_a_banner_after_200_both_arrive() {
    let server = banner_server(b"220 banner\r\n");
    let up = Fake::proxy("up1", None);
    for yaml in [String::new(), format!("upstream:\n  - url: {}\n", up.url())] {
        let ferry = Ferry::start(&yaml);
        let mut c = ferry.client();
        // The CONNECT and the first tunnel bytes in one write.
        let mut req = connect_line(server);
        req.extend_from_slice(b"early bytes\n");
        c.send(&req);
        let head = c.read_head().unwrap();
        assert!(
            head.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let want = b"220 banner\r\nEARLY BYTES\n";
        let got = c.read_exact_n(want.len());
        assert_eq!(got, want, "config: {yaml}");
    }
}

#[test]
fn half_close_is_carried_through_the_tunnel() {
    let server = banner_server(b"hi\n");
    let ferry = Ferry::start("");
    let mut c = ferry.client();
    c.send(&connect_line(server));
    c.read_head().unwrap();
    c.send(b"last words");
    c.stream.shutdown(Shutdown::Write).unwrap();
    // The server sees EOF only after our bytes, answers "<eof>" and closes its side.
    let rest = c.read_to_end();
    assert_eq!(rest, b"hi\nLAST WORDS<eof>");
}

#[test]
fn connect_to_ipv6_literal_and_refused_target() {
    let ferry = Ferry::start("");
    let mut c = ferry.client();
    let dead = common::dead_port();
    c.send(&connect_line(dead));
    let r = c.response();
    assert_eq!(r.status, 502);
    // An IPv6 literal target parses; where ::1 is not configured the answer is 502, never 400.
    let mut c = ferry.client();
    c.send(b"CONNECT [::1]:1 HTTP/1.1\r\nHost: [::1]:1\r\n\r\n");
    assert_eq!(c.response().status, 502);
}

#[test]
fn websocket_style_upgrade_becomes_a_tunnel() {
    let origin = Fake::origin("origin");
    let ferry = Ferry::start("");
    let a = origin.addr;
    let mut c = ferry.client();
    c.send(format!("GET http://{a}/ws HTTP/1.1\r\nHost: {a}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nframe1").as_bytes());
    let r = c.response_to(false);
    assert_eq!(r.status, 101);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert_eq!(c.read_exact_n(6), b"FRAME1");
    c.send(b"frame2");
    assert_eq!(c.read_exact_n(6), b"FRAME2");
    // The origin saw the upgrade fields.
    let head = &origin.heads()[0];
    assert!(
        head.contains("Upgrade: websocket") && head.contains("Connection: Upgrade"),
        "{head}"
    );
}

#[test]
fn tls_end_to_end_through_connect_direct_and_via_upstream() {
    let origin = common::tls::TlsOrigin::start();
    let up = Fake::proxy("up1", None);
    for yaml in [String::new(), format!("upstream:\n  - url: {}\n", up.url())] {
        let ferry = Ferry::start(&yaml);
        let mut c = ferry.client();
        c.send(&connect_line(origin.addr));
        let head = c.read_head().unwrap();
        assert!(
            head.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        assert!(
            c.take_buffered().is_empty(),
            "nothing may precede the TLS server's bytes"
        );
        // The handshake only succeeds if every record crossed the tunnel unchanged: the client
        // trusts nothing but the origin's certificate and checks each record's MAC.
        let got = common::tls::get_over(&mut c.stream, origin.client());
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\n"),
            "config: {yaml}\n{text}"
        );
        assert!(text.contains("X-Served-By: tls-origin"), "{text}");
        assert!(got.ends_with(common::tls::BODY), "{text}");
    }
    let want = format!("CONNECT {} HTTP/1.1", origin.addr);
    assert!(up.heads().iter().any(|h| h.starts_with(&want)));
}

/// Writes `data` and half-closes on one thread while reading everything back on this one
/// (the echo server answers as it reads, so doing one after the other could deadlock).
fn send_all_then_read_all(c: &mut common::Wire, data: &[u8]) -> Vec<u8> {
    let mut w = c.stream.try_clone().unwrap();
    let data = data.to_vec();
    let t = std::thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    c.stream.read_to_end(&mut got).unwrap();
    t.join().unwrap();
    got
}

#[test]
fn a_large_tunnel_transfer_arrives_intact_both_ways() {
    // An echo through the banner server upper-cases; send only bytes that survive that.
    let server = banner_server(b"");
    let ferry = Ferry::start("");
    let mut c = ferry.client();
    c.send(&connect_line(server));
    c.read_head().unwrap();
    let data: Vec<u8> = (0..4 << 20).map(|i| b'A' + (i % 26) as u8).collect();
    let got = send_all_then_read_all(&mut c, &data);
    assert_eq!(got.len(), data.len() + 5);
    assert!(got[..data.len()] == data[..]);
    assert_eq!(&got[data.len()..], b"<eof>");
}

#[cfg(feature = "test-hooks")]
#[test]
fn the_copy_fallback_relays_tunnels_and_half_close_too() {
    // Splicing off: tunnels go through pooled buffers, as on non-Linux systems.
    let server = banner_server(b"220 banner\r\n");
    let ferry = Ferry::start_without_splice("");
    let mut c = ferry.client();
    let mut req = connect_line(server);
    req.extend_from_slice(b"early\n");
    c.send(&req);
    assert!(c.read_head().unwrap().starts_with(b"HTTP/1.1 200"));
    assert_eq!(c.read_exact_n(18), b"220 banner\r\nEARLY\n");
    let data: Vec<u8> = (0..3 << 20).map(|i| b'A' + (i % 26) as u8).collect();
    let got = send_all_then_read_all(&mut c, &data);
    assert!(got[..data.len()] == data[..]);
    assert_eq!(&got[data.len()..], b"<eof>");
    common::wait_until("the relay log line", || {
        ferry.log_text().contains("tunnel relays by ")
    });
    assert!(ferry.log_text().contains("tunnel relays by copy"));
    assert!(!ferry.log_text().contains("tunnel relays by splice"));
}

#[test]
fn tunnels_splice_on_linux() {
    let server = banner_server(b"x");
    let ferry = Ferry::start("");
    let mut c = ferry.client();
    c.send(&connect_line(server));
    c.read_head().unwrap();
    assert_eq!(c.read_exact_n(1), b"x");
    common::wait_until("the relay log line", || {
        ferry.log_text().contains("tunnel relays by ")
    });
    assert!(ferry.log_text().contains("tunnel relays by splice"));
}

#[cfg(target_os = "linux")]
#[test]
fn under_a_low_fd_limit_every_tunnel_gets_its_sockets_before_any_gets_pipes() {
    // 256 fds, about 20 of them ferry's own. 64 tunnels need 128 sockets: they fit. Spliced,
    // each would hold two pipes (4 fds) too, 384 fds in all: they would not.
    const TUNNELS: usize = 64;
    let server = banner_server(b"hi\n");
    let ferry = Ferry::start_with_fd_limit("", 256);
    let mut open = Vec::new();
    for i in 0..TUNNELS {
        let mut c = ferry.client();
        c.send(&connect_line(server));
        let head = c.read_head().unwrap_or_default();
        if !head.starts_with(b"HTTP/1.1 200") {
            let log = ferry.log_text();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            panic!(
                "tunnel {i} of {TUNNELS} got {:?}; ferry's last log lines, newest first:\n{}",
                String::from_utf8_lossy(&head),
                tail.join("\n")
            );
        }
        assert_eq!(c.read_exact_n(3), b"hi\n", "tunnel {i}");
        open.push(c);
    }
    // All of them at once, each still relaying both ways.
    for (i, c) in open.iter_mut().enumerate() {
        c.send(format!("ping {i}\n").as_bytes());
        let want = format!("PING {i}\n");
        assert_eq!(c.read_exact_n(want.len()), want.as_bytes());
    }
}
