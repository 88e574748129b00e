//! A worker's pool of pipes for splice(2). Pipes are capped in number (each costs two fds and
//! up to its capacity in kernel memory while data sits in it); when none is free a tunnel or a
//! message body falls back to copying through a pooled buffer.
//!
//! Splicing is an optimisation and fds are what every connection needs, so pipes get only a
//! share of the process's open-files limit: a client turned away because two pipes took its
//! fds is a failure, a tunnel that copies is not.

use std::cell::Cell;
use std::rc::Rc;

/// Capacity asked of each pipe. 64 KiB is the kernel's default and what one splice call moves.
#[cfg(target_os = "linux")]
pub const PIPE_SIZE: usize = 64 * 1024;

/// Pipes (two per spliced tunnel, one per spliced body) a worker opens at most, however many
/// fds there are.
pub const MAX_PIPES: usize = 512;

/// The share of the open-files limit that pipes may hold, across all workers: a quarter, so
/// that at least three quarters are left for sockets (a tunnel needs two of them, plus four
/// fds for its pipes when spliced).
const PIPE_FD_SHARE: u64 = 4;

/// Pipes each of `workers` may open under an open-files limit of `fd_limit`: a quarter of the
/// fds shared out among the workers, two fds a pipe, at most `MAX_PIPES`.
pub fn pipe_cap(fd_limit: u64, workers: usize) -> usize {
    let fds = fd_limit / PIPE_FD_SHARE / workers.max(1) as u64;
    (fds / 2).min(MAX_PIPES as u64) as usize
}

/// A pipe of a worker's pool. It counts as open for as long as it lives: whatever drops it (an
/// error path, a panic unwinding through a session) closes it and takes it off the count, so a
/// lost pipe can never leave the pool believing it is exhausted.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub struct PooledPipe {
    /// The pipe itself (its fds and capacity).
    pub pipe: crate::sys::Pipe,
    open: Rc<Cell<usize>>,
}

#[cfg(target_os = "linux")]
impl Drop for PooledPipe {
    fn drop(&mut self) {
        self.open.set(self.open.get() - 1);
    }
}

/// The free pipes of one worker, and how many it has open in all.
#[derive(Debug)]
pub struct PipePool {
    #[cfg(target_os = "linux")]
    free: Vec<PooledPipe>,
    /// Shared with every pipe handed out (see `PooledPipe`).
    open: Rc<Cell<usize>>,
    #[cfg(target_os = "linux")]
    max: usize,
}

impl PipePool {
    /// A pool that opens at most `max` pipes (0 turns splicing off).
    pub fn new(max: usize) -> PipePool {
        #[cfg(not(target_os = "linux"))]
        let _ = max; // no splice, no pipes
        PipePool {
            #[cfg(target_os = "linux")]
            free: Vec::new(),
            open: Rc::default(),
            #[cfg(target_os = "linux")]
            max,
        }
    }

    /// Pipes open now (free or in use).
    pub fn open(&self) -> usize {
        self.open.get()
    }

    /// A pipe, if one is free or another may be opened.
    #[cfg(target_os = "linux")]
    pub fn get(&mut self) -> Option<PooledPipe> {
        if let Some(p) = self.free.pop() {
            return Some(p);
        }
        if self.open.get() >= self.max {
            return None;
        }
        match crate::sys::Pipe::new(PIPE_SIZE) {
            Ok(pipe) => {
                self.open.set(self.open.get() + 1);
                Some(PooledPipe {
                    pipe,
                    open: self.open.clone(),
                })
            }
            Err(e) => {
                log::debug!("no pipe for splice ({e}); copying instead");
                None
            }
        }
    }

    /// Two pipes, one per direction of a tunnel, or none: a tunnel that could splice only one
    /// way would hold two fds for half the gain.
    #[cfg(target_os = "linux")]
    pub fn pair(&mut self) -> Option<(PooledPipe, PooledPipe)> {
        let first = self.get()?;
        match self.get() {
            Some(second) => Some((first, second)),
            None => {
                self.put(first, true);
                None
            }
        }
    }

    /// Takes a pipe back; one that still holds bytes is closed instead of reused (what is left
    /// in it belongs to a message that was cut off, and would go out with the next one).
    #[cfg(target_os = "linux")]
    pub fn put(&mut self, p: PooledPipe, empty: bool) {
        if empty && self.free.len() < 64 {
            self.free.push(p);
        }
        // Otherwise `p` drops here: closed, and off the count.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_take_at_most_a_quarter_of_the_fds() {
        // ulimit -n 256 and two workers: 64 fds for pipes, 16 pipes (8 tunnels) per worker.
        assert_eq!(pipe_cap(256, 2), 16);
        assert_eq!(pipe_cap(1024, 1), 128);
        assert_eq!(pipe_cap(1 << 20, 2), MAX_PIPES);
        assert_eq!(pipe_cap(u64::MAX, 4), MAX_PIPES);
        assert_eq!(pipe_cap(8, 4), 0);
        assert_eq!(pipe_cap(0, 0), 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn pipes_come_in_pairs_or_not_at_all() {
        let mut pool = PipePool::new(3);
        let (a, b) = pool.pair().unwrap();
        assert_eq!(pool.open(), 2);
        // One pipe left under the cap: no pair, and the lone pipe goes back to the free list.
        assert!(pool.pair().is_none());
        assert_eq!(pool.open(), 3);
        pool.put(a, true);
        let _pair = pool.pair().unwrap();
        assert_eq!(pool.open(), 3);
        pool.put(b, true);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_pipe_dropped_anywhere_is_closed_and_uncounted() {
        let mut pool = PipePool::new(2);
        let a = pool.get().unwrap();
        let b = pool.get().unwrap();
        assert!(pool.get().is_none());
        // An error path or a panic drops it without `put`: it must not count as open.
        drop(a);
        assert_eq!(pool.open(), 1);
        // A pipe given back with bytes in it is closed, not reused.
        pool.put(b, false);
        assert_eq!(pool.open(), 0);
        let _ = pool.pair().unwrap();
    }
}
