//! A ferry built without the `tls` feature (the default, lean build) reading a config that asks
//! for TLS: `--check` fails and says which feature is missing (DESIGN §8), whatever TLS key it
//! met, rather than starting without the TLS the user configured.
#![cfg(not(feature = "tls"))]

mod common;

/// `ferry --check` on `yaml`: the exit code and what it printed on stderr.
fn check(yaml: &str) -> (i32, String) {
    let dir = common::scratch_dir();
    let path = dir.join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = common::ferry_command()
        .args(["--config", path.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A reverse section with one site (`site` keys added) and one backend server (`server`
/// keys added to the given URL).
fn reverse(listeners: &str, site: &str, url: &str, server: &str) -> String {
    format!(
        "reverse:\n  listen: [\"127.0.0.1:0\"]\n{listeners}  sites: [{{name: app, hosts: [app.test]{site}, routes: [{{backend: app}}]}}]\n  backends: {{app: {{servers: [{{url: \"{url}\"{server}}}]}}}}\n"
    )
}

#[test]
fn given_a_build_without_tls_when_a_config_asks_for_tls_then_check_fails_naming_the_feature() {
    let plain = reverse("", "", "http://127.0.0.1:9", "");
    // The same config without any TLS key passes, so each failure below is the TLS key's.
    // (`https_redirect` is not one: its 308 goes to port 443, which whatever terminates TLS
    // in front of ferry may serve; so the build without TLS takes it.)
    let (code, err) = check(&plain);
    assert_eq!(code, 0, "{err}");
    let (code, err) = check(&reverse(
        "",
        ", https_redirect: true",
        "http://127.0.0.1:9",
        "",
    ));
    assert_eq!(code, 0, "{err}");
    for yaml in [
        format!(
            "tls:\n  certificates: [{{cert: /nonexistent.crt, key: /nonexistent.key}}]\n{plain}"
        ),
        format!("tls:\n  min_version: \"1.3\"\n{plain}"),
        format!("tls:\n  ca_file: /nonexistent.pem\n{plain}"),
        format!("tls_listen: \"127.0.0.1:0\"\n{plain}"),
        reverse(
            "  tls_listen: [\"127.0.0.1:0\"]\n",
            "",
            "http://127.0.0.1:9",
            "",
        ),
        reverse("", ", hsts_max_age_secs: 600", "http://127.0.0.1:9", ""),
        reverse("", "", "https://127.0.0.1:9", ""),
        reverse("", "", "https://127.0.0.1:9", ", tls_verify: false"),
    ] {
        let (code, err) = check(&yaml);
        assert_ne!(code, 0, "accepted without the tls feature:\n{yaml}");
        assert!(
            err.contains("`tls` feature") || err.contains("--features tls"),
            "the error does not name the feature:\n{yaml}\n{err}"
        );
    }
}
