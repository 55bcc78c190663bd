//! `tp_btf/sock_recv_length` (fallback `raw_tracepoint/sock_recv_length`) → [`RecvError`] /
//! [`RecvEof`]. `TP_PROTO(struct sock *sk, int ret, int flags)`, fired at the end of every
//! `sock_recvmsg()` in the caller's context (Linux 6.3+; userspace checks the prototype in BTF
//! before choosing this hook).
//!
//! Hot path: a read that returned data costs one context load and one compare.
//!
//! [`RecvError`]: tcperr_common::RecvError
//! [`RecvEof`]: tcperr_common::RecvEof
use aya_ebpf::{
    macros::{btf_tracepoint, raw_tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext},
};

use crate::{
    call_result::recv_result,
    sock::{Direct, Head},
};

#[btf_tracepoint(function = "sock_recv_length")]
pub fn sock_recv_length(ctx: BtfTracePointContext) -> i32 {
    let ret = ctx.arg::<u64>(1) as i32;
    if ret > 0 {
        return 0;
    }
    recv_result::<Direct>(ctx.arg(0), ret, ctx.arg::<u64>(2) as u32);
    0
}

#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn raw_sock_recv_length(ctx: RawTracePointContext) -> i32 {
    let ret = ctx.arg::<u64>(1) as i32;
    if ret > 0 {
        return 0;
    }
    recv_result::<Head>(ctx.arg::<u64>(0), ret, ctx.arg::<u64>(2) as u32);
    0
}
