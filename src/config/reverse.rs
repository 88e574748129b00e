//! The reverse role's config (DESIGN §7): the `reverse:` block as written, its defaults, and
//! its validation into sites (hosts, routes, header rules, redirects) and backends (pools of
//! servers that use the forward pools' selection and health machinery).

use super::site_auth::SiteAuth;
use super::validate::{cidrs, socket_addr, MAX_SECS};
use super::PoolSpec;
use crate::metrics::RouteStats;
use crate::route::site::{HostTable, RouteTable};
use crate::upstream::queue::BackendQueue;
use crate::upstream::UpstreamState;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::backend::backend;
pub use super::reverse_schema::*;

// ---- validated ----

/// The reverse role, validated.
#[derive(Debug)]
pub struct Reverse {
    /// Plain-HTTP listeners.
    pub listen: Vec<SocketAddr>,
    /// TLS listeners.
    pub tls_listen: Vec<SocketAddr>,
    /// Client networks allowed on the reverse listeners.
    pub allow: Vec<(IpAddr, u8)>,
    /// Proxies in front of ferry whose forwarding headers (and PROXY headers) are believed.
    pub trusted_proxies: Vec<(IpAddr, u8)>,
    pub proxy_protocol: bool,
    pub sites: Vec<Site>,
    /// Host → site.
    pub hosts: HostTable,
    pub backends: Vec<Backend>,
    /// Requests that found no site (metrics: `site="-"`).
    pub no_site: Arc<RouteStats>,
}

impl Reverse {
    /// True when `ip` may use the reverse listeners.
    pub fn allows(&self, ip: IpAddr) -> bool {
        in_any(&self.allow, ip)
    }

    /// True when `ip` is a proxy in front of ferry.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        in_any(&self.trusted_proxies, ip)
    }
}

fn in_any(nets: &[(IpAddr, u8)], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    nets.iter()
        .any(|&(net, len)| crate::route::rules::in_cidr(ip, net, len))
}

/// One published site.
#[derive(Debug)]
pub struct Site {
    pub name: String,
    /// As written, for `/status`.
    pub hosts: Vec<String>,
    pub https_redirect: bool,
    /// `Strict-Transport-Security: max-age=N` on TLS responses; 0 = none.
    pub hsts_max_age_secs: u64,
    pub headers: HeaderRules,
    /// Who may use the site's backend routes; `None` = everyone.
    pub auth: Option<SiteAuth>,
    pub routes: Vec<SiteRoute>,
    /// Path → route.
    pub table: RouteTable,
    /// Requests of the site that found no route (metrics: `route="-"`).
    pub no_route: Arc<RouteStats>,
}

/// Header edits: `remove` first, then `set` (replaces), then `add` (appends).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeaderOps {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl HeaderOps {
    /// True when the edits touch a field named `name` (it is then not copied as it came).
    pub fn replaces(&self, name: &str) -> bool {
        self.remove.iter().any(|r| r.eq_ignore_ascii_case(name))
            || self.set.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// A site's or route's edits of requests and responses.
#[derive(Debug, Default, Clone)]
pub struct HeaderRules {
    pub request: HeaderOps,
    pub response: HeaderOps,
}

/// What a route does with its requests.
#[derive(Debug, Clone)]
pub enum RouteAction {
    /// Index into `Reverse::backends`.
    Backend(usize),
    Redirect {
        to: String,
        status: u16,
    },
}

/// The Host a request carries to its server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPolicy {
    /// The client's.
    Keep,
    /// The server's `host:port`.
    Backend,
    Literal(String),
}

/// One path route of a site.
#[derive(Debug)]
pub struct SiteRoute {
    pub path: String,
    pub name: String,
    /// Upper-case; empty = any.
    pub methods: Vec<String>,
    pub action: RouteAction,
    pub strip_prefix: bool,
    pub host: HostPolicy,
    pub response_timeout: Duration,
    /// 0 = unlimited.
    pub max_body_bytes: u64,
    /// The site's rules, then the route's, merged once here.
    pub headers: HeaderRules,
    /// `auth: none`: the site's `auth` does not apply here.
    pub public: bool,
    /// Its requests by status class and duration.
    pub stats: Arc<RouteStats>,
}

