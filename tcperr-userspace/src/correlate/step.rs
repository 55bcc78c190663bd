//! An event's step in its socket's story: the timeline, what the socket learns (RSTs, aborts,
//! overflowing clients), whether the event is reported, and its cause.
use tcperr_common::{
    AcceptQueueFull, RstReceived, SocketError, StateChange,
    tcp::{errno::ECONNRESET, state},
};

use super::{
    Seen,
    entry::{SockEntry, ends_socket},
};
use crate::{
    decode::Event,
    error_names,
    report::state_name,
    stakes::{Units, View, accepted, wrote_last},
    story::{self, Cause, PeerRst, Step, Tuple},
};

/// A reset of an accepted connection before any data went either way is a probe (connect,
/// then RST: load balancers and health checkers), not a failure of a conversation. (The side
/// that connected and got reset at once was refused by a server, which is no probe.)
fn probe_or(cause: Cause, s: &Seen) -> Cause {
    // (sequence numbers start at random: 0 is a kernel that gave no stakes)
    let no_data = s.ev.stakes().is_some_and(|st| {
        let v = View::of(st, s.h.ts_ns, Units::of(s.sock.state, false, false));
        st.snd_una != 0
            && accepted(st)
            && v.bytes_received == 0
            && v.bytes_acked == 0
            && v.unacked == 0
            && st.bytes_sent == 0
    });
    match cause {
        Cause::PeerReset | Cause::PeerAborted if no_data => Cause::ProbeReset,
        c => c,
    }
}

/// What an event's step decided.
#[derive(Debug)]
pub(super) struct Verdict {
    /// Whether the event is news (else it is context only: reported with `--all` alone).
    pub(super) report_it: bool,
    pub(super) cause: Option<Cause>,
    /// A reset this host sent or caused, to keep as the other end's account of it.
    pub(super) pending_rst: Option<(Tuple, PeerRst)>,
}

impl Verdict {
    /// Reported, with `cause`.
    #[inline]
    fn report(cause: Option<Cause>) -> Self {
        Self { report_it: true, cause, pending_rst: None }
    }

    /// A segment the kernel dropped (`reason`: its name): context, shown with `--all` (its cause
    /// from the reason's group).
    #[inline]
    pub(super) fn dropped(reason: Option<&str>) -> Self {
        let cause = reason.and_then(crate::drops::cause_of).map(|c| c.cause());
        Self { report_it: false, ..Self::report(Some(cause.unwrap_or(Cause::Unknown))) }
    }

    /// The verdict on an event without a socket (`sk` 0): reported; an RST sent is classed from
    /// its reason alone, its connection all there is.
    #[inline]
    pub(super) fn without_socket(s: &Seen, reason: Option<&str>) -> Self {
        if let Event::Drop(_) = s.ev {
            return Self::dropped(reason);
        }
        let Event::RstSent(_) = s.ev else { return Self::report(None) };
        let c = story::rst_sent_cause(reason, false, false);
        let pending_rst =
            s.conn.map(|t| (t, PeerRst { ts_ns: s.h.ts_ns, cause: c, owner: None, unread: 0 }));
        Self { pending_rst, ..Self::report(Some(c)) }
    }
}

/// The step a move to `newstate` adds to the timeline, if any.
#[inline]
fn state_step(newstate: u8) -> Option<Step> {
    match newstate {
        state::SYN_SENT => Some(Step::Connect),
        state::LISTEN => Some(Step::Listen),
        state::CLOSE_WAIT => Some(Step::PeerFin),
        state::FIN_WAIT1 | state::LAST_ACK => Some(Step::Close),
        state::CLOSE => Some(Step::End),
        _ => None,
    }
}

