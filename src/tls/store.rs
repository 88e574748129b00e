//! The certificate store (DESIGN §8): where it sits on the request path. A TLS listener's
//! handshake asks the store's resolver for a certificate once, when rustls has read the
//! ClientHello: SNI picks the certificate whose names match, exact before wildcard, else the
//! first. Everything else happens beside the path, on the control thread: the reload poll
//! re-reads pairs whose files changed, a config reload swaps in its list, and the control API
//! uploads a new pair. Each of them checks a pair completely (PEM parses, the key matches the
//! certificate) before it publishes a new list; a bad pair is refused and the old one keeps
//! serving. Handshakes in flight and established connections keep the `Arc<CertifiedKey>` they
//! took, so nothing is ever cut by a change.
//!
//! The published list is an `Arc<Vec<Entry>>` behind a `RwLock`: a handshake holds the read
//! lock for one `Arc` clone, the writers (all on the control thread, serialised by a mutex of
//! their own) build a new list off the lock and swap it in.

use super::x509;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::fs::{self, File};
use std::io::{self, Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// A PEM file larger than this is refused unread: a chain of a few certificates is a few KiB.
const MAX_PEM: u64 = 1 << 20;

/// One configured certificate: a PEM chain (leaf first) and its PEM private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A certificate as /status, metrics and the API show it (never the key).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    /// The first SAN DNS name, else the certificate file's stem.
    pub name: String,
    /// Every DNS name SNI is matched against (SAN dNSNames; the CN without a SAN extension).
    pub names: Vec<String>,
    /// notBefore, unix seconds.
    pub not_before: i64,
    /// notAfter, unix seconds.
    pub not_after: i64,
    /// The PEM chain it was read from (or written to, for an upload).
    pub cert_file: PathBuf,
}

/// A file as the poll knows it: mtime and length, None when it cannot be stat'ed.
type Stamp = Option<(SystemTime, u64)>;

/// One served certificate.
#[derive(Clone)]
struct Entry {
    key: Arc<CertifiedKey>,
    info: CertInfo,
    key_file: PathBuf,
    /// The (cert, key) stamps when last read, well or badly: the poll re-reads on a change.
    seen: (Stamp, Stamp),
}

/// The certificates TLS listeners serve, shared by every worker and the control thread.
pub struct CertStore {
    /// What handshakes read.
    live: RwLock<Arc<Vec<Entry>>>,
    /// Serialises poll, reload and install, each of which publishes a list built from the last.
    writer: Mutex<Writer>,
}

/// The writers' own state.
struct Writer {
    cert_dir: Option<PathBuf>,
    /// Pairs found in cert_dir that were refused, with the stamps they were refused at: logged
    /// once, read again when they change.
    refused: HashMap<PathBuf, (Stamp, Stamp)>,
    /// What the last look at cert_dir found wrong with it, so that the poll says it once.
    dir_errors: Vec<String>,
}

/// A pair that failed: the line naming the file and the reason, and the stamps it failed at.
struct Refusal {
    line: String,
    seen: (Stamp, Stamp),
}

