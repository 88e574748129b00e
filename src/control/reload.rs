//! Hot reload, on the control thread: the config file's mtime is polled every
//! `reload_interval_secs` (0 = never) and SIGHUP reloads at once. The new file is parsed and
//! validated whole first; a bad one is logged with its key paths, counted in
//! `ferry_reload_failures_total`, and the old config keeps running. A good one is applied
//! whole: upstreams matched by URL keep their state (the same `Arc`), new ones start online,
//! removed ones get no new requests while their in-flight work finishes; a changed `listen`
//! binds new listeners before the old ones close; every worker gets the new snapshot, and
//! sessions in flight finish with the one they started with.

use crate::config::{self, Config};
use crate::listener;
use crate::mailbox::{Inbox, Outbox};
use crate::shared::Shared;
use crate::upstream::UpstreamState;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Watches the config file and reloads it.
pub struct Reloader {
    path: Option<PathBuf>,
    mtime: Option<SystemTime>,
    next_check: Option<Instant>,
}

impl Reloader {
    pub fn new(config: &Config, now: Instant) -> Reloader {
        let path = config.source.clone();
        let mtime = path.as_ref().and_then(|p| modified(p));
        let mut r = Reloader {
            path,
            mtime,
            next_check: None,
        };
        r.schedule(config, now);
        r
    }

    fn schedule(&mut self, config: &Config, now: Instant) {
        self.next_check = match (config.reload_interval_secs, &self.path) {
            (0, _) | (_, None) => None,
            (s, Some(_)) => Some(now + Duration::from_secs(s)),
        };
    }

    /// When the file must be looked at next.
    pub fn next_wake(&self) -> Option<Instant> {
        self.next_check
    }

    /// True when the poll interval has passed and the file's mtime changed. Certificate
    /// files are looked at on the same poll (a changed pair is re-read then, by the store).
    pub fn due(&mut self, current: &Config, now: Instant) -> bool {
        if self.next_check.is_none_or(|t| now < t) {
            return false;
        }
        self.schedule(current, now);
        #[cfg(feature = "tls")]
        if let Some(store) = current.tls.as_ref().and_then(|t| t.store.as_ref()) {
            store.poll();
        }
        let m = self.path.as_ref().and_then(|p| modified(p));
        m.is_some() && m != self.mtime
    }

