//! `tp_btf/inet_sock_set_state` (fallback `raw_tracepoint/inet_sock_set_state`) →
//! [`StateChange`], for the transitions `tcperr_common::tcp::is_reported_transition` names.
//! `TP_PROTO(const struct sock *sk, int oldstate, int newstate)` (userspace checks it in BTF):
//! both forms hand over the arguments without the kernel first building the tracepoint's
//! record, and every other transition leaves after three context loads.
use aya_ebpf::{
    macros::{btf_tracepoint, raw_tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext},
};
use tcperr_common::{
    StateChange,
    tcp::{IPPROTO_TCP, is_reported_transition, state},
};

use crate::{
    emit::{emit, header},
    held_close::hold_close,
    last_rst::{forget_rst_of, just_reset},
    layout::layout,
    listeners::note_listener,
    sock::{Direct, Head, SockMem, sock_info_of},
};

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: BtfTracePointContext) -> i32 {
    state_change::<Direct>(ctx.arg(0), ctx.arg::<u64>(1) as u8, ctx.arg::<u64>(2) as u8)
}

#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn raw_inet_sock_set_state(ctx: RawTracePointContext) -> i32 {
    state_change::<Head>(ctx.arg(0), ctx.arg::<u64>(1) as u8, ctx.arg::<u64>(2) as u8)
}

#[inline(always)]
fn state_change<M: SockMem>(sk: u64, old: u8, new: u8) -> i32 {
    note_listener::<M>(sk, old, new); // for the SYNs a full accept queue drops (consume_skb.rs)
    if matches!(new, state::SYN_SENT | state::SYN_RECV | state::LISTEN) {
        forget_rst_of(sk); // a new socket, maybe at a reset one's address
    }
    if !is_reported_transition(old, new) {
        return 0;
    }
    if new == state::CLOSE && just_reset(sk) {
        return 0; // tcp_reset() ending the socket: its rst_received says so
    }
    if M::load::<u16>(sk, layout!(sk_protocol)) != IPPROTO_TCP {
        return 0; // MPTCP, SCTP and DCCP sockets change state through here too
    }
    let mut sock = sock_info_of::<M>(sk, new != state::SYN_SENT);
    sock.state = old;
    let change = StateChange {
        header: header::<StateChange, M>(sk),
        sock,
        oldstate: old,
        newstate: new,
        _pad0: 0,
        _pad1: 0,
    };
    if new == state::CLOSE
        && matches!(old, state::ESTABLISHED | state::CLOSE_WAIT)
        && M::load::<i32>(sk, layout!(sk_err)) == 0
    {
        hold_close(&change); // an abort: its RST follows and carries it
    } else {
        emit(&change);
    }
    0
}
