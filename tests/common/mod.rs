//! Test fixtures: the real ferry binary started on port 0, scripted fake origins and fake
//! upstream proxies that tag every reply (`X-Served-By: <tag>`) and record what reached them,
//! and a small HTTP/1.1 client that works at the byte level.
#![allow(dead_code)]

pub mod backend;
pub mod json;
pub mod prom;
pub mod raw;
pub mod tls;
pub mod wire;

pub use backend::Backend;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
pub use wire::Wire;

/// How long any single wait in a test may take before it fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The ferry binary under test, as a command. With `FERRY_TEST_RUNNER` set (for example to
/// `qemu-mips-static`) it runs under that emulator: `.ci/run` runs the whole suite so for a
/// 32-bit big-endian MIPS build.
pub fn ferry_command() -> Command {
    let mut argv = ferry_argv().into_iter();
    let mut cmd = Command::new(argv.next().unwrap());
    cmd.args(argv);
    cmd
}

/// Whether ferry runs under an emulator (`FERRY_TEST_RUNNER`): fine for behaviour, useless
/// for the few tests whose premise is that loopback requests take about a millisecond.
pub fn emulated() -> bool {
    std::env::var_os("FERRY_TEST_RUNNER").is_some()
}

fn ferry_argv() -> Vec<std::ffi::OsString> {
    let bin = env!("CARGO_BIN_EXE_ferry").into();
    match std::env::var_os("FERRY_TEST_RUNNER") {
        Some(runner) => vec![runner, bin],
        None => vec![bin],
    }
}

/// A fresh scratch directory for one test.
pub fn scratch_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ferry-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The deterministic body served by `/size/N`.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 9)) as u8)
        .collect()
}

/// Polls `f` until it is true or the timeout passes.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + TIMEOUT;
    while Instant::now() < end {
        if f() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// A test config that names no upstream and no `on_all_down` is a direct proxy, as the
/// embedded default is: it gets `on_all_down: direct` (ferry's empty pool would answer 502).
/// A config that mentions `upstream` or `on_all_down` anywhere is left as written, so every
/// test of pools and of failing closed says what it means (`upstream: []` for an empty pool).
fn direct_unless_pooled(yaml: &str) -> &'static str {
    if yaml.contains("upstream") || yaml.contains("on_all_down") {
        ""
    } else {
        "on_all_down: direct\n"
    }
}

/// Makes the process `cmd` starts begin with its open-files limit (soft and hard) at `n`, so
/// that ferry cannot raise it.
#[cfg(target_os = "linux")]
fn limit_fds(cmd: &mut Command, n: u32) {
    use std::os::unix::process::CommandExt;
    let lim = libc::rlimit {
        rlim_cur: libc::rlim_t::from(n),
        rlim_max: libc::rlim_t::from(n),
    };
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: setrlimit(2) is a plain syscall, `lim` was copied in beforehand and
    // `last_os_error` only reads errno; nothing allocates or takes a lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Elsewhere the tests set no limit; the tests that need one are Linux-only.
#[cfg(not(target_os = "linux"))]
fn limit_fds(_cmd: &mut Command, _n: u32) {
    panic!("these tests set an open-files limit on Linux only");
}

/// A running ferry process.
pub struct Ferry {
    pub child: Child,
    /// Where a test's client connects: the forward listener, or in a process without one the
    /// first reverse listener.
    pub addr: SocketAddr,
    /// The reverse-proxy listeners (empty without `reverse:`).
    pub reverse: Vec<SocketAddr>,
    /// The reverse proxy's TLS listeners (`reverse.tls_listen`).
    pub reverse_tls: Vec<SocketAddr>,
    /// The forward proxy's TLS listener (top-level `tls_listen`).
    pub forward_tls: Option<SocketAddr>,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub dir: PathBuf,
    workers: usize,
}

/// Which server a "listening on ADDR" log line announces.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Listener {
    Forward,
    ForwardTls,
    Reverse,
    ReverseTls,
    Admin,
}

