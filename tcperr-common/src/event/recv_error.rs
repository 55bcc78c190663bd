use super::{EventHeader, SockInfo, Stakes, event};

/// A `recvmsg` (read, recv, recvfrom, ...) on a TCP socket failed with something other than
/// EAGAIN/EINTR. Raised in the caller's context.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvError {
    pub header: EventHeader,
    pub sock: SockInfo,
    /// Positive errno (ECONNRESET, ETIMEDOUT, ...).
    pub errno: u32,
    /// The call's `MSG_*` flags.
    pub flags: u32,
    pub stakes: Stakes,
}
event!(RecvError);
