//! One line per event saying why it happened, from the kernel facts in docs/kernel-facts.md:
//! the plain explanation of each event ([`explain`]) and, for the errors programs see, the story
//! of the connection ([`story_line`]).
use std::{borrow::Cow, collections::BTreeMap};

use tcperr_common::{
    ABSENT, AcceptQueueFull,
    tcp::{errno, state},
};

use crate::{
    decode::Event,
    error_names::words,
    owner::Owner,
    proc_sockets::AtLimit,
    report::state_name,
    story::{Cause, Item, RstReason, Step},
};

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
            let why: Cow<str> = match reason_name(e.reason, rst_reasons) {
                Some(name) => RstReason::from_name(name)
                    .and_then(rst_reason_words)
                    .map_or_else(|| format!("kernel reason {name}").into(), Cow::Borrowed),
                None => "the kernel gives no reason on this version".into(),
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
            errno::ETIMEDOUT => format!(
                "no answer from {peer}: retransmissions or keepalive probes ran out (\"connection timed out\")"
            ),
            n => format!("the kernel set error {} on the connection to {peer}", words(n)),
        },
        Event::AcceptQueueFull(e) if e.action == AcceptQueueFull::RESET => format!(
            "the accept queue of this listener was full ({} waiting, backlog {}): the kernel reset {peer} instead of completing its connection (net.ipv4.tcp_abort_on_overflow=1): its next read fails with \"connection reset by peer\"",
            e.queued, e.backlog
        ),
        Event::AcceptQueueFull(e) if e.action == AcceptQueueFull::SYN_DROPPED => format!(
            "the accept queue of this listener was full ({} waiting, backlog {}): the kernel dropped the SYN of {peer}{}; the client retransmits its SYN (after 1 s, 3 s, 7 s, ...) and its connect() waits, then fails with ETIMEDOUT if the queue never drains",
            e.queued,
            e.backlog,
            match e.syncookies {
                0 => " (net.ipv4.tcp_syncookies=0)".to_owned(),
                ABSENT => String::new(),
                n => format!(
                    " (net.ipv4.tcp_syncookies={n} sends no cookie instead: cookies stand in for a full SYN queue, never for a full accept queue)"
                ),
            }
        ),
        Event::AcceptQueueFull(e) => format!(
            "the accept queue of this listener was full ({} waiting, backlog {}): the kernel dropped the final ACK of {peer}, which believes it is connected while nothing accepts it (net.ipv4.tcp_abort_on_overflow=0): it sees retransmissions, then maybe a timeout",
            e.queued, e.backlog
        ),
        Event::StateChange(e) => format!("{} → {}", state_name(e.oldstate), state_name(e.newstate)),
        Event::Drop(e) => {
            let name = crate::drops::reason_name(e.reason);
            format!(
                "the kernel dropped a segment {} {peer}: {}{}",
                if e.outgoing != 0 { "to" } else { "from" },
                name.unwrap_or("an unnamed reason"),
                name.and_then(crate::drops::cause_of)
                    .map_or(String::new(), |c| format!(": {}", c.words()))
            )
        }
    }
}

/// What the kernel's reason for an RST this host sent means, where it has words of its own.
fn rst_reason_words(reason: RstReason) -> Option<&'static str> {
    Some(match reason {
        RstReason::AbortOnLinger => "close() with SO_LINGER {on, 0}: an abort instead of FIN",
        RstReason::AbortOnClose => {
            "closed with unread data in the receive buffer: the kernel resets instead of FIN"
        }
        RstReason::AbortOnData => {
            "data arrived after this side had closed: the kernel resets the sender"
        }
        RstReason::NoSocket => {
            "a segment arrived for which this host has no socket (no listener, or a connection it forgot)"
        }
        RstReason::TcpState => {
            "the connection was aborted in a state that requires RST: close() with SO_LINGER {on, 0}, or a disconnect"
        }
        RstReason::TimewaitSocket => "a segment hit a TIME_WAIT socket",
        RstReason::DisconnectWithData => return None,
    })
}

