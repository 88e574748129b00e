//! The control thread: turns signals into instructions for the workers. SIGTERM or SIGINT
//! starts a drain (listeners closed, in-flight work finished, then exit); a second one exits
//! at once. SIGHUP is caught so that a reload request never kills the process.

use crate::worker::{Inbox, Outbox, Shared};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Starts the control thread.
pub fn start(outboxes: Vec<Outbox>, shared: Arc<Shared>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("ferry-control".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            for sig in signals.forever() {
                match sig {
                    SIGHUP => log::warn!("SIGHUP: hot reload is not part of this build yet; restart ferry to apply a new config"),
                    _ if shared.draining.swap(true, Ordering::SeqCst) => {
                        log::warn!("second stop signal: exiting now");
                        std::process::exit(1);
                    }
                    _ => {
                        log::info!("stop signal: draining (send it again to exit at once)");
                        for o in &outboxes {
                            o.send(Inbox::Drain);
                        }
                    }
                }
            }
        })?;
    Ok(())
}
