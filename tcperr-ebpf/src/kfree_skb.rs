//! `tp_btf/kfree_skb` → [`Drop`]. `TP_PROTO(struct sk_buff *skb, void *location[, enum
//! skb_drop_reason reason[, struct sock *rx_sk]])` (userspace checks it in BTF; the reason is
//! there since Linux 5.17, `rx_sk` since 6.13). The hook fires for every buffer the kernel
//! drops, of every protocol: the first instructions test the reason against the set userspace
//! asked for (the causes users act on; the routine reasons, which a healthy host meets all the
//! time, leave there), then that the segment is TCP's, before anything else is read.
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use tcperr_common::{Drop, SockInfo};

use crate::{
    consume_skb::route_net,
    emit::{emit, header},
    layout::{LAYOUT, layout},
    skb::segment_tuple,
    sock::{Head, read, sock_info},
};

const IPPROTO_TCP: u8 = 6;

#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb(ctx: BtfTracePointContext) -> i32 {
    // (constants to the verifier: an argument this kernel lacks is never read)
    if layout!(kfree_skb_reason_arg) != 2 {
        return 0;
    }
    let reason = ctx.arg::<u64>(2) as u32;
    if reason >= 256 {
        return 0;
    }
    // (masked after a barrier: the compiler, knowing reason < 256, would index with the
    // unmasked 64-bit argument, which the verifier cannot bound)
    let word = (core::hint::black_box(reason >> 5) & 7) as usize;
    // SAFETY: in bounds (word < 8); volatile, as `layout!`. (A pointer, not an
    // index: a bounds check would leave a panic path the verifier refuses.)
    let bits = unsafe {
        core::ptr::read_volatile((&raw const LAYOUT.drop_reasons).cast::<u32>().add(word))
    };
    if (bits >> (reason % 32)) & 1 == 0 {
        return 0;
    }
    let rx_sk = if layout!(kfree_skb_rx_sk_arg) == 3 { ctx.arg::<u64>(3) } else { 0 };
    dropped(ctx.arg::<u64>(0), rx_sk, reason);
    0
}

#[inline(always)]
fn dropped(skb: u64, rx_sk: u64, reason: u32) {
    let head: u64 = read(skb, layout!(skb_head));
    let ip = head + u64::from(read::<u16>(skb, layout!(skb_network_header)));
    let proto = match read::<u8>(ip, 0) >> 4 {
        4 => read::<u8>(ip, 9),
        6 => read::<u8>(ip, 6), // (a TCP segment behind extension headers is not seen)
        _ => 0,
    };
    if proto != IPPROTO_TCP {
        return;
    }
    let mut seg = segment_tuple(skb);
    if seg.netns == 0 {
        seg.netns = read(route_net(skb), layout!(net_ns_inum));
    }
    let sk = if rx_sk != 0 { rx_sk } else { read::<u64>(skb, layout!(skb_sk)) };
    let s: SockInfo = if sk == 0 { seg } else { sock_info::<Head>(sk) };
    // (a socket without a port is the kernel's own, which sends RSTs and ACKs for no socket)
    let (sock, outgoing) = if sk == 0 || s.lport == 0 {
        (seg, 0)
    } else {
        // On its way out a segment's source is the socket's own port.
        (s, u32::from(s.lport == seg.rport && s.lport != seg.lport))
    };
    emit(&Drop { header: header::<Drop, Head>(sk), sock, reason, outgoing });
}
