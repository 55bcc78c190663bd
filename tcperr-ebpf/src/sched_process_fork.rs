//! `raw_tracepoint/sched_process_fork` → the processes `tcperr trace -- CMD` follows
//! ([`FOLLOWED`]): a fork by a followed process adds its child, so that descendants forked at
//! any time are known before they first run. `TP_PROTO(struct task_struct *parent, struct
//! task_struct *child)`, fired in the forking task's context before the child is woken.
//! Attached only with a command; the command's process puts itself in the map before it execs.
//!
//! Costs a hash lookup per fork on the machine; nothing on the socket paths.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::{map, raw_tracepoint},
    maps::HashMap,
    programs::RawTracePointContext,
};
use tcperr_common::ABSENT;

use crate::{diag, layout::layout};

/// Not preallocated: the map is in every load of the object, used only with a command.
const BPF_F_NO_PREALLOC: u32 = 1;

/// Thread-group ids (process ids) of the command and its descendants; the value is unused.
#[map]
static FOLLOWED: HashMap<u32, u8> =
    HashMap::with_max_entries(tcperr_common::FOLLOWED_MAX, BPF_F_NO_PREALLOC);

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: a lookup whose value is not kept.
    if unsafe { FOLLOWED.get(&parent) }.is_none() {
        return 0;
    }
    let child: u64 = ctx.arg(1);
    let off = layout!(task_tgid);
    if off == ABSENT {
        return 0; // (userspace refuses a command on such a kernel)
    }
    // A thread of a followed process has its tgid; a new process, its own.
    // SAFETY: bpf_probe_read_kernel validates the address; a fault yields Err.
    match unsafe { bpf_probe_read_kernel((child + u64::from(off)) as *const u32) } {
        Ok(tgid) => {
            if FOLLOWED.insert(&tgid, &1, 0).is_err() {
                diag::follow_full(parent, tgid);
            }
        }
        Err(e) => diag::read_refused("task_struct.tgid", child, off, e.into()),
    }
    0
}