impl CertStore {
    /// Loads the configured pairs (in order: the first is the default for no SNI / no match),
    /// then every NAME.crt + NAME.key pair in cert_dir (if given and present). Err: one line per
    /// bad pair, naming the file and the reason (for `ferry --check` and start).
    pub fn load(specs: &[CertSpec], cert_dir: Option<&Path>) -> Result<CertStore, Vec<String>> {
        // A configured pair that is bad stops a start (or a reload); a bad pair in cert_dir
        // (a stray file, an upload cut short by a crash) is logged and left out, so that it
        // cannot keep ferry from starting.
        let (wanted, dir_errors) = wanted_pairs(specs, cert_dir);
        for e in &dir_errors {
            log::error!("TLS: {e}; left out");
        }
        let mut errors = Vec::new();
        let now = unix_now();
        let mut entries = Vec::new();
        for (i, spec) in wanted.iter().enumerate() {
            match read_pair(spec) {
                Ok(e) => {
                    warn_dates(&e.info, now);
                    entries.push(e);
                }
                Err(r) if i < specs.len() => errors.push(r.line),
                Err(r) => log::error!("TLS: {}; left out", r.line),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(CertStore {
            live: RwLock::new(Arc::new(entries)),
            writer: Mutex::new(Writer {
                cert_dir: cert_dir.map(Path::to_path_buf),
                refused: HashMap::new(),
                dir_errors: Vec::new(),
            }),
        })
    }

    /// The rustls resolver: SNI → exact SAN match, else a one-label wildcard, else the first;
    /// it sees every change at once (no ServerConfig rebuild).
    pub fn resolver(self: &Arc<Self>) -> Arc<dyn ResolvesServerCert> {
        Arc::new(Resolver(Arc::clone(self)))
    }

    /// The reload poll (about once a second): re-reads pairs whose files changed (mtime or
    /// length) and picks up new pairs in cert_dir; a bad pair is refused with one log line and
    /// the old one keeps serving. Returns how many certificates were replaced or added.
    pub fn poll(&self) -> usize {
        let mut w = self.writer();
        let old = self.current();
        let now = unix_now();
        let mut next: Option<Vec<Entry>> = None;
        let mut changed = 0;
        for (i, e) in old.iter().enumerate() {
            let seen = (stamp(&e.info.cert_file), stamp(&e.key_file));
            if seen == e.seen {
                continue;
            }
            let list = next.get_or_insert_with(|| old.to_vec());
            let spec = CertSpec {
                cert: e.info.cert_file.clone(),
                key: e.key_file.clone(),
            };
            match read_pair(&spec) {
                Ok(fresh) => {
                    log::info!(
                        "{}: certificate for {} re-read, valid until {}",
                        spec.cert.display(),
                        fresh.info.name,
                        x509::utc_text(fresh.info.not_after)
                    );
                    warn_dates(&fresh.info, now);
                    list[i] = fresh;
                    changed += 1;
                }
                Err(r) => {
                    log::error!("{}; the previous certificate keeps serving", r.line);
                    list[i].seen = r.seen;
                }
            }
        }
        // Pairs dropped into cert_dir since the last look.
        if let Some(dir) = w.cert_dir.clone() {
            let known = next.as_deref().unwrap_or(&old);
            let (found, errors) = dir_pairs(&dir);
            // A directory that cannot be listed or a NAME.crt without its key: said once.
            for line in errors.iter().filter(|l| !w.dir_errors.contains(l)) {
                log::error!("{line}");
            }
            w.dir_errors = errors;
            let fresh: Vec<CertSpec> = found
                .into_iter()
                .filter(|s| !already_served(known, &s.cert))
                .collect();
            for spec in fresh {
                let seen = (stamp(&spec.cert), stamp(&spec.key));
                if w.refused.get(&spec.cert) == Some(&seen) {
                    continue;
                }
                match read_pair(&spec) {
                    Ok(e) => {
                        log::info!(
                            "{}: new certificate for {}, valid until {}",
                            spec.cert.display(),
                            e.info.name,
                            x509::utc_text(e.info.not_after)
                        );
                        warn_dates(&e.info, now);
                        w.refused.remove(&spec.cert);
                        next.get_or_insert_with(|| old.to_vec()).push(e);
                        changed += 1;
                    }
                    Err(r) => {
                        log::error!("{}; not served", r.line);
                        w.refused.insert(spec.cert, r.seen);
                    }
                }
            }
        }
        if let Some(list) = next {
            self.publish(list);
        }
        changed
    }

    /// A new config's pairs (on reload): a pair that fails keeps the old entry of the same
    /// cert path if any, else it is left out; returns the error lines.
    pub fn reload(&self, specs: &[CertSpec], cert_dir: Option<&Path>) -> Vec<String> {
        let mut w = self.writer();
        let old = self.current();
        let now = unix_now();
        let (wanted, mut errors) = wanted_pairs(specs, cert_dir);
        w.cert_dir = cert_dir.map(Path::to_path_buf);
        w.refused.clear();
        w.dir_errors = errors.clone();
        let mut list = Vec::with_capacity(wanted.len());
        for spec in &wanted {
            match read_pair(spec) {
                Ok(e) => {
                    warn_dates(&e.info, now);
                    list.push(e);
                }
                Err(r) => match old
                    .iter()
                    .find(|o| same_file(&o.info.cert_file, &spec.cert))
                {
                    Some(o) => {
                        errors.push(format!(
                            "{}; the previous certificate keeps serving",
                            r.line
                        ));
                        let mut kept = o.clone();
                        kept.key_file.clone_from(&spec.key);
                        kept.seen = r.seen;
                        list.push(kept);
                    }
                    None => {
                        errors.push(format!("{}; not served", r.line));
                        w.refused.insert(spec.cert.clone(), r.seen);
                    }
                },
            }
        }
        self.publish(list);
        errors
    }

    /// Upload (the control API): checks the PEM pair (parses, key matches, now within its
    /// dates), writes it atomically to cert_dir as NAME.crt/NAME.key and serves it at once,
    /// replacing an entry of the same NAME.
    pub fn install(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertInfo, String> {
        let mut w = self.writer();
        let Some(dir) = w.cert_dir.clone() else {
            return Err("no tls.cert_dir is configured to store certificates in".into());
        };
        let (key, facts) =
            check(cert_pem, key_pem).map_err(|(side, why)| format!("{side}: {why}"))?;
        let now = unix_now();
        if now < facts.not_before {
            return Err(format!(
                "cert: not valid before {}",
                x509::utc_text(facts.not_before)
            ));
        }
        if now > facts.not_after {
            return Err(format!(
                "cert: expired at {}",
                x509::utc_text(facts.not_after)
            ));
        }
        let Some(name) = facts.names.first().and_then(|n| file_name(n)) else {
            return Err("cert: names no DNS host to file it under".into());
        };
        let cert_file = dir.join(format!("{name}.crt"));
        let key_file = dir.join(format!("{name}.key"));
        // A certificate the config file names is that file's: an upload in its place would be
        // served until the next reload, then silently replaced by the file again.
        let current = self.current();
        let configured = current.iter().find(|e| {
            e.info.name.eq_ignore_ascii_case(&facts.names[0])
                && e.info.cert_file.parent() != Some(dir.as_path())
        });
        if let Some(e) = configured {
            return Err(format!(
                "{} is configured in tls.certificates ({}): replace that file instead",
                e.info.name,
                e.info.cert_file.display()
            ));
        }
        store_pair(&dir, &name, cert_pem, key_pem)
            .map_err(|e| format!("cannot write to {}: {e}", dir.display()))?;
        let info = CertInfo {
            name: facts.names[0].clone(),
            names: facts.names,
            not_before: facts.not_before,
            not_after: facts.not_after,
            cert_file: cert_file.clone(),
        };
        let entry = Entry {
            key,
            info: info.clone(),
            seen: (stamp(&cert_file), stamp(&key_file)),
            key_file,
        };
        let mut list = self.current().to_vec();
        match list.iter().position(|e| {
            e.info.name.eq_ignore_ascii_case(&info.name) || same_file(&e.info.cert_file, &cert_file)
        }) {
            Some(i) => list[i] = entry,
            None => list.push(entry),
        }
        w.refused.remove(&cert_file);
        self.publish(list);
        log::info!(
            "{}: certificate for {} installed, valid until {}",
            cert_file.display(),
            info.name,
            x509::utc_text(info.not_after)
        );
        Ok(info)
    }

    /// Every served certificate, in resolver order (the first is the default).
    pub fn list(&self) -> Vec<CertInfo> {
        self.current().iter().map(|e| e.info.clone()).collect()
    }

    /// The metric family `ferry_tls_certificate_expiry_seconds{name="…"}` (seconds until
    /// not_after, negative once expired), with HELP/TYPE lines, appended to `out`.
    pub fn write_metrics(&self, now_unix: i64, out: &mut String) {
        let name = "ferry_tls_certificate_expiry_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Seconds until each served certificate's notAfter (negative once it has expired).\n# TYPE {name} gauge"
        );
        let list = self.current();
        for (i, e) in list.iter().enumerate() {
            // Two certificates under one name would make a duplicate series, which Prometheus
            // refuses: the first one (the one exact SNI matches get) speaks for the name.
            if list[..i].iter().any(|o| o.info.name == e.info.name) {
                continue;
            }
            let _ = writeln!(
                out,
                "{name}{{name=\"{}\"}} {}",
                label(&e.info.name),
                e.info.not_after - now_unix
            );
        }
    }

    fn current(&self) -> Arc<Vec<Entry>> {
        Arc::clone(&self.live.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn publish(&self, list: Vec<Entry>) {
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(list);
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = self.current();
        f.debug_list()
            .entries(list.iter().map(|e| &e.info.name))
            .finish()
    }
}

/// The store as rustls asks it, once per full handshake.
#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let list = self.0.current();
        pick(&list, hello.server_name()).map(|e| Arc::clone(&e.key))
    }
}

/// SNI (case-insensitive) → the first entry with that exact name, else the first whose
/// `*.parent` wildcard covers it (one label only, RFC 6125 §6.4.3), else the first entry.
fn pick<'a>(list: &'a [Entry], sni: Option<&str>) -> Option<&'a Entry> {
    let names = |e: &'a Entry| e.info.names.iter();
    if let Some(sni) = sni {
        let exact = list
            .iter()
            .find(|e| names(e).any(|n| n.eq_ignore_ascii_case(sni)));
        if exact.is_some() {
            return exact;
        }
        if let Some((_, parent)) = sni.split_once('.').filter(|(l, _)| !l.is_empty()) {
            let wild = list.iter().find(|e| {
                names(e).any(|n| {
                    n.strip_prefix("*.")
                        .is_some_and(|p| p.eq_ignore_ascii_case(parent))
                })
            });
            if wild.is_some() {
                return wild;
            }
        }
    }
    list.first()
}

