//! Routing: where a request goes, decided from its target. The `rules` list is asked first
//! (first match wins); then `domain_policy` decides between the default pool and direct.
//! Which member of a pool serves it is `upstream::select`'s job.

pub mod domain;
pub mod rules;

use crate::config::Config;
pub use rules::Via;

/// Decides the way of a request to `host:port`.
pub fn decide(config: &Config, host: &str, port: u16) -> Via {
    if let Some(via) = config.rules.lookup(host, port) {
        return via;
    }
    if config.policy_uses_pool(host) {
        Via::Pool(0)
    } else {
        Via::Direct
    }
}