impl SockEntry {
    /// Adds the event's step to the socket's story: whether to report it, and why it happened
    /// (`reason`: an RST sent's kernel reason; `peer_rst`: the other end's account, for errors).
    #[inline]
    pub(super) fn record_step(
        &mut self,
        s: &Seen,
        reason: Option<&str>,
        peer_rst: Option<&PeerRst>,
    ) -> Verdict {
        let ts = s.h.ts_ns;
        match s.ev {
            Event::StateChange(e) => {
                self.state_change(e, s);
                Verdict { report_it: false, ..Verdict::report(None) }
            }
            Event::RstReceived(e) => self.rst_received(e, s),
            Event::RstSent(e) => self.rst_sent(s, reason, e.unread),
            Event::SocketError(e) => self.socket_error(e, ts, peer_rst),
            Event::SendError(_) | Event::RecvError(_) => {
                let n = s.ev.errno().unwrap_or(0);
                story::push(&mut self.timeline, ts, Step::CallFailed, error_names::name(n));
                let cause = story::error_cause(n, self.rst_state, peer_rst);
                Verdict::report(Some(probe_or(cause, s)))
            }
            Event::RecvEof(e) => {
                story::push(&mut self.timeline, ts, Step::Eof, "");
                let cause = self.eof_cause(&e.stakes, s);
                Verdict { report_it: cause != Cause::PeerClosed, ..Verdict::report(Some(cause)) }
            }
            Event::AcceptQueueFull(e) => self.accept_queue_full(e, s),
            Event::Drop(_) => Verdict::dropped(reason),
        }
    }

    /// Whether an EOF is an error, from what the kernel knew of the connection when the read
    /// returned 0. An error when our last write went unanswered: the peer's RST answered a write
    /// we made after its FIN (the read saw the FIN first), it never acknowledged bytes we wrote,
    /// or, on the side that connected, the last data went out from us (a request the peer
    /// closed on). Else an orderly close: a server reading 0 after its response, a pooled
    /// connection the server closed while idle.
    fn eof_cause(&self, st: &tcperr_common::Stakes, s: &Seen) -> Cause {
        if self.rst_state == Some(state::CLOSE_WAIT) {
            return Cause::WriteAfterPeerClose;
        }
        let v = View::of(st, s.h.ts_ns, self.units(s.sock.state));
        let connected = self.timeline.iter().any(|i| i.step == Step::Connect);
        if v.unacked > 0 || ((connected || !accepted(st)) && wrote_last(st, &v)) {
            Cause::Unanswered
        } else {
            Cause::PeerClosed
        }
    }

    /// The control units in the socket's sequence numbers, from its state and its timeline.
    pub(super) fn units(&self, state: u8) -> Units {
        let saw = |step| self.timeline.iter().any(|i: &story::Item| i.step == step);
        Units::of(state, saw(Step::PeerFin), saw(Step::Close))
    }

    /// A move between states: a step of the timeline; a move to CLOSE tells whether its owner
    /// aborted it in close(), or the kernel did as data arrived after the close.
    #[inline]
    fn state_change(&mut self, e: &StateChange, s: &Seen) {
        if e.newstate == state::CLOSE {
            let by_owner =
                e.sock.locked != 0 && matches!(e.oldstate, state::ESTABLISHED | state::CLOSE_WAIT);
            self.closed_in_close |= by_owner && self.rst_state.is_none();
            // (an established socket without a file was never accepted: closing its listener
            // aborts each one still queued)
            self.never_accepted |=
                e.oldstate == state::ESTABLISHED && e.sock.ino == 0 && self.ino == 0;
            self.aborted_on_data |=
                e.sock.ino == 0 && matches!(e.oldstate, state::FIN_WAIT1 | state::FIN_WAIT2);
        }
        if let Some(step) = state_step(e.newstate) {
            story::push(&mut self.timeline, s.h.ts_ns, step, state_name(e.oldstate));
        }
    }

