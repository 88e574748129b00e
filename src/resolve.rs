//! Name resolution off the workers: a couple of resolver threads run the blocking
//! `getaddrinfo` and post answers to the asking worker's inbox, waking its poll. Each worker
//! keeps a small cache of answers so that repeat hosts cost no round trip.

use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a worker reuses an answer (getaddrinfo gives no TTL).
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Names a worker remembers at most.
const CACHE_MAX: usize = 256;

/// Who asked, so that the answer finds its session (and a stale answer is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asker {
    pub worker: usize,
    pub slot: usize,
    pub generation: u32,
}

/// A resolver's answer.
#[derive(Debug)]
pub struct Answer {
    pub asker: Asker,
    pub host: String,
    pub result: Result<Vec<IpAddr>, String>,
}

struct Job {
    asker: Asker,
    host: String,
}

/// Where answers for one worker go.
pub trait Deliver: Send + Sync {
    fn deliver(&self, answer: Answer);
}

/// The handle workers use to ask for names.
#[derive(Clone)]
pub struct Resolver {
    jobs: Sender<Job>,
}

impl Resolver {
    /// Starts `threads` resolver threads answering into `outboxes[worker]`.
    pub fn start(threads: usize, outboxes: Vec<Arc<dyn Deliver>>) -> std::io::Result<Resolver> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let outboxes = Arc::new(outboxes);
        for i in 0..threads.max(1) {
            let rx: Receiver<Job> = rx.clone();
            let outboxes = outboxes.clone();
            std::thread::Builder::new()
                .name(format!("ferry-resolve-{i}"))
                .stack_size(128 * 1024)
                .spawn(move || {
                    for job in rx {
                        let result = lookup(&job.host);
                        if let Some(out) = outboxes.get(job.asker.worker) {
                            out.deliver(Answer {
                                asker: job.asker,
                                host: job.host,
                                result,
                            });
                        }
                    }
                })?;
        }
        Ok(Resolver { jobs: tx })
    }

    /// Asks for the addresses of `host`; the answer arrives in the worker's inbox.
    pub fn ask(&self, asker: Asker, host: &str) {
        let _ = self.jobs.send(Job {
            asker,
            host: host.to_string(),
        });
    }
}

/// Blocking lookup of `host` (A and AAAA, in the system's preferred order).
fn lookup(host: &str) -> Result<Vec<IpAddr>, String> {
    #[cfg(feature = "test-hooks")]
    if host.ends_with(".slow-dns.ferry.test") {
        std::thread::sleep(Duration::from_secs(4));
        return Err(format!("cannot resolve {host}: test-hooks: slow DNS"));
    }
    match (host, 0).to_socket_addrs() {
        Ok(addrs) => {
            let mut ips: Vec<IpAddr> = Vec::new();
            for a in addrs {
                if !ips.contains(&a.ip()) {
                    ips.push(a.ip());
                }
            }
            if ips.is_empty() {
                Err(format!("{host} has no addresses"))
            } else {
                Ok(ips)
            }
        }
        Err(e) => Err(format!("cannot resolve {host}: {e}")),
    }
}

/// A worker's memory of recent answers.
#[derive(Default)]
pub struct DnsCache {
    entries: HashMap<String, (Vec<IpAddr>, Instant)>,
}

impl DnsCache {
    /// The addresses of `host` with `port`, if known and fresh.
    pub fn get(&self, host: &str, port: u16, now: Instant) -> Option<Vec<SocketAddr>> {
        let (ips, at) = self.entries.get(host)?;
        (now.duration_since(*at) < CACHE_TTL)
            .then(|| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
    }

    pub fn put(&mut self, host: String, ips: Vec<IpAddr>, now: Instant) {
        if self.entries.len() >= CACHE_MAX {
            self.entries
                .retain(|_, (_, at)| now.duration_since(*at) < CACHE_TTL);
            if self.entries.len() >= CACHE_MAX {
                self.entries.clear();
            }
        }
        self.entries.insert(host, (ips, now));
    }
}

/// `host` as an IP literal (IPv6 without brackets), if it is one.
pub fn literal(host: &str, port: u16) -> Option<SocketAddr> {
    host.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_expires() {
        let mut c = DnsCache::default();
        let t0 = Instant::now();
        c.put("h".into(), vec!["127.0.0.1".parse().unwrap()], t0);
        assert_eq!(
            c.get("h", 80, t0).unwrap(),
            vec!["127.0.0.1:80".parse().unwrap()]
        );
        assert!(c.get("h", 80, t0 + CACHE_TTL).is_none());
        assert!(c.get("x", 80, t0).is_none());
    }

    #[test]
    fn literals() {
        assert_eq!(literal("::1", 8), Some("[::1]:8".parse().unwrap()));
        assert_eq!(literal("localhost", 8), None);
    }
}
