//! Validation: a `RawConfig` as written becomes the `Config` workers use, or every problem
//! found, each with the key path it is about.

use super::*;

pub(super) fn validate(raw: RawConfig, source: Option<&Path>) -> Result<Config, ConfigErrors> {
    let mut errs = Vec::new();
    let mut err = |path: &str, msg: String| {
        errs.push(ConfigError {
            path: path.to_string(),
            msg,
        })
    };

    if raw.listen.is_none() && raw.reverse.is_none() {
        err(
            "listen",
            "required unless reverse is set (e.g. \"127.0.0.1:8080\")".into(),
        );
    }
    let listen = match raw.listen.as_deref() {
        None => None,
        Some(s) => socket_addr(s).map_err(|m| err("listen", m)).ok(),
    };
    let admin_listen = match raw.admin_listen.as_deref() {
        None => None,
        Some(s) => socket_addr(s).map_err(|m| err("admin_listen", m)).ok(),
    };
    let defaults =
        health(&raw.health_check, None).map_err(|(k, m)| err(&format!("health_check.{k}"), m));
    let l = &raw.limits;
    for (key, v) in [
        ("limits.connect_timeout_secs", l.connect_timeout_secs),
        ("limits.header_timeout_secs", l.header_timeout_secs),
        ("limits.idle_timeout_secs", l.idle_timeout_secs),
    ] {
        if v == 0 {
            err(key, "must be at least 1".into());
        }
    }
    // A time added to "now" must not overflow it (a panic on every request once).
    for (key, v) in [
        ("limits.connect_timeout_secs", l.connect_timeout_secs),
        ("limits.header_timeout_secs", l.header_timeout_secs),
        ("limits.idle_timeout_secs", l.idle_timeout_secs),
        ("limits.request_timeout_secs", l.request_timeout_secs),
        ("limits.shutdown_timeout_secs", l.shutdown_timeout_secs),
        ("reload_interval_secs", raw.reload_interval_secs),
    ] {
        if v > MAX_SECS {
            err(key, format!("{v} is over {MAX_SECS} (a year)"));
        }
    }
    if !(1024..=1 << 20).contains(&l.max_header_bytes) {
        err(
            "limits.max_header_bytes",
            format!("{} is out of range 1024..=1048576", l.max_header_bytes),
        );
    }
    if raw
        .admin
        .token
        .as_deref()
        .is_some_and(|t| t.is_empty() || t.bytes().any(|b| !b.is_ascii_graphic()))
    {
        err(
            "admin.token",
            "must be non-empty printable ASCII without spaces".into(),
        );
    }
    let allow_raw: Vec<String> = match &raw.access.allow {
        Some(list) => list.clone(),
        None => DEFAULT_ALLOW.iter().map(|s| s.to_string()).collect(),
    };
    let allow = cidrs(&allow_raw, "access.allow", &mut err);
    let mut credentials = Vec::new();
    for (i, u) in raw.access.users.iter().enumerate() {
        if u.username.is_empty() || u.username.contains(':') {
            err(
                &format!("access.users[{i}].username"),
                "must be non-empty and without ':'".into(),
            );
        } else {
            credentials.push(format!(
                "Basic {}",
                base64(format!("{}:{}", u.username, u.password).as_bytes())
            ));
        }
    }
    if let Some(ports) = &raw.access.connect_ports {
        if ports.contains(&0) {
            err("access.connect_ports", "0 is not a port".into());
        }
    }
    if raw.workers > 256 {
        err("workers", format!("{} is more than 256", raw.workers));
    }
    let workers = match raw.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut domains = DomainSet::default();
    for (i, d) in raw.domain_policy.domains.iter().enumerate() {
        if let Err(m) = domains.add(d) {
            err(&format!("domain_policy.domains[{i}]"), m.to_string());
        }
    }

    // Pools: `default` from the top-level keys, then the named ones. One state per URL.
    let mut states: HashMap<String, Arc<UpstreamState>> = HashMap::new();
    let mut pools = Vec::new();
    let top = RawPool {
        upstream: raw.upstream,
        mode: Some(raw.mode),
        hash_key: raw.hash_key,
        retries: raw.retries,
        on_all_down: raw.on_all_down,
        health_check: RawHealthCheck::default(),
    };
    let mut named: Vec<(String, RawPool)> = vec![("default".to_string(), top)];
    for (name, p) in raw.pools {
        if name == "default" || name == "direct" || name == "reject" {
            err(
                &format!("pools.{name}"),
                "this name is reserved (the top-level upstream list is the pool named default)"
                    .into(),
            );
            continue;
        }
        named.push((name, p));
    }
    for (name, p) in &named {
        let at = |key: &str| {
            if name == "default" {
                key.to_string()
            } else {
                format!("pools.{name}.{key}")
            }
        };
        let hc = match (&defaults, name.as_str()) {
            (Ok(d), "default") => Some(d.clone()),
            (Ok(d), _) => health(&p.health_check, Some(d))
                .map_err(|(k, m)| err(&at(&format!("health_check.{k}")), m))
                .ok(),
            (Err(_), _) => None,
        };
        let mut members: Vec<UpstreamSpec> = Vec::new();
        for (i, u) in p.upstream.iter().enumerate() {
            match upstream(u, workers, &mut states) {
                Ok(spec) => {
                    if members.iter().any(|o| o.url == spec.url) {
                        // Even with another username: within a pool a proxy is one member.
                        err(
                            &at(&format!("upstream[{i}].url")),
                            format!("{} is listed twice", spec.url),
                        );
                    }
                    members.push(spec);
                }
                Err((key, m)) => err(&at(&format!("upstream[{i}].{key}")), m),
            }
        }
        let retries = match p.retries {
            None => members.len().clamp(1, 3),
            Some(n @ 1..=10) => n as usize,
            Some(n) => {
                err(&at("retries"), format!("{n} is out of range 1..=10"));
                1
            }
        };
        if name != "default" && p.upstream.is_empty() {
            err(
                &at("upstream"),
                "a named pool needs at least one upstream".into(),
            );
        }
        if let Some(health) = hc {
            let mode = p.mode.unwrap_or_default();
            pools.push(PoolSpec {
                name: name.clone(),
                rotations: rotations(mode, &members),
                members,
                mode,
                hash_key: p.hash_key.unwrap_or_default(),
                retries,
                on_all_down: p.on_all_down.unwrap_or_default(),
                health,
                breaker: None,
            });
        }
    }
    let mut rules = RuleSet::default();
    for (i, r) in raw.rules.iter().enumerate() {
        let via = match r.via.as_str() {
            "direct" => Some(Via::Direct),
            "reject" => Some(Via::Reject),
            name => match named.iter().position(|(n, _)| n == name) {
                Some(0) if named[0].1.upstream.is_empty() => {
                    err(
                        &format!("rules[{i}].via"),
                        "the default pool has no upstreams".into(),
                    );
                    None
                }
                Some(p) => Some(Via::Pool(p)),
                None => {
                    err(
                        &format!("rules[{i}].via"),
                        format!("{name:?} is not direct, reject or a pool name"),
                    );
                    None
                }
            },
        };
        if let Some(via) = via {
            if let Err((j, m)) = rules.push(&r.exprs, via) {
                err(&format!("rules[{i}].match[{j}]"), m);
            }
        }
    }

    let reverse = raw.reverse.and_then(|r| {
        let connect = Duration::from_secs(l.connect_timeout_secs);
        super::reverse::validate(r, workers, connect, &mut err)
    });
    if let (Some(a), Some(r)) = (listen, &reverse) {
        if a.port() != 0 && r.listen.contains(&a) {
            err(
                "reverse.listen",
                format!("{a} is also the forward listen address"),
            );
        }
    }

    if raw.admin.persist && !cfg!(feature = "api") {
        err(
            "admin.persist",
            "the control API needs a ferry built with the `api` feature".into(),
        );
    }
    let (tls_listen, tls_settings) = super::tls::validate(
        raw.tls.as_ref(),
        raw.tls_listen.as_deref(),
        source,
        &mut err,
    );
    if let Some(t) = tls_listen.filter(|t| t.port() != 0) {
        if listen == Some(t) {
            err(
                "tls_listen",
                format!("{t} is also the forward listen address"),
            );
        }
        if let Some(r) = reverse.as_ref() {
            if r.listen.contains(&t) || r.tls_listen.contains(&t) {
                err(
                    "tls_listen",
                    format!("{t} is also a reverse listen address"),
                );
            }
        }
    }
    #[cfg(feature = "tls")]
    let tls = tls_runtime(tls_settings, tls_listen.is_some(), &reverse, &mut err);
    #[cfg(not(feature = "tls"))]
    let _ = tls_settings;

    if !errs.is_empty() {
        return Err(ConfigErrors(errs));
    }
    let secs = Duration::from_secs;
    Ok(Config {
        source: source.map(Path::to_path_buf),
        listen,
        admin_listen,
        admin_token: raw.admin.token,
        admin_persist: raw.admin.persist,
        access: Access {
            allow,
            credentials,
            connect_ports: raw.access.connect_ports,
        },
        reload_interval_secs: raw.reload_interval_secs,
        access_log: raw.access_log,
        via: raw.via,
        limits: Limits {
            max_connections: l.max_connections,
            request_timeout: (l.request_timeout_secs > 0).then(|| secs(l.request_timeout_secs)),
            shutdown_timeout: secs(l.shutdown_timeout_secs),
            connect_timeout: secs(l.connect_timeout_secs),
            header_timeout: secs(l.header_timeout_secs),
            idle_timeout: secs(l.idle_timeout_secs),
            max_header_bytes: l.max_header_bytes,
        },
        domain_policy: DomainPolicy {
            mode: raw.domain_policy.mode,
            domains,
        },
        pools,
        rules,
        workers,
        log_level: raw.log_level,
        reverse,
        tls_listen,
        #[cfg(feature = "tls")]
        tls,
    })
}

