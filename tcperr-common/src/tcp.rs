//! TCP facts both sides need: state numbers (`include/net/tcp_states.h`, part of the kernel ABI
//! through `/proc/net/tcp` and the tracepoints) and errno values.

pub mod state {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const FIN_WAIT1: u8 = 4;
    pub const FIN_WAIT2: u8 = 5;
    pub const TIME_WAIT: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LAST_ACK: u8 = 9;
    pub const LISTEN: u8 = 10;
    pub const CLOSING: u8 = 11;
    pub const NEW_SYN_RECV: u8 = 12;
}

pub mod errno {
    pub const EINTR: u32 = 4;
    pub const EAGAIN: u32 = 11;
    pub const EPIPE: u32 = 32;
    pub const ECONNRESET: u32 = 104;
    pub const ETIMEDOUT: u32 = 110;
    pub const ECONNREFUSED: u32 = 111;
    /// Kernel-internal restart codes (ERESTARTSYS .. ERESTART_RESTARTBLOCK) never reach userspace.
    pub const ERESTARTSYS: u32 = 512;
    pub const ERESTART_RESTARTBLOCK: u32 = 516;
}

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u16 = 6;

/// The errno `tcp_reset()` (net/ipv4/tcp_input.c) records when an RST arrives in `state`:
/// SYN_SENT → ECONNREFUSED, CLOSE_WAIT → EPIPE, CLOSE → none (0), any other → ECONNRESET.
#[inline(always)]
pub const fn errno_for_rst_in_state(state: u8) -> u32 {
    match state {
        state::SYN_SENT => errno::ECONNREFUSED,
        state::CLOSE_WAIT => errno::EPIPE,
        state::CLOSE => 0,
        _ => errno::ECONNRESET,
    }
}

/// Whether a 0-byte `recvmsg` result in `state` means the peer closed (an EOF), rather than a
/// 0-length read of an open connection.
#[inline(always)]
pub const fn is_eof_state(state: u8) -> bool {
    matches!(
        state,
        state::CLOSE_WAIT | state::LAST_ACK | state::CLOSING | state::TIME_WAIT | state::CLOSE
    )
}

/// Whether the eBPF side reports this transition (see [`crate::StateChange`]).
#[inline(always)]
pub const fn is_reported_transition(old: u8, new: u8) -> bool {
    matches!(
        (old, new),
        (_, state::SYN_SENT)
            | (_, state::LISTEN)
            | (_, state::CLOSE)
            | (_, state::CLOSE_WAIT)
            | (state::ESTABLISHED, state::FIN_WAIT1)
            | (state::CLOSE_WAIT, state::LAST_ACK)
    )
}

/// Whether the transition always runs in the task that owns the socket (connect, listen, close,
/// shutdown), so that the header's task is the owner.
pub const fn is_owner_context_transition(old: u8, new: u8) -> bool {
    matches!(
        (old, new),
        (_, state::SYN_SENT)
            | (_, state::LISTEN)
            | (state::ESTABLISHED, state::FIN_WAIT1)
            | (state::CLOSE_WAIT, state::LAST_ACK)
    )
}
