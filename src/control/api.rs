//! The control API (DESIGN §9): sites and backends read and changed at runtime, servers
//! taken out for maintenance. It runs on the control thread behind the admin server's token
//! check, beside the reload path and never on the request path. The config's source document
//! (the YAML as parsed, not the validated `Config`) is the API's source of truth: a GET shows
//! a piece of it, a change edits a copy, and the control thread validates that copy as a whole
//! new config and publishes it like a reload (see `Plane::change` in `control`).
//!
//! This file names the calls and edits the document; it does no I/O. Bodies are read by the
//! YAML parser (JSON is YAML's flow style, so a JSON body is a document) and answers are
//! written as JSON by `json`; `yaml` writes the document back as text, `persist` the file.
//! Neither serde_json nor yaml_serde's serializer is linked. Measured (`ls -l` of the
//! `cargo build --release` binary, x86_64): 1,577,968 bytes before the API, 1,749,952 with it
//! writing the document by `yaml_serde::to_string` (libyaml's emitter), 1,701,896 with the
//! writer in `yaml` instead. serde_json would add its parser and writer to this one, which
//! the YAML parser already linked for the config file makes unnecessary.

pub mod certs;
mod json;
pub mod persist;
mod yaml;

use crate::config::ConfigErrors;
use yaml_serde::{Mapping, Value};

/// A call of the API, with the names it is about, percent-decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Call {
    Sites,
    AddSite,
    Site(String),
    PutSite(String),
    DeleteSite(String),
    Backends,
    AddBackend,
    Backend(String),
    PutBackend(String),
    DeleteBackend(String),
    AddServer(String),
    DeleteServer(String, String),
    /// `.../dead` (`on`) or `.../alive` of server `server` (index or URL) of `backend`.
    Drain {
        backend: String,
        server: String,
        on: bool,
    },
}

/// An answer: its status, its JSON body and, for a 405, the methods the path has.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub allow: Option<&'static str>,
}

impl Reply {
    /// An error answer: `{"error": why}`.
    pub fn error(status: u16, why: &str) -> Reply {
        Reply {
            status,
            body: format!("{{\"error\":\"{}\"}}", crate::metrics::json(why)),
            allow: None,
        }
    }

    /// A 400 for a document that is not a valid config: each error with its key path.
    pub fn invalid(errs: &ConfigErrors) -> Reply {
        let mut body =
            String::from("{\"error\":\"the change makes the config invalid\",\"errors\":[");
        for (i, e) in errs.0.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&format!(
                "{{\"path\":\"{}\",\"message\":\"{}\"}}",
                crate::metrics::json(&e.path),
                crate::metrics::json(&e.msg)
            ));
        }
        body.push_str("]}");
        Reply {
            status: 400,
            body,
            allow: None,
        }
    }

    fn not_allowed(allow: &'static str) -> Reply {
        Reply {
            allow: Some(allow),
            ..Reply::error(405, "method not allowed")
        }
    }
}

impl Call {
    /// The call `method` and `path` (under `/api/v1`) name; a 404 or 405 when none.
    pub fn parse(method: &str, path: &str) -> Result<Call, Reply> {
        let not_found = || Reply::error(404, "no such API path");
        let rest = path.strip_prefix("/api/v1/").ok_or_else(not_found)?;
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(not_found());
        }
        let name = |i: usize| percent_decode(parts[i]).ok_or_else(not_found);
        let m = method;
        Ok(match (parts[0], parts.len()) {
            ("sites", 1) => match m {
                "GET" => Call::Sites,
                "POST" => Call::AddSite,
                _ => return Err(Reply::not_allowed("GET, HEAD, POST")),
            },
            ("sites", 2) => match m {
                "GET" => Call::Site(name(1)?),
                "PUT" => Call::PutSite(name(1)?),
                "DELETE" => Call::DeleteSite(name(1)?),
                _ => return Err(Reply::not_allowed("GET, HEAD, PUT, DELETE")),
            },
            ("backends", 1) => match m {
                "GET" => Call::Backends,
                "POST" => Call::AddBackend,
                _ => return Err(Reply::not_allowed("GET, HEAD, POST")),
            },
            ("backends", 2) => match m {
                "GET" => Call::Backend(name(1)?),
                "PUT" => Call::PutBackend(name(1)?),
                "DELETE" => Call::DeleteBackend(name(1)?),
                _ => return Err(Reply::not_allowed("GET, HEAD, PUT, DELETE")),
            },
            ("backends", 3) if parts[2] == "servers" => match m {
                "POST" => Call::AddServer(name(1)?),
                _ => return Err(Reply::not_allowed("POST")),
            },
            ("backends", 4) if parts[2] == "servers" => match m {
                "DELETE" => Call::DeleteServer(name(1)?, name(3)?),
                _ => return Err(Reply::not_allowed("DELETE")),
            },
            ("backends", 5) if parts[2] == "servers" && matches!(parts[4], "dead" | "alive") => {
                match m {
                    "POST" => Call::Drain {
                        backend: name(1)?,
                        server: name(3)?,
                        on: parts[4] == "dead",
                    },
                    _ => return Err(Reply::not_allowed("POST")),
                }
            }
            _ => return Err(not_found()),
        })
    }
}