impl Listener {
    /// The listener and its address a log line announces, if it announces one. A TLS
    /// listener's line says so before "listening on": `reverse proxy TLS listening on ADDR`,
    /// `HTTPS proxy listening on ADDR`.
    fn announced(line: &str) -> Option<(Listener, SocketAddr)> {
        let (before, after) = line.split_once("listening on ")?;
        let addr = after.split_whitespace().next()?;
        let addr = addr.trim_end_matches(|c: char| !c.is_ascii_digit());
        let lower = line.to_ascii_lowercase();
        let tls = before
            .to_ascii_lowercase()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| word == "tls" || word == "https");
        let kind = match (before.contains("admin"), lower.contains("reverse"), tls) {
            (true, _, _) => Listener::Admin,
            (false, true, false) => Listener::Reverse,
            (false, true, true) => Listener::ReverseTls,
            (false, false, false) => Listener::Forward,
            (false, false, true) => Listener::ForwardTls,
        };
        Some((kind, addr.parse().ok()?))
    }
}

impl Ferry {
    /// Starts ferry with `yaml` (which must not set `listen`; it listens on 127.0.0.1:0).
    pub fn start(yaml: &str) -> Ferry {
        Ferry::start_with(2, yaml)
    }

    /// Starts ferry with `workers` worker threads.
    pub fn start_with(workers: usize, yaml: &str) -> Ferry {
        Ferry::spawn(workers, yaml, None)
    }

    /// Starts ferry with its open-files limit (soft and hard) set to `nofile`.
    pub fn start_with_fd_limit(yaml: &str, nofile: u32) -> Ferry {
        Ferry::spawn(2, yaml, Some(nofile))
    }

    /// Starts ferry with tunnels forced onto the copy path (test-hooks builds only).
    pub fn start_without_splice(yaml: &str) -> Ferry {
        Ferry::spawn_with(2, yaml, None, true)
    }

    /// Starts ferry with `FERRY_LOG` set to `log`, or unset (`None`) so that the config's
    /// `log_level` rules.
    pub fn start_with_log_env(yaml: &str, log: Option<&str>) -> Ferry {
        Ferry::spawn_full(2, yaml, None, false, log)
    }

    fn spawn(workers: usize, yaml: &str, nofile: Option<u32>) -> Ferry {
        Ferry::spawn_with(workers, yaml, nofile, false)
    }

    fn spawn_with(workers: usize, yaml: &str, nofile: Option<u32>, no_splice: bool) -> Ferry {
        Ferry::spawn_full(workers, yaml, nofile, no_splice, Some("debug"))
    }

    fn spawn_full(
        workers: usize,
        yaml: &str,
        nofile: Option<u32>,
        no_splice: bool,
        log: Option<&str>,
    ) -> Ferry {
        let text = format!(
            "listen: \"127.0.0.1:0\"\nworkers: {workers}\n{}{yaml}",
            direct_unless_pooled(yaml)
        );
        Ferry::launch(workers, &text, nofile, no_splice, log)
    }

    /// Starts ferry as a reverse proxy (2 workers): see `backend::reverse_yaml` for what
    /// `yaml` may say. With a top-level `listen:` the process is a forward proxy too.
    pub fn start_reverse(backends: &[&Backend], yaml: &str) -> Ferry {
        Ferry::start_reverse_with(2, backends, yaml)
    }

    /// Starts ferry as a reverse proxy with `workers` worker threads.
    pub fn start_reverse_with(workers: usize, backends: &[&Backend], yaml: &str) -> Ferry {
        let text = format!(
            "workers: {workers}\n{}",
            backend::reverse_yaml(yaml, backends)
        );
        Ferry::launch(workers, &text, None, false, Some("debug"))
    }

    /// Writes `text` as the config file, starts ferry on it and waits until every listener
    /// the config opens (forward, reverse) has been announced in the log.
    fn launch(
        workers: usize,
        text: &str,
        nofile: Option<u32>,
        no_splice: bool,
        log: Option<&str>,
    ) -> Ferry {
        Ferry::launch_in(scratch_dir(), workers, text, nofile, no_splice, log)
    }

