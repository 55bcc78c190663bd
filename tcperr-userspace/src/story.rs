//! The per-connection story: a short timeline per socket, the other end's view when both ends
//! are on this host, and the cause class of each error, from the kernel facts in
//! docs/kernel-facts.md.
use std::borrow::Cow;

use serde::Serialize;
use tcperr_common::{
    SockInfo,
    tcp::{errno, state},
};

use crate::owner::Owner;

/// A connection as seen from one end: (network namespace, family, local address, local port,
/// remote address, remote port). Two namespaces can each have a connection 127.0.0.1:41000 ->
/// 127.0.0.1:8080 at once: without its namespace a 4-tuple joins strangers.
pub type Tuple = (u32, u16, [u8; 16], u16, [u8; 16], u16);

#[inline]
pub fn tuple(s: &SockInfo) -> Option<Tuple> {
    (s.lport != 0 && s.rport != 0)
        .then_some((s.netns, s.family, s.laddr, s.lport, s.raddr, s.rport))
}

/// The same connection seen from the other end.
#[inline]
pub fn mirror(t: &Tuple) -> Tuple {
    (t.0, t.1, t.4, t.5, t.2, t.3)
}

/// One step of a socket's life (JSON `timeline[].step`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Connect,
    Listen,
    /// The peer's FIN arrived (→ CLOSE_WAIT).
    PeerFin,
    /// This side closed (FIN sent: → FIN_WAIT1 or LAST_ACK).
    Close,
    RstReceived,
    RstSent,
    /// A send or receive failed.
    CallFailed,
    /// A receive returned 0 after the peer's FIN.
    Eof,
    SocketError,
    AcceptQueueFull,
    /// The socket reached CLOSE.
    End,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Item {
    /// Milliseconds since the first step of this timeline.
    pub t_ms: f64,
    pub step: Step,
    /// What the step carries: the errno name (call_failed, socket_error), the cause (rst_sent),
    /// else the TCP state the socket was in before the step; null where there is none (eof).
    #[serde(serialize_with = "null_if_empty")]
    pub detail: Cow<'static, str>,
    #[serde(skip)]
    pub ts_ns: u64,
}

fn null_if_empty<S: serde::Serializer>(s: &str, ser: S) -> Result<S::Ok, S::Error> {
    if s.is_empty() { ser.serialize_none() } else { ser.serialize_str(s) }
}

pub const TIMELINE_LEN: usize = 16;

/// Keeps the last [`TIMELINE_LEN`] steps.
pub fn push(
    timeline: &mut Vec<Item>,
    ts_ns: u64,
    step: Step,
    detail: impl Into<Cow<'static, str>>,
) {
    if timeline.len() == TIMELINE_LEN {
        timeline.remove(1); // keep the first step: it anchors the relative times
    }
    timeline.push(Item { t_ms: 0.0, step, detail: detail.into(), ts_ns });
}

/// The timeline with times relative to its first step.
pub fn relative(timeline: &[Item]) -> Vec<Item> {
    let t0 = timeline.first().map_or(0, |i| i.ts_ns);
    timeline
        .iter()
        .map(|i| Item { t_ms: (i.ts_ns.saturating_sub(t0)) as f64 / 1e6, ..i.clone() })
        .collect()
}

