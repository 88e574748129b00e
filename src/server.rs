//! Start-up: bind every listener first (so a bad address fails before anything serves), then
//! start the resolver, the workers and the control thread, and wait for the workers to finish.

use crate::config::Config;
use crate::resolve::{Deliver, Resolver};
use crate::shared::Shared;
use crate::worker::Worker;
use std::sync::Arc;

/// Stack of a worker thread, chosen by measurement: with 32 KiB the test suite overflows on a
/// session's panic (unwinding and formatting the message), with 64 KiB all of it passes; this
/// leaves twice that as headroom. Stack pages are only resident once touched.
const WORKER_STACK: usize = 128 * 1024;
/// Resolver threads.
const RESOLVERS: usize = 2;
/// The open-files limit assumed when it cannot be read: the usual default soft limit.
const ASSUMED_FD_LIMIT: u64 = 1024;

/// Runs ferry with `config` until it is told to stop.
pub fn run(config: Config) -> Result<(), String> {
    let config = Arc::new(config);
    let fd_limit = match crate::sys::raise_fd_limit() {
        Ok((old, new)) => {
            if old != new {
                log::debug!("open-files limit raised from {old} to {new}");
            }
            new
        }
        Err(e) => {
            log::warn!("cannot raise the open-files limit: {e}; assuming {ASSUMED_FD_LIMIT}");
            ASSUMED_FD_LIMIT
        }
    };
    let n = config.workers;
    let max_pipes = crate::relay::pipe_cap(fd_limit, n);
    if max_pipes < crate::relay::MAX_PIPES {
        log::debug!("at most {max_pipes} pipes per worker under an open-files limit of {fd_limit}");
    }
    let sets = crate::listener::bind_sets(&crate::listener::wanted(&config), n)
        .map_err(|e| e.to_string())?;
    let workers: Vec<Worker> = (0..n)
        .map(|_| Worker::new())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let outboxes: Vec<_> = workers.iter().map(Worker::outbox).collect();
    let shared = Arc::new(Shared::new(n, max_pipes));
    shared.set_latest_config(config.clone());
    let mut delivers: Vec<Arc<dyn Deliver>> = outboxes
        .iter()
        .map(|o| Arc::new(o.clone()) as Arc<dyn Deliver>)
        .collect();
    // The resolver answers worker i at index i and the control thread (probes) at index n.
    let (mailbox, control_outbox) = crate::control::mailbox().map_err(|e| e.to_string())?;
    delivers.push(Arc::new(control_outbox.clone()));
    let resolver = Resolver::start(RESOLVERS, delivers)
        .map_err(|e| format!("cannot start resolver threads: {e}"))?;
    let admin = crate::control::start(
        config.clone(),
        outboxes,
        shared.clone(),
        mailbox,
        resolver.clone(),
        n,
    )
    .map_err(|e| e.to_string())?;
    if let Some(a) = admin {
        shared
            .admin_port
            .store(a.port(), std::sync::atomic::Ordering::Relaxed);
    }

    let mut handles = Vec::with_capacity(n);
    // What the first worker's set says is what every set says (same addresses, same ports).
    let bound: Vec<_> = sets[0]
        .iter()
        .map(|l| (l.endpoint, l.socket.local_addr().unwrap_or(l.endpoint.addr)))
        .collect();
    for (id, (worker, listener)) in workers.into_iter().zip(sets).enumerate() {
        let (config, resolver, shared) = (config.clone(), resolver.clone(), shared.clone());
        let control = control_outbox.clone();
        let h = std::thread::Builder::new()
            .name(format!("ferry-worker-{id}"))
            .stack_size(WORKER_STACK)
            .spawn(move || worker.run(id, listener, config, resolver, control, shared))
            .map_err(|e| format!("cannot start worker {id}: {e}"))?;
        handles.push(h);
    }
    let upstreams = config.upstreams().count();
    let route = if upstreams == 0 {
        "direct".to_string()
    } else {
        format!("{upstreams} upstream proxies")
    };
    // Tests and scripts read the first "listening on ADDR": the forward listener when there
    // is one.
    // TLS listeners say "TLS" (or "HTTPS") before "listening on".
    for (at, addr) in &bound {
        let tls = if at.tls { " TLS" } else { "" };
        match at.role {
            crate::listener::Role::Forward => {
                let what = if at.tls { "HTTPS proxy " } else { "" };
                log::info!("{what}listening on {addr} with {n} workers ({route})")
            }
            crate::listener::Role::Reverse => log::info!(
                "reverse proxy{tls} listening on {addr} with {n} workers ({} sites)",
                config.reverse.as_ref().map_or(0, |r| r.sites.len())
            ),
        }
    }
    if let Some(a) = admin {
        log::info!("admin listening on {a}");
    }
    for h in handles {
        let _ = h.join();
    }
    log::info!("stopped");
    Ok(())
}
