//! What an event becomes: first its [`Brief`] (all the filters, summary and storm folding need),
//! then, for an event they admit, its [`Report`] with the words.
use tcperr_common::{
    ABSENT, AcceptQueueFull,
    tcp::{AF_INET6, state},
};

use std::rc::Rc;

use super::{Correlator, Seen};
use crate::{
    container::{Cgroup, Place},
    decode::Event,
    error_names,
    explain::{explain, listener_out_of_files, stakes_clause, story_line},
    owner::Owner,
    proc_sockets::ListenerFiles,
    report::{
        AcceptQueue, Brief, Counted, Report, SCHEMA, endpoints, join_host_port, state_name,
        wall_time,
    },
    stakes::{Units, View},
    story::{self, Cause},
};

/// The event's brief, before any text is built (`shown`: whether it is printed).
#[inline]
pub(super) fn brief(s: &Seen, cause: Option<Cause>, shown: bool) -> Brief {
    use tcperr_common::tcp::state::{SYN_RECV, SYN_SENT};
    let connecting = matches!(s.sock.state, SYN_SENT | SYN_RECV);
    let counts_as = match s.ev {
        Event::SendError(_) | Event::RecvError(_) => Counted::Error,
        Event::RecvEof(_) if cause == Some(Cause::PeerClosed) => Counted::Closed,
        Event::RecvEof(_) => Counted::Error,
        Event::RstReceived(e) if e.sock.ino != 0 && connecting => Counted::Error,
        Event::SocketError(e) if e.sock.ino != 0 && connecting => Counted::Error,
        _ => Counted::Not,
    };
    Brief {
        ts_ns: s.h.ts_ns,
        kind: s.ev.kind_name(),
        pid: s.owner.map(|o| o.pid),
        comm: s.owner.map(|o| o.comm),
        family: s.sock.family,
        raddr: s.sock.raddr,
        lport: s.sock.lport,
        rport: s.sock.rport,
        errno_code: match s.ev {
            Event::RecvEof(_) => Some(0),
            _ => s.ev.errno(),
        },
        cause,
        shown,
        counts_as,
        cgroup: s.cgroup.clone(),
    }
}

/// The overflow's queue and what the kernel did, and the open files of the process named (the
/// first holding the listener at its limit, else the listener's owner) and of every process
/// holding it at its limit.
fn accept_queue(e: &AcceptQueueFull, files: Option<&ListenerFiles>) -> AcceptQueue {
    let at_limit = files.map_or(&[][..], |f| &f.at_limit);
    let named = match at_limit.first() {
        Some(a) => Some((a.open_files, a.max_open_files)),
        None => files.and_then(|f| f.owner),
    };
    AcceptQueue {
        backlog: e.backlog,
        queued: e.queued,
        action: match e.action {
            AcceptQueueFull::RESET => "reset",
            AcceptQueueFull::SYN_DROPPED => "syn_dropped",
            _ => "dropped",
        },
        syncookies: (e.action == AcceptQueueFull::SYN_DROPPED && e.syncookies != ABSENT)
            .then_some(e.syncookies),
        open_files: named.map(|u| u.0),
        max_open_files: named.map(|u| u.1),
        out_of_files: at_limit.to_vec(),
    }
}

