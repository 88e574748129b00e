//! The admin server's answers: one complete request (head and body) in, one response out.
//! Which paths exist, the token checks, and the bodies of `/health`, `/readyz`, `/status` and
//! `/metrics`; the status page (`/`) and `/api/v1/stats` are rendered by `control::page` and
//! `control::stats`; other `/api/v1` calls go to the control thread (`Host::api`).

use super::Host;
use crate::metrics::Snapshot;
use std::sync::atomic::Ordering;

/// A response being written into the connection's output.
struct Reply<'a> {
    out: &'a mut Vec<u8>,
    /// The connection ends after this response (it then says `Connection: close`).
    close: bool,
}

/// Answers one request, its head (through its blank line) and its body, by appending the
/// response to `out`. Returns true when the connection must close after it.
pub fn answer(head: &[u8], body: &[u8], host: &mut dyn Host, out: &mut Vec<u8>) -> bool {
    let mut r = Reply { out, close: false };
    route(&mut r, head, body, host);
    r.close
}

/// Answers `head` alone, its body unread (see `may_send_body`); the connection then closes.
pub fn answer_unread(head: &[u8], host: &mut dyn Host, out: &mut Vec<u8>) {
    let mut r = Reply { out, close: true };
    route(&mut r, head, b"", host);
}

/// The length of the body that follows `head`, from its `Content-Length` (0 without one, or
/// when the head does not parse: `answer` refuses it then). `Err` with the status that
/// refuses it: 411 for `Transfer-Encoding` (the admin server takes no chunked bodies), 400
/// for a `Content-Length` that is not one number.
pub fn body_length(head: &[u8]) -> Result<usize, u16> {
    let mut hs = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut hs);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return Ok(0);
    }
    let mut length = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(411);
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            // RFC 9112 §6.3: differing or malformed lengths are unrecoverable.
            let v = crate::http::trim(h.value);
            let n = std::str::from_utf8(v)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or(400u16)?;
            if length.is_some_and(|l| l != n) {
                return Err(400);
            }
            length = Some(n);
        }
    }
    Ok(length.unwrap_or(0))
}

/// True when the request of `head` may have its body read: it carries the admin token. With
/// no token configured no request takes a body (changes are refused), so an unknown client
/// can never make the admin server hold 64 KiB per connection.
pub fn may_send_body(head: &[u8], host: &dyn Host) -> bool {
    let Some(token) = &host.config().admin_token else {
        return false;
    };
    let mut hs = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut hs);
    let _ = req.parse(head);
    let auth = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"));
    bearer_is(auth.map(|h| h.value), token)
}

/// True when `authorization` is `Bearer <token>`, compared in constant time.
fn bearer_is(authorization: Option<&[u8]>, token: &str) -> bool {
    // RFC 9110 §11.1: the scheme name is case-insensitive.
    authorization
        .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
        .is_some_and(|v| constant_time_eq(crate::http::trim(&v[7..]), token.as_bytes()))
}

