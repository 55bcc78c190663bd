//! The "too many open files" server: a forked listener at its `RLIMIT_NOFILE`.
use std::{io, os::fd::AsRawFd};

/// A listener in a child process that has used up its file descriptors: `RLIMIT_NOFILE` is
/// lowered to what it has open, so each accept() fails with EMFILE and connections stay queued
/// (the "too many open files" server). Dropping it ends the child.
pub struct OutOfFilesServer {
    pub pid: u32,
    pub addr: std::net::SocketAddr,
    control: std::os::fd::OwnedFd,
}

impl OutOfFilesServer {
    /// Forks the server (task name "server") from the calling thread, in its network namespace;
    /// returns once the child's accept() has failed with EMFILE.
    pub fn start() -> io::Result<Self> {
        use std::os::fd::{FromRawFd, OwnedFd};
        let pipe = || -> io::Result<(OwnedFd, OwnedFd)> {
            let mut fds = [0; 2];
            // SAFETY: pipe2 writes two fds, owned right away.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fresh descriptors.
            Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
        };
        let (status_r, status_w) = pipe()?;
        let (control_r, control_w) = pipe()?;
        // SAFETY: the child runs only async-signal-safe libc calls on raw fds and _exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: child side, see above.
            unsafe { out_of_files_child(status_w.as_raw_fd(), control_r.as_raw_fd()) }
        }
        drop((status_w, control_r));
        // The child reports its port (2 bytes), then 'E' once accept() failed with EMFILE.
        let mut buf = [0u8; 3];
        let mut got = 0;
        while got < 3 {
            // SAFETY: reading into our buffer.
            let n = unsafe {
                libc::read(status_r.as_raw_fd(), buf[got..].as_mut_ptr().cast(), 3 - got)
            };
            if n <= 0 {
                return Err(io::Error::other("the out-of-files server died before it was ready"));
            }
            got += n as usize;
        }
        if buf[2] != b'E' {
            return Err(io::Error::other(
                "the out-of-files server's accept() did not fail with EMFILE",
            ));
        }
        let port = u16::from_be_bytes([buf[0], buf[1]]);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        Ok(Self { pid: pid as u32, addr, control: control_w })
    }
}

impl Drop for OutOfFilesServer {
    fn drop(&mut self) {
        // SAFETY: a byte to our control pipe, then reap the child.
        unsafe {
            libc::write(self.control.as_raw_fd(), b"q".as_ptr().cast(), 1);
            libc::waitpid(self.pid as i32, std::ptr::null_mut(), 0);
        }
    }
}

/// # Safety
/// Only in a freshly forked child: raw libc calls, no allocation, ends in `_exit`.
unsafe fn out_of_files_child(status: i32, control: i32) -> ! {
    // SAFETY: as documented on the function.
    unsafe {
        // Hold nothing of the parent's (its other sockets would stay open while we live).
        for fd in 3..4096 {
            if fd != status && fd != control {
                libc::close(fd);
            }
        }
        libc::prctl(libc::PR_SET_NAME, c"server".as_ptr());
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
        let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if fd < 0
            || libc::bind(fd, (&raw const sin).cast(), len) != 0
            || libc::listen(fd, 0) != 0
            || libc::getsockname(fd, (&raw mut sin).cast(), &mut len) != 0
        {
            libc::_exit(1);
        }
        // The lowest free descriptor becomes the limit: no new descriptor fits.
        let probe = libc::fcntl(fd, libc::F_DUPFD, 0);
        libc::close(probe);
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = probe as libc::rlim_t;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            libc::_exit(1);
        }
        let port = u16::from_be(sin.sin_port).to_be_bytes();
        libc::write(status, port.as_ptr().cast(), 2);
        let mut reported = false;
        loop {
            let mut p = libc::pollfd { fd: control, events: libc::POLLIN, revents: 0 };
            if libc::poll(&mut p, 1, 0) != 0 {
                libc::_exit(0);
            }
            // Non-blocking: wait for a connection, then try to take it.
            let mut l = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            libc::poll(&mut l, 1, 20);
            let c = libc::accept(fd, std::ptr::null_mut(), std::ptr::null_mut());
            if c >= 0 {
                libc::close(c);
            } else if *libc::__errno_location() == libc::EMFILE && !reported {
                libc::write(status, b"E".as_ptr().cast(), 1);
                reported = true;
            }
        }
    }
}
