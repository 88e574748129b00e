//! Request heads rewritten for a backend server (DESIGN §7.1): origin-form target as routed,
//! hop-by-hop fields removed as for the forward role, and the forwarding fields a server
//! needs to know its client: `X-Forwarded-For/-Proto/-Host`, `X-Real-IP`, `X-Request-Id`.
//! From a peer in `trusted_proxies` the chain it reports is believed and extended; from
//! anyone else those fields are replaced, so a client cannot spoof them. `Host` goes last
//! (`finish`), since with `host: backend` it depends on the server an attempt goes to.

use super::request::RequestHead;
use super::rewrite::{copy_request_fields, end_request_fields, write_field};
use crate::buffer::Buf;
use crate::config::{HeaderOps, Reverse};
use std::io::Write;
use std::net::IpAddr;

/// What the rewriting needs besides the request.
pub struct Forwarding<'a> {
    /// The request target the server gets (from the routing).
    pub target: &'a str,
    /// The client: the peer, or the address its trusted proxy's PROXY header gave.
    pub client: IpAddr,
    /// The peer is in `trusted_proxies`: its forwarding fields are believed.
    pub trusted: bool,
    /// The listener's scheme: `http` or `https`.
    pub scheme: &'a str,
    /// The Host the client asked for, as it came.
    pub host: &'a str,
    /// Generated for this request; used when a trusted peer sent none.
    pub new_id: &'a str,
    pub via: bool,
    pub edits: &'a HeaderOps,
}

/// Fields ferry writes itself on a reverse request.
const FORWARDING: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
    "forwarded",
];

/// Writes the head for a backend server, all but `Host` and the blank line (`finish`).
/// Returns the request id sent on (kept from a trusted peer, or `f.new_id`).
pub fn request_head(
    out: &mut Buf,
    req: &RequestHead<'_, '_>,
    f: &Forwarding<'_>,
    rev: &Reverse,
) -> String {
    let _ = write!(out, "{} {} HTTP/1.{}\r\n", req.method, f.target, req.minor);
    let field = |name: &'static str| believed(req, f.trusted, name);
    // A field ferry writes or removes itself cannot come from the client under its
    // underscore spelling either: `X_Forwarded_For` and `Remote_User` are `HTTP_X_FORWARDED_FOR`
    // and `HTTP_REMOTE_USER` to CGI, PHP, WSGI and Rack backends, as the dashed fields are
    // (nginx drops fields with underscores for this). Other fields with underscores go on.
    let ferrys =
        |name: &str| is_forwarding_field(name) || is_proxy_field(name) || f.edits.replaces(name);
    copy_request_fields(out, req, |name| {
        ferrys(name) || (name.contains('_') && ferrys(&name.replace('_', "-")))
    });
    let chain = forwarded_for(out, req, f.client, f.trusted);
    // X-Real-IP: the rightmost address of the chain that is not a trusted proxy.
    let real = std::iter::once(Some(f.client))
        .chain(chain.iter().rev().map(|e| parse_ip(e)))
        .find(|ip| ip.is_none_or(|ip| !rev.trusts(ip)));
    match real {
        Some(Some(ip)) => {
            let _ = write!(out, "X-Real-IP: {ip}\r\n");
        }
        // An entry that is not an address cannot be a trusted proxy: it is the client.
        Some(None) => {
            let e = chain.iter().rev().find(|e| parse_ip(e).is_none()).copied();
            write_field(out, "X-Real-IP", e.unwrap_or_default());
        }
        // Every hop is a trusted proxy: the farthest one is the client, or the peer itself
        // when it named none (a balancer's own request), never an empty field.
        None => match chain.first() {
            Some(first) => write_field(out, "X-Real-IP", first),
            None => {
                let _ = write!(out, "X-Real-IP: {}\r\n", f.client);
            }
        },
    }
    let proto = field("x-forwarded-proto").next();
    write_field(
        out,
        "X-Forwarded-Proto",
        proto.unwrap_or(f.scheme.as_bytes()),
    );
    let host = field("x-forwarded-host")
        .next()
        .unwrap_or(f.host.as_bytes());
    if !host.is_empty() {
        write_field(out, "X-Forwarded-Host", host);
    }
    let id = field("x-request-id")
        .next()
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or(f.new_id)
        .to_string();
    write_field(out, "X-Request-Id", id.as_bytes());
    end_request_fields(out, req, f.via, Some(f.edits));
    id
}

