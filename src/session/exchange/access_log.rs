//! The access log's line for a request or a tunnel (only built when `access_log` is on).

use std::net::SocketAddr;
use std::time::Instant;

/// What the access log says about a request (only built when `access_log` is on).
pub struct LogLine {
    pub(super) method: String,
    pub(super) target: String,
    /// Forward: the route (`direct` or the upstream); reverse: the server of the last attempt.
    pub(super) route: String,
    /// Set for a reverse request: `site=… route=…` and its request id.
    pub(super) site: Option<(String, String)>,
    /// The client's TLS version, for a request that came over TLS.
    pub(super) tls: Option<&'static str>,
}

impl LogLine {
    pub(super) fn request(
        &self,
        peer: SocketAddr,
        status: u16,
        up: u64,
        down: u64,
        attempts: u8,
        ms: u128,
    ) {
        match &self.site {
            // DESIGN §7.4: client method host path site route server status bytes-up
            // bytes-down attempts ms id.
            Some((site, id)) => log::info!(
                target: crate::logging::ACCESS,
                "access: {peer} {} {} {site} server={} status={status} up={up} down={down} attempts={attempts} ms={ms} id={id} tls={}",
                self.method,
                self.target,
                if self.route.is_empty() { "-" } else { &self.route },
                self.tls.unwrap_or("-"),
            ),
            None => log::info!(
                target: crate::logging::ACCESS,
                "access: {peer} {} {} via={} status={status} up={up} down={down} attempts={attempts} ms={} tls={}",
                self.method,
                self.target,
                self.route,
                ms,
                self.tls.unwrap_or("-")
            ),
        }
    }

    /// The line for a tunnel when it ends.
    pub fn tunnel(&self, peer: SocketAddr, up: u64, down: u64, started: Instant, now: Instant) {
        self.request(
            peer,
            200,
            up,
            down,
            1,
            now.duration_since(started).as_millis(),
        );
    }
}
