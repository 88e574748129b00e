//! Heads rewritten for the next hop: hop-by-hop fields removed (RFC 9110 §7.6.1), the target
//! put in the form the next hop expects, and ferry's own `Connection` and credentials added.

use super::framing::Framing;
use super::has_token;
use super::request::{MethodKind, RequestHead, Target};
use super::response::ResponseHead;
use crate::buffer::Buf;
use crate::config::HeaderOps;
use std::io::Write;

/// How the request target is written for the next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`, for an origin server.
    Origin,
    /// `http://host:port/path?query` or `host:port` for CONNECT, for an upstream proxy.
    Absolute,
}

/// What ferry says in the `Connection` field it adds to a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionField {
    /// Nothing: the default of the version applies.
    Default,
    Close,
    KeepAlive,
    Upgrade,
}

/// Fields that describe one hop only and are never forwarded as they came.
fn is_hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// The `Via` field ferry adds to what it forwards (RFC 9110 §7.6.3), unless `via: false`.
const VIA: &[u8] = b"Via: 1.1 ferry\r\n";

/// True when a `Connection` (or `Proxy-Connection`) field of `headers` names `name`, which is
/// then hop-by-hop. A message's framing and Host are never: a `Connection: Content-Length`
/// that removed the length but not the body would smuggle the body to the next hop as a
/// request of its own (DESIGN §3).
fn named_by_connection(headers: &[httparse::Header<'_>], name: &str) -> bool {
    if ["content-length", "transfer-encoding", "host"]
        .iter()
        .any(|f| name.eq_ignore_ascii_case(f))
    {
        return false;
    }
    headers.iter().any(|h| {
        (h.name.eq_ignore_ascii_case("connection")
            || h.name.eq_ignore_ascii_case("proxy-connection"))
            && has_token(h.value, name)
    })
}

/// Writes `host[:port]` (brackets for IPv6), leaving out the port when it is `default`.
pub fn write_authority(out: &mut Buf, t: &Target<'_>, default: Option<u16>) {
    if t.is_v6() {
        let _ = write!(out, "[{}]", t.host);
    } else {
        out.push(t.host.as_bytes());
    }
    if default != Some(t.port) {
        let _ = write!(out, ":{}", t.port);
    }
}

/// Writes the request head for the next hop, all but its end: `finish_request_head` adds the
/// credentials of the hop it goes to (and can be redone for another upstream on failover).
/// A length is sent as one `Content-Length` (identical duplicates are folded); `Max-Forwards`
/// of an OPTIONS or TRACE goes down by one (RFC 9110 §7.6.2); `via` adds ferry's `Via`.
pub fn request_head(out: &mut Buf, req: &RequestHead<'_, '_>, form: TargetForm, via: bool) {
    let t = &req.target;
    let default_port = if req.kind == MethodKind::Connect {
        None
    } else {
        Some(80)
    };
    out.push(req.method.as_bytes());
    out.push(b" ");
    match (req.kind, form) {
        (MethodKind::Connect, _) => write_authority(out, t, None),
        (_, TargetForm::Absolute) => {
            out.push(b"http://");
            write_authority(out, t, Some(80));
            write_path(out, t.path);
        }
        // RFC 9112 §3.2.4: an OPTIONS for the server as a whole goes on as `*`.
        (_, TargetForm::Origin) if req.method == "OPTIONS" && t.path.is_empty() => out.push(b"*"),
        (_, TargetForm::Origin) => write_path(out, t.path),
    }
    let _ = write!(out, " HTTP/1.{}\r\nHost: ", req.minor);
    write_authority(out, t, default_port);
    out.push(b"\r\n");
    copy_request_fields(out, req, |_| false);
    end_request_fields(out, req, via, None);
}

/// Copies the client's fields that go on to the next hop: not `Host`, the length (sent as
/// one field by `end_request_fields`), the client's `Proxy-Authorization`, hop-by-hop fields
/// (`Upgrade` stays when upgrading), nor what `skip` names; `Max-Forwards` goes down by one.
pub(crate) fn copy_request_fields(
    out: &mut Buf,
    req: &RequestHead<'_, '_>,
    skip: impl Fn(&str) -> bool,
) {
    let mut max_forwards_sent = false;
    for h in req.headers {
        let name = h.name;
        let kept_upgrade = req.upgrade && name.eq_ignore_ascii_case("upgrade");
        if name.eq_ignore_ascii_case("host")
            || name.eq_ignore_ascii_case("proxy-authorization")
            || name.eq_ignore_ascii_case("content-length")
            || (!kept_upgrade && (is_hop_by_hop(name) || named_by_connection(req.headers, name)))
            || skip(name)
        {
            continue;
        }
        if let (Some(n), true) = (req.max_forwards, name.eq_ignore_ascii_case("max-forwards")) {
            if !max_forwards_sent {
                let _ = write!(out, "Max-Forwards: {}\r\n", n.saturating_sub(1));
                max_forwards_sent = true;
            }
            continue;
        }
        write_field(out, name, h.value);
    }
}

/// The fields ferry adds after the client's: the length, `Via`, a site's own fields
/// (`edits`), and `Connection: Upgrade` when upgrading.
pub(crate) fn end_request_fields(
    out: &mut Buf,
    req: &RequestHead<'_, '_>,
    via: bool,
    edits: Option<&HeaderOps>,
) {
    if let Framing::Length(n) = req.framing {
        let _ = write!(out, "Content-Length: {n}\r\n");
    }
    if via {
        out.push(VIA);
    }
    if let Some(e) = edits {
        write_edits(out, e);
    }
    if req.upgrade {
        out.push(b"Connection: Upgrade\r\n");
    }
}

/// Writes the `set` and `add` fields of a site's header rules (their `remove`, and the
/// fields `set` replaces, were left out when copying).
fn write_edits(out: &mut Buf, e: &HeaderOps) {
    for (name, value) in e.set.iter().chain(&e.add) {
        write_field(out, name, value.as_bytes());
    }
}

/// Ends a head from `request_head`: the upstream's own `Proxy-Authorization` (the client's is
/// never forwarded), then the blank line.
pub fn finish_request_head(out: &mut Buf, proxy_auth: Option<&str>) {
    if let Some(auth) = proxy_auth {
        write_field(out, "Proxy-Authorization", auth.as_bytes());
    }
    out.push(b"\r\n");
}

/// Turns the absolute-form request line of a head written by `request_head` (the first `base`
/// bytes of `head`) into origin-form, for a request that falls back from a pool to going
/// direct. Returns the new `base`. CONNECT heads are left as they are.
pub fn to_origin_form(head: &mut Buf, base: usize) -> usize {
    let bytes = &head.bytes()[..base];
    let Some(sp) = bytes.iter().position(|&b| b == b' ') else {
        return base;
    };
    let target = &bytes[sp + 1..];
    if !target.starts_with(b"http://") {
        return base;
    }
    // `request_head` always writes a path that starts with '/'.
    let Some(slash) = target[7..].iter().position(|&b| b == b'/') else {
        return base;
    };
    let cut = sp + 1..sp + 1 + 7 + slash;
    let mut out = Vec::with_capacity(base);
    out.extend_from_slice(&bytes[..cut.start]);
    out.extend_from_slice(&bytes[cut.end..]);
    let new_base = out.len();
    head.truncate(0);
    head.push(&out);
    new_base
}

/// How a response head is written for the client.
#[derive(Debug, Clone, Copy)]
pub struct ResponseForm<'a> {
    /// ferry's `Connection` field.
    pub conn: ConnectionField,
    /// Add ferry's `Via`.
    pub via: bool,
    /// The body is de-chunked for an HTTP/1.0 client: no `Transfer-Encoding`, and the end
    /// of the body is the end of the connection.
    pub dechunk: bool,
    /// A site's response header rules: set for every reverse response (whose `Proxy-*`
    /// fields are then dropped too), `None` for the forward role.
    pub edits: Option<&'a HeaderOps>,
    /// `Strict-Transport-Security: max-age=N` replaces the server's (a site's
    /// `hsts_max_age_secs` on a TLS connection); 0 = the server's field as it came.
    pub hsts: u64,
}