    /// An RST received: reported if a process still holds the socket.
    #[inline]
    fn rst_received(&mut self, e: &RstReceived, s: &Seen) -> Verdict {
        let ts = s.h.ts_ns;
        self.rst_errno = Some(if e.errno == 0 { ECONNRESET } else { e.errno });
        self.rst_state = Some(e.sock.state);
        self.aborted_on_data |= e.sock.ino == 0;
        story::push(&mut self.timeline, ts, Step::RstReceived, state_name(e.sock.state));
        if ends_socket(s.ev) {
            story::push(&mut self.timeline, ts, Step::End, state_name(e.sock.state));
        }
        // From what this host's socket knows alone: whether the other end's account of the
        // reset arrives before or after this record depends on timing (an active RST is
        // reported after loopback delivered it). The failed call that follows carries the
        // joined story.
        let cause = probe_or(story::reset_cause(Some(e.sock.state), None), s);
        Verdict { report_it: e.sock.ino != 0, ..Verdict::report(Some(cause)) }
    }

    /// An RST this host sent: its cause, kept as the other end's account of the reset.
    #[inline]
    fn rst_sent(&mut self, s: &Seen, reason: Option<&str>, unread: u32) -> Verdict {
        self.rst_sent = true;
        let in_close = s.sock.locked != 0 || self.closed_in_close;
        let c = if self.never_accepted {
            Cause::NotAccepted
        } else {
            story::rst_sent_cause(reason, in_close, self.aborted_on_data)
        };
        story::push(&mut self.timeline, s.h.ts_ns, Step::RstSent, c.name());
        let pending_rst =
            s.conn.map(|t| (t, PeerRst { ts_ns: s.h.ts_ns, cause: c, owner: s.owner, unread }));
        Verdict { pending_rst, ..Verdict::report(Some(c)) }
    }

    /// An error the kernel set on the socket: reported when it is news to whoever holds the
    /// socket: not a repeat of an RST, not our own abort, and only if a process holds the socket
    /// at all.
    #[inline]
    fn socket_error(&mut self, e: &SocketError, ts: u64, peer_rst: Option<&PeerRst>) -> Verdict {
        let report_it = self.rst_errno.take() != Some(e.errno) && !self.rst_sent && e.sock.ino != 0;
        if report_it {
            story::push(&mut self.timeline, ts, Step::SocketError, error_names::name(e.errno));
        }
        let cause = story::error_cause(e.errno, self.rst_state, peer_rst);
        Verdict { report_it, ..Verdict::report(Some(cause)) }
    }

    /// A listener's accept queue overflowed: reported once per client connection, however many
    /// SYN-ACKs retransmit or ACKs the kernel resets; out of files if a process holding the
    /// listener is (the one that listened, or a prefork worker that inherited it).
    #[inline]
    fn accept_queue_full(&mut self, e: &AcceptQueueFull, s: &Seen) -> Verdict {
        let key = (e.sock.raddr, e.sock.rport);
        let report_it = !self.overflowed.contains(&key);
        if report_it {
            if self.overflowed.len() >= 1024 {
                self.overflowed.remove(0);
            }
            self.overflowed.push(key);
        }
        let pending_rst = s.conn.map(|t| {
            let cause = Cause::AcceptQueueOverflow;
            (t, PeerRst { ts_ns: s.h.ts_ns, cause, owner: s.owner, unread: 0 })
        });
        let cause = if s.listener.is_some_and(|l| !l.at_limit.is_empty()) {
            Cause::ListenerOutOfFiles
        } else {
            Cause::AcceptQueueOverflow
        };
        Verdict { report_it, cause: Some(cause), pending_rst }
    }
}

#[cfg(test)]
mod tests {
    use tcperr_common::{EventHeader, RecvEof, RstSent, SendError, SockInfo};

    use crate::owner::OwnerSource;

    use super::*;
    use crate::story::tuple;

    fn sock(state: u8, ino: u64) -> SockInfo {
        let mut s = SockInfo::ZERO;
        (s.family, s.state, s.ino, s.lport, s.rport) = (2, state, ino, 40000, 8080);
        s
    }

    fn header() -> EventHeader {
        EventHeader { kind: 0, cpu: 0, ts_ns: 7, pid_tgid: 0, comm: [0; 16], sk: 0x1000 }
    }

    fn state_change(oldstate: u8, newstate: u8) -> Event {
        let sock = sock(oldstate, 1);
        Event::StateChange(StateChange {
            header: header(),
            sock,
            oldstate,
            newstate,
            _pad0: 0,
            _pad1: 0,
        })
    }

