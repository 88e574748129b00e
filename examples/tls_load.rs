//! A TLS load generator for `benches/tls.sh`: full and resumed handshakes per second, a bulk
//! download over TLS, and idle TLS keep-alive connections held open while the server's RSS is
//! read.
//!
//! It stands where a browser would: on the client side of a TLS-terminating proxy (ferry,
//! HAProxy, nginx), speaking HTTP/1.1 over rustls (ring) with blocking sockets, one thread per
//! loop. It is a load generator, not a client to trust: it accepts any certificate and does not
//! check the server's handshake signature, so that its own CPU (it shares a core with the
//! origin) goes to driving the server. It talks to loopback addresses only and refuses others.
//!
//! ```text
//! tls_load handshakes ADDR [--threads 8] [--secs 5] [--path /small] [--resume] [--tls12]
//! tls_load get ADDR PATH [--repeat 10]
//! tls_load hold ADDR PATH --pid PID [--conns 1000]
//! ```
//! Each prints one line of `key=value` pairs (the bench reads them with awk):
//! - `handshakes`: THREADS loops of connect, handshake, one GET of PATH read to its end,
//!   close_notify, close; with `--resume` the loops share a session store (TLS 1.3 tickets; TLS
//!   1.2 session IDs or tickets with `--tls12`), without it every handshake is a full one.
//!   `rate` is handshakes per second, `p50_ms`/`p99_ms`/`max_ms` the time from connect to the
//!   response's end; `full` and `resumed` count what the server actually did,
//!   so a server that does not resume shows `resumed=0`; `client_ticks` is the client's own CPU
//!   time (clock ticks), to tell a client-bound rate from a server-bound one.
//! - `get`: one connection, PATH downloaded REPEAT times over it; `mib_s`.
//! - `hold`: CONNS connections, each makes one GET of PATH and stays open and idle; the RSS of
//!   process PID and its descendants before and after (`/proc`), the difference per connection,
//!   and how many are still open after the idle second.
//!
//! `--tls12` needs the build's `tls` feature (it turns on rustls' TLS 1.2 code).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, SignatureScheme,
    StreamOwned,
};

/// How long one socket operation may block before the loop counts an error.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response head read (the peers' heads are a few hundred bytes).
const MAX_HEAD: usize = 16 * 1024;
/// The name sent as SNI and Host; the bench's certificates are issued for it.
const NAME: &str = "localhost";

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("tls_load: {e}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let mode = args.first().map(String::as_str).unwrap_or("");
    let addr = loopback(args.get(1).ok_or("usage: tls_load MODE ADDR ...")?)?;
    let opts = Options::parse(&args[2..])?;
    match mode {
        "handshakes" => handshakes(addr, &opts),
        "get" => download(addr, &opts),
        "hold" => hold(addr, &opts),
        _ => Err(format!("unknown mode {mode:?} (handshakes, get, hold)")),
    }
}

/// The command line after MODE and ADDR.
struct Options {
    path: String,
    threads: usize,
    secs: u64,
    resume: bool,
    tls12: bool,
    repeat: usize,
    conns: usize,
    pid: Option<u32>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            path: "/small".into(),
            threads: 8,
            secs: 5,
            resume: false,
            tls12: false,
            repeat: 10,
            conns: 1000,
            pid: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().ok_or(format!("{a} needs a value"));
            match a.as_str() {
                "--resume" => o.resume = true,
                "--tls12" => o.tls12 = true,
                "--path" => o.path = value()?.clone(),
                "--threads" => o.threads = number(value()?)?,
                "--secs" => o.secs = number(value()?)?,
                "--repeat" => o.repeat = number(value()?)?,
                "--conns" => o.conns = number(value()?)?,
                "--pid" => o.pid = Some(number(value()?)?),
                p if p.starts_with('/') => o.path = p.to_string(),
                _ => return Err(format!("unknown argument {a:?}")),
            }
        }
        Ok(o)
    }
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("not a number: {s:?}"))
}

/// ADDR as a socket address, refused unless it is on loopback: the bench never leaves the host.
fn loopback(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s
        .parse()
        .map_err(|_| format!("not an IP:port: {s:?} (no names are resolved)"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{addr} is not a loopback address"));
    }
    Ok(addr)
}

/// Accepts whatever the server presents: a load generator measures the server's work, and the
/// signature checks would spend the shared core's time on the client side.
#[derive(Debug)]
struct AcceptAny(Vec<SignatureScheme>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

/// The client side of every connection: ring, ALPN http/1.1, TLS 1.3 (or 1.2 with `--tls12`),
/// resumption as asked.
fn client_config(opts: &Options) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[versions(opts.tls12)?])
        .map_err(|e| e.to_string())?;
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(schemes)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = if opts.resume {
        // One server name, tickets consumed as they are used: a small store is plenty.
        Resumption::in_memory_sessions(256)
    } else {
        Resumption::disabled()
    };
    Ok(Arc::new(config))
}