/// Writes the response head for the client. Its length, if any, goes as one
/// `Content-Length` (identical duplicates are folded).
pub fn response_head(out: &mut Buf, resp: &ResponseHead<'_, '_>, form: ResponseForm<'_>) {
    let _ = write!(out, "HTTP/1.1 {} ", resp.code);
    out.push(resp.reason.as_bytes());
    out.push(b"\r\n");
    let conn = form.conn;
    let upgrading = conn == ConnectionField::Upgrade;
    for h in resp.headers {
        let name = h.name;
        let kept_upgrade = upgrading && name.eq_ignore_ascii_case("upgrade");
        if name.eq_ignore_ascii_case("content-length")
            || (form.dechunk && name.eq_ignore_ascii_case("transfer-encoding"))
            || (!kept_upgrade && (is_hop_by_hop(name) || named_by_connection(resp.headers, name)))
            || form
                .edits
                .is_some_and(|e| e.replaces(name) || super::forwarded::is_proxy_field(name))
            || (form.hsts > 0 && name.eq_ignore_ascii_case("strict-transport-security"))
        {
            continue;
        }
        write_field(out, name, h.value);
    }
    if let Some(n) = resp.content_length {
        let _ = write!(out, "Content-Length: {n}\r\n");
    }
    if form.via {
        out.push(VIA);
    }
    if let Some(e) = form.edits {
        write_edits(out, e);
    }
    if form.hsts > 0 {
        let _ = write!(out, "Strict-Transport-Security: max-age={}\r\n", form.hsts);
    }
    match conn {
        ConnectionField::Default => {}
        ConnectionField::Close => out.push(b"Connection: close\r\n"),
        ConnectionField::KeepAlive => out.push(b"Connection: keep-alive\r\n"),
        ConnectionField::Upgrade => out.push(b"Connection: Upgrade\r\n"),
    }
    out.push(b"\r\n");
}