    /// Stops ferry and starts it again on its config file as it is now (a config the
    /// control API wrote back, say), in the same directory.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(self.dir.join("ferry.yaml")).unwrap();
        let mut again = Ferry::launch_in(
            self.dir.clone(),
            self.workers,
            &text,
            None,
            false,
            Some("debug"),
        );
        std::mem::swap(self, &mut again);
        // The stopped one must not take the directory with it when dropped.
        again.dir = scratch_dir();
    }

    /// `launch` with the config file in `dir` (written with `text`).
    fn launch_in(
        dir: PathBuf,
        workers: usize,
        text: &str,
        nofile: Option<u32>,
        no_splice: bool,
        log: Option<&str>,
    ) -> Ferry {
        let path = dir.join("ferry.yaml");
        std::fs::write(&path, text).unwrap();
        let wants_forward = text.lines().any(|l| l.starts_with("listen:"));
        let wants_reverse = text.lines().any(|l| l.starts_with("reverse:"));
        let wants_forward_tls = text.lines().any(|l| l.starts_with("tls_listen:"));
        let wants_reverse_tls = text.lines().any(|l| l.starts_with("  tls_listen:"));
        let mut cmd = ferry_command();
        if let Some(n) = nofile {
            limit_fds(&mut cmd, n);
        }
        match log {
            Some(level) => cmd.env("FERRY_LOG", level),
            None => cmd.env_remove("FERRY_LOG"),
        };
        let mut child = cmd
            .arg("--config")
            .arg(&path)
            .env(
                if no_splice {
                    "FERRY_TEST_NO_SPLICE"
                } else {
                    "FERRY_TEST_SPLICE"
                },
                "1",
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ferry starts");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let l2 = logs.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(announced) = Listener::announced(&line) {
                    let _ = tx.send(announced);
                }
                l2.lock().unwrap().push(line);
            }
        });
        let (mut forward, mut reverse) = (None, Vec::new());
        let (mut forward_tls, mut reverse_tls) = (None, Vec::new());
        let end = Instant::now() + TIMEOUT;
        while (wants_forward && forward.is_none())
            || (wants_reverse && reverse.is_empty())
            || (wants_forward_tls && forward_tls.is_none())
            || (wants_reverse_tls && reverse_tls.is_empty())
        {
            let left = end.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((Listener::Forward, a)) => forward = forward.or(Some(a)),
                Ok((Listener::ForwardTls, a)) => forward_tls = forward_tls.or(Some(a)),
                Ok((Listener::Reverse, a)) => reverse.push(a),
                Ok((Listener::ReverseTls, a)) => reverse_tls.push(a),
                Ok((Listener::Admin, _)) => {}
                Err(_) => {
                    let _ = child.kill();
                    panic!("ferry did not start: {:?}", logs.lock().unwrap());
                }
            }
        }
        // Further reverse listeners are announced together with the first one.
        while let Ok((kind, a)) = rx.recv_timeout(Duration::from_millis(50)) {
            let list = match kind {
                Listener::Reverse => &mut reverse,
                Listener::ReverseTls => &mut reverse_tls,
                _ => continue,
            };
            if !list.contains(&a) {
                list.push(a);
            }
        }
        Ferry {
            child,
            addr: forward
                .or(reverse.first().copied())
                .or(reverse_tls.first().copied())
                .unwrap(),
            reverse,
            reverse_tls,
            forward_tls,
            logs,
            dir,
            workers,
        }
    }

    /// A new raw client connection to the first reverse listener.
    pub fn reverse_client(&self) -> Wire {
        Wire::connect(self.reverse[0])
    }

    /// A new raw client connection to ferry.
    pub fn client(&self) -> Wire {
        Wire::connect(self.addr)
    }

    /// The admin server's address (the config must set `admin_listen: 127.0.0.1:0`).
    pub fn admin(&self) -> SocketAddr {
        let mut addr = None;
        wait_until("the admin listening line", || {
            addr = self.logs.lock().unwrap().iter().find_map(|l| {
                l.split("admin listening on ")
                    .nth(1)
                    .map(|a| a.trim().to_string())
            });
            addr.is_some()
        });
        addr.unwrap().parse().unwrap()
    }

    /// One admin request (`GET /path` etc.) on a fresh connection, with extra head lines.
    pub fn admin_get(&self, method: &str, path: &str, extra: &str) -> wire::Response {
        let mut w = Wire::connect(self.admin());
        w.send(format!("{method} {path} HTTP/1.1\r\nHost: admin\r\n{extra}\r\n").as_bytes());
        w.response_to(method == "HEAD")
    }

    /// The value of one un-labelled metric, or one labelled sample given as `name{...}`.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        let text = self.admin_get("GET", "/metrics", "").text();
        text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|v| v.strip_prefix(' '))
                .map(|v| v.parse().unwrap())
        })
    }

    /// Replaces the config file (keeping `listen: 127.0.0.1:0` and the worker count unless
    /// `yaml` says otherwise) and sends SIGHUP; waits until ferry has logged the outcome.
    pub fn reload(&self, yaml: &str) -> bool {
        let sets = |key: &str| yaml.lines().any(|l| l.starts_with(key));
        let workers = if sets("workers:") {
            String::new()
        } else {
            "workers: 2\n".into()
        };
        let listen = if sets("listen:") {
            String::new()
        } else {
            "listen: \"127.0.0.1:0\"\n".into()
        };
        self.reload_text(&format!(
            "{listen}{workers}{}{yaml}",
            direct_unless_pooled(yaml)
        ))
    }

    /// Replaces the config of a ferry started with `start_reverse` (the YAML as there, the same
    /// worker count) and sends SIGHUP; waits until ferry has logged the outcome.
    pub fn reload_reverse(&self, backends: &[&Backend], yaml: &str) -> bool {
        self.reload_text(&format!(
            "workers: {}\n{}",
            self.workers,
            backend::reverse_yaml(yaml, backends)
        ))
    }

    /// Writes `text` as the config file, sends SIGHUP and waits for the outcome.
    fn reload_text(&self, text: &str) -> bool {
        std::fs::write(self.dir.join("ferry.yaml"), text).unwrap();
        let count = |s: &str| {
            self.logs
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(s))
                .count()
        };
        let (ok0, bad0) = (count("config reloaded"), count("the running config stays"));
        self.signal(1);
        let mut ok = false;
        wait_until("the reload outcome", || {
            ok = count("config reloaded") > ok0;
            ok || count("the running config stays") > bad0
        });
        if !ok {
            eprintln!("reload refused; ferry's log:\n{}", self.log_text());
        }
        ok
    }

    /// The ferry process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// All log lines so far, joined.
    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Sends a signal to the ferry process.
    #[cfg(target_os = "linux")]
    pub fn signal(&self, sig: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) takes plain integers; the PID is that of the child this test started
        // and has not reaped yet (Drop waits), so it names no other process.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Sends a signal to the ferry process (kill(1) where the test does not call kill(2)).
    #[cfg(not(target_os = "linux"))]
    pub fn signal(&self, sig: i32) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Waits for exit and returns the exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let end = Instant::now() + TIMEOUT;
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("ferry did not exit");
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a fake server plays.
#[derive(Clone)]
enum Role {
    Origin,
    /// An HTTP proxy that serves absolute-form requests itself and relays CONNECT; with
    /// `auth`, only clients sending exactly that `Proxy-Authorization` are served.
    Proxy {
        auth: Option<String>,
    },
}

