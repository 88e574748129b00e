//! A worker: one thread, an SO_REUSEPORT listener per configured address (forward and
//! reverse), one mio poll, and the sessions it accepted. Everything on the request path happens here, without locks: buffers, pipes, idle
//! upstream connections and DNS answers are all per worker. Timers are a deadline per session,
//! swept every `SWEEP` while there are sessions (and at its own time for a retry's backoff), so
//! an event costs nothing for timing.

mod pending;

use crate::buffer::BufPool;
use crate::config::Config;
use crate::listener::{Endpoint, Listening};
use crate::mailbox::{Inbox, Outbox};
use crate::relay::PipePool;
use crate::resolve::{Answer, DnsCache, Resolver};
use crate::session::{self, Session, Side, Step};
use crate::shared::Shared;
use crate::upstream::IdlePool;
use crossbeam_channel::Receiver;
use mio::{Events, Interest, Poll, Registry, Token};
pub use pending::PendingConnects;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAKER: Token = Token(usize::MAX - 1);
/// Listener `i` has token `FIRST_LISTENER - i`.
const FIRST_LISTENER: usize = usize::MAX - 2;
/// More listeners than a worker can have (the tokens below are sessions').
const MAX_LISTENERS: usize = 4096;
/// How often deadlines are checked (timeouts are whole seconds; this is their precision).
const SWEEP: Duration = Duration::from_millis(250);
/// How long accepting pauses when the process is out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Free buffers a worker keeps.
const POOLED_BUFFERS: usize = 64;

/// What sessions use of their worker.
pub struct Ctx {
    pub registry: Registry,
    pub bufs: BufPool,
    pub pipes: PipePool,
    pub idle: IdlePool,
    pub dns: DnsCache,
    pub resolver: Resolver,
    /// The control thread's mailbox (for `Inbox::Probe`).
    pub control: Outbox,
    /// This worker's own mailbox, for whoever hands a slot to a request queued here.
    pub mailbox: Outbox,
    pub worker: usize,
    /// The time at the top of this loop turn.
    pub now: Instant,
    /// This worker's upstream selection state.
    pub select: crate::upstream::select::Selector,
    pub config: Arc<Config>,
    pub draining: bool,
    pub shared: Arc<Shared>,
    /// Connects in progress in this worker (held by each `Connecting` stage).
    pub connecting: Rc<RefCell<PendingConnects>>,
    /// The addresses this worker's listeners are bound to (ferry must not connect to them).
    pub listening: Vec<std::net::SocketAddr>,
    /// The port of the reverse role's first TLS listener, where `https_redirect` sends
    /// plain requests (0: none).
    pub tls_port: u16,
    /// Session timers shorter than the sweep (retries' backoffs) want the loop awake by
    /// each of these: all of them, not just the soonest, since several requests back off at
    /// once when a server dies, and a later one would otherwise wait for the next sweep.
    pub wakes: BinaryHeap<Reverse<Instant>>,
    /// Request ids made so far, and this life's random start for them.
    ids: u64,
    id_seed: u64,
    /// test-hooks: the loop panics at the end of this turn.
    #[cfg(feature = "test-hooks")]
    pub crash: bool,
}

impl Ctx {
    /// This worker's counters.
    pub fn stats(&self) -> &crate::metrics::WorkerStats {
        self.shared.stats.worker(self.worker)
    }

    /// Makes the loop sweep the sessions' deadlines by `t`, though it is sooner than the
    /// next regular sweep.
    pub fn wake_by(&mut self, t: Instant) {
        self.wakes.push(Reverse(t));
    }

    /// True when a wake asked for is due; forgets those that are.
    fn wake_due(&mut self) -> bool {
        let mut due = false;
        while self.wakes.peek().is_some_and(|Reverse(t)| self.now >= *t) {
            self.wakes.pop();
            due = true;
        }
        due
    }

