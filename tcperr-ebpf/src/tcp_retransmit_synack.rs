//! `raw_tracepoint/tcp_retransmit_synack` (else `tracepoint/tcp/tcp_retransmit_synack`) →
//! [`AcceptQueueFull`] (dropped). `TP_PROTO(const struct sock *sk, const struct request_sock
//! *req)`. A listener retransmits its SYN-ACK; when the pending connection is marked `acked`, the
//! client's final ACK had come and was dropped because the accept queue was full
//! (`tcp_abort_on_overflow=0`), unless the listener defers accepting (`TCP_DEFER_ACCEPT`: a
//! bare ACK is dropped and marked so with room in the queue) and its queue is not full. Any other
//! retransmission (a lost SYN-ACK) leaves after reading one bit. The raw form needs no tracefs and no record offsets (userspace checks the prototype
//! in BTF); the classic form, whose field offsets come from the tracepoint's `format` file, is
//! its fallback.
use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tcperr_common::{ABSENT, AcceptQueueFull};

use crate::{
    emit::emit_noted,
    layout::layout,
    listener::{accept_queue_full, overflow},
    sock::{Head, ctx_addr, read, sock_info},
};

#[raw_tracepoint(tracepoint = "tcp_retransmit_synack")]
pub fn tcp_retransmit_synack(ctx: RawTracePointContext) -> i32 {
    synack_retransmitted(ctx.arg::<u64>(0), ctx.arg::<u64>(1));
    0
}

#[tracepoint(category = "tcp", name = "tcp_retransmit_synack")]
pub fn tp_tcp_retransmit_synack(ctx: TracePointContext) -> u32 {
    let rec = ctx_addr(&ctx);
    synack_retransmitted(read(rec, layout!(tp_synack_skaddr)), read(rec, layout!(tp_synack_req)));
    0
}

/// Listener `sk` retransmitted the SYN-ACK of request sock `req`.
#[inline(always)]
fn synack_retransmitted(sk: u64, req: u64) {
    let byte = layout!(req_acked_byte);
    if byte == ABSENT || u32::from(read::<u8>(req, byte)) & layout!(req_acked_mask) == 0 {
        return;
    }
    // TCP_DEFER_ACCEPT drops a bare final ACK and marks it `acked` as well: an overflow only
    // if the queue is full.
    if read::<u8>(sk, layout!(icsk_defer_accept)) != 0 && !accept_queue_full(sk) {
        return;
    }
    // A request sock shares `struct sock_common` with sockets: its 4-tuple is the connection.
    emit_noted(&overflow(sk, sock_info::<Head>(req), AcceptQueueFull::DROPPED));
}
