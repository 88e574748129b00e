//! Unit tests of the control API's calls and document edits.

use super::*;

const DOC: &str = "\
listen: 127.0.0.1:1
reverse:
  listen: ['127.0.0.1:2']
  sites:
    - {name: app, hosts: [app.test], routes: [{backend: web}]}
    - {hosts: [blog.test], routes: [{path: /x, backend: api}]}
  backends:
    web: {servers: [{url: 'http://127.0.0.1:3'}, {url: 'http://127.0.0.1:4'}]}
    api: {servers: [{url: 'http://127.0.0.1:5'}]}
    spare: {servers: [{url: 'http://127.0.0.1:6'}]}
";

fn doc() -> Value {
    yaml_serde::from_str(DOC).unwrap()
}

fn status(r: Result<Edit, Reply>) -> u16 {
    match r {
        Ok(e) => e.status,
        Err(r) => r.status,
    }
}

/// The document after `call`, checked to still be a valid config.
fn after(call: Call, body: &str) -> Value {
    let e = edit(&doc(), &call, body.as_bytes()).unwrap();
    let text = text(&e.doc);
    crate::config::parse(&text, None).unwrap();
    e.doc
}

#[test]
fn paths_name_calls_and_their_methods() {
    assert_eq!(Call::parse("GET", "/api/v1/sites"), Ok(Call::Sites));
    assert_eq!(
        Call::parse(
            "DELETE",
            "/api/v1/backends/web/servers/http%3A%2F%2F127.0.0.1%3A3"
        ),
        Ok(Call::DeleteServer(
            "web".into(),
            "http://127.0.0.1:3".into()
        ))
    );
    assert_eq!(
        Call::parse("POST", "/api/v1/backends/web/servers/1/dead"),
        Ok(Call::Drain {
            backend: "web".into(),
            server: "1".into(),
            on: true
        })
    );
    let e = Call::parse("PATCH", "/api/v1/sites/app").unwrap_err();
    assert_eq!((e.status, e.allow), (405, Some("GET, HEAD, PUT, DELETE")));
    for p in [
        "/api/v1/",
        "/api/v1/sites/",
        "/api/v1/nope",
        "/api/v1/backends/web/servers/1/sleep",
        "/api/v1/sites/%zz",
    ] {
        assert_eq!(Call::parse("GET", p).unwrap_err().status, 404, "{p}");
    }
}

