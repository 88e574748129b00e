//! The config loader: any text either parses into a valid config or is refused with errors
//! that each name something; nothing may panic. Addresses are kept to loopback literals so that
//! no input can make the fuzzer resolve names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Host names in `listen` would be resolved (getaddrinfo); keep the fuzzer off the network.
    if text.contains("listen") && !text.lines().filter(|l| l.contains("listen")).all(|l| l.contains("127.0.0.1") || l.contains("[::1]")) {
        return;
    }
    match ferry::config::parse(text, None) {
        Ok(c) => {
            assert!(!c.pools.is_empty());
            for p in &c.pools {
                assert!(p.retries >= 1);
            }
        }
        Err(errs) => assert!(!errs.0.is_empty() && errs.0.iter().all(|e| !e.msg.is_empty())),
    }
});
