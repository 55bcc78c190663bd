//! `tp_btf/sock_recv_length` (fallback `raw_tracepoint/sock_recv_length`) → [`RecvError`] /
//! [`RecvEof`]. `TP_PROTO(struct sock *sk, int ret, int flags)`, fired at the end of every
//! `sock_recvmsg()` in the caller's context (Linux 6.3+; userspace checks the prototype in BTF
//! before choosing this hook).
//!
//! Hot path: a read that returned data costs one context load and one compare.
use aya_ebpf::{
    macros::{btf_tracepoint, raw_tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext},
};
use tcperr_common::{
    RecvEof, RecvError,
    tcp::{errno, is_eof_state},
};

use crate::{
    emit::{emit, header},
    sock::{Direct, Head, SockMem, tcp_sock_info},
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

/// A receive on `sk` that returned `ret` <= 0: shared by every hook on the receive path (these,
/// `tcp_recvmsg.rs`), each reading the socket as its context allows ([`SockMem`]).
// Out of line (a BPF-to-BPF call): the hot path stays a few instructions in one cache line,
// with nothing of the error path's stack set-up before its test.
#[inline(never)]
#[cold]
pub fn recv_result<M: SockMem>(sk: u64, ret: i32, flags: u32) {
    let errno = if ret < 0 {
        match reportable_errno(ret) {
            Some(errno) => errno,
            None => return,
        }
    } else {
        0
    };
    let Some(sock) = tcp_sock_info::<M>(sk) else { return };
    if errno != 0 {
        emit(&RecvError { header: header::<RecvError, M>(sk), sock, errno, flags });
    } else if is_eof_state(sock.state) {
        emit(&RecvEof { header: header::<RecvEof, M>(sk), sock, flags, _pad: 0 });
    }
}

/// The errno of a failed call, unless it is one a healthy program meets all the time
/// (EAGAIN on a non-blocking socket, EINTR, the kernel's internal restart codes).
#[inline(always)]
pub fn reportable_errno(ret: i32) -> Option<u32> {
    let e = ret.unsigned_abs();
    match e {
        errno::EAGAIN | errno::EINTR => None,
        errno::ERESTARTSYS..=errno::ERESTART_RESTARTBLOCK => None,
        _ => Some(e),
    }
}