/// The configured pairs, then cert_dir's (those not configured already), and the lines of
/// what could not even be listed.
fn wanted_pairs(specs: &[CertSpec], cert_dir: Option<&Path>) -> (Vec<CertSpec>, Vec<String>) {
    let mut wanted = specs.to_vec();
    let mut errors = Vec::new();
    if let Some(dir) = cert_dir {
        let (found, bad) = dir_pairs(dir);
        errors = bad;
        for s in found {
            if !specs.iter().any(|c| same_file(&c.cert, &s.cert)) {
                wanted.push(s);
            }
        }
    }
    (wanted, errors)
}

/// Every NAME.crt with its NAME.key in `dir`, by name; hidden files (our own temporary
/// files among them) are skipped. A missing dir has no pairs.
fn dir_pairs(dir: &Path) -> (Vec<CertSpec>, Vec<String>) {
    let read = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (Vec::new(), Vec::new()),
        Err(e) => return (Vec::new(), vec![format!("{}: {e}", dir.display())]),
    };
    let mut stems: Vec<String> = read
        .filter_map(|d| d.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .filter_map(|n| Some(n.strip_suffix(".crt")?.to_owned()))
        .filter(|stem| !stem.is_empty())
        .collect();
    stems.sort();
    let mut pairs = Vec::new();
    let mut errors = Vec::new();
    for stem in stems {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        if key.exists() {
            pairs.push(CertSpec { cert, key });
        } else {
            errors.push(format!("{}: no {stem}.key beside it", cert.display()));
        }
    }
    (pairs, errors)
}

