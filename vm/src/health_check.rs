//! A health-checked service: a server process on a service port (below the ephemeral range)
//! that accepts each connection and reads it until it ends, and a checker that connects and
//! resets (`SO_LINGER {on, 0}`), as load balancers' TCP checks do. Each check makes the
//! server's accepted socket receive an RST in softirq, whose owner tcperr must find
//! (benchmark §6, `tests/attribution.rs`).
use std::{
    io,
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use crate::{
    child::{self, Child},
    sock,
};

/// The service ports tried, in order: below Linux's default ephemeral range (32768), where
/// services listen.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A listener on 127.0.0.1 at the first free service port.
pub fn service_listener() -> io::Result<std::net::TcpListener> {
    PORTS
        .clone()
        .find_map(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
        .ok_or_else(|| io::Error::other("no free service port"))
}

/// The server process (task name "hc-server"). Dropping it ends the process.
pub struct HealthServer {
    pub pid: u32,
    pub addr: SocketAddr,
    _child: Child,
}

impl HealthServer {
    /// Forks the server; returns once it listens.
    pub fn start() -> io::Result<Self> {
        // SAFETY: the child makes raw libc calls only and ends in _exit.
        let c = unsafe { Child::fork(|status, control| server_child(status, control)) }?;
        let mut port = [0u8; 2];
        c.read_status(&mut port)?;
        let port = u16::from_le_bytes(port);
        if port == 0 {
            return Err(io::Error::other("the health-check server found no free service port"));
        }
        Ok(Self { pid: c.pid, addr: SocketAddr::from(([127, 0, 0, 1], port)), _child: c })
    }
}

/// # Safety
/// Only in a freshly forked child: raw libc calls, no allocation, ends in `_exit`.
unsafe fn server_child(status: i32, control: i32) -> ! {
    // SAFETY: as documented on the function.
    unsafe {
        child::detach(&[status, control], c"hc-server");
        let listener = PORTS.clone().find_map(|p| child::listen_loopback(p, 128));
        let Some((l, port)) = listener else {
            libc::write(status, [0u8; 2].as_ptr().cast(), 2);
            libc::_exit(1)
        };
        libc::write(status, port.to_le_bytes().as_ptr().cast(), 2);
        let mut buf = [0u8; 512];
        loop {
            let mut p = [
                libc::pollfd { fd: l, events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: control, events: libc::POLLIN, revents: 0 },
            ];
            libc::poll(p.as_mut_ptr(), 2, -1);
            if p[1].revents != 0 {
                libc::_exit(0);
            }
            let c = libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut());
            if c < 0 {
                continue;
            }
            // Read until the checker's reset (or an end) is seen; a checker that never ends
            // its connection does not hold the server up for more than a second.
            loop {
                let mut r = libc::pollfd { fd: c, events: libc::POLLIN, revents: 0 };
                if libc::poll(&mut r, 1, 1000) <= 0
                    || libc::read(c, buf.as_mut_ptr().cast(), buf.len()) <= 0
                {
                    break;
                }
            }
            libc::close(c);
        }
    }
}

/// What a checker did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Checks {
    /// Connections made and reset.
    pub made: u64,
    /// Connections that failed.
    pub failed: u64,
}

/// Checks `addr` `per_sec` times a second for `duration`: each check connects, waits `hold`
/// (the server has accepted by then, so the reset finds a socket a process holds), and closes
/// with `SO_LINGER {on, 0}`: an RST.
pub fn check(addr: SocketAddr, per_sec: f64, hold: Duration, duration: Duration) -> Checks {
    let mut checks = Checks::default();
    let start = Instant::now();
    let every = Duration::from_secs_f64(1.0 / per_sec);
    let mut next = start;
    while start.elapsed() < duration {
        match TcpStream::connect(addr) {
            Ok(c) => {
                std::thread::sleep(hold);
                if sock::set_linger_zero(&c).is_ok() {
                    checks.made += 1;
                } else {
                    checks.failed += 1;
                }
            }
            Err(_) => checks.failed += 1,
        }
        next += every;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    checks
}