/// True for the forwarding fields ferry writes itself on a reverse request.
pub fn is_forwarding_field(name: &str) -> bool {
    FORWARDING.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// The non-empty values of the fields named `name`, when the peer is trusted to send them.
fn believed<'r>(
    req: &'r RequestHead<'_, '_>,
    trusted: bool,
    name: &'static str,
) -> impl Iterator<Item = &'r [u8]> + 'r {
    trusted
        .then(|| {
            req.headers
                .iter()
                .filter(move |h| h.name.eq_ignore_ascii_case(name))
        })
        .into_iter()
        .flatten()
        .map(|h| super::trim(h.value))
        .filter(|v| !v.is_empty())
}

/// Writes `X-Forwarded-For`: a trusted peer's chain, then the client. Returns the chain.
fn forwarded_for<'r>(
    out: &mut Buf,
    req: &'r RequestHead<'_, '_>,
    client: IpAddr,
    trusted: bool,
) -> Vec<&'r [u8]> {
    out.push(b"X-Forwarded-For: ");
    let mut chain: Vec<&[u8]> = Vec::new();
    for v in believed(req, trusted, "x-forwarded-for") {
        chain.extend(
            v.split(|&b| b == b',')
                .map(super::trim)
                .filter(|e| !e.is_empty()),
        );
    }
    for e in &chain {
        out.push(e);
        out.push(b", ");
    }
    let _ = write!(out, "{client}\r\n");
    chain
}

/// Writes what an external auth service is told of a request (DESIGN §7.3, the contract of
/// Traefik's ForwardAuth and nginx's `auth_request`): `X-Forwarded-Method`, `-Proto`, `-Host`,
/// `-Uri` (`uri`: the target as routing normalized it, the path the backend gets) and `-For`,
/// believed from a trusted peer as for a backend, then the client's `Authorization` and
/// `Cookie` fields as they came. Nothing else of the request goes: the service decides on
/// these alone. `client`, `trusted`, `scheme` and `host` mean what they mean in `Forwarding`.
pub fn auth_request_fields(
    out: &mut Buf,
    req: &RequestHead<'_, '_>,
    uri: &str,
    client: IpAddr,
    trusted: bool,
    scheme: &str,
    host: &str,
) {
    write_field(out, "X-Forwarded-Method", req.method.as_bytes());
    let proto = believed(req, trusted, "x-forwarded-proto").next();
    write_field(out, "X-Forwarded-Proto", proto.unwrap_or(scheme.as_bytes()));
    let host = believed(req, trusted, "x-forwarded-host")
        .next()
        .unwrap_or(host.as_bytes());
    if !host.is_empty() {
        write_field(out, "X-Forwarded-Host", host);
    }
    write_field(out, "X-Forwarded-Uri", uri.as_bytes());
    forwarded_for(out, req, client, trusted);
    for h in req.headers {
        if h.name.eq_ignore_ascii_case("authorization") || h.name.eq_ignore_ascii_case("cookie") {
            write_field(out, h.name, h.value);
        }
    }
}

/// `Proxy-*` fields are between a client and its proxy (DESIGN §7.1 removes them both
/// ways): a server behind ferry has no business with them.
pub fn is_proxy_field(name: &str) -> bool {
    name.get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case("proxy-"))
}

