//! The tunnel phase of a session: CONNECT tunnels and upgraded (101) connections, relayed
//! raw both ways by `relay` once the head exchange is over.

use super::*;

pub(super) struct TunnelState {
    pub(super) relay: Tunnel,
    pub(super) started: Instant,
    /// Counts the tunnel as an active connection of its upstream while it lives.
    pub(super) _guard: Option<crate::upstream::state::ActiveGuard>,
    /// A CONNECT (not an upgrade), and direct (not through an upstream): for the counters.
    pub(super) connect: bool,
    pub(super) direct: bool,
    /// What the access log says about it, set when it was a CONNECT.
    pub(super) log: Option<exchange::LogLine>,
}

impl Session {
    /// Turns the session into a raw relay. Bytes already read on either side, and bytes owed
    /// to the client (a `200` or `101` head), go first.
    pub(super) fn start_tunnel(
        &mut self,
        log: Option<exchange::LogLine>,
        started: Instant,
        server_eof: bool,
        guard: Option<crate::upstream::state::ActiveGuard>,
        ctx: &mut Ctx,
    ) {
        let (connect, direct) = match &self.phase {
            Phase::Exchange(ex) => ex.tunnel_kind(),
            _ => (true, true),
        };
        let mut down = self.cout.take();
        if let Some(sin) = self.sin.take() {
            if !sin.is_empty() {
                ctx.bufs.fill(&mut down).push(sin.bytes());
            }
            ctx.bufs.put(sin);
        }
        let mut up = self.sout.take();
        if let Some(cin) = self.cin.take() {
            if !cin.is_empty() {
                ctx.bufs.fill(&mut up).push(cin.bytes());
            }
            ctx.bufs.put(cin);
        }
        let tls = self.client.is_tls() || self.server.as_ref().is_some_and(|s| s.conn.is_tls());
        let mut relay = Tunnel::new(up, down, tls, &mut ctx.pipes);
        log::debug!(
            "{}: tunnel relays by {}",
            self.peer,
            if relay.up.spliced() && relay.down.spliced() {
                "splice"
            } else {
                "copy"
            }
        );
        if self.client_eof {
            relay.up.source_closed();
        }
        if server_eof {
            relay.down.source_closed();
        }
        let old = mem::replace(
            &mut self.phase,
            Phase::Tunnel(Box::new(TunnelState {
                relay,
                started,
                _guard: guard,
                connect,
                direct,
                log,
            })),
        );
        self.release_phase(old, ctx);
        self.deadline = ctx.now + self.config.limits.idle_timeout;
    }

    pub(super) fn drive_tunnel(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let Phase::Tunnel(t) = &mut self.phase else {
            return Ok(false);
        };
        let Some(server) = self.server.as_mut() else {
            return Err(Fail::Abort);
        };
        let progress = t
            .relay
            .pump(&mut self.client, &mut server.conn, &mut ctx.bufs)
            .map_err(|e| {
                log::debug!("{}: tunnel ended: {e}", self.peer);
                Fail::Abort
            })?;
        if progress {
            self.deadline = ctx.now + self.config.limits.idle_timeout;
        }
        if t.relay.done() {
            return Err(Fail::Abort);
        }
        Ok(progress)
    }
}
