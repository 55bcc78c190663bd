//! Who owns the socket of an event: the task itself where the event runs in the owner's
//! context (its own call, or any record raised while it held the socket's lock), else the
//! owner the socket already has, else `/proc`. Owners learned are noted by local port: hints
//! for finding the owner of the port's next socket in `/proc` (`proc_sockets.rs`).
use tcperr_common::{EventHeader, SockInfo, tcp::is_owner_context_transition, tcp::state};

use super::entry::SockEntry;
use crate::{
    decode::Event,
    owner::{Comm, Owner, OwnerSource},
    proc_sockets::ProcSockets,
};

/// Whether the event runs in the socket owner's own context: its own call's result, a
/// transition only the owner's call makes, or any record raised while the running task held the
/// socket's lock (inside its close(), connect(), or a backlog it processes on release: softirq
/// and timers never touch a socket a task has locked, so the lock's holder is the running task).
#[inline]
fn in_owner_context(ev: &Event) -> bool {
    match ev {
        Event::SendError(_) | Event::RecvError(_) | Event::RecvEof(_) => true,
        Event::StateChange(e) => {
            e.sock.locked != 0 || is_owner_context_transition(e.oldstate, e.newstate)
        }
        other => other.sock().locked != 0,
    }
}

/// The task the event ran in, as an owner (built only where it is taken as the owner: not for
/// softirq's records).
#[inline]
fn task(h: &EventHeader, sock: &SockInfo) -> Owner {
    Owner {
        pid: (h.pid_tgid >> 32) as u32,
        tid: Some(h.pid_tgid as u32),
        comm: Comm::from_kernel(&h.comm),
        // (in the owner's context the record carries the task's cgroup)
        cgroup: sock.cgroup,
    }
}

/// Whether the event's socket is a listener (its `listen()`, or an overflow of its queue).
#[inline]
fn is_listener(ev: &Event) -> bool {
    match ev {
        Event::StateChange(e) => e.newstate == state::LISTEN,
        Event::AcceptQueueFull(_) => true,
        _ => false,
    }
}

/// Finds the owner of the event's socket (`sock`), kept as the entry's `owner` (None if
/// unknown), and says how it is known. `/proc` is read only when the socket has no owner yet.
/// A record raised in another task's context is never that task's: on loopback the peer's
/// segments are processed in softirq inside the sender's call (its close() moves our socket to
/// CLOSE_WAIT), so only a task holding the socket's lock is taken as its owner.
#[inline]
pub(super) fn attribute(
    entry: &mut SockEntry,
    procs: &mut ProcSockets,
    ev: &Event,
    h: &EventHeader,
    sock: &SockInfo,
) -> OwnerSource {
    let ino = sock.ino;
    if in_owner_context(ev) {
        let owner = task(h, sock);
        // (once per socket and owner: a storm's sockets pass here once each)
        if entry.owner.is_none_or(|o| o.pid != owner.pid) {
            procs.note(sock.lport, owner.pid, is_listener(ev));
        }
        entry.owner = Some(owner);
        return OwnerSource::Context;
    }
    if let Some(o) = entry.owner {
        // A socket can change hands without a call of its new holder: a fork whose parent
        // closes its copy, SCM_RIGHTS. An RST or error report printed with an owner names one
        // that still holds the socket, else another process that holds it now. (If none does,
        // its owner closed it since: the event was still its.)
        let printed = matches!(ev, Event::RstReceived(_) | Event::SocketError(_));
        if !printed || procs.still_holds(o.pid, ino) {
            return OwnerSource::Socket;
        }
        return match procs.lookup(ino, sock.lport) {
            Some(now) if now.pid != o.pid => {
                procs.note_found(sock.lport, now.pid, false);
                entry.owner = Some(now);
                OwnerSource::Proc
            }
            _ => OwnerSource::Socket,
        };
    }
    let Some(owner) = procs.lookup(ino, sock.lport) else { return OwnerSource::Unknown };
    procs.note_found(sock.lport, owner.pid, is_listener(ev));
    entry.owner = Some(owner);
    OwnerSource::Proc
}
