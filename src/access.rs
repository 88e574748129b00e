//! Admission: who may use the proxy and for what, checked before anything else happens. The
//! client's address against `access.allow` (at accept), its `Proxy-Authorization` against
//! `access.users` (compared in constant time, against every account), CONNECT ports against
//! `access.connect_ports`, and targets that are ferry itself (its listener or admin server)
//! refused, so it cannot loop or be used to reach its own admin API. The addresses a direct
//! route connects to are checked again after resolution (`check_address`). On a reverse
//! listener, a site's `auth` is checked once routing has found the site and route
//! (`site_gate`): Basic credentials and bearer tokens here, an external auth service by the
//! session (`session::auth`).

use crate::config::{Config, ForwardAuth, Reverse, SiteAuth};
use crate::control::constant_time_eq;
use crate::http::reply::Refusal;
use crate::http::request::{MethodKind, RequestHead};
use crate::listener::Role;
use crate::route::reverse::Plan;
use crate::shared::Shared;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;

/// Checks a parsed request against `access.users` and `access.connect_ports`, and an IP
/// literal target against ferry's own addresses.
pub fn check_request(
    config: &Config,
    listening: &[SocketAddr],
    shared: &Shared,
    req: &RequestHead<'_, '_>,
) -> Result<(), Refusal> {
    let creds = &config.access.credentials;
    if !creds.is_empty() {
        let given = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("proxy-authorization"))
            .map(|h| crate::http::trim(h.value));
        if !any_secret(given, creds) {
            return Err(Refusal::new(407, "proxy authentication required")
                .with("Proxy-Authenticate", "Basic realm=\"ferry\"".into()));
        }
    }
    // An upgrade (WebSocket) becomes a raw tunnel as a CONNECT does: the same ports apply.
    if req.kind == MethodKind::Connect || req.upgrade {
        if let Some(ports) = &config.access.connect_ports {
            if !ports.contains(&req.target.port) {
                return Err(Refusal::new(403, "a tunnel to this port is not allowed"));
            }
        }
    }
    if let Some(ip) = req.target.ip {
        if is_self(
            SocketAddr::new(ip, req.target.port),
            listening,
            config,
            shared,
        ) {
            return Err(refuse_self());
        }
    }
    Ok(())
}

/// True when `given` is one of `secrets`. Every one is compared, without an early exit, so
/// timing does not tell which one was close.
fn any_secret(given: Option<&[u8]>, secrets: &[String]) -> bool {
    let mut ok = false;
    if let Some(given) = given {
        for s in secrets {
            ok |= constant_time_eq(given, s.as_bytes());
        }
    }
    ok
}

/// What a site's `auth` says of a request that routing sent to one of its backends.
#[derive(Debug)]
pub enum SiteGate<'c> {
    /// The site has no auth, the route is public (`auth: none`), or the credentials are good.
    Open,
    /// The site's auth service decides (`session::auth`).
    Ask(&'c ForwardAuth),
}

/// Checks `req`, routed by `plan`, against its site's `auth` (DESIGN §7.3). Basic credentials
/// and bearer tokens are checked here; a missing or wrong one is a 401 with the site's
/// challenge, answered without closing the connection (the client may try again on it). The
/// client's `Authorization` goes on to the backend as it came (it may use it too), and is
/// never logged.
pub fn site_gate<'c>(
    rev: &'c Reverse,
    plan: &Plan,
    req: &RequestHead<'_, '_>,
) -> Result<SiteGate<'c>, Refusal> {
    let site = &rev.sites[plan.site];
    if site.routes[plan.route].public {
        return Ok(SiteGate::Open);
    }
    if site.auth.is_some() && authorization_fields(req) > 1 {
        // A singleton field (RFC 9110 §11.6.2): ferry (or the auth service) would judge one
        // while the backend may read another (many keep the last), an identity nobody checked.
        return Err(Refusal::new(400, "a request may carry one Authorization field").kept());
    }
    let (secrets, given, challenge) = match &site.auth {
        None => return Ok(SiteGate::Open),
        Some(SiteAuth::Forward(f)) => return Ok(SiteGate::Ask(f)),
        Some(SiteAuth::Basic {
            credentials,
            challenge,
        }) => (credentials, authorization(req, "basic"), challenge),
        Some(SiteAuth::Bearer { tokens, challenge }) => {
            (tokens, authorization(req, "bearer"), challenge)
        }
    };
    if any_secret(given, secrets) {
        return Ok(SiteGate::Open);
    }
    let (why, challenge) = match given {
        None => (
            format!("site {} needs credentials", site.name),
            challenge.clone(),
        ),
        // RFC 6750 §3.1: a token that was sent and refused is `invalid_token`.
        Some(_) if matches!(site.auth, Some(SiteAuth::Bearer { .. })) => (
            format!("the token is not valid for site {}", site.name),
            format!("{challenge}, error=\"invalid_token\""),
        ),
        Some(_) => (
            format!("the credentials are not valid for site {}", site.name),
            challenge.clone(),
        ),
    };
    Err(Refusal::new(401, why)
        .with("WWW-Authenticate", challenge)
        .kept())
}

