//! Validation of a reverse backend (DESIGN §7, §7.3): its servers as pool members, hash key,
//! health checks, keep-alive, retries, circuit breaker and queue, each error with its key path.

use super::reverse::*;
use super::reverse_schema::*;
use super::validate::MAX_SECS;
use super::{Breaker, HealthCheck, PoolSpec, Probe, UpstreamSpec};
use crate::upstream::queue::BackendQueue;
use crate::upstream::UpstreamState;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[allow(clippy::too_many_arguments)]
pub(super) fn backend(
    name: &str,
    b: &RawBackend,
    workers: usize,
    connect_timeout: Duration,
    at: &str,
    states: &mut HashMap<String, Arc<UpstreamState>>,
    err: &mut dyn FnMut(&str, String),
) -> Option<Backend> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
    {
        err(
            at,
            "a backend name is letters, digits, '-', '_' and '.'".into(),
        );
    }
    if b.servers.is_empty() {
        err(&format!("{at}.servers"), "at least one server".into());
    }
    let mut members: Vec<UpstreamSpec> = Vec::new();
    for (i, s) in b.servers.iter().enumerate() {
        let key = format!("{at}.servers[{i}]");
        match server(name, s, workers, states) {
            Ok(m) if members.iter().any(|o| o.url == m.url) => {
                err(&format!("{key}.url"), format!("{} is listed twice", m.url))
            }
            Ok(m) => members.push(m),
            Err((k, msg)) => err(&format!("{key}.{k}"), msg),
        }
    }
    let hash_key = match b.hash_key.as_deref() {
        None | Some("client_ip") => BackendHashKey::ClientIp,
        Some("host") => BackendHashKey::Host,
        Some("path") => BackendHashKey::Path,
        Some(k) => match k.split_once(':') {
            Some(("header", n)) if !n.is_empty() && n.bytes().all(is_token_byte) => {
                BackendHashKey::Header(n.to_string())
            }
            Some(("cookie", n)) if !n.is_empty() && n.bytes().all(is_token_byte) => {
                BackendHashKey::Cookie(n.to_string())
            }
            _ => {
                err(
                    &format!("{at}.hash_key"),
                    format!("{k:?} is not client_ip, host, path, header:NAME or cookie:NAME"),
                );
                BackendHashKey::ClientIp
            }
        },
    };
    let health = match &b.health_check {
        Some(h) => backend_health(h, &format!("{at}.health_check"), err)?,
        // Without active checks, a server that passive health took out is brought back by
        // its circuit's half-open trial (DESIGN §7.3), nothing else.
        None => HealthCheck {
            interval: Duration::from_secs(five()),
            timeout: connect_timeout.min(Duration::from_secs(five())),
            probe: Probe::Passive,
            expect: (0, 0),
            fall: three(),
            rise: 1,
            probe_online: false,
        },
    };
    if b.keepalive.max_idle > 1024 {
        err(
            &format!("{at}.keepalive.max_idle"),
            format!("{} is more than 1024", b.keepalive.max_idle),
        );
    }
    if !(1..=MAX_SECS).contains(&b.keepalive.idle_timeout_secs) {
        err(
            &format!("{at}.keepalive.idle_timeout_secs"),
            format!(
                "{} is out of range 1..={MAX_SECS}",
                b.keepalive.idle_timeout_secs
            ),
        );
    }
    let r = &b.retries;
    let mut on = RetryOn::default();
    for (i, w) in r.on.iter().enumerate() {
        match RetryOn::parse(w) {
            Some(c) => on.0 |= c.0,
            None => err(
                &format!("{at}.retries.on[{i}]"),
                format!("{w:?} is not connect_failure, reset, timeout, 502, 503 or 504"),
            ),
        }
    }
    if r.attempts > 10 {
        err(
            &format!("{at}.retries.attempts"),
            format!("{} is more than 10", r.attempts),
        );
    }
    if r.backoff_ms > r.backoff_max_ms || r.backoff_max_ms > 60_000 {
        err(
            &format!("{at}.retries.backoff_max_ms"),
            format!(
                "{} must be at least backoff_ms ({}) and at most 60000",
                r.backoff_max_ms, r.backoff_ms
            ),
        );
    }
    if r.budget_percent > 100 {
        err(
            &format!("{at}.retries.budget_percent"),
            format!("{} is more than 100", r.budget_percent),
        );
    }
    // Every backend's servers have a circuit (DESIGN §7.3's defaults); without a
    // `circuit_breaker` block it opens at health_check's `fall`, so that passive health and
    // the circuit stay one mechanism with one threshold.
    let breaker = Some(match &b.circuit_breaker {
        Some(c) => Breaker {
            failures: c.failures,
            open: Duration::from_secs(c.open_secs),
            half_open: c.half_open_requests,
        },
        None => Breaker {
            failures: health.fall,
            open: Duration::from_secs(ten()),
            half_open: 1,
        },
    });
    if let Some(c) = &b.circuit_breaker {
        for (k, v, max) in [
            ("failures", c.failures as u64, 100),
            ("open_secs", c.open_secs, 3600),
            ("half_open_requests", c.half_open_requests as u64, 1000),
        ] {
            if !(1..=max).contains(&v) {
                err(
                    &format!("{at}.circuit_breaker.{k}"),
                    format!("{v} is out of range 1..={max}"),
                );
            }
        }
    }
    let queue = queue(&b.queue, workers, &format!("{at}.queue"), err);
    let rotations = super::validate::rotations(b.mode, &members);
    Some(Backend {
        name: name.to_string(),
        pool: PoolSpec {
            name: name.to_string(),
            retries: 1 + r.attempts.min(10) as usize,
            members,
            mode: b.mode,
            hash_key: Default::default(),
            on_all_down: Default::default(),
            health,
            rotations,
            breaker,
        },
        hash_key,
        max_idle: b.keepalive.max_idle,
        idle_timeout: Duration::from_secs(b.keepalive.idle_timeout_secs.clamp(1, MAX_SECS)),
        retries: Retries {
            attempts: r.attempts.min(10),
            on,
            backoff: Duration::from_millis(r.backoff_ms),
            backoff_max: Duration::from_millis(r.backoff_max_ms.min(60_000)),
            budget_percent: r.budget_percent.min(100),
        },
        shared: crate::upstream::BackendState::new(),
        queue,
    })
}

