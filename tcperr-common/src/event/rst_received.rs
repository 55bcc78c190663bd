use super::{EventHeader, SockInfo, Stakes, event};

/// An RST reached one of this host's sockets (`tcp:tcp_receive_reset`, which fires at the top of
/// `tcp_reset()`, before the state changes). Raised in softirq: the header's task is not the owner.
///
/// The kernel also calls `tcp_reset()` on its own when data arrives for a socket that was already
/// closed (`TCPAbortOnData`); then `sock.ino` is 0 and an [`super::RstSent`] for the same socket
/// follows.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RstReceived {
    pub header: EventHeader,
    pub sock: SockInfo,
    /// The errno `tcp_reset()` records for this state (`crate::tcp::errno_for_rst_in_state`);
    /// 0 when it records none.
    pub errno: u32,
    pub _pad: u32,
    pub stakes: Stakes,
}
event!(RstReceived);
