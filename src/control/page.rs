//! The status page, `GET /` on the admin server (DESIGN §9): one HTML page a person reads in a
//! browser, phone included, with the forward role's pools and upstreams and the reverse role's
//! sites, backends and servers, each with its state in colour and in words, and the figures
//! of the live stats ring (`stats`).
//!
//! It sits on the control thread beside the other admin answers, off the request path: it
//! reads the config in force, the shared upstream and server state, and the ring. The page is
//! rendered whole on each request, a few KiB, with its CSS inline: no external asset, no
//! script (it refreshes itself with a `<meta http-equiv="refresh">`), so it works with
//! JavaScript off and behind the admin token. Every name that comes from the config is
//! HTML-escaped.
//!
//! A browser cannot send a bearer token by itself, so the admin server also takes HTTP Basic
//! credentials whose password is the token (`basic_token_ok`).

use super::stats::{Ring, Window, LONG, SHORT};
use crate::config::{Config, PoolSpec, UpstreamSpec};
use crate::metrics::decimal;
use crate::shared::Shared;
use crate::upstream::state::Circuit;
use crate::upstream::UpstreamState;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// How often the page reloads itself, in seconds.
const REFRESH_SECS: u32 = 5;

/// Kept short: it is sent with every refresh, and a router's admin port is often reached
/// over a slow link. One column that wraps; badges carry colour and a word.
const CSS: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:52em;padding:.5em .8em;background:#f4f5f7;color:#1d1f23}\
h1{font-size:1.3em;margin:.3em 0}h2{font-size:1.05em;margin:1em 0 .3em;color:#444}h3{font-size:1em;margin:0}\
section{background:#fff;border:1px solid #d8dbe0;border-radius:6px;padding:.45em .7em;margin:.45em 0}\
small,.m{color:#5d6470;font-weight:normal}ul{list-style:none;margin:.3em 0 0;padding:0}\
li{border-top:1px solid #eceef1;padding:.3em 0;overflow-wrap:anywhere}p{margin:.2em 0}\
b{display:inline-block;border-radius:4px;padding:0 .45em;font-size:.85em;color:#fff;margin-right:.3em}\
.on{background:#1e7f4f}.off{background:#c0392b}.dr{background:#b7791f}.no{background:#8a9099}";

/// The page's HTML.
pub fn render(config: &Config, shared: &Shared) -> String {
    let ring = shared.recent();
    let mut o = String::with_capacity(4096);
    let draining = shared.draining.load(Ordering::Relaxed);
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\"><title>ferry status</title>\
<style>{CSS}</style></head><body><h1>ferry {}</h1><p class=\"m\">up {} · {} connections open",
        if draining {
            "<b class=\"dr\">draining</b>"
        } else {
            "<b class=\"on\">serving</b>"
        },
        uptime(shared.stats.started.elapsed().as_secs()),
        shared.active.load(Ordering::Relaxed),
    );
    let short = ring.total(SHORT);
    let long = ring.total(LONG);
    let _ = write!(
        o,
        " · {} · {} errors</p>",
        rate(short.as_ref()),
        errors(long.as_ref())
    );
    if let Some(rev) = config.reverse.as_ref() {
        o.push_str("<h2>Sites</h2>");
        for s in &rev.sites {
            let _ = write!(o, "<section><h3>{} <small>", esc(&s.name));
            for (i, h) in s.hosts.iter().enumerate() {
                let _ = write!(o, "{}{}", if i > 0 { ", " } else { "" }, esc(h));
            }
            let (short, long) = (ring.site(s, SHORT), ring.site(s, LONG));
            let _ = write!(
                o,
                "</small></h3><p>{} · {} errors (5xx) · {}</p></section>",
                rate(short.as_ref()),
                errors(long.as_ref()),
                latency(long.as_ref())
            );
        }
        o.push_str("<h2>Backends</h2>");
        for b in &rev.backends {
            let q = &b.queue.state;
            let (_, max_queued) = q.limits();
            let _ = write!(
                o,
                "<section><h3>{} <small>{} · {} · {} active · queue {}",
                esc(&b.name),
                mode(&b.pool),
                online(&b.pool),
                q.active(),
                q.queued()
            );
            if max_queued > 0 {
                let _ = write!(o, "/{max_queued}");
            }
            o.push_str("</small></h3><ul>");
            for m in &b.pool.members {
                member(&mut o, m, &ring, true);
            }
            o.push_str("</ul></section>");
        }
    }
    if config.listen.is_some() {
        o.push_str("<h2>Forward pools</h2>");
        for p in &config.pools {
            let _ = write!(
                o,
                "<section><h3>{} <small>{} · {}</small></h3><ul>",
                esc(&p.name),
                mode(p),
                online(p)
            );
            if p.members.is_empty() {
                o.push_str("<li class=\"m\">no upstream: requests go direct or are refused, as configured</li>");
            }
            for m in &p.members {
                member(&mut o, m, &ring, p.breaker.is_some());
            }
            o.push_str("</ul></section>");
        }
    }
    let _ = write!(
        o,
        "<p class=\"m\">Refreshes every {REFRESH_SECS} s. Rates over the last 10 s, errors and \
latency over the last 60 s; latency percentiles are estimates from histogram buckets.</p></body></html>"
    );
    o
}

/// One upstream or server: its state, its circuit (where it has one), URL, figures.
fn member(o: &mut String, m: &UpstreamSpec, ring: &Ring, circuit: bool) {
    let st = &m.state;
    let (class, word) = state(st);
    let _ = write!(o, "<li><b class=\"{class}\">{word}</b>");
    if circuit {
        let (class, word) = match st.circuit() {
            Circuit::Closed => ("no", "circuit closed"),
            Circuit::Open => ("off", "circuit open"),
            Circuit::HalfOpen => ("dr", "circuit half-open"),
        };
        let _ = write!(o, "<b class=\"{class}\">{word}</b>");
    }
    let (short, long) = (ring.member(st, SHORT), ring.member(st, LONG));
    let _ = write!(
        o,
        "{} <span class=\"m\">· latency {} ms · {} · {} failures · {} active</span></li>",
        esc(&m.config_url),
        st.latency_ms(),
        rate(short.as_ref()),
        errors(long.as_ref()),
        st.active()
    );
}

/// The state's badge class and word.
fn state(st: &UpstreamState) -> (&'static str, &'static str) {
    // Drained for maintenance (POST …/servers/{id}/dead) says so before online/offline.
    if st.is_draining() {
        ("dr", "draining")
    } else if st.is_online() {
        ("on", "online")
    } else {
        ("off", "offline")
    }
}

fn mode(p: &PoolSpec) -> &'static str {
    crate::metrics::mode_name(p.mode)
}

fn online(p: &PoolSpec) -> String {
    let up = p.members.iter().filter(|m| m.state.is_online()).count();
    format!("{up}/{} online", p.members.len())
}

/// "12.5 req/s", or a dash before the ring covers any time.
fn rate(w: Option<&Window>) -> String {
    w.map_or_else(
        || "– req/s".into(),
        |w| format!("{} req/s", w.requests_per_sec()),
    )
}

fn errors(w: Option<&Window>) -> String {
    w.map_or_else(|| "–".into(), |w| w.errors.to_string())
}

/// "p50 4.2 ms · p90 … · p99 …", or a dash without requests.
fn latency(w: Option<&Window>) -> String {
    let mut s = String::new();
    for (name, q) in [("p50", 500), ("p90", 900), ("p99", 990)] {
        let v = w
            .and_then(|w| w.quantile_us(q))
            .map_or_else(|| "–".into(), |us| format!("{} ms", decimal(us / 100, 10)));
        let _ = write!(s, "{}{name} {v}", if s.is_empty() { "" } else { " · " });
    }
    s
}

fn uptime(secs: u64) -> String {
    match secs {
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `s` with HTML's five special characters escaped (text and quoted attribute values).
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Whether an `Authorization` value is HTTP Basic (RFC 7617) with `token` as its password,
/// whatever the user name. The password is compared in constant time.
pub fn basic_token_ok(value: &[u8], token: &[u8]) -> bool {
    // RFC 9110 §11.1: the scheme name is case-insensitive.
    if value.len() < 6 || !value[..6].eq_ignore_ascii_case(b"basic ") {
        return false;
    }
    let Some(decoded) = base64_decode(crate::http::trim(&value[6..])) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return false;
    };
    super::constant_time_eq(&decoded[colon + 1..], token)
}

/// Standard base64 with padding (RFC 4648 §4); `None` for anything else.
fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let chunks = text.len() / 4;
    for (i, chunk) in text.chunks(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = n << 6 | u32::from(value(c)?);
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
listen: 127.0.0.1:1
pools:
  eu: {upstream: [{url: "http://127.0.0.1:9"}]}
reverse:
  listen: ["127.0.0.1:2"]
  sites:
    - name: "<app>"
      hosts: ["app.test", "*.app.test"]
      routes: [{path: "/", backend: wb}]
  backends:
    wb:
      servers: [{url: "http://127.0.0.1:3"}, {url: "http://127.0.0.1:4"}]
      queue: {max_active: 2, max_queued: 5}
workers: 1
"#;

    #[test]
    fn the_page_escapes_names_and_shows_states_in_words() {
        let c = crate::config::parse(CONFIG, None).unwrap();
        let shared = Shared::new(1, 8);
        let rev = c.reverse.as_ref().unwrap();
        rev.backends[0].pool.members[1]
            .state
            .passive_failure(0, 1, "refused");
        let page = render(&c, &shared);
        for part in [
            "<h3>&lt;app&gt; <small>app.test, *.app.test</small>",
            "<h3>wb <small>round_robin · 1/2 online · 0 active · queue 0/5</small>",
            "<b class=\"on\">online</b><b class=\"no\">circuit closed</b>http://127.0.0.1:3 ",
            "<b class=\"off\">offline</b><b class=\"off\">circuit open</b>http://127.0.0.1:4 ",
            "<h3>eu <small>round_robin · 1/1 online</small></h3><ul><li><b class=\"on\">online</b>http://127.0.0.1:9 ",
            "<meta http-equiv=\"refresh\" content=\"5\">",
            "<meta name=\"viewport\"",
        ] {
            assert!(page.contains(part), "missing {part} in {page}");
        }
        assert!(!page.contains("<app>"));
        assert!(
            !page.contains("<script")
                && !page.contains("http-equiv=\"refresh\" content=\"5\">http")
        );
    }

    #[test]
    fn html_escaping() {
        assert_eq!(esc("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
    }

    #[test]
    fn basic_credentials_carry_the_token_as_password_under_any_user() {
        let token = b"s3cret";
        let basic =
            |userpass: &str| format!("Basic {}", crate::config::base64(userpass.as_bytes()));
        assert!(basic_token_ok(basic("admin:s3cret").as_bytes(), token));
        assert!(basic_token_ok(basic(":s3cret").as_bytes(), token));
        assert!(basic_token_ok(
            basic("x:y:s3cret").replace("Basic", "bASIC").as_bytes(),
            b"y:s3cret"
        ));
        assert!(!basic_token_ok(basic("admin:s3cre").as_bytes(), token));
        assert!(
            !basic_token_ok(basic("s3cret").as_bytes(), token),
            "no colon"
        );
        assert!(!basic_token_ok(b"Bearer s3cret", token));
        assert!(!basic_token_ok(b"Basic !!!!", token));
        assert!(!basic_token_ok(b"Basic YQ=a", token), "padding inside");
    }

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "abcd", "user:pässwörd"] {
            let enc = crate::config::base64(s.as_bytes());
            assert_eq!(
                base64_decode(enc.as_bytes()).unwrap(),
                s.as_bytes(),
                "{enc}"
            );
        }
        assert_eq!(base64_decode(b"YQ"), None, "unpadded");
        assert_eq!(base64_decode(b"Y==="), None);
    }
}
