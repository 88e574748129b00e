//! A fake HTTPS origin and a TLS client for the tunnel tests, both rustls (ring provider) in
//! this process: no openssl, curl or python on the machine. The origin has a fresh self-signed
//! certificate for 127.0.0.1 and answers every request with a fixed, tagged body; the client
//! trusts exactly that certificate, so a handshake through a tunnel proves that ferry moved the
//! bytes unchanged both ways.

use super::TIMEOUT;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;

/// What the origin serves for any request.
pub const BODY: &[u8] = b"hello over tls\n";

/// An HTTPS origin on 127.0.0.1 that tags its replies `X-Served-By: tls-origin`.
pub struct TlsOrigin {
    pub addr: SocketAddr,
    /// The origin's certificate, for a client to trust.
    pub cert: CertificateDer<'static>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsOrigin {
    pub fn start() -> TlsOrigin {
        let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
            .expect("a self-signed certificate");
        let cert = key.cert.der().clone();
        let private =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], private)
            .expect("the server accepts its certificate");
        let config = Arc::new(config);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let config = config.clone();
                thread::spawn(move || serve(s, config));
            }
        });
        TlsOrigin { addr, cert }
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
