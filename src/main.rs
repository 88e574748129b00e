//! The `ferry` command: parse the CLI, load and validate the config, run.

use ferry::config::{self, Config};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
ferry — a small, fast HTTP forward proxy with an upstream pool

Usage: ferry [--config FILE] [--check]

Options:
  -c, --config FILE  config file (default: /etc/ferry/ferry.yaml if it exists,
                     else a built-in direct proxy on 127.0.0.1:8080)
      --check        validate the config and exit (0 valid, 1 invalid); binds nothing
  -V, --version      print the version
  -h, --help         print this help

Environment: FERRY_LOG=off|error|warn|info|debug|trace overrides log_level.
Signals: SIGHUP reloads the config; SIGTERM/SIGINT drain and exit (a second one
exits at once).";

fn main() -> ExitCode {
    let mut path: Option<PathBuf> = None;
    let mut check = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-c" | "--config" => match args.next() {
                Some(p) => path = Some(PathBuf::from(p)),
                None => return usage_error("--config needs a file"),
            },
            s if s.starts_with("--config=") => path = Some(PathBuf::from(&s["--config=".len()..])),
            "--check" => check = true,
            "-V" | "--version" => {
                println!("ferry {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage_error(&format!("unknown argument {other:?}")),
        }
    }
    if path.is_none() && std::path::Path::new(config::DEFAULT_PATH).exists() {
        path = Some(PathBuf::from(config::DEFAULT_PATH));
    }
    let loaded = match &path {
        Some(p) => config::load(p),
        None => Ok(Config::embedded()),
    };
    let source = match &path {
        Some(p) => p.display().to_string(),
        None => "the embedded default (direct proxy on 127.0.0.1:8080)".to_string(),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("ferry: invalid config {source}:");
            for e in &errs.0 {
                eprintln!("  {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    if check {
        for w in config.warnings() {
            eprintln!("ferry: warning: {w}");
        }
        println!("config OK: {source}");
        return ExitCode::SUCCESS;
    }
    ferry::logging::init(config.log_level, config.access_log);
    match &path {
        Some(_) => log::info!("ferry {} using config {source}", env!("CARGO_PKG_VERSION")),
        None => log::info!(
            "ferry {} found no config file: using {source}",
            env!("CARGO_PKG_VERSION")
        ),
    }
    for w in config.warnings() {
        log::warn!("{w}");
    }
    match ferry::server::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("ferry: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("ferry: {msg}\n\n{USAGE}");
    ExitCode::from(2)
}
