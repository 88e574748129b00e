//! Routing: where a request goes, decided from its target. The `rules` list is asked first
//! (first match wins); then `domain_policy` decides between the default pool and direct.
//! Which member of a pool serves it is `upstream::select`'s job.

pub mod domain;
pub mod rules;

use crate::addr::IpText;
use crate::config::Config;
pub use rules::Via;
use std::net::IpAddr;

/// Decides the way of a request to `host:port`; `ip` is the address `host` denotes when it
/// is an IP literal (`Target::ip`), and then every expression sees that address, written
/// canonically, whatever spelling the client used.
pub fn decide(config: &Config, host: &str, ip: Option<IpAddr>, port: u16) -> Via {
    let mut text = IpText::default();
    let host = match ip {
        Some(ip) => text.show(ip),
        None => host,
    };
    if let Some(via) = config.rules.lookup(host, ip, port) {
        return via;
    }
    if config.policy_uses_pool(host) {
        Via::Pool(0)
    } else {
        Via::Direct
    }
}
