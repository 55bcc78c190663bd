//! What a socket call's failure becomes, shared by every hook on the send and receive paths
//! (`sock_send_length.rs`, `sock_recv_length.rs`, `tcp_sendmsg.rs`, `tcp_recvmsg.rs`), each
//! reading the socket as its context allows ([`SockMem`]).
use aya_ebpf::helpers::bpf_get_current_cgroup_id;
use tcperr_common::{
    RecvEof, RecvError, SendError, SockInfo,
    tcp::{errno, is_eof_state},
};

use crate::{
    emit::{emit, emit_noted, header},
    sock::{SockMem, tcp_sock_info},
    stakes::stakes,
};

/// A failed send on `sk`.
// Out of line (a BPF-to-BPF call): the hot path stays a few instructions in one cache line,
// with nothing of the error path's stack set-up before its test.
#[inline(never)]
#[cold]
pub fn send_result<M: SockMem>(sk: u64, ret: i32) {
    let Some(errno) = reportable_errno(ret) else { return };
    let Some(sock) = tcp_sock_info::<M>(sk) else { return };
    let sock = in_callers_cgroup(sock);
    let stakes = stakes::<M>(sk);
    // (the copying form's frame is 496 bytes: no room for the diagnostic's call; its code is
    // left exactly as it was)
    if M::DIRECT {
        emit_noted(&SendError { header: header::<SendError, M>(sk), sock, errno, _pad: 0, stakes });
    } else {
        emit(&SendError { header: header::<SendError, M>(sk), sock, errno, _pad: 0, stakes });
    }
}

/// A receive on `sk` that returned `ret` <= 0.
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
    let sock = in_callers_cgroup(sock);
    if errno != 0 {
        let stakes = stakes::<M>(sk);
        if M::DIRECT {
            emit_noted(&RecvError {
                header: header::<RecvError, M>(sk),
                sock,
                errno,
                flags,
                stakes,
            });
        } else {
            emit(&RecvError { header: header::<RecvError, M>(sk), sock, errno, flags, stakes });
        }
    } else if is_eof_state(sock.state) {
        let stakes = stakes::<M>(sk);
        if M::DIRECT {
            emit_noted(&RecvEof { header: header::<RecvEof, M>(sk), sock, flags, _pad: 0, stakes });
        } else {
            emit(&RecvEof { header: header::<RecvEof, M>(sk), sock, flags, _pad: 0, stakes });
        }
    }
}

/// `sock` with the calling thread's cgroup: the call's result runs in its owner's context.
#[inline(always)]
fn in_callers_cgroup(sock: SockInfo) -> SockInfo {
    // SAFETY: a helper without arguments.
    SockInfo { cgroup: unsafe { bpf_get_current_cgroup_id() } as u32, ..sock }
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
