use super::{EventHeader, SockInfo, event};

/// This host sent an RST (`tcp:tcp_send_reset`). For an RST that answers a segment no socket
/// wants, `header.sk` is 0 and the addresses come from the segment.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RstSent {
    pub header: EventHeader,
    pub sock: SockInfo,
    /// `enum sk_rst_reason` value where the kernel reports one (names from the tracepoint's
    /// `format` file); [`crate::ABSENT`] where it does not.
    pub reason: u32,
    pub _pad: u32,
}
event!(RstSent);
