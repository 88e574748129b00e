//! The auth service's answer: read whole (1xx skipped, 64 KiB at most, its body as framed),
//! then acted on: a 2xx lets the waiting request through with the fields the service vouches
//! for, any other answer is relayed to the client with a length, the connection goes back to
//! the worker's idle pool when it can carry the next check.

use super::*;
use crate::http::response::{self, ResponseHead};
use crate::http::rewrite::{ConnectionField, ResponseForm};

/// The most an auth service's answer (head and body) may take.
pub(super) const MAX_ANSWER: usize = 64 * 1024;

/// The answer's head, once it came: what the rest of the answer is read by.
#[derive(Clone, Copy)]
pub(super) struct AnswerHead {
    pub(super) len: usize,
    pub(super) code: u16,
    pub(super) keep_alive: bool,
}

impl AuthCheck {
    /// Looks at what came of the answer: `Ok(true)` once it is whole (head, then its body
    /// as framed; 1xx skipped), `Ok(false)` while more is to come.
    pub(super) fn examine(&mut self) -> Result<bool, Why> {
        let Some(b) = self.answer.as_mut() else {
            return match self.eof {
                true => Err("closed the connection without answering"),
                false => Ok(false),
            };
        };
        while self.head.is_none() {
            let Some(end) = crate::http::seek_head(b, &mut self.scan) else {
                if self.eof {
                    return Err(match b.is_empty() {
                        true => "closed the connection without answering",
                        false => "closed the connection in the middle of its answer",
                    });
                }
                return match b.len() >= MAX_ANSWER {
                    true => Err("sent an answer head over 64 KiB"),
                    false => Ok(false),
                };
            };
            let mut headers = [httparse::EMPTY_HEADER; response::MAX_HEADERS];
            let r = match response::parse(&b.bytes()[..end], &mut headers, MethodKind::Other) {
                Ok(Some(r)) => r,
                // Not a head after all: `scan` looks past this terminator next time.
                Ok(None) => continue,
                Err(_) => return Err("sent a malformed answer"),
            };
            if r.code == 101 {
                return Err("switched protocols unasked");
            }
            if r.code >= 600 {
                return Err("sent a status that is not one");
            }
            if r.is_interim() {
                let len = r.len;
                b.consume(len);
                self.scan = HeadScan::default();
                continue;
            }
            self.head = Some(AnswerHead {
                len: r.len,
                code: r.code,
                keep_alive: r.keep_alive,
            });
            self.body = BodyState::new(r.framing);
            self.fed = r.len;
        }
        let n = self
            .body
            .advance(&b.bytes()[self.fed..])
            .map_err(|_| "sent a malformed answer body")?;
        self.fed += n;
        if self.body.is_done() || (self.eof && self.body.finish_on_eof()) {
            return Ok(true);
        }
        if self.eof {
            return Err("closed the connection in the middle of its answer");
        }
        match b.len() >= MAX_ANSWER {
            true => Err("sent an answer over 64 KiB"),
            false => Ok(false),
        }
    }
}