/// Why an error happened (JSON `cause`), when it can be known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Nothing listens at the address (RST answering our SYN).
    Refused,
    /// We wrote after the peer had closed; its RST makes the next write fail with EPIPE.
    WriteAfterPeerClose,
    /// The peer aborted: close() with SO_LINGER {on, 0}, or a disconnect.
    PeerAborted,
    /// The peer closed with data it had not read: its kernel resets instead of FIN.
    PeerClosedWithUnreadData,
    /// The peer had no socket for the connection (it forgot it, or restarted).
    PeerHasNoSocket,
    /// The peer's listener could not take the connection: its accept queue was full.
    AcceptQueueOverflow,
    /// The listener's accept queue overflowed because its process is out of file descriptors:
    /// accept() fails with EMFILE ("too many open files").
    ListenerOutOfFiles,
    /// The peer reset the connection; why is not visible from here.
    PeerReset,
    /// The peer closed cleanly (FIN): an EOF. An orderly close, not an error: how most
    /// connections end.
    PeerClosed,
    /// The peer closed (FIN) with our last write unanswered: data we wrote after the last data
    /// it sent, or bytes it never acknowledged. The EOF a client reads when the server dropped
    /// its request.
    Unanswered,
    /// The peer reset the connection before any data was exchanged: a connect-then-reset
    /// probe, as load balancers and health checkers make.
    ProbeReset,
    /// Retransmissions or keepalive probes went unanswered.
    Timeout,
    /// This side aborted (SO_LINGER {on, 0}, a disconnect).
    Aborted,
    /// This side closed with unread data.
    ClosedWithUnreadData,
    /// Data arrived after this side had closed: this side resets the sender.
    DataAfterClose,
    /// A segment arrived for which this host has no socket.
    NoSocket,
    /// A segment hit a TIME_WAIT socket.
    TimeWait,
    /// This host's listener closed with the connection still in its accept queue: the kernel
    /// resets each connection never accepted.
    NotAccepted,
    /// The peer closed its listener before accepting this connection.
    PeerListenerClosed,
    /// (`drop`) A queue was full: a socket's receive buffer or backlog, a listener's, a CPU's.
    QueueOverflow,
    /// (`drop`) A firewall or filter dropped the segment (netfilter, socket filter, BPF, tc).
    Filtered,
    /// (`drop`) TCP or the kernel was out of memory for the segment.
    MemoryPressure,
    /// (`drop`) Its timestamp (PAWS) or sequence numbers did not fit the connection.
    PawsOrSequence,
    /// (`drop`) It lay outside the receive window.
    OutOfWindow,
    Unknown,
}

impl Cause {
    pub fn name(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::WriteAfterPeerClose => "write_after_peer_close",
            Self::PeerAborted => "peer_aborted",
            Self::PeerClosedWithUnreadData => "peer_closed_with_unread_data",
            Self::PeerHasNoSocket => "peer_has_no_socket",
            Self::AcceptQueueOverflow => "accept_queue_overflow",
            Self::ListenerOutOfFiles => "listener_out_of_files",
            Self::PeerReset => "peer_reset",
            Self::PeerClosed => "peer_closed",
            Self::Unanswered => "unanswered",
            Self::ProbeReset => "probe_reset",
            Self::Timeout => "timeout",
            Self::Aborted => "aborted",
            Self::ClosedWithUnreadData => "closed_with_unread_data",
            Self::DataAfterClose => "data_after_close",
            Self::NoSocket => "no_socket",
            Self::TimeWait => "time_wait",
            Self::NotAccepted => "not_accepted",
            Self::PeerListenerClosed => "peer_listener_closed",
            Self::QueueOverflow => "queue_overflow",
            Self::Filtered => "filtered",
            Self::MemoryPressure => "memory_pressure",
            Self::PawsOrSequence => "paws_or_sequence",
            Self::OutOfWindow => "out_of_window",
            Self::Unknown => "unknown",
        }
    }
}

/// The kernel's reasons for an RST (`enum sk_rst_reason`, named as BTF names them) that say
/// why: the one place their names are matched, for the cause ([`rst_sent_cause`]) and the words
/// ([`crate::explain::explain`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RstReason {
    /// `TCP_ABORT_ON_LINGER`: close() with SO_LINGER {on, 0}.
    AbortOnLinger,
    /// `TCP_ABORT_ON_CLOSE`: closed with unread data.
    AbortOnClose,
    /// `TCP_ABORT_ON_DATA`: data arrived after this side had closed.
    AbortOnData,
    /// `NO_SOCKET`: no socket for the segment.
    NoSocket,
    /// `TCP_STATE`: aborted in a state that requires RST.
    TcpState,
    /// `TCP_TIMEWAIT_SOCKET`: a segment hit a TIME_WAIT socket.
    TimewaitSocket,
    /// `TCP_DISCONNECT_WITH_DATA`: a disconnect with data unread.
    DisconnectWithData,
}

