//! The few syscalls that mio, socket2 and std do not wrap: raising the fd limit, and on Linux
//! the pipes and splice(2) behind zero-copy tunnels. Every `unsafe` block is here.

use std::io;

/// Raises the soft open-files limit to the hard limit; returns (old soft, new soft).
#[cfg(unix)]
pub fn raise_fd_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we own and pass by valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let old = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the rlimit we own; raising soft to hard needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // rlim_t is u64 on Linux but not everywhere.
    #[allow(clippy::unnecessary_cast)]
    Ok((old as u64, lim.rlim_cur as u64))
}

/// Without rlimits there is nothing to raise.
#[cfg(not(unix))]
pub fn raise_fd_limit() -> io::Result<(u64, u64)> {
    Ok((0, 0))
}

#[cfg(target_os = "linux")]
pub use linux::{splice, Pipe};

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    /// A non-blocking pipe used as the kernel-side buffer of one tunnel direction.
    #[derive(Debug)]
    pub struct Pipe {
        pub read: OwnedFd,
        pub write: OwnedFd,
        /// Capacity in bytes, as the kernel reports it after F_SETPIPE_SZ.
        pub capacity: usize,
    }

    impl Pipe {
        /// Opens a pipe and asks for `size` bytes of capacity; the kernel may round it or refuse
        /// (over /proc/sys/fs/pipe-max-size), so the real size is read back.
        pub fn new(size: usize) -> io::Result<Pipe> {
            let mut fds = [0 as libc::c_int; 2];
            // SAFETY: pipe2 fills the two-int array we own; the flags are valid constants.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
            let (read, write) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            // SAFETY: fcntl on an fd we own; F_SETPIPE_SZ takes an int size and fails harmlessly.
            unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) };
            // SAFETY: fcntl on an fd we own; F_GETPIPE_SZ only reads.
            let got = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
            if got <= 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Pipe {
                read,
                write,
                capacity: got as usize,
            })
        }
    }

    /// Moves up to `len` bytes from `from` to `to` without copying through user space; one of
    /// the two must be a pipe. Non-blocking: `WouldBlock` when nothing can move now.
    pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
        loop {
            // SAFETY: both fds are open for the duration of the call (borrowed from live
            // owners by the caller); null offsets are allowed for pipes and sockets.
            let n = unsafe {
                libc::splice(
                    from,
                    std::ptr::null_mut(),
                    to,
                    std::ptr::null_mut(),
                    len,
                    libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::io::{Read, Write};
        use std::os::unix::net::UnixStream;

        #[test]
        fn pipe_reports_its_size_and_splices() {
            let p = Pipe::new(64 * 1024).unwrap();
            assert!(p.capacity >= 4096);
            let (mut a, b) = UnixStream::pair().unwrap();
            let (c, mut d) = UnixStream::pair().unwrap();
            a.write_all(b"hello").unwrap();
            assert_eq!(splice(b.as_raw_fd(), p.write.as_raw_fd(), 100).unwrap(), 5);
            assert_eq!(splice(p.read.as_raw_fd(), c.as_raw_fd(), 100).unwrap(), 5);
            let mut got = [0; 5];
            d.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"hello");
            b.set_nonblocking(true).unwrap();
            let e = splice(b.as_raw_fd(), p.write.as_raw_fd(), 100).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        }
    }
}
