//! The addresses of a received segment, from its `struct sk_buff` (IP and TCP headers), at the
//! offsets in [`crate::layout`]. Only lengths and addresses are read, never payload.
use tcperr_common::{
    ABSENT, SockInfo,
    tcp::{AF_INET, AF_INET6},
};

use crate::{layout::layout, sock::read};

/// The connection a received segment belongs to, seen from this host: local = its destination.
#[inline(always)]
pub fn segment_tuple(skb: u64) -> SockInfo {
    let mut info = SockInfo::ZERO;
    let (head_off, nh_off, th_off) =
        (layout!(skb_head), layout!(skb_network_header), layout!(skb_transport_header));
    if skb == 0 || head_off == ABSENT || nh_off == ABSENT || th_off == ABSENT {
        return info;
    }
    let head: u64 = read(skb, head_off);
    let ip = head + u64::from(read::<u16>(skb, nh_off));
    let tcp = head + u64::from(read::<u16>(skb, th_off));
    let version = read::<u8>(ip, 0) >> 4;
    if version == 4 {
        info.family = AF_INET;
        let s: [u8; 4] = read(ip, 12);
        let d: [u8; 4] = read(ip, 16);
        info.raddr[..4].copy_from_slice(&s);
        info.laddr[..4].copy_from_slice(&d);
    } else if version == 6 {
        info.family = AF_INET6;
        info.raddr = read(ip, 8);
        info.laddr = read(ip, 24);
    } else {
        return info;
    }
    info.rport = u16::from_be(read(tcp, 0));
    info.lport = u16::from_be(read(tcp, 2));
    info
}
