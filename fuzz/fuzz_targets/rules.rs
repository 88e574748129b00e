//! Domain expressions and rules: lines of the input are expressions, compiled into a rule set
//! and a domain set, then looked up with hosts made from the same bytes. Nothing may panic,
//! and an expression that compiled as `domain:x` must match x.
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
        for port in [0u16, 80, 443] {
            let _ = rules.lookup(l, port);
        }
        let _ = set.matches(l);
    }
});
