use super::{Event, EventHeader, SockInfo, StateChange, event};
use crate::tcp::state;

/// This host sent an RST (`tcp:tcp_send_reset`). For an RST that answers a segment no socket
/// wants, `header.sk` is 0 and the addresses come from the segment.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RstSent {
    pub header: EventHeader,
    pub sock: SockInfo,
    /// `enum sk_rst_reason` value where the kernel reports one (names from kernel BTF);
    /// [`crate::ABSENT`] where it does not.
    pub reason: u32,
    /// The state the socket left for CLOSE just before, in the same call (an abort: close() with
    /// `SO_LINGER {1, 0}` or unread data, `tcp_disconnect()`), or 0. That move to CLOSE is not
    /// sent as a [`StateChange`] of its own: this record carries it ([`Self::folded_close`]).
    pub closed_from: u8,
    // (integers, not a byte array: the eBPF build zeroes a byte array with a call to memset)
    pub _pad0: u8,
    pub _pad1: u16,
    /// Bytes the socket had received but its program never read (`rcv_nxt - copied_seq`) when
    /// it sent the RST: what a close() with unread data threw away; 0 without a socket.
    pub unread: u32,
    pub _pad2: u32,
}
event!(RstSent);

impl RstSent {
    /// The move to CLOSE this record carries, as the [`StateChange`] it stands for.
    pub fn folded_close(&self) -> Option<StateChange> {
        (self.closed_from != 0).then_some(StateChange {
            header: EventHeader { kind: StateChange::KIND as u32, ..self.header },
            sock: SockInfo { state: self.closed_from, ..self.sock },
            oldstate: self.closed_from,
            newstate: state::CLOSE,
            _pad0: 0,
            _pad1: 0,
        })
    }
}