/// Reads and checks one pair from its files.
fn read_pair(spec: &CertSpec) -> Result<Entry, Refusal> {
    // Stamped before reading: a write that lands during the read changes the stamp again, and
    // the next poll reads the pair once more.
    let seen = (stamp(&spec.cert), stamp(&spec.key));
    let refuse = |file: &Path, why: &dyn fmt::Display| Refusal {
        line: format!("{}: {why}", file.display()),
        seen,
    };
    let cert_pem = read_limited(&spec.cert).map_err(|e| refuse(&spec.cert, &e))?;
    let key_pem = read_limited(&spec.key).map_err(|e| refuse(&spec.key, &e))?;
    let (key, facts) = check(&cert_pem, &key_pem).map_err(|(side, why)| match side {
        Side::Cert => refuse(&spec.cert, &why),
        Side::Key => refuse(&spec.key, &why),
    })?;
    let name = match facts.names.first() {
        Some(n) => n.clone(),
        None => spec
            .cert
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    Ok(Entry {
        key,
        info: CertInfo {
            name,
            names: facts.names,
            not_before: facts.not_before,
            not_after: facts.not_after,
            cert_file: spec.cert.clone(),
        },
        key_file: spec.key.clone(),
        seen,
    })
}

/// Which half of a pair a check failed on.
#[derive(Debug, Clone, Copy)]
enum Side {
    Cert,
    Key,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Cert => "cert",
            Side::Key => "key",
        })
    }
}

/// The leaf's facts, owned.
struct Facts {
    names: Vec<String>,
    not_before: i64,
    not_after: i64,
}

