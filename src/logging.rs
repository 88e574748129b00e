//! Logging to stderr through simplelog. The level comes from `FERRY_LOG` in the environment if
//! set, else from the config's `log_level`.

use crate::config::LogLevel;
use log::LevelFilter;
use simplelog::{ConfigBuilder, WriteLogger};

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

/// Installs the stderr logger at `level` (or `FERRY_LOG`).
pub fn init(level: LogLevel) {
    let level = env_level().unwrap_or_else(|| filter(level));
    let config = ConfigBuilder::new()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .build();
    let _ = WriteLogger::init(level, config, std::io::stderr());
}
