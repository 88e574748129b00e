//! Upstream proxies: their shared health state, the pools they form, how one is picked for a
//! request, and each worker's idle keep-alive connections to them.

mod budget;
mod idle;
pub mod queue;
pub mod rotation;
pub mod select;
pub mod state;

pub use budget::{now_ms, now_secs, BackendState};
pub use idle::{IdlePool, MAX_IDLE_PER_UPSTREAM};
pub use rotation::Rotation;
pub use state::UpstreamState;
