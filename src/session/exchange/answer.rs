//! The response half of an exchange: response heads parsed (1xx relayed, 101 and CONNECT 2xx
//! turned into tunnels, a refused CONNECT failed over); the body is relayed by `body`.

use super::*;
use crate::http::response;
use crate::session::OUT_LIMIT;

impl Session {
    /// Parses response heads, then has the body relayed.
    pub(super) fn handle_response(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let mut progress = false;
        loop {
            let Phase::Exchange(ex) = &mut self.phase else {
                return Ok(progress);
            };
            match &mut ex.resp {
                Resp::Head => {
                    if self.cout.as_ref().is_some_and(|b| b.len() >= OUT_LIMIT) {
                        // The client is not reading: no more heads (a 1xx storm) until it does.
                        return Ok(progress);
                    }
                    let Some(sin) = self.sin.as_mut().filter(|b| !b.is_empty()) else {
                        if ex.server_eof {
                            return self.server_gone(ctx);
                        }
                        return Ok(progress);
                    };
                    let Some(end) = crate::http::seek_head(sin, &mut ex.resp_scan) else {
                        if sin.len() >= MAX_RESPONSE_HEAD {
                            return Err(Fail::Refuse(Refusal::new(502, "response head too large")));
                        }
                        if ex.server_eof {
                            return self.server_gone(ctx);
                        }
                        return Ok(progress);
                    };
                    let mut headers = [httparse::EMPTY_HEADER; response::MAX_HEADERS];
                    let mut more_headers: Vec<httparse::Header<'_>>;
                    let head = &sin.bytes()[..end];
                    let parsed = match response::parse(head, &mut headers, ex.kind) {
                        Err(response::TOO_MANY_HEADERS) => {
                            // Rare: more fields than the array on the stack holds. As many as
                            // the head's size allows, on the heap (a field line takes at least
                            // three bytes).
                            more_headers = vec![httparse::EMPTY_HEADER; end / 3 + 1];
                            response::parse(head, &mut more_headers, ex.kind)
                        }
                        r => r,
                    };
                    let resp = match parsed {
                        Ok(Some(r)) => r,
                        // Not a head after all: `resp_scan` looks past this terminator next.
                        Ok(None) => continue,
                        Err(why) => {
                            log::debug!("{}: bad response head: {why}", self.peer);
                            if ex.route != Route::Direct {
                                let why = ex.hop(
                                    "the upstream proxy sent a malformed response",
                                    "the server sent a malformed response",
                                );
                                return self.fail_over(why, RetryOn::RESET, ctx);
                            }
                            return Err(Fail::Refuse(Refusal::new(
                                502,
                                "the server sent a malformed response",
                            )));
                        }
                    };
                    if let Some((pool, member)) = ex.pool(&self.config) {
                        if ex.kind == MethodKind::Connect && (resp.code >= 500 || resp.code == 407)
                        {
                            // Another upstream may do better. A 407 is the upstream refusing
                            // ferry's credentials: its fault, counted. A 5xx is most often its
                            // verdict on the client's target (unreachable, unknown): not held
                            // against it, or one CONNECT to a dead host would take every
                            // upstream of the pool offline.
                            let (len, refused_us) = (resp.len, resp.code == 407);
                            sin.consume(len);
                            return self.move_on(
                                if refused_us {
                                    "the upstream proxy refused ferry's credentials for the CONNECT"
                                } else {
                                    "the upstream proxy could not open the tunnel"
                                },
                                refused_us,
                                RetryOn::default(),
                                ctx,
                            );
                        }
                        let ms = ctx.now.duration_since(ex.attempt_started).as_millis();
                        let state = &pool.members[member].state;
                        if ex.served.is_some() && (502..=504).contains(&resp.code) {
                            // DESIGN §7.2: a server's own 502-504 counts against it (the
                            // answer still goes to the client).
                            state.passive_failure(ctx.worker, pool.passive_fall(), "answered 5xx");
                        } else {
                            state.passive_success(ms.min(u32::MAX as u128) as u32);
                        }
                        // A trial's verdict is in (after it was counted, which looks at the
                        // trial in flight): its slot goes back now, not at the response's end.
                        if let Some(g) = ex.guard.as_mut() {
                            g.end_trial();
                        }
                    }
                    if ex.served.is_some() && (502..=504).contains(&resp.code) {
                        // A status the backend retries on: this response is dropped with its
                        // connection (never relayed, never reused half-read) and the request
                        // made again, when it can be.
                        if let Some(next) =
                            ex.next_server(&self.config, RetryOn::of_status(resp.code), ctx)
                        {
                            log::debug!("{}: the server answered {}; again", self.peer, resp.code);
                            self.start_next(next, ctx)?;
                            return Ok(true);
                        }
                    }
                    // A response has begun: the request will not be replayed. A head not yet
                    // sent whole stays cut: no body byte may follow it.
                    if let Some(h) = ex.head.take() {
                        ex.head_cut = ex.head_sent < h.len();
                        ctx.bufs.put(h);
                    }
                    progress = true;
                    let cout = ctx.bufs.fill(&mut self.cout);
                    let len = resp.len;
                    ex.resp_scan = HeadScan::default();
                    let via = self.config.via;
                    let config = self.config.clone();
                    let site = ex
                        .served
                        .as_deref()
                        .and_then(|s| Some((&config.reverse.as_ref()?.sites[s.site], s.route)));
                    let edits = site.map(|(site, r)| &site.routes[r].headers.response);
                    let hsts = match site {
                        Some((site, _)) if self.client.is_tls() => site.hsts_max_age_secs,
                        _ => 0,
                    };
                    let form = |conn| rewrite::ResponseForm {
                        conn,
                        via,
                        dechunk: false,
                        edits,
                        hsts,
                    };
                    if resp.is_interim() {
                        ex.interim = true;
                        // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
                        if ex.minor == 1 {
                            rewrite::response_head(cout, &resp, form(ConnectionField::Default));
                        }
                        sin.consume(len);
                        continue;
                    }
                    ex.status = resp.code;
                    let tunnel = if resp.code == 101 {
                        if !ex.upgrade {
                            return Err(Fail::Refuse(Refusal::new(
                                502,
                                "the server switched protocols unasked",
                            )));
                        }
                        rewrite::response_head(cout, &resp, form(ConnectionField::Upgrade));
                        true
                    } else if ex.kind == MethodKind::Connect && (200..300).contains(&resp.code) {
                        cout.push(CONNECT_ESTABLISHED);
                        true
                    } else {
                        let framing = resp.framing;
                        // An HTTP/1.0 client knows no chunked coding (RFC 9112 §7.1): it gets
                        // the data alone, ended by the close of the connection.
                        ex.dechunk = ex.minor == 0 && framing == Framing::Chunked;
                        // A client that half-closed after pipelining still gets every answer:
                        // its EOF is acted on once `cin` runs dry (see `drive_head`).
                        ex.client_keep = ex.keep_alive
                            && !ctx.draining
                            && framing != Framing::UntilClose
                            && !ex.dechunk
                            && ex.kind != MethodKind::Connect;
                        ex.server_keep = resp.keep_alive;
                        let field = match (ex.client_keep, ex.minor) {
                            (false, _) => ConnectionField::Close,
                            (true, 0) => ConnectionField::KeepAlive,
                            (true, _) => ConnectionField::Default,
                        };
                        let form = rewrite::ResponseForm {
                            dechunk: ex.dechunk,
                            ..form(field)
                        };
                        rewrite::response_head(cout, &resp, form);
                        ex.resp = Resp::Body(BodyState::new(framing));
                        ex.response_started = true;
                        false
                    };
                    ex.bytes_down += len as u64;
                    sin.consume(len);
                    if tunnel {
                        let (log, started, eof) = (ex.log.take(), ex.started, ex.server_eof);
                        let guard = ex.take_guard();
                        self.start_tunnel(log, started, eof, guard, ctx);
                        return Ok(true);
                    }
                }
                Resp::Body(_) => return Ok(self.relay_response_body(ctx)? || progress),
                Resp::Done => return Ok(progress),
            }
        }
    }
}
