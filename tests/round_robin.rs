//! Black-box tests of round-robin as one sequence for the whole process: consecutive requests
//! on fresh connections, which the kernel spreads over two workers, split exactly by weight at
//! every point where the sequence has come full circle, and interleaved.

mod common;

use common::{Fake, Ferry};

/// One request on a new connection; the tag of the upstream that served it.
fn served_by_fresh(ferry: &Ferry) -> usize {
    let r = ferry.client().roundtrip(
        b"GET http://o.test/size/1 HTTP/1.1\r\nHost: o.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.served_by().unwrap()["up".len()..].parse().unwrap()
}

/// Given upstreams `(weight, extra YAML)` in `mode`, with two workers, when `n` requests come
/// one after another, then after every whole turn of the sequence each upstream has served
/// exactly its weight times the turns (an upstream with extra YAML is meant to serve none),
/// and none served three in a row. Returns the order.
fn splits_exactly(mode: &str, upstreams: &[(u32, &str)], n: usize) -> Vec<usize> {
    let fakes: Vec<Fake> = (0..upstreams.len())
        .map(|i| Fake::proxy(&format!("up{i}"), None))
        .collect();
    let mut yaml = format!("mode: {mode}\nupstream:\n");
    for (f, (w, extra)) in fakes.iter().zip(upstreams) {
        yaml += &format!("  - {{url: '{}', weight: {w}{extra}}}\n", f.url());
    }
    let ferry = Ferry::start_with(2, &yaml);
    let in_turn: Vec<u32> = upstreams
        .iter()
        .map(|(w, extra)| if extra.is_empty() { *w } else { 0 })
        .collect();
    let turn: u32 = in_turn.iter().sum();
    let mut counts = vec![0u32; upstreams.len()];
    let mut order = Vec::new();
    for k in 1..=n as u32 {
        let i = served_by_fresh(&ferry);
        counts[i] += 1;
        order.push(i);
        if k % turn == 0 {
            let want: Vec<u32> = in_turn.iter().map(|w| w * (k / turn)).collect();
            assert_eq!(counts, want, "after {k} requests: {order:?}");
        }
    }
    assert!(
        order.windows(3).all(|w| !(w[0] == w[1] && w[1] == w[2])),
        "blocky: {order:?}"
    );
    order
}

#[test]
fn ten_requests_over_two_equal_upstreams_alternate_across_workers() {
    let order = splits_exactly("round_robin", &[(1, ""), (1, "")], 10);
    assert!(order.windows(2).all(|w| w[0] != w[1]), "{order:?}");
}

#[test]
fn thirty_requests_over_weights_one_and_two_split_ten_and_twenty() {
    let order = splits_exactly("round_robin", &[(1, ""), (2, "")], 30);
    assert!(order.windows(2).all(|w| w != [0, 0]), "{order:?}");
}

#[test]
fn thirty_requests_over_three_upstreams_follow_their_weights() {
    splits_exactly("round_robin", &[(1, ""), (1, ""), (2, "")], 30);
}

#[test]
fn a_priority_level_is_one_round_robin_sequence_too() {
    // The third upstream is on a worse level (default priority is 100) and gets nothing.
    splits_exactly("priority", &[(1, ""), (1, ""), (1, ", priority: 200")], 10);
}