/// Parses a list of CIDRs written at `key`.
pub(super) fn cidrs(
    list: &[String],
    key: &str,
    err: &mut dyn FnMut(&str, String),
) -> Vec<(std::net::IpAddr, u8)> {
    let mut out = Vec::new();
    for (i, c) in list.iter().enumerate() {
        match crate::route::rules::parse_cidr(c) {
            Ok(net) => out.push(net),
            Err(m) => err(&format!("{key}[{i}]"), m),
        }
    }
    out
}

/// The shared round-robin sequences a pool of `mode` needs (see `PoolSpec::rotations`).
pub(super) fn rotations(mode: Mode, members: &[UpstreamSpec]) -> Vec<(u32, Rotation)> {
    let level = |p: Option<u32>| {
        let m: Vec<(usize, u32)> = members
            .iter()
            .enumerate()
            .filter(|(_, u)| p.is_none_or(|p| u.priority == p))
            .map(|(i, u)| (i, u.weight))
            .collect();
        Rotation::new(&m)
    };
    match mode {
        Mode::RoundRobin => vec![(0, level(None))],
        Mode::Priority => {
            let mut levels: Vec<u32> = members.iter().map(|u| u.priority).collect();
            levels.sort_unstable();
            levels.dedup();
            levels.into_iter().map(|p| (p, level(Some(p)))).collect()
        }
        _ => Vec::new(),
    }
}

