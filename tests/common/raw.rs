//! A raw TCP peer for tests that need a server to misbehave in one exact way: each accepted
//! connection runs a script, and every byte a connection received is kept, so a test can see
//! what ferry sent (a smuggled request, a body without its head).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The bytes each connection received, in accept order.
type Received = Arc<Mutex<Vec<Vec<u8>>>>;

/// A scripted raw server on 127.0.0.1.
pub struct Raw {
    pub addr: SocketAddr,
    received: Received,
}

/// One accepted connection, handed to the script.
pub struct RawConn {
    pub stream: TcpStream,
    /// Which connection this is (0 for the first).
    pub index: usize,
    received: Received,
    /// How much of this connection's bytes the script has consumed with `read_head`.
    used: usize,
}

impl Raw {
    /// Runs `script` for every connection, each on its own thread.
    pub fn start(script: impl Fn(&mut RawConn) + Send + Sync + 'static) -> Raw {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let received: Received = Arc::default();
        let script = Arc::new(script);
        let r = received.clone();
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(stream) = s else { continue };
                let _ = stream.set_read_timeout(Some(super::TIMEOUT));
                let index = {
                    let mut all = r.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let (r, script) = (r.clone(), script.clone());
                thread::spawn(move || {
                    let mut c = RawConn {
                        stream,
                        index,
                        received: r,
                        used: 0,
                    };
                    script(&mut c);
                });
            }
        });
        Raw { addr, received }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Everything received, all connections in accept order.
    pub fn all_bytes(&self) -> Vec<u8> {
        self.received.lock().unwrap().concat()
    }

    /// Everything received, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.all_bytes()).into_owned()
    }
}

impl RawConn {
    fn mine(&self) -> Vec<u8> {
        self.received.lock().unwrap()[self.index].clone()
    }

    /// Reads once, keeping what came; false on EOF or error.
    fn more(&mut self) -> bool {
        let mut b = [0u8; 16384];
        match self.stream.read(&mut b) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.received.lock().unwrap()[self.index].extend_from_slice(&b[..n]);
                true
            }
        }
    }

    /// Reads until a whole head has come (and nothing of what follows it); returns it as text,
    /// or None on EOF.
    pub fn read_head(&mut self) -> Option<String> {
        loop {
            let bytes = self.mine();
            let rest = &bytes[self.used..];
            if let Some(i) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                self.used += i + 4;
                return Some(String::from_utf8_lossy(&rest[..i + 4]).into_owned());
            }
            if !self.more() {
                return None;
            }
        }
    }

    /// Reads until a whole request head (and, with a `Content-Length`, its body) has come;
    /// returns the head as text, or None on EOF.
    pub fn read_request(&mut self) -> Option<String> {
        loop {
            let bytes = self.mine();
            let rest = &bytes[self.used..];
            if let Some(i) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&rest[..i + 4]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if rest.len() >= i + 4 + len {
                    self.used += i + 4 + len;
                    return Some(head);
                }
            }
            if !self.more() {
                return None;
            }
        }
    }

    /// Reads (keeping what comes) until the peer closes or `max` passes.
    pub fn drain(&mut self, max: Duration) {
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(50)));
        let end = Instant::now() + max;
        while Instant::now() < end {
            let mut b = [0u8; 16384];
            match self.stream.read(&mut b) {
                Ok(0) => return,
                Ok(n) => self.received.lock().unwrap()[self.index].extend_from_slice(&b[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Sends `bytes` and the FIN together, so that the peer reads both in one go (on Linux
    /// TCP_CORK holds the data back until the FIN can ride in the same segment), then reads on
    /// until the peer closes, so that nothing it still sends turns the close into a reset.
    pub fn write_and_finish(&mut self, bytes: &[u8]) {
        #[cfg(target_os = "linux")]
        let _ = socket2::SockRef::from(&self.stream).set_cork(true);
        let _ = self.stream.write_all(bytes);
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        self.drain(Duration::from_secs(5));
    }
}
