//! A backend's request queue (DESIGN §7.3), shared by every worker and the control thread. On
//! the reverse request path it sits between routing and the first attempt: a request takes one
//! of the backend's `max_active` slots before it is sent, or waits in the backend's queue (at
//! most `max_queued` wait) until a request that ends hands its slot on; the slot is held until
//! the exchange ends. HAProxy's `maxconn` / `maxqueue` / `timeout queue` are the model, with
//! two differences: `max_queued: 0` means no queue (HAProxy: an unlimited one), and the limit
//! counts requests, not connections.
//!
//! Shape:
//! - `active` (slots held) and `waiting` (tickets queued) are 32-bit atomics. When nobody
//!   waits and a slot is free, taking one is one `fetch_add` and giving it back one `fetch_sub`
//!   and a load: no lock.
//! - The queue itself is a FIFO of tickets under a small `Mutex`, touched only when a request
//!   must wait, leaves the queue, or gives a slot back while someone waits. A ticket says
//!   where its request lives: its worker's mailbox and its session (slot, generation).
//! - A slot that frees up while tickets wait is handed to the first ticket: the count stays
//!   (the slot changes hands), the ticket leaves the FIFO, and its worker gets `Inbox::Turn`
//!   through its mailbox, whose mio waker interrupts that worker's poll: a slot freed on one
//!   worker wakes a request queued on another without anyone polling.
//! - Nothing leaks: a `Slot` gives its slot back when dropped (an exchange's end, an error, a
//!   panic unwinding its session); a `Ticket` dropped while queued leaves the FIFO, and one
//!   dropped after it was handed a slot (the client left while the `Turn` was on its way, or
//!   the session is gone) gives that slot back, to the next ticket if there is one. A `Turn`
//!   that finds no ticket waiting for it is ignored: its slot was already given back.
//!
//! Lost wake-ups: a request that queues stores `waiting` and then tries to take a slot for the
//! FIFO's head; a request that ends decrements `active` and then loads `waiting`. Both are
//! `SeqCst`, so at least one of the two sees the other and hands the free slot on.

use crate::mailbox::{Inbox, Outbox};
use crate::upstream::state::Padded;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The shared queue of one backend; the same `Arc` is carried across reloads by backend name.
pub struct BackendQueue {
    /// Requests in flight at most; 0 = no limit (slots are still counted).
    max_active: AtomicU32,
    /// Tickets that may wait at most; 0 = none (a request with no free slot gets 503 at once).
    max_queued: AtomicU32,
    /// Slots held: by requests in flight, and by tickets handed a slot whose request has not
    /// taken it up yet.
    active: AtomicU32,
    /// Tickets in the FIFO (written under its lock, read without it).
    waiting: AtomicU32,
    fifo: Mutex<Fifo>,
    /// Requests refused because the queue was full, per worker.
    full: Box<[Padded]>,
    /// Requests that waited `timeout_secs` in vain, per worker.
    timed_out: Box<[Padded]>,
}

struct Fifo {
    tickets: VecDeque<Waiter>,
    /// The id of the next ticket (unique within this queue).
    next_id: u64,
}

/// A queued request in the FIFO.
struct Waiter {
    id: u64,
    at: Where,
}

/// Where a queued request lives: the mailbox of its worker and its session there.
pub struct Where {
    pub mailbox: Outbox,
    pub slot: usize,
    pub generation: u32,
}

/// What a request gets when it asks for a slot.
pub enum Admission {
    /// A slot: go on.
    Go(Slot),
    /// No free slot: wait with this ticket for a `Turn`.
    Wait(Ticket),
    /// No free slot and the queue is full: 503.
    Full,
}

/// The message a worker gets when one of its queued requests was handed a slot.
pub struct Turn {
    queue: Arc<BackendQueue>,
    id: u64,
    /// The session of the request (its generation tells a reused slot apart).
    pub slot: usize,
    pub generation: u32,
}