fn write_path(out: &mut Buf, path: &str) {
    if !path.starts_with('/') {
        out.push(b"/");
    }
    out.push(path.as_bytes());
}

pub(crate) fn write_field(out: &mut Buf, name: &str, value: &[u8]) {
    out.push(name.as_bytes());
    out.push(b": ");
    out.push(value);
    out.push(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{request, response};

    fn rewrite(raw: &[u8], form: TargetForm, auth: Option<&str>) -> String {
        rewrite_via(raw, form, auth, false)
    }

    fn rewrite_via(raw: &[u8], form: TargetForm, auth: Option<&str>, via: bool) -> String {
        let mut hs = [httparse::EMPTY_HEADER; 100];
        let req = request::parse(raw, &mut hs).unwrap().unwrap();
        let mut out = Buf::with_capacity(64);
        request_head(&mut out, &req, form, via);
        finish_request_head(&mut out, auth);
        String::from_utf8(out.bytes().to_vec()).unwrap()
    }

    #[test]
    fn request_to_origin_drops_hop_by_hop_and_client_credentials() {
        let raw = b"GET http://example.com/a?b HTTP/1.1\r\nHost: wrong\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic Y2xpZW50\r\nTE: trailers\r\nAccept: */*\r\n\r\n";
        assert_eq!(
            rewrite(raw, TargetForm::Origin, None),
            "GET /a?b HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"
        );
    }

    #[test]
    fn request_to_upstream_is_absolute_with_its_own_credentials() {
        let raw =
            b"GET http://[::1]:8080?q HTTP/1.0\r\nProxy-Authorization: Basic Y2xpZW50\r\n\r\n";
        assert_eq!(
            rewrite(raw, TargetForm::Absolute, Some("Basic dXA=")),
            "GET http://[::1]:8080/?q HTTP/1.0\r\nHost: [::1]:8080\r\nProxy-Authorization: Basic dXA=\r\n\r\n"
        );
        let raw = b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n";
        assert_eq!(
            rewrite(raw, TargetForm::Absolute, None),
            "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n"
        );
    }

    #[test]
    fn absolute_form_becomes_origin_form() {
        let raw = b"GET http://h:8080/a?b HTTP/1.1\r\nX: y\r\n\r\n";
        let mut hs = [httparse::EMPTY_HEADER; 8];
        let req = request::parse(raw, &mut hs).unwrap().unwrap();
        let mut out = Buf::with_capacity(64);
        request_head(&mut out, &req, TargetForm::Absolute, false);
        let len = out.len();
        let base = to_origin_form(&mut out, len);
        finish_request_head(&mut out, None);
        assert_eq!(base, out.len() - 2);
        assert_eq!(
            std::str::from_utf8(out.bytes()).unwrap(),
            "GET /a?b HTTP/1.1\r\nHost: h:8080\r\nX: y\r\n\r\n"
        );
    }

    #[test]
    fn upgrade_keeps_its_fields() {
        let raw = b"GET http://h/ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(
            rewrite(raw, TargetForm::Origin, None),
            "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        );
    }

    #[test]
    fn response_gets_ferry_connection_field() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\n";
        let mut hs = [httparse::EMPTY_HEADER; 16];
        let resp = response::parse(raw, &mut hs, MethodKind::Other)
            .unwrap()
            .unwrap();
        let mut out = Buf::with_capacity(16);
        let form = ResponseForm {
            conn: ConnectionField::Close,
            via: false,
            dechunk: false,
            edits: None,
            hsts: 0,
        };
        response_head(&mut out, &resp, form);
        assert_eq!(
            std::str::from_utf8(out.bytes()).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        );
    }

    fn rewrite_response(raw: &[u8], form: ResponseForm) -> String {
        let mut hs = [httparse::EMPTY_HEADER; 16];
        let resp = response::parse(raw, &mut hs, MethodKind::Other)
            .unwrap()
            .unwrap();
        let mut out = Buf::with_capacity(16);
        response_head(&mut out, &resp, form);
        String::from_utf8(out.bytes().to_vec()).unwrap()
    }

    #[test]
    fn connection_never_removes_framing_or_host() {
        let raw = b"POST http://h/ HTTP/1.1\r\nConnection: Content-Length, Host, Transfer-Encoding\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(
            rewrite(raw, TargetForm::Origin, None),
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n"
        );
        let raw = b"HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n";
        let form = ResponseForm {
            conn: ConnectionField::Default,
            via: false,
            dechunk: false,
            edits: None,
            hsts: 0,
        };
        assert_eq!(
            rewrite_response(raw, form),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn duplicate_lengths_fold_and_via_is_added() {
        let raw = b"PUT http://h/ HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\nVia: 1.0 other\r\n\r\n";
        assert_eq!(
            rewrite_via(raw, TargetForm::Origin, None, true),
            "PUT / HTTP/1.1\r\nHost: h\r\nVia: 1.0 other\r\nContent-Length: 2\r\nVia: 1.1 ferry\r\n\r\n"
        );
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n";
        let form = ResponseForm {
            conn: ConnectionField::Default,
            via: true,
            dechunk: false,
            edits: None,
            hsts: 0,
        };
        assert_eq!(
            rewrite_response(raw, form),
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nVia: 1.1 ferry\r\n\r\n"
        );
    }

    #[test]
    fn dechunked_response_loses_transfer_encoding() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n";
        let form = ResponseForm {
            conn: ConnectionField::Close,
            via: false,
            dechunk: true,
            edits: None,
            hsts: 0,
        };
        assert_eq!(
            rewrite_response(raw, form),
            "HTTP/1.1 200 OK\r\nX: y\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn max_forwards_goes_down_for_options_and_trace_only() {
        let raw = b"OPTIONS http://h/ HTTP/1.1\r\nMax-Forwards: 3\r\n\r\n";
        assert_eq!(
            rewrite(raw, TargetForm::Origin, None),
            "OPTIONS / HTTP/1.1\r\nHost: h\r\nMax-Forwards: 2\r\n\r\n"
        );
        let raw = b"TRACE http://h HTTP/1.1\r\nMax-Forwards: 7\r\nMax-Forwards: 2\r\n\r\n";
        assert_eq!(
            rewrite(raw, TargetForm::Origin, None),
            "TRACE / HTTP/1.1\r\nHost: h\r\nMax-Forwards: 1\r\n\r\n"
        );
        let raw = b"OPTIONS http://h:81 HTTP/1.1\r\n\r\n";
        assert_eq!(
            rewrite(raw, TargetForm::Origin, None),
            "OPTIONS * HTTP/1.1\r\nHost: h:81\r\n\r\n"
        );
        let raw = b"GET http://h/ HTTP/1.1\r\nMax-Forwards: 3\r\n\r\n";
        assert_eq!(
            rewrite(raw, TargetForm::Origin, None),
            "GET / HTTP/1.1\r\nHost: h\r\nMax-Forwards: 3\r\n\r\n"
        );
    }
}
