//! ferry's DER reader (`tls::x509`) on arbitrary bytes: it reads certificates that arrive
//! through the control API and from files anyone with write access to cert_dir can drop, so
//! it must refuse anything malformed without panicking, looping or reading out of bounds.
//! Whatever it accepts must hold together: names borrowed from the input, dates that format.
#![no_main]

use ferry::tls::x509;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(facts) = x509::parse(data) else { return };
    let span = data.as_ptr_range();
    for name in &facts.names {
        assert!(!name.is_empty());
        // Parsed in place: every name is a slice of the input.
        assert!(span.contains(&name.as_ptr()));
    }
    for t in [facts.not_before, facts.not_after] {
        assert_eq!(x509::utc_text(t).len(), 20, "{t}");
    }
});
