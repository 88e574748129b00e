//! The PROXY protocol v1/v2 parser (`http::proxy_protocol`) on arbitrary bytes, and on every
//! prefix of them, as a header dripping in would be parsed read after read.
//!
//! Nothing may panic; a header's length is at most what was read and at most `MAX_LEN`; every
//! prefix of a header is `Incomplete` and every buffer that extends one gives the same
//! header; a refusal is final (no more bytes make a refused start acceptable); a buffer of
//! `MAX_LEN` bytes is never `Incomplete`.
#![no_main]

use ferry::http::proxy_protocol::{parse, Preface, MAX_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut found: Option<Preface> = None;
    let mut refused = false;
    for n in 0..=data.len().min(MAX_LEN) {
        let step = parse(&data[..n]);
        match (step, found) {
            (Err(_), None) => refused = true,
            (Err(e), Some(h)) => panic!("{h:?} at {n} bytes, then {e:?}"),
            (Ok(p), _) if refused => panic!("refused, then {p:?} at {n} bytes"),
            (Ok(Preface::Incomplete), None) => {}
            (Ok(Preface::Incomplete), Some(h)) => panic!("{h:?}, then incomplete at {n}"),
            (Ok(h @ Preface::Header { len, .. }), None) => {
                assert!(
                    len > 0 && len == n,
                    "a header of {len} bytes first seen at {n}"
                );
                found = Some(h);
            }
            (Ok(h), Some(first)) => assert_eq!(h, first, "at {n} bytes"),
        }
        if n == MAX_LEN {
            assert_ne!(step, Ok(Preface::Incomplete));
        }
    }
    if let Ok(Preface::Header { len, .. }) = parse(data) {
        assert!(len <= data.len().min(MAX_LEN));
    }
});