impl Correlator {
    /// The report of an admitted event: its socket's timeline, its explanation and every field
    /// (`reason`: an RST sent's kernel reason; `peer_owner`: the process at the other end, when
    /// on this host; `peer_unread`: what it left unread when it reset the connection).
    pub(super) fn build_report(
        &self,
        s: &Seen,
        brief: &Brief,
        reason: Option<String>,
        peer_owner: Option<Owner>,
        peer_cgroup: Option<Rc<Cgroup>>,
        peer_unread: u32,
    ) -> Report {
        let peer_label = peer_cgroup.as_deref().and_then(Cgroup::label);
        let (ev, h, sock, owner) = (s.ev, s.h, s.sock, s.owner);
        let timeline = match self.socks.get(&h.sk) {
            Some(entry) if ev.has_story() => story::relative(&entry.timeline),
            _ => Vec::new(),
        };
        let (laddr, raddr) = endpoints(sock);
        let peer = join_host_port(&raddr, sock.rport);
        let (errno_name, error) = match brief.errno_code {
            Some(n) => (Some(error_names::name(n)), Some(error_names::words(n))),
            None => (None, None),
        };
        let mut explanation = match brief.cause {
            // (the kernel's reason, TCP_STATE, says only that the state needed an RST)
            Some(Cause::NotAccepted) => format!(
                "this host sent RST to {peer}: its listener was closed with this connection still in the accept queue, never accepted: the kernel resets each one"
            ),
            Some(c) => story_line(
                ev,
                c,
                &peer,
                peer_owner.as_ref(),
                peer_label.as_deref(),
                peer_unread,
                &timeline,
            )
            .unwrap_or_else(|| explain(ev, &peer, &self.rst_reasons)),
            None => explain(ev, &peer, &self.rst_reasons),
        };
        let units = self
            .socks
            .get(&h.sk)
            .map_or(Units::of(sock.state, false, false), |e| e.units(sock.state));
        // A disconnect (`tcp_disconnect()`, as closing a listener makes of each connection it
        // never accepted) clears the remote port, zeroes the byte counts and moves the sequence
        // numbers on by a window: what the socket had at stake is no longer in it.
        let disconnected = ev.sock().rport == 0 && sock.state == state::CLOSE;
        let stakes = ev.stakes().filter(|_| !disconnected).map(|st| View::of(st, h.ts_ns, units));
        if let (Some(v), Some(c)) = (&stakes, brief.cause)
            && c != Cause::PeerClosed
        {
            explanation.push_str(&stakes_clause(v, c));
        }
        // The segments of this connection the kernel dropped: why nothing came back.
        if let (Some(t), true) = (s.conn, ev.has_story()) {
            let (ours, theirs) = self.dropped.of(&t, h.ts_ns);
            explanation.push_str(&super::dropped::clause(ours, theirs, &peer));
        }
        let accept_queue = match ev {
            Event::AcceptQueueFull(e) => {
                if let Some(l) = s.listener
                    && !l.at_limit.is_empty()
                {
                    let opener = self.socks.get(&h.sk).and_then(|entry| entry.owner);
                    explanation.push_str(&listener_out_of_files(&l.at_limit, opener.as_ref()));
                }
                Some(accept_queue(e, s.listener))
            }
            _ => None,
        };
        Report {
            schema: SCHEMA,
            time: wall_time(h.ts_ns),
            ts_ns: h.ts_ns,
            kind: ev.kind_name(),
            pid: owner.as_ref().map(|o| o.pid),
            tid: owner.as_ref().and_then(|o| o.tid),
            comm: owner.map(|o| o.comm),
            owner_from: s.source,
            family: if sock.family == AF_INET6 { "ipv6" } else { "ipv4" },
            laddr,
            lport: sock.lport,
            raddr,
            rport: sock.rport,
            netns: (sock.netns != 0).then_some(sock.netns),
            state: state_name(sock.state),
            newstate: match ev {
                Event::StateChange(e) => Some(state_name(e.newstate)),
                _ => None,
            },
            errno: errno_name,
            errno_code: brief.errno_code,
            error,
            reason,
            cause: brief.cause.map(Cause::name),
            counted_as: brief.counts_as.name(),
            peer_pid: peer_owner.as_ref().map(|o| o.pid),
            peer_comm: peer_owner.map(|o| o.comm),
            place: Place::of(s.cgroup.as_deref()),
            peer_namespace: peer_cgroup.as_ref().and_then(|c| c.namespace.clone()),
            peer_pod: peer_cgroup.as_ref().and_then(|c| c.pod.clone()),
            timeline,
            accept_queue,
            stakes,
            cookie: (sock.cookie != 0).then_some(sock.cookie),
            sk: self.debug_fields.then(|| format!("{:#x}", h.sk)),
            ino: (sock.ino != 0).then_some(sock.ino),
            explanation,
        }
    }
}