fn route(r: &mut Reply, head: &[u8], body: &[u8], host: &mut dyn Host) {
    let mut hs = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut hs);
    let Ok(httparse::Status::Complete(_)) = req.parse(head) else {
        r.close = true;
        respond(r, 400, "text/plain", b"bad request\n", false, &[]);
        return;
    };
    let method = req.method.unwrap_or("");
    let path = req.path.unwrap_or("");
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if req.version == Some(0)
        || header("connection").is_some_and(|v| crate::http::has_token(v, "close"))
    {
        r.close = true;
    }
    let head_only = method == "HEAD";
    let config = host.config();
    if let Some(token) = &config.admin_token {
        let auth = header("authorization");
        // A browser cannot send a bearer token: Basic with the token as password will do.
        let ok = bearer_is(auth, token)
            || auth.is_some_and(|v| crate::control::page::basic_token_ok(v, token.as_bytes()));
        if !ok {
            // The status page asks the browser for credentials; the API names its scheme.
            let challenge = if path == "/" {
                "WWW-Authenticate: Basic realm=\"ferry admin\""
            } else {
                "WWW-Authenticate: Bearer realm=\"ferry\""
            };
            respond(
                r,
                401,
                "text/plain",
                b"unauthorized\n",
                head_only,
                &[challenge],
            );
            return;
        }
    }
    let known = matches!(path, "/health" | "/readyz" | "/status" | "/metrics" | "/")
        || crate::control::stats::owns(path);
    if !known && (path == "/api/v1" || path.starts_with("/api/v1/")) {
        api(r, method, path, body, host);
        return;
    }
    if !known {
        respond(r, 404, "text/plain", b"not found\n", head_only, &[]);
        return;
    }
    if method != "GET" && method != "HEAD" {
        respond(
            r,
            405,
            "text/plain",
            b"method not allowed\n",
            false,
            &["Allow: GET, HEAD"],
        );
        return;
    }
    let shared = host.shared();
    let draining = shared.draining.load(Ordering::Relaxed);
    let snap = Snapshot {
        stats: &shared.stats,
        config,
        active: shared.active.load(Ordering::Relaxed),
        panics: shared.panics.load(Ordering::Relaxed),
        draining,
    };
    match path {
        "/health" if draining => respond(
            r,
            503,
            "application/json",
            b"{\"status\":\"draining\"}",
            head_only,
            &[],
        ),
        "/health" => respond(
            r,
            200,
            "application/json",
            b"{\"status\":\"ok\"}",
            head_only,
            &[],
        ),
        "/readyz" => {
            // DESIGN §6, §7.4: every pool and every backend can serve; the body says which
            // cannot.
            let (ready, body) = snap.readiness();
            let status = if ready { 200 } else { 503 };
            respond(
                r,
                status,
                "application/json",
                body.as_bytes(),
                head_only,
                &[],
            );
        }
        "/status" => respond(
            r,
            200,
            "application/json",
            snap.status_json().as_bytes(),
            head_only,
            &[],
        ),
        "/" => {
            let page = crate::control::page::render(config, shared);
            respond(
                r,
                200,
                "text/html; charset=utf-8",
                page.as_bytes(),
                head_only,
                &[],
            );
        }
        p if crate::control::stats::owns(p) => {
            match crate::control::stats::answer(p, config, shared) {
                Some(body) => respond(r, 200, "application/json", body.as_bytes(), head_only, &[]),
                None => respond(r, 404, "text/plain", b"no such site\n", head_only, &[]),
            }
        }
        _ => respond(
            r,
            200,
            "text/plain; version=0.0.4",
            snap.prometheus().as_bytes(),
            head_only,
            &[],
        ),
    }
}

#[cfg(feature = "api")]
/// A control API call (DESIGN §9), its token already checked.
fn api(r: &mut Reply, method: &str, path: &str, body: &[u8], host: &mut dyn Host) {
    let head_only = method == "HEAD";
    let method = if head_only { "GET" } else { method };
    if method != "GET" && host.config().admin_token.is_none() {
        // Without a token anyone who reaches the port could rewrite the proxy.
        let why = crate::control::api::Reply::error(
            403,
            "changes need a token: set admin.token to enable changes",
        );
        respond(r, 403, "application/json", why.body.as_bytes(), false, &[]);
        return;
    }
    let a = if path == "/api/v1/certificates" {
        crate::control::api::certs::answer(method, body, host.config())
    } else {
        host.api(method, path, body)
    };
    let allow = a.allow.map(|m| format!("Allow: {m}"));
    let extra: Vec<&str> = allow.as_deref().into_iter().collect();
    respond(
        r,
        a.status,
        "application/json",
        a.body.as_bytes(),
        head_only,
        &extra,
    );
}

/// Without the `api` feature there is no control API (only `/api/v1/stats`).
#[cfg(not(feature = "api"))]
fn api(r: &mut Reply, method: &str, _: &str, _: &[u8], _: &mut dyn Host) {
    let why = b"{\"error\":\"the control API needs a ferry built with the `api` feature\"}";
    respond(r, 404, "application/json", why, method == "HEAD", &[]);
}

/// Answers a request the session refuses before reading it whole (too large a head or body,
/// a chunked body); the connection then closes.
pub fn refuse(status: u16, why: &str, out: &mut Vec<u8>) {
    let mut r = Reply { out, close: true };
    respond(&mut r, status, "text/plain", why.as_bytes(), false, &[]);
}

fn respond(r: &mut Reply, status: u16, ctype: &str, body: &[u8], head_only: bool, extra: &[&str]) {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n", body.len());
    for e in extra {
        head.push_str(e);
        head.push_str("\r\n");
    }
    if r.close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    r.out.extend_from_slice(head.as_bytes());
    if !head_only {
        r.out.extend_from_slice(body);
    }
}

/// Compares without an early exit, so the time taken does not tell how much of a guess
/// was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