/// Switches a test flips while a fake runs.
#[derive(Default)]
pub struct Knobs {
    /// Plays dead: every connection is closed at once, unanswered.
    pub down: AtomicBool,
    /// The status a health probe (`GET .../generate_204`) gets; 0 means 204.
    pub probe_status: AtomicU16,
    /// The status a CONNECT gets instead of a tunnel; 0 means a tunnel.
    pub connect_status: AtomicU16,
    /// Milliseconds to wait before answering any request (not probes).
    pub delay_ms: AtomicU32,
}

/// A scripted origin or upstream proxy on 127.0.0.1 that tags its replies.
pub struct Fake {
    pub addr: SocketAddr,
    pub tag: String,
    /// Every request head received, in order.
    pub heads: Arc<Mutex<Vec<String>>>,
    /// Connections accepted.
    pub conns: Arc<AtomicUsize>,
    pub knobs: Arc<Knobs>,
}

impl Fake {
    pub fn origin(tag: &str) -> Fake {
        Fake::start(tag, Role::Origin)
    }

    pub fn proxy(tag: &str, auth: Option<&str>) -> Fake {
        Fake::start(
            tag,
            Role::Proxy {
                auth: auth.map(String::from),
            },
        )
    }

    fn start(tag: &str, role: Role) -> Fake {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let conns = Arc::new(AtomicUsize::new(0));
        let knobs = Arc::new(Knobs::default());
        let (h, c, t, k) = (heads.clone(), conns.clone(), tag.to_string(), knobs.clone());
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                if k.down.load(Ordering::SeqCst) {
                    drop(s);
                    continue;
                }
                let (h, t, role, k) = (h.clone(), t.clone(), role.clone(), k.clone());
                thread::spawn(move || serve(s, &t, &role, &h, &k));
            }
        });
        Fake {
            addr,
            tag: tag.to_string(),
            heads,
            conns,
            knobs,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// Request heads received that were not health probes.
    pub fn requests(&self) -> usize {
        self.heads()
            .iter()
            .filter(|h| !h.contains("generate_204"))
            .count()
    }

    /// Health probes received.
    pub fn probes(&self) -> Vec<String> {
        self.heads()
            .into_iter()
            .filter(|h| h.contains("generate_204"))
            .collect()
    }

    /// Makes the fake play dead (true) or come back (false).
    pub fn set_down(&self, down: bool) {
        self.knobs.down.store(down, Ordering::SeqCst);
    }
}