/// What was at stake, for an error's story: bytes never acknowledged or never read, and the
/// retransmissions made (for a timeout, over how long nothing came back).
pub fn stakes_clause(v: &crate::stakes::View, cause: Cause) -> String {
    let n = |count: u32, one: &str, many: &str| {
        format!("{count} {}", if count == 1 { one } else { many })
    };
    let mut out = String::new();
    if v.unacked > 0 {
        out.push_str(&format!("; {} we wrote never acknowledged", n(v.unacked, "byte", "bytes")));
    }
    if v.unread > 0 {
        out.push_str(&format!("; {} received never read", n(v.unread, "byte", "bytes")));
    }
    if v.retransmits > 0 {
        out.push_str(&format!("; {}", n(v.retransmits, "retransmission", "retransmissions")));
        // Still retransmitting when the call failed: since when, and how far the timer had
        // backed off (the kernel's own numbers, read at the error).
        if let Some(since) = v.retransmitting_since_ms.filter(|_| v.retransmits_in_row > 0) {
            out.push_str(&format!(
                ", the last {} in a row unanswered, retransmitting since our oldest unacknowledged segment went out {since} ms before",
                v.retransmits_in_row
            ));
            if let Some(rto) = v.rto_ms {
                out.push_str(&format!(
                    "; the retransmission timeout had backed off to {rto:.0} ms"
                ));
            }
        } else if let (Cause::Timeout, Some(ms)) = (cause, v.since_receive_ms) {
            out.push_str(&format!(", nothing received for {:.1} s", ms / 1000.0));
        }
    }
    if v.probes_unanswered > 0 {
        out.push_str(&format!(
            "; {} unanswered",
            n(
                v.probes_unanswered,
                "keepalive or zero-window probe",
                "keepalive or zero-window probes"
            )
        ));
    }
    out
}

/// Why an overflowing listener's queue never drains when processes holding it (`at_limit`,
/// at least one) have used up their open files: appended to the overflow's explanation, with the
/// process that opened the listener (`opener`) when that is another (a prefork master).
pub fn listener_out_of_files(at_limit: &[AtLimit], opener: Option<&Owner>) -> String {
    let who = |a: &AtLimit| format!("{} ({})", a.pid, a.comm.escaped());
    let mut s = match at_limit {
        [a] => format!(
            "; process {} has {} open files, its limit: its accept() fails with EMFILE (\"too many open files\"), so the queue never drains",
            who(a),
            a.open_files
        ),
        _ => format!(
            "; processes {} have {} open files, their limits: their accept() fails with EMFILE (\"too many open files\"), so the queue never drains",
            at_limit.iter().map(who).collect::<Vec<_>>().join(", "),
            at_limit.iter().map(|a| a.open_files.to_string()).collect::<Vec<_>>().join(", ")
        ),
    };
    if let Some(o) = opener.filter(|o| at_limit.iter().all(|a| a.pid != o.pid)) {
        s.push_str(&format!(
            "; the listener was opened by process {} ({}), which shares it",
            o.pid,
            o.comm.escaped()
        ));
    }
    s
}

pub fn reason_name(reason: u32, names: &BTreeMap<u64, String>) -> Option<&str> {
    if reason == ABSENT {
        return None;
    }
    names.get(&u64::from(reason)).map(String::as_str)
}