    fn rst_received(state: u8, ino: u64) -> Event {
        Event::RstReceived(RstReceived {
            stakes: tcperr_common::Stakes::ZERO,
            header: header(),
            sock: sock(state, ino),
            errno: 0,
            _pad: 0,
        })
    }

    fn socket_error(errno: u32, ino: u64) -> Event {
        let sock = sock(state::ESTABLISHED, ino);
        Event::SocketError(SocketError {
            stakes: tcperr_common::Stakes::ZERO,
            header: header(),
            sock,
            errno,
            _pad: 0,
        })
    }

    fn overflow() -> Event {
        let sock = sock(state::LISTEN, 1);
        let (backlog, queued, action) = (1, 2, 0);
        Event::AcceptQueueFull(AcceptQueueFull {
            header: header(),
            sock,
            backlog,
            queued,
            action,
            syncookies: tcperr_common::ABSENT,
        })
    }

    /// A verdict as tested: reported, its cause, a reset kept for the other end, the steps added.
    type Outcome = (bool, Option<Cause>, bool, Vec<Step>);

    /// The verdict on `ev` for a socket seen for the first time, and the steps it added.
    fn step(ev: &Event, source: OwnerSource) -> Outcome {
        let sock = *ev.sock();
        let s = Seen {
            ev,
            h: ev.header(),
            sock: &sock,
            conn: tuple(&sock),
            owner: None,
            source,
            cgroup: None,
            listener: None,
        };
        let mut entry = SockEntry::default();
        let v = entry.record_step(&s, None, None);
        let steps = entry.timeline.iter().map(|i| i.step).collect();
        (v.report_it, v.cause, v.pending_rst.is_some(), steps)
    }

    #[test]
    fn each_kind_of_event_takes_its_step_and_cause() {
        use Cause::{Aborted, AcceptQueueOverflow, PeerClosed, PeerReset, Refused, Timeout};
        use OwnerSource::{Context, Socket};
        use Step::{CallFailed, Connect, End, Eof};
        let sent = Event::RstSent(RstSent {
            header: header(),
            sock: SockInfo { locked: 1, ..sock(state::ESTABLISHED, 1) },
            reason: tcperr_common::ABSENT,
            closed_from: 0,
            _pad0: 0,
            _pad1: 0,
            unread: 0,
            _pad2: 0,
        });
        let send = Event::SendError(SendError {
            stakes: tcperr_common::Stakes::ZERO,
            header: header(),
            sock: sock(state::CLOSE, 1),
            errno: 32,
            _pad: 0,
        });
        let eof = Event::RecvEof(RecvEof {
            stakes: tcperr_common::Stakes::ZERO,
            header: header(),
            sock: sock(state::CLOSE_WAIT, 1),
            flags: 0,
            _pad: 0,
        });
        let cases: [(Event, OwnerSource, Outcome); 11] = [
            // State changes are context only.
            (
                state_change(state::CLOSE, state::SYN_SENT),
                Socket,
                (false, None, false, vec![Connect]),
            ),
            (
                state_change(state::ESTABLISHED, state::CLOSE),
                Socket,
                (false, None, false, vec![End]),
            ),
            (
                state_change(state::SYN_SENT, state::ESTABLISHED),
                Socket,
                (false, None, false, vec![]),
            ),
            // An RST received ends the socket unless it was closed already; an orphan's is not
            // reported.
            (
                rst_received(state::SYN_SENT, 1),
                Socket,
                (true, Some(Refused), false, vec![Step::RstReceived, End]),
            ),
            (
                rst_received(state::CLOSE, 0),
                OwnerSource::Unknown,
                (false, Some(PeerReset), false, vec![Step::RstReceived]),
            ),
            // An RST sent in close() without a reason is an abort, kept for the other end.
            (sent, Context, (true, Some(Aborted), true, vec![Step::RstSent])),
            (
                socket_error(110, 1),
                OwnerSource::Unknown,
                (true, Some(Timeout), false, vec![Step::SocketError]),
            ),
            // No process holds the socket: no one sees the error.
            (socket_error(104, 0), OwnerSource::Unknown, (false, Some(PeerReset), false, vec![])),
            (send, Context, (true, Some(PeerReset), false, vec![CallFailed])),
            // An orderly close: context (shown with --all).
            (eof, Context, (false, Some(PeerClosed), false, vec![Eof])),
            (overflow(), OwnerSource::Unknown, (true, Some(AcceptQueueOverflow), true, vec![])),
        ];
        for (ev, source, want) in cases {
            assert_eq!(step(&ev, source), want, "{ev:?}");
        }
    }