impl Session {
    /// A whole answer came: keep the connection for the next check, then let the request
    /// through (2xx) or relay the answer.
    pub(super) fn auth_answered(&mut self, ctx: &mut Ctx) -> Result<bool, Fail> {
        let old = mem::replace(&mut self.phase, Phase::Head);
        let Phase::Auth(mut a) = old else {
            return Err(Fail::Abort);
        };
        let config = self.config.clone();
        let (Some(svc), Some(h), Some(answer)) =
            (service(&config, a.site), a.head, a.answer.take())
        else {
            a.release(ctx);
            return Err(Fail::Abort);
        };
        let reusable = h.keep_alive && !a.eof && answer.len() == a.fed;
        if let Some(mut c) = a.conn.take() {
            let _ = ctx.registry.deregister(&mut c.stream);
            if reusable {
                let expires = ctx.now + config.limits.idle_timeout;
                let max = crate::upstream::MAX_IDLE_PER_UPSTREAM;
                ctx.idle.put(&svc.pool_key, (c.stream, c.tls), expires, max);
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; response::MAX_HEADERS];
        let parsed = response::parse(&answer.bytes()[..h.len], &mut headers, MethodKind::Other);
        let Ok(Some(resp)) = parsed else {
            // Parsed once already: cannot fail now.
            ctx.bufs.put(answer);
            a.release(ctx);
            return Err(Fail::Abort);
        };
        if (200..300).contains(&h.code) {
            let mut copied = Vec::new();
            for name in &svc.copy_headers {
                for f in resp
                    .headers
                    .iter()
                    .filter(|f| f.name.eq_ignore_ascii_case(name))
                {
                    match std::str::from_utf8(f.value) {
                        Ok(v) => copied.push((name.clone(), v.to_string())),
                        Err(_) => log::debug!("{}: auth answer's {name} is not UTF-8", self.peer),
                    }
                }
            }
            self.auth_pass = Some(Box::new(AuthPass {
                site: a.site,
                route: a.route,
                copied,
            }));
            // Back to `Head`, where the same head is parsed again and goes on.
            self.head_started = Some(a.started);
            self.deadline = self.head_deadline(a.started);
            ctx.bufs.put(answer);
            a.release(ctx);
            return Ok(true);
        }
        let keep = a.keep_alive && !a.has_body && !ctx.draining;
        let down = self.relay_answer(&a, &resp, &answer, keep, ctx);
        let took = ctx.now.saturating_duration_since(a.started);
        let place = Place {
            site: Some(a.site),
            route: Some(a.route),
        };
        crate::metrics::site_answered(&config, place, ctx.worker, h.code, took);
        ctx.stats()
            .request_done(false, false, h.code < 400, 0, down);
        if let (Some(line), Some(rev)) = (&a.log, config.reverse.as_ref()) {
            let site = &rev.sites[a.site];
            log::info!(target: crate::logging::ACCESS, "access: {} {line} site={} route={} server={} status={} up=0 down={down} attempts=1 ms={} id=- tls={}", self.peer, site.name, site.routes[a.route].name, svc.url, h.code, took.as_millis(), self.client.tls_version().unwrap_or("-"));
        }
        ctx.bufs.put(answer);
        if let Some(cin) = self.cin.as_mut() {
            cin.consume(a.head_len.min(cin.len()));
        }
        self.scan = HeadScan::default();
        a.release(ctx);
        if keep {
            self.deadline = ctx.now + config.limits.idle_timeout;
        } else {
            self.enter_closing(ctx);
        }
        Ok(true)
    }

    /// Writes the service's answer `resp` (whole in `answer`) for the client: its status and
    /// fields, hop-by-hop ones removed, the route's response rules applied, the body
    /// de-chunked and sent with its length. Returns the bytes written.
    fn relay_answer(
        &mut self,
        a: &AuthCheck,
        resp: &ResponseHead<'_, '_>,
        answer: &Buf,
        keep: bool,
        ctx: &mut Ctx,
    ) -> u64 {
        let body = &answer.bytes()[resp.len..a.fed];
        let framing = resp.framing;
        let mut len = 0;
        let _ = BodyState::new(framing).advance_with(body, |d| len += d.len());
        let bodiless = matches!(resp.code, 204 | 304);
        let shown = ResponseHead {
            content_length: (!bodiless).then_some(len as u64),
            ..*resp
        };
        let config = self.config.clone();
        let site = config.reverse.as_ref().map(|r| &r.sites[a.site]);
        let edits = site.map(|s| &s.routes[a.route].headers.response);
        let hsts = match site {
            Some(s) if self.client.is_tls() => s.hsts_max_age_secs,
            _ => 0,
        };
        let form = ResponseForm {
            conn: match (keep, a.minor) {
                (false, _) => ConnectionField::Close,
                (true, 0) => ConnectionField::KeepAlive,
                (true, _) => ConnectionField::Default,
            },
            via: config.via,
            dechunk: true,
            edits,
            hsts,
        };
        let cout = ctx.bufs.fill(&mut self.cout);
        let before = cout.len();
        rewrite::response_head(cout, &shown, form);
        if !bodiless && !a.head_method {
            let _ = BodyState::new(framing).advance_with(body, |d| cout.push(d));
        }
        (cout.len() - before) as u64
    }
}
