//! The control thread: a mio loop of its own that turns signals into instructions for the
//! workers, reloads the config, runs the active health probes and the admin server. SIGTERM or
//! SIGINT starts a drain (listeners closed, in-flight work finished, then exit); a second one
//! exits at once. SIGHUP reloads the config now. Signals arrive through signal-hook's
//! self-pipe, so the loop never blocks on anything but its poll.

pub mod admin;
pub mod api;
mod probe;
mod reload;

pub use admin::constant_time_eq;

use crate::config::Config;
use crate::mailbox::{Inbox, Outbox};
use crate::resolve::Resolver;
use crate::shared::Shared;
use crossbeam_channel::Receiver;
use mio::net::UnixStream;
use mio::{Events, Interest, Poll, Registry, Token};
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
    let text = match &config.source {
        Some(path) => std::fs::read_to_string(path)?,
        None => crate::config::EMBEDDED_DEFAULT.to_string(),
    };
    let doc = reload::document(&text)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
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
                plane: Plane {
                    prober: probe::Prober::new(config.clone(), shared.clone(), &mut lookups, now),
                    lookups,
                    reloader: reload::Reloader::new(&config, now),
                    config,
                    doc,
                    outboxes,
                    shared,
                },
                poll,
                admin,
                stop,
                hup,
                answers,
            };
            control.run();
        })?;
    Ok(admin_addr)
}

/// The control thread's state: its poll, the admin server, the signal pipes and the rest.
struct Control {
    poll: Poll,
    admin: Option<admin::Admin>,
    stop: UnixStream,
    hup: UnixStream,
    answers: Receiver<Inbox>,
    plane: Plane,
}

/// What the admin server reads and changes (through `admin::Host`): the config in force with
/// its source document, the workers' mailboxes, the probes and the reload watch.
struct Plane {
    config: Arc<Config>,
    /// The YAML the config came from, as a generic document: what the API shows and edits.
    doc: yaml_serde::Value,
    outboxes: Vec<Outbox>,
    shared: Arc<Shared>,
    prober: probe::Prober,
    lookups: probe::Lookups,
    reloader: reload::Reloader,
}

/// The `Plane` with the poll's registry, for one admin turn.
struct Running<'a> {
    plane: &'a mut Plane,
    registry: &'a Registry,
}

impl admin::Host for Running<'_> {
    fn config(&self) -> &Config {
        &self.plane.config
    }

    fn shared(&self) -> &Shared {
        &self.plane.shared
    }

    fn api(&mut self, method: &str, path: &str, body: &[u8]) -> api::Reply {
        self.plane.api(method, path, body, self.registry)
    }
}

impl Control {
    fn run(mut self) {
        let mut events = Events::with_capacity(64);
        loop {
            let wake = [
                self.plane.prober.next_wake(),
                self.admin.as_ref().and_then(|a| a.next_wake()),
                self.plane.reloader.next_wake(),
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
                        on_stop(&self.plane.outboxes, &self.plane.shared);
                    }
                    HUP => {
                        drain_pipe(&mut self.hup);
                        self.reload("SIGHUP");
                    }
                    ANSWERS => {
                        while let Ok(m) = self.answers.try_recv() {
                            match m {
                                Inbox::Answer(a) => self.plane.prober.resolved(
                                    a,
                                    self.poll.registry(),
                                    Instant::now(),
                                ),
                                Inbox::Probe(state) => self.plane.prober.probe_now(
                                    &state,
                                    self.poll.registry(),
                                    Instant::now(),
                                ),
                                _ => {}
                            }
                        }
                    }
                    t if admin::Admin::owns(t) => {
                        if let Some(a) = self.admin.as_mut() {
                            let registry = self.poll.registry();
                            let mut host = Running {
                                plane: &mut self.plane,
                                registry,
                            };
                            a.ready(t, registry, &mut host);
                        }
                    }
                    t => self.plane.prober.ready(t, self.poll.registry()),
                }
            }
            let now = Instant::now();
            if self.plane.reloader.due(&self.plane.config, now) {
                self.reload("the config file changed");
            }
            self.plane.prober.tick(self.poll.registry(), now);
            if let Some(a) = self.admin.as_mut() {
                let registry = self.poll.registry();
                let mut host = Running {
                    plane: &mut self.plane,
                    registry,
                };
                a.tick(registry, now, &mut host);
            }
        }
    }

    /// Reloads the config file; on any error the running config stays, whole.
    fn reload(&mut self, why: &str) {
        let p = &mut self.plane;
        if p.shared.draining.load(Ordering::Relaxed) {
            return;
        }
        let Some((new, doc)) = p.reloader.load(&p.config, why, &p.shared) else {
            return;
        };
        // Bind a changed admin address before committing anything.
        let mut new_admin = None;
        let was = p.config.admin_listen;
        if new.admin_listen != was {
            if let Some(addr) = new.admin_listen {
                match admin::Admin::bind(addr, self.poll.registry()) {
                    Ok(a) => new_admin = Some(a),
                    Err(e) => {
                        p.shared
                            .stats
                            .reload_failures
                            .fetch_add(1, Ordering::Relaxed);
                        log::error!("{why}: cannot listen on {addr} (admin_listen): {e}; the running config stays");
                        return;
                    }
                }
            }
        }
        let Some(config) = p.publish(new, doc, why, self.poll.registry()) else {
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
            p.shared.admin_port.store(port, Ordering::Relaxed);
            if let Some(Ok(addr)) = new_admin.as_ref().map(|a| a.local_addr()) {
                log::info!("admin listening on {addr}");
            }
            self.admin = new_admin;
        }
    }
}

