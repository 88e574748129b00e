//! Request heads: parse, and when accepted, rewrite for both kinds of next hop. Nothing may
//! panic, and a rewritten head must itself parse as a request with the same framing.
#![no_main]

use ferry::buffer::Buf;
use ferry::http::request::{self, MAX_HEADERS};
use ferry::http::rewrite::{finish_request_head, request_head, TargetForm};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(end) = ferry::http::find_head_end(data, 0) else { return };
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Ok(Some(req)) = request::parse(&data[..end], &mut hs) else { return };
    for (form, via) in [(TargetForm::Origin, false), (TargetForm::Absolute, true)] {
        let mut out = Buf::with_capacity(256);
        request_head(&mut out, &req, form, via);
        finish_request_head(&mut out, Some("Basic dTpw"));
        let mut hs2 = [httparse::EMPTY_HEADER; MAX_HEADERS + 4];
        let again = request::parse(out.bytes(), &mut hs2);
        match again {
            Ok(Some(r2)) => {
                assert_eq!(r2.framing, req.framing, "framing changed by rewriting");
                // The address a numeric or IPv6 host denotes survives being written out.
                if form == TargetForm::Absolute {
                    assert_eq!(r2.target.ip, req.target.ip, "target address changed");
                }
            }
            // an origin-form head is refused by a proxy parser by design
            Err(_) if form == TargetForm::Origin => {}
            other => panic!("rewritten head does not parse: {other:?}"),
        }
    }
});
