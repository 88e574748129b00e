//! The reverse role's routing (DESIGN §7.1): the site by Host (an absolute-form target's
//! host wins), the route by the path with its dot-segments removed, then the route's method
//! list, redirect, HTTPS redirect and body limit. What comes out is where the request goes
//! and the target its server receives, or the answer ferry gives itself.

use crate::config::{HeaderOps, Reverse, RouteAction};
use crate::http::framing::Framing;
use crate::http::reply::Refusal;
use crate::http::request::{MethodKind, RequestHead};
use crate::route::path::{normalize_path, without_params};
use crate::route::site::strip_prefix;

/// A request that goes to a backend.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub site: usize,
    pub route: usize,
    /// Index into `Reverse::backends`.
    pub backend: usize,
    /// The request target the server gets: the normalized path, less the route's prefix when
    /// it says `strip_prefix`, and the query as it came.
    pub target: String,
    /// This request's own field edits, in place of the route's: theirs plus the fields a site's
    /// auth service passed on (`copy_headers`). `None`: the route's.
    pub request_edits: Option<Box<HeaderOps>>,
}

/// How far routing got with a request: its site and route once found. A request that ferry
/// answers itself is counted there (DESIGN §7.4).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub site: Option<usize>,
    pub route: Option<usize>,
}

/// Methods named in the `Allow` of a 405 for CONNECT (what the sites may serve).
const SITE_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";

/// Where `req` goes, or the answer it gets instead. `https` says whether it came over TLS.
pub fn decide(rev: &Reverse, req: &RequestHead<'_, '_>, tls: Secure) -> Result<Plan, Refusal> {
    decide_at(rev, req, tls, &mut Place::default())
}

/// What the client connection says of TLS.
#[derive(Debug, Clone, Copy, Default)]
pub struct Secure<'a> {
    /// The request came over TLS.
    pub https: bool,
    /// The server name the TLS client asked for (SNI).
    pub sni: Option<&'a str>,
    /// Where `https_redirect` sends plain requests: the TLS listener's port (0 or 443: the
    /// URL names none).
    pub redirect_port: u16,
}

/// `decide`, also telling in `at` how far it got (for the count of ferry's own answers).
pub fn decide_at(
    rev: &Reverse,
    req: &RequestHead<'_, '_>,
    tls: Secure,
    at: &mut Place,
) -> Result<Plan, Refusal> {
    if req.kind == MethodKind::Connect {
        return Err(
            Refusal::new(405, "CONNECT is not served here: this is a reverse proxy")
                .with("Allow", SITE_METHODS.into()),
        );
    }
    // An IPv6 literal of an absolute-form target is held without its brackets; a site's
    // pattern and a Host field have them.
    let bracketed;
    let host = match (req.target.host, req.host) {
        (h, _) if req.target.is_v6() => {
            bracketed = format!("[{h}]");
            bracketed.as_str()
        }
        ("", Some(h)) => h,
        ("", None) if req.minor == 1 => {
            // RFC 9112 §3.2: a server must answer 400 to an HTTP/1.1 request without Host.
            return Err(Refusal::new(400, "an HTTP/1.1 request needs a Host field"));
        }
        ("", None) => "",
        (h, _) => h,
    };
    let Some(site_index) = rev.hosts.lookup(host) else {
        return Err(Refusal::new(404, format!("no site is published for host {host:?}")).kept());
    };
    // RFC 9110 §15.5.20: a connection whose TLS named another site (so carries that site's
    // certificate) does not serve this one.
    if let Some(sni) = tls.sni.filter(|_| tls.https) {
        if rev.hosts.lookup(sni) != Some(site_index) {
            return Err(Refusal::new(
                421,
                format!("this connection's TLS is for {sni:?}, not for host {host:?}"),
            ));
        }
    }
    at.site = Some(site_index);
    let site = &rev.sites[site_index];
    // `OPTIONS *` (or an absolute-form OPTIONS without a path) asks about the server as a
    // whole: the site's root route answers it. Another method's empty path is "/".
    let path = req.target.path;
    let asterisk = path.is_empty() && req.method == "OPTIONS";
    let mut target = String::with_capacity(path.len() + 1);
    let raw: std::borrow::Cow<'_, str> = if path.starts_with('/') {
        path.into()
    } else {
        format!("/{path}").into()
    };
    normalize_path(&raw, &mut target).map_err(|e| Refusal::new(400, e.why()))?;
    let (path, query) = target.split_at(target.find('?').unwrap_or(target.len()));
    // Routes are matched without path parameters (`/admin;p` is `/admin` to the servers that
    // read them); the server still gets them.
    let mut plain = String::new();
    let matched = without_params(path, &mut plain);
    let Some(route_index) = site.table.lookup(matched) else {
        return Err(Refusal::new(
            404,
            format!("site {} has no route for this path", site.name),
        )
        .kept());
    };
    at.route = Some(route_index);
    let route = &site.routes[route_index];
    if !route.methods.is_empty() && !route.methods.iter().any(|m| m == req.method) {
        // A route is chosen by path alone: a shorter one does not take over.
        return Err(Refusal::new(
            405,
            format!(
                "route {} of site {} does not take {}",
                route.name, site.name, req.method
            ),
        )
        .with("Allow", route.methods.join(", "))
        .kept());
    }
    if site.https_redirect && !tls.https {
        let authority = host_without_port(host);
        let port = match tls.redirect_port {
            0 | 443 => String::new(),
            p => format!(":{p}"),
        };
        return Err(redirect(308, format!("https://{authority}{port}{target}")));
    }
    let sent_path = if route.strip_prefix {
        strip_prefix(matched, &route.path)
    } else {
        path
    };
    let backend = match &route.action {
        RouteAction::Redirect { to, status } => {
            return Err(redirect(*status, format!("{to}{sent_path}{query}")));
        }
        RouteAction::Backend(b) => *b,
    };
    if let (Framing::Length(n), max @ 1..) = (req.framing, route.max_body_bytes) {
        if n > max {
            return Err(Refusal::new(
                413,
                format!(
                    "route {} of site {} takes bodies up to {max} bytes",
                    route.name, site.name
                ),
            ));
        }
    }
    let target = if asterisk {
        "*".to_string()
    } else if route.strip_prefix {
        format!("{sent_path}{query}")
    } else {
        target
    };
    Ok(Plan {
        site: site_index,
        route: route_index,
        backend,
        target,
        request_edits: None,
    })
}

