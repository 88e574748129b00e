//! The chunked decoder: fed the same input whole and in pieces (split points from the first
//! byte), it must agree on how many bytes belong to the body and whether it ended or failed.
#![no_main]

use ferry::http::framing::{BodyState, Framing};
use libfuzzer_sys::fuzz_target;

fn run(input: &[u8], step: usize) -> (usize, bool, bool) {
    let mut st = BodyState::new(Framing::Chunked);
    let mut used = 0;
    while used < input.len() && !st.is_done() {
        let end = (used + step).min(input.len());
        match st.advance(&input[used..end]) {
            Ok(n) => {
                assert!(n <= end - used);
                assert!(n == end - used || st.is_done(), "stopped early without ending");
                used += n;
            }
            Err(_) => return (used, false, true),
        }
    }
    (used, st.is_done(), false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else { return };
    let step = (first as usize % 17) + 1;
    let whole = run(input, input.len().max(1));
    let pieces = run(input, step);
    // where an error is found may differ in `used`, but not whether there is one
    assert_eq!(whole.2, pieces.2, "error disagreement");
    if !whole.2 {
        assert_eq!(whole, pieces);
    }
});