fn serve(s: TcpStream, tag: &str, role: &Role, heads: &Mutex<Vec<String>>, knobs: &Knobs) {
    let _ = s.set_read_timeout(Some(TIMEOUT));
    let mut w = Wire::from_stream(s);
    let mut served = 0;
    loop {
        let Some(head) = w.read_head() else { return };
        let text = String::from_utf8_lossy(&head).into_owned();
        heads.lock().unwrap().push(text.clone());
        if knobs.down.load(Ordering::SeqCst) {
            return;
        }
        let req = wire::parse_request(&head);
        served += 1;
        if served > 1 && req.header("x-die-on-reuse").is_some() {
            // Plays an upstream that dropped an idle connection just as it was reused.
            return;
        }
        if let Role::Proxy { auth: Some(want) } = role {
            if req.header("proxy-authorization") != Some(want.as_str()) {
                let _ = w.stream.write_all(
                    format!("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"{tag}\"\r\nX-Served-By: {tag}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                );
                continue;
            }
        }
        if req.method == "CONNECT" {
            if let Role::Proxy { .. } = role {
                let status = knobs.connect_status.load(Ordering::SeqCst);
                if status != 0 {
                    let _ = w.stream.write_all(
                        format!("HTTP/1.1 {status} Refused\r\nX-Served-By: {tag}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                    );
                    continue;
                }
                return relay_connect(w, &req.target, tag);
            }
        }
        if req.target.ends_with("/generate_204") {
            let status = match knobs.probe_status.load(Ordering::SeqCst) {
                0 => 204,
                s => s,
            };
            let body = if status == 204 { "" } else { "probe" };
            let _ = w.stream.write_all(
                format!("HTTP/1.1 {status} Probe\r\nX-Served-By: {tag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes(),
            );
            return;
        }
        let delay = knobs.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            thread::sleep(Duration::from_millis(delay as u64));
        }
        let path = match role {
            Role::Proxy { .. } => req
                .target
                .splitn(4, '/')
                .nth(3)
                .map(|p| format!("/{p}"))
                .unwrap_or_else(|| "/".into()),
            Role::Origin => req.target.clone(),
        };
        if !respond(&mut w, &req, &path, tag) {
            return;
        }
    }
}

/// Answers one request by its path; false when the connection must end.
fn respond(w: &mut Wire, req: &wire::Request, path: &str, tag: &str) -> bool {
    let path = path.split('?').next().unwrap_or("");
    let close = req
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        || req.minor == 0;
    if path == "/continue"
        && req
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        let _ = w.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let body = w.read_body(req);
    if path == "/drop" {
        // Took the whole request, then hangs up without a word.
        return false;
    }
    let head_only = req.method == "HEAD";
    let mut extra = String::new();
    let (status, payload): (u16, Vec<u8>) = if let Some(n) = path.strip_prefix("/size/") {
        (200, pattern(n.parse().unwrap()))
    } else if let Some(n) = path.strip_prefix("/status/") {
        let code: u16 = n.parse().unwrap();
        (code, format!("status {code}").into_bytes())
    } else if let Some(ms) = path.strip_prefix("/sleep/") {
        thread::sleep(Duration::from_millis(ms.parse().unwrap()));
        (200, b"slept".to_vec())
    } else if path == "/echo" || path == "/continue" {
        extra = format!("X-Method: {}\r\n", req.method);
        (200, body)
    } else if path == "/headers" {
        (200, req.raw.clone())
    } else if path == "/chunked" {
        let _ = w.stream.write_all(
            format!("HTTP/1.1 200 OK\r\nX-Served-By: {tag}\r\nTransfer-Encoding: chunked\r\n\r\n11;ext=1\r\nhello 0\r\n\r\n world\r\n5\r\n0\r\n\r\n\r\n3\r\nend\r\n0\r\nX-Trailer: t\r\n\r\n").as_bytes(),
        );
        return !close;
    } else if path == "/malformed" {
        let _ = w
            .stream
            .write_all(b"HTTP/1.1 200 OK\r\nBad Header Line\r\nContent-Length: 0\r\n\r\n");
        return false;
    } else if path == "/close" {
        let _ = w.stream.write_all(
            format!("HTTP/1.1 200 OK\r\nX-Served-By: {tag}\r\n\r\nuntil close").as_bytes(),
        );
        return false;
    } else if path == "/ws" {
        let _ = w.stream.write_all(
            format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Served-By: {tag}\r\n\r\n").as_bytes(),
        );
        // Echo upper-cased until EOF, then close.
        let mut buf = [0u8; 4096];
        let pending = w.take_buffered();
        let _ = w.stream.write_all(&pending.to_ascii_uppercase());
        loop {
            match w.stream.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => {
                    let _ = w.stream.write_all(&buf[..n].to_ascii_uppercase());
                }
            }
        }
    } else {
        (404, b"no such path".to_vec())
    };
    let no_body = status == 204 || status == 304 || (100..200).contains(&status);
    let mut out = format!("HTTP/1.1 {status} Fake\r\nX-Served-By: {tag}\r\n{extra}");
    if status == 304 {
        // A 304 may carry the length of the representation it stands for; no body follows.
        out.push_str("Content-Length: 100\r\n");
    } else if !no_body {
        out.push_str(&format!("Content-Length: {}\r\n", payload.len()));
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !no_body && !head_only {
        bytes.extend_from_slice(&payload);
    }
    if w.stream.write_all(&bytes).is_err() {
        return false;
    }
    !close
}

fn relay_connect(mut w: Wire, target: &str, tag: &str) {
    let Ok(up) = TcpStream::connect(target) else {
        let _ = w.stream.write_all(
            format!("HTTP/1.1 502 Bad Gateway\r\nX-Served-By: {tag}\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        return;
    };
    let _ = w.stream.write_all(
        format!("HTTP/1.1 200 Connection established\r\nX-Served-By: {tag}\r\n\r\n").as_bytes(),
    );
    let pending = w.take_buffered();
    pipe_both(w.stream, up, pending);
}

/// Relays bytes both ways, passing each EOF on as a half-close.
pub fn pipe_both(a: TcpStream, b: TcpStream, a_to_b_first: Vec<u8>) {
    let _ = a.set_read_timeout(None);
    let (mut a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let t = thread::spawn(move || {
        let mut b1 = b2.try_clone().unwrap();
        let _ = b1.write_all(&a_to_b_first);
        let _ = std::io::copy(&mut a2, &mut b1);
        let _ = b2.shutdown(Shutdown::Write);
    });
    let (mut a3, mut b3) = (a, b);
    let _ = std::io::copy(&mut b3, &mut a3);
    let _ = a3.shutdown(Shutdown::Write);
    let _ = t.join();
}

/// A raw TCP server that speaks first (`banner`), then echoes what it gets, upper-cased.
pub fn banner_server(banner: &'static [u8]) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                let _ = s.write_all(banner);
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = s.write_all(b"<eof>");
                            let _ = s.shutdown(Shutdown::Write);
                            return;
                        }
                        Ok(n) => {
                            let _ = s.write_all(&buf[..n].to_ascii_uppercase());
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A TCP port on 127.0.0.1 with nothing listening (bound, then released).
pub fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}
