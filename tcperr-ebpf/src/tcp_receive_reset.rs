//! `raw_tracepoint/tcp_receive_reset` → [`RstReceived`]: first statement of `tcp_reset()`, so the
//! state read here is the one the RST arrived in, and it alone decides the errno.
//! `TP_PROTO(struct sock *sk)` (checked in BTF); the raw form gives the socket without a record.
use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use tcperr_common::{RstReceived, tcp::errno_for_rst_in_state};

use crate::{
    emit::{emit, note_rst, untasked},
    sock::sock_info,
};

#[raw_tracepoint(tracepoint = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: RawTracePointContext) -> i32 {
    let sk = ctx.arg::<u64>(0);
    let sock = sock_info(sk);
    // Untasked: tcp_reset() runs in softirq, or for the socket's backlog in whichever task
    // releases it; the socket's owner comes from its other records.
    let header = untasked::<RstReceived>(sk);
    note_rst(sk, header.ts_ns, true);
    emit(&RstReceived { header, sock, errno: errno_for_rst_in_state(sock.state), _pad: 0 });
    0
}
