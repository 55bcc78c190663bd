//! Benchmark references, never attached by `tcperr trace`: the least a program on tcperr's hot
//! hooks can do (read the call's return value, test it and leave), in the hook family tcperr's
//! own programs use there (`tp_btf`). `cargo xtask bench` measures tcperr's programs against
//! these.
use core::hint::black_box;

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

// The macro's wrapper discards the function's result: `black_box` keeps the compiler from
// discarding the read and the test with it (the floor would otherwise be `r0 = 0; exit`).
#[btf_tracepoint(function = "sock_send_length")]
pub fn floor_sock_send_length(ctx: BtfTracePointContext) -> i32 {
    i32::from(black_box((ctx.arg::<u64>(1) as i32) < 0))
}

#[btf_tracepoint(function = "sock_recv_length")]
pub fn floor_sock_recv_length(ctx: BtfTracePointContext) -> i32 {
    i32::from(black_box((ctx.arg::<u64>(1) as i32) <= 0))
}