impl RstReason {
    /// The reason the kernel names `name`, if it is one that says why.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "TCP_ABORT_ON_LINGER" => Self::AbortOnLinger,
            "TCP_ABORT_ON_CLOSE" => Self::AbortOnClose,
            "TCP_ABORT_ON_DATA" => Self::AbortOnData,
            "NO_SOCKET" => Self::NoSocket,
            "TCP_STATE" => Self::TcpState,
            "TCP_TIMEWAIT_SOCKET" => Self::TimewaitSocket,
            "TCP_DISCONNECT_WITH_DATA" => Self::DisconnectWithData,
            _ => return None,
        })
    }

    /// Why this host sent an RST for this reason.
    pub fn cause(self) -> Cause {
        match self {
            Self::TcpState | Self::AbortOnLinger | Self::DisconnectWithData => Cause::Aborted,
            Self::AbortOnClose => Cause::ClosedWithUnreadData,
            Self::AbortOnData => Cause::DataAfterClose,
            Self::NoSocket => Cause::NoSocket,
            Self::TimewaitSocket => Cause::TimeWait,
        }
    }
}

/// Why this host sent an RST: from the kernel's reason where it gives one, else from what the
/// socket was doing (`in_close`: sent from the owner's close(); `aborted_on_data`: the kernel
/// had just aborted the closed socket because data arrived).
pub fn rst_sent_cause(reason: Option<&str>, in_close: bool, aborted_on_data: bool) -> Cause {
    match reason.and_then(RstReason::from_name) {
        Some(r) => r.cause(),
        None if aborted_on_data => Cause::DataAfterClose,
        None if in_close => Cause::Aborted,
        None => Cause::Unknown,
    }
}

/// What the other end of a connection did, when it is on this host.
#[derive(Clone, Copy, Debug)]
pub struct PeerRst {
    pub ts_ns: u64,
    pub cause: Cause,
    pub owner: Option<Owner>,
    /// Bytes its socket had received and its program never read when it sent the RST.
    pub unread: u32,
}

/// Why a connection was reset, from the state our socket was in when the RST arrived and the
/// peer's own account of sending it (if the peer is on this host and already reported it).
pub fn reset_cause(rst_state: Option<u8>, peer: Option<&PeerRst>) -> Cause {
    match (rst_state, peer.map(|p| p.cause)) {
        (Some(state::SYN_SENT), Some(Cause::AcceptQueueOverflow)) => Cause::AcceptQueueOverflow,
        (Some(state::SYN_SENT), _) => Cause::Refused,
        (_, Some(Cause::Aborted)) => Cause::PeerAborted,
        (_, Some(Cause::ClosedWithUnreadData)) => Cause::PeerClosedWithUnreadData,
        (_, Some(Cause::DataAfterClose | Cause::TimeWait)) => Cause::WriteAfterPeerClose,
        (_, Some(Cause::NoSocket)) => Cause::PeerHasNoSocket,
        (_, Some(Cause::AcceptQueueOverflow)) => Cause::AcceptQueueOverflow,
        (_, Some(Cause::NotAccepted)) => Cause::PeerListenerClosed,
        (Some(state::CLOSE_WAIT), _) => Cause::WriteAfterPeerClose,
        _ => Cause::PeerReset,
    }
}