    /// Loads and validates the file, with its source document (the control API's, see
    /// `api`); `None` when it was refused (counted and logged). `why` says what started it,
    /// for the log.
    pub fn load(
        &mut self,
        current: &Config,
        why: &str,
        shared: &Shared,
    ) -> Option<(Config, Document)> {
        let Some(path) = self.path.clone() else {
            log::warn!(
                "{why}: ferry runs on the embedded default config; there is no file to reload"
            );
            return None;
        };
        self.mtime = modified(&path);
        // One read for both, so that the document is the text the config came from.
        let loaded = std::fs::read_to_string(&path)
            .map_err(|e| {
                config::ConfigErrors(vec![config::ConfigError {
                    path: String::new(),
                    msg: format!("cannot read {}: {e}", path.display()),
                }])
            })
            .and_then(|text| Ok((config::parse(&text, Some(&path))?, document(&text)?)));
        let (new, doc) = match loaded {
            Ok(c) => c,
            Err(errs) => {
                shared.stats.reload_failures.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    "{why}: {} is invalid; the running config stays:",
                    path.display()
                );
                for e in &errs.0 {
                    log::error!("  {e}");
                }
                return None;
            }
        };
        Some((self.prepare(current, new), doc))
    }

    /// Readies a validated config to follow `current`: the worker count that runs, and the
    /// state carried over (servers' health, rotations, site counts, queues). For a reload
    /// and for a change made through the API alike.
    pub fn prepare(&self, current: &Config, mut new: Config) -> Config {
        if new.workers != current.workers {
            log::warn!(
                "workers: {} -> {} takes a restart; keeping {}",
                current.workers,
                new.workers,
                current.workers
            );
            new.workers = current.workers;
        }
        carry_states(current, &mut new);
        carry_rotations(current, &mut new);
        carry_site_stats(current, &mut new);
        carry_queues(current, &mut new);
        new
    }

    #[cfg(feature = "api")]
    /// Writes `text` over the config file for an API change (`admin.persist`), unless the
    /// file changed since ferry last read or wrote it (that edit would be lost: the caller
    /// reloads first). Remembers the new mtime, so that the poll does not take ferry's own
    /// write for an outside edit.
    pub fn write(&mut self, text: &str) -> Result<(), Unwritten> {
        let Some(path) = &self.path else {
            return Err(Unwritten::Failed(
                "ferry runs on the embedded default config: there is no file".into(),
            ));
        };
        if modified(path) != self.mtime {
            return Err(Unwritten::ChangedOnDisk);
        }
        let mtime = super::api::persist::replace(path, text).map_err(Unwritten::Failed)?;
        self.mtime = mtime;
        Ok(())
    }

    #[cfg(feature = "api")]
    /// Puts back the file `write` replaced (its `.bak`), when the change could not be
    /// published after all.
    pub fn unwrite(&mut self) {
        if let Some(path) = &self.path {
            if let Err(e) = super::api::persist::restore(path) {
                log::error!("cannot put back {}: {e}", path.display());
            }
            self.mtime = modified(path);
        }
    }

    /// Applies a loaded config: new listeners first if `listen` changed (a bind failure
    /// refuses the reload), then the log level, then the snapshot to every worker.
    pub fn apply(
        &mut self,
        current: &Config,
        new: Config,
        why: &str,
        outboxes: &[Outbox],
        shared: &Shared,
        now: Instant,
    ) -> Option<Arc<Config>> {
        let (was, wanted) = (listener::wanted(current), listener::wanted(&new));
        if was != wanted {
            // Only the new addresses are bound (before anything changes: a bind failure
            // refuses the reload); a socket kept keeps its backlog, so no waiting client is
            // reset by a reload.
            let fresh: Vec<_> = wanted
                .iter()
                .filter(|w| !was.contains(w))
                .copied()
                .collect();
            match listener::bind_sets(&fresh, outboxes.len()) {
                Ok(sets) => {
                    let keep: Vec<_> = wanted.iter().filter(|w| was.contains(w)).copied().collect();
                    if let Some(first) = sets.first() {
                        for l in first {
                            let e = l.endpoint;
                            let bound = l.socket.local_addr().map_or(e.addr, |a| a);
                            let tls = if e.tls { " TLS" } else { "" };
                            log::info!("{:?}{tls} listening on {bound}", e.role);
                        }
                    }
                    for (o, add) in outboxes.iter().zip(sets) {
                        o.send(Inbox::Listeners {
                            keep: keep.clone(),
                            add,
                        });
                    }
                    for e in was.iter().filter(|w| !wanted.contains(w)) {
                        log::info!("{e} no longer listened on");
                    }
                }
                Err(e) => {
                    shared.stats.reload_failures.fetch_add(1, Ordering::Relaxed);
                    log::error!("{why}: {e}; the running config stays");
                    return None;
                }
            }
        }
        if new.log_level != current.log_level || new.access_log != current.access_log {
            crate::logging::set(new.log_level, new.access_log);
        }
        let new = Arc::new(new);
        for o in outboxes {
            o.send(Inbox::Config(new.clone()));
        }
        // Now that the reload is certain: the backends' queues take their new limits (a
        // queue carried over still had the old ones, in case the reload was refused).
        for b in new.reverse.iter().flat_map(|r| &r.backends) {
            b.queue
                .state
                .set_limits(b.queue.max_active, b.queue.max_queued);
        }
        self.schedule(&new, now);
        shared.stats.reloads.fetch_add(1, Ordering::Relaxed);
        log::info!(
            "{why}: config reloaded from {} ({} upstreams, {} rules)",
            new.source
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string()),
            new.upstreams().count(),
            new.rules.len()
        );
        for w in new.warnings() {
            log::warn!("{w}");
        }
        Some(new)
    }
}

