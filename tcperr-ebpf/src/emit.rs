//! The one ring buffer and the per-CPU count of records that did not fit.
use core::{
    ffi::c_void,
    hint::black_box,
    mem::MaybeUninit,
    sync::atomic::{Ordering, compiler_fence},
};

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns, generated},
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use tcperr_common::{EventHeader, StateChange, WAKEUP_BATCH_NS, event::Event};

use crate::sock::SockMem;

/// Default size; userspace may change it before load (`--ringbuf-size`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Index 0: records dropped because the ring buffer was full.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Index 0: the socket the last RST on this CPU was about (received or sent) and when. What the
/// kernel does next within the same call chain repeats it and is not sent: the error report
/// (`tcp_reset()`, `tcp_disconnect()`) and, after an RST received, the move to CLOSE
/// (`tcp_reset()` → `tcp_done()`; userspace reads the end from the RST). Records fewer per reset
/// matter in RST storms. A recycled `struct sock` must not match a stale entry: a socket that
/// starts anew forgets it ([`forget_rst_of`]), and an entry only holds for the jiffy it was
/// noted in and the next (the repeats come microseconds later, in the same call; jiffies, because
/// a clock read costs ~40 ns here and was three a connection in RST storms).
#[map]
static LAST_RST: PerCpuArray<LastRst> = PerCpuArray::with_max_entries(1, 0);

#[derive(Clone, Copy)]
pub struct LastRst {
    sk: u64,
    jiffies: u64,
    received: bool,
}

impl LastRst {
    /// Whether this RST was about `sk`, a moment ago.
    #[inline(always)]
    fn is_about(&self, sk: u64) -> bool {
        // SAFETY: bpf_jiffies64 has no arguments.
        self.sk == sk && unsafe { generated::bpf_jiffies64() }.wrapping_sub(self.jiffies) <= 1
    }
}

/// Notes an RST about `sk`.
#[inline(always)]
pub fn note_rst(sk: u64, received: bool) {
    if let Some(slot) = LAST_RST.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs; bpf_jiffies64
        // has no arguments.
        unsafe { *slot = LastRst { sk, jiffies: generated::bpf_jiffies64(), received } };
    }
}

/// Forgets an RST noted about `sk` on this CPU: the socket starts anew (connect, listen, a
/// listener's new child), so it is not the one that was reset.
#[inline(always)]
pub fn forget_rst_of(sk: u64) {
    if let Some(slot) = LAST_RST.get_ptr_mut(0) {
        // SAFETY: as above.
        unsafe {
            if (*slot).sk == sk {
                (*slot).sk = 0;
            }
        }
    }
}

/// Whether `sk` received an RST on this CPU a moment ago (it stays noted for its error report).
#[inline(always)]
pub fn just_reset(sk: u64) -> bool {
    match LAST_RST.get_ptr(0) {
        // SAFETY: as above.
        Some(slot) => unsafe { (*slot).received && (*slot).is_about(sk) },
        None => false,
    }
}

/// Whether the last RST on this CPU, a moment ago, was about `sk` (and forgets it).
#[inline(always)]
pub fn take_rst(sk: u64) -> bool {
    match LAST_RST.get_ptr_mut(0) {
        // SAFETY: as above.
        Some(slot) => unsafe {
            let last = *slot;
            (*slot).sk = 0;
            last.is_about(sk)
        },
        None => false,
    }
}

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

/// Index 0: a move to CLOSE held back on this CPU (see [`hold_close`]); `header.sk` 0: none.
/// Userspace reads it too: one held for long is claimed there (see `Tracer::drain`).
#[map]
static HELD_CLOSE: PerCpuArray<StateChange> = PerCpuArray::with_max_entries(1, 0);

/// Holds back `close`, an established socket's move to CLOSE without an error, because what
/// makes one in a task is an abort (close() with `SO_LINGER {1, 0}` or unread data,
/// `tcp_disconnect()`) whose RST follows in the same call and carries it
/// ([`take_held_close`]): one record fewer per abort, the most common record of an RST storm.
/// Records of other sockets do not release it: on loopback the peer's handling of the RST
/// (its rst_received, its error report) runs in between, in softirq on this CPU. It is released
/// by an error report about its socket ([`release_held_of`]: `tcp_disconnect()` ends with one,
/// also when it sent no RST), by the next move held here, or claimed by userspace after a
/// while (an RST the kernel could not allocate, on an otherwise quiet CPU).
#[inline(always)]
pub fn hold_close(close: &StateChange) {
    release_held_of(0);
    if let Some(slot) = HELD_CLOSE.get_ptr_mut(0) {
        // SAFETY: per-CPU slot. The socket is written last: a program interrupting this one on
        // this CPU (softirq) sees either no held move or a whole one.
        unsafe {
            core::ptr::write_volatile(&raw mut (*slot).header.sk, 0);
            compiler_fence(Ordering::SeqCst); // (the body's plain stores stay between the two)
            *slot = StateChange { header: EventHeader { sk: 0, ..close.header }, ..*close };
            compiler_fence(Ordering::SeqCst);
            core::ptr::write_volatile(&raw mut (*slot).header.sk, close.header.sk);
        }
    }
}

/// `sk`'s move to CLOSE if it is held back on this CPU (no longer held after this).
#[inline(always)]
pub fn take_held_close(sk: u64) -> Option<StateChange> {
    if sk == 0 {
        return None;
    }
    take_held(sk)
}

/// Records the move to CLOSE held back on this CPU if it is `sk`'s (any socket's: 0).
#[inline(always)]
pub fn release_held_of(sk: u64) {
    if let Some(close) = take_held(sk) {
        emit(&close);
    }
}

/// The move to CLOSE held back on this CPU if it is `sk`'s (any socket's: 0), no longer held
/// after this.
#[inline(always)]
fn take_held(sk: u64) -> Option<StateChange> {
    let slot = HELD_CLOSE.get_ptr_mut(0)?;
    // SAFETY: per-CPU slot, as in [`hold_close`]; copied out before it is freed for the next one.
    unsafe {
        let held = core::ptr::read_volatile(&raw const (*slot).header.sk);
        if held == 0 || (sk != 0 && held != sk) {
            return None;
        }
        let close = *slot;
        compiler_fence(Ordering::SeqCst); // (the copy is taken before the slot is freed)
        core::ptr::write_volatile(&raw mut (*slot).header.sk, 0);
        Some(close)
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
