//! The control thread: a mio loop of its own that turns signals into instructions for the
//! workers and runs the active health probes. SIGTERM or SIGINT starts a drain (listeners
//! closed, in-flight work finished, then exit); a second one exits at once. SIGHUP is caught so
//! that a reload request never kills the process. Signals arrive through signal-hook's
//! self-pipe, so the loop never blocks on anything but its poll.

mod admin;
mod probe;

pub use admin::constant_time_eq;

use crate::config::Config;
use crate::worker::{Inbox, Outbox, Shared};
use mio::net::UnixStream;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

const STOP: Token = Token(0);
const HUP: Token = Token(1);

/// Starts the control thread; binds the admin server first, so that a bad address stops
/// start-up. Returns the admin server's address, if there is one.
pub fn start(
    config: Arc<Config>,
    outboxes: Vec<Outbox>,
    shared: Arc<Shared>,
) -> std::io::Result<Option<std::net::SocketAddr>> {
    let mut poll = Poll::new()?;
    let mut admin = match config.admin_listen {
        Some(addr) => Some(admin::Admin::bind(addr, poll.registry()).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {addr} (admin_listen): {e}"),
            )
        })?),
        None => None,
    };
    let admin_addr = admin.as_ref().map(|a| a.local_addr()).transpose()?;
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
            let mut prober = probe::Prober::new(config.clone(), shared.clone(), Instant::now());
            let mut events = Events::with_capacity(64);
            loop {
                let wake = [prober.next_wake(), admin.as_ref().and_then(|a| a.next_wake())].into_iter().flatten().min();
                let timeout = wake.map(|t| t.saturating_duration_since(Instant::now()));
                if let Err(e) = poll.poll(&mut events, timeout) {
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        log::error!("control: poll failed: {e}");
                        return;
                    }
                }
                for ev in events.iter() {
                    match ev.token() {
                        STOP => {
                            drain_pipe(&mut stop);
                            on_stop(&outboxes, &shared);
                        }
                        HUP => {
                            drain_pipe(&mut hup);
                            log::warn!("SIGHUP: hot reload is not part of this build yet; restart ferry to apply a new config");
                        }
                        t if admin::Admin::owns(t) => {
                            if let Some(a) = admin.as_mut() {
                                a.ready(t, poll.registry(), &config, &shared);
                            }
                        }
                        t => prober.ready(t, poll.registry()),
                    }
                }
                let now = Instant::now();
                prober.tick(poll.registry(), now);
                if let Some(a) = admin.as_mut() {
                    a.expire(poll.registry(), now);
                }
            }
        })?;
    Ok(admin_addr)
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