/// What `hash` mode hashes for a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendHashKey {
    ClientIp,
    Host,
    Path,
    Header(String),
    Cookie(String),
}

/// A backend: a pool of servers, picked and health-checked like the forward role's upstreams.
#[derive(Debug)]
pub struct Backend {
    pub name: String,
    /// The servers as pool members (`retries` = attempts across servers: 1 + `attempts`).
    pub pool: PoolSpec,
    pub hash_key: BackendHashKey,
    /// Idle connections kept per server per worker.
    pub max_idle: usize,
    pub idle_timeout: Duration,
    pub retries: Retries,
    /// What all workers share about the backend (the retry budget), carried across
    /// reloads by name.
    pub shared: Arc<crate::upstream::BackendState>,
    /// Its requests in flight and waiting (`queue:`).
    pub queue: QueueSpec,
}

/// A backend's `queue:` as validated, and the shared queue it configures.
#[derive(Debug)]
pub struct QueueSpec {
    /// Requests in flight at most; 0 = no limit.
    pub max_active: u32,
    /// Requests waiting at most; 0 = none.
    pub max_queued: u32,
    /// How long a request waits at most.
    pub timeout: Duration,
    /// Carried across reloads by backend name; its limits are set from here when a
    /// reloaded config is applied.
    pub state: Arc<BackendQueue>,
}

/// When and how a failed attempt is made again (DESIGN §7.3).
#[derive(Debug, Clone)]
pub struct Retries {
    /// Extra attempts after the first.
    pub attempts: u32,
    pub on: RetryOn,
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub budget_percent: u32,
}

/// The failures a backend retries, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn(pub(super) u8);

impl RetryOn {
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1);
    pub const RESET: RetryOn = RetryOn(2);
    pub const TIMEOUT: RetryOn = RetryOn(4);
    pub const S502: RetryOn = RetryOn(8);
    pub const S503: RetryOn = RetryOn(16);
    pub const S504: RetryOn = RetryOn(32);

    /// True when `self` has every bit of `c`.
    pub fn has(self, c: RetryOn) -> bool {
        c.0 != 0 && self.0 & c.0 == c.0
    }

    /// The condition a server's own status stands for, if it is one of the retryable ones.
    pub fn of_status(status: u16) -> RetryOn {
        match status {
            502 => RetryOn::S502,
            503 => RetryOn::S503,
            504 => RetryOn::S504,
            _ => RetryOn(0),
        }
    }

    pub(super) fn parse(word: &str) -> Option<RetryOn> {
        Some(match word {
            "connect_failure" => RetryOn::CONNECT_FAILURE,
            "reset" => RetryOn::RESET,
            "timeout" => RetryOn::TIMEOUT,
            "502" => RetryOn::S502,
            "503" => RetryOn::S503,
            "504" => RetryOn::S504,
            _ => return None,
        })
    }
}

