//! The ordered `rules` list, compiled once per config into look-up tables so that matching a
//! request costs one hash look-up per label of its host (plus one per `cidr:` rule for IP
//! literal targets), not one test per rule. First match wins: each table keeps, for each key,
//! the lowest rule index that names it.

use super::domain::{normalize, parse_expr};
use std::collections::HashMap;
use std::net::IpAddr;

/// Where a matched request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The pool with this index in `Config::pools`.
    Pool(usize),
    Direct,
    /// Refused with 403.
    Reject,
}

/// Compiled rules.
#[derive(Debug, Default)]
pub struct RuleSet {
    exact: HashMap<String, usize>,
    suffix: HashMap<String, usize>,
    cidrs: Vec<(IpAddr, u8, usize)>,
    ports: HashMap<u16, usize>,
    vias: Vec<Via>,
}

impl RuleSet {
    /// Adds the next rule: any of `exprs` matching sends the request `via`.
    pub fn push(&mut self, exprs: &[String], via: Via) -> Result<(), (usize, String)> {
        let idx = self.vias.len();
        if exprs.is_empty() {
            return Err((0, "a rule needs at least one expression".into()));
        }
        for (i, e) in exprs.iter().enumerate() {
            let e = e.trim();
            if let Some(c) = e.strip_prefix("cidr:") {
                let (net, len) = parse_cidr(c).map_err(|m| (i, m))?;
                self.cidrs.push((net, len, idx));
            } else if let Some(p) = e.strip_prefix("port:") {
                let port: u16 = p
                    .trim()
                    .parse()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or((i, format!("{p:?} is not a port")))?;
                self.ports.entry(port).or_insert(idx);
            } else {
                let (exact, name) = parse_expr(e).map_err(|m| (i, m.to_string()))?;
                let table = if exact {
                    &mut self.exact
                } else {
                    &mut self.suffix
                };
                table.entry(name).or_insert(idx);
            }
        }
        self.vias.push(via);
        Ok(())
    }

    /// Rules in the set.
    pub fn len(&self) -> usize {
        self.vias.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vias.is_empty()
    }

    /// The first rule that matches a request to `host:port`, if any. `ip` is the address
    /// `host` denotes when it is an IP literal (`addr::host_ip`); `cidr:` expressions see only
    /// that, and then `host` should be its canonical text (`addr::IpText`), so that
    /// `0177.0.0.1` meets the domain tables as `127.0.0.1` does.
    pub fn lookup(&self, host: &str, ip: Option<IpAddr>, port: u16) -> Option<Via> {
        if self.vias.is_empty() {
            return None;
        }
        let mut best = self.ports.get(&port).copied().unwrap_or(usize::MAX);
        if let Some(ip) = ip {
            for &(net, len, idx) in &self.cidrs {
                if idx < best && in_cidr(ip, net, len) {
                    best = idx;
                }
            }
        }
        if !self.exact.is_empty() || !self.suffix.is_empty() {
            // An address's text is already lower-case with no trailing dot: no copy needed.
            let owned;
            let host = match ip {
                Some(_) => host,
                None => {
                    owned = normalize(host);
                    owned.as_str()
                }
            };
            if let Some(&i) = self.exact.get(host) {
                best = best.min(i);
            }
            let mut rest = host;
            loop {
                if let Some(&i) = self.suffix.get(rest) {
                    best = best.min(i);
                }
                match rest.find('.') {
                    Some(i) => rest = &rest[i + 1..],
                    None => break,
                }
            }
        }
        self.vias.get(best).copied()
    }
}

/// Parses `a.b.c.d/n` or `v6::/n`. A network inside `::ffff:0:0/96` is kept as the IPv4
/// network it maps (`::ffff:10.0.0.0/104` is `10.0.0.0/8`), since addresses are compared in
/// canonical form.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (ip, len) = s
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not a CIDR (a.b.c.d/n)"))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len: u8 = len
        .parse()
        .ok()
        .filter(|&l| l <= max)
        .ok_or_else(|| format!("prefix length {len:?} is not 0..={max}"))?;
    match ip.to_canonical() {
        IpAddr::V4(v4) if ip.is_ipv6() && len >= 96 => Ok((IpAddr::V4(v4), len - 96)),
        _ => Ok((ip, len)),
    }
}

