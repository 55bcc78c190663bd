//! The few socket operations std does not offer: options, filters, connects of particular
//! kinds.
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

/// What `TCP_INFO` says of a connection's retransmissions: the kernel's own account, which a
/// scenario compares with tcperr's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retransmissions {
    /// `tcpi_total_retrans`: segments retransmitted over the connection's life.
    pub total: u32,
    /// `tcpi_retransmits`: retransmissions in a row unanswered.
    pub in_row: u8,
    /// `tcpi_rto`: the retransmission timeout, µs.
    pub rto_us: u32,
}

/// `getsockopt(TCP_INFO)`'s retransmission counts. Read through the start of `struct tcp_info`
/// (eight bytes of u8 fields, then u32s; `tcpi_total_retrans` is the 24th), which has not
/// changed since Linux 2.6: the kernel copies at most the length asked for.
pub fn retransmissions(s: &impl AsRawFd) -> io::Result<Retransmissions> {
    #[repr(C)]
    struct Head {
        bytes: [u8; 8],
        words: [u32; 24],
    }
    let mut info = Head { bytes: [0; 8], words: [0; 24] };
    let mut len = size_of::<Head>() as libc::socklen_t;
    // SAFETY: a valid fd and a buffer of `len` bytes the kernel writes at most `len` of.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < size_of::<Head>() {
        return Err(io::Error::other(format!("TCP_INFO gave {len} bytes")));
    }
    Ok(Retransmissions { total: info.words[23], in_row: info.bytes[2], rto_us: info.words[0] })
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
