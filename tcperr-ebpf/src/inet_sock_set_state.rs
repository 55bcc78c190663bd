//! `tracepoint/sock/inet_sock_set_state` → [`StateChange`], for the transitions
//! `tcperr_common::tcp::is_reported_transition` names; every other transition leaves after three
//! field reads.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tcperr_common::{
    StateChange,
    tcp::{IPPROTO_TCP, is_reported_transition},
};

use crate::{
    emit::{emit, header},
    layout::layout,
    sock::{ctx_addr, read, sock_info},
};

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let rec = ctx_addr(&ctx);
    if read::<u16>(rec, layout!(tp_set_state_protocol)) != IPPROTO_TCP {
        return 0;
    }
    let old = read::<i32>(rec, layout!(tp_set_state_oldstate)) as u8;
    let new = read::<i32>(rec, layout!(tp_set_state_newstate)) as u8;
    if !is_reported_transition(old, new) {
        return 0;
    }
    let sk: u64 = read(rec, layout!(tp_set_state_skaddr));
    let mut sock = sock_info(sk);
    sock.state = old;
    emit(&StateChange {
        header: header::<StateChange>(sk),
        sock,
        oldstate: old,
        newstate: new,
        _pad: [0; 6],
    });
    0
}
