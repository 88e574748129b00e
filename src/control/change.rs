//! Changes to the running config, on the control thread: publishing a new config (a reload's
//! or an API call's, the one path both take) and answering the control API's calls. Not on
//! the request path: workers only ever see the snapshot `publish` sends them.

#[cfg(feature = "api")]
use super::api;
use super::reload::{self, Reloader};
use super::{admin, probe};
use crate::config::Config;
use crate::mailbox::Outbox;
use crate::shared::Shared;
use mio::Registry;
#[cfg(feature = "api")]
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// What an admin turn (and a reload) reads and changes, borrowed from the control thread's
/// state beside its admin server (see `Control::split`).
pub struct Running<'a> {
    pub registry: &'a Registry,
    pub config: &'a mut Arc<Config>,
    /// The YAML the config came from, as a generic document: what the API shows and edits.
    pub doc: &'a mut reload::Document,
    pub outboxes: &'a [Outbox],
    pub shared: &'a Arc<Shared>,
    pub prober: &'a mut probe::Prober,
    pub lookups: &'a mut probe::Lookups,
    pub reloader: &'a mut Reloader,
}

impl admin::Host for Running<'_> {
    fn config(&self) -> &Config {
        self.config
    }

    fn shared(&self) -> &Shared {
        self.shared
    }

    #[cfg(feature = "api")]
    fn api(&mut self, method: &str, path: &str, body: &[u8]) -> api::Reply {
        self.change(method, path, body)
    }
}

impl Running<'_> {
    /// Puts a prepared config in force (see `Reloader::apply`: one snapshot to every worker,
    /// sessions in flight keep theirs) with `doc`, the document it came from, and restarts
    /// the probes on it. `None` when it was refused; the running config then stays.
    pub fn publish(
        &mut self,
        new: Config,
        doc: reload::Document,
        why: &str,
    ) -> Option<Arc<Config>> {
        let now = Instant::now();
        let config = self
            .reloader
            .apply(self.config, new, why, self.outboxes, self.shared, now)?;
        self.shared.set_latest_config(config.clone());
        self.prober.shutdown(self.registry);
        *self.prober = probe::Prober::new(config.clone(), self.shared.clone(), self.lookups, now);
        *self.config = config.clone();
        *self.doc = doc;
        Some(config)
    }

    #[cfg(feature = "api")]
    /// Answers one `/api/v1` call (DESIGN §9). A change is validated as a whole config,
    /// written to the file first when `admin.persist` is on (a failed write changes
    /// nothing), then published like a reload; the answer shows what is now in force.
    fn change(&mut self, method: &str, path: &str, body: &[u8]) -> api::Reply {
        let call = match api::Call::parse(method, path) {
            Ok(c) => c,
            Err(r) => return r,
        };
        if let Some(r) = api::read(self.doc, &call) {
            return r;
        }
        if self.shared.draining.load(Ordering::Relaxed) {
            return api::Reply::error(503, "ferry is shutting down: no changes now");
        }
        if let api::Call::Drain {
            backend,
            server,
            on,
        } = &call
        {
            return self.drain(backend, server, *on);
        }
        let edit = match api::edit(self.doc, &call, body) {
            Ok(e) => e,
            Err(r) => return r,
        };
        let text = api::text(&edit.doc);
        let new = match crate::config::parse(&text, self.config.source.as_deref()) {
            Ok(c) => c,
            Err(errs) => return api::Reply::invalid(&errs),
        };
        let new = self.reloader.prepare(self.config, new);
        let why = format!("API {method} {path}");
        let persist = self.config.admin_persist && self.config.source.is_some();
        if persist {
            match self.reloader.write(&text) {
                Ok(()) => {}
                Err(reload::Unwritten::ChangedOnDisk) => {
                    return api::Reply::error(
                        409,
                        "the config file changed on disk since ferry read it; reload it (SIGHUP) and try again",
                    )
                }
                Err(reload::Unwritten::Failed(e)) => {
                    log::error!("{why}: not applied: {e}");
                    return api::Reply::error(
                        500,
                        &format!("the change was not written, nor applied: {e}"),
                    );
                }
            }
        }
        if self.publish(new, edit.doc, &why).is_none() {
            if persist {
                self.reloader.unwrite();
            }
            return api::Reply::error(
                500,
                "the change could not be applied (see the log); the running config stays",
            );
        }
        let shown = api::show(self.doc, &edit.shows).unwrap_or_else(|| "{}".into());
        api::Reply {
            status: edit.status,
            body: api::with_persisted(shown, persist),
            allow: None,
        }
    }

    /// `.../dead` (`on`) and `.../alive`: a runtime mark on the server's shared state, not a
    /// config change; it is carried across reloads with that state (by backend name + URL).
    #[cfg(feature = "api")]
    fn drain(&self, backend: &str, id: &str, on: bool) -> api::Reply {
        let Some(servers) = api::servers(self.doc, backend) else {
            return api::no_backend(backend);
        };
        let member = api::server_index(servers, id).and_then(|i| {
            let b = self.config.reverse.as_ref()?.backends.iter();
            b.filter(|b| b.name == backend)
                .find_map(|b| b.pool.members.get(i))
        });
        let Some(m) = member else {
            return api::no_server(backend, id);
        };
        if m.state.set_draining(on) != on {
            if on {
                log::info!(
                    "{} is draining: no new requests until .../alive",
                    m.state.name
                );
            } else {
                log::info!("{} is back under health handling", m.state.name);
            }
        }
        api::Reply {
            status: 200,
            body: format!(
                "{{\"backend\":\"{}\",\"server\":\"{}\",\"draining\":{on},\"online\":{},\"active\":{}}}",
                crate::metrics::json(backend),
                crate::metrics::json(&m.config_url),
                m.state.is_online(),
                m.state.active()
            ),
            allow: None,
        }
    }
}
