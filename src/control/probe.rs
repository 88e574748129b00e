//! Active health probes, run on the control thread with non-blocking sockets: many at once,
//! each with its own deadline, so a slow upstream never delays the others.
//!
//! Every `health_check.interval_secs`, each offline upstream (and, with `probe_online`, each
//! online one) is sent `GET <health_check.url>` as a proxy request, with its credentials. The
//! status `expect_status` is a success; anything else, a broken connection or `timeout_secs`
//! is a failure. `rise` successes bring an upstream online, `fall` failures take it offline.
//! The probe goes to the upstream proxy; ferry itself never connects to the probe URL's host.
//! An upstream given by name is looked up by the resolver threads, like the workers' names,
//! so a slow or dead DNS server never stalls this thread (signals, reloads, the admin API).

use crate::buffer::Buf;
use crate::config::{Config, HealthCheck, Probe as ConfigProbe, UpstreamSpec};
use crate::conn::{Conn, Io};
use crate::resolve::{Answer, Asker, Resolver};
use crate::shared::Shared;
use crate::upstream::UpstreamState;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Tokens below this are the control loop's own.
const FIRST_TOKEN: usize = 16;
/// How much of a probe's answer is read (the status line is all that matters).
const MAX_ANSWER: usize = 1024;

/// One upstream to probe, with its schedule.
struct Target {
    state: Arc<UpstreamState>,
    /// The upstream or server as configured (an `https://` server is probed over TLS).
    #[cfg(feature = "tls")]
    spec: UpstreamSpec,
    addr: (String, u16),
    auth: Option<String>,
    health: HealthCheck,
    next: Instant,
    running: bool,
    /// Waiting for the resolver's answer until then.
    resolving: Option<Instant>,
}

/// The control thread's way to the resolver threads.
pub struct Lookups {
    resolver: Resolver,
    /// This thread's index among the resolver's deliverers.
    me: usize,
    /// Bumped for every new `Prober`, so that an answer for an old config is ignored.
    generation: u32,
}

impl Lookups {
    pub fn new(resolver: Resolver, me: usize) -> Lookups {
        Lookups {
            resolver,
            me,
            generation: 0,
        }
    }
}

enum Step {
    Connecting,
    Writing(usize),
    Reading(Buf),
}

struct Probe {
    target: usize,
    /// Over TLS for an `https://` server (the handshake is part of the probe).
    conn: Conn,
    /// The upstream's other addresses, tried in turn while connects fail (last first).
    others: Vec<SocketAddr>,
    request: Vec<u8>,
    step: Step,
    deadline: Instant,
}

/// The probes of one config.
pub struct Prober {
    /// Its TLS settings make the TLS of `https://` probes.
    #[cfg(feature = "tls")]
    config: Arc<Config>,
    targets: Vec<Target>,
    probes: Vec<Option<Probe>>,
    shared: Arc<Shared>,
    resolver: Resolver,
    /// Who this prober is to the resolver: `slot` is the target.
    asker: Asker,
}

impl Prober {
    pub fn new(
        config: Arc<Config>,
        shared: Arc<Shared>,
        lookups: &mut Lookups,
        now: Instant,
    ) -> Prober {
        lookups.generation = lookups.generation.wrapping_add(1);
        let generation = lookups.generation;
        let mut targets: Vec<Target> = Vec::new();
        for pool in &config.pools {
            for m in &pool.members {
                // An upstream listed in two pools is probed once, by the first pool's rules.
                if targets.iter().any(|t| Arc::ptr_eq(&t.state, &m.state)) {
                    continue;
                }
                targets.push(target(m, &pool.health, now));
            }
        }
        for b in config.reverse.iter().flat_map(|r| &r.backends) {
            if b.pool.health.probe == ConfigProbe::Passive {
                continue;
            }
            for m in &b.pool.members {
                targets.push(target(m, &b.pool.health, now));
            }
        }
        Prober {
            #[cfg(feature = "tls")]
            config,
            targets,
            probes: Vec::new(),
            shared,
            resolver: lookups.resolver.clone(),
            asker: Asker {
                worker: lookups.me,
                slot: 0,
                generation,
            },
        }
    }