    #[test]
    fn moves_between_states_take_their_steps() {
        let cases = [
            (state::SYN_SENT, Some(Step::Connect)),
            (state::LISTEN, Some(Step::Listen)),
            (state::CLOSE_WAIT, Some(Step::PeerFin)),
            (state::FIN_WAIT1, Some(Step::Close)),
            (state::LAST_ACK, Some(Step::Close)),
            (state::CLOSE, Some(Step::End)),
            (state::ESTABLISHED, None),
            (state::FIN_WAIT2, None),
            (state::TIME_WAIT, None),
            (state::SYN_RECV, None),
            (state::CLOSING, None),
        ];
        for (newstate, want) in cases {
            assert_eq!(state_step(newstate), want, "{}", state_name(newstate));
        }
    }

    #[test]
    fn repeats_are_not_news() {
        let mut entry = SockEntry::default();
        let seen = |ev| Seen {
            ev,
            h: ev.header(),
            sock: ev.sock(),
            conn: None,
            owner: None,
            source: OwnerSource::Unknown,
            cgroup: None,
            listener: None,
        };
        // The error report that repeats an RST received.
        let (rst, err) = (rst_received(state::ESTABLISHED, 1), socket_error(104, 1));
        assert!(entry.record_step(&seen(&rst), None, None).report_it);
        assert!(!entry.record_step(&seen(&err), None, None).report_it);
        assert!(entry.record_step(&seen(&err), None, None).report_it);
        // One report per overflowing client connection.
        let ev = overflow();
        assert!(entry.record_step(&seen(&ev), None, None).report_it);
        assert!(!entry.record_step(&seen(&ev), None, None).report_it);
    }

    #[test]
    fn how_a_socket_closed_classes_the_rst_it_sends_next() {
        let sent = Event::RstSent(RstSent {
            header: header(),
            sock: sock(state::CLOSE, 0),
            reason: tcperr_common::ABSENT,
            closed_from: 0,
            _pad0: 0,
            _pad1: 0,
            unread: 0,
            _pad2: 0,
        });
        let locked = |ev| {
            let Event::StateChange(mut e) = ev else { unreachable!() };
            e.sock.locked = 1;
            Event::StateChange(e)
        };
        let orphan_close = |oldstate| {
            let Event::StateChange(mut e) = state_change(oldstate, state::CLOSE) else {
                unreachable!()
            };
            e.sock.ino = 0;
            Event::StateChange(e)
        };
        let cases = [
            // Closed inside its owner's close(): an abort.
            (
                locked(state_change(state::ESTABLISHED, state::CLOSE)),
                OwnerSource::Context,
                Cause::Aborted,
            ),
            // The orphan of a close, moved to CLOSE as data arrived.
            (orphan_close(state::FIN_WAIT2), OwnerSource::Unknown, Cause::DataAfterClose),
            (orphan_close(state::FIN_WAIT1), OwnerSource::Unknown, Cause::DataAfterClose),
            // Neither: no cause known.
            (orphan_close(state::LAST_ACK), OwnerSource::Unknown, Cause::Unknown),
        ];
        for (close, source, want) in cases {
            let mut entry = SockEntry::default();
            let seen = |ev| Seen {
                ev,
                h: ev.header(),
                sock: ev.sock(),
                conn: None,
                owner: None,
                source,
                cgroup: None,
                listener: None,
            };
            entry.record_step(&seen(&close), None, None);
            let s = Seen { source: OwnerSource::Unknown, ..seen(&sent) };
            assert_eq!(entry.record_step(&s, None, None).cause, Some(want), "{close:?}");
        }
    }

