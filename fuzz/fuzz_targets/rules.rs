//! Domain expressions and rules: lines of the input are expressions, compiled into a rule set
//! and a domain set, then looked up with hosts made from the same bytes. Nothing may panic,
//! an expression that compiled as `domain:x` must match x, and a host read as an address
//! (`addr::host_ip`: numeric and IPv6 forms) must write out as text that reads back the same.
#![no_main]

use ferry::route::domain::{parse_expr, DomainSet};
use ferry::route::rules::{RuleSet, Via};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines: Vec<String> = text.lines().take(64).map(String::from).collect();
    let mut rules = RuleSet::default();
    let mut set = DomainSet::default();
    for chunk in lines.chunks(3) {
        let _ = rules.push(chunk, Via::Direct);
    }
    for l in &lines {
        let _ = set.add(l);
        if let Ok((true, name)) = parse_expr(l) {
            let mut one = DomainSet::default();
            one.add(l).unwrap();
            assert!(one.matches(&name), "{l:?} does not match its own name");
        }
        // Hosts as a target parser hands them over: a numeric or IPv6 form is its address.
        let ip = ferry::addr::host_ip(l).ok().flatten();
        if let Some(ip) = ip {
            let mut text = ferry::addr::IpText::default();
            let shown = text.show(ip);
            assert_eq!(shown.parse(), Ok(ip), "{l:?} shown as {shown:?}");
            assert_eq!(ip, ip.to_canonical(), "{l:?} is not in canonical form");
        }
        for port in [0u16, 80, 443] {
            let _ = rules.lookup(l, ip, port);
        }
        let _ = set.matches(l);
    }
});