    /// A new `X-Request-Id`: unique within the process (worker and count) and across
    /// restarts (a random start), 32 hex digits, no allocation beyond the string.
    pub fn request_id(&mut self) -> String {
        self.ids = self.ids.wrapping_add(1);
        format!(
            "{:016x}{:04x}{:012x}",
            self.id_seed,
            self.worker as u16,
            self.ids & 0xffff_ffff_ffff
        )
    }
}

/// A worker before it runs: its poll and mailbox exist so that others can be given the outbox.
pub struct Worker {
    poll: Poll,
    inbox: Receiver<Inbox>,
    outbox: Outbox,
}

impl Worker {
    pub fn new() -> std::io::Result<Worker> {
        let poll = Poll::new()?;
        let (outbox, inbox) = Outbox::pair(poll.registry(), WAKER)?;
        Ok(Worker {
            poll,
            inbox,
            outbox,
        })
    }

    pub fn outbox(&self) -> Outbox {
        self.outbox.clone()
    }

    /// Runs the event loop until drained. If the loop itself panics (a session's panic is
    /// caught closer to it), its connections are dropped and it starts again with the same
    /// poll and inbox, the latest config and the same listeners: clients that connect
    /// meanwhile wait in their backlogs instead of being refused.
    pub fn run(
        self,
        id: usize,
        listeners: Vec<Listening>,
        config: Arc<Config>,
        resolver: Resolver,
        control: Outbox,
        shared: Arc<Shared>,
    ) {
        let Worker {
            mut poll,
            inbox,
            outbox,
        } = self;
        let kept = Rc::new(std::cell::Cell::new(listeners));
        let mut config = config;
        loop {
            let mut ls = kept.take();
            for l in &mut ls {
                // Still registered if a crashed life handed them back.
                let _ = poll.registry().deregister(&mut l.socket);
            }
            let (r, c, sh) = (resolver.clone(), config.clone(), shared.clone());
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let mail = (&inbox, control.clone(), outbox.clone());
                run_loop(id, &mut poll, mail, (ls, kept.clone()), c, r, sh)
            }));
            match outcome {
                Ok(()) => return,
                Err(_) => {
                    shared.panics.fetch_add(1, Ordering::Relaxed);
                    if shared.draining.load(Ordering::Relaxed) {
                        return;
                    }
                    log::error!("worker {id} crashed; restarting it (its connections were closed)");
                    config = shared.latest_config();
                }
            }
        }
    }
}

