//! A worker's pool of pipes for splice(2). Pipes are capped in number (each costs two fds and
//! up to its capacity in kernel memory while data sits in it); when none is free a tunnel falls
//! back to copying through a pooled buffer.

/// Capacity asked of each pipe. 64 KiB is the kernel's default and what one splice call moves.
#[cfg(target_os = "linux")]
pub const PIPE_SIZE: usize = 64 * 1024;

/// The free pipes of one worker, and how many it has open in all.
#[derive(Debug)]
pub struct PipePool {
    #[cfg(target_os = "linux")]
    free: Vec<crate::sys::Pipe>,
    open: usize,
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
            open: 0,
            #[cfg(target_os = "linux")]
            max,
        }
    }

    /// Pipes open now (free or in use).
    pub fn open(&self) -> usize {
        self.open
    }

    /// A pipe, if one is free or another may be opened.
    #[cfg(target_os = "linux")]
    pub fn get(&mut self) -> Option<crate::sys::Pipe> {
        if let Some(p) = self.free.pop() {
            return Some(p);
        }
        if self.open >= self.max {
            return None;
        }
        match crate::sys::Pipe::new(PIPE_SIZE) {
            Ok(p) => {
                self.open += 1;
                Some(p)
            }
            Err(e) => {
                log::debug!("no pipe for splice ({e}); copying instead");
                None
            }
        }
    }

    /// Takes a pipe back; one that still holds bytes is closed instead of reused.
    #[cfg(target_os = "linux")]
    pub fn put(&mut self, p: crate::sys::Pipe, empty: bool) {
        if empty && self.free.len() < 64 {
            self.free.push(p);
        } else {
            self.open -= 1;
        }
    }
}
