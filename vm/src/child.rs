//! Processes of the scenarios' own, forked from the calling thread: servers that must be other
//! processes than the test's (a listener at its `RLIMIT_NOFILE`, a prefork master and its
//! worker, the idle sockets of a busy host). A child runs raw libc calls only (the parent has
//! threads: nothing that allocates or locks is safe after fork), reports on a status pipe and
//! ends when its control pipe says so or closes.
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

/// A pipe (read end, write end), close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds, owned right away.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A forked child process. Dropping it ends it (a byte on its control pipe) and reaps it.
pub struct Child {
    pub pid: u32,
    status: OwnedFd,
    control: OwnedFd,
}

impl Child {
    /// Forks; the child runs `body(status, control)` (the write end of its status pipe, the read
    /// end of its control pipe), which is to end in `_exit` (should it return, the child exits 1).
    ///
    /// # Safety
    /// `body` runs in a child forked from a process with threads: it may only make
    /// async-signal-safe calls (no allocation, no locks).
    pub unsafe fn fork(body: impl FnOnce(i32, i32)) -> io::Result<Self> {
        let (status_r, status_w) = pipe()?;
        let (control_r, control_w) = pipe()?;
        // SAFETY: the child runs `body` only, as the caller promises.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            body(status_w.as_raw_fd(), control_r.as_raw_fd());
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(1) };
        }
        drop((status_w, control_r));
        Ok(Self { pid: pid as u32, status: status_r, control: control_w })
    }

    /// Reads exactly `buf.len()` bytes of the child's status; Err if it died first.
    pub fn read_status(&self, buf: &mut [u8]) -> io::Result<()> {
        let mut got = 0;
        while got < buf.len() {
            // SAFETY: reading into our buffer.
            let n = unsafe {
                libc::read(self.status.as_raw_fd(), buf[got..].as_mut_ptr().cast(), buf.len() - got)
            };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if n <= 0 {
                return Err(io::Error::other("the child process ended before it reported"));
            }
            got += n as usize;
        }
        Ok(())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: a byte to our control pipe, then reap the child.
        unsafe {
            libc::write(self.control.as_raw_fd(), b"q".as_ptr().cast(), 1);
            libc::waitpid(self.pid as i32, std::ptr::null_mut(), 0);
        }
    }
}

/// In a forked child: closes every inherited descriptor above stderr but `keep` (the parent's
/// other sockets would stay open while the child lives), and names the task.
///
/// # Safety
/// Only in a freshly forked child.
pub unsafe fn detach(keep: &[i32], name: &std::ffi::CStr) {
    // SAFETY: close(2) and prctl(2) on our own process.
    unsafe {
        for fd in 3..4096 {
            if !keep.contains(&fd) {
                libc::close(fd);
            }
        }
        libc::prctl(libc::PR_SET_NAME, name.as_ptr());
    }
}

/// In a forked child: whether the control pipe has said to end (a byte, or its parent closed it).
///
/// # Safety
/// Only in a forked child, on its control pipe.
pub unsafe fn told_to_end(control: i32, wait_ms: i32) -> bool {
    let mut p = libc::pollfd { fd: control, events: libc::POLLIN, revents: 0 };
    // SAFETY: poll on one valid pollfd.
    unsafe { libc::poll(&mut p, 1, wait_ms) != 0 }
}

/// In a forked child: a listening IPv4 TCP socket on 127.0.0.1, `port` (0: any), with `backlog`.
/// Returns its fd and port, or None.
///
/// # Safety
/// Raw socket calls; the fd is the caller's.
pub unsafe fn listen_loopback(port: u16, backlog: i32) -> Option<(i32, u16)> {
    // SAFETY: socket calls on a fresh fd and a local sockaddr_in.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return None;
        }
        let mut sin = loopback_v4(port);
        let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if libc::bind(fd, (&raw const sin).cast(), len) != 0
            || libc::listen(fd, backlog) != 0
            || libc::getsockname(fd, (&raw mut sin).cast(), &mut len) != 0
        {
            libc::close(fd);
            return None;
        }
        Some((fd, u16::from_be(sin.sin_port)))
    }
}

/// 127.0.0.1:`port` as a `sockaddr_in`.
pub fn loopback_v4(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be() },
        sin_zero: [0; 8],
    }
}
