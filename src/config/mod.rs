//! Configuration: the YAML schema (a superset of http-proxy-lb's), defaults, and validation
//! into the `Config` snapshot that workers share through an `Arc`. Validation is strict and
//! every error names the key path it is about.

mod backend;
mod reverse;
mod reverse_schema;
mod schema;
mod site_auth;
pub mod tls;
mod validate;

pub use reverse::{
    Backend, BackendHashKey, HeaderOps, HeaderRules, HostPolicy, QueueSpec, Retries, RetryOn,
    Reverse, RouteAction, Site, SiteRoute,
};
pub use site_auth::{ForwardAuth, SiteAuth};

pub use schema::{HashKey, LogLevel, Mode, OnAllDown, PolicyMode};
use schema::{RawConfig, RawHealthCheck, RawPool, RawUpstream};

use crate::route::domain::DomainSet;
use crate::route::rules::{RuleSet, Via};
use crate::upstream::{Rotation, UpstreamState};
use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where ferry looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/ferry/ferry.yaml";

/// The config used when there is no file: a direct proxy on loopback. Its pool is empty and
/// fails open only because it says so: a pool never sends traffic direct on its own.
pub const EMBEDDED_DEFAULT: &str = "listen: \"127.0.0.1:8080\"\non_all_down: direct\n";

/// One problem found in a config, with the key path it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.msg)
        } else {
            write!(f, "{}: {}", self.path, self.msg)
        }
    }
}

/// All problems found in one config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A validated configuration snapshot.
#[derive(Debug)]
pub struct Config {
    /// The file it came from, or `None` for the embedded default.
    pub source: Option<PathBuf>,
    /// The forward proxy's listener; `None` when the file has only the reverse role.
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    /// When set, admin requests need `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// Changes made through the control API are written back to `source` (DESIGN §9).
    pub admin_persist: bool,
    pub access: Access,
    pub reload_interval_secs: u64,
    pub access_log: bool,
    /// Add ferry's `Via` field to what it forwards.
    pub via: bool,
    pub limits: Limits,
    pub domain_policy: DomainPolicy,
    /// Pool 0 is `default` (the top-level `upstream` list, possibly empty); then the named
    /// `pools` in name order.
    pub pools: Vec<PoolSpec>,
    pub rules: RuleSet,
    /// Worker threads (already resolved from 0 = one per core).
    pub workers: usize,
    pub log_level: LogLevel,
    /// The reverse-proxy role, when configured.
    pub reverse: Option<Reverse>,
    /// The forward proxy's TLS listener (an HTTPS proxy).
    pub tls_listen: Option<SocketAddr>,
    /// What TLS needs at run time, when anything uses it.
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<crate::tls::Tls>>,
}

/// The default `access.allow`: loopback and the private ranges.
pub const DEFAULT_ALLOW: &[&str] = &[
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
    "fe80::/10",
];

/// Who may use the proxy.
#[derive(Debug)]
pub struct Access {
    /// Client networks allowed.
    pub allow: Vec<(std::net::IpAddr, u8)>,
    /// The `Proxy-Authorization` values accepted (`Basic …`), one per user; empty = no
    /// authentication.
    pub credentials: Vec<String>,
    /// CONNECT target ports allowed; `None` = any.
    pub connect_ports: Option<Vec<u16>>,
}

impl Access {
    /// True when a client at `ip` may connect.
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        self.allow
            .iter()
            .any(|&(net, len)| crate::route::rules::in_cidr(ip, net, len))
    }
}

/// Active health probing of a pool's upstreams or a backend's servers.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub interval: Duration,
    pub timeout: Duration,
    /// What a probe sends.
    pub probe: Probe,
    /// The statuses that count as healthy, both ends included.
    pub expect: (u16, u16),
    pub fall: u32,
    pub rise: u32,
    pub probe_online: bool,
}