/// How many `Authorization` fields the request has.
fn authorization_fields(req: &RequestHead<'_, '_>) -> usize {
    req.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("authorization"))
        .count()
}

/// The credentials of the request's (first) `Authorization` field when its scheme is
/// `scheme` (any case, RFC 9110 §11.1).
fn authorization<'r>(req: &'r RequestHead<'_, '_>, scheme: &str) -> Option<&'r [u8]> {
    let v = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
        .map(|h| crate::http::trim(h.value))?;
    let sp = v.iter().position(|&b| b == b' ' || b == b'\t')?;
    v[..sp]
        .eq_ignore_ascii_case(scheme.as_bytes())
        .then(|| crate::http::trim(&v[sp..]))
}

/// What happens to a connection just accepted.
pub enum Admit {
    Yes,
    /// Answer this (a whole response) and close.
    Refuse(&'static [u8]),
    /// Close without a word (a PROXY header was required from a peer that may not send one).
    Close,
}

/// Whether a client at `ip` may use a listener of `role`: `access.allow` for the forward
/// proxy, `reverse.allow` for the sites. With `proxy_protocol`, only `trusted_proxies` may
/// connect at all (the client they announce is checked against `reverse.allow` once their
/// PROXY header has been read).
pub fn admit(config: &Config, role: Role, ip: IpAddr) -> Admit {
    match (role, &config.reverse) {
        (Role::Reverse, Some(r)) if r.proxy_protocol => match r.trusts(ip) {
            true => Admit::Yes,
            false => Admit::Close,
        },
        (Role::Reverse, Some(r)) if r.allows(ip) => Admit::Yes,
        (Role::Reverse, _) => Admit::Refuse(DENIED_SITE),
        (Role::Forward, _) if config.access.allows(ip) => Admit::Yes,
        (Role::Forward, _) => Admit::Refuse(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 33\r\nConnection: close\r\n\r\nthis client may not use the proxy\n"),
    }
}

/// The answer to a client outside `reverse.allow`.
pub const DENIED_SITE: &[u8] = b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 33\r\nConnection: close\r\n\r\nthis client may not use the sites\n";

/// Checks an address a direct route is about to connect to, a literal or what a name
/// resolved to: ferry itself, no destination at all, or refused by the rules as a literal
/// target would be. DESIGN §5: a name cannot reach what its address may not.
pub fn check_address(
    addr: SocketAddr,
    listening: &[SocketAddr],
    config: &Config,
    shared: &Shared,
) -> Result<(), Refusal> {
    if is_self(addr, listening, config, shared) {
        return Err(refuse_self());
    }
    // 0.0.0.0 and :: are no destination (RFC 1122 §3.2.1.3, RFC 4291 §2.5.2), yet Linux
    // connects them to the local host: past a cidr:127.0.0.0/8 reject, for one.
    if addr.ip().to_canonical().is_unspecified() {
        return Err(Refusal::new(403, "the target address is not a destination"));
    }
    if crate::route::refuses_address(config, addr) {
        return Err(Refusal::new(
            403,
            "the target's address is denied by a routing rule",
        ));
    }
    Ok(())
}

/// The refusal for a request whose target is ferry itself.
pub fn refuse_self() -> Refusal {
    Refusal::new(403, "the target is this proxy")
}

/// True when `addr` is one of ferry's listeners (`listening`, as this worker has them bound)
/// or its admin server. Both sides are
/// compared in canonical form: `::ffff:127.0.0.1` reaches a dual-stack or IPv4 socket on
/// 127.0.0.1 (RFC 4291 §2.5.5.2), yet as an `Ipv6Addr` it is neither loopback nor equal.
pub fn is_self(
    addr: SocketAddr,
    listening: &[SocketAddr],
    config: &Config,
    shared: &Shared,
) -> bool {
    let target = addr.ip().to_canonical();
    let matches = |ip: IpAddr, port: u16| {
        let ip = ip.to_canonical();
        port != 0
            && addr.port() == port
            && (target == ip
                || target.is_unspecified()
                || (ip.is_unspecified() && (target.is_loopback() || target.is_unspecified()))
                || (ip.is_loopback() && target.is_loopback()))
    };
    listening.iter().any(|l| matches(l.ip(), l.port()))
        || config
            .admin_listen
            .is_some_and(|a| matches(a.ip(), shared.admin_port.load(Ordering::Relaxed)))
}
