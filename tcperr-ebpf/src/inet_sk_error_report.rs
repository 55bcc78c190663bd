//! `raw_tracepoint/inet_sk_error_report` → [`SocketError`]. `TP_PROTO(const struct sock *sk)`:
//! the raw form gives the socket itself (the record has only its addresses); the errno is
//! `sk->sk_err`, which the record's `error` field copies.
use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use tcperr_common::SocketError;

use crate::{
    emit::{emit, header, release_held_of, take_rst},
    layout::layout,
    sock::{is_tcp, read, sock_info},
};

#[raw_tracepoint(tracepoint = "inet_sk_error_report")]
pub fn inet_sk_error_report(ctx: RawTracePointContext) -> i32 {
    let sk = ctx.arg::<u64>(0);
    // This socket's move to CLOSE, held back for an RST that did not come (tcp_disconnect()
    // reports an error after the RST, and also when it sent none).
    release_held_of(sk);
    if take_rst(sk) {
        return 0; // repeats the RST just reported for this socket on this CPU
    }
    if !is_tcp(sk) {
        return 0;
    }
    let errno = read::<i32>(sk, layout!(sk_err)).unsigned_abs();
    if errno == 0 {
        return 0; // a wake-up without an error (sk_err already collected)
    }
    emit(&SocketError { header: header::<SocketError>(sk), sock: sock_info(sk), errno, _pad: 0 });
    0
}
