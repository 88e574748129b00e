//! The admin server's answers: one complete request head in, one response out. Which paths
//! exist, the token check, and the bodies of `/health`, `/readyz`, `/status` and `/metrics`;
//! the status page (`/`) and `/api/v1/stats` are rendered by `control::page` and
//! `control::stats`.

use crate::config::Config;
use crate::metrics::Snapshot;
use crate::shared::Shared;
use std::sync::atomic::Ordering;

/// A response being written into the connection's output.
struct Reply<'a> {
    out: &'a mut Vec<u8>,
    /// The connection ends after this response (it then says `Connection: close`).
    close: bool,
}

/// Answers one request head (through its blank line) by appending the response to `out`.
/// Returns true when the connection must close after it.
pub fn answer(head: &[u8], config: &Config, shared: &Shared, out: &mut Vec<u8>) -> bool {
    let mut r = Reply { out, close: false };
    route(&mut r, head, config, shared);
    r.close
}

fn route(r: &mut Reply, head: &[u8], config: &Config, shared: &Shared) {
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
    if header("content-length").is_some_and(|v| v != b"0") || header("transfer-encoding").is_some()
    {
        // Admin requests carry no body; refusing keeps the stream in sync.
        r.close = true;
        respond(
            r,
            400,
            "text/plain",
            b"no request body expected\n",
            false,
            &[],
        );
        return;
    }
    if req.version == Some(0)
        || header("connection").is_some_and(|v| crate::http::has_token(v, "close"))
    {
        r.close = true;
    }
    let head_only = method == "HEAD";
    if let Some(token) = &config.admin_token {
        // RFC 9110 §11.1: the scheme name is case-insensitive.
        let auth = header("authorization");
        let ok = auth
            .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
            .is_some_and(|v| constant_time_eq(crate::http::trim(&v[7..]), token.as_bytes()))
            // A browser cannot send a bearer token: Basic with the token as password will do.
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

/// Answers a head that grew past the size limit; the connection then closes.
pub fn too_large(out: &mut Vec<u8>) {
    let mut r = Reply { out, close: true };
    respond(
        &mut r,
        431,
        "text/plain",
        b"request too large\n",
        false,
        &[],
    );
}

fn respond(r: &mut Reply, status: u16, ctype: &str, body: &[u8], head_only: bool, extra: &[&str]) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
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
