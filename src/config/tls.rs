//! The `tls:` block and the forward `tls_listen` (DESIGN §8), as written and validated. With
//! the `tls` feature the validation also loads what TLS needs (certificates, CA roots), so
//! `ferry --check` finds a bad pair or a missing bundle before a start or a reload does;
//! without it, any TLS key is an error that names the feature.

#[cfg(feature = "tls")]
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The `tls:` block as read: its keys with the `tls` feature; without it, only whether it is
/// there (its keys are not parsed, which keeps their parsing code out of the router build).
#[cfg(feature = "tls")]
pub type TlsBlock = RawTls;
/// The `tls:` block as read without the `tls` feature: anything, only its presence counts.
#[cfg(not(feature = "tls"))]
pub type TlsBlock = serde::de::IgnoredAny;

/// The `tls:` block as written.
#[cfg(feature = "tls")]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(default)]
    pub certificates: Vec<RawCertPair>,
    pub cert_dir: Option<String>,
    #[serde(default = "v12")]
    pub min_version: String,
    pub ca_file: Option<String>,
}

#[cfg(feature = "tls")]
fn v12() -> String {
    "1.2".into()
}

/// One `certificates[]` entry: a PEM chain and its PEM key.
#[cfg(feature = "tls")]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertPair {
    pub cert: String,
    pub key: String,
}

/// The `tls:` block, validated (paths made absolute against the config file's directory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub certificates: Vec<(PathBuf, PathBuf)>,
    pub cert_dir: Option<PathBuf>,
    /// Only TLS 1.3 is offered (`min_version: "1.3"`).
    pub only_13: bool,
    pub ca_file: Option<PathBuf>,
}

/// Where the system's CA bundle is looked for when `ca_file` is not set, in order.
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/cert.pem",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// What the rest of the config asks of TLS.
pub struct Needs {
    /// Some listener speaks TLS.
    pub serve: bool,
    /// Some `https://` server is verified.
    pub verify: bool,
    /// Some `https://` server is not (`tls_verify: false`).
    pub unverified: bool,
}

/// Validates the TLS keys; returns the forward `tls_listen` and the settings.
pub fn validate(
    raw: Option<&TlsBlock>,
    tls_listen: Option<&str>,
    source: Option<&Path>,
    err: &mut dyn FnMut(&str, String),
) -> (Option<SocketAddr>, Option<TlsSettings>) {
    let listen = tls_listen.and_then(|s| {
        super::validate::socket_addr(s)
            .map_err(|m| err("tls_listen", m))
            .ok()
    });
    #[cfg(not(feature = "tls"))]
    {
        let _ = (listen, source);
        if raw.is_some() {
            err("tls", needs_feature());
        }
        if tls_listen.is_some() {
            err("tls_listen", needs_feature());
        }
        (None, None)
    }
    #[cfg(feature = "tls")]
    {
        let Some(raw) = raw else {
            return (listen, None);
        };
        let base = source.and_then(Path::parent).unwrap_or(Path::new(""));
        let path = |p: &str| base.join(p);
        let only_13 = match raw.min_version.as_str() {
            "1.2" => false,
            "1.3" => true,
            v => {
                err(
                    "tls.min_version",
                    format!("{v:?} is not \"1.2\" or \"1.3\""),
                );
                false
            }
        };
        let settings = TlsSettings {
            certificates: raw
                .certificates
                .iter()
                .map(|c| (path(&c.cert), path(&c.key)))
                .collect(),
            cert_dir: raw.cert_dir.as_deref().map(path),
            only_13,
            ca_file: raw.ca_file.as_deref().map(path),
        };
        (listen, Some(settings))
    }
}

/// The error of a TLS key in a build without TLS.
pub fn needs_feature() -> String {
    "TLS needs a ferry built with the `tls` feature (cargo build --features tls)".into()
}