    /// Abandons the probes in flight (the config changed).
    pub fn shutdown(&mut self, registry: &Registry) {
        for p in self.probes.iter_mut() {
            if let Some(mut p) = p.take() {
                let _ = registry.deregister(&mut p.conn.stream);
            }
        }
    }

    /// When the loop must wake next: the earliest schedule or probe deadline.
    pub fn next_wake(&self) -> Option<Instant> {
        let due = self.targets.iter().filter(|t| !t.running).map(|t| t.next);
        let lookups = self.targets.iter().filter_map(|t| t.resolving);
        let deadlines = self.probes.iter().flatten().map(|p| p.deadline);
        due.chain(lookups).chain(deadlines).min()
    }

    /// Starts the probes that are due and ends those past their deadline.
    pub fn tick(&mut self, registry: &Registry, now: Instant) {
        for i in 0..self.probes.len() {
            if self.probes[i].as_ref().is_some_and(|p| now >= p.deadline) {
                self.finish(i, registry, false, "timed out");
            }
        }
        for t in 0..self.targets.len() {
            let target = &mut self.targets[t];
            if target.resolving.is_some_and(|until| now >= until) {
                target.resolving = None;
                target.running = false;
                let why = format!("cannot resolve {}: no answer in time", target.addr.0);
                self.record(t, false, &why);
            }
        }
        for t in 0..self.targets.len() {
            let target = &mut self.targets[t];
            if target.running || now < target.next {
                continue;
            }
            target.next = now + target.health.interval;
            if target.state.is_online() && !target.health.probe_online {
                continue;
            }
            self.start(t, registry, now);
        }
    }

    /// Probes the upstream whose state is `state` now, unless a probe of it is under way: a
    /// request through it timed out (DESIGN §3). It counts like any probe, so an upstream
    /// that accepts connections but answers nothing goes offline after `fall` of them.
    pub fn probe_now(&mut self, state: &Arc<UpstreamState>, registry: &Registry, now: Instant) {
        let Some(t) = self
            .targets
            .iter()
            .position(|t| Arc::ptr_eq(&t.state, state))
        else {
            return; // not in this config any more
        };
        if self.targets[t].running {
            return;
        }
        log::debug!("probe of {}: a request through it timed out", state.name);
        self.targets[t].next = now + self.targets[t].health.interval;
        self.start(t, registry, now);
    }

    /// A probe socket is ready.
    pub fn ready(&mut self, token: Token, registry: &Registry) {
        let Some(i) = token.0.checked_sub(FIRST_TOKEN) else {
            return;
        };
        let Some(Some(p)) = self.probes.get_mut(i) else {
            return;
        };
        p.conn.readable = true;
        p.conn.writable = true;
        if !matches!(p.step, Step::Connecting) {
            p.conn.progress();
        }
        match advance(p) {
            Ok(None) => {}
            Ok(Some(status)) => {
                let h = &self.targets[p.target].health;
                let (lo, hi) = h.expect;
                let ok = (lo..=hi).contains(&status);
                let why = match lo == hi {
                    true => format!("probe answered {status}, not {lo}"),
                    false => format!("probe answered {status}, not {lo}-{hi}"),
                };
                self.finish(i, registry, ok, &why);
            }
            Err(why) => {
                if !self.next_address(i, registry) {
                    self.finish(i, registry, false, &why);
                }
            }
        }
    }

    /// A probe failed: if it was still connecting and the upstream has another address
    /// (a name with A and AAAA records, say), the probe goes on with that one.
    fn next_address(&mut self, i: usize, registry: &Registry) -> bool {
        let Some(Some(p)) = self.probes.get_mut(i) else {
            return false;
        };
        if !matches!(p.step, Step::Connecting) {
            return false;
        }
        match open(&mut p.others, registry, Token(FIRST_TOKEN + i)) {
            Ok(stream) => {
                let _ = registry.deregister(&mut p.conn.stream);
                p.conn.stream = stream;
                true
            }
            Err(_) => false,
        }
    }

