//! `tcp_recvmsg(struct sock *sk, struct msghdr *msg, size_t len, [int nonblock,] int flags, int
//! *addr_len)` → [`RecvError`] / [`RecvEof`]: fexit, else a kprobe/kretprobe pair. The position
//! of `flags` differs between kernels (5.19 dropped `nonblock`); userspace reads it from BTF.
//! Where the kernel lacks `bpf_get_func_ret` (before 5.17, when `tcp_recvmsg` still had its 6
//! parameters), the fexit program reads the return value from the context instead.
//!
//! [`RecvError`]: tcperr_common::RecvError
//! [`RecvEof`]: tcperr_common::RecvEof
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fexit, kprobe, kretprobe, map},
    maps::HashMap,
    programs::{FExitContext, ProbeContext, RetProbeContext},
};

use crate::{
    call_result::recv_result,
    layout::layout,
    sock::{Direct, Head},
};

#[fexit(function = "tcp_recvmsg")]
pub fn fexit_tcp_recvmsg(ctx: FExitContext) -> i32 {
    let ret = ctx.ret::<i32>().unwrap_or(1);
    if ret > 0 {
        return 0;
    }
    let flags = flags_arg(ctx.arg::<u64>(3), ctx.arg::<u64>(4));
    recv_result::<Direct>(ctx.arg(0), ret, flags as u32);
    0
}

/// The fexit program for kernels without `bpf_get_func_ret`: the return value follows the
/// arguments in the context, at `ctx[6]` for the 6-parameter `tcp_recvmsg` (userspace checks
/// the count in BTF before choosing this program).
#[fexit(function = "tcp_recvmsg")]
pub fn fexit_ctx_tcp_recvmsg(ctx: FExitContext) -> i32 {
    let ret = ctx.arg::<u64>(6) as i32;
    if ret > 0 {
        return 0;
    }
    let flags = flags_arg(ctx.arg::<u64>(3), ctx.arg::<u64>(4));
    recv_result::<Direct>(ctx.arg(0), ret, flags as u32);
    0
}

/// `flags` is argument 3 or 4 (from BTF, in [`crate::layout`]). Both are loaded at constant
/// offsets and only the values are chosen: the verifier rejects a context load through a
/// pointer offset chosen at run time.
#[inline(always)]
fn flags_arg(arg3: u64, arg4: u64) -> u64 {
    let (arg3, arg4) = (core::hint::black_box(arg3), core::hint::black_box(arg4));
    match layout!(recvmsg_flags_arg) {
        3 => arg3,
        4 => arg4,
        _ => 0,
    }
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
    let flags = flags_arg(ctx.arg::<u64>(3).unwrap_or(0), ctx.arg::<u64>(4).unwrap_or(0));
    if let Some(sk) = ctx.arg::<u64>(0) {
        let r = Receiving { sk, flags };
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
            recv_result::<Head>(r.sk, ret, r.flags as u32);
        }
    }
    let _ = RECEIVING.remove(&tid);
    0
}
