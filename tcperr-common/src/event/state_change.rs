use super::{EventHeader, SockInfo, event};

/// A TCP state transition the story needs (`sock:inet_sock_set_state`): connect (→ SYN_SENT),
/// listen (→ LISTEN), peer's FIN (→ CLOSE_WAIT), our close (ESTABLISHED → FIN_WAIT1, CLOSE_WAIT
/// → LAST_ACK) and the end of every socket (→ CLOSE: failed connects, aborts, resets, timeouts
/// and clean ends alike) — except the CLOSE that `tcp_reset()` makes right after an RST is
/// received (the [`crate::RstReceived`] stands for it) and the CLOSE an abort makes right before
/// its RST (the [`crate::RstSent`] carries it: [`crate::RstSent::folded_close`]).
/// `sock.state` is the old state.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub header: EventHeader,
    pub sock: SockInfo,
    pub oldstate: u8,
    pub newstate: u8,
    // (integers, not a byte array: the eBPF build zeroes a byte array with a call to memset)
    pub _pad0: u16,
    pub _pad1: u32,
}
event!(StateChange);

// SAFETY: plain old data (`repr(C)`, explicit padding): userspace reads the one the eBPF side
// holds back in a map (`HELD_CLOSE`).
#[cfg(feature = "user")]
unsafe impl aya::Pod for StateChange {}
