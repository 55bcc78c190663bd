//! `tracepoint/tcp/tcp_receive_reset` → [`RstReceived`]: first statement of `tcp_reset()`, so the
//! state read here is the one the RST arrived in, and it alone decides the errno.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tcperr_common::{RstReceived, tcp::errno_for_rst_in_state};

use crate::{
    emit::{emit, header, note_rst},
    layout::layout,
    sock::{ctx_addr, read, sock_info},
};

#[tracepoint(category = "tcp", name = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    let sk: u64 = read(ctx_addr(&ctx), layout!(tp_receive_reset_skaddr));
    let sock = sock_info(sk);
    note_rst(sk);
    emit(&RstReceived {
        header: header::<RstReceived>(sk),
        sock,
        errno: errno_for_rst_in_state(sock.state),
        _pad: 0,
    });
    0
}
