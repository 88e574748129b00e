//! Routing: which way a request goes (direct, or through the upstream pool) decided from its
//! target host by the config's domain policy.

pub mod domain;

use crate::config::Config;

/// Where a request is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Straight to the origin (or CONNECT target).
    Direct,
    /// Through the upstream proxy with this index in `Config::upstreams`.
    Upstream(usize),
}

/// Decides the route of a request to `host`; `next_rr` is the worker's round-robin cursor.
pub fn route(config: &Config, host: &str, next_rr: &mut usize) -> Route {
    if !config.uses_pool(host) {
        return Route::Direct;
    }
    let i = *next_rr % config.upstreams.len();
    *next_rr = next_rr.wrapping_add(1);
    Route::Upstream(i)
}
