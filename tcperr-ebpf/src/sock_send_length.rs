//! `tp_btf/sock_send_length` (fallback `raw_tracepoint/sock_send_length`) → [`SendError`].
//! `TP_PROTO(struct sock *sk, int ret, int flags)`, fired at the end of every `sock_sendmsg()`
//! in the caller's context (Linux 6.3+; userspace checks the prototype in BTF before choosing
//! this hook).
//!
//! Hot path: a successful send costs one context load and one compare.
//!
//! [`SendError`]: tcperr_common::SendError
use aya_ebpf::{
    macros::{btf_tracepoint, raw_tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext},
};

use crate::{
    call_result::send_result,
    sock::{Direct, Head},
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