/// Health settings from `raw`, each missing key taken from `base` (or the defaults).
/// The longest time any `*_secs` key may say: a year.
pub(super) const MAX_SECS: u64 = 365 * 24 * 3600;

fn health(
    raw: &RawHealthCheck,
    base: Option<&HealthCheck>,
) -> Result<HealthCheck, (&'static str, String)> {
    let interval = raw
        .interval_secs
        .or(base.map(|b| b.interval.as_secs()))
        .unwrap_or(30);
    let timeout = raw
        .timeout_secs
        .or(base.map(|b| b.timeout.as_secs()))
        .unwrap_or(5);
    if interval == 0 {
        return Err(("interval_secs", "must be at least 1".into()));
    }
    if timeout == 0 {
        return Err(("timeout_secs", "must be at least 1".into()));
    }
    if interval > MAX_SECS {
        return Err((
            "interval_secs",
            format!("{interval} is over {MAX_SECS} (a year)"),
        ));
    }
    if timeout > MAX_SECS {
        return Err((
            "timeout_secs",
            format!("{timeout} is over {MAX_SECS} (a year)"),
        ));
    }
    let url = match (&raw.url, base.map(|b| &b.probe)) {
        (Some(u), _) => u.clone(),
        (None, Some(Probe::Through { url, .. })) => url.clone(),
        _ => DEFAULT_PROBE_URL.to_string(),
    };
    let host = match url.get(..7) {
        Some(s) if s.eq_ignore_ascii_case("http://") => {
            let rest = &url[7..];
            let auth = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
            crate::http::request::parse_authority(auth, Some(80))
                .map_err(|_| ("url", format!("{url:?} has no valid host")))?;
            auth.to_string()
        }
        _ => return Err(("url", format!("{url:?}: the probe URL must be http://"))),
    };
    let expect_status = raw
        .expect_status
        .or(base.map(|b| b.expect.0))
        .unwrap_or(204);
    if !(100..=599).contains(&expect_status) {
        return Err((
            "expect_status",
            format!("{expect_status} is not an HTTP status"),
        ));
    }
    let fall = raw.fall.or(base.map(|b| b.fall)).unwrap_or(1);
    let rise = raw.rise.or(base.map(|b| b.rise)).unwrap_or(1);
    if !(1..=100).contains(&fall) {
        return Err(("fall", format!("{fall} is out of range 1..=100")));
    }
    if !(1..=100).contains(&rise) {
        return Err(("rise", format!("{rise} is out of range 1..=100")));
    }
    Ok(HealthCheck {
        interval: Duration::from_secs(interval),
        timeout: Duration::from_secs(timeout),
        probe: Probe::Through { url, host },
        expect: (expect_status, expect_status),
        fall,
        rise,
        probe_online: raw
            .probe_online
            .or(base.map(|b| b.probe_online))
            .unwrap_or(false),
    })
}

