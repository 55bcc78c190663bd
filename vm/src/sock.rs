//! The few socket operations std does not offer.
use std::{io, net::TcpStream, os::fd::AsRawFd, time::Duration};

pub fn tid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

pub fn pid() -> u32 {
    std::process::id()
}

/// `setsockopt(fd, level, name, &value)`.
fn setsockopt<T>(fd: &impl AsRawFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: a valid fd and a value of the size passed; the kernel copies it during the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// `SO_LINGER {on, 0}`: close() aborts with RST instead of FIN.
pub fn set_linger_zero(s: &TcpStream) -> io::Result<()> {
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    setsockopt(s, libc::SOL_SOCKET, libc::SO_LINGER, &l)
}

/// `TCP_REPAIR` on (needs CAP_NET_ADMIN): close() then drops the connection without a
/// segment, no RST (`tcp_disconnect()` sets ECONNABORTED instead).
pub fn set_repair(s: &TcpStream) -> io::Result<()> {
    setsockopt(s, libc::IPPROTO_TCP, libc::TCP_REPAIR, &1i32)
}

/// `TCP_LINGER2`: how long an orphaned socket stays in FIN_WAIT2.
pub fn set_linger2(s: &TcpStream, secs: i32) -> io::Result<()> {
    setsockopt(s, libc::IPPROTO_TCP, libc::TCP_LINGER2, &secs)
}

/// `TCP_USER_TIMEOUT`: how long sent data may stay unacknowledged before the kernel gives up
/// with ETIMEDOUT.
pub fn set_user_timeout(s: &TcpStream, ms: u32) -> io::Result<()> {
    setsockopt(s, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, &ms)
}

/// Attaches a classic BPF filter that drops every segment arriving for `s`: the kernel discards
/// them before TCP sees them (no ACK, no RST), as a peer that vanished would. `detach` undoes it.
pub fn drop_all_input(s: &impl AsRawFd) -> io::Result<()> {
    let mut insn =
        [libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: 0 }];
    let prog = libc::sock_fprog { len: 1, filter: insn.as_mut_ptr() };
    setsockopt(s, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

/// Removes a filter set by [`drop_all_input`].
pub fn detach_filter(s: &impl AsRawFd) -> io::Result<()> {
    setsockopt(s, libc::SOL_SOCKET, libc::SO_DETACH_FILTER, &0i32)
}

/// Waits (without reading) until `events` is signalled on `s`; returns the revents.
pub fn wait_for(s: &impl AsRawFd, events: i16, timeout: Duration) -> io::Result<i16> {
    let mut p = libc::pollfd { fd: s.as_raw_fd(), events, revents: 0 };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
    match rc {
        1 => Ok(p.revents),
        0 => Err(io::Error::new(io::ErrorKind::TimedOut, "poll timed out")),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Bytes waiting in the receive queue (FIONREAD).
pub fn unread_bytes(s: &TcpStream) -> io::Result<i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: valid fd, FIONREAD writes an int.
    let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc == 0 { Ok(n) } else { Err(io::Error::last_os_error()) }
}

/// Binds a new TCP socket to an ephemeral port of `addr`'s loopback and connects it to `addr`:
/// (local port, connect result). The explicit bind keeps the port assigned after a failure.
/// `nonblocking`: connect() returns EINPROGRESS at once, and the result is what the program
/// collects later, as event loops do: POLLOUT, then `SO_ERROR`.
pub fn connect_bound(
    addr: std::net::SocketAddr,
    nonblocking: bool,
) -> io::Result<(u16, io::Result<()>)> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let std::net::SocketAddr::V4(v4) = addr else {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "IPv4 only"));
    };
    // SAFETY: plain socket(2); the fd is owned below.
    let flags = if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    let fd =
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | flags, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let sin = |port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() },
        sin_zero: [0; 8],
    };
    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let local = sin(0);
    // SAFETY: valid fd and sockaddr_in of the given length.
    if unsafe { libc::bind(fd.as_raw_fd(), (&raw const local).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut bound = sin(0);
    let mut blen = len;
    // SAFETY: as above; getsockname writes at most blen bytes.
    if unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut bound).cast(), &mut blen) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let remote = sin(v4.port());
    // SAFETY: as above.
    let rc = unsafe { libc::connect(fd.as_raw_fd(), (&raw const remote).cast(), len) };
    let mut res = if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) };
    if nonblocking {
        match res {
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            other => {
                return Err(io::Error::other(format!(
                    "connect returned {other:?}, not EINPROGRESS"
                )));
            }
        }
        wait_for(&fd, libc::POLLOUT, Duration::from_secs(5))?;
        let mut err: libc::c_int = 0;
        let mut elen = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: valid fd; SO_ERROR writes an int of elen bytes.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&raw mut err).cast(),
                &mut elen,
            )
        };
        res = match (rc, err) {
            (0, 0) => Ok(()),
            (0, e) => Err(io::Error::from_raw_os_error(e)),
            _ => Err(io::Error::last_os_error()),
        };
    }
    Ok((u16::from_be(bound.sin_port), res))
}

