//! A site's `auth` (DESIGN §7.3): who may use a published site, as written and validated.
//! Basic accounts and bearer tokens are checked by ferry itself (`access::site_gate`) right
//! after routing; `forward` names an external auth service that the session asks before each
//! request goes to its backend (`session::auth`). A route's `auth: none` makes it a public path
//! of a private site. Secrets never reach `Debug` output, logs or error messages.

use super::validate::MAX_SECS;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

// ---- as written ----

/// A site's `auth:` block: exactly one of its keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub basic: Option<Vec<RawAccount>>,
    pub bearer: Option<Vec<String>>,
    pub forward: Option<RawForwardAuth>,
}

/// One `basic:` account.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub username: String,
    pub password: String,
}

/// The `forward:` auth service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwardAuth {
    pub url: String,
    #[serde(default = "five")]
    pub timeout_secs: u64,
    #[serde(default)]
    pub copy_headers: Vec<String>,
}

fn five() -> u64 {
    5
}

impl fmt::Debug for RawAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the passwords or tokens.
        f.debug_struct("RawAuth")
            .field("basic", &self.basic.as_ref().map(Vec::len))
            .field("bearer", &self.bearer.as_ref().map(Vec::len))
            .field("forward", &self.forward)
            .finish()
    }
}

// ---- validated ----

/// Who may use a site.
pub enum SiteAuth {
    /// `Authorization: Basic <credentials>`: `credentials` holds each account's base64 of
    /// `username:password`; `challenge` is the 401's `WWW-Authenticate` (the realm is the
    /// site's name).
    Basic {
        credentials: Vec<String>,
        challenge: String,
    },
    /// `Authorization: Bearer <token>`, one of `tokens`.
    Bearer {
        tokens: Vec<String>,
        challenge: String,
    },
    /// An external auth service, asked before each request.
    Forward(ForwardAuth),
}

impl fmt::Debug for SiteAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the credentials.
        match self {
            SiteAuth::Basic { credentials, .. } => {
                write!(f, "Basic({} accounts)", credentials.len())
            }
            SiteAuth::Bearer { tokens, .. } => write!(f, "Bearer({} tokens)", tokens.len()),
            SiteAuth::Forward(a) => write!(f, "Forward({})", a.url),
        }
    }
}

/// The auth service of a site with `auth.forward` (the "auth provider" hook).
#[derive(Debug)]
pub struct ForwardAuth {
    /// As configured, for messages (it holds no credentials: the config refuses them).
    pub url: String,
    /// The host to connect to: an IP literal in canonical form (never resolved), or a name.
    pub host: String,
    pub port: u16,
    /// The `Host` the auth request carries: `host:port` as written.
    pub authority: String,
    /// The path and query the service is asked for.
    pub path: String,
    /// The whole sub-request (connect, send, the answer read whole) must end within this.
    pub timeout: Duration,
    /// Fields removed from the client's request and copied from a 2xx answer, as configured.
    pub copy_headers: Vec<String>,
    /// The key of this service's idle connections in the worker's pool: `auth <url>`, which
    /// no upstream's or server's state name (a URL first) can be.
    pub pool_key: String,
}

/// Validates a site's `auth` (`at` is its key path). `site` names the Basic realm.
pub(super) fn validate(
    raw: &RawAuth,
    site: &str,
    at: &str,
    err: &mut dyn FnMut(&str, String),
) -> Option<SiteAuth> {
    let given = [
        raw.basic.is_some(),
        raw.bearer.is_some(),
        raw.forward.is_some(),
    ];
    if given.iter().filter(|&&g| g).count() != 1 {
        err(
            at,
            "exactly one of basic, bearer or forward is needed".into(),
        );
        return None;
    }
    if let Some(accounts) = &raw.basic {
        return basic(accounts, site, &format!("{at}.basic"), err);
    }
    if let Some(tokens) = &raw.bearer {
        return bearer(tokens, site, &format!("{at}.bearer"), err);
    }
    raw.forward
        .as_ref()
        .and_then(|f| forward(f, &format!("{at}.forward"), err))
        .map(SiteAuth::Forward)
}

