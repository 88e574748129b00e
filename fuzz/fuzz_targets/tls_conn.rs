//! ferry's TLS loop (`tls::conn::TlsConn`) on arbitrary peer bytes: the code around rustls
//! that moves records between the pooled buffers (partial records, many records per read,
//! alerts, garbage, records cut anywhere). The first byte picks the side (a client of
//! ferry's TLS listener, or an https:// server ferry talks to); the rest is cut into reads
//! whose lengths come from the input. Nothing may panic, loop or grow without bound.
#![no_main]

use ferry::buffer::Buf;
use ferry::tls::conn::TlsConn;
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::{Arc, OnceLock};

const CERT: &[u8] = include_bytes!("../fixtures/fuzz.crt");
const KEY: &[u8] = include_bytes!("../fixtures/fuzz.key");

fn configs() -> &'static (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    static C: OnceLock<(Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>)> = OnceLock::new();
    C.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = CertificateDer::from_pem_slice(CERT).unwrap();
        let key = PrivateKeyDer::from_pem_slice(KEY).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    })
}

/// A loopback socket nobody writes to: reads would block, writes go to its buffer.
fn socket() -> mio::net::TcpStream {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    s.set_nonblocking(true).unwrap();
    mio::net::TcpStream::from_std(s)
}

fuzz_target!(|data: &[u8]| {
    let Some((&side, mut rest)) = data.split_first() else {
        return;
    };
    let (server, client) = configs();
    let mut t = if side & 1 == 0 {
        TlsConn::server(server.clone()).unwrap()
    } else {
        let name = ServerName::try_from("fuzz.test").unwrap();
        TlsConn::client(client.clone(), name).unwrap()
    };
    let mut s = socket();
    let mut buf = Buf::with_capacity(4096);
    while let Some((&n, tail)) = rest.split_first() {
        let n = (n as usize).min(tail.len());
        let (chunk, next) = tail.split_at(n);
        rest = next;
        t.feed(chunk);
        // What was decrypted goes to the session; what rustls answers to the socket.
        let _ = t.read_into(&mut s, false, &mut buf);
        buf.consume(buf.len());
        let _ = t.flush(&mut s);
        if t.failed() {
            break;
        }
        if t.established() {
            let _ = t.write_slice(&mut s, b"GET / HTTP/1.1\r\n\r\n");
        }
    }
});