/// The cause of a failed call or error report with `errno`.
pub fn error_cause(errno: u32, rst_state: Option<u8>, peer: Option<&PeerRst>) -> Cause {
    match errno {
        errno::ECONNRESET | errno::EPIPE | errno::ECONNREFUSED => reset_cause(rst_state, peer),
        errno::ETIMEDOUT => Cause::Timeout,
        _ => Cause::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(cause: Cause) -> PeerRst {
        PeerRst { ts_ns: 0, cause, owner: None, unread: 0 }
    }

    #[test]
    fn the_state_at_the_rst_and_the_peers_reason_decide_the_cause() {
        assert_eq!(reset_cause(Some(state::SYN_SENT), None), Cause::Refused);
        assert_eq!(
            reset_cause(Some(state::SYN_SENT), Some(&peer(Cause::NoSocket))),
            Cause::Refused
        );
        assert_eq!(reset_cause(Some(state::CLOSE_WAIT), None), Cause::WriteAfterPeerClose);
        assert_eq!(reset_cause(Some(state::ESTABLISHED), None), Cause::PeerReset);
        assert_eq!(
            reset_cause(Some(state::ESTABLISHED), Some(&peer(Cause::Aborted))),
            Cause::PeerAborted
        );
        assert_eq!(
            reset_cause(Some(state::ESTABLISHED), Some(&peer(Cause::ClosedWithUnreadData))),
            Cause::PeerClosedWithUnreadData
        );
        assert_eq!(
            reset_cause(Some(state::ESTABLISHED), Some(&peer(Cause::AcceptQueueOverflow))),
            Cause::AcceptQueueOverflow
        );
        assert_eq!(error_cause(110, None, None), Cause::Timeout);
    }

    #[test]
    fn rst_reasons_and_context_classify_our_own_resets() {
        assert_eq!(
            rst_sent_cause(Some("TCP_ABORT_ON_CLOSE"), true, false),
            Cause::ClosedWithUnreadData
        );
        assert_eq!(rst_sent_cause(Some("TCP_STATE"), true, false), Cause::Aborted);
        // Kernels without reasons: inferred from context.
        assert_eq!(rst_sent_cause(None, true, false), Cause::Aborted);
        assert_eq!(rst_sent_cause(None, false, true), Cause::DataAfterClose);
        assert_eq!(rst_sent_cause(None, false, false), Cause::Unknown);
    }

    #[test]
    fn each_kernel_rst_reason_names_its_cause_whatever_the_context() {
        let cases = [
            ("TCP_ABORT_ON_LINGER", Cause::Aborted),
            ("TCP_STATE", Cause::Aborted),
            ("TCP_DISCONNECT_WITH_DATA", Cause::Aborted),
            ("TCP_ABORT_ON_CLOSE", Cause::ClosedWithUnreadData),
            ("TCP_ABORT_ON_DATA", Cause::DataAfterClose),
            ("NO_SOCKET", Cause::NoSocket),
            ("TCP_TIMEWAIT_SOCKET", Cause::TimeWait),
        ];
        for (name, cause) in cases {
            for (in_close, aborted_on_data) in [(false, false), (true, false), (false, true)] {
                assert_eq!(rst_sent_cause(Some(name), in_close, aborted_on_data), cause, "{name}");
            }
        }
        // A reason that does not say why: the context decides, as with none.
        assert_eq!(rst_sent_cause(Some("NOT_SPECIFIED"), true, false), Cause::Aborted);
        assert_eq!(rst_sent_cause(Some("NOT_SPECIFIED"), false, true), Cause::DataAfterClose);
        assert_eq!(rst_sent_cause(Some("NOT_SPECIFIED"), false, false), Cause::Unknown);
    }

    #[test]
    fn timelines_keep_their_first_step_and_the_latest_ones() {
        let mut t = Vec::new();
        for i in 0..40u64 {
            push(&mut t, i * 1_000_000, Step::CallFailed, "");
        }
        assert_eq!(t.len(), TIMELINE_LEN);
        let r = relative(&t);
        assert_eq!(r[0].t_ms, 0.0);
        assert_eq!(r[TIMELINE_LEN - 1].t_ms, 39.0);
    }
}
