//! The shipped packaging: every config we ship passes `--check`, the OpenWrt init script
//! passes `sh -n` and shellcheck, and the systemd unit passes `systemd-analyze verify`.
//! (.ci/run installs shellcheck and systemd-analyze.)

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
fn the_openwrt_init_script_is_valid_shell() {
    let script = format!("{ROOT}/packaging/openwrt/files/ferry.init");
    let (ok, text) = run(Command::new("sh").args(["-n", &script]));
    assert!(ok, "{text}");
    let (ok, text) = run(Command::new("shellcheck").args(["-s", "sh", &script]));
    assert!(ok, "{text}");
    let body = std::fs::read_to_string(&script).unwrap();
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
fn the_systemd_unit_verifies() {
    let dir = std::env::temp_dir().join(format!("ferry-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Point the unit at the binary under test (verify checks that ExecStart exists).
    let unit = std::fs::read_to_string(format!("{ROOT}/packaging/systemd/ferry.service"))
        .unwrap()
        .replace("/usr/bin/ferry", env!("CARGO_BIN_EXE_ferry"));
    assert!(
        unit.contains("ExecReload=/bin/kill -HUP $MAINPID") && unit.contains("DynamicUser=yes")
    );
    let path = dir.join("ferry.service");
    std::fs::write(&path, unit).unwrap();
    let (ok, text) = run(Command::new("systemd-analyze").arg("verify").arg(&path));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "{text}");
    assert!(Path::new(&format!("{ROOT}/packaging/container/Containerfile")).exists());
}
