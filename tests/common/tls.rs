//! TLS for the tests, all rustls (ring provider) and rcgen in this process: no openssl, curl or
//! python on the machine.
//!
//! - Certificates: a test's own CA (`Ca`) issues leaves (`Leaf`) for any names, wildcards
//!   included, expired ones, and pairs whose key belongs to another certificate; written as the
//!   PEM files ferry's `tls.certificates` names.
//! - A client (`TlsClient`): chosen roots (or none checked, to see which certificate a server
//!   chose), SNI or none, TLS 1.2 or 1.3, ALPN `http/1.1`, and session resumption across the
//!   connections of one client (`handshake_kind`). Its connections are `Wire`s, so a test reads
//!   responses over TLS as it does over TCP.
//! - The tunnel tests' HTTPS origin (`TlsOrigin`): answers every request with a fixed, tagged
//!   body, and its client trusts exactly that certificate, so a handshake through a tunnel
//!   proves that ferry moved the bytes unchanged both ways. (The reverse tests' TLS backend is
//!   `Backend::start_tls`, the plain fake over a TLS session.)

use super::wire::Wire;
use super::TIMEOUT;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, ProtocolVersion,
    RootCertStore, ServerConfig, ServerConnection, SignatureScheme, StreamOwned,
    SupportedProtocolVersion,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

/// What the origin serves for any request.
pub const BODY: &[u8] = b"hello over tls\n";

/// The crypto every TLS object of the tests uses: ring, as ferry does.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `der` as a PEM block labelled `label` (rcgen's `pem` feature is not compiled in).
pub fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = Vec::with_capacity(der.len().div_ceil(3) * 4);
    for group in der.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            b64.push(if i <= group.len() {
                ALPHABET[(n >> (18 - 6 * i) & 63) as usize]
            } else {
                b'='
            });
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A certificate authority of a test's own: the root a client or ferry (`tls.ca_file`) trusts.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's self-signed certificate.
    pub cert: CertificateDer<'static>,
}

impl Ca {
    /// A fresh CA whose common name is `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap().der().clone();
        Ca {
            issuer: Issuer::new(params, key),
            cert,
        }
    }

    /// The CA certificate as PEM, as `tls.ca_file` holds it.
    pub fn pem(&self) -> String {
        pem("CERTIFICATE", &self.cert)
    }

    /// Writes the CA certificate to `dir/NAME` and returns the path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.pem()).unwrap();
        path
    }

    /// A leaf for `names` (SANs: DNS names, `*.x` wildcards, IP addresses), valid for decades.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        Leaf::issue(names, Some(&self.issuer), |_| {})
    }

    /// A leaf for `names` that expired in 2021.
    pub fn expired_leaf(&self, names: &[&str]) -> Leaf {
        Leaf::issue(names, Some(&self.issuer), |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        })
    }
}

/// A certificate and its private key (PKCS#8).
#[derive(Clone)]
pub struct Leaf {
    /// The names it was issued for.
    pub names: Vec<String>,
    pub cert: CertificateDer<'static>,
    key: Vec<u8>,
}

impl Leaf {
    /// A self-signed certificate for `names`, trusted by nobody.
    pub fn self_signed(names: &[&str]) -> Leaf {
        Leaf::issue(names, None, |_| {})
    }

    /// Issues a leaf for `names`, signed by `issuer` (itself when none), its parameters first
    /// changed by `adjust`.
    fn issue(
        names: &[&str],
        issuer: Option<&Issuer<'static, KeyPair>>,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, &names[0]);
        adjust(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = match issuer {
            Some(issuer) => params.signed_by(&key, issuer),
            None => params.self_signed(&key),
        }
        .unwrap();
        Leaf {
            names,
            cert: cert.der().clone(),
            key: key.serialize_der(),
        }
    }

    /// This certificate with the key of `other`: a pair that does not match.
    pub fn with_key_of(&self, other: &Leaf) -> Leaf {
        Leaf {
            key: other.key.clone(),
            ..self.clone()
        }
    }

    /// The certificate as PEM.
    pub fn cert_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert)
    }

    /// The private key as PEM (PKCS#8).
    pub fn key_pem(&self) -> String {
        pem("PRIVATE KEY", &self.key)
    }

    /// Writes `dir/STEM.crt` and `dir/STEM.key` (the layout of `tls.cert_dir`) and returns
    /// both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let (crt, key) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&crt, self.cert_pem()).unwrap();
        std::fs::write(&key, self.key_pem()).unwrap();
        (crt, key)
    }

    /// A server config serving this certificate, for a fake TLS server.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()));
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], key)
            .expect("the fake server accepts its certificate");
        Arc::new(config)
    }
}

/// A client connection over TLS, read and written as any `Wire`.
pub type TlsWire = Wire<StreamOwned<ClientConnection, TcpStream>>;

