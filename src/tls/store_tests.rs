//! Unit tests of `tls::store`, apart from the code they test.

use super::*;
use rcgen::{CertificateParams, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, ServerConfig};
use rustls::{ServerConnection, SignatureScheme};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh, empty scratch directory.
fn scratch(test: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "ferry-store-{}-{test}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = crate::config::base64(der);
    let mut o = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        o.push_str(std::str::from_utf8(line).unwrap());
        o.push('\n');
    }
    o + &format!("-----END {label}-----\n")
}

/// A self-signed certificate for `names`, valid from `from` to `to` (unix seconds): its
/// PEM, its key's PEM and its DER (to recognise it on the wire).
struct Made {
    cert: String,
    key: String,
    der: Vec<u8>,
}

fn make_dated(names: &[&str], from: i64, to: i64) -> Made {
    make_with(KeyPair::generate().unwrap(), names, from, to)
}

fn make_with(key: KeyPair, names: &[&str], from: i64, to: i64) -> Made {
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.not_before = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(from as u64);
    p.not_after = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(to as u64);
    let c = p.self_signed(&key).unwrap();
    Made {
        cert: pem("CERTIFICATE", c.der()),
        key: pem("PRIVATE KEY", &key.serialize_der()),
        der: c.der().to_vec(),
    }
}

fn make(names: &[&str]) -> Made {
    let now = unix_now();
    make_dated(names, now - 86_400, now + 90 * 86_400)
}

/// Writes `m` as dir/stem.crt and dir/stem.key.
fn put(dir: &Path, stem: &str, m: &Made) -> CertSpec {
    let spec = CertSpec {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
    };
    fs::write(&spec.cert, &m.cert).unwrap();
    fs::write(&spec.key, &m.key).unwrap();
    spec
}

/// Moves a file's mtime, so that a rewrite within the same clock tick is still a change.
fn touch(path: &Path, secs_ago: u64) {
    let t = SystemTime::now() - std::time::Duration::from_secs(secs_ago);
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// Accepts any server certificate: these tests look at which one was served.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A whole handshake in memory against the store's resolver (an IP address sends no SNI);
/// the leaf certificate the client was served, None when the server refused.
fn served(store: &Arc<CertStore>, sni: &str) -> Option<Vec<u8>> {
    served_by(&server_config(store), sni)
}

/// A listener's config around the store's resolver, built once as the lead's listener does.
fn server_config(store: &Arc<CertStore>) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(store.resolver());
    Arc::new(server)
}

fn served_by(server: &Arc<ServerConfig>, sni: &str) -> Option<Vec<u8>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut c = ClientConnection::new(Arc::new(client), name).unwrap();
    let mut s = ServerConnection::new(Arc::clone(server)).unwrap();
    for _ in 0..10 {
        if !c.is_handshaking() && !s.is_handshaking() {
            return Some(c.peer_certificates()?[0].to_vec());
        }
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        s.read_tls(&mut &wire[..]).unwrap();
        s.process_new_packets().ok()?;
        wire.clear();
        while s.wants_write() {
            s.write_tls(&mut wire).unwrap();
        }
        c.read_tls(&mut &wire[..]).unwrap();
        c.process_new_packets().ok()?;
    }
    panic!("the handshake did not finish in 10 rounds");
}

