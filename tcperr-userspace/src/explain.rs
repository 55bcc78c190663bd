//! One line per event saying why it happened, from the kernel facts in SCENARIOS.md. The
//! per-connection story (issue 4) builds on these.
use std::collections::BTreeMap;

use tcperr_common::{
    ABSENT, AcceptQueueFull,
    tcp::{errno, state},
};

use crate::{decode::Event, errno::words, report::state_name};

pub fn explain(ev: &Event, peer: &str, rst_reasons: &BTreeMap<u64, String>) -> String {
    match ev {
        Event::RstReceived(e) if e.sock.ino == 0 => format!(
            "RST from {peer} in {} on a socket no process holds any more: no program sees an error",
            state_name(e.sock.state)
        ),
        Event::RstReceived(e) => match e.sock.state {
            state::SYN_SENT => format!(
                "{peer} answered our SYN with RST: nothing listens there (or a firewall rejects): connect fails with \"connection refused\""
            ),
            state::CLOSE_WAIT => format!(
                "{peer} had already closed the connection (FIN) and reset it when our data arrived: the next write fails with \"broken pipe\""
            ),
            s => format!(
                "{peer} reset the connection while it was {}: the next read or write fails with \"connection reset by peer\"",
                state_name(s)
            ),
        },
        Event::RstSent(e) => {
            let why = match reason_name(e.reason, rst_reasons) {
                Some("TCP_ABORT_ON_LINGER") => "close() with SO_LINGER {on, 0}: an abort instead of FIN".to_owned(),
                Some("TCP_ABORT_ON_CLOSE") => {
                    "closed with unread data in the receive buffer: the kernel resets instead of FIN".to_owned()
                }
                Some("TCP_ABORT_ON_DATA") => {
                    "data arrived after this side had closed: the kernel resets the sender".to_owned()
                }
                Some("NO_SOCKET") => "a segment arrived for which this host has no socket (no listener, or a connection it forgot)".to_owned(),
                Some("TCP_STATE") => "the connection was aborted in a state that requires RST: close() with SO_LINGER {on, 0}, or a disconnect".to_owned(),
                Some("TCP_TIMEWAIT_SOCKET") => "a segment hit a TIME_WAIT socket".to_owned(),
                Some(other) => format!("kernel reason {other}"),
                None => "the kernel gives no reason on this version".to_owned(),
            };
            format!("this host sent RST to {peer}: {why}")
        }
        Event::SendError(e) => match e.errno {
            errno::EPIPE => format!(
                "write to {peer} failed: the connection was already closed and reset by the peer (\"broken pipe\")"
            ),
            errno::ECONNRESET => format!("write to {peer} failed: the peer reset the connection"),
            n => format!("write to {peer} failed: {}", words(n)),
        },
        Event::RecvError(e) => match e.errno {
            errno::ECONNRESET => format!("read from {peer} failed: the peer reset the connection"),
            n => format!("read from {peer} failed: {}", words(n)),
        },
        Event::RecvEof(_) => format!(
            "{peer} closed the connection cleanly (FIN); this read returned 0 bytes: an orderly close, no RST"
        ),
        Event::SocketError(e) => match e.errno {
            110 => format!(
                "no answer from {peer}: retransmissions or keepalive probes ran out (\"connection timed out\")"
            ),
            n => format!("the kernel set error {} on the connection to {peer}", words(n)),
        },
        Event::AcceptQueueFull(e) if e.action == AcceptQueueFull::RESET => format!(
            "the accept queue of this listener was full ({} waiting, backlog {}): the kernel reset {peer} instead of completing its connection (net.ipv4.tcp_abort_on_overflow=1): its next read fails with \"connection reset by peer\"",
            e.queued, e.backlog
        ),
        Event::AcceptQueueFull(e) => format!(
            "the accept queue of this listener was full ({} waiting, backlog {}): the kernel dropped the final ACK of {peer}, which believes it is connected while nothing accepts it (net.ipv4.tcp_abort_on_overflow=0): it sees retransmissions, then maybe a timeout",
            e.queued, e.backlog
        ),
        Event::StateChange(e) => format!("{} → {}", state_name(e.oldstate), state_name(e.newstate)),
    }
}

pub fn reason_name(reason: u32, names: &BTreeMap<u64, String>) -> Option<&str> {
    if reason == ABSENT {
        return None;
    }
    names.get(&u64::from(reason)).map(String::as_str)
}
