//! `tcp_sendmsg(struct sock *sk, struct msghdr *msg, size_t size)` → [`SendError`], for kernels
//! chosen by probing: fexit (5.5+; the return value through `bpf_get_func_ret`, 5.17+, or, where
//! the kernel lacks that helper, from the context right after the 3 arguments), else a
//! kprobe/kretprobe pair that keeps the socket per thread between entry and return.
//!
//! [`SendError`]: tcperr_common::SendError
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fexit, kprobe, kretprobe, map},
    maps::HashMap,
    programs::{FExitContext, ProbeContext, RetProbeContext},
};

use crate::{
    call_result::send_result,
    sock::{Direct, Head},
};

#[fexit(function = "tcp_sendmsg")]
pub fn fexit_tcp_sendmsg(ctx: FExitContext) -> i32 {
    let ret = ctx.ret::<i32>().unwrap_or(0);
    if ret >= 0 {
        return 0;
    }
    send_result::<Direct>(ctx.arg(0), ret);
    0
}

/// The fexit program for kernels without `bpf_get_func_ret`: an fexit program's context is the
/// arguments followed by the return value, so it is at `ctx[3]` (userspace checks in BTF that
/// `tcp_sendmsg` has 3 parameters before choosing this program).
#[fexit(function = "tcp_sendmsg")]
pub fn fexit_ctx_tcp_sendmsg(ctx: FExitContext) -> i32 {
    let ret = ctx.arg::<u64>(3) as i32;
    if ret >= 0 {
        return 0;
    }
    send_result::<Direct>(ctx.arg(0), ret);
    0
}

/// Socket of each thread inside `tcp_sendmsg`, from entry to return (kprobe path only).
#[map]
static SENDING: HashMap<u64, u64> = HashMap::with_max_entries(16_384, 0);

#[kprobe(function = "tcp_sendmsg")]
pub fn kprobe_tcp_sendmsg(ctx: ProbeContext) -> u32 {
    if let Some(sk) = ctx.arg::<u64>(0) {
        let _ = SENDING.insert(&bpf_get_current_pid_tgid(), &sk, 0);
    }
    0
}

#[kretprobe(function = "tcp_sendmsg")]
pub fn kretprobe_tcp_sendmsg(ctx: RetProbeContext) -> u32 {
    let tid = bpf_get_current_pid_tgid();
    let ret = ctx.ret::<i64>() as i32;
    if ret < 0 {
        // SAFETY: the value is copied out before the entry is removed.
        if let Some(sk) = unsafe { SENDING.get(&tid) }.copied() {
            send_result::<Head>(sk, ret);
        }
    }
    let _ = SENDING.remove(&tid);
    0
}