impl BackendQueue {
    /// A queue with nothing in flight, counting for `workers` workers.
    pub fn new(max_active: u32, max_queued: u32, workers: usize) -> Arc<BackendQueue> {
        let counters = || (0..workers.max(1)).map(|_| Padded::default()).collect();
        Arc::new(BackendQueue {
            max_active: AtomicU32::new(max_active),
            max_queued: AtomicU32::new(max_queued),
            active: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            fifo: Mutex::new(Fifo {
                tickets: VecDeque::new(),
                next_id: 0,
            }),
            full: counters(),
            timed_out: counters(),
        })
    }

    /// Applies a reloaded config's limits; requests that wait get the slots a higher
    /// `max_active` frees at once. A lower limit takes nothing away: it holds new requests back
    /// until enough in flight have ended (and a lower `max_queued` sends no waiting one away).
    pub fn set_limits(self: &Arc<Self>, max_active: u32, max_queued: u32) {
        self.max_active.store(max_active, Ordering::SeqCst);
        self.max_queued.store(max_queued, Ordering::SeqCst);
        self.hand_on();
    }

    /// `(max_active, max_queued)` in force.
    pub fn limits(&self) -> (u32, u32) {
        (
            self.max_active.load(Ordering::Relaxed),
            self.max_queued.load(Ordering::Relaxed),
        )
    }

    /// Slots held now.
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// Requests waiting now.
    pub fn queued(&self) -> u32 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Requests refused so far: `(queue full, waited in vain)`, summed over workers.
    pub fn rejected(&self) -> (usize, usize) {
        let sum = |c: &[Padded]| c.iter().map(|p| p.0.load(Ordering::Relaxed)).sum();
        (sum(&self.full), sum(&self.timed_out))
    }

    /// How many workers it counts for.
    pub fn workers(&self) -> usize {
        self.full.len()
    }

