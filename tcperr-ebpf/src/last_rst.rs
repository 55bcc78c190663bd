//! Repeats of an RST: the last RST on each CPU ([`LAST_RST`]), so that what the kernel does next
//! in the same call chain is recognised as its repeat and not sent.
use aya_ebpf::{helpers::generated, macros::map, maps::PerCpuArray};

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
