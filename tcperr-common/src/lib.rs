//! The contract between the eBPF programs (`tcperr-ebpf`) and userspace (`tcperr-userspace`).
//!
//! Every record in the ring buffer starts with an [`EventHeader`] whose `kind` says which of the
//! event types in [`event`] follows. All types are `#[repr(C)]`, `Copy`, without pointers, and
//! padded explicitly so that both sides agree on every byte.
#![no_std]

#[cfg(feature = "clock")]
pub mod clock;
pub mod event;
pub mod layout;
pub mod names;
pub mod tcp;

pub use event::{
    AcceptQueueFull, Drop, EventHeader, EventKind, RecvEof, RecvError, RstReceived, RstSent,
    SendError, SockInfo, SocketError, Stakes, StateChange, WAKEUP_BATCH_NS,
};
pub use layout::{ABSENT, KernelLayout};

/// How many processes `tcperr trace -- CMD` can follow at once: the command and its
/// descendants (`FOLLOWED`, filled by the fork tracepoint).
pub const FOLLOWED_MAX: u32 = 16384;
