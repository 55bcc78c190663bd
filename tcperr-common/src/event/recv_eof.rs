use super::{EventHeader, SockInfo, Stakes, event};

/// A `recvmsg` on a TCP socket returned 0 because the peer had closed its side (the socket was
/// past ESTABLISHED: CLOSE_WAIT, LAST_ACK, CLOSING, TIME_WAIT or CLOSE). Raised in the caller's
/// context. A 0-byte read of an open connection is not reported.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvEof {
    pub header: EventHeader,
    pub sock: SockInfo,
    /// The call's `MSG_*` flags.
    pub flags: u32,
    pub _pad: u32,
    pub stakes: Stakes,
}
event!(RecvEof);
