//! The mailboxes between threads: what the control thread and the resolvers tell a worker,
//! what a worker tells the control thread, and the channel-plus-waker that carries it into a
//! mio poll.

use crate::config::Config;
use crate::listener::{Endpoint, Listening};
use crate::resolve::{Answer, Deliver};
use crossbeam_channel::{Receiver, Sender};
use mio::{Registry, Token, Waker};

use std::sync::Arc;

/// What other threads tell a worker.
pub enum Inbox {
    Answer(Answer),
    /// A reloaded config: new sessions use it; sessions in flight keep theirs.
    Config(Arc<Config>),
    /// A new listener (the `listen` address changed): it replaces the old one, which closes.
    /// Listeners changed: keep those whose endpoint is in `keep`, close
    /// the others, and serve `add` too.
    Listeners {
        keep: Vec<Endpoint>,
        add: Vec<Listening>,
    },
    /// Stop accepting, finish what is in flight.
    Drain,
    /// To the control thread: probe this upstream now (a request through it timed out).
    Probe(Arc<crate::upstream::UpstreamState>),
    /// A request queued at a backend was handed a slot: wake its session.
    Turn(crate::upstream::queue::Turn),
}

/// A worker's mailbox: a channel plus the waker that interrupts its poll.
#[derive(Clone)]
pub struct Outbox {
    tx: Sender<Inbox>,
    waker: Arc<Waker>,
}

impl Outbox {
    /// A mailbox that wakes the poll of `registry` with `token`, and its receiving end. The
    /// control thread has one too, for the resolver's answers to its probes.
    pub fn pair(registry: &Registry, token: Token) -> std::io::Result<(Outbox, Receiver<Inbox>)> {
        let waker = Arc::new(Waker::new(registry, token)?);
        let (tx, rx) = crossbeam_channel::unbounded();
        Ok((Outbox { tx, waker }, rx))
    }

    pub fn send(&self, m: Inbox) {
        if self.tx.send(m).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

impl Deliver for Outbox {
    fn deliver(&self, a: Answer) {
        self.send(Inbox::Answer(a));
    }
}