/// Gives every upstream of `new` that `old` also has (same URL and same username: the same
/// name) the old shared state, so health, latency and counts carry over.
fn carry_states(old: &Config, new: &mut Config) {
    // Server names say their backend, so one map serves upstreams and servers alike.
    let mut by_name: HashMap<&str, &Arc<UpstreamState>> = HashMap::new();
    for u in old.all_pools().flat_map(|p| &p.members) {
        by_name.insert(u.state.name.as_str(), &u.state);
    }
    for pool in new.all_pools_mut() {
        for m in &mut pool.members {
            if let Some(s) = by_name.get(m.state.name.as_str()) {
                m.state = Arc::clone(s);
            }
        }
    }
}

/// Lets each pool or backend that the reload left as it was (same name, mode, members,
/// weights and priorities) go on with its round-robin sequence rather than start over at its
/// first member. Run after `carry_states`, which makes the same members share their state.
fn carry_rotations(old: &Config, new: &mut Config) {
    let (old_forward, new_forward) = (old.pools.len(), new.pools.len());
    for (i, pool) in new.all_pools_mut().enumerate() {
        let forward = i < new_forward;
        let Some(o) = old.all_pools().enumerate().find(|(j, o)| {
            (*j < old_forward) == forward && o.name == pool.name && o.mode == pool.mode
        }) else {
            continue;
        };
        let o = o.1;
        let unchanged = o.members.len() == pool.members.len()
            && o.members.iter().zip(&pool.members).all(|(a, b)| {
                Arc::ptr_eq(&a.state, &b.state) && (a.weight, a.priority) == (b.weight, b.priority)
            });
        if unchanged {
            for ((_, r), (_, before)) in pool.rotations.iter_mut().zip(&o.rotations) {
                r.continue_from(before);
            }
        }
    }
}

/// Gives every site and route of `new` that `old` also has (same site name, same route name)
/// the old counts, so that requests and the duration histogram go on (Prometheus sees no
/// reset) and sessions still on the old snapshot count into the same cells. The others
/// start at zero, with a cell for each worker that runs (the file may say another number).
fn carry_site_stats(old: &Config, new: &mut Config) {
    use crate::metrics::RouteStats;
    let workers = new.workers;
    let Some(rev) = new.reverse.as_mut() else {
        return;
    };
    let before = old.reverse.as_ref();
    let fresh = |s: &mut Arc<RouteStats>| {
        if s.workers() != workers {
            *s = Arc::new(RouteStats::new(workers));
        }
    };
    match before {
        Some(b) => rev.no_site = Arc::clone(&b.no_site),
        None => fresh(&mut rev.no_site),
    }
    for site in &mut rev.sites {
        let was = before.and_then(|b| b.sites.iter().find(|s| s.name == site.name));
        match was {
            Some(w) => site.no_route = Arc::clone(&w.no_route),
            None => fresh(&mut site.no_route),
        }
        for route in &mut site.routes {
            match was.and_then(|w| w.routes.iter().find(|r| r.name == route.name)) {
                Some(r) => route.stats = Arc::clone(&r.stats),
                None => fresh(&mut route.stats),
            }
        }
    }
}

/// Gives every backend of `new` that `old` also has (same name) the old queue: the requests
/// in flight keep their slots and those waiting their places, whichever snapshot they hold.
/// Its limits change only when the reload is applied (`apply`). Other backends get a queue
/// that counts for the workers that run.
fn carry_queues(old: &Config, new: &mut Config) {
    use crate::upstream::queue::BackendQueue;
    let workers = new.workers;
    let Some(rev) = new.reverse.as_mut() else {
        return;
    };
    for b in &mut rev.backends {
        let was = old
            .reverse
            .iter()
            .flat_map(|r| &r.backends)
            .find(|o| o.name == b.name);
        let q = &mut b.queue;
        match was {
            Some(o) => q.state = Arc::clone(&o.queue.state),
            None if q.state.workers() != workers => {
                q.state = BackendQueue::new(q.max_active, q.max_queued, workers)
            }
            None => {}
        }
    }
}