/// What an active health probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Forward: `GET url` sent through the upstream proxy (`host` is the URL's authority).
    Through { url: String, host: String },
    /// Reverse: `GET path` straight to the server, `Host` its own `host:port`.
    Get { path: String },
    /// Reverse, no `health_check`: passive health only (the circuit's trial requests heal).
    Passive,
}

/// A pool of upstreams and how it is used.
#[derive(Debug)]
pub struct PoolSpec {
    pub name: String,
    pub members: Vec<UpstreamSpec>,
    pub mode: Mode,
    pub hash_key: HashKey,
    /// Attempts per request across members.
    pub retries: usize,
    pub on_all_down: OnAllDown,
    pub health: HealthCheck,
    /// The shared round-robin sequences: one for `round_robin` (level 0), one per priority
    /// level, lowest first, for `priority`; none for the other modes.
    pub rotations: Vec<(u32, Rotation)>,
    /// A backend's circuit breaker (per server); forward pools have none.
    pub breaker: Option<Breaker>,
}

impl PoolSpec {
    /// Failures in a row that take a member out: a backend's `circuit_breaker.failures` when
    /// it has one (the circuit and passive health are one mechanism), else `health_check.fall`.
    pub fn passive_fall(&self) -> u32 {
        self.breaker.map_or(self.health.fall, |b| b.failures)
    }
}

/// A circuit breaker's settings (DESIGN §7.3): `failures` in a row open a server's circuit;
/// after `open` it is half-open and lets `half_open` trial requests through (across all
/// workers); a trial's success closes it, its failure opens it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    pub failures: u32,
    pub open: Duration,
    pub half_open: u32,
}

/// Connection limits and the timeouts of each phase.
#[derive(Debug, Clone)]
pub struct Limits {
    /// 0 = unlimited.
    pub max_connections: usize,
    /// A whole request/response exchange; `None` = unlimited. Never applied to tunnels.
    pub request_timeout: Option<Duration>,
    pub shutdown_timeout: Duration,
    pub connect_timeout: Duration,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
}

/// Which hosts use the default pool.
#[derive(Debug)]
pub struct DomainPolicy {
    pub mode: PolicyMode,
    pub domains: DomainSet,
}

/// One upstream HTTP proxy.
#[derive(Clone)]
pub struct UpstreamSpec {
    /// `http://host:port`, normalized (host lowercased, no credentials, no slash): what ferry
    /// connects to. With `username`, the upstream's identity.
    pub url: String,
    /// The `url` exactly as configured, a password written inside it masked
    /// (`http://bob:***@host:port`): what `/status` and metric labels show, so a script finds
    /// its upstream by the URL in its config. Credentials given as keys are not in it.
    pub config_url: String,
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub priority: u32,
    /// Requests in flight to it at most (a backend server's `max_active`); 0 = no cap.
    pub max_active: u32,
    pub username: Option<String>,
    /// `Basic …` for `Proxy-Authorization`, when credentials are set.
    pub auth: Option<String>,
    /// Shared health and load, the same `Arc` for the same URL everywhere.
    pub state: Arc<UpstreamState>,
    /// An `https://` server: TLS to it.
    pub tls: Option<ServerTls>,
}

/// How ferry speaks TLS to an `https://` server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerTls {
    /// Its certificate is verified (against `tls.ca_file` or the system bundle).
    pub verify: bool,
}

impl UpstreamSpec {
    /// The normalized URL with the username and a masked password, for logs.
    pub fn display(&self) -> String {
        self.state.name.clone()
    }
}

impl fmt::Debug for UpstreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the credentials.
        write!(f, "UpstreamSpec({})", self.display())
    }
}

impl Config {
    /// The embedded default: direct proxy on 127.0.0.1:8080.
    pub fn embedded() -> Config {
        parse(EMBEDDED_DEFAULT, None).expect("the embedded default config is valid")
    }

