//! Response heads: parse for every request kind; nothing may panic.
#![no_main]

use ferry::http::request::MethodKind;
use ferry::http::response::{self, MAX_HEADERS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(end) = ferry::http::find_head_end(data, 0) else { return };
    for kind in [MethodKind::Other, MethodKind::Head, MethodKind::Connect] {
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let _ = response::parse(&data[..end], &mut hs, kind);
    }
});