    fn start(&mut self, t: usize, registry: &Registry, now: Instant) {
        let target = &mut self.targets[t];
        let (host, port) = &target.addr;
        if let Some(addr) = crate::resolve::literal(host, *port) {
            return self.connect(t, vec![addr], registry, now);
        }
        log::debug!("probe of {}: looking up {host}", target.state.name);
        target.running = true;
        target.resolving = Some(now + target.health.timeout);
        let asker = Asker {
            slot: t,
            ..self.asker
        };
        self.resolver.ask(asker, host, now + target.health.timeout);
    }

    /// The resolver's answer for a target's look-up.
    pub fn resolved(&mut self, answer: Answer, registry: &Registry, now: Instant) {
        let a = answer.asker;
        if a.worker != self.asker.worker || a.generation != self.asker.generation {
            return;
        }
        let Some(target) = self.targets.get_mut(a.slot) else {
            return;
        };
        if target.resolving.take().is_none() {
            return; // it timed out already
        }
        target.running = false;
        match answer.result {
            Ok(ips) => {
                let port = target.addr.1;
                let addrs = ips
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, port))
                    .collect();
                self.connect(a.slot, addrs, registry, now);
            }
            Err(why) => self.record(a.slot, false, &why),
        }
    }

    /// Starts the probe of target `t` on the first of `addrs` that takes a connect.
    fn connect(&mut self, t: usize, mut addrs: Vec<SocketAddr>, registry: &Registry, now: Instant) {
        addrs.reverse();
        let slot = self
            .probes
            .iter()
            .position(Option::is_none)
            .unwrap_or_else(|| {
                self.probes.push(None);
                self.probes.len() - 1
            });
        let stream = match open(&mut addrs, registry, Token(FIRST_TOKEN + slot)) {
            Ok(s) => s,
            Err(why) => return self.record(t, false, &why),
        };
        let target = &self.targets[t];
        #[cfg(feature = "tls")]
        let tls = match crate::tls::client_conn(&self.config, &target.spec) {
            Ok(tls) => tls,
            Err(why) => return self.record(t, false, &why),
        };
        #[cfg(not(feature = "tls"))]
        let tls = None;
        let h = &target.health;
        let mut request = match &h.probe {
            ConfigProbe::Through { url, host } => {
                format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n").into_bytes()
            }
            ConfigProbe::Get { path } => {
                let (host, port) = &target.addr;
                match host.contains(':') {
                    true => format!("GET {path} HTTP/1.1\r\nHost: [{host}]:{port}\r\n"),
                    false => format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"),
                }
                .into_bytes()
            }
            // Never a target (see `Prober::new`).
            ConfigProbe::Passive => Vec::new(),
        };
        if let Some(auth) = &target.auth {
            request.extend_from_slice(format!("Proxy-Authorization: {auth}\r\n").as_bytes());
        }
        if !request.is_empty() {
            request.extend_from_slice(b"User-Agent: ferry-probe\r\nConnection: close\r\n\r\n");
        }
        self.probes[slot] = Some(Probe {
            target: t,
            conn: Conn::with_tls(stream, tls),
            others: addrs,
            request,
            step: Step::Connecting,
            deadline: now + h.timeout,
        });
        self.targets[t].running = true;
    }

    fn finish(&mut self, i: usize, registry: &Registry, ok: bool, why: &str) {
        if let Some(mut p) = self.probes[i].take() {
            let _ = registry.deregister(&mut p.conn.stream);
            self.targets[p.target].running = false;
            self.record(p.target, ok, why);
        }
    }

    fn record(&self, t: usize, ok: bool, why: &str) {
        let target = &self.targets[t];
        log::debug!(
            "probe of {}: {}",
            target.state.name,
            if ok { "ok" } else { why }
        );
        let stats = &self.shared.stats;
        stats.health_checks.fetch_add(1, Ordering::Relaxed);
        if ok {
            stats.health_checks_ok.fetch_add(1, Ordering::Relaxed);
        }
        target
            .state
            .probe_result(ok, target.health.rise, target.health.fall, why);
    }
}

