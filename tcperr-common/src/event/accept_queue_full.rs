use super::{EventHeader, SockInfo, event};

/// A listener's accept queue was full when a client completed its handshake: the kernel either
/// dropped the client's final ACK (the client believes it is connected; the server retransmits
/// its SYN-ACK, which is when this is seen) or, with `net.ipv4.tcp_abort_on_overflow=1`, answered
/// with RST; or it was full when a client's SYN arrived, which the kernel drops whatever
/// `tcp_syncookies` says ([`AcceptQueueFull::SYN_DROPPED`]: the client retransmits its SYN and
/// its connect() waits). `sock` is the connection (listener's address and port, the client's),
/// state LISTEN.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcceptQueueFull {
    pub header: EventHeader,
    pub sock: SockInfo,
    /// `sk_max_ack_backlog`: the listen() backlog.
    pub backlog: u32,
    /// `sk_ack_backlog`: connections waiting for accept().
    pub queued: u32,
    /// [`AcceptQueueFull::DROPPED`], [`AcceptQueueFull::RESET`] or
    /// [`AcceptQueueFull::SYN_DROPPED`].
    pub action: u32,
    /// `net.ipv4.tcp_syncookies` of the listener's namespace when a SYN was dropped (0, 1, 2);
    /// [`crate::ABSENT`] in the other actions.
    pub syncookies: u32,
}
event!(AcceptQueueFull);

impl AcceptQueueFull {
    pub const DROPPED: u32 = 0;
    pub const RESET: u32 = 1;
    /// The client's SYN was dropped: the queue was already full when it came.
    pub const SYN_DROPPED: u32 = 2;
}
