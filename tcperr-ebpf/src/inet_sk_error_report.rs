//! `tp_btf/inet_sk_error_report` (fallback `raw_tracepoint/inet_sk_error_report`) →
//! [`SocketError`]. `TP_PROTO(const struct sock *sk)`: both forms give the socket itself (the
//! record has only its addresses); the errno is `sk->sk_err`, which the record's `error` field
//! copies.
use aya_ebpf::{
    macros::{btf_tracepoint, raw_tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext},
};

use crate::{
    sock::{Direct, Head},
    socket_error::socket_error,
};

#[btf_tracepoint(function = "inet_sk_error_report")]
pub fn inet_sk_error_report(ctx: BtfTracePointContext) -> i32 {
    socket_error::<Direct>(ctx.arg::<u64>(0))
}

#[raw_tracepoint(tracepoint = "inet_sk_error_report")]
pub fn raw_inet_sk_error_report(ctx: RawTracePointContext) -> i32 {
    socket_error::<Head>(ctx.arg::<u64>(0))
}
