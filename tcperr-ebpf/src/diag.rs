//! Kernel-side diagnostics through aya-log, for the rare paths where a program gives up: a
//! record that did not fit the ring buffer, a forked task whose process the kernel refused to
//! let us read, a followed process the map had no room for. Userspace sets `AYA_LOG_LEVEL`
//! before load to debug with `-vv` and to 0 otherwise: a read-only global, so without `-vv` the
//! verifier sees each call below as dead code and none of it runs. Never on a success path:
//! each function is out of line and called only once a program has already failed.
//!
//! Each call costs its caller's chain a frame of at least 32 bytes, which Linux 6.1's verifier
//! counts against the 512-byte stack even while the call is dead code: programs already near
//! the limit (`inet_sock_set_state`, the copying forms of `tcp_receive_reset` and of the socket
//! calls, and the socket-head copy they share) make none; nor does `tcp_send_reset`, left as it
//! was. See `emit::emit_noted`.
use aya_log_ebpf::{debug, macro_support::AYA_LOG_LEVEL};

/// Whether userspace asked for the diagnostics (`-vv`).
#[inline(always)]
fn enabled() -> bool {
    AYA_LOG_LEVEL.load() >= aya_log_ebpf::macro_support::Level::Debug as u8
}

/// `bpf_probe_read_kernel` of `what` at `base + off` failed with `err`.
#[inline(always)]
pub fn read_refused(what: &'static str, base: u64, off: u32, err: i64) {
    if enabled() {
        log_read_refused(what, base, off, err);
    }
}

#[inline(never)]
#[cold]
fn log_read_refused(what: &'static str, base: u64, off: u32, err: i64) {
    debug!(&(), "kernel refused a read of {} at {:x}+{}: error {}", what, base, off, err);
}

/// A record of kind `kind` did not fit the ring buffer (counted in `LOST` as well).
#[inline(always)]
pub fn record_lost(kind: u32) {
    if enabled() {
        log_record_lost(kind);
    }
}

#[inline(never)]
#[cold]
fn log_record_lost(kind: u32) {
    debug!(&(), "record of kind {} lost: the ring buffer is full", kind);
}

/// Followed process `parent` forked `child`, and the map of followed processes was full.
#[inline(always)]
pub fn follow_full(parent: u32, child: u32) {
    if enabled() {
        log_follow_full(parent, child);
    }
}

#[inline(never)]
#[cold]
fn log_follow_full(parent: u32, child: u32) {
    debug!(
        &(),
        "followed process {} forked {}, which cannot be followed: FOLLOWED is full", parent, child
    );
}