/// One life of a worker's event loop.
fn run_loop(
    id: usize,
    poll: &mut Poll,
    (inbox, control, mailbox): (&Receiver<Inbox>, Outbox, Outbox),
    (listeners, kept): (Vec<Listening>, KeptListeners),
    config: Arc<Config>,
    resolver: Resolver,
    shared: Arc<Shared>,
) {
    let registry = match poll.registry().try_clone() {
        Ok(r) => r,
        Err(e) => {
            log::error!("worker {id}: {e}");
            return;
        }
    };
    let mut w = Loop {
        listeners: Vec::new(),
        kept,
        sessions: Vec::new(),
        free: Vec::new(),
        again: Vec::new(),
        generation: 0,
        accept_paused_until: None,
        next_sweep: Instant::now() + SWEEP,
        drain_deadline: None,
        ctx: Ctx {
            registry,
            bufs: BufPool::new(POOLED_BUFFERS),
            pipes: PipePool::new(max_pipes(&shared)),
            idle: IdlePool::default(),
            dns: DnsCache::default(),
            resolver,
            control,
            mailbox,
            worker: id,
            now: Instant::now(),
            select: crate::upstream::select::Selector::new(crate::upstream::select::seed(id)),
            config,
            draining: shared.draining.load(Ordering::Relaxed),
            connecting: Rc::new(RefCell::new(PendingConnects::default())),
            listening: Vec::new(),
            tls_port: 0,
            wakes: BinaryHeap::new(),
            ids: 0,
            id_seed: crate::upstream::select::seed(id),
            #[cfg(feature = "test-hooks")]
            crash: false,
            shared,
        },
    };
    if w.ctx.draining {
        w.listeners = listeners;
        return;
    }
    w.listen(listeners);
    let mut events = Events::with_capacity(256);
    loop {
        let timeout = w.poll_timeout();
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                log::error!("worker {id}: poll failed: {e}");
                break;
            }
        }
        w.ctx.now = Instant::now();
        // The inbox first, whatever woke us: a config or listener sent before this turn's
        // events must apply to them (the waker's event may come after a client's).
        while let Ok(m) = inbox.try_recv() {
            match m {
                Inbox::Answer(a) => w.answer(a),
                Inbox::Config(c) => w.new_config(c),
                Inbox::Listeners { keep, add } => w.new_listeners(keep, add),
                Inbox::Drain => w.start_drain(),
                Inbox::Probe(_) => {} // for the control thread only
                Inbox::Turn(t) => w.with_session(t.slot, |s, ctx| s.queue_turn(&t, ctx)),
            }
        }
        for ev in events.iter() {
            match ev.token() {
                WAKER => {}
                Token(t) if t > FIRST_LISTENER - MAX_LISTENERS => w.accept_all(FIRST_LISTENER - t),
                Token(t) => {
                    let (slot, side) = session::side_of(t);
                    // Errors and hang-ups are made readable and writable so that the next
                    // I/O call reports them.
                    let hup = ev.is_error() || ev.is_read_closed() || ev.is_write_closed();
                    let rd = session::Readiness {
                        readable: ev.is_readable() || hup,
                        writable: ev.is_writable() || hup,
                        read_closed: ev.is_read_closed() || ev.is_error(),
                    };
                    w.with_session(slot, |s, ctx| s.ready(side, rd, ctx));
                }
            }
        }
        w.run_again();
        #[cfg(feature = "test-hooks")]
        if w.ctx.crash {
            // Stuck for a while first, so that a test can connect while the loop is down.
            log::warn!("test-hooks: crashing this worker in 500 ms");
            std::thread::sleep(Duration::from_millis(500));
            panic!("test-hooks: a worker crash on request");
        }
        if w.accept_paused_until.is_some_and(|t| w.ctx.now >= t) {
            w.accept_paused_until = None;
            for i in 0..w.listeners.len() {
                w.accept_all(i);
            }
        }
        // The wakes that are due are forgotten whether or not the regular sweep is due too.
        if w.ctx.wake_due() | (w.ctx.now >= w.next_sweep) {
            w.sweep();
        }
        if w.ctx.draining && (w.live() == 0 || w.drain_deadline.is_some_and(|d| w.ctx.now >= d)) {
            break;
        }
    }
    let n = w.live();
    if n > 0 {
        log::info!("worker {id}: closing {n} connections at shutdown");
    }
    for i in 0..w.sessions.len() {
        w.close(i);
    }
}

/// Pipes a worker may open; test-hooks builds can turn splicing off (FERRY_TEST_NO_SPLICE)
/// so that the copy fallback is tested on Linux too.
fn max_pipes(shared: &Shared) -> usize {
    #[cfg(feature = "test-hooks")]
    if std::env::var_os("FERRY_TEST_NO_SPLICE").is_some() {
        return 0;
    }
    shared.max_pipes
}

/// Where a loop that dies leaves its listeners for the next life.
type KeptListeners = Rc<std::cell::Cell<Vec<Listening>>>;

struct Loop {
    listeners: Vec<Listening>,
    kept: KeptListeners,
    sessions: Vec<Option<Session>>,
    free: Vec<usize>,
    again: Vec<usize>,
    generation: u32,
    accept_paused_until: Option<Instant>,
    next_sweep: Instant,
    drain_deadline: Option<Instant>,
    ctx: Ctx,
}

impl Drop for Loop {
    /// Runs on a normal end too, but a drained loop has given its listeners up already.
    fn drop(&mut self) {
        self.kept.set(std::mem::take(&mut self.listeners));
    }
}

