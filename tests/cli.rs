//! The command line: `--check`, `--version`, start-up errors, signals.

mod common;

use common::Ferry;

fn ferry(args: &[&str]) -> (i32, String, String) {
    let out = common::ferry_command().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_text(yaml: &str) -> (i32, String) {
    let dir = common::scratch_dir();
    let p = dir.join("c.yaml");
    std::fs::write(&p, yaml).unwrap();
    let (code, _, err) = ferry(&["--config", p.to_str().unwrap(), "--check"]);
    (code, err)
}

#[test]
fn check_accepts_the_shipped_configs() {
    for f in [
        "config/http-proxy-lb.example.yaml",
        "config/ferry.example.yaml",
    ] {
        let path = format!("{}/{f}", env!("CARGO_MANIFEST_DIR"));
        let (code, out, err) = ferry(&["--config", &path, "--check"]);
        assert_eq!(code, 0, "{f}: {err}");
        assert!(out.contains("config OK"));
    }
}

#[test]
fn check_rejects_bad_configs_naming_the_key() {
    for (yaml, want) in [
        (
            "listen: 127.0.0.1:1\nupstream:\n  - url: http://a:1\n  - url: http://b\n",
            "upstream[1].url: port missing",
        ),
        (
            "listen: 127.0.0.1:1\nupstream:\n  - url: http://a:1\n    weight: 5000\n",
            "upstream[0].weight: 5000 is out of range",
        ),
        (
            "listen: 127.0.0.1:1\nlimits:\n  idle_timeout_secs: 0\n",
            "limits.idle_timeout_secs: must be at least 1",
        ),
        (
            "listen: 127.0.0.1:1\nmode: fastest\n",
            "unknown variant `fastest`",
        ),
        ("listen: 127.0.0.1:1\nlistn: x\n", "unknown field `listn`"),
        ("upstream: []\n", "listen: required"),
        ("listen: [unclosed\n", "invalid config"),
    ] {
        let (code, err) = check_text(yaml);
        assert_eq!(code, 1, "{yaml}");
        assert!(err.contains(want), "{yaml}: {err}");
    }
}

#[test]
fn version_and_help() {
    let (code, out, _) = ferry(&["--version"]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("ferry {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let (code, out, _) = ferry(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("--check"));
    let (code, _, err) = ferry(&["--bogus"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown argument"));
}

#[test]
fn no_config_file_means_the_embedded_default() {
    if std::path::Path::new("/etc/ferry/ferry.yaml").exists() {
        return; // this machine has a real config; the fallback does not apply
    }
    let (code, out, _) = ferry(&["--check"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("embedded default (direct proxy on 127.0.0.1:8080)"),
        "{out}"
    );
}

#[test]
fn a_listen_address_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = common::scratch_dir();
    let p = dir.join("c.yaml");
    std::fs::write(&p, format!("listen: \"{addr}\"\n")).unwrap();
    let (code, _, err) = ferry(&["--config", p.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let mut f = Ferry::start("");
    let mut idle = f.client();
    f.signal(15);
    assert_eq!(f.wait_exit(), Some(0));
    assert!(idle.closed());
    // stderr is read on another thread: poll for the line rather than race it
    common::wait_until("the drain log line", || f.log_text().contains("draining"));
}

#[test]
fn check_warns_when_the_default_pool_has_no_upstream_and_no_direct() {
    // The pool fails closed (502), which is rarely what a file without upstreams means.
    let (code, err) = check_text("listen: 127.0.0.1:1\n");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning") && err.contains("set on_all_down: direct"),
        "{err}"
    );
    for yaml in [
        "listen: 127.0.0.1:1\non_all_down: direct\n",
        "listen: 127.0.0.1:1\nupstream: [{url: 'http://127.0.0.1:9'}]\n",
    ] {
        let (code, err) = check_text(yaml);
        assert_eq!(code, 0, "{err}");
        assert!(!err.contains("warning"), "{yaml}: {err}");
    }
    // The embedded default is a direct proxy and says so.
    if !std::path::Path::new("/etc/ferry/ferry.yaml").exists() {
        let (code, _, err) = ferry(&["--check"]);
        assert_eq!(code, 0);
        assert!(!err.contains("warning"), "{err}");
    }
}
