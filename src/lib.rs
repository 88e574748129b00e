//! ferry: a small, fast, synchronous HTTP forward proxy with an upstream pool.
//!
//! The request path, in the order a request meets it (one function call after another inside
//! one worker thread):
//!
//! 1. [`listener`]: SO_REUSEPORT sockets, one per worker; accept until `WouldBlock`.
//! 2. [`worker`]: the per-core mio loop that owns sessions, timers and buffer pools.
//! 3. [`session`]: the client-connection state machine: read head ([`http::request`]),
//!    route ([`route`]), resolve ([`resolve`]), connect, exchange ([`http::framing`],
//!    [`http::rewrite`]) or tunnel ([`relay`]).
//! 4. [`http::reply`]: every reply ferry writes itself.
//!
//! Around it: [`config`] (schema and validation), [`control`] (signals), [`buffer`] (the pooled
//! I/O buffers) and [`server`] (start-up and join).

pub mod access;
pub mod addr;
pub mod buffer;
pub mod config;
pub mod conn;
pub mod control;
pub mod http;
pub mod listener;
pub mod logging;
pub mod mailbox;
pub mod metrics;
pub mod relay;
pub mod resolve;
pub mod route;
pub mod server;
pub mod session;
pub mod shared;
pub mod sys;
#[cfg(feature = "tls")]
pub mod tls;
pub mod upstream;
pub mod worker;
