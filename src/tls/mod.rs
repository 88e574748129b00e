//! TLS (cargo feature `tls`, DESIGN §8): where it sits on the request path. A TLS listener's
//! accepted socket gets a server-side TLS state in its [`crate::conn::Conn`], an `https://`
//! server's socket a client-side one; the session reads and writes plaintext through the
//! `Conn` as for plain TCP, and the handshake is just the first bytes it moves. The
//! certificate store (`store`) answers SNI and follows certificate files as they change.

pub mod conn;
pub mod metrics;
pub mod store;
pub mod x509;

use crate::config::tls::{Needs, TlsSettings, SYSTEM_BUNDLES};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::sync::{Arc, OnceLock};
use store::{CertSpec, CertStore};

/// Sessions a TLS listener remembers for resumption by session ID (TLS 1.2), per process.
const SESSION_CACHE: usize = 1024;

/// What a config's TLS needs at run time, built when the config is validated.
pub struct Tls {
    /// The certificates TLS listeners serve.
    pub store: Option<Arc<CertStore>>,
    /// For TLS listeners.
    pub server: Option<Arc<rustls::ServerConfig>>,
    /// For `https://` servers, verified against `ca_file` or the system bundle.
    pub client: Option<Arc<rustls::ClientConfig>>,
    /// For `https://` servers with `tls_verify: false`.
    pub unverified: Option<Arc<rustls::ClientConfig>>,
    pub settings: TlsSettings,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("settings", &self.settings)
            .finish()
    }
}

/// The TLS state of a connection accepted on a TLS listener under `config`; None when the
/// config serves no TLS (a listener of the previous config, closing).
pub fn server_conn(config: &crate::config::Config) -> Option<Box<conn::TlsConn>> {
    let server = config.tls.as_ref()?.server.clone()?;
    match conn::TlsConn::server(server) {
        Ok(t) => Some(Box::new(t)),
        Err(e) => {
            log::warn!("cannot start TLS: {e}");
            None
        }
    }
}

/// The TLS state of a new connection to `server`, when it is an `https://` server: SNI and
/// verification against its host name (an IP address is verified, and sent no SNI).
pub fn client_conn(
    config: &crate::config::Config,
    server: &crate::config::UpstreamSpec,
) -> Result<Option<Box<conn::TlsConn>>, String> {
    let Some(t) = server.tls else {
        return Ok(None);
    };
    let tls = config
        .tls
        .as_ref()
        .ok_or("the config has no TLS settings")?;
    let client = if t.verify {
        &tls.client
    } else {
        &tls.unverified
    };
    let client = client
        .clone()
        .ok_or("the config has no TLS client settings")?;
    let name = rustls::pki_types::ServerName::try_from(server.host.clone())
        .map_err(|e| format!("{:?}: {e}", server.host))?;
    conn::TlsConn::client(client, name)
        .map(|c| Some(Box::new(c)))
        .map_err(|e| e.to_string())
}

/// Seconds since the epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The TLS families of `/metrics`: handshakes, versions, certificate expiry.
pub fn write_metrics(out: &mut String, config: &crate::config::Config) {
    metrics::write(out);
    if let Some(store) = config.tls.as_ref().and_then(|t| t.store.as_ref()) {
        store.write_metrics(now_unix(), out);
    }
}

/// `/status`'s `"tls"` member: the certificates served, with their names and expiry.
pub fn status_json(out: &mut String, config: &crate::config::Config) {
    use std::fmt::Write;
    let Some(store) = config.tls.as_ref().and_then(|t| t.store.as_ref()) else {
        return;
    };
    let now = now_unix();
    out.push_str(",\"tls\":{\"certificates\":[");
    for (i, c) in store.list().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let names: Vec<String> = c
            .names
            .iter()
            .map(|n| format!("\"{}\"", crate::metrics::json(n)))
            .collect();
        let _ = write!(
            out,
            "{{\"name\":\"{}\",\"names\":[{}],\"not_after\":{},\"expires_in_secs\":{}}}",
            crate::metrics::json(&c.name),
            names.join(","),
            c.not_after,
            c.not_after - now
        );
    }
    out.push_str("]}");
}