/// Ends a head from `request_head` with the Host the attempt's server gets.
pub fn finish(out: &mut Buf, host: &str) {
    write_field(out, "Host", host.as_bytes());
    out.push(b"\r\n");
}

/// An address written in an `X-Forwarded-For` entry: `1.2.3.4`, `::1`, `[::1]`, with or
/// without a port.
fn parse_ip(e: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(e).ok()?;
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    s.parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.ip().to_canonical())
        .or_else(|| s.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev() -> crate::config::Config {
        crate::config::parse(
            "reverse:\n  listen: [\"127.0.0.1:0\"]\n  trusted_proxies: [\"10.0.0.0/8\"]\n  sites: [{hosts: [\"*\"], routes: [{backend: b}]}]\n  backends: {b: {servers: [{url: \"http://127.0.0.1:1\"}]}}\n",
            None,
        )
        .unwrap()
    }

    fn head(raw: &str, client: &str, trusted: bool, edits: &HeaderOps) -> String {
        let c = rev();
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let req = crate::http::request::parse_in(raw.as_bytes(), &mut hs, true)
            .unwrap()
            .unwrap();
        let mut out = Buf::with_capacity(64);
        let f = Forwarding {
            target: "/t",
            client: client.parse().unwrap(),
            trusted,
            scheme: "http",
            host: req.host.unwrap_or(""),
            new_id: "gen",
            via: true,
            edits,
        };
        request_head(&mut out, &req, &f, c.reverse.as_ref().unwrap());
        finish(&mut out, "backend:1");
        String::from_utf8(out.bytes().to_vec()).unwrap()
    }

    const SPOOF: &str = "GET /x HTTP/1.1\r\nHost: site\r\nX-Forwarded-For: 1.1.1.1, 10.0.0.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nX-Real-IP: 6.6.6.6\r\nX-Request-Id: abc\r\nForwarded: for=6.6.6.6\r\nConnection: close\r\nAccept: */*\r\n\r\n";

    #[test]
    fn an_untrusted_client_cannot_spoof_forwarding_fields() {
        let h = head(SPOOF, "192.0.2.7", false, &HeaderOps::default());
        assert_eq!(
            h,
            "GET /t HTTP/1.1\r\nAccept: */*\r\nX-Forwarded-For: 192.0.2.7\r\nX-Real-IP: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: site\r\nX-Request-Id: gen\r\nVia: 1.1 ferry\r\nHost: backend:1\r\n\r\n"
        );
    }

    #[test]
    fn a_trusted_proxy_extends_the_chain() {
        let h = head(SPOOF, "10.1.2.3", true, &HeaderOps::default());
        assert!(
            h.contains("X-Forwarded-For: 1.1.1.1, 10.0.0.9, 10.1.2.3\r\n"),
            "{h}"
        );
        // 10.1.2.3 and 10.0.0.9 are trusted proxies: the client is 1.1.1.1
        assert!(h.contains("X-Real-IP: 1.1.1.1\r\n"), "{h}");
        assert!(h.contains(
            "X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nX-Request-Id: abc\r\n"
        ));
        assert!(!h.contains("Forwarded: for=6"), "{h}");
    }

    #[test]
    fn header_rules_remove_set_and_add() {
        let edits = HeaderOps {
            set: vec![("Accept".into(), "text/plain".into())],
            add: vec![("X-Site".into(), "a".into())],
            remove: vec!["user-agent".into()],
        };
        let raw =
            "GET / HTTP/1.1\r\nHost: s\r\nUser-Agent: u\r\nAccept: */*\r\nX-Site: client\r\n\r\n";
        let h = head(raw, "127.0.0.1", false, &edits);
        assert!(!h.contains("User-Agent") && !h.contains("*/*"), "{h}");
        assert!(
            h.contains("Accept: text/plain\r\n")
                && h.contains("X-Site: client\r\n")
                && h.contains("X-Site: a\r\n"),
            "{h}"
        );
    }
}