/// A redirect answered by ferry (the connection goes on).
fn redirect(status: u16, location: String) -> Refusal {
    Refusal::new(status, format!("moved to {location}"))
        .with("Location", location)
        .kept()
}

/// `host` of `host:port` or `[v6]` of `[v6]:port`.
fn host_without_port(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> crate::config::Config {
        crate::config::parse(
            r#"
reverse:
  listen: ["127.0.0.1:0"]
  sites:
    - name: app
      hosts: ["app.test", "*.app.test"]
      routes:
        - {path: "/", backend: web}
        - {path: "/api", backend: api, strip_prefix: true, methods: [GET, POST]}
        - {path: "/old", redirect: {to: "https://new.test/base"}, strip_prefix: true}
        - {path: "/upload", backend: api, max_body_bytes: 10}
    - name: secure
      hosts: ["secure.test"]
      https_redirect: true
      routes: [{path: "/", backend: web}]
    - name: other
      hosts: ["*"]
      routes: [{path: "/only", backend: web}]
  backends:
    api: {servers: [{url: "http://127.0.0.1:1"}]}
    web: {servers: [{url: "http://127.0.0.1:2"}]}
"#,
            None,
        )
        .unwrap()
    }

    fn run(head: &str) -> Result<Plan, Refusal> {
        let c = config();
        let mut h = [httparse::EMPTY_HEADER; 16];
        let req = crate::http::request::parse_in(head.as_bytes(), &mut h, true)
            .unwrap()
            .unwrap();
        decide(c.reverse.as_ref().unwrap(), &req, Secure::default())
    }

    #[test]
    fn routes_by_host_and_longest_prefix_and_strips() {
        let p =
            run("GET /api/users/../v1?q=/../x HTTP/1.1\r\nHost: APP.test.:8080\r\n\r\n").unwrap();
        assert_eq!((p.site, p.route, p.backend), (0, 1, 0));
        assert_eq!(p.target, "/v1?q=/../x");
        let p = run("GET /api HTTP/1.1\r\nHost: x.app.test\r\n\r\n").unwrap();
        assert_eq!(p.target, "/");
        // path parameters do not hide a route; "//" is "/"
        let p = run("GET /api;v=1/users?q HTTP/1.1\r\nHost: app.test\r\n\r\n").unwrap();
        assert_eq!((p.route, p.target.as_str()), (1, "/users?q"));
        let p = run("GET //api/x HTTP/1.1\r\nHost: app.test\r\n\r\n").unwrap();
        assert_eq!((p.route, p.target.as_str()), (1, "/x"));
        let p = run("GET /apix HTTP/1.1\r\nHost: app.test\r\n\r\n").unwrap();
        assert_eq!((p.route, p.target.as_str()), (0, "/apix"));
        // an absolute-form target's host wins over Host
        let p = run("GET http://app.test/only HTTP/1.1\r\nHost: elsewhere\r\n\r\n").unwrap();
        assert_eq!(p.site, 0);
        let p = run("GET http://app.test?q HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(p.target, "/?q");
        let p = run("OPTIONS * HTTP/1.1\r\nHost: app.test\r\n\r\n").unwrap();
        assert_eq!((p.route, p.target.as_str()), (0, "*"));
    }

    #[test]
    fn answers_what_it_cannot_route() {
        let status = |h: &str| run(h).unwrap_err().status;
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            status("GET /a/../../b HTTP/1.1\r\nHost: app.test\r\n\r\n"),
            400
        );
        assert_eq!(status("GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n"), 404);
        assert_eq!(
            status("CONNECT app.test:443 HTTP/1.1\r\nHost: app.test\r\n\r\n"),
            405
        );
        let r = run("DELETE /api/x HTTP/1.1\r\nHost: app.test\r\n\r\n").unwrap_err();
        assert_eq!(
            (r.status, r.field.unwrap().1),
            (405, "GET, POST".to_string())
        );
        let r = run("POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 11\r\n\r\n");
        assert_eq!(r.unwrap_err().status, 413);
        // the catch-all site has only /only
        assert_eq!(status("GET /x HTTP/1.1\r\nHost: nowhere.test\r\n\r\n"), 404);
        assert!(run("GET /only HTTP/1.1\r\nHost: nowhere.test\r\n\r\n").is_ok());
    }

    #[test]
    fn tells_how_far_routing_got_for_the_count_of_its_answers() {
        let c = config();
        let at = |head: &str| {
            let mut h = [httparse::EMPTY_HEADER; 16];
            let req = crate::http::request::parse_in(head.as_bytes(), &mut h, true)
                .unwrap()
                .unwrap();
            let mut at = Place::default();
            let _ = decide_at(
                c.reverse.as_ref().unwrap(),
                &req,
                Secure::default(),
                &mut at,
            );
            at
        };
        let place = |site, route| Place { site, route };
        assert_eq!(at("GET / HTTP/1.1\r\n\r\n"), place(None, None));
        assert_eq!(
            at("CONNECT app.test:443 HTTP/1.1\r\nHost: app.test\r\n\r\n"),
            place(None, None)
        );
        // the catch-all site, without a route for /x
        assert_eq!(
            at("GET /x HTTP/1.1\r\nHost: nowhere.test\r\n\r\n"),
            place(Some(2), None)
        );
        assert_eq!(
            at("GET /a/../../b HTTP/1.1\r\nHost: app.test\r\n\r\n"),
            place(Some(0), None)
        );
        assert_eq!(
            at("DELETE /api/x HTTP/1.1\r\nHost: app.test\r\n\r\n"),
            place(Some(0), Some(1))
        );
        assert_eq!(
            at("GET /old/a HTTP/1.1\r\nHost: app.test\r\n\r\n"),
            place(Some(0), Some(2))
        );
        assert_eq!(
            at("GET /p HTTP/1.1\r\nHost: secure.test\r\n\r\n"),
            place(Some(1), Some(0))
        );
        assert_eq!(
            at("GET /api/v HTTP/1.1\r\nHost: app.test\r\n\r\n"),
            place(Some(0), Some(1))
        );
    }

    #[test]
    fn redirects_keep_path_and_query() {
        let r = run("GET /old/a/b?x=1 HTTP/1.1\r\nHost: app.test\r\n\r\n").unwrap_err();
        assert_eq!(r.status, 308);
        assert_eq!(r.field.unwrap().1, "https://new.test/base/a/b?x=1");
        let r = run("GET /p?q HTTP/1.1\r\nHost: secure.test:80\r\n\r\n").unwrap_err();
        assert_eq!(r.field.unwrap().1, "https://secure.test/p?q");
    }
}