fn target(m: &UpstreamSpec, health: &HealthCheck, now: Instant) -> Target {
    Target {
        state: m.state.clone(),
        #[cfg(feature = "tls")]
        spec: m.clone(),
        addr: (m.host.clone(), m.port),
        auth: m.auth.clone(),
        health: health.clone(),
        // The first round comes one interval after start: new upstreams start online.
        next: now + health.interval,
        running: false,
        resolving: None,
    }
}

/// Connects to the last of `addrs` that takes a connect (each tried is removed) and watches
/// the stream with `token`; the last error if none does.
fn open(
    addrs: &mut Vec<SocketAddr>,
    registry: &Registry,
    token: Token,
) -> Result<TcpStream, String> {
    let mut why = "no address to connect to".to_string();
    while let Some(addr) = addrs.pop() {
        match TcpStream::connect(addr) {
            Ok(mut s) => {
                match registry.register(&mut s, token, Interest::READABLE | Interest::WRITABLE) {
                    Ok(()) => return Ok(s),
                    Err(e) => why = format!("cannot watch the probe connection: {e}"),
                }
            }
            Err(e) => why = format!("connect: {e}"),
        }
    }
    Err(why)
}

/// Moves a probe on as far as the socket allows; `Ok(Some(status))` when the status line is in.
fn advance(p: &mut Probe) -> Result<Option<u16>, String> {
    loop {
        match &mut p.step {
            Step::Connecting => {
                if let Ok(Some(e)) | Err(e) = p.conn.stream.take_error() {
                    return Err(format!("connect: {e}"));
                }
                match p.conn.stream.peer_addr() {
                    Ok(_) => p.step = Step::Writing(0),
                    Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return Ok(None),
                    Err(e) => return Err(format!("connect: {e}")),
                }
            }
            Step::Writing(off) => match p.conn.write_slice(&p.request[*off..]) {
                (n, Io::Continue) => {
                    *off += n;
                    if *off == p.request.len() {
                        p.step = Step::Reading(Buf::with_capacity(MAX_ANSWER));
                    }
                }
                (n, Io::WouldBlock) => {
                    *off += n;
                    return Ok(None);
                }
                (_, _) if p.conn.tls_handshake_failed() => {
                    return Err("TLS handshake failed".into())
                }
                (_, io) => return Err(format!("send: {io:?}")),
            },
            Step::Reading(buf) => {
                let (_, io) = p.conn.read_into(buf);
                if let Some(s) = status_of(buf.bytes()) {
                    return Ok(Some(s));
                }
                match io {
                    Io::Closed => return Err("closed before answering".to_string()),
                    Io::WouldBlock => return Ok(None),
                    Io::Error(_) if p.conn.tls_handshake_failed() => {
                        return Err("TLS handshake failed".into())
                    }
                    Io::Error(k) => return Err(format!("receive: {k:?}")),
                    Io::Continue if buf.spare().is_empty() => return Err("no status line".into()),
                    Io::Continue => {}
                }
            }
        }
    }
}

/// The status code of a complete `HTTP/1.x NNN ...` line at the start of `buf`.
fn status_of(buf: &[u8]) -> Option<u16> {
    let line_end = buf.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&buf[..line_end]).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return Some(0);
    }
    Some(parts.next()?.trim().parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_of(b"HTTP/1.0 503 x\r\n"), Some(503));
        assert_eq!(status_of(b"HTTP/1.1 204"), None);
        assert_eq!(status_of(b"SSH-2.0-x\r\n"), Some(0));
    }
}
