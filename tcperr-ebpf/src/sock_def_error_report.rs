//! `sock_def_error_report(struct sock *sk)` → [`SocketError`], for kernels without the
//! `inet_sk_error_report` tracepoint (before 5.14): the default `sk->sk_error_report` callback
//! every TCP socket of a program has, which the kernel calls where it would later call
//! `sk_error_report()` (after setting `sk_err`: a timeout, an ICMP error, a reset). fentry,
//! else a kprobe, at its entry: before the wake-up, so `sk_err` is not yet collected.
//!
//! [`SocketError`]: tcperr_common::SocketError
use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};

use crate::{
    sock::{Direct, Head},
    socket_error::socket_error,
};

#[fentry(function = "sock_def_error_report")]
pub fn fentry_sock_def_error_report(ctx: FEntryContext) -> i32 {
    socket_error::<Direct>(ctx.arg::<u64>(0))
}

#[kprobe(function = "sock_def_error_report")]
pub fn kprobe_sock_def_error_report(ctx: ProbeContext) -> u32 {
    if let Some(sk) = ctx.arg::<u64>(0) {
        socket_error::<Head>(sk);
    }
    0
}
