//! The YAML schema as written by users: a superset of http-proxy-lb's keys, with its defaults.
//! Unknown keys are errors. `validate` turns this into the `Config` the workers use.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The config file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_reload_interval")]
    pub reload_interval_secs: u64,
    #[serde(default)]
    pub access_log: bool,
    /// ferry: add `Via: 1.1 ferry` to forwarded requests and responses (RFC 9110 §7.6.3).
    #[serde(default = "default_true")]
    pub via: bool,
    #[serde(default)]
    pub health_check: RawHealthCheck,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub domain_policy: RawDomainPolicy,
    #[serde(default)]
    pub upstream: Vec<RawUpstream>,
    /// ferry: worker threads, 0 = one per core.
    #[serde(default)]
    pub workers: usize,
    /// ferry: log level (`FERRY_LOG` in the environment wins).
    #[serde(default)]
    pub log_level: LogLevel,
    /// ferry: what `hash` mode hashes.
    pub hash_key: Option<HashKey>,
    /// ferry: attempts per request across upstreams.
    pub retries: Option<u32>,
    /// ferry: what to do when no upstream of a pool is online.
    pub on_all_down: Option<OnAllDown>,
    /// ferry: named pools besides the top-level one (`default`).
    #[serde(default)]
    pub pools: BTreeMap<String, RawPool>,
    /// ferry: ordered routing rules.
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// ferry: admin server settings.
    #[serde(default)]
    pub admin: RawAdmin,
    /// ferry: who may use the proxy, and for what.
    #[serde(default)]
    pub access: RawAccess,
    /// ferry: the reverse-proxy role (DESIGN §7).
    pub reverse: Option<super::reverse::RawReverse>,
    /// ferry: certificates and TLS settings (DESIGN §8; the `tls` feature).
    pub tls: Option<super::tls::TlsBlock>,
    /// ferry: the forward proxy served over TLS too (an HTTPS proxy).
    pub tls_listen: Option<String>,
}

/// Client access control.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccess {
    /// Client CIDRs allowed; unset = loopback and private ranges.
    pub allow: Option<Vec<String>>,
    /// When set, clients must authenticate with `Proxy-Authorization: Basic`.
    #[serde(default)]
    pub users: Vec<RawUser>,
    /// CONNECT target ports allowed; unset = any.
    pub connect_ports: Option<Vec<u16>>,
}

/// One client account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub username: String,
    pub password: String,
}

/// Admin server settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// When set, admin requests need `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Write each change made through the control API back to the config file.
    #[serde(default)]
    pub persist: bool,
}

/// A named pool of upstreams with its own selection and health settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    #[serde(default)]
    pub upstream: Vec<RawUpstream>,
    pub mode: Option<Mode>,
    pub hash_key: Option<HashKey>,
    pub retries: Option<u32>,
    pub on_all_down: Option<OnAllDown>,
    #[serde(default)]
    pub health_check: RawHealthCheck,
}

/// One routing rule: any expression matching sends the request `via` a pool, `direct` or
/// `reject`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(rename = "match")]
    pub exprs: Vec<String>,
    pub via: String,
}

/// What `hash` mode hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashKey {
    #[default]
    ClientIp,
    Host,
}

/// When no upstream of a pool is online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnAllDown {
    /// 502 with `Retry-After`.
    #[default]
    Reject,
    /// Connect to the target directly.
    Direct,
}

/// How an upstream is picked from the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    RoundRobin,
    Best,
    Priority,
    Random,
    LeastConn,
    Hash,
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

/// Health probing; every key is optional so that a pool can override only some.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub interval_secs: Option<u64>,
    pub timeout_secs: Option<u64>,
    /// ferry: the URL requested through each upstream.
    pub url: Option<String>,
    /// ferry: the status that counts as healthy.
    pub expect_status: Option<u16>,
    /// ferry: consecutive failures before offline.
    pub fall: Option<u32>,
    /// ferry: consecutive probe successes before online.
    pub rise: Option<u32>,
    /// ferry: probe online upstreams too.
    pub probe_online: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default)]
    pub max_connections: usize,
    #[serde(default)]
    pub request_timeout_secs: u64,
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_secs: u64,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_connections: 0,
            request_timeout_secs: 0,
            shutdown_timeout_secs: default_shutdown_timeout(),
            connect_timeout_secs: default_connect_timeout(),
            header_timeout_secs: default_header_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            max_header_bytes: default_max_header_bytes(),
        }
    }
}

/// `off`: the pool serves everything; `blacklist`: listed domains go direct; `whitelist`: only
/// listed domains use the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyMode {
    #[default]
    Off,
    Blacklist,
    Whitelist,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDomainPolicy {
    #[serde(default)]
    pub mode: PolicyMode,
    #[serde(default)]
    pub domains: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default = "default_priority")]
    pub priority: u32,
    pub username: Option<String>,
    pub password: Option<String>,
}

fn default_reload_interval() -> u64 {
    60
}
fn default_shutdown_timeout() -> u64 {
    30
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_true() -> bool {
    true
}

fn default_header_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    60
}
fn default_max_header_bytes() -> usize {
    32768
}
fn default_weight() -> u32 {
    1
}
fn default_priority() -> u32 {
    100
}
