use super::{EventHeader, SockInfo, Stakes, event};

/// The kernel reported an error on a TCP socket (`sock:inet_sk_error_report`, i.e.
/// `sk_error_report()`): what the next call on that socket will fail with. Not sent when it
/// repeats an RST just reported for the same socket on the same CPU ([`super::RstReceived`], or
/// our own abort's [`super::RstSent`]); alone it explains timeouts (ETIMEDOUT) and ICMP errors.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketError {
    pub header: EventHeader,
    pub sock: SockInfo,
    /// Positive errno (`sk->sk_err`).
    pub errno: u32,
    pub _pad: u32,
    pub stakes: Stakes,
}
event!(SocketError);