/// A TLS client: one config, so that its connections to one server name resume the session
/// the first one got (rustls' in-memory session store lives in the config).
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl TlsClient {
    /// A client that trusts `roots` and offers TLS 1.3 and 1.2 (1.2 when rustls has it: the
    /// `tls` feature turns it on).
    pub fn trusting(roots: &[&CertificateDer<'static>]) -> TlsClient {
        TlsClient::with_versions(roots, rustls::DEFAULT_VERSIONS)
    }

    /// A client that trusts `roots` and offers exactly `versions`.
    pub fn with_versions(
        roots: &[&CertificateDer<'static>],
        versions: &[&'static SupportedProtocolVersion],
    ) -> TlsClient {
        let mut store = RootCertStore::empty();
        for r in roots {
            store.add((*r).clone()).unwrap();
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth();
        TlsClient::finish(config)
    }

    /// A client that accepts whatever certificate it is shown (signatures still checked), for
    /// the tests that look at which one a server chose.
    pub fn any_certificate() -> TlsClient {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
            .with_no_client_auth();
        TlsClient::finish(config)
    }

    fn finish(mut config: ClientConfig) -> TlsClient {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsClient {
            config: Arc::new(config),
        }
    }

    /// The same client, sending no SNI (the name given to `connect` is then only checked
    /// against the certificate).
    pub fn without_sni(&self) -> TlsClient {
        let mut config = (*self.config).clone();
        config.enable_sni = false;
        TlsClient {
            config: Arc::new(config),
        }
    }

    /// Connects to `addr`, sends `name` as SNI, completes the handshake; panics when it fails.
    pub fn connect(&self, addr: SocketAddr, name: &str) -> TlsWire {
        self.try_connect(addr, name)
            .unwrap_or_else(|e| panic!("TLS handshake with {addr} as {name}: {e}"))
    }

    /// Connects and completes the handshake, or says why it failed.
    pub fn try_connect(&self, addr: SocketAddr, name: &str) -> Result<TlsWire, String> {
        let mut sock = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        sock.set_nodelay(true).unwrap();
        self.handshake(&mut sock, name)
            .map(|conn| Wire::from_stream(StreamOwned::new(conn, sock)))
    }

    /// Runs a handshake as `name` on `sock` (a connection, or a tunnel through a proxy).
    pub fn handshake(&self, sock: &mut TcpStream, name: &str) -> Result<ClientConnection, String> {
        let server = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
        let mut conn = ClientConnection::new(self.config.clone(), server).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(sock).map_err(|e| e.to_string())?;
        }
        Ok(conn)
    }
}

/// The leaf certificate the server presented on `w`.
pub fn served_cert(w: &TlsWire) -> CertificateDer<'static> {
    w.stream.conn.peer_certificates().expect("a certificate")[0].clone()
}

/// Whether `w`'s handshake was full or resumed.
pub fn handshake_kind(w: &TlsWire) -> HandshakeKind {
    w.stream
        .conn
        .handshake_kind()
        .expect("a finished handshake")
}

/// The TLS version `w` speaks.
pub fn version(w: &TlsWire) -> ProtocolVersion {
    w.stream
        .conn
        .protocol_version()
        .expect("a finished handshake")
}

/// Sends a close_notify and hangs up.
pub fn close(mut w: TlsWire) {
    w.stream.conn.send_close_notify();
    let _ = w.stream.flush();
}

/// A verifier that takes any certificate but still checks the handshake's signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// An HTTPS origin on 127.0.0.1 that tags its replies `X-Served-By: tls-origin`.
pub struct TlsOrigin {
    pub addr: SocketAddr,
    /// The origin's certificate, for a client to trust.
    pub cert: CertificateDer<'static>,
}

impl TlsOrigin {
    pub fn start() -> TlsOrigin {
        let leaf = Leaf::self_signed(&["127.0.0.1"]);
        let config = leaf.server_config();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let config = config.clone();
                thread::spawn(move || serve(s, config));
            }
        });
        TlsOrigin {
            addr,
            cert: leaf.cert,
        }
    }

    /// A client session that trusts only this origin, for the name 127.0.0.1.
    pub fn client(&self) -> ClientConnection {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        ClientConnection::new(Arc::new(config), name).unwrap()
    }
}

/// Reads one request head over TLS and answers it, then closes (with close_notify).
fn serve(s: TcpStream, config: Arc<ServerConfig>) {
    let _ = s.set_read_timeout(Some(TIMEOUT));
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, s);
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let reply = format!(
        "HTTP/1.1 200 OK\r\nX-Served-By: tls-origin\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        BODY.len()
    );
    let _ = tls.write_all(reply.as_bytes());
    let _ = tls.write_all(BODY);
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// Runs `GET /` over TLS on `stream` (already a tunnel to the origin) and returns everything
/// the origin sent back, decrypted, up to its close_notify.
pub fn get_over(stream: &mut TcpStream, client: ClientConnection) -> Vec<u8> {
    let mut tls = rustls::StreamOwned::new(client, stream);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("the TLS handshake and request go through");
    let mut got = Vec::new();
    tls.read_to_end(&mut got)
        .expect("the response arrives, ended by close_notify");
    got
}
