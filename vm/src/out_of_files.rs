//! The "too many open files" server: a forked listener at its `RLIMIT_NOFILE`; and its prefork
//! form, a master that listens and forks a worker which inherits the listener, uses up its own
//! descriptors and fails accept() with EMFILE, while the master has files to spare.
use std::{io, net::SocketAddr};

use crate::child::{self, Child};

/// A listener whose accepting process has used up its file descriptors: `RLIMIT_NOFILE` is
/// lowered to what it has open, so each accept() fails with EMFILE and connections stay queued
/// (the "too many open files" server). Dropping it ends the processes.
pub struct OutOfFilesServer {
    /// The process at its limit: the listener's only process (task name "server"), or the
    /// prefork worker (task name "worker").
    pub pid: u32,
    /// The prefork master (task name "master"), which listened and forked the worker.
    pub master: Option<u32>,
    pub addr: SocketAddr,
    _child: Child,
}

impl OutOfFilesServer {
    /// Forks the server from the calling thread, in its network namespace; returns once its
    /// accept() has failed with EMFILE.
    pub fn start() -> io::Result<Self> {
        // SAFETY: the child makes raw libc calls only and ends in _exit.
        let c = unsafe { Child::fork(|status, control| server_child(status, control)) }?;
        let port = read_port(&c)?;
        let mut e = [0u8; 1];
        c.read_status(&mut e)?;
        check_emfile(e[0])?;
        Ok(Self { pid: c.pid, master: None, addr: port, _child: c })
    }

    /// Forks the prefork master from the calling thread, in its network namespace; returns once
    /// its worker's accept() has failed with EMFILE.
    pub fn start_prefork() -> io::Result<Self> {
        // SAFETY: the child makes raw libc calls only and ends in _exit.
        let c = unsafe { Child::fork(|status, control| master_child(status, control)) }?;
        let port = read_port(&c)?;
        // The worker reports its pid and 'E' in one write.
        let mut worker = [0u8; 5];
        c.read_status(&mut worker)?;
        check_emfile(worker[4])?;
        let pid = u32::from_le_bytes([worker[0], worker[1], worker[2], worker[3]]);
        Ok(Self { pid, master: Some(c.pid), addr: port, _child: c })
    }
}

/// The listener's port, which the child reports first.
fn read_port(c: &Child) -> io::Result<SocketAddr> {
    let mut port = [0u8; 2];
    c.read_status(&mut port)?;
    match u16::from_le_bytes(port) {
        0 => Err(io::Error::other("the out-of-files server could not listen")),
        p => Ok(SocketAddr::from(([127, 0, 0, 1], p))),
    }
}

fn check_emfile(status: u8) -> io::Result<()> {
    if status == b'E' {
        Ok(())
    } else {
        Err(io::Error::other("the out-of-files server's accept() did not fail with EMFILE"))
    }
}

/// Listens on 127.0.0.1 with a backlog of 0 and reports the port (0: failed, and exits).
///
/// # Safety
/// Only in a forked child.
unsafe fn listen_and_report(status: i32) -> i32 {
    // SAFETY: as documented on the function.
    unsafe {
        let Some((fd, port)) = child::listen_loopback(0, 0) else {
            libc::write(status, [0u8; 2].as_ptr().cast(), 2);
            libc::_exit(1)
        };
        libc::write(status, port.to_le_bytes().as_ptr().cast(), 2);
        fd
    }
}

/// # Safety
/// Only in a freshly forked child: raw libc calls, no allocation, ends in `_exit`.
unsafe fn server_child(status: i32, control: i32) -> ! {
    // SAFETY: as documented on the function.
    unsafe {
        child::detach(&[status, control], c"server");
        let fd = listen_and_report(status);
        lower_limit_and_accept(fd, status, control, b"E", || child::told_to_end(control, 0))
    }
}

/// The prefork master: listens, forks the worker, and holds the listener with its own files to
/// spare until told to end (then ends the worker too).
///
/// # Safety
/// Only in a freshly forked child: raw libc calls, no allocation, ends in `_exit`.
unsafe fn master_child(status: i32, control: i32) -> ! {
    // SAFETY: as documented on the function.
    unsafe {
        child::detach(&[status, control], c"master");
        let fd = listen_and_report(status);
        let master = libc::getpid();
        let worker = libc::fork();
        if worker == 0 {
            // (the control pipe stays open but unread here: closing it would leave a hole
            // below the limit, and `RLIMIT_NOFILE` bounds descriptor numbers, not their count)
            libc::prctl(libc::PR_SET_NAME, c"worker".as_ptr());
            let mut report = [0u8; 5];
            report[..4].copy_from_slice(&libc::getpid().to_le_bytes());
            report[4] = b'E';
            lower_limit_and_accept(fd, status, control, &report, || libc::getppid() != master)
        }
        if worker < 0 {
            libc::_exit(1);
        }
        while !child::told_to_end(control, -1) {}
        libc::kill(worker, libc::SIGKILL);
        libc::waitpid(worker, std::ptr::null_mut(), 0);
        libc::_exit(0)
    }
}

/// Lowers `RLIMIT_NOFILE` to the lowest free descriptor (no new one fits), then tries to accept
/// on listener `fd` until `done()`, writing `report` to `status` the first time accept() fails
/// with EMFILE. `status`, `control` and `fd` are the descriptors it holds beyond stdio.
///
/// # Safety
/// Only in a forked child.
unsafe fn lower_limit_and_accept(
    fd: i32,
    status: i32,
    control: i32,
    report: &[u8],
    done: impl Fn() -> bool,
) -> ! {
    // SAFETY: as documented on the function.
    unsafe {
        // Holes below the highest descriptor are filled first (with copies of the listener), so
        // that the limit is the number of open files as well as the lowest free descriptor.
        let top = fd.max(status).max(control);
        let mut probe = libc::fcntl(fd, libc::F_DUPFD, 0);
        while probe >= 0 && probe < top {
            probe = libc::fcntl(fd, libc::F_DUPFD, 0);
        }
        libc::close(probe);
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = probe as libc::rlim_t;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            libc::_exit(1);
        }
        let mut reported = false;
        while !done() {
            // At the limit accept() fails at once, before it would wait for a connection; should
            // a descriptor come free, it takes a connection and closes it.
            let mut l = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            libc::poll(&mut l, 1, 20);
            let c = libc::accept(fd, std::ptr::null_mut(), std::ptr::null_mut());
            if c >= 0 {
                libc::close(c);
            } else if *libc::__errno_location() == libc::EMFILE && !reported {
                libc::write(status, report.as_ptr().cast(), report.len());
                reported = true;
            }
        }
        libc::_exit(0)
    }
}
