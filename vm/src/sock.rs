//! The few socket operations std does not offer.
use std::{io, net::TcpStream, os::fd::AsRawFd, time::Duration};

pub fn tid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

pub fn pid() -> u32 {
    std::process::id()
}

/// `SO_LINGER {on, 0}`: close() aborts with RST instead of FIN.
pub fn set_linger_zero(s: &TcpStream) -> io::Result<()> {
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: valid fd and a linger struct of the right size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const l).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// `TCP_LINGER2`: how long an orphaned socket stays in FIN_WAIT2.
pub fn set_linger2(s: &TcpStream, secs: i32) -> io::Result<()> {
    // SAFETY: valid fd and an int option.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_LINGER2,
            (&raw const secs).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Waits (without reading) until `events` is signalled on `s`; returns the revents.
pub fn wait_for(s: &TcpStream, events: i16, timeout: Duration) -> io::Result<i16> {
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
pub fn connect_bound(addr: std::net::SocketAddr) -> io::Result<(u16, io::Result<()>)> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let std::net::SocketAddr::V4(v4) = addr else {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "IPv4 only"));
    };
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
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
    let res = if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) };
    Ok((u16::from_be(bound.sin_port), res))
}
