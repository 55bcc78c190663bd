//! The held-CLOSE protocol, kernel side: an abort's move to CLOSE waits in a per-CPU slot for
//! the RST that follows it in the same call, and travels inside that RST's record
//! (`RstSent::closed_from`). Userspace reassembles it (`tcperr-userspace/src/held_close.rs`) and
//! claims one held too long from the slot.
use core::sync::atomic::{Ordering, compiler_fence};

use aya_ebpf::{macros::map, maps::PerCpuArray};
use tcperr_common::{EventHeader, StateChange};

use crate::emit::emit;

/// Index 0: a move to CLOSE held back on this CPU (see [`hold_close`]); `header.sk` 0: none.
/// Userspace reads it too: one held for long is claimed there (`HeldClose::sweep`).
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
