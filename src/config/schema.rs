//! The YAML schema as written by users: a superset of http-proxy-lb's keys, with its defaults.
//! Unknown keys are errors. `validate` turns this into the `Config` the workers use.

use serde::Deserialize;

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
}

/// How an upstream is picked from the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    RoundRobin,
    Best,
    Priority,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    #[serde(default = "default_hc_interval")]
    pub interval_secs: u64,
    #[serde(default = "default_hc_timeout")]
    pub timeout_secs: u64,
}

impl Default for RawHealthCheck {
    fn default() -> Self {
        RawHealthCheck {
            interval_secs: default_hc_interval(),
            timeout_secs: default_hc_timeout(),
        }
    }
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
fn default_hc_interval() -> u64 {
    30
}
fn default_hc_timeout() -> u64 {
    5
}
fn default_shutdown_timeout() -> u64 {
    30
}
fn default_connect_timeout() -> u64 {
    10
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