/// `listen(fd, backlog)` again: changes a listener's backlog.
pub fn relisten(l: &std::net::TcpListener, backlog: i32) -> io::Result<()> {
    // SAFETY: valid listening fd.
    if unsafe { libc::listen(l.as_raw_fd(), backlog) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Brings the loopback interface of the calling thread's network namespace up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket/ioctl on a zeroed ifreq naming "lo"; the fd is owned right away.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        if libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) != 0 {
            return Err(io::Error::last_os_error());
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A network namespace of the scenario's own, so that its sysctls touch nothing else. Threads
/// join it with [`Netns::enter`]; it goes away with its last thread and this handle.
pub struct Netns(std::os::fd::OwnedFd);

impl Netns {
    /// A new namespace with `lo` up and `sysctls` (paths under /proc/sys) set.
    pub fn new(sysctls: &[(&'static str, &'static str)]) -> io::Result<Self> {
        let sysctls = sysctls.to_vec();
        std::thread::spawn(move || -> io::Result<Self> {
            // SAFETY: unshare affects only this short-lived thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            loopback_up()?;
            for (path, value) in sysctls {
                std::fs::write(format!("/proc/sys/{path}"), value)?;
            }
            let ns = std::fs::File::open("/proc/thread-self/ns/net")?;
            Ok(Self(ns.into()))
        })
        .join()
        .map_err(|_| io::Error::other("netns thread panicked"))?
    }

    /// Moves the calling thread into the namespace.
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY: a namespace fd we own; affects the calling thread only.
        if unsafe { libc::setns(self.0.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// A non-blocking TCP socket whose input is dropped ([`drop_all_input`]) and whose connect to
/// `addr` has started: its SYN leaves, the SYN-ACK never gets in.
pub fn stalled_connect(addr: std::net::SocketAddr) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let std::net::SocketAddr::V4(v4) = addr else {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "IPv4 only"));
    };
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let s = unsafe { TcpStream::from_raw_fd(fd) };
    drop_all_input(&s)?;
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() },
        sin_zero: [0; 8],
    };
    // SAFETY: valid fd and sockaddr_in.
    let rc = unsafe {
        libc::connect(
            s.as_raw_fd(),
            (&raw const sin).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    let err = io::Error::last_os_error();
    if rc != 0 && err.raw_os_error() != Some(libc::EINPROGRESS) {
        return Err(err);
    }
    Ok(s)
}

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

/// Waits until the pending connection from local client port `client_port` (a request socket of
/// a listener in the calling thread's network namespace) has had its SYN-ACK retransmitted by
/// timer `times` times (`retrnsmt` in /proc/net/tcp).
pub fn wait_for_synack_retransmits(
    client_port: u16,
    times: u32,
    timeout: Duration,
) -> io::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let table = std::fs::read_to_string("/proc/thread-self/net/tcp")?;
        let done = table.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = f
                .get(2)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            let syn_recv = f.get(3) == Some(&"03");
            let retrans = f.get(6).and_then(|r| u32::from_str_radix(r, 16).ok()).unwrap_or(0);
            port == Some(client_port) && syn_recv && retrans >= times
        });
        if done {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no SYN-ACK retransmission seen"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
