//! `tp_btf/tcp_receive_reset` (fallback `raw_tracepoint/tcp_receive_reset`) → [`RstReceived`]:
//! first statement of `tcp_reset()`, so the state read here is the one the RST arrived in, and it
//! alone decides the errno. `TP_PROTO(struct sock *sk)` (checked in BTF); both forms get the
//! socket without the kernel building a record, the BTF form reads it with plain loads.
use aya_ebpf::{
    macros::{btf_tracepoint, raw_tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext},
};
use tcperr_common::{RstReceived, tcp::errno_for_rst_in_state};

use crate::{
    emit::{emit, emit_noted, header, untasked},
    last_rst::note_rst,
    sock::{Direct, Head, SockMem, sock_info},
    stakes::stakes,
};

#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: BtfTracePointContext) -> i32 {
    rst_received::<Direct>(ctx.arg::<u64>(0))
}

#[raw_tracepoint(tracepoint = "tcp_receive_reset")]
pub fn raw_tcp_receive_reset(ctx: RawTracePointContext) -> i32 {
    rst_received::<Head>(ctx.arg::<u64>(0))
}

#[inline(always)]
fn rst_received<M: SockMem>(sk: u64) -> i32 {
    let sock = sock_info::<M>(sk);
    // Untasked in softirq (the interrupted task is nobody's): the socket's owner comes from its
    // other records. Tasked when the RST waited in the backlog of a socket a task had locked:
    // that task, releasing the lock, is the one holding the socket.
    let header =
        if sock.locked != 0 { header::<RstReceived, M>(sk) } else { untasked::<RstReceived>(sk) };
    note_rst(sk, true);
    let stakes = stakes::<M>(sk);
    let errno = errno_for_rst_in_state(sock.state);
    let record = RstReceived { header, sock, errno, _pad: 0, stakes };
    // (the raw form's frame is 504 bytes: no room for the diagnostic's call)
    if M::DIRECT {
        emit_noted(&record)
    } else {
        emit(&record)
    }
    0
}