/// Builds what `needs` asks for; errors as (key path, message).
pub fn build(settings: TlsSettings, needs: &Needs) -> Result<Tls, Vec<(String, String)>> {
    let mut errs = Vec::new();
    let versions: &[&rustls::SupportedProtocolVersion] = if settings.only_13 {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (mut store, mut server) = (None, None);
    if needs.serve {
        let specs: Vec<CertSpec> = settings
            .certificates
            .iter()
            .map(|(cert, key)| CertSpec {
                cert: cert.clone(),
                key: key.clone(),
            })
            .collect();
        match CertStore::load(&specs, settings.cert_dir.as_deref()) {
            Ok(s) if s.list().is_empty() => errs.push((
                "tls.certificates".into(),
                "a TLS listener needs at least one certificate".into(),
            )),
            Ok(s) => {
                let s = Arc::new(s);
                let resolver = Arc::new(NoteSni(s.resolver()));
                match rustls::ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(versions)
                {
                    Ok(b) => {
                        let mut c = b.with_no_client_auth().with_cert_resolver(resolver);
                        c.alpn_protocols = vec![b"http/1.1".to_vec()];
                        c.session_storage = session_cache();
                        match ticketer() {
                            Ok(t) => c.ticketer = t,
                            Err(e) => errs.push(("tls".into(), format!("session tickets: {e}"))),
                        }
                        server = Some(Arc::new(c));
                    }
                    Err(e) => errs.push(("tls.min_version".into(), e.to_string())),
                }
                store = Some(s);
            }
            Err(lines) => {
                for l in lines {
                    errs.push(("tls.certificates".into(), l));
                }
            }
        }
    }
    let client_builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| ("tls.min_version".to_string(), e.to_string()))
    };
    let mut client = None;
    if needs.verify {
        match roots(&settings).and_then(|r| Ok(client_builder()?.with_root_certificates(r))) {
            Ok(b) => {
                let mut c = b.with_no_client_auth();
                c.alpn_protocols = vec![b"http/1.1".to_vec()];
                client = Some(Arc::new(c));
            }
            Err(e) => errs.push(e),
        }
    }
    let mut unverified = None;
    if needs.unverified {
        match client_builder() {
            Ok(b) => {
                let mut c = b
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NoVerify(provider.clone())))
                    .with_no_client_auth();
                c.alpn_protocols = vec![b"http/1.1".to_vec()];
                unverified = Some(Arc::new(c));
            }
            Err(e) => errs.push(e),
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Tls {
        store,
        server,
        client,
        unverified,
        settings,
    })
}

/// The roots `https://` servers are verified against: `ca_file`, else the system bundle.
fn roots(settings: &TlsSettings) -> Result<rustls::RootCertStore, (String, String)> {
    let (key, file) = match &settings.ca_file {
        Some(f) => ("tls.ca_file", f.clone()),
        None => match SYSTEM_BUNDLES.iter().map(std::path::Path::new).find(|p| p.is_file()) {
            Some(p) => ("tls.ca_file", p.to_path_buf()),
            None => {
                return Err((
                    "tls.ca_file".into(),
                    format!(
                        "https:// servers are verified, but no CA bundle was found (looked at {}): set tls.ca_file",
                        SYSTEM_BUNDLES.join(", ")
                    ),
                ))
            }
        },
    };
    let fail = |m: String| (key.to_string(), format!("{}: {m}", file.display()));
    let certs = CertificateDer::pem_file_iter(&file).map_err(|e| fail(e.to_string()))?;
    let mut store = rustls::RootCertStore::empty();
    for c in certs {
        let c = c.map_err(|e| fail(e.to_string()))?;
        // A bundle may hold certificates webpki cannot use; the others still count.
        let _ = store.add(c);
    }
    if store.is_empty() {
        return Err(fail("no usable CA certificate in it".into()));
    }
    Ok(store)
}

/// One cache for the process: sessions survive reloads.
fn session_cache() -> Arc<dyn rustls::server::StoresServerSessions> {
    static CACHE: OnceLock<Arc<dyn rustls::server::StoresServerSessions>> = OnceLock::new();
    CACHE
        .get_or_init(|| rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE))
        .clone()
}

/// One ticketer for the process (its keys rotate every 6 hours): tickets survive reloads.
fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, rustls::Error> {
    static TICKETER: OnceLock<Arc<dyn rustls::server::ProducesTickets>> = OnceLock::new();
    if let Some(t) = TICKETER.get() {
        return Ok(t.clone());
    }
    let t = rustls::crypto::ring::Ticketer::new()?;
    Ok(TICKETER.get_or_init(|| t).clone())
}

/// The store's resolver, telling the connection's thread which SNI the ClientHello named
/// (rustls' unbuffered server connection does not say).
#[derive(Debug)]
struct NoteSni(Arc<dyn rustls::server::ResolvesServerCert>);

impl rustls::server::ResolvesServerCert for NoteSni {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        conn::note_sni(hello.server_name());
        self.0.resolve(hello)
    }
}

/// `tls_verify: false`: any certificate is taken; signatures are still checked, so the
/// handshake is sound, only the server's identity is not.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