/// What a change leaves: the edited document, the status of its answer, and what the answer
/// shows once the change is in force.
#[derive(Debug)]
pub struct Edit {
    pub doc: Value,
    pub status: u16,
    pub shows: Shows,
}

/// The piece an answer shows.
#[derive(Debug, PartialEq, Eq)]
pub enum Shows {
    Site(String),
    Backend(String),
    /// A site or backend that is gone: `{"deleted": {kind: name}}`.
    Deleted(&'static str, String),
}

/// The document as YAML text: what a change is validated as, and what `persist` writes.
pub fn text(doc: &Value) -> String {
    yaml::write(doc)
}

/// Answers a call that only reads; `None` for the others.
pub fn read(doc: &Value, call: &Call) -> Option<Reply> {
    let body = match call {
        Call::Sites => {
            let mut o = String::from("[");
            for (i, s) in sites(doc).iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                json::write(&mut o, s);
            }
            o.push(']');
            o
        }
        Call::Backends => {
            let mut o = String::from("[");
            let names: Vec<&str> = backends(doc)
                .map_or_else(Vec::new, |b| b.keys().filter_map(Value::as_str).collect());
            for (i, name) in names.into_iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                o.push_str(&show(doc, &Shows::Backend(name.to_string())).unwrap_or_default());
            }
            o.push(']');
            o
        }
        Call::Site(name) => match show(doc, &Shows::Site(name.clone())) {
            Some(s) => s,
            None => return Some(Reply::error(404, &format!("no site named {name:?}"))),
        },
        Call::Backend(name) => match show(doc, &Shows::Backend(name.clone())) {
            Some(s) => s,
            None => return Some(Reply::error(404, &format!("no backend named {name:?}"))),
        },
        _ => return None,
    };
    Some(Reply {
        status: 200,
        body,
        allow: None,
    })
}

/// The JSON of what `shows` names in `doc`: a site is its entry, a backend its entry plus
/// `name`. `None` when it is not there.
pub fn show(doc: &Value, shows: &Shows) -> Option<String> {
    let mut o = String::new();
    match shows {
        Shows::Site(name) => json::write(&mut o, &sites(doc)[site_index(doc, name)?]),
        Shows::Backend(name) => {
            let mut entry = backends(doc)?.get(name.as_str())?.clone();
            if let Value::Mapping(m) = &mut entry {
                m.insert("name".into(), name.as_str().into());
            }
            json::write(&mut o, &entry);
        }
        Shows::Deleted(kind, name) => {
            o = format!(
                "{{\"deleted\":{{\"{kind}\":\"{}\"}}}}",
                crate::metrics::json(name)
            );
        }
    }
    Some(o)
}

/// `answer` (a JSON object) with `"persisted"` added as its last key.
pub fn with_persisted(mut answer: String, persisted: bool) -> String {
    if answer.ends_with('}') {
        answer.pop();
        if !answer.ends_with('{') {
            answer.push(',');
        }
        answer.push_str(&format!("\"persisted\":{persisted}}}"));
    }
    answer
}