#[test]
fn reads_show_entries_and_backends_with_their_name() {
    let d = doc();
    let r = read(&d, &Call::Site("blog.test".into())).unwrap();
    assert_eq!(
        r.body,
        r#"{"hosts":["blog.test"],"routes":[{"path":"/x","backend":"api"}]}"#
    );
    let r = read(&d, &Call::Backend("api".into())).unwrap();
    assert_eq!(
        r.body,
        r#"{"servers":[{"url":"http://127.0.0.1:5"}],"name":"api"}"#
    );
    assert!(read(&d, &Call::Backends)
        .unwrap()
        .body
        .starts_with(r#"[{"servers":[{"url":"http://127.0.0.1:3"}"#));
    assert_eq!(read(&d, &Call::Site("nope".into())).unwrap().status, 404);
    assert!(read(&d, &Call::AddSite).is_none());
}

#[test]
fn adding_and_replacing_sites() {
    let d = after(
        Call::AddSite,
        r#"{"name":"new","hosts":["new.test"],"routes":[{"backend":"spare"}]}"#,
    );
    assert_eq!(sites(&d).len(), 3);
    let taken = r#"{"hosts":["other.test"],"name":"app"}"#;
    assert_eq!(status(edit(&doc(), &Call::AddSite, taken.as_bytes())), 409);
    // A site named by its first host keeps its name when PUT moves the host.
    let d = after(
        Call::PutSite("blog.test".into()),
        r#"{"hosts":["blog2.test"],"routes":[{"backend":"api"}]}"#,
    );
    assert_eq!(site_index(&d, "blog.test"), Some(1));
    let other = r#"{"name":"x","hosts":["a.test"]}"#;
    assert_eq!(
        status(edit(&doc(), &Call::PutSite("app".into()), other.as_bytes())),
        400
    );
    assert_eq!(
        status(edit(&doc(), &Call::PutSite("no".into()), b"{hosts: [a]}")),
        404
    );
    let d = after(Call::DeleteSite("app".into()), "");
    assert_eq!(sites(&d).len(), 1);
    assert_eq!(
        status(edit(&doc(), &Call::DeleteSite("no".into()), b"")),
        404
    );
}

#[test]
fn bodies_must_be_objects() {
    for body in ["", "[1]", "\"x\"", "{\"a\":", "{{{"] {
        let r = edit(&doc(), &Call::AddSite, body.as_bytes()).unwrap_err();
        assert_eq!(r.status, 400, "{body:?}");
    }
}

#[test]
fn backends_and_their_servers() {
    let d = after(
        Call::AddBackend,
        r#"{"name":"more","servers":[{"url":"http://127.0.0.1:7"}]}"#,
    );
    assert!(backends(&d)
        .unwrap()
        .get("more")
        .unwrap()
        .get("name")
        .is_none());
    assert_eq!(
        status(edit(&doc(), &Call::AddBackend, br#"{"servers":[]}"#)),
        400
    );
    assert_eq!(
        status(edit(
            &doc(),
            &Call::AddBackend,
            br#"{"name":"web","servers":[]}"#
        )),
        409
    );
    let d = after(
        Call::AddServer("web".into()),
        r#"{"url":"http://127.0.0.1:8","weight":2}"#,
    );
    assert_eq!(servers(&d, "web").unwrap().len(), 3);
    let dup = br#"{"url":"http://127.0.0.1:3"}"#;
    assert_eq!(
        status(edit(&doc(), &Call::AddServer("web".into()), dup)),
        409
    );
    assert_eq!(
        status(edit(&doc(), &Call::AddServer("no".into()), dup)),
        404
    );
    let by_url = after(
        Call::DeleteServer("web".into(), "http://127.0.0.1:3".into()),
        "",
    );
    let by_index = after(Call::DeleteServer("web".into(), "0".into()), "");
    assert_eq!(by_url, by_index);
    assert_eq!(servers(&by_url, "web").unwrap().len(), 1);
    let gone = Call::DeleteServer("web".into(), "2".into());
    assert_eq!(status(edit(&doc(), &gone, b"")), 404);
    // A backend a route names cannot go; an unused one can.
    assert_eq!(
        status(edit(&doc(), &Call::DeleteBackend("web".into()), b"")),
        409
    );
    let d = after(Call::DeleteBackend("spare".into()), "");
    assert!(backends(&d).unwrap().get("spare").is_none());
    let put = br#"{"name":"api","servers":[{"url":"http://127.0.0.1:9"}]}"#;
    let e = edit(&doc(), &Call::PutBackend("api".into()), put).unwrap();
    assert_eq!(
        servers(&e.doc, "api").unwrap()[0]
            .get("url")
            .unwrap()
            .as_str(),
        Some("http://127.0.0.1:9")
    );
    assert_eq!(
        status(edit(&doc(), &Call::PutBackend("web".into()), put)),
        400
    );
}

#[test]
fn the_first_site_and_backend_make_their_blocks() {
    let bare: Value = yaml_serde::from_str("listen: 127.0.0.1:1\n").unwrap();
    let e = edit(
        &bare,
        &Call::AddBackend,
        br#"{"name":"b","servers":[{"url":"http://127.0.0.1:3"}]}"#,
    )
    .unwrap();
    let e = edit(
        &e.doc,
        &Call::AddSite,
        br#"{"hosts":["a.test"],"routes":[{"backend":"b"}]}"#,
    )
    .unwrap();
    let text = text(&e.doc);
    // Valid but for the reverse listener, which the API does not set.
    let errs = crate::config::parse(&text, None).unwrap_err();
    assert!(
        errs.0.iter().all(|e| e.path.starts_with("reverse")),
        "{errs}"
    );
}

#[test]
fn persisted_is_added_to_the_answer() {
    assert_eq!(
        with_persisted("{\"a\":1}".into(), true),
        "{\"a\":1,\"persisted\":true}"
    );
    assert_eq!(with_persisted("{}".into(), false), "{\"persisted\":false}");
}
