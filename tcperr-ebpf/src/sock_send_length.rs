//! `tp_btf/sock_send_length` (fallback `raw_tracepoint/sock_send_length`) → [`SendError`].
//! `TP_PROTO(struct sock *sk, int ret, int flags)`, fired at the end of every `sock_sendmsg()`
//! in the caller's context (Linux 6.3+; userspace checks the prototype in BTF before choosing
//! this hook).
//!
//! Hot path: a successful send costs one context load and one compare.
use aya_ebpf::{
    macros::{btf_tracepoint, raw_tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext},
};
use tcperr_common::SendError;

use crate::{
    emit::{emit, header},
    sock::{Direct, Head, SockMem, tcp_sock_info},
    sock_recv_length::reportable_errno,
};

#[btf_tracepoint(function = "sock_send_length")]
pub fn sock_send_length(ctx: BtfTracePointContext) -> i32 {
    let ret = ctx.arg::<u64>(1) as i32;
    if ret >= 0 {
        return 0;
    }
    send_result::<Direct>(ctx.arg(0), ret);
    0
}

#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn raw_sock_send_length(ctx: RawTracePointContext) -> i32 {
    let ret = ctx.arg::<u64>(1) as i32;
    if ret >= 0 {
        return 0;
    }
    send_result::<Head>(ctx.arg::<u64>(0), ret);
    0
}

/// A failed send on `sk`: shared by every hook on the send path (these, `tcp_sendmsg.rs`), each
/// reading the socket as its context allows ([`SockMem`]).
// Out of line (a BPF-to-BPF call): the hot path stays a few instructions in one cache line,
// with nothing of the error path's stack set-up before its test.
#[inline(never)]
#[cold]
pub fn send_result<M: SockMem>(sk: u64, ret: i32) {
    let Some(errno) = reportable_errno(ret) else { return };
    let Some(sock) = tcp_sock_info::<M>(sk) else { return };
    emit(&SendError { header: header::<SendError, M>(sk), sock, errno, _pad: 0 });
}
