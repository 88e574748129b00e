//! The loop around the head parsers, as sessions run it: arbitrary bytes, split at points
//! taken from the input, scanned for request heads and for response heads. Any pass of the
//! loop that neither consumes bytes nor searches further fails (two empty lines once spun a
//! worker for ever while the parsers alone had been fuzzed clean).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, input)) = data.split_first() else { return };
    // Up to 8 split points, each from a nibble pattern of the first byte and the length.
    let mut chunks = Vec::new();
    let mut at = 0;
    for i in 0..(cuts % 9) as usize {
        let len = input.len();
        let cut = (at + 1 + (cuts as usize * 31 + i * 17) % (len.max(1))).min(len);
        chunks.push(&input[at..cut]);
        at = cut;
    }
    chunks.push(&input[at..]);
    for responses in [false, true] {
        if let Err(e) = ferry::http::check_scan_progress(&chunks, responses) {
            panic!("{e}");
        }
    }
});
