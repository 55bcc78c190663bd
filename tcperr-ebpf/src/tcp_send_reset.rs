//! `raw_tracepoint/tcp_send_reset` → [`RstSent`]. `TP_PROTO(const struct sock *sk, const struct
//! sk_buff *skb[, enum sk_rst_reason reason])` (userspace checks it in BTF; the reason is there
//! since Linux 6.10). With a socket, its identity comes from the socket; without one (an RST for
//! a segment no socket wants), from the segment being answered. The raw form spares the kernel
//! building the tracepoint's record.
use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use tcperr_common::{
    ABSENT, AcceptQueueFull, EventHeader, RstSent, SockInfo, event::Event as _, tcp::state,
};

use crate::{
    emit::{emit, header},
    held_close::take_held_close,
    last_rst::note_rst,
    layout::layout,
    listener::{accept_queue_full, overflow},
    skb::segment_tuple,
    sock::{Head, SockMem, sock_info},
};

#[raw_tracepoint(tracepoint = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: RawTracePointContext) -> i32 {
    let sk = ctx.arg::<u64>(0);
    let skb = ctx.arg::<u64>(1);
    // (A constant to the verifier: on kernels without the argument this read is never reached.)
    let reason =
        if layout!(send_reset_reason_arg) == 2 { ctx.arg::<u64>(2) as u32 } else { ABSENT };
    if sk == 0 {
        emit(&rst_sent(header::<RstSent, Head>(sk), segment_tuple(skb), reason, 0, 0));
        return 0;
    }
    if let Some(close) = take_held_close(sk) {
        // An abort: its move to CLOSE, held back a moment ago in this call, is carried by this
        // record and already holds all of it (same task, same socket, same 4-tuple): no reads.
        note_rst(sk, false);
        emit(&rst_sent(
            EventHeader { kind: RstSent::KIND as u32, ..close.header },
            SockInfo { state: state::CLOSE, ..close.sock },
            reason,
            close.oldstate,
            unread(sk),
        ));
        return 0;
    }
    let sock = sock_info::<Head>(sk);
    if sock.state == state::LISTEN && accept_queue_full(sk) {
        // tcp_abort_on_overflow=1: the listener resets a client whose handshake it cannot queue.
        // The record describes the listener; the client is in the segment being answered.
        emit(&overflow(sk, segment_tuple(skb), AcceptQueueFull::RESET));
        return 0;
    }
    let header = header::<RstSent, Head>(sk);
    note_rst(sk, false);
    // (a TIME_WAIT or request socket is no tcp_sock: nothing of it to read)
    let unread =
        if matches!(sock.state, state::TIME_WAIT | state::NEW_SYN_RECV) { 0 } else { unread(sk) };
    emit(&rst_sent(header, sock, reason, 0, unread));
    0
}

#[inline(always)]
fn rst_sent(
    header: EventHeader,
    sock: SockInfo,
    reason: u32,
    closed_from: u8,
    unread: u32,
) -> RstSent {
    RstSent { header, sock, reason, closed_from, _pad0: 0, _pad1: 0, unread, _pad2: 0 }
}

/// Bytes `sk` received that its program never read: two reads, on an RST's path only.
#[inline(always)]
fn unread(sk: u64) -> u32 {
    let rcv_nxt: u32 = Head::load(sk, layout!(tp_rcv_nxt));
    let copied_seq: u32 = Head::load(sk, layout!(tp_copied_seq));
    rcv_nxt.wrapping_sub(copied_seq)
}