#[cfg(feature = "api")]
/// Why an API change was not written to the config file.
#[derive(Debug)]
pub enum Unwritten {
    /// The file changed since ferry read it.
    ChangedOnDisk,
    /// The write failed: the reason.
    Failed(String),
}

/// The config's source document: what the control API shows and edits.
#[cfg(feature = "api")]
pub type Document = yaml_serde::Value;
/// Without the control API nothing needs the config's source document.
#[cfg(not(feature = "api"))]
pub type Document = NoDocument;

/// What stands for the source document when there is no control API.
#[cfg(not(feature = "api"))]
#[derive(Debug)]
pub struct NoDocument;

/// The config text as a generic document, for the control API; its errors as a config's.
#[cfg(feature = "api")]
pub fn document(text: &str) -> Result<Document, config::ConfigErrors> {
    yaml_serde::from_str(text).map_err(|e| {
        config::ConfigErrors(vec![config::ConfigError {
            path: String::new(),
            msg: e.to_string(),
        }])
    })
}

/// Without the control API there is no document to keep.
#[cfg(not(feature = "api"))]
pub fn document(_: &str) -> Result<Document, config::ConfigErrors> {
    Ok(NoDocument)
}

/// The running config's source document at start: the file read once more (the embedded
/// default's text without one), for the control API.
#[cfg(feature = "api")]
pub fn first_document(config: &Config) -> std::io::Result<Document> {
    let text = match &config.source {
        Some(path) => std::fs::read_to_string(path)?,
        None => crate::config::EMBEDDED_DEFAULT.to_string(),
    };
    document(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// Without the control API the file is not read again.
#[cfg(not(feature = "api"))]
pub fn first_document(_: &Config) -> std::io::Result<Document> {
    Ok(NoDocument)
}

fn modified(p: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_carry_over_by_url() {
        let old = config::parse(
            "listen: 127.0.0.1:1\nupstream: [{url: 'http://a:1'}, {url: 'http://b:1'}]\n",
            None,
        )
        .unwrap();
        old.pools[0].members[0].state.passive_failure(0, 1, "test");
        let mut new = config::parse(
            "listen: 127.0.0.1:1\nupstream: [{url: 'http://a:1', weight: 5}, {url: 'http://c:1'}, {url: 'http://b:1', username: u, password: p}]\n",
            None,
        )
        .unwrap();
        carry_states(&old, &mut new);
        let m = &new.pools[0].members;
        assert!(Arc::ptr_eq(&m[0].state, &old.pools[0].members[0].state));
        assert!(!m[0].state.is_online(), "state came along");
        assert!(m[1].state.is_online(), "a new upstream starts online");
        // b's credentials changed: a new identity
        assert!(!Arc::ptr_eq(&m[2].state, &old.pools[0].members[1].state));
    }

    #[test]
    fn site_counts_carry_over_by_site_and_route_name() {
        let text = |routes: &str| {
            format!("reverse:\n  listen: ['127.0.0.1:1']\n  sites:\n    - {{name: app, hosts: [a.test], routes: [{routes}]}}\n  backends:\n    web: {{servers: [{{url: 'http://127.0.0.1:2'}}]}}\nworkers: 2\n")
        };
        let old = config::parse(
            &text("{path: /, backend: web}, {path: /api, name: api, backend: web}"),
            None,
        )
        .unwrap();
        let o = old.reverse.as_ref().unwrap();
        o.sites[0].routes[1]
            .stats
            .done(1, 200, Duration::from_millis(3));
        let mut new = config::parse(
            &text("{path: /v2, name: api, backend: web}, {path: /x, backend: web}"),
            None,
        )
        .unwrap();
        // The file says 2 workers; ferry runs 3 (a change of `workers` takes a restart).
        new.workers = 3;
        carry_site_stats(&old, &mut new);
        let n = new.reverse.as_ref().unwrap();
        let api = &n.sites[0].routes[0].stats;
        assert!(
            Arc::ptr_eq(api, &o.sites[0].routes[1].stats),
            "same name: same counts"
        );
        assert_eq!(api.totals().codes, [0, 1, 0, 0, 0]);
        assert!(Arc::ptr_eq(&n.no_site, &o.no_site));
        assert!(Arc::ptr_eq(&n.sites[0].no_route, &o.sites[0].no_route));
        let x = &n.sites[0].routes[1].stats;
        assert_eq!(
            (x.totals().requests(), x.workers()),
            (0, 3),
            "a new route starts at zero, sized for the workers that run"
        );
    }

    #[test]
    fn queues_carry_over_by_backend_name_and_take_new_limits_when_applied() {
        // `web` stays (at index 1), the other backend (at 0) is new in the second file.
        let text = |web: &str, other: &str| {
            format!("reverse:\n  listen: ['127.0.0.1:1']\n  sites: [{{hosts: [a.test], routes: [{{backend: web}}, {{path: /x, backend: {other}}}]}}]\n  backends:\n    web: {{servers: [{{url: 'http://127.0.0.1:2'}}], queue: {web}}}\n    {other}: {{servers: [{{url: 'http://127.0.0.1:3'}}]}}\nworkers: 2\n")
        };
        let old = config::parse(&text("{max_active: 1, max_queued: 5}", "api"), None).unwrap();
        let web = |c: &Config| c.reverse.as_ref().unwrap().backends[1].queue.state.clone();
        let held = match web(&old).enter(0, || unreachable!()) {
            crate::upstream::queue::Admission::Go(s) => s,
            _ => panic!("a free slot"),
        };
        let mut new = config::parse(&text("{max_active: 4, max_queued: 1}", "app"), None).unwrap();
        new.workers = 3;
        carry_queues(&old, &mut new);
        assert!(Arc::ptr_eq(&web(&new), &web(&old)), "same name: same queue");
        assert_eq!(web(&new).active(), 1, "the count goes on");
        assert_eq!(web(&new).limits(), (1, 5), "not applied yet");
        let api = &new.reverse.as_ref().unwrap().backends[0].queue.state;
        assert_eq!(
            api.workers(),
            3,
            "a new queue counts for the workers that run"
        );
        let q = &new.reverse.as_ref().unwrap().backends[1].queue;
        q.state.set_limits(q.max_active, q.max_queued);
        assert_eq!(web(&old).limits(), (4, 1));
        drop(held);
        assert_eq!(web(&new).active(), 0);
    }

    #[test]
    fn an_unchanged_pool_goes_on_with_its_round_robin_sequence() {
        let text = "listen: 127.0.0.1:1\nupstream: [{url: 'http://a:1'}, {url: 'http://b:1'}]\n";
        let old = config::parse(text, None).unwrap();
        let pick = |c: &Config| c.pools[0].rotations[0].1.pick(|_| true);
        assert_eq!(pick(&old), Some(0));
        let mut same = config::parse(&format!("{text}log_level: debug\n"), None).unwrap();
        carry_states(&old, &mut same);
        carry_rotations(&old, &mut same);
        assert_eq!(pick(&same), Some(1), "went on");
        let mut changed = config::parse(
            "listen: 127.0.0.1:1\nupstream: [{url: 'http://a:1'}, {url: 'http://c:1'}]\n",
            None,
        )
        .unwrap();
        carry_states(&old, &mut changed);
        carry_rotations(&old, &mut changed);
        assert_eq!(pick(&changed), Some(0), "a changed pool starts over");
    }
}
