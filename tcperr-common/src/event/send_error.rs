use super::{EventHeader, SockInfo, Stakes, event};

/// A `sendmsg` (write, send, sendto, ...) on a TCP socket failed. Raised in the caller's context:
/// the header's task is the socket's user.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendError {
    pub header: EventHeader,
    pub sock: SockInfo,
    /// Positive errno (EPIPE, ECONNRESET, ...).
    pub errno: u32,
    pub _pad: u32,
    pub stakes: Stakes,
}
event!(SendError);
