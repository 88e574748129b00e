//! State shared by the workers and the control thread: counters, the ports ferry listens on,
//! the drain flag and the config in force. It sits beside both, not inside either, so that the
//! control thread does not import the worker (DESIGN §4).

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use crate::config::Config;

/// State shared by all workers and the control thread.
pub struct Shared {
    /// Client connections open, across workers (for `max_connections`).
    pub active: AtomicUsize,
    /// Sessions that panicked and were closed.
    pub panics: AtomicUsize,
    pub draining: AtomicBool,
    /// Counters, one set per worker.
    pub stats: crate::metrics::Stats,
    /// The ports ferry listens on now (0 = none), to refuse requests aimed at itself.
    pub admin_port: std::sync::atomic::AtomicU16,
    /// Pipes each worker may open (`relay::pipe_cap` of the open-files limit).
    pub max_pipes: usize,
    /// The config in force, for a worker that restarts after a crash (read only then).
    latest: std::sync::Mutex<Option<Arc<Config>>>,
    /// Snapshots of the counters for live stats. Only the control thread takes this lock (it
    /// records and the admin server reads), so it is never contended; it lives here because
    /// the admin answers reach shared state through `Shared`.
    recent: std::sync::Mutex<crate::control::stats::Ring>,
}

impl Shared {
    /// State for `workers` workers, each opening at most `max_pipes` pipes.
    pub fn new(workers: usize, max_pipes: usize) -> Shared {
        Shared {
            max_pipes,
            active: AtomicUsize::new(0),
            panics: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            stats: crate::metrics::Stats::new(workers),
            admin_port: std::sync::atomic::AtomicU16::new(0),
            latest: std::sync::Mutex::new(None),
            recent: std::sync::Mutex::new(crate::control::stats::Ring::new()),
        }
    }

    /// The ring of counter snapshots (control thread only).
    pub fn recent(&self) -> std::sync::MutexGuard<'_, crate::control::stats::Ring> {
        // A panic while it was held left at worst a partly filled snapshot: still usable.
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the config in force (start-up and every reload).
    pub fn set_latest_config(&self, c: Arc<Config>) {
        if let Ok(mut l) = self.latest.lock() {
            *l = Some(c);
        }
    }

    /// The config in force.
    pub fn latest_config(&self) -> Arc<Config> {
        self.latest
            .lock()
            .ok()
            .and_then(|l| l.clone())
            .expect("the config is recorded at start-up")
    }
}