impl Loop {
    fn live(&self) -> usize {
        self.sessions.len() - self.free.len()
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        let mut wake: Option<Instant> = None;
        if self.live() > 0 || !self.ctx.idle.is_empty() {
            wake = Some(self.next_sweep);
        }
        let soonest_wake = self.ctx.wakes.peek().map(|Reverse(t)| *t);
        for t in [self.accept_paused_until, soonest_wake]
            .into_iter()
            .flatten()
        {
            wake = Some(wake.map_or(t, |w| w.min(t)));
        }
        wake.map(|w| w.saturating_duration_since(now))
    }

    /// Serves `add` besides the current listeners (the ones already registered stay).
    fn listen(&mut self, add: Vec<Listening>) {
        for l in add {
            if self.listeners.len() >= MAX_LISTENERS {
                log::error!(
                    "more than {MAX_LISTENERS} listeners; {} is not served",
                    l.endpoint
                );
                continue;
            }
            self.listeners.push(l);
        }
        // Tokens follow positions: every listener is registered anew with its own.
        for (i, l) in self.listeners.iter_mut().enumerate() {
            let _ = self.ctx.registry.deregister(&mut l.socket);
            let token = Token(FIRST_LISTENER - i);
            if let Err(e) = self
                .ctx
                .registry
                .register(&mut l.socket, token, Interest::READABLE)
            {
                log::error!("cannot watch the listener on {}: {e}", l.endpoint);
            }
        }
        self.ctx.listening = self
            .listeners
            .iter()
            .filter_map(|l| l.socket.local_addr().ok())
            .collect();
        self.ctx.tls_port = self
            .listeners
            .iter()
            .filter(|l| l.endpoint.tls && l.endpoint.role == crate::listener::Role::Reverse)
            .find_map(|l| l.socket.local_addr().ok())
            .map_or(0, |a| a.port());
        // Connections may already wait in a backlog: edge-triggered, so look now.
        for i in 0..self.listeners.len() {
            self.accept_all(i);
        }
    }

