//! `/api/v1/certificates` (DESIGN §9, the `tls` feature): the certificates TLS listeners
//! serve, listed with their names and expiry (never a key), and uploads, which the store
//! checks (parses, key matches, dates), writes to `tls.cert_dir` and serves at once.

use super::Reply;
use crate::config::Config;

/// Answers `GET` (list) or `POST` (upload `{"cert": PEM, "key": PEM}`).
pub fn answer(method: &str, body: &[u8], config: &Config) -> Reply {
    #[cfg(feature = "tls")]
    {
        tls(method, body, config)
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = (method, body, config);
        Reply::error(
            404,
            "certificates need a ferry built with the `tls` feature",
        )
    }
}

#[cfg(feature = "tls")]
fn tls(method: &str, body: &[u8], config: &Config) -> Reply {
    let store = config.tls.as_ref().and_then(|t| t.store.as_ref());
    match method {
        "GET" => {
            let mut o = String::from("[");
            for (i, c) in store
                .map(|s| s.list())
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                if i > 0 {
                    o.push(',');
                }
                info(&mut o, c);
            }
            o.push(']');
            Reply {
                status: 200,
                body: o,
                allow: None,
            }
        }
        "POST" => {
            let Some(store) = store else {
                return Reply::error(409, "no TLS listener is configured (tls_listen)");
            };
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Upload {
                cert: String,
                key: String,
            }
            let up: Upload = match yaml_serde::from_slice(body) {
                Ok(u) => u,
                Err(e) => {
                    return Reply::error(
                        400,
                        &format!("expected {{\"cert\": PEM, \"key\": PEM}}: {e}"),
                    )
                }
            };
            match store.install(up.cert.as_bytes(), up.key.as_bytes()) {
                Ok(c) => {
                    let mut o = String::new();
                    info(&mut o, &c);
                    Reply {
                        status: 201,
                        body: o,
                        allow: None,
                    }
                }
                Err(why) if why.starts_with("no tls.cert_dir") => Reply::error(409, &why),
                Err(why) => Reply::error(400, &why),
            }
        }
        _ => Reply {
            allow: Some("GET, HEAD, POST"),
            ..Reply::error(405, "GET or POST")
        },
    }
}

/// One certificate as JSON: names and dates, never the key.
#[cfg(feature = "tls")]
fn info(o: &mut String, c: &crate::tls::store::CertInfo) {
    use crate::metrics::json;
    use std::fmt::Write;
    let names: Vec<String> = c.names.iter().map(|n| format!("\"{}\"", json(n))).collect();
    let _ = write!(
        o,
        "{{\"name\":\"{}\",\"names\":[{}],\"not_before\":{},\"not_after\":{},\"expires_in_secs\":{},\"file\":\"{}\"}}",
        json(&c.name),
        names.join(","),
        c.not_before,
        c.not_after,
        c.not_after - crate::tls::now_unix(),
        json(&c.cert_file.display().to_string())
    );
}
