use super::{EventHeader, SockInfo, event};

/// A TCP state transition the story needs (`sock:inet_sock_set_state`): connect (→ SYN_SENT),
/// connect failed (SYN_SENT → CLOSE), peer's FIN (→ CLOSE_WAIT), our close (ESTABLISHED →
/// FIN_WAIT1, CLOSE_WAIT → LAST_ACK) and aborts (→ CLOSE from ESTABLISHED or CLOSE_WAIT).
/// `sock.state` is the old state.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub header: EventHeader,
    pub sock: SockInfo,
    pub oldstate: u8,
    pub newstate: u8,
    pub _pad: [u8; 6],
}
event!(StateChange);