    /// Counts a request of worker `worker` that waited `timeout_secs` in vain.
    pub fn count_timeout(&self, worker: usize) {
        if let Some(c) = self.timed_out.get(worker) {
            c.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks for a slot for a request of worker `worker`; `at` says where the request lives,
    /// asked only when it has to wait.
    pub fn enter(self: &Arc<Self>, worker: usize, at: impl FnOnce() -> Where) -> Admission {
        let max = self.max_active.load(Ordering::Relaxed);
        if max == 0 {
            self.active.fetch_add(1, Ordering::SeqCst);
            return Admission::Go(Slot(self.clone()));
        }
        // Fast path: nobody waits (a newcomer must not pass those who do) and a slot is free.
        if self.waiting.load(Ordering::SeqCst) == 0 {
            if self.active.fetch_add(1, Ordering::SeqCst) < max {
                return Admission::Go(Slot(self.clone()));
            }
            // Taken back like any slot given back: someone may have queued meanwhile.
            self.release();
        }
        let id = {
            let mut fifo = self.lock();
            if fifo.tickets.is_empty() && self.take_slot() {
                return Admission::Go(Slot(self.clone()));
            }
            let max_queued = self.max_queued.load(Ordering::Relaxed) as usize;
            if fifo.tickets.len() >= max_queued {
                drop(fifo);
                if let Some(c) = self.full.get(worker) {
                    c.0.fetch_add(1, Ordering::Relaxed);
                }
                return Admission::Full;
            }
            let id = fifo.next_id;
            fifo.next_id += 1;
            fifo.tickets.push_back(Waiter { id, at: at() });
            self.waiting
                .store(fifo.tickets.len() as u32, Ordering::SeqCst);
            id
        };
        let ticket = Ticket {
            queue: self.clone(),
            id,
            handed: false,
        };
        // A slot may have come free between the failed take and the push, given back by a
        // request that saw nobody waiting: hand it on now (maybe to this very ticket, whose
        // worker then gets its `Turn` like any other).
        self.hand_on();
        Admission::Wait(ticket)
    }

    /// Takes one slot if one is free (under the FIFO's lock, so that handing on is ordered).
    fn take_slot(&self) -> bool {
        let max = self.max_active.load(Ordering::Relaxed);
        let before = self.active.fetch_add(1, Ordering::SeqCst);
        if max == 0 || before < max {
            return true;
        }
        // Undone without handing on: the caller holds the lock and serves the FIFO itself,
        // and a request that ends meanwhile waits for the lock to hand its slot on.
        self.active.fetch_sub(1, Ordering::SeqCst);
        false
    }

    /// Gives one slot back; hands it on when someone waits.
    fn release(self: &Arc<Self>) {
        self.active.fetch_sub(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.hand_on();
        }
    }

    /// Hands free slots to the first tickets, one at a time, and tells their workers (outside
    /// the lock: a mailbox send writes to an eventfd).
    pub fn hand_on(self: &Arc<Self>) {
        loop {
            let w = {
                let mut fifo = self.lock();
                if fifo.tickets.is_empty() || !self.take_slot() {
                    return;
                }
                let w = fifo.tickets.pop_front();
                self.waiting
                    .store(fifo.tickets.len() as u32, Ordering::SeqCst);
                w
            };
            let Some(w) = w else { return };
            w.at.mailbox.send(Inbox::Turn(Turn {
                queue: self.clone(),
                id: w.id,
                slot: w.at.slot,
                generation: w.at.generation,
            }));
        }
    }

    /// The FIFO, even if a thread panicked while holding it (nothing between lock and unlock
    /// can leave it half-changed).
    fn lock(&self) -> MutexGuard<'_, Fifo> {
        self.fifo.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for BackendQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (max_active, max_queued) = self.limits();
        write!(
            f,
            "BackendQueue({}/{max_active} active, {}/{max_queued} queued)",
            self.active(),
            self.queued()
        )
    }
}

/// One slot of a backend, held by a request in flight; dropping it (on every path: the
/// exchange's end, an error, a panic unwinding) gives it back, to the next ticket if one waits.
pub struct Slot(Arc<BackendQueue>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A request's place in a backend's queue; dropping it leaves the queue, and gives back the
/// slot it was handed, if it was.
pub struct Ticket {
    queue: Arc<BackendQueue>,
    id: u64,
    /// Its slot went to a `Slot` (see `into_slot`).
    handed: bool,
}

impl Ticket {
    /// True when `turn` is this ticket's (a `Turn` for an earlier ticket of the same session
    /// is not).
    pub fn is(&self, turn: &Turn) -> bool {
        Arc::ptr_eq(&self.queue, &turn.queue) && self.id == turn.id
    }

    /// The slot this ticket was handed; call it only with the ticket's own `Turn` (`is`).
    pub fn into_slot(mut self) -> Slot {
        self.handed = true;
        Slot(self.queue.clone())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.handed {
            return;
        }
        let queued = {
            let mut fifo = self.queue.lock();
            match fifo.tickets.iter().position(|w| w.id == self.id) {
                Some(i) => {
                    fifo.tickets.remove(i);
                    self.queue
                        .waiting
                        .store(fifo.tickets.len() as u32, Ordering::SeqCst);
                    true
                }
                None => false,
            }
        };
        if !queued {
            // Only handing on takes a ticket out of the FIFO: this one was handed a slot that
            // its request will never use.
            self.queue.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::Receiver;
    use mio::{Poll, Token};
    use std::time::Duration;

    /// A stand-in for a worker: a mailbox whose messages the test reads.
    struct FakeWorker {
        _poll: Poll,
        mailbox: Outbox,
        inbox: Receiver<Inbox>,
    }

    impl FakeWorker {
        fn new() -> FakeWorker {
            let poll = Poll::new().unwrap();
            let (mailbox, inbox) = Outbox::pair(poll.registry(), Token(0)).unwrap();
            FakeWorker {
                _poll: poll,
                mailbox,
                inbox,
            }
        }

        /// Where session `slot` of this worker lives.
        fn at(&self, slot: usize) -> impl FnOnce() -> Where + '_ {
            move || Where {
                mailbox: self.mailbox.clone(),
                slot,
                generation: 7,
            }
        }

        /// The turns delivered so far (their session slots, in order).
        fn turns(&self) -> Vec<Turn> {
            self.inbox
                .try_iter()
                .filter_map(|m| match m {
                    Inbox::Turn(t) => Some(t),
                    _ => None,
                })
                .collect()
        }
    }

    fn go(a: Admission) -> Slot {
        match a {
            Admission::Go(s) => s,
            Admission::Wait(_) => panic!("waits"),
            Admission::Full => panic!("full"),
        }
    }

    fn wait(a: Admission) -> Ticket {
        match a {
            Admission::Wait(t) => t,
            Admission::Go(_) => panic!("goes"),
            Admission::Full => panic!("full"),
        }
    }

    #[test]
    fn free_slots_go_at_once_and_a_full_queue_refuses() {
        let q = BackendQueue::new(2, 1, 2);
        let w = FakeWorker::new();
        let a = go(q.enter(0, w.at(1)));
        let b = go(q.enter(1, w.at(2)));
        let c = wait(q.enter(0, w.at(3)));
        assert!(matches!(q.enter(1, w.at(4)), Admission::Full));
        assert_eq!((q.active(), q.queued(), q.rejected()), (2, 1, (1, 0)));
        drop(c);
        assert_eq!(
            q.queued(),
            0,
            "a ticket dropped while queued leaves the queue"
        );
        drop((a, b));
        assert_eq!(q.active(), 0);
        assert!(w.turns().is_empty());
    }

    #[test]
    fn slots_are_handed_on_in_arrival_order_across_workers() {
        let q = BackendQueue::new(1, 8, 2);
        let (w0, w1) = (FakeWorker::new(), FakeWorker::new());
        let first = go(q.enter(0, w0.at(1)));
        let tickets = [
            wait(q.enter(1, w1.at(2))),
            wait(q.enter(0, w0.at(3))),
            wait(q.enter(1, w1.at(4))),
        ];
        assert_eq!(q.queued(), 3);
        // A slot freed on worker 0 goes to the first ticket, on worker 1, not to worker 0's.
        drop(first);
        assert!(w0.turns().is_empty());
        let turns = w1.turns();
        assert_eq!(turns.len(), 1);
        assert_eq!((turns[0].slot, turns[0].generation), (2, 7));
        assert_eq!((q.active(), q.queued()), (1, 2), "the slot changed hands");
        let [t2, t3, t4] = tickets;
        assert!(t2.is(&turns[0]) && !t3.is(&turns[0]) && !t4.is(&turns[0]));
        let s2 = t2.into_slot();
        drop(s2);
        let turns = w0.turns();
        assert_eq!(turns.iter().map(|t| t.slot).collect::<Vec<_>>(), [3]);
        drop(t3.into_slot());
        let turns = w1.turns();
        assert_eq!(turns.iter().map(|t| t.slot).collect::<Vec<_>>(), [4]);
        drop(t4.into_slot());
        assert_eq!((q.active(), q.queued()), (0, 0));
    }

    #[test]
    fn a_ticket_that_left_is_skipped_and_a_slot_it_cannot_use_is_passed_on() {
        let q = BackendQueue::new(1, 8, 1);
        let w = FakeWorker::new();
        let first = go(q.enter(0, w.at(1)));
        let gone = wait(q.enter(0, w.at(2)));
        let handed = wait(q.enter(0, w.at(3)));
        let last = wait(q.enter(0, w.at(4)));
        drop(gone);
        drop(first);
        let turns = w.turns();
        assert_eq!(turns.iter().map(|t| t.slot).collect::<Vec<_>>(), [3]);
        // Its client leaves before its worker saw the turn: the slot goes on to the next.
        drop(handed);
        let late = w.turns();
        assert_eq!(late.iter().map(|t| t.slot).collect::<Vec<_>>(), [4]);
        assert!(!last.is(&turns[0]), "a stale turn is not the next ticket's");
        assert!(last.is(&late[0]));
        drop(last.into_slot());
        assert_eq!((q.active(), q.queued()), (0, 0));
    }

    #[test]
    fn a_higher_limit_lets_waiting_requests_go_and_no_limit_lets_them_all_go() {
        let q = BackendQueue::new(1, 8, 1);
        let w = FakeWorker::new();
        let first = go(q.enter(0, w.at(1)));
        let tickets: Vec<Ticket> = (2..6).map(|s| wait(q.enter(0, w.at(s)))).collect();
        q.set_limits(3, 8);
        assert_eq!(w.turns().iter().map(|t| t.slot).collect::<Vec<_>>(), [2, 3]);
        assert_eq!((q.active(), q.queued()), (3, 2));
        q.set_limits(0, 0);
        assert_eq!(w.turns().iter().map(|t| t.slot).collect::<Vec<_>>(), [4, 5]);
        assert_eq!((q.active(), q.queued()), (5, 0));
        // Lower again: nothing is taken away, new requests wait (or, with no queue, go away).
        q.set_limits(1, 0);
        assert!(matches!(q.enter(0, w.at(9)), Admission::Full));
        drop(first);
        drop(tickets);
        assert_eq!((q.active(), q.queued()), (0, 0));
    }

    #[test]
    fn without_a_limit_every_request_goes_and_is_counted() {
        let q = BackendQueue::new(0, 0, 1);
        let w = FakeWorker::new();
        let slots: Vec<Slot> = (0..5).map(|s| go(q.enter(0, w.at(s)))).collect();
        assert_eq!(q.active(), 5);
        drop(slots);
        assert_eq!(q.active(), 0);
    }

    #[test]
    fn a_panic_while_holding_a_slot_or_a_ticket_gives_it_back() {
        let q = BackendQueue::new(1, 1, 1);
        let w = FakeWorker::new();
        let (q2, at) = (q.clone(), w.at(2));
        let first = go(q.enter(0, w.at(1)));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ticket = wait(q2.enter(0, at));
            panic!("a session panics while it waits");
        }));
        assert!(r.is_err());
        assert_eq!(q.queued(), 0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _slot = first;
            panic!("a session panics in flight");
        }));
        assert!(r.is_err());
        assert_eq!(q.active(), 0);
    }

    /// Threads as workers, each with its own mailbox, taking slots, waiting, and leaving the
    /// queue at random: never more than `max_active` at once, and nothing left at the end.
    #[test]
    fn many_workers_never_exceed_the_limit_and_leak_nothing() {
        const MAX: u32 = 2;
        let q = BackendQueue::new(MAX, 4, 4);
        let inside = Arc::new(AtomicU32::new(0));
        let peak = Arc::new(AtomicU32::new(0));
        let waited = Arc::new(AtomicU32::new(0));
        // The slots start taken, so that the first requests wait whatever the scheduling (on
        // a slow or emulated CPU the threads could otherwise never meet).
        let main = FakeWorker::new();
        let held: Vec<_> = (0..MAX as usize)
            .map(|n| match q.enter(0, main.at(n)) {
                Admission::Go(s) => s,
                _ => panic!("free slots go at once"),
            })
            .collect();
        let threads: Vec<_> = (0..4)
            .map(|worker| {
                let (q, inside, peak) = (q.clone(), inside.clone(), peak.clone());
                let waited = waited.clone();
                std::thread::spawn(move || {
                    let w = FakeWorker::new();
                    let mut rng = 0x9e37_79b9_u32 ^ (worker as u32 + 1);
                    let mut served = 0;
                    for n in 0..300 {
                        rng ^= rng << 13;
                        rng ^= rng >> 17;
                        rng ^= rng << 5;
                        let slot = match q.enter(worker, w.at(n)) {
                            Admission::Go(s) => s,
                            Admission::Full => continue,
                            Admission::Wait(t) if rng.is_multiple_of(5) => {
                                // The client leaves, maybe just as its turn comes.
                                drop(t);
                                continue;
                            }
                            Admission::Wait(t) => loop {
                                waited.fetch_add(1, Ordering::Relaxed);
                                let m = w.inbox.recv_timeout(Duration::from_secs(20));
                                match m.expect("a turn comes") {
                                    Inbox::Turn(turn) if t.is(&turn) => break t.into_slot(),
                                    _ => {} // a stale turn of a ticket that left
                                }
                            },
                        };
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        for _ in 0..rng % 4 {
                            std::thread::yield_now();
                        }
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(slot);
                        served += 1;
                    }
                    served
                })
            })
            .collect();
        let end = std::time::Instant::now() + Duration::from_secs(20);
        while q.queued() == 0 {
            assert!(std::time::Instant::now() < end, "nobody queued");
            std::thread::yield_now();
        }
        drop(held);
        let served: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(served > 0);
        assert!(
            waited.load(Ordering::Relaxed) > 0,
            "some requests had to wait"
        );
        assert!(peak.load(Ordering::SeqCst) <= MAX);
        assert_eq!((q.active(), q.queued()), (0, 0), "no slot or ticket leaked");
    }
}