/// True when `ip` is inside `net/len`; `ip` is taken in canonical form (an IPv4-mapped IPv6
/// address is the IPv4 address), as `access.allow`, `cidr:` rules and the self check all
/// compare addresses (DESIGN §5).
pub fn in_cidr(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip.to_canonical(), net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[(&[&str], Via)]) -> RuleSet {
        let mut r = RuleSet::default();
        for (exprs, via) in list {
            let v: Vec<String> = exprs.iter().map(|s| s.to_string()).collect();
            r.push(&v, *via).unwrap();
        }
        r
    }

    #[test]
    fn first_match_wins_across_kinds() {
        let r = rules(&[
            (&["domain:blocked.example"], Via::Reject),
            (&["port:25"], Via::Reject),
            (&["suffix:example", "cidr:10.0.0.0/8"], Via::Direct),
            (&["*.example", "port:443"], Via::Pool(1)),
        ]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(r.lookup("blocked.example", None, 443), Some(Via::Reject));
        assert_eq!(r.lookup("a.example", None, 25), Some(Via::Reject));
        assert_eq!(r.lookup("a.b.example", None, 443), Some(Via::Direct));
        assert_eq!(r.lookup("10.1.2.3", ip("10.1.2.3"), 80), Some(Via::Direct));
        assert_eq!(
            r.lookup("11.1.2.3", ip("11.1.2.3"), 443),
            Some(Via::Pool(1))
        );
        assert_eq!(r.lookup("other.test", None, 80), None);
    }

    #[test]
    fn cidr_sees_the_address_not_the_spelling() {
        let r = rules(&[(&["cidr:127.0.0.0/8"], Via::Reject)]);
        for host in [
            "127.1",
            "0177.0.0.1",
            "2130706433",
            "0x7f.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            let ip = crate::addr::host_ip(host).unwrap();
            assert!(ip.is_some(), "{host}");
            assert_eq!(r.lookup(host, ip, 80), Some(Via::Reject), "{host}");
        }
        // Only the address counts: a name that looks like one is no literal.
        assert_eq!(r.lookup("127.0.0.1.example", None, 80), None);
    }

    #[test]
    fn cidr_matching() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_cidr(ip("192.168.1.7"), ip("192.168.0.0"), 16));
        assert!(!in_cidr(ip("192.169.1.7"), ip("192.168.0.0"), 16));
        assert!(in_cidr(ip("::ffff:10.0.0.1"), ip("10.0.0.0"), 8));
        assert!(in_cidr(ip("fd00::1"), ip("fc00::"), 7));
        assert!(in_cidr(ip("1.2.3.4"), ip("0.0.0.0"), 0));
    }

    #[test]
    fn mapped_addresses_and_networks_are_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for mapped in ["::ffff:127.0.0.1", "::ffff:7f00:1", "::FFFF:127.0.0.9"] {
            assert!(in_cidr(ip(mapped), ip("127.0.0.0"), 8), "{mapped}");
        }
        assert!(!in_cidr(ip("::ffff:127.0.0.1"), ip("::"), 0));
        // IPv4-compatible (RFC 4291 §2.5.5.1, deprecated) is not mapped: no IPv4 meaning.
        assert!(!in_cidr(ip("::127.0.0.1"), ip("127.0.0.0"), 8));
        assert_eq!(
            parse_cidr("::ffff:127.0.0.0/104").unwrap(),
            (ip("127.0.0.0"), 8)
        );
        assert_eq!(
            parse_cidr("::ffff:7f00:1/128").unwrap(),
            (ip("127.0.0.1"), 32)
        );
        assert_eq!(parse_cidr("::/0").unwrap(), (ip("::"), 0));
        let (net, len) = parse_cidr("::ffff:127.0.0.0/104").unwrap();
        assert!(in_cidr(ip("127.1.2.3"), net, len));
    }

    #[test]
    fn bad_expressions_name_their_position() {
        let mut r = RuleSet::default();
        assert_eq!(
            r.push(
                &["ok.example".into(), "cidr:10.0.0.0/33".into()],
                Via::Direct
            )
            .unwrap_err()
            .0,
            1
        );
        assert!(r.push(&["port:0".into()], Via::Direct).is_err());
        assert!(r.push(&[], Via::Direct).is_err());
    }
}