/// Applies a changing call to a copy of `doc`. Errors are the answers: 400 for a body that is
/// not an object of the right shape, 404 for an unknown name, 409 for a conflict (a name
/// taken, a backend still in use). The result is not validated yet: the caller parses it as
/// a whole config.
pub fn edit(doc: &Value, call: &Call, body: &[u8]) -> Result<Edit, Reply> {
    let mut doc = doc.clone();
    let (status, shows) = match call {
        Call::AddSite => {
            let entry = object(body)?;
            let name = site_name(&entry)
                .ok_or_else(|| Reply::error(400, "a site needs a name or at least one host"))?;
            if site_index(&doc, &name).is_some() {
                return Err(Reply::error(409, &format!("a site named {name:?} exists")));
            }
            sites_mut(&mut doc)?.push(entry);
            (201, Shows::Site(name))
        }
        Call::PutSite(name) => {
            let mut entry = object(body)?;
            let i = site_index(&doc, name).ok_or_else(|| no_site(name))?;
            match entry.get("name") {
                Some(n) if n.as_str() != Some(name) => {
                    return Err(Reply::error(
                        400,
                        &format!("the body names another site than the path ({name:?})"),
                    ))
                }
                Some(_) => {}
                // Keep its name even when its first host changes.
                None if site_name(&entry).as_deref() != Some(name) => {
                    if let Value::Mapping(m) = &mut entry {
                        m.insert("name".into(), name.as_str().into());
                    }
                }
                None => {}
            }
            sites_mut(&mut doc)?[i] = entry;
            (200, Shows::Site(name.clone()))
        }
        Call::DeleteSite(name) => {
            let i = site_index(&doc, name).ok_or_else(|| no_site(name))?;
            sites_mut(&mut doc)?.remove(i);
            (200, Shows::Deleted("site", name.clone()))
        }
        Call::AddBackend => {
            let mut entry = object(body)?;
            let name = match &mut entry {
                Value::Mapping(m) => m.shift_remove("name"),
                _ => None,
            };
            let Some(Value::String(name)) = name else {
                return Err(Reply::error(400, "name: a backend needs a name (a string)"));
            };
            let map = backends_mut(&mut doc)?;
            if map.contains_key(name.as_str()) {
                return Err(Reply::error(
                    409,
                    &format!("a backend named {name:?} exists"),
                ));
            }
            map.insert(name.as_str().into(), entry);
            (201, Shows::Backend(name))
        }
        Call::PutBackend(name) => {
            let mut entry = object(body)?;
            if let Value::Mapping(m) = &mut entry {
                match m.shift_remove("name") {
                    Some(n) if n.as_str() != Some(name) => {
                        return Err(Reply::error(
                            400,
                            &format!("the body names another backend than the path ({name:?})"),
                        ))
                    }
                    _ => {}
                }
            }
            let slot = backends_mut(&mut doc)
                .ok()
                .and_then(|m| m.get_mut(name.as_str()))
                .ok_or_else(|| no_backend(name))?;
            *slot = entry;
            (200, Shows::Backend(name.clone()))
        }
        Call::DeleteBackend(name) => {
            if !backends(&doc).is_some_and(|m| m.contains_key(name.as_str())) {
                return Err(no_backend(name));
            }
            if let Some(site) = site_using(&doc, name) {
                return Err(Reply::error(
                    409,
                    &format!("site {site:?} still sends requests to backend {name:?}"),
                ));
            }
            backends_mut(&mut doc)?.shift_remove(name.as_str());
            (200, Shows::Deleted("backend", name.clone()))
        }
        Call::AddServer(name) => {
            let entry = object(body)?;
            let Some(url) = entry.get("url").and_then(Value::as_str).map(str::to_string) else {
                return Err(Reply::error(400, "url: a server needs a url (a string)"));
            };
            let servers = servers_mut(&mut doc, name)?;
            if servers
                .iter()
                .any(|s| s.get("url").and_then(Value::as_str) == Some(&url))
            {
                return Err(Reply::error(
                    409,
                    &format!("backend {name:?} already has server {url}"),
                ));
            }
            servers.push(entry);
            (201, Shows::Backend(name.clone()))
        }
        Call::DeleteServer(name, id) => {
            let servers = servers_mut(&mut doc, name)?;
            let i = server_index(servers, id).ok_or_else(|| no_server(name, id))?;
            servers.remove(i);
            (200, Shows::Backend(name.clone()))
        }
        _ => return Err(Reply::error(405, "this call changes nothing")),
    };
    Ok(Edit { doc, status, shows })
}

/// The index of server `id` (its index, or its URL as written) among `servers`.
pub fn server_index(servers: &[Value], id: &str) -> Option<usize> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
        return id.parse().ok().filter(|&i: &usize| i < servers.len());
    }
    servers
        .iter()
        .position(|s| s.get("url").and_then(Value::as_str) == Some(id))
}

/// The servers of backend `name` as written, for `.../dead` and `.../alive`.
pub fn servers<'a>(doc: &'a Value, name: &str) -> Option<&'a [Value]> {
    match backends(doc)?.get(name)?.get("servers")? {
        Value::Sequence(s) => Some(s),
        _ => None,
    }
}