    fn accept_all(&mut self, i: usize) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let Some(l) = self.listeners.get(i) else {
                return;
            };
            match l.socket.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, l.endpoint),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => {}
                Err(e) if crate::listener::is_fd_exhaustion(&e) => {
                    log::warn!("accept: {e}; pausing new connections for {ACCEPT_BACKOFF:?}");
                    self.accept_paused_until = Some(self.ctx.now + ACCEPT_BACKOFF);
                    return;
                }
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: mio::net::TcpStream, peer: std::net::SocketAddr, at: Endpoint) {
        let role = at.role;
        match crate::access::admit(&self.ctx.config, role, peer.ip()) {
            crate::access::Admit::Yes => {}
            crate::access::Admit::Refuse(reply) => {
                // Refused before anything else happens; best effort, the socket is fresh.
                log::debug!("{peer}: not allowed on a {role:?} listener");
                let _ = stream.write_all(reply);
                return;
            }
            crate::access::Admit::Close => {
                log::debug!("{peer}: not a trusted proxy, and a PROXY header is required");
                return;
            }
        }
        let max = self.ctx.config.limits.max_connections;
        let active = self.ctx.shared.active.fetch_add(1, Ordering::Relaxed);
        if max > 0 && active >= max {
            self.ctx.shared.active.fetch_sub(1, Ordering::Relaxed);
            // Best effort: the socket is fresh, so a small reply fits its send buffer.
            let _ = stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n");
            return;
        }
        let _ = stream.set_nodelay(true);
        #[cfg(feature = "tls")]
        let tls = match at.tls {
            true => match crate::tls::server_conn(&self.ctx.config) {
                Some(t) => Some(t),
                None => {
                    self.ctx.shared.active.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
            },
            false => None,
        };
        #[cfg(not(feature = "tls"))]
        let tls = None;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.sessions.push(None);
            self.sessions.len() - 1
        });
        if let Err(e) = self.ctx.registry.register(
            &mut stream,
            session::token(slot, Side::Client),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("cannot watch a new connection: {e}");
            self.free.push(slot);
            self.ctx.shared.active.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        self.sessions[slot] = Some(Session::new(
            slot,
            self.generation,
            stream,
            peer,
            (role, tls),
            &self.ctx,
        ));
    }

    /// Runs `f` on the session in `slot`, catching a panic so that one bad session cannot take
    /// the worker down; acts on the step it returns.
    fn with_session(&mut self, slot: usize, f: impl FnOnce(&mut Session, &mut Ctx) -> Step) {
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            return;
        };
        let ctx = &mut self.ctx;
        let step = match catch_unwind(AssertUnwindSafe(|| f(s, ctx))) {
            Ok(step) => step,
            Err(_) => {
                self.ctx.shared.panics.fetch_add(1, Ordering::Relaxed);
                log::error!("a session panicked; closing it (the worker goes on)");
                Step::Close
            }
        };
        match step {
            Step::Wait => {}
            Step::Again => self.again.push(slot),
            Step::Close => self.close(slot),
        }
    }

    fn run_again(&mut self) {
        let list = std::mem::take(&mut self.again);
        for slot in list {
            self.with_session(slot, |s, ctx| s.drive(ctx));
        }
    }

    /// A resolver's answer: cached (unless the job was abandoned unasked), then handed to
    /// every session that waits for that name.
    fn answer(&mut self, a: Answer) {
        let waiting = self.ctx.dns.answered(&a.host);
        if !a.abandoned {
            self.ctx
                .dns
                .put(a.host.clone(), a.result.clone(), self.ctx.now);
        }
        for (slot, generation) in waiting {
            let matches =
                matches!(self.sessions.get(slot), Some(Some(s)) if s.generation() == generation);
            if matches {
                let each = Answer {
                    asker: crate::resolve::Asker {
                        slot,
                        generation,
                        ..a.asker
                    },
                    host: a.host.clone(),
                    result: a.result.clone(),
                    abandoned: a.abandoned,
                };
                self.with_session(slot, |s, ctx| s.resolved(each, ctx));
            }
        }
    }

    fn close(&mut self, slot: usize) {
        if let Some(s) = self.sessions.get_mut(slot).and_then(Option::take) {
            let ctx = &mut self.ctx;
            if catch_unwind(AssertUnwindSafe(|| s.close(ctx))).is_err() {
                self.ctx.shared.panics.fetch_add(1, Ordering::Relaxed);
            }
            self.free.push(slot);
            self.ctx.shared.active.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn sweep(&mut self) {
        self.next_sweep = self.ctx.now + SWEEP;
        let now = self.ctx.now;
        for slot in 0..self.sessions.len() {
            let due = match &self.sessions[slot] {
                Some(s) => now >= s.deadline() || (self.ctx.draining && s.is_idle()),
                None => false,
            };
            if due {
                let draining_idle =
                    self.ctx.draining && self.sessions[slot].as_ref().is_some_and(|s| s.is_idle());
                if draining_idle {
                    self.close(slot);
                } else {
                    self.with_session(slot, |s, ctx| s.expire(ctx));
                }
            }
        }
        self.ctx.idle.expire(now);
    }

    fn new_config(&mut self, config: Arc<Config>) {
        self.ctx.config = config;
        // Upstreams may be gone or have new credentials: forget the idle connections. (The
        // round-robin sequences live in the snapshot's pools.)
        self.ctx.idle.clear();
    }

    /// The config's listen addresses changed: close what is no longer wanted, serve `add`.
    fn new_listeners(&mut self, keep: Vec<Endpoint>, add: Vec<Listening>) {
        if self.ctx.draining {
            return;
        }
        let registry = &self.ctx.registry;
        self.listeners.retain_mut(|l| {
            let kept = keep.contains(&l.endpoint);
            if !kept {
                let _ = registry.deregister(&mut l.socket);
            }
            kept
        });
        self.listen(add);
    }

    fn start_drain(&mut self) {
        if self.ctx.draining {
            return;
        }
        self.ctx.draining = true;
        for mut l in std::mem::take(&mut self.listeners) {
            let _ = self.ctx.registry.deregister(&mut l.socket);
        }
        self.ctx.idle.clear();
        self.drain_deadline = Some(self.ctx.now + self.ctx.config.limits.shutdown_timeout);
        self.sweep();
    }
}
