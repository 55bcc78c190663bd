//! A socket's entry: what is known of one `struct sock`, started over when the kernel reuses its
//! address for another socket, and the tuple under which the other end finds it.
use rustc_hash::FxHashMap;

use tcperr_common::{SockInfo, tcp::state};

use super::Seen;
use crate::{
    decode::Event,
    owner::Owner,
    story::{Item, PeerRst, Tuple},
};

#[derive(Default)]
pub(super) struct SockEntry {
    pub(super) owner: Option<Owner>,
    /// The socket's cgroup as its last record gave it (the other end's, for a peer on this
    /// host whose owner is not known).
    pub(super) cgroup: u32,
    /// errno of the last RST received: the socket_error that repeats it is not reported again.
    pub(super) rst_errno: Option<u32>,
    /// This side reset the connection: the error the kernel then sets on it is our own abort.
    pub(super) rst_sent: bool,
    /// The last complete 4-tuple seen: the kernel zeroes ports as a socket closes.
    pub(super) tuple: Option<SockInfo>,
    /// The 4-tuple under which `by_tuple` finds this socket (set once per connection: in RST
    /// storms re-inserting it for every event was the tracer's largest cost).
    pub(super) indexed: Option<Tuple>,
    /// Listeners: client connections (address, port) already reported as overflowing.
    pub(super) overflowed: Vec<([u8; 16], u16)>,
    pub(super) closed_ns: Option<u64>,
    pub(super) seen_ns: u64,
    /// The socket's inode once seen: a different one at the same address is a new socket.
    pub(super) ino: u64,
    /// The other end's account of resetting this connection, when that end is on this host
    /// and this socket was known as it reset.
    pub(super) peer_rst: Option<PeerRst>,
    /// The state the last RST arrived in.
    pub(super) rst_state: Option<u8>,
    /// The kernel aborted the socket after its owner had closed it, because data arrived
    /// (an RST on the orphan, or, on kernels that skip that, its move from FIN_WAIT to CLOSE).
    pub(super) aborted_on_data: bool,
    /// The socket reached CLOSE inside its owner's close() (an abort).
    pub(super) closed_in_close: bool,
    /// The socket was aborted from ESTABLISHED without ever having had a file: a connection
    /// still in its listener's accept queue when the listener closed.
    pub(super) never_accepted: bool,
    pub(super) timeline: Vec<Item>,
}

/// An RST received in any state but CLOSE ends the socket there and then (`tcp_reset()` →
/// `tcp_done()`); the eBPF side does not send that move to CLOSE separately.
pub(super) fn ends_socket(ev: &Event) -> bool {
    matches!(ev, Event::RstReceived(e) if e.sock.state != state::CLOSE)
}

/// Remembers a complete 4-tuple, and completes one whose local port the kernel already cleared
/// (it does as a socket closes), or whose remote port a closed socket lost (a disconnect, as
/// closing a listener makes of each connection it never accepted, clears it).
fn fill_tuple(known: &mut Option<SockInfo>, sock: &mut SockInfo) {
    if sock.lport != 0 && sock.rport != 0 {
        *known = Some(*sock);
    } else if (sock.lport == 0 || sock.state == state::CLOSE)
        && let Some(k) = known
    {
        (sock.family, sock.laddr, sock.lport, sock.raddr, sock.rport) =
            (k.family, k.laddr, k.lport, k.raddr, k.rport);
        if sock.netns == 0 {
            sock.netns = k.netns;
        }
    }
}

impl SockEntry {
    /// Starts the entry over when its `struct sock` (`sk`) now is another socket: it connects,
    /// or carries another inode than `ino`.
    #[inline]
    pub(super) fn reset_if_reused(
        &mut self,
        ev: &Event,
        sk: u64,
        ino: u64,
        by_tuple: &mut FxHashMap<Tuple, u64>,
    ) {
        let connecting = matches!(ev, Event::StateChange(e) if e.newstate == state::SYN_SENT);
        if !(connecting || (ino != 0 && self.ino != 0 && ino != self.ino)) {
            return;
        }
        // The struct sock was freed and reused by another socket: its old connection no longer
        // leads here (and the tuple map stays as small as the set of live sockets, where a
        // storm's churn would grow it by the second).
        if let Some(t) = self.indexed
            && by_tuple.get(&t) == Some(&sk)
        {
            by_tuple.remove(&t);
        }
        // (the timeline's buffer is kept: struct socks are reused by the thousand per second in
        // RST storms, and its allocation was a tracer cost of its own)
        let mut timeline = std::mem::take(&mut self.timeline);
        timeline.clear();
        *self = SockEntry { timeline, ..SockEntry::default() };
    }

    /// Notes the event at `ts_ns`: the socket's inode, when it was seen and closed, and its
    /// 4-tuple (completing `sock`'s from the one known).
    #[inline]
    pub(super) fn note(&mut self, ev: &Event, ts_ns: u64, sock: &mut SockInfo) {
        if sock.ino != 0 {
            self.ino = sock.ino;
        }
        if sock.cgroup != 0 {
            self.cgroup = sock.cgroup;
        }
        self.seen_ns = ts_ns;
        if matches!(ev, Event::StateChange(e) if e.newstate == state::CLOSE) || ends_socket(ev) {
            self.closed_ns = Some(ts_ns);
        }
        if !matches!(ev, Event::AcceptQueueFull(_)) {
            // (an overflow's tuple is the client's connection, not the listener's)
            fill_tuple(&mut self.tuple, sock);
        }
    }

    /// Files the socket in `by_tuple` under its connection, once per connection (not an
    /// overflow's: that tuple is the client's).
    #[inline]
    pub(super) fn index_tuple(&mut self, s: &Seen, by_tuple: &mut FxHashMap<Tuple, u64>) {
        if let (Some(t), false) = (s.conn, matches!(s.ev, Event::AcceptQueueFull(_)))
            && self.indexed != Some(t)
        {
            by_tuple.insert(t, s.h.sk);
            self.indexed = Some(t);
        }
    }
}
