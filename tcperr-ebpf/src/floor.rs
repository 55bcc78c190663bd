//! Benchmark references, never attached by `tcperr trace`: the least a program on tcperr's hot
//! hooks can do (read the call's return value and leave). `cargo xtask bench` measures tcperr's
//! programs against these.
use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn floor_sock_send_length(ctx: RawTracePointContext) -> i32 {
    i32::from((ctx.arg::<u64>(1) as i32) < 0)
}

#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn floor_sock_recv_length(ctx: RawTracePointContext) -> i32 {
    i32::from((ctx.arg::<u64>(1) as i32) <= 0)
}
