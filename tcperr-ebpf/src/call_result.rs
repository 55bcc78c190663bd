//! What a socket call's failure becomes, shared by every hook on the send and receive paths
//! (`sock_send_length.rs`, `sock_recv_length.rs`, `tcp_sendmsg.rs`, `tcp_recvmsg.rs`), each
//! reading the socket as its context allows ([`SockMem`]).
use aya_ebpf::helpers::bpf_get_current_cgroup_id;
use tcperr_common::{
    RecvEof, RecvError, SendError, SockInfo,
    tcp::{errno, is_eof_state},
};

use crate::{
    emit::{emit, emit_in_place, header, write_header},
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
    if M::DIRECT {
        // Built in place in the ring buffer (`emit_in_place`, which logs a lost record): the
        // record and its stakes on the stack, beside the diagnostic's frame, passed the 512
        // bytes Linux 5.10's and 6.1's verifiers allow.
        let header = header::<SendError, M>(sk);
        emit_in_place::<SendError>(header.ts_ns, |e| {
            // SAFETY: `e` points at a reserved record of this type; every field is written.
            unsafe {
                write_header(&raw mut (*e).header, &header);
                (&raw mut (*e).sock).write(sock);
                (&raw mut (*e).errno).write(errno);
                (&raw mut (*e)._pad).write(0);
                (&raw mut (*e).stakes).write(stakes::<M>(sk));
            }
        });
    } else {
        // (the copying form's frame leaves no room for the diagnostic's call; its code is left
        // as it was)
        let stakes = stakes::<M>(sk);
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
        if M::DIRECT {
            // (in place, as `send_result`)
            let header = header::<RecvError, M>(sk);
            emit_in_place::<RecvError>(header.ts_ns, |e| {
                // SAFETY: `e` points at a reserved record of this type; every field is written.
                unsafe {
                    write_header(&raw mut (*e).header, &header);
                    (&raw mut (*e).sock).write(sock);
                    (&raw mut (*e).errno).write(errno);
                    (&raw mut (*e).flags).write(flags);
                    (&raw mut (*e).stakes).write(stakes::<M>(sk));
                }
            });
        } else {
            let stakes = stakes::<M>(sk);
            emit(&RecvError { header: header::<RecvError, M>(sk), sock, errno, flags, stakes });
        }
    } else if is_eof_state(sock.state) {
        if M::DIRECT {
            let header = header::<RecvEof, M>(sk);
            emit_in_place::<RecvEof>(header.ts_ns, |e| {
                // SAFETY: `e` points at a reserved record of this type; every field is written.
                unsafe {
                    write_header(&raw mut (*e).header, &header);
                    (&raw mut (*e).sock).write(sock);
                    (&raw mut (*e).flags).write(flags);
                    (&raw mut (*e)._pad).write(0);
                    (&raw mut (*e).stakes).write(stakes::<M>(sk));
                }
            });
        } else {
            let stakes = stakes::<M>(sk);
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
