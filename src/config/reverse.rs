//! The reverse role's config (DESIGN §7): the `reverse:` block as written, its defaults, and
//! its validation into sites (hosts, routes, header rules, redirects) and backends (pools of
//! servers that use the forward pools' selection and health machinery).

use super::schema::Mode;
use super::site_auth::{RawAuth, SiteAuth};
use super::validate::{cidrs, socket_addr, MAX_SECS};
use super::{Breaker, HealthCheck, PoolSpec, Probe, UpstreamSpec};
use crate::metrics::RouteStats;
use crate::route::site::{HostTable, RouteTable};
use crate::upstream::queue::BackendQueue;
use crate::upstream::UpstreamState;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

// ---- as written ----

/// The `reverse:` block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReverse {
    #[serde(default)]
    pub listen: Vec<String>,
    #[serde(default)]
    pub tls_listen: Vec<String>,
    /// Client CIDRs; unset = everyone (a reverse proxy publishes).
    pub allow: Option<Vec<String>>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub proxy_protocol: bool,
    #[serde(default)]
    pub sites: Vec<RawSite>,
    #[serde(default)]
    pub backends: BTreeMap<String, RawBackend>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub name: Option<String>,
    pub hosts: Vec<String>,
    #[serde(default)]
    pub https_redirect: bool,
    #[serde(default)]
    pub hsts_max_age_secs: u64,
    #[serde(default)]
    pub headers: RawHeaders,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Who may use the site (DESIGN §7.3); none = everyone.
    pub auth: Option<RawAuth>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    #[serde(default)]
    pub request: RawHeaderOps,
    #[serde(default)]
    pub response: RawHeaderOps,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderOps {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    #[serde(default = "root")]
    pub path: String,
    pub name: Option<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    pub backend: Option<String>,
    pub redirect: Option<RawRedirect>,
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default = "keep")]
    pub host: String,
    #[serde(default = "sixty")]
    pub response_timeout_secs: u64,
    #[serde(default)]
    pub max_body_bytes: u64,
    #[serde(default)]
    pub headers: RawHeaders,
    /// `none`: a public path of a private site.
    pub auth: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedirect {
    pub to: String,
    #[serde(default = "permanent")]
    pub status: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub servers: Vec<RawServer>,
    #[serde(default)]
    pub mode: Mode,
    pub hash_key: Option<String>,
    pub health_check: Option<RawBackendHealth>,
    #[serde(default)]
    pub keepalive: RawKeepalive,
    #[serde(default)]
    pub retries: RawRetries,
    pub circuit_breaker: Option<RawBreaker>,
    #[serde(default)]
    pub queue: RawQueue,
}

/// A backend's `queue:` (DESIGN §7.3).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    #[serde(default)]
    pub max_active: u32,
    #[serde(default)]
    pub max_queued: u32,
    #[serde(default = "ten")]
    pub timeout_secs: u64,
}

impl Default for RawQueue {
    fn default() -> Self {
        RawQueue {
            max_active: 0,
            max_queued: 0,
            timeout_secs: ten(),
        }
    }
}

/// `retries:` of a backend (DESIGN §7.3).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetries {
    #[serde(default = "one")]
    pub attempts: u32,
    #[serde(default = "retry_on")]
    pub on: Vec<String>,
    #[serde(default = "twenty_five")]
    pub backoff_ms: u64,
    #[serde(default = "thousand")]
    pub backoff_max_ms: u64,
    #[serde(default = "twenty")]
    pub budget_percent: u32,
}

impl Default for RawRetries {
    fn default() -> Self {
        RawRetries {
            attempts: one(),
            on: retry_on(),
            backoff_ms: twenty_five(),
            backoff_max_ms: thousand(),
            budget_percent: twenty(),
        }
    }
}

/// `circuit_breaker:` of a backend (per server).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    #[serde(default = "five_u32")]
    pub failures: u32,
    #[serde(default = "ten")]
    pub open_secs: u64,
    #[serde(default = "one")]
    pub half_open_requests: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub url: String,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default = "hundred")]
    pub priority: u32,
    #[serde(default)]
    pub max_active: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackendHealth {
    #[serde(default = "healthz")]
    pub path: String,
    #[serde(default = "five")]
    pub interval_secs: u64,
    #[serde(default = "two")]
    pub timeout_secs: u64,
    #[serde(default = "ok_range")]
    pub expect_status: String,
    #[serde(default = "two_u32")]
    pub rise: u32,
    #[serde(default = "three")]
    pub fall: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeepalive {
    #[serde(default = "thirty_two")]
    pub max_idle: usize,
    #[serde(default = "sixty")]
    pub idle_timeout_secs: u64,
}

impl Default for RawKeepalive {
    fn default() -> Self {
        RawKeepalive {
            max_idle: thirty_two(),
            idle_timeout_secs: sixty(),
        }
    }
}

fn root() -> String {
    "/".into()
}
fn keep() -> String {
    "keep".into()
}
fn healthz() -> String {
    "/healthz".into()
}
fn ok_range() -> String {
    "200-399".into()
}
fn sixty() -> u64 {
    60
}
fn five() -> u64 {
    5
}
fn ten() -> u64 {
    10
}
fn two() -> u64 {
    2
}
fn two_u32() -> u32 {
    2
}
fn three() -> u32 {
    3
}
fn thirty_two() -> usize {
    32
}
fn one() -> u32 {
    1
}
fn hundred() -> u32 {
    100
}
fn retry_on() -> Vec<String> {
    vec!["connect_failure".into(), "reset".into()]
}
fn twenty_five() -> u64 {
    25
}
fn thousand() -> u64 {
    1000
}
fn twenty() -> u32 {
    20
}
fn five_u32() -> u32 {
    5
}
fn permanent() -> u16 {
    308
}

// ---- validated ----

/// The reverse role, validated.
#[derive(Debug)]
pub struct Reverse {
    /// Plain-HTTP listeners.
    pub listen: Vec<SocketAddr>,
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
pub struct RetryOn(u8);

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

    fn parse(word: &str) -> Option<RetryOn> {
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
    if !raw.tls_listen.is_empty() {
        err(
            "reverse.tls_listen",
            "TLS listeners need a ferry built with the `tls` feature".into(),
        );
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
        if s.hsts_max_age_secs > 0 {
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
fn is_field_value(v: &str) -> bool {
    v.bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

#[allow(clippy::too_many_arguments)]
fn backend(
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
    let rest = if lower.starts_with("http://") {
        &s.url[7..]
    } else if lower.starts_with("https://") {
        return Err((
            "url",
            "https:// servers need a ferry built with the `tls` feature".into(),
        ));
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
    let host = t.host.to_ascii_lowercase();
    let url = if t.is_v6() {
        format!("http://[{host}]:{}", t.port)
    } else {
        format!("http://{host}:{}", t.port)
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
    })
}
