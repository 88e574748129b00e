//! TLS (cargo feature `tls`, DESIGN §8): where it sits on the request path. A TLS listener's
//! accepted socket gets a server-side TLS state in its [`crate::conn::Conn`], an `https://`
//! server's socket a client-side one; the session reads and writes plaintext through the
//! `Conn` as for plain TCP, and the handshake is just the first bytes it moves. The
//! certificate store (`store`) answers SNI and follows certificate files as they change.

pub mod store;
pub mod x509;
