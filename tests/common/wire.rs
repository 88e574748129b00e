//! A byte-level HTTP/1.1 reader and writer for tests, independent of ferry's own parser.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// A connection with a read-ahead buffer: over TCP, or over any other byte stream (a TLS
/// session, tests/common/tls.rs), read and written the same way.
pub struct Wire<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
}

/// A request head as a fake server sees it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub minor: u8,
    pub headers: Vec<(String, String)>,
    pub raw: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The values of every field named `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        values(&self.headers, name)
    }
}

/// The values of every field named `name` in `headers`, in order.
fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// A response as a client sees it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The values of every field named `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        values(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Which fake served it.
    pub fn served_by(&self) -> Option<&str> {
        self.header("x-served-by")
    }
}

pub fn parse_request(head: &[u8]) -> Request {
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Request::new(&mut hs);
    r.parse(head).expect("fake got a parsable head");
    Request {
        method: r.method.unwrap().to_string(),
        target: r.path.unwrap().to_string(),
        minor: r.version.unwrap(),
        headers: r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        raw: head.to_vec(),
    }
}

impl Wire {
    pub fn connect(addr: SocketAddr) -> Wire {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(super::TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        Wire::from_stream(s)
    }

    /// A connection to `to` from `from`, another loopback address (`127.0.0.2`), so that
    /// ferry sees a client other than 127.0.0.1.
    pub fn connect_from(from: &str, to: SocketAddr) -> Wire {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into())
            .unwrap();
        s.connect(&to.into()).unwrap();
        let s: TcpStream = s.into();
        s.set_read_timeout(Some(super::TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        Wire::from_stream(s)
    }
}

impl<S: Read + Write> Wire<S> {
    pub fn from_stream(stream: S) -> Wire<S> {
        Wire {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Bytes read ahead and not yet consumed.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Reads more; false on EOF or error.
    fn more(&mut self) -> bool {
        let mut b = [0u8; 65536];
        match self.stream.read(&mut b) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                true
            }
        }
    }

    /// The next head (through the blank line), or None on EOF.
    pub fn read_head(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                return Some(head);
            }
            if !self.more() {
                return None;
            }
        }
    }

    pub fn read_exact_n(&mut self, n: usize) -> Vec<u8> {
        let had = self.buf.len();
        self.try_read_exact_n(n)
            .unwrap_or_else(|| panic!("EOF with {had}+ of {n} bytes"))
    }

    /// `n` bytes, or None when the peer closes (or the read times out) first.
    fn try_read_exact_n(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.more() {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// One line without its CRLF, or None on EOF.
    fn read_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Some(line[..i].to_vec());
            }
            if !self.more() {
                return None;
            }
        }
    }

    /// Decodes a chunked body (trailers dropped).
    pub fn read_chunked(&mut self) -> Vec<u8> {
        self.try_read_chunked().expect("a whole chunked body")
    }

    /// Decodes a chunked body (trailers dropped), or None when it is cut or malformed.
    fn try_read_chunked(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let line = self.read_line()?;
            let size_txt = String::from_utf8_lossy(&line);
            let size =
                usize::from_str_radix(size_txt.split(';').next().unwrap().trim(), 16).ok()?;
            if size == 0 {
                while !self.read_line()?.is_empty() {}
                return Some(out);
            }
            out.extend(self.try_read_exact_n(size)?);
            if self.try_read_exact_n(2)? != b"\r\n" {
                return None;
            }
        }
    }

    /// Reads everything until the peer closes.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        while self.more() {}
        std::mem::take(&mut self.buf)
    }

    /// Reads a request body framed by its head.
    pub fn read_body(&mut self, req: &Request) -> Vec<u8> {
        self.try_read_body(req).expect("a whole request body")
    }

    /// Reads a request body framed by its head, or None when the peer closes before its end
    /// (a fake server that outlives its test must not panic).
    pub fn try_read_body(&mut self, req: &Request) -> Option<Vec<u8>> {
        if req
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().ends_with("chunked"))
        {
            self.try_read_chunked()
        } else if let Some(n) = req.header("content-length") {
            self.try_read_exact_n(n.trim().parse().ok()?)
        } else {
            Some(Vec::new())
        }
    }

    /// Reads one response (a 1xx counts as one); `head_request` when it answers a HEAD.
    pub fn response_to(&mut self, head_request: bool) -> Response {
        let head = self.read_head().expect("a response head");
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        r.parse(&head).expect("a parsable response head");
        let status = r.code.unwrap();
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
            return resp;
        }
        if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().ends_with("chunked"))
        {
            resp.body = self.read_chunked();
        } else if let Some(n) = resp.header("content-length") {
            resp.body = self.read_exact_n(n.trim().parse().unwrap());
        } else {
            resp.body = self.read_to_end();
        }
        resp
    }

    /// Reads one final response, skipping 1xx.
    pub fn response(&mut self) -> Response {
        loop {
            let r = self.response_to(false);
            if !(100..200).contains(&r.status) {
                return r;
            }
        }
    }

    /// Sends a request and reads its final response.
    pub fn roundtrip(&mut self, req: &[u8]) -> Response {
        self.send(req);
        self.response()
    }

    /// True when the peer closes (EOF, or a reset) before the timeout, with nothing more sent.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            ),
            Ok(_) => false,
        }
    }
}

/// `GET PATH HTTP/1.1` in origin form with `Host: HOST`, as a client of a published site
/// sends it.
pub fn site_get(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

/// `GET http://ADDR/PATH HTTP/1.1` with a Host field.
pub fn get(addr: SocketAddr, path: &str) -> Vec<u8> {
    format!("GET http://{addr}{path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes()
}
