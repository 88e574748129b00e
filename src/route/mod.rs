//! Routing: where a request goes, decided from its target. The `rules` list is asked first
//! (first match wins); then `domain_policy` decides between the default pool and direct.
//! A direct route asks the rules again for each address a name resolves to.
//! Which member of a pool serves it is `upstream::select`'s job.

pub mod domain;
pub mod path;
pub mod reverse;
pub mod rules;
pub mod site;

use crate::addr::IpText;
use crate::config::Config;
pub use rules::Via;
use std::net::{IpAddr, SocketAddr};

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

/// True when the rules refuse `addr` as they would refuse it written as the target: how what
/// a name resolved to is held to the rules on a direct route (DESIGN §5). Only `reject`
/// counts: a rule that would send the address via a pool cannot re-route a request that is
/// already going direct (docs/DESIGN-NOTES.md).
pub fn refuses_address(config: &Config, addr: SocketAddr) -> bool {
    if config.rules.is_empty() {
        return false;
    }
    let ip = addr.ip().to_canonical();
    let mut text = IpText::default();
    config.rules.lookup(text.show(ip), Some(ip), addr.port()) == Some(Via::Reject)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rules: &str) -> Config {
        let yaml = format!(
            "listen: \"127.0.0.1:8080\"\non_all_down: direct\npools:\n  vpn: {{upstream: [{{url: \"http://127.0.0.1:3128\"}}]}}\nrules:\n{rules}"
        );
        crate::config::parse(&yaml, None).unwrap()
    }

    #[test]
    fn a_literal_in_any_spelling_is_routed_as_its_address() {
        let c = config(
            "  - {match: [\"domain:127.0.0.1\"], via: direct}\n  - {match: [\"cidr:127.0.0.0/8\"], via: reject}\n",
        );
        for host in ["127.0.0.1", "0177.0.0.1", "::ffff:127.0.0.1", "2130706433"] {
            let ip = crate::addr::host_ip(host).unwrap();
            assert_eq!(decide(&c, host, ip, 80), Via::Direct, "{host}");
        }
        let ip = crate::addr::host_ip("127.1.0.9").unwrap();
        assert_eq!(decide(&c, "127.1.0.9", ip, 80), Via::Reject);
    }

    #[test]
    fn a_resolved_address_is_refused_as_its_literal_would_be() {
        let c = config(
            "  - {match: [\"domain:nas.lan\", \"cidr:127.0.0.5/32\"], via: direct}\n  - {match: [\"cidr:127.0.0.0/8\", \"cidr:::1/128\"], via: reject}\n  - {match: [\"cidr:10.0.0.0/8\"], via: vpn}\n",
        );
        let refused = |a: &str| refuses_address(&c, a.parse().unwrap());
        assert!(refused("127.0.0.1:80"));
        assert!(refused("[::ffff:127.0.0.1]:80"));
        assert!(refused("[::1]:443"));
        // an earlier rule for the address itself lets it through, as it would a literal
        assert!(!refused("127.0.0.5:80"));
        // a rule that names no address does not: domain:nas.lan is about the name
        assert!(decide(&c, "nas.lan", None, 80) == Via::Direct && refused("127.0.0.2:80"));
        // a pool rule cannot re-route what already goes direct
        assert!(!refused("10.1.2.3:80"));
        assert!(!refuses_address(
            &config("  []\n"),
            "127.0.0.1:80".parse().unwrap()
        ));
    }
}