/// Checks a PEM pair: the chain parses, its leaf has readable dates and names, the key is one
/// ring signs with, and it is the key of the leaf.
fn check(cert_pem: &[u8], key_pem: &[u8]) -> Result<(Arc<CertifiedKey>, Facts), (Side, String)> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| (Side::Cert, format!("not PEM: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err((Side::Cert, "no CERTIFICATE in the PEM".into()));
    };
    let facts = x509::parse(leaf).map_err(|e| (Side::Cert, e.to_string()))?;
    let facts = Facts {
        names: facts.names.iter().map(|n| n.to_string()).collect(),
        not_before: facts.not_before,
        not_after: facts.not_after,
    };
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => (Side::Key, "no PRIVATE KEY in the PEM".to_string()),
        e => (Side::Key, format!("not PEM: {e}")),
    })?;
    let signer = any_supported_type(&key).map_err(|e| {
        (
            Side::Key,
            format!("not a key ferry can sign with (RSA, ECDSA P-256/P-384, Ed25519): {e}"),
        )
    })?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) => Ok((Arc::new(certified), facts)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err((
            Side::Key,
            "does not match the certificate (a different key pair)".into(),
        )),
        Err(e) => Err((Side::Cert, format!("cannot check the key against it: {e}"))),
    }
}

/// A file's content, refused above MAX_PEM.
fn read_limited(path: &Path) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    File::open(path)?.take(MAX_PEM + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_PEM {
        return Err(io::Error::other(format!(
            "larger than {} KiB, not a PEM certificate or key",
            MAX_PEM >> 10
        )));
    }
    Ok(out)
}

fn stamp(path: &Path) -> Stamp {
    let m = fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Whether `cert` is served already. Once a second for every pair in cert_dir: the paths are
/// compared as they are first (a pair found by the scan has the same path each time), and only
/// a pair not found so is resolved through the filesystem.
fn already_served(list: &[Entry], cert: &Path) -> bool {
    list.iter().any(|e| e.info.cert_file == cert)
        || fs::canonicalize(cert).is_ok_and(|c| {
            list.iter()
                .any(|e| fs::canonicalize(&e.info.cert_file).is_ok_and(|k| k == c))
        })
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || matches!((fs::canonicalize(a), fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

/// Logs a served certificate outside its dates: served anyway (a router whose clock is not set
/// yet sees every certificate "not yet valid"), but somebody should know.
fn warn_dates(info: &CertInfo, now: i64) {
    if let Some(line) = date_warning(info, now) {
        log::warn!("{line}");
    }
}

fn date_warning(info: &CertInfo, now: i64) -> Option<String> {
    let (why, at) = if now > info.not_after {
        ("expired at", info.not_after)
    } else if now < info.not_before {
        ("is not valid before", info.not_before)
    } else {
        return None;
    };
    Some(format!(
        "{}: the certificate for {} {why} {}; served anyway",
        info.cert_file.display(),
        info.name,
        x509::utc_text(at)
    ))
}

/// The file name an uploaded certificate is stored under: its DNS name lower-cased, `*` as
/// `_wildcard`, anything but `[a-z0-9.-]` as `-`, no leading dot (hidden files are skipped by
/// the scan, and `..` is no name). None when nothing is left.
fn file_name(dns: &str) -> Option<String> {
    let mut s = String::with_capacity(dns.len() + 8);
    for c in dns.chars() {
        match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '-') => s.push(c),
            '*' => s.push_str("_wildcard"),
            _ => s.push('-'),
        }
    }
    let s = s.trim_start_matches('.');
    (!s.is_empty()).then(|| s.to_owned())
}

/// Writes NAME.key (mode 0600) and NAME.crt into `dir`, each through a hidden temporary file
/// that is fsynced and renamed over the old one, then fsyncs the directory: a crash leaves the
/// old file or the new one, never half of one. Both are renamed only after both are written,
/// so the window in which the pair on disk is mixed is two renames long.
fn store_pair(dir: &Path, name: &str, cert_pem: &[u8], key_pem: &[u8]) -> io::Result<()> {
    create_private_dir(dir)?;
    let key_tmp = dir.join(format!(".{name}.key.tmp"));
    let cert_tmp = dir.join(format!(".{name}.crt.tmp"));
    write_synced(&key_tmp, key_pem, 0o600)?;
    write_synced(&cert_tmp, cert_pem, 0o644)?;
    fs::rename(&key_tmp, dir.join(format!("{name}.key")))?;
    fs::rename(&cert_tmp, dir.join(format!("{name}.crt")))?;
    File::open(dir)?.sync_all()
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// A new file with `mode` from its creation (a key is never readable by others, not even for a
/// moment), its bytes written and fsynced.
fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    // A temporary file left by a crash may have any mode: start afresh.
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Escapes a label value (Prometheus text format: backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