/// `127.0.0.1:8080`, `[::1]:8080`, or `localhost:8080` (resolved once, here).
pub(super) fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bad = || {
        format!("{s:?} is not an address (expected host:port, e.g. 127.0.0.1:8080 or [::1]:8080)")
    };
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => s
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// Validates one `upstream[]` entry; the error names the key within the entry. Credentials
/// come from `username`/`password` or from the URL itself (`http://user:pass@host:port`,
/// percent-escapes decoded), not both. Entries with the same URL and username share one state.
fn upstream(
    u: &RawUpstream,
    workers: usize,
    states: &mut HashMap<String, Arc<UpstreamState>>,
) -> Result<UpstreamSpec, (&'static str, String)> {
    let rest = match u.url.get(..7) {
        Some(s) if s.eq_ignore_ascii_case("http://") => &u.url[7..],
        _ => {
            return Err((
                "url",
                format!("{:?}: only http:// upstream proxies are supported", u.url),
            ))
        }
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') || authority.contains('?') {
        return Err(("url", "an upstream proxy URL has no path".into()));
    }
    // userinfo ends at the last '@' (RFC 3986 §3.2.1); the shown URL keeps the user as
    // written and masks the password.
    let (in_url, authority, config_url) = match authority.rsplit_once('@') {
        None => (None, authority, u.url.clone()),
        Some((info, hostport)) => {
            let Some((user, pass)) = info.split_once(':') else {
                return Err((
                    "url",
                    "credentials in the URL are user:password@ (the password is missing)".into(),
                ));
            };
            if u.username.is_some() || u.password.is_some() {
                return Err((
                    "url",
                    "credentials are both in the URL and in username/password".into(),
                ));
            }
            let decode = |s: &str| {
                percent_decode(s).ok_or(("url", "bad %-escape in the URL's credentials".into()))
            };
            let shown = format!("{}{user}:***@{}", &u.url[..7], &rest[info.len() + 1..]);
            (Some((decode(user)?, decode(pass)?)), hostport, shown)
        }
    };
    let t = crate::http::request::parse_authority(authority, None).map_err(|e| {
        let m = match e {
            crate::http::request::HeadError::Malformed("port missing in CONNECT target") => {
                "port missing".to_string()
            }
            crate::http::request::HeadError::Malformed(m) => m.to_string(),
            _ => "invalid".to_string(),
        };
        ("url", m)
    })?;
    if !(1..=1000).contains(&u.weight) {
        return Err(("weight", format!("{} is out of range 1..=1000", u.weight)));
    }
    let (username, password) = match in_url {
        Some((user, pass)) => (Some(user), Some(pass)),
        None => (u.username.clone(), u.password.clone()),
    };
    let auth = match (&username, &password) {
        (Some(user), Some(pass)) => {
            if user.contains(':') {
                return Err(("username", "must not contain ':'".into()));
            }
            Some(format!(
                "Basic {}",
                base64(format!("{user}:{pass}").as_bytes())
            ))
        }
        (None, None) => None,
        (Some(_), None) => return Err(("password", "missing (username is set)".into())),
        (None, Some(_)) => return Err(("username", "missing (password is set)".into())),
    };
    let host = t.host.to_ascii_lowercase();
    let url = if t.is_v6() {
        format!("http://[{host}]:{}", t.port)
    } else {
        format!("http://{host}:{}", t.port)
    };
    // Logs say which account; `/status` and metrics show `config_url` instead.
    let name = match &username {
        Some(user) => format!("http://{user}:***@{}", &url["http://".len()..]),
        None => url.clone(),
    };
    let identity = format!("{url} {}", username.as_deref().unwrap_or(""));
    let state = states
        .entry(identity)
        .or_insert_with(|| UpstreamState::new(name, workers))
        .clone();
    Ok(UpstreamSpec {
        url,
        config_url,
        host,
        port: t.port,
        weight: u.weight,
        priority: u.priority,
        max_active: 0,
        username,
        auth,
        state,
        tls: None,
    })
}

