//! Who owns the socket of an event: the task itself where the event runs in the owner's
//! context, else the owner the socket already has, else `/proc`, else (inside close()) the
//! closing task.
use tcperr_common::{EventHeader, tcp::is_owner_context_transition};

use super::entry::SockEntry;
use crate::{
    decode::Event,
    owner::{Comm, Owner, OwnerSource, ProcSockets},
};

/// Whether the event runs in the socket owner's own context.
#[inline]
fn in_owner_context(ev: &Event) -> bool {
    match ev {
        Event::SendError(_) | Event::RecvError(_) | Event::RecvEof(_) => true,
        Event::StateChange(e) => is_owner_context_transition(e.oldstate, e.newstate),
        _ => false,
    }
}

/// The task the event ran in, as an owner (built only where it is taken as the owner: not for
/// softirq's records).
#[inline]
fn task(h: &EventHeader) -> Owner {
    Owner {
        pid: (h.pid_tgid >> 32) as u32,
        tid: Some(h.pid_tgid as u32),
        comm: Comm::from_kernel(&h.comm),
    }
}

/// Finds the owner of the event's socket (inode `ino`), kept as the entry's `owner` (None if
/// unknown), and says how it is known. `/proc` is read only when the socket has no owner yet.
#[inline]
pub(super) fn attribute(
    entry: &mut SockEntry,
    procs: &mut ProcSockets,
    ev: &Event,
    h: &EventHeader,
    ino: u64,
) -> OwnerSource {
    if in_owner_context(ev) {
        entry.owner = Some(task(h));
        return OwnerSource::Context;
    }
    if entry.owner.is_some() {
        return OwnerSource::Socket;
    }
    // Events that can run inside the owner's close() (an abort's RST, the move to CLOSE): the
    // socket still has its file (ino) but the fd is gone or going, so the closing task is the
    // owner, to the thread, unless /proc says another process holds the socket.
    let in_close = ino != 0 && matches!(ev, Event::RstSent(_) | Event::StateChange(_));
    // Inside close() the fd is gone: what /proc last showed is enough, a fresh scan could only
    // miss (and costs most in RST storms).
    let found = if in_close { procs.lookup_cached(ino) } else { procs.lookup(ino) };
    let (owner, source) = match found {
        Some(o) if !(in_close && o.pid == (h.pid_tgid >> 32) as u32) => (o, OwnerSource::Proc),
        _ if in_close => (task(h), OwnerSource::Closing),
        _ => return OwnerSource::Unknown,
    };
    entry.owner = Some(owner);
    source
}
