//! The shipped packaging: every config we ship passes `--check`, and the OpenWrt init script
//! and the systemd unit say what they must. Linting them needs their platforms' tools
//! (`sh -n`, shellcheck, `systemd-analyze verify`), so `.ci/run` does that, not `cargo test`,
//! which needs nothing but the Rust toolchain.

mod common;

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn every_shipped_config_passes_check() {
    let mut configs = vec![format!("{ROOT}/packaging/openwrt/files/ferry.yaml")];
    for e in std::fs::read_dir(format!("{ROOT}/config")).unwrap() {
        configs.push(e.unwrap().path().display().to_string());
    }
    assert!(configs.len() >= 3);
    for c in configs {
        let (ok, text) = run(common::ferry_command().args(["--config", &c, "--check"]));
        assert!(ok, "{c}: {text}");
    }
}

#[test]
fn the_openwrt_init_script_runs_under_procd_and_checks_before_start() {
    let script = format!("{ROOT}/packaging/openwrt/files/ferry.init");
    let body = std::fs::read_to_string(&script).unwrap();
    assert!(body.starts_with("#!/bin/sh /etc/rc.common\n"), "{script}");
    for needed in [
        "USE_PROCD=1",
        "procd_set_param respawn",
        "procd_send_signal ferry '*' HUP",
        "--check",
    ] {
        assert!(body.contains(needed), "init script lacks {needed}");
    }
}

#[test]
fn the_systemd_unit_reloads_with_sighup_and_is_sandboxed() {
    let unit = std::fs::read_to_string(format!("{ROOT}/packaging/systemd/ferry.service")).unwrap();
    for needed in [
        "ExecStart=/usr/bin/ferry ",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "DynamicUser=yes",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed}");
    }
    assert!(Path::new(&format!("{ROOT}/packaging/container/Containerfile")).exists());
}