/// The story of an error, from the socket's timeline and the other end's account: `None` where
/// the plain explanation says as much.
pub fn story_line(
    ev: &Event,
    cause: Cause,
    peer: &str,
    peer_owner: Option<&Owner>,
    peer_label: Option<&str>,
    peer_unread: u32,
    timeline: &[Item],
) -> Option<String> {
    if !ev.has_story() {
        return None;
    }
    // (the other end's pod, container or unit too, when it is on this host in one)
    let place = peer_label.map_or(String::new(), |l| format!(" in {}", crate::owner::escape(l)));
    let who = peer_owner
        .map_or(String::new(), |o| format!(" (pid {} {}{place})", o.pid, o.comm.escaped()));
    let at = |step: Step| {
        timeline.iter().rev().find(|i| i.step == step).map(|i| format!("+{:.3} ms", i.t_ms))
    };
    let now = timeline.last().map_or(String::new(), |i| format!(" at +{:.3} ms", i.t_ms));
    let fin = at(Step::PeerFin);
    let rst = at(Step::RstReceived).map_or(String::new(), |t| format!(" at {t}"));
    let call = match ev {
        Event::SendError(_) => format!("this write{now} failed"),
        Event::RecvError(_) => format!("this read{now} failed"),
        Event::RecvEof(_) => format!("this read{now} returned 0 bytes"),
        Event::SocketError(_) => format!("the kernel gave up{now}"),
        _ => "the next read or write fails".to_owned(),
    };
    let words = match ev {
        // The FIN came first: a read returns 0 before anything fails.
        Event::RstReceived(e) if e.sock.state == state::CLOSE_WAIT => {
            format!("{} (with write; a read returns 0 first, EOF)", words(ev.errno().unwrap_or(0)))
        }
        _ => words(ev.errno().unwrap_or(0)).to_string(),
    };
    let fin_at = fin.as_ref().map_or(String::new(), |t| format!(" at {t}"));
    Some(match cause {
        Cause::Unanswered => format!(
            "{peer}{who} closed the connection (FIN{fin_at}) without answering our last write; {call}: the request went unanswered"
        ),
        Cause::PeerListenerClosed => format!(
            "{peer}{who} closed its listener before accepting this connection (it was still in the accept queue): its kernel reset it{rst}; {call}: {words}"
        ),
        Cause::ProbeReset => format!(
            "{peer}{who} reset the connection before any data was exchanged{rst} (a connect-then-reset probe, as load balancers and health checkers make); {call}: {words}"
        ),
        Cause::WriteAfterPeerClose => format!(
            "{peer}{who} closed the connection (FIN{}); data written after that drew its RST{rst}; {call}: {words}",
            fin.map_or(String::new(), |t| format!(" at {t}"))
        ),
        Cause::PeerAborted => format!(
            "{peer}{who} aborted the connection (close() with SO_LINGER {{on, 0}}, or a disconnect): its RST arrived{rst}; {call}: {words}"
        ),
        Cause::PeerClosedWithUnreadData if peer_unread > 0 => format!(
            "{peer}{who} closed the connection without reading all we had sent ({peer_unread} bytes still unread in its receive buffer), so its kernel sent RST instead of FIN{rst}; {call}: {words}"
        ),
        Cause::PeerClosedWithUnreadData => format!(
            "{peer}{who} closed the connection without reading all we had sent, so its kernel sent RST instead of FIN{rst}; {call}: {words}"
        ),
        Cause::AcceptQueueOverflow => format!(
            "{peer}{who} could not take the connection: its listener's accept queue was full, and its kernel reset the connection{rst}; {call}: {words}"
        ),
        Cause::PeerHasNoSocket => format!(
            "{peer} has no socket for this connection (it restarted or forgot it) and answered with RST{rst}; {call}: {words}"
        ),
        Cause::Refused => format!(
            "nothing listens at {peer}: its kernel answered our SYN with RST{rst}; {call}: {words}"
        ),
        // A peer on this host reports its own side (the RST it sent, an overflow), which may
        // arrive after this line: its reason is not "invisible", only not known yet.
        Cause::PeerReset if peer_owner.is_some() => format!(
            "{peer}{who} reset the connection{rst} (its side is reported on its own line); {call}: {words}"
        ),
        Cause::PeerReset => format!(
            "{peer}{who} reset the connection{rst}; why is not visible from this host; {call}: {words}"
        ),
        Cause::PeerClosed => {
            let no_rst = if at(Step::RstReceived).is_none() { ", no RST" } else { "" };
            format!(
                "{peer}{who} closed the connection cleanly (FIN{}); {call}: an orderly close{no_rst}",
                fin.map_or(String::new(), |t| format!(" at {t}"))
            )
        }
        Cause::Timeout => {
            let waited = timeline
                .iter()
                .find(|i| i.step == Step::Connect)
                .zip(timeline.last())
                .map_or(String::new(), |(c, l)| {
                    format!(" ({:.0} ms after the connect)", l.t_ms - c.t_ms)
                });
            // Which ran out, where the kernel's counts say.
            let ran_out = match ev.stakes() {
                Some(s) if s.retransmits > 0 => "our retransmissions went unanswered",
                Some(s) if s.probes_out > 0 => "keepalive or zero-window probes went unanswered",
                _ => "retransmissions or keepalive probes ran out",
            };
            format!(
                "no answer from {peer}: {ran_out} (the peer vanished, or packets are dropped); {call}{waited}: {words}"
            )
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use tcperr_common::{EventHeader, RstSent, SockInfo};

    use super::*;

    #[test]
    fn each_kernel_rst_reason_has_its_words() {
        let names: BTreeMap<u64, String> = [
            "TCP_ABORT_ON_LINGER",
            "TCP_ABORT_ON_CLOSE",
            "TCP_ABORT_ON_DATA",
            "NO_SOCKET",
            "TCP_STATE",
            "TCP_TIMEWAIT_SOCKET",
            "TCP_DISCONNECT_WITH_DATA",
            "NOT_SPECIFIED",
        ]
        .iter()
        .enumerate()
        .map(|(i, n)| (i as u64, (*n).to_owned()))
        .collect();
        let sent = |reason| {
            let header =
                EventHeader { kind: 0, cpu: 0, ts_ns: 0, pid_tgid: 0, comm: [0; 16], sk: 0 };
            let ev = Event::RstSent(RstSent {
                header,
                sock: SockInfo::ZERO,
                reason,
                closed_from: 0,
                _pad0: 0,
                _pad1: 0,
                unread: 0,
                _pad2: 0,
            });
            explain(&ev, "10.0.0.2:80", &names)
        };
        let cases = [
            (0, "close() with SO_LINGER {on, 0}: an abort instead of FIN"),
            (1, "closed with unread data in the receive buffer: the kernel resets instead of FIN"),
            (2, "data arrived after this side had closed: the kernel resets the sender"),
            (
                3,
                "a segment arrived for which this host has no socket (no listener, or a connection it forgot)",
            ),
            (
                4,
                "the connection was aborted in a state that requires RST: close() with SO_LINGER {on, 0}, or a disconnect",
            ),
            (5, "a segment hit a TIME_WAIT socket"),
            // Reasons without words of their own, and reasons the kernel has no name for.
            (6, "kernel reason TCP_DISCONNECT_WITH_DATA"),
            (7, "kernel reason NOT_SPECIFIED"),
            (ABSENT, "the kernel gives no reason on this version"),
        ];
        for (reason, why) in cases {
            assert_eq!(
                sent(reason),
                format!("this host sent RST to 10.0.0.2:80: {why}"),
                "{reason}"
            );
        }
    }

    #[test]
    fn a_reset_by_a_peer_on_this_host_is_not_called_invisible() {
        let header = EventHeader { kind: 0, cpu: 0, ts_ns: 0, pid_tgid: 0, comm: [0; 16], sk: 0 };
        let ev = Event::RstReceived(tcperr_common::RstReceived {
            stakes: tcperr_common::Stakes::ZERO,
            header,
            sock: SockInfo { state: tcperr_common::tcp::state::ESTABLISHED, ..SockInfo::ZERO },
            errno: 104,
            _pad: 0,
        });
        let line = |owner| story_line(&ev, Cause::PeerReset, "10.0.0.2:80", owner, None, 0, &[]);
        let server =
            Owner { pid: 42, tid: None, comm: crate::owner::Comm::new("server"), cgroup: 0 };
        let local = line(Some(&server)).unwrap_or_default();
        assert!(local.starts_with("10.0.0.2:80 (pid 42 server) reset the connection (its side is reported on its own line)"), "{local}");
        let remote = line(None).unwrap_or_default();
        assert!(remote.contains("why is not visible from this host"), "{remote}");
    }

    #[test]
    fn a_listener_out_of_files_is_named_with_its_count() {
        let nginx = AtLimit {
            pid: 42,
            comm: crate::owner::Comm::new("nginx"),
            open_files: 1024,
            max_open_files: 1024,
        };
        let owner = Owner { pid: 42, tid: Some(42), comm: nginx.comm, cgroup: 0 };
        assert_eq!(
            listener_out_of_files(&[nginx], Some(&owner)),
            "; process 42 (nginx) has 1024 open files, its limit: its accept() fails with EMFILE (\"too many open files\"), so the queue never drains"
        );
    }

    #[test]
    fn prefork_workers_out_of_files_are_named_with_the_master_that_listened() {
        let worker = |pid, open| AtLimit {
            pid,
            comm: crate::owner::Comm::new("worker"),
            open_files: open,
            max_open_files: open,
        };
        let master =
            Owner { pid: 41, tid: Some(41), comm: crate::owner::Comm::new("master"), cgroup: 0 };
        assert_eq!(
            listener_out_of_files(&[worker(43, 64)], Some(&master)),
            "; process 43 (worker) has 64 open files, its limit: its accept() fails with EMFILE (\"too many open files\"), so the queue never drains; the listener was opened by process 41 (master), which shares it"
        );
        assert_eq!(
            listener_out_of_files(&[worker(43, 64), worker(44, 128)], Some(&master)),
            "; processes 43 (worker), 44 (worker) have 64, 128 open files, their limits: their accept() fails with EMFILE (\"too many open files\"), so the queue never drains; the listener was opened by process 41 (master), which shares it"
        );
    }
}