/// Validates `raw`; errors go to `err` with their key path. `states` carries server state
/// across reloads: the key is backend name + server URL.
pub(super) fn validate(
    raw: RawReverse,
    workers: usize,
    connect_timeout: Duration,
    err: &mut dyn FnMut(&str, String),
) -> Option<Reverse> {
    let mut listen = Vec::new();
    for (i, s) in raw.listen.iter().enumerate() {
        match socket_addr(s) {
            Ok(a) if listen.contains(&a) => err(
                &format!("reverse.listen[{i}]"),
                format!("{a} is listed twice"),
            ),
            Ok(a) => listen.push(a),
            Err(m) => err(&format!("reverse.listen[{i}]"), m),
        }
    }
    let mut tls_listen = Vec::new();
    if !raw.tls_listen.is_empty() && !cfg!(feature = "tls") {
        err(
            "reverse.tls_listen",
            "TLS listeners need a ferry built with the `tls` feature".into(),
        );
    } else {
        for (i, s) in raw.tls_listen.iter().enumerate() {
            match socket_addr(s) {
                Ok(a) if a.port() != 0 && (listen.contains(&a) || tls_listen.contains(&a)) => err(
                    &format!("reverse.tls_listen[{i}]"),
                    format!("{a} is listed twice"),
                ),
                Ok(a) => tls_listen.push(a),
                Err(m) => err(&format!("reverse.tls_listen[{i}]"), m),
            }
        }
    }
    if listen.is_empty() && raw.tls_listen.is_empty() {
        err(
            "reverse.listen",
            "at least one address is needed (e.g. [\"0.0.0.0:80\"])".into(),
        );
    }
    let allow = match &raw.allow {
        Some(list) => cidrs(list, "reverse.allow", err),
        None => vec![(IpAddr::from([0u8; 4]), 0), (IpAddr::from([0u16; 8]), 0)],
    };
    let trusted_proxies = cidrs(&raw.trusted_proxies, "reverse.trusted_proxies", err);
    if raw.proxy_protocol && trusted_proxies.is_empty() {
        err(
            "reverse.proxy_protocol",
            "needs trusted_proxies: a PROXY header is only believed from them, so every connection would be closed".into(),
        );
    }

    // Backends first: routes name them.
    let mut backends = Vec::new();
    let mut states: HashMap<String, Arc<UpstreamState>> = HashMap::new();
    for (name, b) in &raw.backends {
        let at = format!("reverse.backends.{name}");
        if let Some(backend) = backend(name, b, workers, connect_timeout, &at, &mut states, err) {
            backends.push(backend);
        }
    }

    let mut sites = Vec::new();
    let mut host_lists = Vec::new();
    for (i, s) in raw.sites.iter().enumerate() {
        let at = format!("reverse.sites[{i}]");
        if s.hosts.is_empty() {
            err(
                &format!("{at}.hosts"),
                "at least one host (or \"*\")".into(),
            );
        }
        let name = s
            .name
            .clone()
            .or_else(|| s.hosts.first().cloned())
            .unwrap_or_default();
        if sites.iter().any(|o: &Site| o.name == name) {
            err(&format!("{at}.name"), format!("{name:?} names two sites"));
        }
        if let Some(m) = reserved_name(&name).filter(|_| !s.hosts.is_empty()) {
            err(&format!("{at}.name"), m);
        }
        if s.hsts_max_age_secs > 0 && !cfg!(feature = "tls") {
            err(
                &format!("{at}.hsts_max_age_secs"),
                "applies to TLS responses: needs a ferry built with the `tls` feature".into(),
            );
        }
        let site_headers = header_rules(&s.headers, &format!("{at}.headers"), err);
        let auth = s
            .auth
            .as_ref()
            .and_then(|a| super::site_auth::validate(a, &name, &format!("{at}.auth"), err));
        let mut routes = Vec::new();
        let raw_routes: Vec<&RawRoute> = s.routes.iter().collect();
        if raw_routes.is_empty() {
            err(&format!("{at}.routes"), "at least one route".into());
        }
        for (j, r) in raw_routes.iter().enumerate() {
            let at = format!("{at}.routes[{j}]");
            if let Some(route) = route(r, &site_headers, &raw.backends, workers, &at, err) {
                // Metrics and logs tell a site's routes apart by name.
                if routes.iter().any(|o: &SiteRoute| o.name == route.name) {
                    err(
                        &format!("{at}.name"),
                        format!("{:?} names two routes of the site", route.name),
                    );
                }
                if let Some(m) = reserved_name(&route.name) {
                    err(&format!("{at}.name"), m);
                }
                routes.push(route);
            }
        }
        let prefixes: Vec<String> = routes.iter().map(|r: &SiteRoute| r.path.clone()).collect();
        let table = match RouteTable::new(&prefixes) {
            Ok(t) => t,
            Err((j, m)) => {
                err(&format!("{at}.routes[{j}].path"), m);
                continue;
            }
        };
        host_lists.push(s.hosts.clone());
        sites.push(Site {
            name,
            hosts: s.hosts.clone(),
            no_route: Arc::new(RouteStats::new(workers)),
            https_redirect: s.https_redirect,
            hsts_max_age_secs: s.hsts_max_age_secs,
            headers: site_headers,
            auth,
            routes,
            table,
        });
    }
    let hosts = match HostTable::new(&host_lists) {
        Ok(h) => h,
        Err((i, j, m)) => {
            err(&format!("reverse.sites[{i}].hosts[{j}]"), m);
            return None;
        }
    };
    Some(Reverse {
        listen,
        tls_listen,
        allow,
        trusted_proxies,
        proxy_protocol: raw.proxy_protocol,
        sites,
        hosts,
        backends,
        no_site: Arc::new(RouteStats::new(workers)),
    })
}