/// 404 answers for the names that are not there.
pub fn no_backend(name: &str) -> Reply {
    Reply::error(404, &format!("no backend named {name:?}"))
}

/// 404 for a server that backend `name` does not have.
pub fn no_server(name: &str, id: &str) -> Reply {
    Reply::error(404, &format!("backend {name:?} has no server {id:?}"))
}

fn no_site(name: &str) -> Reply {
    Reply::error(404, &format!("no site named {name:?}"))
}

/// The body as a document; it must be an object.
fn object(body: &[u8]) -> Result<Value, Reply> {
    if body.is_empty() {
        return Err(Reply::error(400, "a JSON object is expected as the body"));
    }
    match yaml_serde::from_slice::<Value>(body) {
        Ok(v @ Value::Mapping(_)) => Ok(v),
        Ok(_) => Err(Reply::error(400, "the body must be a JSON object")),
        Err(e) => Err(Reply::error(400, &format!("the body is not JSON: {e}"))),
    }
}

/// The name a site entry goes by: its `name`, else its first host (as validation names it).
fn site_name(entry: &Value) -> Option<String> {
    entry
        .get("name")
        .and_then(Value::as_str)
        .or_else(|| entry.get("hosts")?.get(0)?.as_str())
        .map(str::to_string)
}

fn sites(doc: &Value) -> &[Value] {
    match doc.get("reverse").and_then(|r| r.get("sites")) {
        Some(Value::Sequence(s)) => s,
        _ => &[],
    }
}

fn site_index(doc: &Value, name: &str) -> Option<usize> {
    sites(doc)
        .iter()
        .position(|s| site_name(s).as_deref() == Some(name))
}

/// The first site with a route to backend `name`.
fn site_using(doc: &Value, name: &str) -> Option<String> {
    sites(doc)
        .iter()
        .find(|s| match s.get("routes") {
            Some(Value::Sequence(rs)) => rs
                .iter()
                .any(|r| r.get("backend").and_then(Value::as_str) == Some(name)),
            _ => false,
        })
        .and_then(site_name)
}

fn backends(doc: &Value) -> Option<&Mapping> {
    match doc.get("reverse")?.get("backends")? {
        Value::Mapping(m) => Some(m),
        _ => None,
    }
}

/// A mapping at `key` of `map`, made when missing (so that the first site or backend can be
/// added to a file without them); a 400 when something else is there.
fn child<'a>(map: &'a mut Value, key: &str, empty: Value) -> Result<&'a mut Value, Reply> {
    if map.is_null() {
        *map = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(m) = map else {
        return Err(Reply::error(
            400,
            &format!("{key}: the config has no mapping here"),
        ));
    };
    let v = m.entry(key.into()).or_insert(Value::Null);
    if v.is_null() {
        *v = empty;
    }
    Ok(v)
}

fn sites_mut(doc: &mut Value) -> Result<&mut Vec<Value>, Reply> {
    let reverse = child(doc, "reverse", Value::Mapping(Mapping::new()))?;
    match child(reverse, "sites", Value::Sequence(Vec::new()))? {
        Value::Sequence(s) => Ok(s),
        _ => Err(Reply::error(400, "reverse.sites is not a list")),
    }
}

fn backends_mut(doc: &mut Value) -> Result<&mut Mapping, Reply> {
    let reverse = child(doc, "reverse", Value::Mapping(Mapping::new()))?;
    match child(reverse, "backends", Value::Mapping(Mapping::new()))? {
        Value::Mapping(m) => Ok(m),
        _ => Err(Reply::error(400, "reverse.backends is not a mapping")),
    }
}

fn servers_mut<'a>(doc: &'a mut Value, name: &str) -> Result<&'a mut Vec<Value>, Reply> {
    let b = backends(doc).is_some_and(|m| m.contains_key(name));
    if !b {
        return Err(no_backend(name));
    }
    let entry = backends_mut(doc)?
        .get_mut(name)
        .ok_or_else(|| no_backend(name))?;
    match child(entry, "servers", Value::Sequence(Vec::new()))? {
        Value::Sequence(s) => Ok(s),
        _ => Err(Reply::error(
            400,
            &format!("reverse.backends.{name}.servers is not a list"),
        )),
    }
}

/// Decodes `%XX` escapes (a server's URL is one path segment); `None` for a bad escape or a
/// result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
