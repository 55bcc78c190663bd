//! The one ring buffer and the per-CPU count of records that did not fit; the records' header
//! (task, CPU, time) and when the reader is woken.
use core::{ffi::c_void, hint::black_box, mem::MaybeUninit};

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns, generated},
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use tcperr_common::{EventHeader, WAKEUP_BATCH_NS, event::Event};

use crate::sock::SockMem;

/// Default size; userspace may change it before load (`--ringbuf-size`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Index 0: records dropped because the ring buffer was full.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The current task's name by `bpf_get_current_comm`, into 8-byte words (aya's wrapper copies
/// it byte by byte). [`crate::sock::Direct`] loads it instead where it can.
#[inline(always)]
pub fn current_comm() -> [u8; 16] {
    let mut words = MaybeUninit::<[u64; 2]>::uninit();
    // SAFETY: the helper fills all 16 bytes (NUL-padded, or zeroes on failure); any bit pattern
    // is a valid [u8; 16].
    unsafe {
        generated::bpf_get_current_comm(words.as_mut_ptr() as *mut c_void, 16);
        core::mem::transmute::<[u64; 2], [u8; 16]>(words.assume_init())
    }
}

/// The header for a record of kind `E` about socket `sk`, stamped with the current task (its
/// name read as `M` reads kernel memory).
#[inline(always)]
pub fn header<E: Event, M: SockMem>(sk: u64) -> EventHeader {
    EventHeader {
        pid_tgid: bpf_get_current_pid_tgid(),
        comm: M::current_comm(),
        ..untasked::<E>(sk)
    }
}

/// As [`header`] without the task, for records raised in softirq whose task is whichever one
/// was interrupted (userspace attributes them by socket): two helper calls fewer per record.
#[inline(always)]
pub fn untasked<E: Event>(sk: u64) -> EventHeader {
    // A zero the compiler cannot see through: written as `0` and `[0; 16]`, the task's 24 bytes
    // became a call to a byte-wise memset (bpf-linker has LLVM expand memcpy in order, which
    // leaves every memset to a call).
    let zero = black_box(0u64);
    EventHeader {
        kind: E::KIND as u32,
        // SAFETY: helpers without arguments.
        cpu: unsafe { bpf_get_smp_processor_id() },
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid_tgid: zero,
        // SAFETY: same size, any bit pattern is valid.
        comm: unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>([zero, zero]) },
        sk,
    }
}

/// Index 0: when this CPU last woke the reader (see [`WAKEUP_BATCH_NS`]).
#[map]
static WOKE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// Wakes the reader for the first record after a quiet spell and then at most once per
/// [`WAKEUP_BATCH_NS`] on this CPU; the reader's timed re-read collects the rest. A wake-up is
/// an interrupt and a context switch: in an RST storm, one per record cost more than the record.
#[inline(always)]
fn wakeup_flags(ts_ns: u64) -> u64 {
    match WOKE.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        Some(last) => unsafe {
            if ts_ns.wrapping_sub(*last) < WAKEUP_BATCH_NS {
                BPF_RB_NO_WAKEUP
            } else {
                *last = ts_ns;
                BPF_RB_FORCE_WAKEUP
            }
        },
        None => 0,
    }
}

/// 1: drop every record at this point (set by userspace for the benchmark's reference run;
/// read-only, so the verifier prunes the branch it does not take).
#[unsafe(no_mangle)]
static DISCARD: u8 = 0;

/// Builds a record of kind `E` in place in the ring buffer (`fill` writes every field through
/// the pointer it gets), or counts it as lost: for records too large to build on the stack
/// beside what their program already holds there (512 bytes in all).
#[inline(always)]
pub fn emit_in_place<E: Event + 'static>(ts_ns: u64, fill: impl FnOnce(*mut E)) {
    // SAFETY: a valid static; volatile so that the compiler cannot fold the placeholder.
    if unsafe { core::ptr::read_volatile(&raw const DISCARD) } != 0 {
        return;
    }
    match EVENTS.reserve::<E>(0) {
        Some(mut entry) => {
            fill(entry.as_mut_ptr());
            entry.submit(wakeup_flags(ts_ns));
        }
        None => {
            if let Some(lost) = LOST.get_ptr_mut(0) {
                // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
                unsafe { *lost += 1 };
            }
            crate::diag::record_lost(E::KIND as u32);
        }
    }
}

/// Writes `h` to `dst` (a record reserved by [`emit_in_place`]) one 4- or 8-byte word at a time.
/// Written as one struct, the 48 bytes became a call to a byte-wise memmove, which (a) reads the
/// socket pointer in `sk` from the stack byte by byte, refused as "invalid size of register
/// fill" where that pointer is BTF-typed (fentry on 5.10), and (b) is one more stack frame,
/// which took a kprobe program past the combined stack limit of 5.10's verifier.
#[inline(always)]
pub fn write_header(dst: *mut EventHeader, h: &EventHeader) {
    // SAFETY: `dst` points at a reserved record's header; same-size transmute of the name.
    unsafe {
        let comm = core::mem::transmute::<[u8; 16], [u64; 2]>(h.comm);
        (&raw mut (*dst).kind).write_volatile(h.kind);
        (&raw mut (*dst).cpu).write_volatile(h.cpu);
        (&raw mut (*dst).ts_ns).write_volatile(h.ts_ns);
        (&raw mut (*dst).pid_tgid).write_volatile(h.pid_tgid);
        let name = (&raw mut (*dst).comm).cast::<u64>();
        name.write_volatile(comm[0]);
        name.add(1).write_volatile(comm[1]);
        (&raw mut (*dst).sk).write_volatile(h.sk);
    }
}

/// Copies `event` into the ring buffer, or counts it as lost.
#[inline(always)]
pub fn emit<E: Event>(event: &E) {
    // SAFETY: a valid static; volatile so that the compiler cannot fold the placeholder.
    if unsafe { core::ptr::read_volatile(&raw const DISCARD) } != 0 {
        return;
    }
    if EVENTS.output(event, wakeup_flags(event.header().ts_ns)).is_err()
        && let Some(lost) = LOST.get_ptr_mut(0)
    {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *lost += 1 };
    }
}

/// As [`emit`], and a record lost is also logged with `-vv` ([`crate::diag`]). Only in
/// programs with 32 bytes of stack to spare: the log is a call, whose frame (at least 32 bytes)
/// Linux 6.1's verifier counts against the 512 even while it is dead code. (A copy of [`emit`]
/// rather than a shared body: the kretprobe paths' verification on 6.1 is within reach of the
/// million-instruction limit, and [`emit`]'s code is left as it was.)
#[inline(always)]
pub fn emit_noted<E: Event>(event: &E) {
    // SAFETY: a valid static; volatile so that the compiler cannot fold the placeholder.
    if unsafe { core::ptr::read_volatile(&raw const DISCARD) } != 0 {
        return;
    }
    if EVENTS.output(event, wakeup_flags(event.header().ts_ns)).is_err() {
        if let Some(lost) = LOST.get_ptr_mut(0) {
            // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
            unsafe { *lost += 1 };
        }
        crate::diag::record_lost(E::KIND as u32);
    }
}