/// Tickets a backend's queue may hold at most (each is a few dozen bytes, and its request a
/// client connection with its head).
const MAX_QUEUED: u32 = 100_000;

fn queue(q: &RawQueue, workers: usize, at: &str, err: &mut dyn FnMut(&str, String)) -> QueueSpec {
    if q.max_queued > 0 && q.max_active == 0 {
        err(
            &format!("{at}.max_queued"),
            "needs max_active: without a limit on requests in flight nothing ever waits".into(),
        );
    }
    if q.max_queued > MAX_QUEUED {
        err(
            &format!("{at}.max_queued"),
            format!("{} is more than {MAX_QUEUED}", q.max_queued),
        );
    }
    if !(1..=MAX_SECS).contains(&q.timeout_secs) {
        err(
            &format!("{at}.timeout_secs"),
            format!("{} is out of range 1..={MAX_SECS}", q.timeout_secs),
        );
    }
    QueueSpec {
        max_active: q.max_active,
        max_queued: q.max_queued,
        timeout: Duration::from_secs(q.timeout_secs.clamp(1, MAX_SECS)),
        state: BackendQueue::new(q.max_active, q.max_queued, workers),
    }
}

fn backend_health(
    h: &RawBackendHealth,
    at: &str,
    err: &mut dyn FnMut(&str, String),
) -> Option<HealthCheck> {
    let mut ok = true;
    let mut bad = |k: &str, m: String| {
        err(&format!("{at}.{k}"), m);
        ok = false;
    };
    if !h.path.starts_with('/') || !is_field_value(&h.path) || h.path.contains([' ', '\t']) {
        bad(
            "path",
            format!("{:?} must be a path starting with '/'", h.path),
        );
    }
    for (k, v) in [
        ("interval_secs", h.interval_secs),
        ("timeout_secs", h.timeout_secs),
    ] {
        if !(1..=MAX_SECS).contains(&v) {
            bad(k, format!("{v} is out of range 1..={MAX_SECS}"));
        }
    }
    for (k, v) in [("rise", h.rise), ("fall", h.fall)] {
        if !(1..=100).contains(&v) {
            bad(k, format!("{v} is out of range 1..=100"));
        }
    }
    let expect = status_range(&h.expect_status);
    if expect.is_none() {
        bad(
            "expect_status",
            format!(
                "{:?} is not a status or a range like \"200-399\"",
                h.expect_status
            ),
        );
    }
    let expect = expect?;
    ok.then(|| HealthCheck {
        interval: Duration::from_secs(h.interval_secs),
        timeout: Duration::from_secs(h.timeout_secs),
        probe: Probe::Get {
            path: h.path.clone(),
        },
        expect,
        fall: h.fall,
        rise: h.rise,
        probe_online: true,
    })
}

/// "200", "200-399".
fn status_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    ((100..=599).contains(&a) && (a..=599).contains(&b)).then_some((a, b))
}

/// One `servers[]` entry: `http://host:port` (the port is required), identity backend + URL.
fn server(
    backend: &str,
    s: &RawServer,
    workers: usize,
    states: &mut HashMap<String, Arc<UpstreamState>>,
) -> Result<UpstreamSpec, (&'static str, String)> {
    let lower = s.url.to_ascii_lowercase();
    let https = lower.starts_with("https://");
    let rest = if lower.starts_with("http://") {
        &s.url[7..]
    } else if https && !cfg!(feature = "tls") {
        return Err((
            "url",
            "https:// servers need a ferry built with the `tls` feature".into(),
        ));
    } else if https {
        &s.url[8..]
    } else {
        return Err(("url", format!("{:?} must start with http://", s.url)));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) {
        return Err((
            "url",
            "a server URL is http://host:port, without a path or credentials".into(),
        ));
    }
    let t = crate::http::request::parse_authority(authority, None)
        .map_err(|_| ("url", format!("{:?} needs a host and a port", s.url)))?;
    if t.port == 0 {
        return Err(("url", "port 0 is not a port".into()));
    }
    if !(1..=1000).contains(&s.weight) {
        return Err(("weight", format!("{} is out of range 1..=1000", s.weight)));
    }
    if !https && !s.tls_verify {
        return Err(("tls_verify", "applies to https:// servers only".into()));
    }
    let host = t.host.to_ascii_lowercase();
    let scheme = if https { "https" } else { "http" };
    let url = if t.is_v6() {
        format!("{scheme}://[{host}]:{}", t.port)
    } else {
        format!("{scheme}://{host}:{}", t.port)
    };
    let state = states
        .entry(format!("{backend} {url}"))
        .or_insert_with(|| UpstreamState::server(backend, &url, workers))
        .clone();
    Ok(UpstreamSpec {
        config_url: s.url.clone(),
        url,
        host,
        port: t.port,
        weight: s.weight,
        priority: s.priority,
        max_active: s.max_active,
        username: None,
        auth: None,
        state,
        tls: https.then_some(super::ServerTls {
            verify: s.tls_verify,
        }),
    })
}