fn basic(
    accounts: &[RawAccount],
    site: &str,
    at: &str,
    err: &mut dyn FnMut(&str, String),
) -> Option<SiteAuth> {
    if accounts.is_empty() {
        err(at, "at least one {username, password} account".into());
        return None;
    }
    let mut ok = true;
    let mut credentials = Vec::with_capacity(accounts.len());
    for (i, a) in accounts.iter().enumerate() {
        // RFC 7617 §2: the user-id cannot contain a colon, and neither may hold controls.
        if a.username.is_empty()
            || a.username.contains(':')
            || a.username.chars().any(char::is_control)
        {
            err(
                &format!("{at}[{i}].username"),
                "must be non-empty, without ':' or control characters".into(),
            );
            ok = false;
        } else if accounts[..i].iter().any(|o| o.username == a.username) {
            err(
                &format!("{at}[{i}].username"),
                format!("{:?} is listed twice", a.username),
            );
            ok = false;
        }
        if a.password.chars().any(char::is_control) {
            err(
                &format!("{at}[{i}].password"),
                "has a control character".into(),
            );
            ok = false;
        }
        credentials.push(super::base64(
            format!("{}:{}", a.username, a.password).as_bytes(),
        ));
    }
    ok.then(|| SiteAuth::Basic {
        credentials,
        challenge: format!("Basic realm={}", quoted(site)),
    })
}

fn bearer(
    tokens: &[String],
    site: &str,
    at: &str,
    err: &mut dyn FnMut(&str, String),
) -> Option<SiteAuth> {
    if tokens.is_empty() {
        err(at, "at least one token".into());
        return None;
    }
    let mut ok = true;
    for (i, t) in tokens.iter().enumerate() {
        if !is_b64token(t) {
            // The token itself is not repeated in the message.
            err(
                &format!("{at}[{i}]"),
                "a bearer token is letters, digits and -._~+/ with '=' only at its end (RFC 6750 §2.1)".into(),
            );
            ok = false;
        }
    }
    ok.then(|| SiteAuth::Bearer {
        tokens: tokens.to_vec(),
        challenge: format!("Bearer realm={}", quoted(site)),
    })
}

/// RFC 6750 §2.1's `b64token`: what a client can send after `Bearer `.
fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// `s` as an RFC 9110 §5.6.4 quoted-string (controls left out).
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn forward(
    raw: &RawForwardAuth,
    at: &str,
    err: &mut dyn FnMut(&str, String),
) -> Option<ForwardAuth> {
    let mut ok = true;
    let mut bad = |k: &str, m: String| {
        err(&format!("{at}.{k}"), m);
        ok = false;
    };
    let target = match service_url(&raw.url) {
        Ok(t) => Some(t),
        Err(m) => {
            bad("url", m);
            None
        }
    };
    if !(1..=MAX_SECS).contains(&raw.timeout_secs) {
        bad(
            "timeout_secs",
            format!("{} is out of range 1..={MAX_SECS}", raw.timeout_secs),
        );
    }
    for (i, name) in raw.copy_headers.iter().enumerate() {
        let key = format!("copy_headers[{i}]");
        if name.is_empty() || !name.bytes().all(super::reverse::is_token_byte) {
            bad(&key, format!("{name:?} is not a header name"));
        } else if super::reverse::is_reserved_field(name)
            || crate::http::forwarded::is_proxy_field(name)
        {
            bad(
                &key,
                format!(
                    "{name} describes the connection or the message's framing: it cannot be copied"
                ),
            );
        } else if crate::http::forwarded::is_forwarding_field(name) {
            bad(&key, format!("{name} is set by ferry itself"));
        } else if raw.copy_headers[..i]
            .iter()
            .any(|o| o.eq_ignore_ascii_case(name))
        {
            bad(&key, format!("{name} is listed twice"));
        }
    }
    let (host, port, authority, path) = target?;
    ok.then(|| ForwardAuth {
        pool_key: format!("auth http://{authority}"),
        url: raw.url.clone(),
        host,
        port,
        authority,
        path,
        timeout: Duration::from_secs(raw.timeout_secs),
        copy_headers: raw.copy_headers.clone(),
    })
}

/// `http://host:port/path?query` → (host to connect to, port, `host:port`, `/path?query`).
fn service_url(url: &str) -> Result<(String, u16, String, String), String> {
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &url[7..]
    } else if lower.starts_with("https://") {
        return Err("an https:// auth service needs a ferry built with the `tls` feature".into());
    } else {
        return Err(format!("{url:?} must be http://host:port/path"));
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('@') {
        return Err("the auth service's URL cannot hold credentials".into());
    }
    let t = crate::http::request::parse_authority(authority, None)
        .map_err(|_| format!("{url:?} needs a host and a port: http://host:port/path"))?;
    let bad_path = path
        .bytes()
        .any(|b| b <= b' ' || b == 0x7f || b == b'#' || b >= 0x80);
    if bad_path {
        return Err(format!(
            "{url:?}: the path may not hold spaces, controls, '#' or non-ASCII bytes (percent-encode them)"
        ));
    }
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    let host = match t.ip {
        Some(ip) => ip.to_string(),
        None => t.host.to_ascii_lowercase(),
    };
    Ok((host, t.port, authority.to_ascii_lowercase(), path))
}
