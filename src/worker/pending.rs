//! Connects in progress, bounded per worker and, under pressure, per client.

use std::collections::HashMap;
use std::net::IpAddr;

/// Connects a worker may have in progress at once: a flood of CONNECTs to targets that never
/// answer is held to this (each for at most `connect_timeout_secs`) and refused with 503
/// beyond it. Fairness only applies under pressure: once half the slots are taken, a client
/// that holds a quarter of them gets no more, so one flooding client cannot shut the others
/// out, while a client that opens hundreds of connections at once (a benchmark, a busy
/// browser) is never refused while the worker has room.
const MAX_PENDING_CONNECTS: usize = 1024;

/// The connects in progress of one worker, in all and by client address.
#[derive(Default)]
pub struct PendingConnects {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

impl PendingConnects {
    /// Takes a slot for `client`; false when the worker or the client is at its bound.
    pub fn take(&mut self, client: IpAddr) -> bool {
        let mine = self.by_client.entry(client).or_insert(0);
        let crowded = self.total >= MAX_PENDING_CONNECTS / 2 && *mine >= MAX_PENDING_CONNECTS / 4;
        if self.total >= MAX_PENDING_CONNECTS || crowded {
            return false;
        }
        *mine += 1;
        self.total += 1;
        true
    }

    /// Gives a slot back.
    pub fn release(&mut self, client: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.by_client.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                self.by_client.remove(&client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn one_client_may_take_many_slots_until_the_worker_is_crowded() {
        let mut p = PendingConnects::default();
        for _ in 0..MAX_PENDING_CONNECTS / 2 {
            assert!(p.take(ip(1)));
        }
        // Crowded now, and client 1 holds more than a quarter: no more for it...
        assert!(!p.take(ip(1)));
        // ...while another client still gets slots, up to the worker's bound.
        for _ in 0..MAX_PENDING_CONNECTS / 4 {
            assert!(p.take(ip(2)));
        }
        assert!(!p.take(ip(2)));
        for _ in 0..MAX_PENDING_CONNECTS / 4 {
            assert!(p.take(ip(3)));
        }
        assert_eq!(p.total, MAX_PENDING_CONNECTS);
        assert!(!p.take(ip(4)));
    }

    #[test]
    fn released_slots_are_given_back_and_forgotten() {
        let mut p = PendingConnects::default();
        assert!(p.take(ip(1)));
        assert!(p.take(ip(1)));
        p.release(ip(1));
        p.release(ip(1));
        assert_eq!(p.total, 0);
        assert!(p.by_client.is_empty());
        p.release(ip(9)); // never taken: no underflow
        assert_eq!(p.total, 0);
    }
}
