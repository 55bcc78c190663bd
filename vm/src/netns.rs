//! Network namespaces of the scenarios' own, and their loopback interface.
use std::{io, os::fd::AsRawFd};

/// Brings the loopback interface of the calling thread's network namespace up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket/ioctl on a zeroed ifreq naming "lo"; the fd is owned right away. (The
    // request's type is the C library's: glibc's unsigned long, musl's int.)
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
        if libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS as libc::Ioctl, &mut ifr) != 0 {
            return Err(io::Error::last_os_error());
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS as libc::Ioctl, &ifr) != 0 {
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