#[test]
fn sni_picks_exact_before_wildcard_one_label_and_the_first_by_default() {
    let dir = scratch("sni");
    let first = make(&["default.test"]);
    let wild = make(&["*.example.com"]);
    let www = make(&["www.example.com", "example.com"]);
    let specs = [
        put(&dir, "a", &first),
        put(&dir, "b", &wild),
        put(&dir, "c", &www),
    ];
    let store = Arc::new(CertStore::load(&specs, None).unwrap());
    assert_eq!(
        served(&store, "www.example.com").unwrap(),
        www.der,
        "exact beats wildcard"
    );
    assert_eq!(
        served(&store, "WWW.Example.COM").unwrap(),
        www.der,
        "case-insensitive"
    );
    assert_eq!(
        served(&store, "api.example.com").unwrap(),
        wild.der,
        "wildcard"
    );
    assert_eq!(
        served(&store, "a.b.example.com").unwrap(),
        first.der,
        "one label only"
    );
    assert_eq!(served(&store, "example.com").unwrap(), www.der);
    assert_eq!(
        served(&store, "other.test").unwrap(),
        first.der,
        "no match: the first"
    );
    assert_eq!(
        served(&store, "127.0.0.1").unwrap(),
        first.der,
        "no SNI: the first"
    );
    // rustls lower-cases SNI before the resolver sees it; pick itself does not rely on it.
    let list = store.current();
    let picked = |sni| pick(&list, sni).map(|e| e.info.names[0].as_str());
    assert_eq!(picked(Some("API.EXAMPLE.COM")), Some("*.example.com"));
    assert_eq!(picked(Some("EXAMPLE.COM")), Some("www.example.com"));
    assert_eq!(
        picked(Some(".example.com")),
        Some("default.test"),
        "an empty label"
    );
    assert_eq!(picked(None), Some("default.test"));
    assert!(pick(&[], Some("example.com")).is_none());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_key_of_another_certificate_is_refused_naming_the_key_file() {
    let dir = scratch("mismatch");
    let a = make(&["a.test"]);
    let b = make(&["b.test"]);
    let good = put(&dir, "a", &a);
    let spec = CertSpec {
        cert: good.cert.clone(),
        key: put(&dir, "b", &b).key,
    };
    let errors = CertStore::load(&[good.clone(), spec.clone()], None).unwrap_err();
    assert_eq!(
        errors,
        [format!(
            "{}: does not match the certificate (a different key pair)",
            spec.key.display()
        )]
    );
    fs::write(dir.join("junk.crt"), "not a certificate").unwrap();
    fs::write(dir.join("lonely.crt"), &a.cert).unwrap();
    fs::write(dir.join("junk.key"), &a.key).unwrap();
    // Bad pairs in cert_dir are left out (logged), never a reason not to start.
    let store = CertStore::load(std::slice::from_ref(&good), Some(&dir)).unwrap();
    let listed: Vec<_> = store.list().into_iter().map(|c| c.cert_file).collect();
    assert_eq!(listed, [good.cert.clone(), dir.join("b.crt")]);
    assert_eq!(
        check(a.cert.as_bytes(), b"").err().map(|e| e.1),
        Some("no PRIVATE KEY in the PEM".into())
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_serves_an_expired_certificate_install_refuses_it() {
    let dir = scratch("expired");
    let now = unix_now();
    let old = make_dated(&["old.test"], now - 100 * 86_400, now - 86_400);
    let spec = put(&dir, "old", &old);
    let store =
        Arc::new(CertStore::load(std::slice::from_ref(&spec), Some(&dir.join("up"))).unwrap());
    assert_eq!(served(&store, "old.test").unwrap(), old.der);
    let info = &store.list()[0];
    assert_eq!(
        date_warning(info, now),
        Some(format!(
            "{}: the certificate for old.test expired at {}; served anyway",
            spec.cert.display(),
            x509::utc_text(now - 86_400)
        ))
    );
    assert_eq!(date_warning(info, now - 2 * 86_400), None);
    let e = store
        .install(old.cert.as_bytes(), old.key.as_bytes())
        .unwrap_err();
    assert!(e.starts_with("cert: expired at "), "{e}");
    let early = make_dated(&["early.test"], now + 86_400, now + 100 * 86_400);
    let e = store
        .install(early.cert.as_bytes(), early.key.as_bytes())
        .unwrap_err();
    assert!(e.starts_with("cert: not valid before "), "{e}");
    assert!(
        !dir.join("up").exists(),
        "nothing written for a refused upload"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn poll_follows_a_changed_pair_and_keeps_the_old_one_when_the_new_is_bad() {
    let dir = scratch("poll");
    let v1 = make(&["site.test"]);
    let spec = put(&dir, "site", &v1);
    let store = Arc::new(CertStore::load(&[], Some(&dir)).unwrap());
    // One listener config for the whole test: changes reach it without a rebuild.
    let listener = server_config(&store);
    let served = |_: &Arc<CertStore>, sni| served_by(&listener, sni);
    assert_eq!(served(&store, "site.test").unwrap(), v1.der);
    assert_eq!(store.poll(), 0, "nothing changed");

    // A bad replacement: the new certificate with the old key.
    let v2 = make(&["site.test"]);
    fs::write(&spec.cert, &v2.cert).unwrap();
    touch(&spec.cert, 10);
    assert_eq!(store.poll(), 0);
    assert_eq!(
        served(&store, "site.test").unwrap(),
        v1.der,
        "the old one keeps serving"
    );
    assert_eq!(store.poll(), 0, "refused once, not re-read every poll");

    // Its key arrives: the pair is whole again.
    fs::write(&spec.key, &v2.key).unwrap();
    touch(&spec.key, 5);
    assert_eq!(store.poll(), 1);
    assert_eq!(served(&store, "site.test").unwrap(), v2.der);

    // A file that goes away is refused too.
    fs::remove_file(&spec.key).unwrap();
    assert_eq!(store.poll(), 0);
    assert_eq!(served(&store, "site.test").unwrap(), v2.der);

    // A pair dropped into cert_dir is picked up; a half pair waits for its key.
    let new = make(&["new.test"]);
    fs::write(dir.join("new.crt"), &new.cert).unwrap();
    assert_eq!(store.poll(), 0);
    fs::write(dir.join("new.key"), &new.key).unwrap();
    assert_eq!(store.poll(), 1);
    assert_eq!(served(&store, "new.test").unwrap(), new.der);
    assert_eq!(store.list().len(), 2);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reload_keeps_the_old_entry_of_a_bad_pair_and_drops_what_is_gone() {
    let dir = scratch("reload");
    let a = make(&["a.test"]);
    let b = make(&["b.test"]);
    let (sa, sb) = (put(&dir, "a", &a), put(&dir, "b", &b));
    let store = Arc::new(CertStore::load(&[sa.clone(), sb.clone()], None).unwrap());
    fs::write(&sa.cert, "garbage").unwrap();
    let c = make(&["c.test"]);
    let sc = put(&dir, "c", &c);
    let bad = CertSpec {
        cert: dir.join("missing.crt"),
        key: dir.join("missing.key"),
    };
    let errors = store.reload(&[sa.clone(), sc, bad.clone()], None);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!("{}: ", sa.cert.display())),
        "{errors:?}"
    );
    assert!(errors[0].ends_with("; the previous certificate keeps serving"));
    assert!(errors[1].starts_with(&format!("{}: ", bad.cert.display())));
    assert!(errors[1].ends_with("; not served"));
    let names: Vec<String> = store.list().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["a.test", "c.test"], "b is no longer configured");
    assert_eq!(served(&store, "a.test").unwrap(), a.der);
    assert_eq!(
        served(&store, "b.test").unwrap(),
        a.der,
        "b gone: the first"
    );
    assert_eq!(
        store.poll(),
        0,
        "the bad pair is not re-read until it changes"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn install_writes_a_private_key_and_serves_the_certificate_at_once() {
    let dir = scratch("install");
    let up = dir.join("uploads");
    let first = make(&["first.test"]);
    let spec = put(&dir, "first", &first);
    let nowhere = CertStore::load(std::slice::from_ref(&spec), None).unwrap();
    let m = make(&["*.Shop.test", "shop.test"]);
    assert_eq!(
        nowhere.install(m.cert.as_bytes(), m.key.as_bytes()),
        Err("no tls.cert_dir is configured to store certificates in".into())
    );

    let store = Arc::new(CertStore::load(&[spec], Some(&up)).unwrap());
    let listener = server_config(&store);
    let served = |_: &Arc<CertStore>, sni| served_by(&listener, sni);
    assert_eq!(served(&store, "cart.shop.test").unwrap(), first.der);
    let info = store.install(m.cert.as_bytes(), m.key.as_bytes()).unwrap();
    assert_eq!(info.name, "*.Shop.test");
    assert_eq!(info.cert_file, up.join("_wildcard.shop.test.crt"));
    assert_eq!(
        served(&store, "cart.shop.test").unwrap(),
        m.der,
        "served at once"
    );
    let key_file = up.join("_wildcard.shop.test.key");
    assert_eq!(fs::read(&key_file).unwrap(), m.key.as_bytes());
    assert_eq!(fs::read(&info.cert_file).unwrap(), m.cert.as_bytes());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = fs::metadata(&up).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the directory is private too");
    }
    let files: Vec<_> = fs::read_dir(&up)
        .unwrap()
        .map(|d| d.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 2, "no temporary file left: {files:?}");
    assert_eq!(store.poll(), 0, "its own write is no change to re-read");

    // The same name again replaces it; a mismatched pair is refused and writes nothing.
    let m2 = make(&["*.shop.test"]);
    store
        .install(m2.cert.as_bytes(), m2.key.as_bytes())
        .unwrap();
    assert_eq!(served(&store, "cart.shop.test").unwrap(), m2.der);
    assert_eq!(store.list().len(), 2);
    let e = store
        .install(m.cert.as_bytes(), m2.key.as_bytes())
        .unwrap_err();
    assert_eq!(
        e,
        "key: does not match the certificate (a different key pair)"
    );
    assert_eq!(fs::read(&key_file).unwrap(), m2.key.as_bytes());

    // After a restart the upload is loaded from cert_dir.
    let again = Arc::new(CertStore::load(&[], Some(&up)).unwrap());
    assert_eq!(served(&again, "cart.shop.test").unwrap(), m2.der);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_key_kind_ring_signs_with_loads_and_the_store_is_shared() {
    fn shared<T: Send + Sync>() {}
    shared::<CertStore>();
    let dir = scratch("kinds");
    let now = unix_now();
    let mut specs = Vec::new();
    let mut made = Vec::new();
    for (i, alg) in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
    ]
    .into_iter()
    .enumerate()
    {
        let key = KeyPair::generate_for(alg).unwrap();
        let name = format!("k{i}.test");
        let m = make_with(key, &[&name], now - 60, now + 3600);
        specs.push(put(&dir, &format!("k{i}"), &m));
        made.push((name, m));
    }
    let store = Arc::new(CertStore::load(&specs, None).unwrap());
    for (name, m) in &made {
        assert_eq!(served(&store, name).as_ref(), Some(&m.der), "{name}");
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_empty_store_refuses_the_handshake() {
    let store = Arc::new(CertStore::load(&[], None).unwrap());
    assert_eq!(served(&store, "any.test"), None);
    assert!(store.list().is_empty());
}

#[test]
fn file_names_are_sanitised() {
    assert_eq!(
        file_name("*.Example.COM").as_deref(),
        Some("_wildcard.example.com")
    );
    assert_eq!(file_name("a_b/../c").as_deref(), Some("a-b-..-c"));
    assert_eq!(file_name("..").as_deref(), None);
    assert_eq!(file_name(".hidden").as_deref(), Some("hidden"));
}

#[test]
fn metrics_give_seconds_until_expiry_once_per_name() {
    let dir = scratch("metrics");
    let now = unix_now();
    let a = make_dated(&["a.test"], now - 10, now + 1000);
    let old = make_dated(&["o\"ld.test"], now - 1000, now - 10);
    let dup = make_dated(&["a.test"], now - 10, now + 5000);
    let specs = [
        put(&dir, "a", &a),
        put(&dir, "old", &old),
        put(&dir, "dup", &dup),
    ];
    let store = CertStore::load(&specs, None).unwrap();
    let mut out = String::new();
    store.write_metrics(now, &mut out);
    assert_eq!(
        out,
        "# HELP ferry_tls_certificate_expiry_seconds Seconds until each served certificate's notAfter (negative once it has expired).\n\
         # TYPE ferry_tls_certificate_expiry_seconds gauge\n\
         ferry_tls_certificate_expiry_seconds{name=\"a.test\"} 1000\n\
         ferry_tls_certificate_expiry_seconds{name=\"o\\\"ld.test\"} -10\n"
    );
    fs::remove_dir_all(&dir).unwrap();
}
