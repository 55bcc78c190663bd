use super::{EventHeader, SockInfo, event};

/// The kernel dropped a TCP segment (`skb:kfree_skb`) for a reason userspace asked to hear
/// about (the routine ones are left in the kernel). `sock` is the socket the kernel names
/// (`rx_sk`, else the buffer's own socket: the sender's on the way out), else the segment's
/// addresses with this host as local.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drop {
    pub header: EventHeader,
    pub sock: SockInfo,
    /// `enum skb_drop_reason` value (names from kernel BTF).
    pub reason: u32,
    /// 1 when the segment was on its way out (the buffer's socket sent it), else 0.
    pub outgoing: u32,
}
event!(Drop);