impl Plane {
    /// Puts a prepared config in force (see `Reloader::apply`: one snapshot to every worker,
    /// sessions in flight keep theirs) with `doc`, the document it came from, and restarts
    /// the probes on it. `None` when it was refused; the running config then stays.
    fn publish(
        &mut self,
        new: Config,
        doc: yaml_serde::Value,
        why: &str,
        registry: &Registry,
    ) -> Option<Arc<Config>> {
        let now = Instant::now();
        let config =
            self.reloader
                .apply(&self.config, new, why, &self.outboxes, &self.shared, now)?;
        self.shared.set_latest_config(config.clone());
        self.prober.shutdown(registry);
        self.prober =
            probe::Prober::new(config.clone(), self.shared.clone(), &mut self.lookups, now);
        self.config = config.clone();
        self.doc = doc;
        Some(config)
    }

    /// Answers one `/api/v1` call (DESIGN §9). A change is validated as a whole config,
    /// written to the file first when `admin.persist` is on (a failed write changes
    /// nothing), then published like a reload; the answer shows what is now in force.
    fn api(&mut self, method: &str, path: &str, body: &[u8], registry: &Registry) -> api::Reply {
        let call = match api::Call::parse(method, path) {
            Ok(c) => c,
            Err(r) => return r,
        };
        if let Some(r) = api::read(&self.doc, &call) {
            return r;
        }
        if self.shared.draining.load(Ordering::Relaxed) {
            return api::Reply::error(503, "ferry is shutting down: no changes now");
        }
        if let api::Call::Drain {
            backend,
            server,
            on,
        } = &call
        {
            return self.drain(backend, server, *on);
        }
        let edit = match api::edit(&self.doc, &call, body) {
            Ok(e) => e,
            Err(r) => return r,
        };
        let text = match yaml_serde::to_string(&edit.doc) {
            Ok(t) => t,
            Err(e) => return api::Reply::error(500, &format!("cannot write the config: {e}")),
        };
        let new = match crate::config::parse(&text, self.config.source.as_deref()) {
            Ok(c) => c,
            Err(errs) => return api::Reply::invalid(&errs),
        };
        let new = self.reloader.prepare(&self.config, new);
        let why = format!("API {method} {path}");
        let persist = self.config.admin_persist && self.config.source.is_some();
        if persist {
            match self.reloader.write(&text) {
                Ok(()) => {}
                Err(reload::Unwritten::ChangedOnDisk) => {
                    return api::Reply::error(
                        409,
                        "the config file changed on disk since ferry read it; reload it (SIGHUP) and try again",
                    )
                }
                Err(reload::Unwritten::Failed(e)) => {
                    log::error!("{why}: not applied: {e}");
                    return api::Reply::error(
                        500,
                        &format!("the change was not written, nor applied: {e}"),
                    );
                }
            }
        }
        if self.publish(new, edit.doc, &why, registry).is_none() {
            if persist {
                self.reloader.unwrite();
            }
            return api::Reply::error(
                500,
                "the change could not be applied (see the log); the running config stays",
            );
        }
        let shown = api::show(&self.doc, &edit.shows).unwrap_or_else(|| "{}".into());
        api::Reply {
            status: edit.status,
            body: api::with_persisted(shown, persist),
            allow: None,
        }
    }

    /// `.../dead` (`on`) and `.../alive`: a runtime mark on the server's shared state, not a
    /// config change; it is carried across reloads with that state (by backend name + URL).
    fn drain(&self, backend: &str, id: &str, on: bool) -> api::Reply {
        let Some(servers) = api::servers(&self.doc, backend) else {
            return api::no_backend(backend);
        };
        let member = api::server_index(servers, id).and_then(|i| {
            let b = self.config.reverse.as_ref()?.backends.iter();
            b.filter(|b| b.name == backend)
                .find_map(|b| b.pool.members.get(i))
        });
        let Some(m) = member else {
            return api::no_server(backend, id);
        };
        if m.state.set_draining(on) != on {
            if on {
                log::info!(
                    "{} is draining: no new requests until .../alive",
                    m.state.name
                );
            } else {
                log::info!("{} is back under health handling", m.state.name);
            }
        }
        api::Reply {
            status: 200,
            body: format!(
                "{{\"backend\":\"{}\",\"server\":\"{}\",\"draining\":{on},\"online\":{},\"active\":{}}}",
                crate::metrics::json(backend),
                crate::metrics::json(&m.config_url),
                m.state.is_online(),
                m.state.active()
            ),
            allow: None,
        }
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
