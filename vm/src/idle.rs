//! Idle loopback connections held by a process of their own: the unrelated sockets of a busy
//! host, which tcperr's attribution must not pay for (benchmark §6, `tests/attribution.rs`).
use std::io;

use crate::child::{self, Child};

/// Listeners the connections are spread over: one destination's 4-tuples would run out of
/// ephemeral ports (28,232 by default) before 50,000 connections.
const MAX_LISTENERS: usize = 32;
const PER_LISTENER: usize = 10_000;

/// Processes (task name "idle") holding `connections` established loopback TCP connections,
/// both ends of each: 2 × `connections` sockets in their `/proc/PID/fd`, none of them ever used.
/// As many processes as their `RLIMIT_NOFILE` hard limit needs (raising it takes
/// CAP_SYS_RESOURCE, which a root in a container may lack): each raises its soft limit to the
/// hard one. Dropping it ends the processes (and closes the sockets).
pub struct IdleSockets {
    pub pids: Vec<u32>,
    /// TCP sockets they hold.
    pub sockets: usize,
    _children: Vec<Child>,
}

impl IdleSockets {
    /// Forks the processes and returns once every connection is established.
    pub fn open(connections: usize) -> io::Result<Self> {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes the struct.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Room for both ends of each connection, the listeners and what a process starts with.
        let hard = usize::try_from(lim.rlim_max).unwrap_or(usize::MAX);
        let per_process =
            (hard.saturating_sub(MAX_LISTENERS + 64) / 2).clamp(1, MAX_LISTENERS * PER_LISTENER);
        let mut children = Vec::new();
        let mut left = connections;
        while left > 0 {
            let n = left.min(per_process);
            // SAFETY: the child makes raw libc calls only and ends in _exit.
            let c = unsafe { Child::fork(move |status, control| idle_child(n, status, control)) }?;
            let mut ok = [0u8; 1];
            c.read_status(&mut ok)?;
            if ok[0] != b'R' {
                let mut errno = [0u8; 4];
                c.read_status(&mut errno)?;
                return Err(io::Error::other(format!(
                    "an idle-sockets process failed: {}",
                    io::Error::from_raw_os_error(i32::from_le_bytes(errno))
                )));
            }
            children.push(c);
            left -= n;
        }
        let pids = children.iter().map(|c| c.pid).collect();
        Ok(Self { pids, sockets: 2 * connections, _children: children })
    }
}

/// Reports the last error on `status` and ends the child.
///
/// # Safety
/// Only in a forked child.
unsafe fn fail(status: i32) -> ! {
    // SAFETY: as documented on the function.
    unsafe {
        let errno = (*libc::__errno_location()).to_le_bytes();
        libc::write(status, b"F".as_ptr().cast(), 1);
        libc::write(status, errno.as_ptr().cast(), 4);
        libc::_exit(1)
    }
}

/// # Safety
/// Only in a freshly forked child: raw libc calls, no allocation, ends in `_exit`.
unsafe fn idle_child(connections: usize, status: i32, control: i32) -> ! {
    // SAFETY: as documented on the function.
    unsafe {
        child::detach(&[status, control], c"idle");
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            fail(status);
        }
        let listeners = connections.div_ceil(PER_LISTENER);
        let mut addrs = [child::loopback_v4(0); MAX_LISTENERS];
        let mut fds = [-1; MAX_LISTENERS];
        for i in 0..listeners {
            let Some((fd, port)) = child::listen_loopback(0, 4096) else { fail(status) };
            (fds[i], addrs[i]) = (fd, child::loopback_v4(port));
        }
        let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        for i in 0..connections {
            let l = i % listeners;
            let c = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            if c < 0 || libc::connect(c, (&raw const addrs[l]).cast(), len) != 0 {
                fail(status);
            }
            if libc::accept(fds[l], std::ptr::null_mut(), std::ptr::null_mut()) < 0 {
                fail(status);
            }
        }
        // The listeners go: only the connections stay.
        for fd in &fds[..listeners] {
            libc::close(*fd);
        }
        libc::write(status, b"R".as_ptr().cast(), 1);
        while !child::told_to_end(control, -1) {}
        libc::_exit(0)
    }
}
