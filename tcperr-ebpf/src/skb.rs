//! The addresses of a received segment, from its `struct sk_buff` (IP and TCP headers), at the
//! offsets in [`crate::layout`]. Only lengths and addresses are read, never payload.
use core::hint::black_box;

use tcperr_common::{
    ABSENT, SockInfo,
    tcp::{AF_INET, AF_INET6},
};

use crate::{
    layout::layout,
    sock::{read, v6},
};

/// The connection a received segment belongs to, seen from this host: local = its destination.
#[inline(always)]
pub fn segment_tuple(skb: u64) -> SockInfo {
    let (head_off, nh_off, th_off) =
        (layout!(skb_head), layout!(skb_network_header), layout!(skb_transport_header));
    // (built from words and one literal: `SockInfo::ZERO` and byte-array stores became calls
    // to a byte-wise memset, see `crate::emit::untasked`)
    let zero = black_box(0u64);
    let none = SockInfo {
        cookie: zero,
        ino: zero,
        family: 0,
        lport: 0,
        rport: 0,
        state: 0,
        locked: 0,
        netns: 0,
        cgroup: 0,
        laddr: v6([zero, zero]),
        raddr: v6([zero, zero]),
    };
    if skb == 0 || head_off == ABSENT || nh_off == ABSENT || th_off == ABSENT {
        return none;
    }
    let head: u64 = read(skb, head_off);
    let ip = head + u64::from(read::<u16>(skb, nh_off));
    let tcp = head + u64::from(read::<u16>(skb, th_off));
    let version = read::<u8>(ip, 0) >> 4;
    let (family, laddr, raddr) = if version == 4 {
        // IPv4 in the first 4 bytes (network order as in memory), the rest zero.
        let s: u32 = read(ip, 12);
        let d: u32 = read(ip, 16);
        (AF_INET, v6([u64::from(d), zero]), v6([u64::from(s), zero]))
    } else if version == 6 {
        (AF_INET6, v6(read(ip, 24)), v6(read(ip, 8)))
    } else {
        return none;
    };
    let net: u64 = read(read::<u64>(skb, layout!(skb_dev)), layout!(netdev_net));
    SockInfo {
        family,
        netns: read(net, layout!(net_ns_inum)),
        laddr,
        raddr,
        rport: u16::from_be(read(tcp, 0)),
        lport: u16::from_be(read(tcp, 2)),
        ..none
    }
}