/// Why `name` cannot name a site or route: `-` stands for "none" in metrics and logs, and an
/// empty label value is no label at all to Prometheus.
fn reserved_name(name: &str) -> Option<String> {
    match name {
        "" => Some("a name cannot be empty".into()),
        "-" => Some("\"-\" stands for \"none\" in metrics and logs; choose another name".into()),
        _ => None,
    }
}

fn route(
    r: &RawRoute,
    site: &HeaderRules,
    backends: &BTreeMap<String, RawBackend>,
    workers: usize,
    at: &str,
    err: &mut dyn FnMut(&str, String),
) -> Option<SiteRoute> {
    let action = match (&r.backend, &r.redirect) {
        (Some(b), None) => match backends.keys().position(|k| k == b) {
            Some(i) => RouteAction::Backend(i),
            None => {
                err(
                    &format!("{at}.backend"),
                    format!("{b:?} is not a name in reverse.backends"),
                );
                return None;
            }
        },
        (None, Some(rd)) => {
            if !matches!(rd.status, 301 | 302 | 303 | 307 | 308) {
                err(
                    &format!("{at}.redirect.status"),
                    format!(
                        "{} is not a redirect status (301, 302, 303, 307, 308)",
                        rd.status
                    ),
                );
            }
            let scheme_ok = ["http://", "https://"].iter().any(|s| {
                rd.to
                    .get(..s.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(s))
            });
            // The request's path is appended: without a host of its own, `to` would let
            // that path name the host ("https:" + "//evil.test/x", an open redirect).
            let authority = rd
                .to
                .split_once("://")
                .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
            let host_ok = !authority.contains('@')
                && crate::http::request::parse_authority(authority, Some(443)).is_ok();
            if !scheme_ok || !host_ok || !is_field_value(&rd.to) || rd.to.contains(['?', '#', ' '])
            {
                err(
                    &format!("{at}.redirect.to"),
                    format!(
                        "{:?} must be an http:// or https:// URL with a host and without a query",
                        rd.to
                    ),
                );
            }
            RouteAction::Redirect {
                to: rd.to.trim_end_matches('/').to_string(),
                status: rd.status,
            }
        }
        (Some(_), Some(_)) => {
            err(at, "a route has a backend or a redirect, not both".into());
            return None;
        }
        (None, None) => {
            err(&format!("{at}.backend"), "required (or redirect)".into());
            return None;
        }
    };
    let mut methods = Vec::new();
    for (k, m) in r.methods.iter().enumerate() {
        if m.is_empty() || !m.bytes().all(is_token_byte) {
            err(
                &format!("{at}.methods[{k}]"),
                format!("{m:?} is not a method"),
            );
        }
        methods.push(m.to_ascii_uppercase());
    }
    let host = match r.host.as_str() {
        "keep" => HostPolicy::Keep,
        "backend" => HostPolicy::Backend,
        h if crate::http::request::parse_authority(h, Some(80)).is_ok() && !h.contains('@') => {
            HostPolicy::Literal(h.to_string())
        }
        h => {
            err(
                &format!("{at}.host"),
                format!("{h:?} is not keep, backend or a host[:port]"),
            );
            HostPolicy::Keep
        }
    };
    if !(1..=MAX_SECS).contains(&r.response_timeout_secs) {
        err(
            &format!("{at}.response_timeout_secs"),
            format!("{} is out of range 1..={MAX_SECS}", r.response_timeout_secs),
        );
    }
    let own = header_rules(&r.headers, &format!("{at}.headers"), err);
    let public = match r.auth.as_deref() {
        None => false,
        Some("none") => true,
        Some(v) => {
            err(
                &format!("{at}.auth"),
                format!("{v:?}: a route's auth can only be none (a public path of a private site)"),
            );
            false
        }
    };
    Some(SiteRoute {
        path: r.path.clone(),
        name: r.name.clone().unwrap_or_else(|| r.path.clone()),
        methods,
        action,
        strip_prefix: r.strip_prefix,
        host,
        response_timeout: Duration::from_secs(r.response_timeout_secs.clamp(1, MAX_SECS)),
        max_body_bytes: r.max_body_bytes,
        headers: merge(site, &own),
        public,
        stats: Arc::new(RouteStats::new(workers)),
    })
}

