//! Name resolution off the workers: a couple of resolver threads run the blocking
//! `getaddrinfo` and post answers to the asking worker's inbox, waking its poll. Each worker
//! keeps a small cache of answers (failures too, briefly) so that repeat hosts cost no round
//! trip, and asks once for a name however many of its sessions wait for it. A job that waited
//! in the queue past its asker's deadline is answered without a look-up: the threads are few,
//! and a burst of slow names must not keep them busy for sessions that gave up long ago.

use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a worker reuses an answer (getaddrinfo gives no TTL).
const CACHE_TTL: Duration = Duration::from_secs(30);
/// How long a worker remembers that a name could not be resolved.
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
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
    /// Not looked up: the job waited past its deadline (says nothing about the name).
    pub abandoned: bool,
}

struct Job {
    asker: Asker,
    host: String,
    deadline: Instant,
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
                        let abandoned = Instant::now() >= job.deadline;
                        let result = if abandoned {
                            Err(format!("{}: no resolver thread was free in time", job.host))
                        } else {
                            lookup(&job.host)
                        };
                        if let Some(out) = outboxes.get(job.asker.worker) {
                            out.deliver(Answer {
                                asker: job.asker,
                                host: job.host,
                                result,
                                abandoned,
                            });
                        }
                    }
                })?;
        }
        Ok(Resolver { jobs: tx })
    }

    /// Asks for the addresses of `host`; the answer arrives in the worker's inbox. Past
    /// `deadline` the asker no longer waits: the job is then answered without a look-up.
    pub fn ask(&self, asker: Asker, host: &str, deadline: Instant) {
        let _ = self.jobs.send(Job {
            asker,
            host: host.to_string(),
            deadline,
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
    entries: HashMap<String, (Result<Vec<IpAddr>, String>, Instant)>,
    /// Names asked of the resolver and not yet answered, with the sessions (slot,
    /// generation) that wait for each.
    waiting: HashMap<String, Vec<(usize, u32)>>,
}

/// How long an answer is good for.
fn ttl(r: &Result<Vec<IpAddr>, String>) -> Duration {
    if r.is_ok() {
        CACHE_TTL
    } else {
        NEGATIVE_TTL
    }
}

impl DnsCache {
    /// The addresses of `host` with `port`, or why it has none, if known and fresh.
    pub fn get(
        &self,
        host: &str,
        port: u16,
        now: Instant,
    ) -> Option<Result<Vec<SocketAddr>, String>> {
        let (r, at) = self.entries.get(host)?;
        (now.duration_since(*at) < ttl(r)).then(|| {
            r.as_ref()
                .map(|ips| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
                .map_err(Clone::clone)
        })
    }

    pub fn put(&mut self, host: String, r: Result<Vec<IpAddr>, String>, now: Instant) {
        if self.entries.len() >= CACHE_MAX {
            self.entries
                .retain(|_, (r, at)| now.duration_since(*at) < ttl(r));
            if self.entries.len() >= CACHE_MAX {
                self.entries.clear();
            }
        }
        self.entries.insert(host, (r, now));
    }

    /// Records that session (`slot`, `generation`) waits for `host`. True when it is the
    /// first: only then is the resolver asked.
    pub fn wait_for(&mut self, host: &str, slot: usize, generation: u32) -> bool {
        match self.waiting.get_mut(host) {
            Some(w) => {
                w.push((slot, generation));
                false
            }
            None => {
                self.waiting
                    .insert(host.to_string(), vec![(slot, generation)]);
                true
            }
        }
    }

    /// The sessions that waited for `host`, now that it is answered.
    pub fn answered(&mut self, host: &str) -> Vec<(usize, u32)> {
        self.waiting.remove(host).unwrap_or_default()
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
        c.put("h".into(), Ok(vec!["127.0.0.1".parse().unwrap()]), t0);
        assert_eq!(
            c.get("h", 80, t0).unwrap(),
            Ok(vec!["127.0.0.1:80".parse().unwrap()])
        );
        assert!(c.get("h", 80, t0 + CACHE_TTL).is_none());
        assert!(c.get("x", 80, t0).is_none());
        // A failure is remembered, but not for long.
        c.put("bad".into(), Err("no such name".into()), t0);
        assert_eq!(c.get("bad", 80, t0), Some(Err("no such name".into())));
        assert!(c.get("bad", 80, t0 + NEGATIVE_TTL).is_none());
    }

    #[test]
    fn one_question_per_name() {
        let mut c = DnsCache::default();
        assert!(c.wait_for("h", 1, 7));
        assert!(!c.wait_for("h", 2, 3));
        assert!(c.wait_for("other", 4, 0));
        assert_eq!(c.answered("h"), vec![(1, 7), (2, 3)]);
        assert!(c.answered("h").is_empty());
        assert!(c.wait_for("h", 5, 0));
    }

    #[test]
    fn literals() {
        assert_eq!(literal("::1", 8), Some("[::1]:8".parse().unwrap()));
        assert_eq!(literal("localhost", 8), None);
    }
}
