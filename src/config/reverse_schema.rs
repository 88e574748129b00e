//! The reverse role's config as written (DESIGN §7): the `reverse:` block's serde schema and
//! its defaults. `reverse.rs` validates it into sites and backends.

use super::schema::Mode;
use super::site_auth::RawAuth;
use serde::Deserialize;
use std::collections::BTreeMap;

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
    /// For an `https://` server: verify its certificate (the default).
    #[serde(default = "yes")]
    pub tls_verify: bool,
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

pub(super) fn root() -> String {
    "/".into()
}
pub(super) fn keep() -> String {
    "keep".into()
}
pub(super) fn healthz() -> String {
    "/healthz".into()
}
pub(super) fn ok_range() -> String {
    "200-399".into()
}
pub(super) fn sixty() -> u64 {
    60
}
pub(super) fn five() -> u64 {
    5
}
pub(super) fn ten() -> u64 {
    10
}
pub(super) fn two() -> u64 {
    2
}
pub(super) fn two_u32() -> u32 {
    2
}
pub(super) fn three() -> u32 {
    3
}
pub(super) fn thirty_two() -> usize {
    32
}
pub(super) fn one() -> u32 {
    1
}
pub(super) fn hundred() -> u32 {
    100
}
pub(super) fn retry_on() -> Vec<String> {
    vec!["connect_failure".into(), "reset".into()]
}
pub(super) fn twenty_five() -> u64 {
    25
}
pub(super) fn thousand() -> u64 {
    1000
}
pub(super) fn twenty() -> u32 {
    20
}
pub(super) fn five_u32() -> u32 {
    5
}
pub(super) fn permanent() -> u16 {
    308
}

fn yes() -> bool {
    true
}