#[cfg(feature = "tls")]
fn versions(tls12: bool) -> Result<&'static rustls::SupportedProtocolVersion, String> {
    Ok(if tls12 {
        &rustls::version::TLS12
    } else {
        &rustls::version::TLS13
    })
}

#[cfg(not(feature = "tls"))]
fn versions(tls12: bool) -> Result<&'static rustls::SupportedProtocolVersion, String> {
    if tls12 {
        return Err("--tls12 needs a build with --features tls".into());
    }
    Ok(&rustls::version::TLS13)
}

/// A TCP connection to ADDR with its TLS session, not yet handshaken (the first write does it).
fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> io::Result<TlsStream> {
    let sock = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    let name = ServerName::try_from(NAME).expect("a valid DNS name");
    let conn = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
    Ok(StreamOwned::new(conn, sock))
}

/// Sends `GET path` and reads the response to its end into `buf` (the body is discarded), so the
/// connection is ready for the next request. Returns the body's length.
fn get(s: &mut TlsStream, path: &str, buf: &mut [u8]) -> io::Result<u64> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {NAME}\r\n\r\n");
    s.write_all(req.as_bytes())?;
    let head_room = buf.len().min(MAX_HEAD);
    let mut filled = 0;
    let (head_len, body_len) = loop {
        if filled == head_room {
            return Err(io::Error::other("response head too large"));
        }
        let n = s.read(&mut buf[filled..head_room])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf[..filled]) {
            Ok(httparse::Status::Complete(len)) => {
                if resp.code != Some(200) {
                    return Err(io::Error::other(format!("status {:?}", resp.code)));
                }
                let cl = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .ok_or_else(|| io::Error::other("no Content-Length"))?;
                break (len, cl);
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(io::Error::other(e.to_string())),
        }
    };
    let mut left = body_len - (filled - head_len) as u64;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = s.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        left -= n as u64;
    }
    Ok(body_len)
}

/// What one handshake loop did.
#[derive(Default)]
struct Tally {
    full: u64,
    resumed: u64,
    errors: u64,
    /// Microseconds from connect to the response's end, one per successful handshake.
    micros: Vec<u32>,
    first_error: Option<String>,
    /// What a handshake agreed on (`negotiated`): the first resumed one's if any, else the
    /// first full one's.
    terms: Option<(HandshakeKind, String)>,
}

/// THREADS loops of connect + handshake + GET + close for SECS seconds.
fn handshakes(addr: SocketAddr, opts: &Options) -> Result<(), String> {
    let config = client_config(opts)?;
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let loops: Vec<_> = (0..opts.threads)
            .map(|_| scope.spawn(|| handshake_loop(addr, &config, opts, &stop)))
            .collect();
        std::thread::sleep(Duration::from_secs(opts.secs));
        stop.store(true, Ordering::Relaxed);
        loops.into_iter().map(|l| l.join().unwrap()).collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let full: u64 = tallies.iter().map(|t| t.full).sum();
    let resumed: u64 = tallies.iter().map(|t| t.resumed).sum();
    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    if let Some(e) = tallies.iter().find_map(|t| t.first_error.as_ref()) {
        eprintln!("tls_load: first of {errors} errors: {e}");
    }
    let mut micros: Vec<u32> = tallies
        .iter()
        .flat_map(|t| t.micros.iter().copied())
        .collect();
    micros.sort_unstable();
    let ms = |q: f64| match micros.len() {
        0 => 0.0,
        n => f64::from(micros[((n - 1) as f64 * q) as usize]) / 1000.0,
    };
    let terms = tallies
        .iter()
        .filter_map(|t| t.terms.as_ref())
        .max_by_key(|(kind, _)| *kind == HandshakeKind::Resumed)
        .map(|(_, terms)| terms.as_str());
    println!(
        "handshakes={} full={full} resumed={resumed} errors={errors} secs={secs:.3} rate={:.1} \
         p50_ms={:.2} p99_ms={:.2} max_ms={:.2} client_ticks={} {}",
        full + resumed,
        (full + resumed) as f64 / secs,
        ms(0.5),
        ms(0.99),
        ms(1.0),
        own_cpu_ticks(),
        terms.unwrap_or("suite=- kx=-")
    );
    Ok(())
}

