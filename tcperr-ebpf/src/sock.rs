//! Reading a `struct sock` at the offsets in [`crate::layout`].
use aya_ebpf::helpers::bpf_probe_read_kernel;
use tcperr_common::{
    ABSENT, SockInfo,
    tcp::{AF_INET, AF_INET6, IPPROTO_TCP, state},
};

use crate::layout::layout;

/// Reads a `T` at `base + off`, or `T::default()` if the offset is absent or the read faults.
#[inline(always)]
pub fn read<T: Default>(base: u64, off: u32) -> T {
    if base == 0 || off == ABSENT {
        return T::default();
    }
    // SAFETY: bpf_probe_read_kernel validates the address; a fault yields Err.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.unwrap_or_default()
}

/// The address of a tracepoint's record, for [`read`] at the offsets of its `format` file.
#[inline(always)]
pub fn ctx_addr(ctx: &aya_ebpf::programs::TracePointContext) -> u64 {
    use aya_ebpf::EbpfContext as _;
    ctx.as_ptr() as u64
}

/// Whether `sk` is a TCP socket over IPv4 or IPv6.
#[inline(always)]
pub fn is_tcp(sk: u64) -> bool {
    let family: u16 = read(sk, layout!(sk_family));
    (family == AF_INET || family == AF_INET6)
        && read::<u16>(sk, layout!(sk_protocol)) == IPPROTO_TCP
}

/// Identity, 4-tuple and state of `sk`. A TIME_WAIT or NEW_SYN_RECV "socket" is a smaller
/// structure that shares only `struct sock_common`: nothing past it is read.
#[inline(always)]
pub fn sock_info(sk: u64) -> SockInfo {
    let mut info = SockInfo::ZERO;
    info.family = read(sk, layout!(sk_family));
    info.state = read(sk, layout!(sk_state));
    let full = !matches!(info.state, state::TIME_WAIT | state::NEW_SYN_RECV);
    info.lport = read(sk, layout!(sk_num));
    if info.lport == 0 && full {
        // skc_num is cleared when the socket leaves the hash tables (CLOSE); inet_sport is not.
        info.lport = u16::from_be(read(sk, layout!(sk_sport)));
    }
    info.rport = u16::from_be(read(sk, layout!(sk_dport)));
    info.cookie = read(sk, layout!(sk_cookie));
    if info.family == AF_INET6 {
        info.laddr = read(sk, layout!(sk_v6_rcv_saddr));
        info.raddr = read(sk, layout!(sk_v6_daddr));
    } else {
        let l: [u8; 4] = read(sk, layout!(sk_rcv_saddr));
        let r: [u8; 4] = read(sk, layout!(sk_daddr));
        info.laddr[..4].copy_from_slice(&l);
        info.raddr[..4].copy_from_slice(&r);
    }
    if full {
        let socket: u64 = read(sk, layout!(sk_socket));
        info.ino = read(socket, layout!(socket_ino));
    }
    info
}
