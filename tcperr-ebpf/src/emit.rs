//! The one ring buffer and the per-CPU count of records that did not fit.
use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
    },
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use tcperr_common::{EventHeader, event::Event};

/// Default size; userspace may change it before load (`--ringbuf-size`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Index 0: records dropped because the ring buffer was full.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Index 0: the socket the last RST on this CPU was about (received or sent). The kernel's error
/// report that follows on the same CPU repeats it (`tcp_reset()`, `tcp_disconnect()`) and is not
/// sent: one record fewer per reset, which matters in RST storms.
#[map]
static LAST_RST_SK: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn note_rst(sk: u64) {
    if let Some(slot) = LAST_RST_SK.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *slot = sk };
    }
}

/// Whether the last RST on this CPU was about `sk` (and forgets it).
#[inline(always)]
pub fn take_rst(sk: u64) -> bool {
    match LAST_RST_SK.get_ptr_mut(0) {
        // SAFETY: as above.
        Some(slot) => unsafe {
            let hit = *slot == sk;
            *slot = 0;
            hit
        },
        None => false,
    }
}

/// The header for a record of kind `E` about socket `sk`, stamped with the current task.
#[inline(always)]
pub fn header<E: Event>(sk: u64) -> EventHeader {
    EventHeader {
        kind: E::KIND as u32,
        // SAFETY: helpers without arguments.
        cpu: unsafe { bpf_get_smp_processor_id() },
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid_tgid: bpf_get_current_pid_tgid(),
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        sk,
    }
}

/// Copies `event` into the ring buffer, or counts it as lost.
#[inline(always)]
pub fn emit<E: Event>(event: &E) {
    if EVENTS.output(event, 0).is_err()
        && let Some(lost) = LOST.get_ptr_mut(0)
    {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *lost += 1 };
    }
}