/// The site's rules followed by the route's.
fn merge(site: &HeaderRules, route: &HeaderRules) -> HeaderRules {
    let join = |a: &HeaderOps, b: &HeaderOps| {
        let mut out = a.clone();
        // A route's `set` or `remove` of a field wins over the site's for that field.
        out.set.retain(|(n, _)| !b.replaces(n));
        out.add.retain(|(n, _)| !b.replaces(n));
        out.set.extend(b.set.iter().cloned());
        out.add.extend(b.add.iter().cloned());
        out.remove.extend(b.remove.iter().cloned());
        out
    };
    HeaderRules {
        request: join(&site.request, &route.request),
        response: join(&site.response, &route.response),
    }
}

/// Fields a header rule may not touch: the framing, the hop's own fields, and what ferry
/// sets itself from the route (`Host`: the route's `host` key).
const RESERVED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "host",
];

fn header_rules(raw: &RawHeaders, at: &str, err: &mut dyn FnMut(&str, String)) -> HeaderRules {
    let mut ops = |raw: &RawHeaderOps, at: String| {
        let mut out = HeaderOps::default();
        let mut check = |name: &str, key: String| {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                err(&key, format!("{name:?} is not a header name"));
                false
            } else if is_reserved_field(name) {
                err(
                    &key,
                    format!("{name} is set by ferry itself and cannot be changed here"),
                );
                false
            } else {
                true
            }
        };
        for (k, v) in &raw.set {
            if check(k, format!("{at}.set.{k}")) {
                out.set.push((k.clone(), v.clone()));
            }
        }
        for (k, v) in &raw.add {
            if check(k, format!("{at}.add.{k}")) {
                out.add.push((k.clone(), v.clone()));
            }
        }
        for (i, k) in raw.remove.iter().enumerate() {
            if check(k, format!("{at}.remove[{i}]")) {
                out.remove.push(k.clone());
            }
        }
        for (k, v) in raw.set.iter().chain(&raw.add) {
            if !is_field_value(v) {
                err(
                    &format!("{at}.{k}"),
                    "the value has a control character".into(),
                );
            }
        }
        out
    };
    HeaderRules {
        request: ops(&raw.request, format!("{at}.request")),
        response: ops(&raw.response, format!("{at}.response")),
    }
}

/// True for the fields no header rule (nor an auth service's `copy_headers`) may name.
pub(super) fn is_reserved_field(name: &str) -> bool {
    RESERVED.iter().any(|r| name.eq_ignore_ascii_case(r))
}

/// RFC 9110 §5.6.2 token characters.
pub(super) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 §5.5: visible characters, spaces and tabs; no CR, LF or NUL.
pub(super) fn is_field_value(v: &str) -> bool {
    v.bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}
