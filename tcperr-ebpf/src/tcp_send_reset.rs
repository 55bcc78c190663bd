//! `tracepoint/tcp/tcp_send_reset` → [`RstSent`]. With a socket, its identity comes from the
//! socket; without one (Linux 6.10+ reports RSTs for segments no socket wants), from the
//! segment's addresses in the record.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tcperr_common::{
    ABSENT, AcceptQueueFull, RstSent, SockInfo,
    tcp::{AF_INET6, state},
};

use crate::{
    emit::{emit, header, note_rst},
    layout::layout,
    skb::segment_tuple,
    sock::{ctx_addr, read, sock_info},
    tcp_retransmit_synack::{accept_queue_full, overflow},
};

#[tracepoint(category = "tcp", name = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    let rec = ctx_addr(&ctx);
    let sk: u64 = read(rec, layout!(tp_send_reset_skaddr));
    let reason_off = layout!(tp_send_reset_reason);
    let reason = if reason_off == ABSENT { ABSENT } else { read(rec, reason_off) };
    if sk == 0 {
        emit(&RstSent { header: header::<RstSent>(sk), sock: segment_info(rec), reason, _pad: 0 });
        return 0;
    }
    let sock = sock_info(sk);
    if sock.state == state::LISTEN && accept_queue_full(sk) {
        // tcp_abort_on_overflow=1: the listener resets a client whose handshake it cannot queue.
        // The record describes the listener; the client is in the segment being answered.
        let skb: u64 = read(rec, layout!(tp_send_reset_skbaddr));
        emit(&overflow(sk, segment_tuple(skb), AcceptQueueFull::RESET));
        return 0;
    }
    note_rst(sk, false);
    emit(&RstSent { header: header::<RstSent>(sk), sock, reason, _pad: 0 });
    0
}

/// The addresses of the segment that drew the RST, from the record's `saddr`/`daddr`
/// (`struct sockaddr_in` or `sockaddr_in6`, 28 bytes each).
#[inline(always)]
fn segment_info(rec: u64) -> SockInfo {
    let mut info = SockInfo::ZERO;
    let (saddr, daddr) = (layout!(tp_send_reset_saddr), layout!(tp_send_reset_daddr));
    if saddr == ABSENT || daddr == ABSENT {
        return info;
    }
    info.family = read(rec, saddr);
    info.lport = u16::from_be(read(rec, saddr + 2));
    info.rport = u16::from_be(read(rec, daddr + 2));
    if info.family == AF_INET6 {
        info.laddr = read(rec, saddr + 8);
        info.raddr = read(rec, daddr + 8);
    } else {
        let l: [u8; 4] = read(rec, saddr + 4);
        let r: [u8; 4] = read(rec, daddr + 4);
        info.laddr[..4].copy_from_slice(&l);
        info.raddr[..4].copy_from_slice(&r);
    }
    info
}
