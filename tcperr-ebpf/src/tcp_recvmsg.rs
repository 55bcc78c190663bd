//! `tcp_recvmsg(struct sock *sk, struct msghdr *msg, size_t len, [int nonblock,] int flags, int
//! *addr_len)` → [`RecvError`] / [`RecvEof`]: fexit, else a kprobe/kretprobe pair. The position
//! of `flags` differs between kernels (5.19 dropped `nonblock`); userspace reads it from BTF.
//!
//! [`RecvError`]: tcperr_common::RecvError
//! [`RecvEof`]: tcperr_common::RecvEof
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fexit, kprobe, kretprobe, map},
    maps::HashMap,
    programs::{FExitContext, ProbeContext, RetProbeContext},
};

use crate::{layout::layout, sock_recv_length::recv_result};

#[fexit(function = "tcp_recvmsg")]
pub fn fexit_tcp_recvmsg(ctx: FExitContext) -> i32 {
    let ret = ctx.ret::<i32>().unwrap_or(1);
    if ret > 0 {
        return 0;
    }
    // A constant to the verifier (read-only global): the untaken branch is pruned.
    let flags = match layout!(recvmsg_flags_arg) {
        3 => ctx.arg::<u64>(3) as u32,
        4 => ctx.arg::<u64>(4) as u32,
        _ => 0,
    };
    recv_result(ctx.arg::<u64>(0), ret, flags);
    0
}

#[derive(Clone, Copy)]
struct Receiving {
    sk: u64,
    flags: u64,
}

/// Socket and flags of each thread inside `tcp_recvmsg` (kprobe path only).
#[map]
static RECEIVING: HashMap<u64, Receiving> = HashMap::with_max_entries(16_384, 0);

#[kprobe(function = "tcp_recvmsg")]
pub fn kprobe_tcp_recvmsg(ctx: ProbeContext) -> u32 {
    let flags = match layout!(recvmsg_flags_arg) {
        3 => ctx.arg::<u64>(3),
        4 => ctx.arg::<u64>(4),
        _ => None,
    };
    if let Some(sk) = ctx.arg::<u64>(0) {
        let r = Receiving { sk, flags: flags.unwrap_or(0) };
        let _ = RECEIVING.insert(&bpf_get_current_pid_tgid(), &r, 0);
    }
    0
}

#[kretprobe(function = "tcp_recvmsg")]
pub fn kretprobe_tcp_recvmsg(ctx: RetProbeContext) -> u32 {
    let tid = bpf_get_current_pid_tgid();
    let ret = ctx.ret::<i64>() as i32;
    if ret <= 0 {
        // SAFETY: the value is copied out before the entry is removed.
        if let Some(r) = unsafe { RECEIVING.get(&tid) }.copied() {
            recv_result(r.sk, ret, r.flags as u32);
        }
    }
    let _ = RECEIVING.remove(&tid);
    0
}
