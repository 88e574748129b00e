//! Logging to stderr, one `HH:MM:SS [LEVEL] message` line (UTC) per record, as simplelog
//! wrote it: ferry formats the line itself, which keeps the `time` crate's formatting (14 KB,
//! measured in the lean build) out of the binary. The level comes from `FERRY_LOG` in the
//! environment if set, else from the config's `log_level`. The access log (target [`ACCESS`]) stands apart
//! from the level: DESIGN §5 wants it written whenever `access_log` is true, whatever
//! `log_level` says, so our logger lets its lines through at any level.

use crate::config::LogLevel;
use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The target of access-log lines (`log::info!(target: ACCESS, ...)`).
pub const ACCESS: &str = "access";

/// The level other lines must reach, as a `LevelFilter` (`Off` = 0 … `Trace` = 5). It is not
/// `log::max_level()`, which the access log may have to hold at `Info` above it.
static LEVEL: AtomicUsize = AtomicUsize::new(0);

/// The stderr logger: our filter (which decides), then one formatted line.
struct Logger;

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.target() == ACCESS || m.level() as usize <= LEVEL.load(Ordering::Relaxed)
    }

    fn log(&self, record: &Record) {
        // The `log` macros call `log` without `enabled`, after checking only the maximum.
        if !self.enabled(record.metadata()) {
            return;
        }
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut line = String::with_capacity(128);
        let _ = line_of(&mut line, secs, record);
        // One write per line, so that lines from several threads never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// `HH:MM:SS [LEVEL] message\n`, the time of day in UTC.
fn line_of(out: &mut String, secs: u64, record: &Record) -> std::fmt::Result {
    use std::fmt::Write;
    let day = secs % 86_400;
    writeln!(
        out,
        "{:02}:{:02}:{:02} [{}] {}",
        day / 3600,
        day / 60 % 60,
        day % 60,
        record.level(),
        record.args()
    )
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
    let _ = log::set_logger(&Logger);
    set(level, access_log);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_the_utc_time_the_level_and_the_message() {
        let mut out = String::new();
        let args = format_args!("listening on {}", 8080);
        let r = Record::builder().level(log::Level::Warn).args(args).build();
        // 2026-11-30 17:28:56 UTC.
        line_of(&mut out, 1_796_059_736, &r).unwrap();
        assert_eq!(out, "17:28:56 [WARN] listening on 8080\n");
    }
}