    #[test]
    fn an_rst_sent_without_a_socket_is_classed_by_its_reason_alone() {
        let ev = Event::RstSent(RstSent {
            header: EventHeader { sk: 0, ..header() },
            sock: sock(state::CLOSE, 0),
            reason: 0,
            closed_from: 0,
            _pad0: 0,
            _pad1: 0,
            unread: 0,
            _pad2: 0,
        });
        let sock = *ev.sock();
        let s = Seen {
            ev: &ev,
            h: ev.header(),
            sock: &sock,
            conn: tuple(&sock),
            owner: None,
            source: OwnerSource::Unknown,
            cgroup: None,
            listener: None,
        };
        let v = Verdict::without_socket(&s, Some("NO_SOCKET"));
        assert_eq!((v.report_it, v.cause), (true, Some(Cause::NoSocket)));
        let (t, rst) = v.pending_rst.expect("kept for the other end");
        assert_eq!((Some(t), rst.cause, rst.owner), (tuple(&sock), Cause::NoSocket, None));
        let v = Verdict::without_socket(&Seen { ev: &overflow(), ..s }, None);
        assert_eq!((v.report_it, v.cause, v.pending_rst.is_none()), (true, None, true));
    }

    #[test]
    fn an_eof_is_an_error_only_when_our_last_write_went_unanswered() {
        use tcperr_common::Stakes;
        // A connection that sent 7 bytes (SYN acknowledged too) and received `received`
        // (plus the FIN), data last sent at tick `sent_at` and received at `received_at`.
        let stakes =
            |received: u64, sent_at: u32, received_at: u32, unacked: u32, backlog| Stakes {
                bytes_sent: 7 + u64::from(unacked),
                bytes_acked: 8,
                bytes_received: received + 1,
                write_seq: 1000 + unacked,
                snd_una: 1000,
                lsndtime: sent_at,
                lrcvtime: received_at,
                backlog,
                ..Stakes::ZERO
            };
        let eof = |st: Stakes| {
            Event::RecvEof(RecvEof {
                header: header(),
                sock: sock(state::CLOSE_WAIT, 1),
                flags: 0,
                _pad: 0,
                stakes: st,
            })
        };
        let cases = [
            // The client's request, then the server's FIN and nothing else: unanswered.
            (stakes(0, 10, 10, 0, 0), None, Cause::Unanswered),
            // A pooled connection reused after an answer, closed by the server on the request.
            (stakes(500, 20, 12, 0, 0), None, Cause::Unanswered),
            // Bytes the peer never acknowledged, whichever side we are.
            (stakes(500, 12, 20, 9, 128), None, Cause::Unanswered),
            // The answer came last: an idle close of a pooled connection.
            (stakes(500, 12, 20, 0, 0), None, Cause::PeerClosed),
            (stakes(500, 20, 20, 0, 0), None, Cause::PeerClosed),
            // The accepting side read 0 after its response: the client finished.
            (stakes(7, 20, 12, 0, 128), None, Cause::PeerClosed),
            // A write after the FIN drew the peer's RST before this read.
            (stakes(500, 12, 20, 0, 0), Some(state::CLOSE_WAIT), Cause::WriteAfterPeerClose),
        ];
        for (st, rst_state, want) in cases {
            let ev = eof(st);
            let s = Seen {
                ev: &ev,
                h: ev.header(),
                sock: ev.sock(),
                conn: None,
                owner: None,
                source: OwnerSource::Context,
                cgroup: None,
                listener: None,
            };
            let mut entry = SockEntry { rst_state, ..SockEntry::default() };
            let v = entry.record_step(&s, None, None);
            assert_eq!((v.cause, v.report_it), (Some(want), want != Cause::PeerClosed), "{st:?}");
        }
    }
}