    /// True when the default pool serves `host` by `domain_policy` (rules aside). An empty
    /// pool serves it too: it has nothing online, so `on_all_down` decides (never fail open).
    pub fn policy_uses_pool(&self, host: &str) -> bool {
        match self.domain_policy.mode {
            PolicyMode::Off => true,
            PolicyMode::Blacklist => !self.domain_policy.domains.matches(host),
            PolicyMode::Whitelist => self.domain_policy.domains.matches(host),
        }
    }

    /// The forward pools, then the reverse role's backends (as pools of servers).
    pub fn all_pools(&self) -> impl Iterator<Item = &PoolSpec> {
        let backends = self.reverse.iter().flat_map(|r| &r.backends);
        self.pools.iter().chain(backends.map(|b| &b.pool))
    }

    /// `all_pools`, to change them (a reload carrying state over).
    pub fn all_pools_mut(&mut self) -> impl Iterator<Item = &mut PoolSpec> {
        let backends = self.reverse.iter_mut().flat_map(|r| &mut r.backends);
        self.pools.iter_mut().chain(backends.map(|b| &mut b.pool))
    }

    /// Every upstream of every pool (an upstream in two pools appears twice).
    pub fn upstreams(&self) -> impl Iterator<Item = &UpstreamSpec> {
        self.pools.iter().flat_map(|p| p.members.iter())
    }

    /// Each upstream once, in config order: one listed in several pools (same URL and
    /// username, hence the same shared state) counts once, with its first entry's settings.
    pub fn unique_upstreams(&self) -> Vec<&UpstreamSpec> {
        let mut out: Vec<&UpstreamSpec> = Vec::new();
        for u in self.upstreams() {
            if !out.iter().any(|o| Arc::ptr_eq(&o.state, &u.state)) {
                out.push(u);
            }
        }
        out
    }

    /// What is valid but probably not meant, for `--check` and the logs at start and reload.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        // A file with only the reverse role has an empty default pool that serves nothing.
        let forward = if self.listen.is_some() {
            &self.pools[..]
        } else {
            &[]
        };
        if self.admin_persist && self.admin_token.is_none() {
            w.push("admin.persist: the control API makes no change without admin.token".into());
        }
        for p in forward {
            if p.members.is_empty() && p.on_all_down == OnAllDown::Reject {
                w.push(format!(
                    "{}; its requests get 502",
                    empty_pool_reason(&p.name)
                ));
            }
        }
        for b in self.reverse.iter().flat_map(|r| &r.backends) {
            for m in b
                .pool
                .members
                .iter()
                .filter(|m| m.tls.is_some_and(|t| !t.verify))
            {
                w.push(format!(
                    "backend {}: server {} is not verified (tls_verify: false): anyone on the path can pose as it",
                    b.name, m.config_url
                ));
            }
        }
        w
    }
}

/// Why a pool with no upstream refuses requests, and how to get a direct proxy instead: the
/// body of its 502 and the warning about it.
pub fn empty_pool_reason(pool: &str) -> String {
    format!("pool {pool} has no upstream; set on_all_down: direct for a direct proxy")
}

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            msg: format!("cannot read {}: {e}", path.display()),
        }])
    })?;
    parse(&text, Some(path))
}

/// Parses and validates config text; `source` is the file it came from, if any.
pub fn parse(text: &str, source: Option<&Path>) -> Result<Config, ConfigErrors> {
    let raw: RawConfig = yaml_serde::from_str(text).map_err(|e| {
        // yaml_serde prefixes the key path ("upstream[1]: unknown field ...") itself.
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            msg: e.to_string(),
        }])
    })?;
    validate::validate(raw, source)
}

/// The probe URL gstatic answers with 204; sent through each upstream, never fetched by ferry.
pub const DEFAULT_PROBE_URL: &str = "http://connectivitycheck.gstatic.com/generate_204";

/// Standard base64 with padding (RFC 4648 §4), for Basic credentials.
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod reverse_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod yaml_tests;
