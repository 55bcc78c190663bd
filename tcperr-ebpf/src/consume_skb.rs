//! `tp_btf/consume_skb` → [`AcceptQueueFull`] ([`AcceptQueueFull::SYN_DROPPED`]).
//! `TP_PROTO(struct sk_buff *skb, void *location)`: a buffer freed after use, and where from.
//! A listener done with a SYN frees it from `tcp_rcv_state_process` whether it answered or
//! dropped it (`tcp_conn_request()` returns 0 either way, no drop reason); when its accept queue
//! is full there, the SYN was dropped (`sk_acceptq_is_full()`: with or without syncookies).
//! The hook fires for every consumed buffer on the machine (each received data segment, once
//! read): anything freed elsewhere leaves after one context load and one compare against
//! `tcp_rcv_state_process`'s address range (from /proc/kallsyms).
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use tcperr_common::AcceptQueueFull;

use crate::{
    emit::emit,
    layout::layout,
    listener::{accept_queue_full, overflow},
    listeners::listener_of,
    skb::segment_tuple,
    sock::{Head, SockMem, read},
};

const TH_SYN: u8 = 0x02;
const TH_ACK: u8 = 0x10;

#[btf_tracepoint(function = "consume_skb")]
pub fn consume_skb(ctx: BtfTracePointContext) -> i32 {
    let location = ctx.arg::<u64>(1);
    let start = (u64::from(layout!(syn_site_hi)) << 32) | u64::from(layout!(syn_site_lo));
    if location.wrapping_sub(start) >= u64::from(layout!(syn_site_len)) {
        return 0;
    }
    syn_consumed(ctx.arg::<u64>(0));
    0
}

/// A listener handled segment `skb`: when it is a SYN and the listener's accept queue is full,
/// the SYN was dropped.
#[inline(always)]
fn syn_consumed(skb: u64) {
    let head: u64 = read(skb, layout!(skb_head));
    let th = head + u64::from(read::<u16>(skb, layout!(skb_transport_header)));
    if read::<u8>(th, 13) & (TH_SYN | TH_ACK) != TH_SYN {
        return;
    }
    let mut sock = segment_tuple(skb);
    let net = route_net(skb);
    sock.netns = read(net, layout!(net_ns_inum));
    let Some(sk) = listener_of(sock.netns, sock.lport) else {
        return;
    };
    if !accept_queue_full(sk) {
        return;
    }
    // (the listener's inode: its owner is found by it when tcperr did not see its listen())
    sock.ino = <Head as SockMem>::ino(sk);
    let mut e = overflow(sk, sock, AcceptQueueFull::SYN_DROPPED);
    e.syncookies = u32::from(read::<u8>(net, layout!(net_syncookies)));
    emit(&e);
}

/// The `struct net` of `skb`'s route: `skb->dev` is cleared before a listener (or a socket's
/// filter) sees a segment; its input route still names the device, and so the namespace.
#[inline(always)]
pub fn route_net(skb: u64) -> u64 {
    let dst = read::<u64>(skb, layout!(skb_refdst)) & !1;
    read(read::<u64>(dst, layout!(dst_dev)), layout!(netdev_net))
}