/// Decodes `%XX` escapes (RFC 3986 §2.1); None when one is malformed or the result is not
/// UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Builds what TLS needs at run time from the `tls:` block and what else the config asks of
/// it: certificates when something listens with TLS, roots when an `https://` server is
/// verified.
#[cfg(feature = "tls")]
fn tls_runtime(
    settings: Option<super::tls::TlsSettings>,
    forward_tls: bool,
    reverse: &Option<super::Reverse>,
    err: &mut dyn FnMut(&str, String),
) -> Option<Arc<crate::tls::Tls>> {
    let servers = reverse
        .iter()
        .flat_map(|r| &r.backends)
        .flat_map(|b| &b.pool.members)
        .filter_map(|u| u.tls);
    let mut needs = super::tls::Needs {
        serve: forward_tls || reverse.as_ref().is_some_and(|r| !r.tls_listen.is_empty()),
        verify: false,
        unverified: false,
    };
    for t in servers {
        needs.verify |= t.verify;
        needs.unverified |= !t.verify;
    }
    if !(needs.serve || needs.verify || needs.unverified) {
        return None;
    }
    if needs.serve && settings.is_none() {
        err(
            "tls",
            "a TLS listener needs certificates: add tls.certificates".into(),
        );
        return None;
    }
    match crate::tls::build(settings.unwrap_or_default(), &needs) {
        Ok(t) => Some(Arc::new(t)),
        Err(errs) => {
            for (k, m) in errs {
                err(&k, m);
            }
            None
        }
    }
}
