//! Logging to stderr through simplelog. The level comes from `FERRY_LOG` in the environment if
//! set, else from the config's `log_level`. The access log (target [`ACCESS`]) stands apart
//! from the level: DESIGN §5 wants it written whenever `access_log` is true, whatever
//! `log_level` says, so our logger lets its lines through at any level.

use crate::config::LogLevel;
use log::{LevelFilter, Log, Metadata, Record};
use simplelog::{ConfigBuilder, WriteLogger};
use std::io::Stderr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The target of access-log lines (`log::info!(target: ACCESS, ...)`).
pub const ACCESS: &str = "access";

/// The level other lines must reach, as a `LevelFilter` (`Off` = 0 … `Trace` = 5). It is not
/// `log::max_level()`, which the access log may have to hold at `Info` above it.
static LEVEL: AtomicUsize = AtomicUsize::new(0);

/// simplelog's stderr writer (which formats) behind our filter (which decides).
struct Logger {
    inner: Box<WriteLogger<Stderr>>,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.target() == ACCESS || m.level() as usize <= LEVEL.load(Ordering::Relaxed)
    }

    fn log(&self, record: &Record) {
        // The `log` macros call `log` without `enabled`, after checking only the maximum.
        if self.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// The level a config value names.
pub fn filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Off => LevelFilter::Off,
        LogLevel::Error => LevelFilter::Error,
        LogLevel::Warn => LevelFilter::Warn,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Debug => LevelFilter::Debug,
        LogLevel::Trace => LevelFilter::Trace,
    }
}

/// `FERRY_LOG`, when it holds a level name.
pub fn env_level() -> Option<LevelFilter> {
    std::env::var("FERRY_LOG").ok()?.trim().parse().ok()
}

/// Logs lines at `level` (or `FERRY_LOG`) and, with `access_log`, access-log lines. At start-up
/// and on every reload that changes either.
pub fn set(level: LogLevel, access_log: bool) {
    let level = env_level().unwrap_or_else(|| filter(level));
    LEVEL.store(level as usize, Ordering::Relaxed);
    // The `log` macros drop whatever is above the global maximum before our filter sees it,
    // and access-log lines are `info`.
    let max = if access_log {
        level.max(LevelFilter::Info)
    } else {
        level
    };
    log::set_max_level(max);
}

/// Installs the stderr logger, then sets what it logs as `set` does.
pub fn init(level: LogLevel, access_log: bool) {
    let config = ConfigBuilder::new()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .build();
    let inner = WriteLogger::new(LevelFilter::Trace, config, std::io::stderr());
    let _ = log::set_boxed_logger(Box::new(Logger { inner }));
    set(level, access_log);
}