fn handshake_loop(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    opts: &Options,
    stop: &AtomicBool,
) -> Tally {
    let (path, resume) = (opts.path.as_str(), opts.resume);
    let mut t = Tally::default();
    let mut buf = vec![0u8; MAX_HEAD];
    while !stop.load(Ordering::Relaxed) {
        // Once per loop, and once more for the first resumption when resuming.
        let want_terms = match &t.terms {
            None => true,
            Some((kind, _)) => resume && *kind != HandshakeKind::Resumed,
        };
        let began = Instant::now();
        match one_handshake(addr, config, path, &mut buf, want_terms) {
            Ok((kind, terms)) => {
                let us = began.elapsed().as_micros();
                t.micros.push(u32::try_from(us).unwrap_or(u32::MAX));
                if kind == HandshakeKind::Resumed {
                    t.resumed += 1;
                } else {
                    t.full += 1;
                }
                if let Some(terms) = terms {
                    if t.terms.is_none() || kind == HandshakeKind::Resumed {
                        t.terms = Some((kind, terms));
                    }
                }
            }
            Err(e) => {
                t.errors += 1;
                t.first_error.get_or_insert_with(|| e.to_string());
                // A refusing server would otherwise be hammered in a tight loop.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    t
}

fn one_handshake(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    path: &str,
    buf: &mut [u8],
    want_terms: bool,
) -> io::Result<(HandshakeKind, Option<String>)> {
    let mut s = connect(addr, config)?;
    get(&mut s, path, buf)?;
    let kind = s
        .conn
        .handshake_kind()
        .ok_or_else(|| io::Error::other("handshake not finished after a response"))?;
    let terms = want_terms.then(|| negotiated(&s.conn));
    // close_notify: OpenSSL forgets a TLS 1.2 session whose connection ended without one.
    s.conn.send_close_notify();
    let _ = s.conn.complete_io(&mut s.sock);
    Ok((kind, terms))
}

/// The cipher suite and key exchange group a connection agreed on, as `suite=.. kx=..`
/// (`kx=-` for a TLS 1.2 resumption, which has none).
fn negotiated(conn: &ClientConnection) -> String {
    let suite = conn
        .negotiated_cipher_suite()
        .map_or("-".into(), |s| format!("{:?}", s.suite()));
    let kx = conn
        .negotiated_key_exchange_group()
        .map_or("-".into(), |g| format!("{:?}", g.name()));
    format!("suite={suite} kx={kx}")
}

/// One connection, PATH downloaded REPEAT times over it.
fn download(addr: SocketAddr, opts: &Options) -> Result<(), String> {
    let config = client_config(opts)?;
    let mut s = connect(addr, &config).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1 << 20];
    // The handshake and the first request's latency stay out of the rate.
    get(&mut s, "/small", &mut buf).map_err(|e| e.to_string())?;
    let mut bytes = 0;
    let start = Instant::now();
    for _ in 0..opts.repeat {
        bytes += get(&mut s, &opts.path, &mut buf).map_err(|e| e.to_string())?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "bytes={bytes} secs={secs:.3} mib_s={:.1} {}",
        bytes as f64 / (1 << 20) as f64 / secs,
        negotiated(&s.conn)
    );
    Ok(())
}

/// CONNS idle keep-alive connections, each after one GET, and what they cost process PID.
fn hold(addr: SocketAddr, opts: &Options) -> Result<(), String> {
    let pid = opts.pid.ok_or("hold needs --pid")?;
    let config = client_config(opts)?;
    let mut buf = vec![0u8; MAX_HEAD];
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_kib(pid);
    let mut conns = Vec::with_capacity(opts.conns);
    for i in 0..opts.conns {
        let mut s = connect(addr, &config).map_err(|e| format!("connection {i}: {e}"))?;
        get(&mut s, &opts.path, &mut buf).map_err(|e| format!("connection {i}: {e}"))?;
        conns.push(s);
    }
    std::thread::sleep(Duration::from_secs(1));
    let loaded = rss_kib(pid);
    // A connection the server closed has its close_notify or FIN waiting by now.
    let open = conns.iter_mut().map(still_open).filter(|&o| o).count();
    let per = (loaded as f64 - idle as f64) * 1024.0 / opts.conns as f64;
    println!(
        "idle_kib={idle} loaded_kib={loaded} per_conn_b={per:.0} open={open} conns={}",
        opts.conns
    );
    Ok(())
}

/// Whether the server has neither closed the connection nor sent anything since the response.
fn still_open(s: &mut TlsStream) -> bool {
    if s.sock.set_nonblocking(true).is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// This process's user + system CPU time so far, in clock ticks (/proc/self/stat, fields 14
/// and 15): the bench sets it beside the server's to show which side bound the rate.
fn own_cpu_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let mut f = s.rsplit_once(')')?.1.split_whitespace().skip(11);
            Some(f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// VmRSS of `pid` and all its descendants (nginx's master and worker), in KiB.
fn rss_kib(pid: u32) -> u64 {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            // Field 4 of stat, after the command name in parentheses (which may hold spaces).
            let ppid: Option<u32> = std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse()
                        .ok()
                });
            if let Some(pp) = ppid {
                parent_of.push((p, pp));
            }
        }
    }
    let mut total = 0;
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        total += std::fs::read_to_string(format!("/proc/{p}/status"))
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .unwrap_or(0);
        todo.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
    }
    total
}
