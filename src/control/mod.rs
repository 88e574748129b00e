//! The control thread: a mio loop of its own that turns signals into instructions for the
//! workers, reloads the config, runs the active health probes and the admin server. SIGTERM or
//! SIGINT starts a drain (listeners closed, in-flight work finished, then exit); a second one
//! exits at once. SIGHUP reloads the config now. Signals arrive through signal-hook's
//! self-pipe, so the loop never blocks on anything but its poll.

pub mod admin;
#[cfg(feature = "api")]
pub mod api;
mod change;
pub mod page;
mod probe;
mod reload;
pub mod stats;

pub use admin::constant_time_eq;

use crate::config::Config;
use crate::mailbox::{Inbox, Outbox};
use crate::resolve::Resolver;
use crate::shared::Shared;
use crossbeam_channel::Receiver;
use mio::net::UnixStream;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

const STOP: Token = Token(0);
const HUP: Token = Token(1);
/// Name look-ups for probes, answered by the resolver threads (admin's listener is 2).
const ANSWERS: Token = Token(3);

/// The control thread's poll, and the receiving end of the mailbox through which the resolver
/// threads answer its probes' look-ups. It exists before the resolver, which must know the
/// sending end (`mailbox` returns that as an `Outbox`).
pub struct Mailbox {
    poll: Poll,
    answers: Receiver<Inbox>,
}

/// The control thread's mailbox, for `Resolver::start`, and what `start` then takes.
pub fn mailbox() -> std::io::Result<(Mailbox, Outbox)> {
    let poll = Poll::new()?;
    let (outbox, answers) = Outbox::pair(poll.registry(), ANSWERS)?;
    Ok((Mailbox { poll, answers }, outbox))
}

/// Starts the control thread; binds the admin server first, so that a bad address stops
/// start-up. `me` is this thread's index among the resolver's deliverers. Returns the admin
/// server's address, if there is one.
pub fn start(
    config: Arc<Config>,
    outboxes: Vec<Outbox>,
    shared: Arc<Shared>,
    Mailbox { poll, answers }: Mailbox,
    resolver: Resolver,
    me: usize,
) -> std::io::Result<Option<std::net::SocketAddr>> {
    let admin = match config.admin_listen {
        Some(addr) => Some(admin::Admin::bind(addr, poll.registry()).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {addr} (admin_listen): {e}"),
            )
        })?),
        None => None,
    };
    let admin_addr = admin.as_ref().map(|a| a.local_addr()).transpose()?;
    // The control API's source of truth: the text the running config came from.
    let doc = reload::first_document(&config)?;
    let mut stop = signal_pipe(&[SIGTERM, SIGINT])?;
    let mut hup = signal_pipe(&[SIGHUP])?;
    poll.registry()
        .register(&mut stop, STOP, Interest::READABLE)?;
    poll.registry()
        .register(&mut hup, HUP, Interest::READABLE)?;
    std::thread::Builder::new()
        .name("ferry-control".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            let now = Instant::now();
            let mut lookups = probe::Lookups::new(resolver, me);
            let control = Control {
                prober: probe::Prober::new(config.clone(), shared.clone(), &mut lookups, now),
                lookups,
                reloader: reload::Reloader::new(&config, now),
                sampler: stats::Sampler::new(now),
                poll,
                config,
                doc,
                outboxes,
                shared,
                admin,
                stop,
                hup,
                answers,
            };
            control.run();
        })?;
    Ok(admin_addr)
}

/// The control thread's state.
struct Control {
    poll: Poll,
    config: Arc<Config>,
    /// The YAML the config came from, as a generic document: what the control API shows
    /// and edits.
    doc: reload::Document,
    outboxes: Vec<Outbox>,
    shared: Arc<Shared>,
    prober: probe::Prober,
    lookups: probe::Lookups,
    reloader: reload::Reloader,
    /// Snapshots for live stats, taken while there is an admin server to show them.
    sampler: stats::Sampler,
    admin: Option<admin::Admin>,
    stop: UnixStream,
    hup: UnixStream,
    answers: Receiver<Inbox>,
}

impl Control {
    fn run(mut self) {
        let mut events = Events::with_capacity(64);
        loop {
            let wake = [
                self.prober.next_wake(),
                self.admin.as_ref().and_then(|a| a.next_wake()),
                self.reloader.next_wake(),
                self.admin.as_ref().map(|_| self.sampler.next_wake()),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = wake.map(|t| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::error!("control: poll failed: {e}");
                    return;
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    STOP => {
                        drain_pipe(&mut self.stop);
                        on_stop(&self.outboxes, &self.shared);
                    }
                    HUP => {
                        drain_pipe(&mut self.hup);
                        self.reload("SIGHUP");
                    }
                    ANSWERS => {
                        while let Ok(m) = self.answers.try_recv() {
                            match m {
                                Inbox::Answer(a) => {
                                    self.prober
                                        .resolved(a, self.poll.registry(), Instant::now())
                                }
                                Inbox::Probe(state) => self.prober.probe_now(
                                    &state,
                                    self.poll.registry(),
                                    Instant::now(),
                                ),
                                _ => {}
                            }
                        }
                    }
                    t if admin::Admin::owns(t) => {
                        if let (Some(a), mut running) = self.split() {
                            a.ready(t, running.registry, &mut running);
                        }
                    }
                    t => self.prober.ready(t, self.poll.registry()),
                }
            }
            let now = Instant::now();
            if self.reloader.due(&self.config, now) {
                self.reload("the config file changed");
            }
            self.prober.tick(self.poll.registry(), now);
            self.sampler.tick(now, &self.config, &self.shared);
            if let (Some(a), mut running) = self.split() {
                a.tick(running.registry, now, &mut running);
            }
        }
    }

    /// Reloads the config file; on any error the running config stays, whole.
    fn reload(&mut self, why: &str) {
        if self.shared.draining.load(Ordering::Relaxed) {
            return;
        }
        let Some((new, doc)) = self.reloader.load(&self.config, why, &self.shared) else {
            return;
        };
        // Bind a changed admin address before committing anything.
        let mut new_admin = None;
        if new.admin_listen != self.config.admin_listen {
            if let Some(addr) = new.admin_listen {
                match admin::Admin::bind(addr, self.poll.registry()) {
                    Ok(a) => new_admin = Some(a),
                    Err(e) => {
                        self.shared
                            .stats
                            .reload_failures
                            .fetch_add(1, Ordering::Relaxed);
                        log::error!("{why}: cannot listen on {addr} (admin_listen): {e}; the running config stays");
                        return;
                    }
                }
            }
        }
        let was = self.config.admin_listen;
        let Some(config) = self.split().1.publish(new, doc, why) else {
            if let Some(mut a) = new_admin {
                a.shutdown(self.poll.registry());
            }
            return;
        };
        if config.admin_listen != was {
            if let Some(mut old) = self.admin.take() {
                old.shutdown(self.poll.registry());
            }
            let port = new_admin
                .as_ref()
                .and_then(|a| a.local_addr().ok())
                .map_or(0, |a| a.port());
            self.shared.admin_port.store(port, Ordering::Relaxed);
            if let Some(Ok(addr)) = new_admin.as_ref().map(|a| a.local_addr()) {
                log::info!("admin listening on {addr}");
            }
            self.admin = new_admin;
        }
    }

    /// The admin server, and apart from it what its answers read and change.
    fn split(&mut self) -> (Option<&mut admin::Admin>, change::Running<'_>) {
        let running = change::Running {
            registry: self.poll.registry(),
            config: &mut self.config,
            doc: &mut self.doc,
            outboxes: &self.outboxes,
            shared: &self.shared,
            prober: &mut self.prober,
            lookups: &mut self.lookups,
            reloader: &mut self.reloader,
        };
        (self.admin.as_mut(), running)
    }
}

fn on_stop(outboxes: &[Outbox], shared: &Shared) {
    if shared.draining.swap(true, Ordering::SeqCst) {
        log::warn!("second stop signal: exiting now");
        std::process::exit(1);
    }
    log::info!("stop signal: draining (send it again to exit at once)");
    for o in outboxes {
        o.send(Inbox::Drain);
    }
}

/// A socket pair whose read end becomes readable when any of `signals` arrives.
fn signal_pipe(signals: &[i32]) -> std::io::Result<UnixStream> {
    let (read, write) = std::os::unix::net::UnixStream::pair()?;
    read.set_nonblocking(true)?;
    write.set_nonblocking(true)?;
    for &s in signals {
        signal_hook::low_level::pipe::register(s, write.try_clone()?)?;
    }
    Ok(UnixStream::from_std(read))
}

fn drain_pipe(p: &mut UnixStream) {
    let mut b = [0u8; 64];
    while matches!(p.read(&mut b), Ok(n) if n > 0) {}
}
