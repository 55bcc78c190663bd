//! Per-socket state: who owns each socket (pid attribution of softirq events) and what happened
//! to it last, turning decoded events into [`Report`]s. Memory is bounded: sockets leave a grace
//! period after they reach CLOSE, and a hard cap evicts the least recently seen (counted).
//!
//! An event passes these stages ([`Correlator::observe_if`]), each in a module of its own: its
//! socket's entry, started over if the `struct sock` is another socket now (`entry`); its owner
//! (`attribution`); its step in the socket's story, whether it is reported and why it happened
//! (`step`); then its [`Brief`], and its [`Report`] if the filters admit it (`assemble`).
mod assemble;
mod attribution;
mod dropped;
mod entry;
mod step;

// The stages on the way to the Brief are `#[inline]`: observe_if is generic, so it is compiled in
// its callers' crates (the tracer's, the bench's), which cannot inline this crate's functions
// otherwise (split without it, observe_if ran 8% slower through a loopback RST storm).

use std::{collections::BTreeMap, rc::Rc};

use rustc_hash::FxHashMap;

use tcperr_common::{EventHeader, SockInfo, tcp::state};

use self::{entry::SockEntry, step::Verdict};
use crate::{
    container::{Cgroup, Cgroups, Selector},
    decode::Event,
    explain::reason_name,
    owner::{Owner, OwnerSource},
    proc_sockets::{ListenerFiles, ProcSockets},
    report::{Brief, Report},
    story::{PeerRst, Tuple, mirror, tuple},
};

/// How long a socket's entry outlives its CLOSE (late events: the RST sent after an abort, a
/// read of the dead socket).
const GRACE_NS: u64 = 5_000_000_000;
/// How long who closed a connection is remembered, and for how many connections at most.
const CLOSER_NS: u64 = 600_000_000_000;
const CLOSERS_CAP: usize = 16_384;
pub const DEFAULT_CAP: usize = 65_536;

pub struct Correlator {
    socks: FxHashMap<u64, SockEntry>,
    /// Each connection's socket, by its tuple: finds the other end when both are on this host.
    by_tuple: FxHashMap<Tuple, u64>,
    /// RSTs this host sent, by the sender's tuple: the other end's account of a reset.
    rst_by_tuple: FxHashMap<Tuple, PeerRst>,
    /// Who closed each connection (FIN) and when, by the closer's tuple: names the peer that
    /// closed after its socket is gone (TIME_WAIT, its struct sock reused, its process exited),
    /// for as long as a pooled connection may sit before its owner reads the EOF.
    closers: FxHashMap<Tuple, (Owner, u64)>,
    /// Segments the kernel dropped, by their sender's tuple: joined into their connection's
    /// errors.
    dropped: dropped::Dropped,
    procs: ProcSockets,
    rst_reasons: BTreeMap<u64, String>,
    cap: usize,
    /// Report every event, state changes and repeats included.
    all: bool,
    /// Reports carry the kernel address of their socket (`--debug-fields`).
    debug_fields: bool,
    /// cgroup ids → paths, containers, pods; and the container filters (`container.rs`).
    cgroups: Cgroups,
    selector: Selector,
    pub evicted: u64,
}

/// An event as attributed: what the stages after attribution read of it.
struct Seen<'a> {
    ev: &'a Event,
    h: &'a EventHeader,
    /// The event's socket, its 4-tuple completed from what its entry knew.
    sock: &'a SockInfo,
    conn: Option<Tuple>,
    owner: Option<Owner>,
    source: OwnerSource,
    /// The owner's cgroup, where it is known.
    cgroup: Option<Rc<Cgroup>>,
    /// An overflowing listener's processes' open files.
    listener: Option<&'a ListenerFiles>,
}

/// The other end's account of a reset of connection `conn`, if it is on this host: kept on the
/// socket's `entry`, else by the connection's tuple.
#[inline]
fn peer_rst_of(
    entry: Option<&SockEntry>,
    conn: Option<Tuple>,
    rst_by_tuple: &FxHashMap<Tuple, PeerRst>,
) -> Option<PeerRst> {
    entry
        .and_then(|e| e.peer_rst)
        .or_else(|| conn.and_then(|t| rst_by_tuple.get(&mirror(&t))).cloned())
}

impl Correlator {
    pub fn new(rst_reasons: BTreeMap<u64, String>, all: bool) -> Self {
        Self {
            socks: FxHashMap::default(),
            by_tuple: FxHashMap::default(),
            rst_by_tuple: FxHashMap::default(),
            closers: FxHashMap::default(),
            dropped: dropped::Dropped::default(),
            procs: ProcSockets::default(),
            rst_reasons,
            cap: DEFAULT_CAP,
            all,
            debug_fields: false,
            cgroups: Cgroups::new(None, Default::default()),
            selector: Selector::default(),
            evicted: 0,
        }
    }

    /// Events name their cgroup, container and pod from `cgroups`; only those `selector`
    /// admits are reported (`--container`, `--pod`, `--namespace`, `--cgroup`).
    pub fn with_cgroups(mut self, cgroups: Cgroups, selector: Selector) -> Self {
        self.cgroups = cgroups;
        self.selector = selector;
        self
    }

    /// Reports carry the kernel address of their socket (`sk`).
    pub fn with_debug_fields(mut self, on: bool) -> Self {
        self.debug_fields = on;
        self
    }

    pub fn with_cap(mut self, cap: usize) -> Self {
        self.cap = cap.max(1);
        self
    }

    /// Entries held: sockets, connections by tuple, other ends' accounts of resets, closers.
    pub fn tracked(&self) -> usize {
        self.socks.len()
            + self.by_tuple.len()
            + self.rst_by_tuple.len()
            + self.closers.len()
            + self.dropped.len()
    }

    /// `/proc/PID/fd` links read to find owners, so far.
    pub fn proc_links_read(&self) -> u64 {
        self.procs.links_read
    }

    /// Updates the socket's state with `ev` and returns its report, or None when the event is
    /// context only (state changes, an error report repeating an RST, an RST on an orphan).
    pub fn observe(&mut self, ev: &Event) -> Option<Report> {
        self.observe_if(ev, |_| true)
    }

    /// As [`Self::observe`], and the report is only built if `admit` accepts its [`Brief`]
    /// (filters, summary, storm folding: an event they stop costs no formatting).
    pub fn observe_if(&mut self, ev: &Event, admit: impl FnOnce(&Brief) -> bool) -> Option<Report> {
        let h = ev.header();
        let mut sock = *ev.sock();
        self.make_room(h.sk);
        // The socket's entry, held through its step: its one lookup until a report is built.
        let mut entry = (h.sk != 0).then(|| self.socks.entry(h.sk).or_default());
        let source = match entry.as_deref_mut() {
            Some(e) => {
                e.reset_if_reused(ev, h.sk, sock.ino, &mut self.by_tuple);
                e.note(ev, h.ts_ns, &mut sock);
                attribution::attribute(e, &mut self.procs, ev, h, &sock)
            }
            None => OwnerSource::Unknown,
        };
        let mut owner = entry.as_ref().and_then(|e| e.owner);
        let mut source = source;
        // An overflow: the open files of every process holding the listener (prefork workers
        // inherit it from the master that listened). One at its limit is the process named.
        let listener = match ev {
            Event::AcceptQueueFull(_) => {
                let ino = entry.as_ref().map_or(0, |e| e.ino);
                let files = self.procs.listener_files(ino, sock.lport, owner.map(|o| o.pid));
                if let Some(a) = files.at_limit.first()
                    && owner.is_none_or(|o| o.pid != a.pid)
                {
                    owner = Some(Owner { pid: a.pid, tid: None, comm: a.comm, cgroup: 0 });
                    source = OwnerSource::Proc;
                }
                Some(files)
            }
            _ => None,
        };
        // The owner's cgroup: the task's where the record ran in its context, else the one the
        // owner was seen in, else the socket's own (softirq, timers, an owner that exited).
        let cgroup_id = match (source, owner) {
            (OwnerSource::Context, _) => sock.cgroup,
            (_, Some(o)) if o.cgroup != 0 => o.cgroup,
            _ => sock.cgroup,
        };
        let cgroup = self.cgroups.get(cgroup_id);
        if !self.selector.matches(cgroup.as_deref()) {
            return None;
        }
        let s = Seen {
            ev,
            h,
            sock: &sock,
            conn: tuple(&sock),
            owner,
            source,
            cgroup,
            listener: listener.as_ref(),
        };
        let reason = match ev {
            Event::RstSent(e) => reason_name(e.reason, &self.rst_reasons).map(str::to_owned),
            Event::Drop(e) => crate::drops::reason_name(e.reason).map(str::to_owned),
            _ => None,
        };
        // The other end's account of a reset: for the causes of failed calls here, and for the
        // other end's process once the report is built (lookups skipped for what is not).
        let peer_rst = match ev {
            Event::SocketError(_) | Event::SendError(_) | Event::RecvError(_) => {
                peer_rst_of(entry.as_deref(), s.conn, &self.rst_by_tuple)
            }
            _ => None,
        };
        let verdict = match entry {
            Some(e) => {
                e.index_tuple(&s, &mut self.by_tuple);
                e.record_step(&s, reason.as_deref(), peer_rst.as_ref())
            }
            None => Verdict::without_socket(&s, reason.as_deref()),
        };
        if let Some((t, rst)) = verdict.pending_rst {
            self.note_peer_rst(t, rst);
        }
        if let (Event::Drop(d), Some(t)) = (ev, s.conn) {
            let name = crate::drops::reason_name(d.reason);
            self.dropped.note(t, d.outgoing != 0, name, h.ts_ns);
        }
        if let (Event::StateChange(e), Some(t), Some(o)) = (ev, s.conn, s.owner)
            && matches!(e.newstate, state::FIN_WAIT1 | state::LAST_ACK)
        {
            self.note_closer(t, o, h.ts_ns);
        }
        let shown = verdict.report_it || self.all;
        let brief = assemble::brief(&s, verdict.cause, shown);
        // (what is not shown reaches `admit` only if the summary counts it, or the metrics: a
        // drop)
        if !shown && brief.counts_as == crate::report::Counted::Not && !matches!(ev, Event::Drop(_))
        {
            return None;
        }
        if !admit(&brief) || !shown {
            return None;
        }
        let peer_unread = peer_rst.map_or(0, |p| p.unread);
        let peer_owner = self.peer_owner(s.h.sk, s.conn, peer_rst);
        let peer_cgroup = self.peer_cgroup(s.conn, peer_owner);
        Some(self.build_report(&s, &brief, reason, peer_owner, peer_cgroup, peer_unread))
    }

    /// Makes room for socket `sk` at the cap (evicting) unless it is already held.
    #[inline]
    fn make_room(&mut self, sk: u64) {
        if self.socks.len() >= self.cap && !self.socks.contains_key(&sk) {
            self.evict();
        }
    }

    /// The process at the other end of connection `conn` (of socket `sk`), when it is on this
    /// host: its socket's owner, else the owner in its account of a reset (`peer_rst`, if
    /// already looked up).
    fn peer_owner(&self, sk: u64, conn: Option<Tuple>, peer_rst: Option<PeerRst>) -> Option<Owner> {
        conn.and_then(|t| self.by_tuple.get(&mirror(&t)))
            .and_then(|other| self.socks.get(other))
            .and_then(|e| e.owner)
            .or_else(|| peer_rst.or_else(|| self.peer_rst(sk, conn)).and_then(|p| p.owner))
            .or_else(|| conn.and_then(|t| self.closers.get(&mirror(&t))).map(|c| c.0))
    }

    /// The cgroup of the other end of connection `conn` when it is on this host: its owner's,
    /// else its socket's as last seen.
    fn peer_cgroup(&mut self, conn: Option<Tuple>, peer: Option<Owner>) -> Option<Rc<Cgroup>> {
        let socket = conn
            .and_then(|t| self.by_tuple.get(&mirror(&t)))
            .and_then(|other| self.socks.get(other))
            .map_or(0, |e| e.cgroup);
        let id = peer.map_or(0, |o| o.cgroup);
        self.cgroups.get(if id != 0 { id } else { socket })
    }

    /// Remembers that `owner` closed connection `t` at `ts_ns`, within [`CLOSERS_CAP`] (the
    /// oldest quarter goes first).
    fn note_closer(&mut self, t: Tuple, owner: Owner, ts_ns: u64) {
        if self.closers.len() >= CLOSERS_CAP && !self.closers.contains_key(&t) {
            let mut times: Vec<u64> = self.closers.values().map(|c| c.1).collect();
            let (_, cut, _) = times.select_nth_unstable(CLOSERS_CAP / 4);
            let cut = *cut;
            self.closers.retain(|_, c| c.1 > cut);
        }
        self.closers.insert(t, (owner, ts_ns));
    }

    /// Drops sockets closed longer than the grace period before `now_ns`, the other ends'
    /// accounts of resets as old, and tuple entries whose socket is gone or has moved on to
    /// another connection (a recycled `struct sock`).
    pub fn expire(&mut self, now_ns: u64) {
        self.socks.retain(|_, e| e.closed_ns.is_none_or(|c| now_ns.saturating_sub(c) < GRACE_NS));
        self.rst_by_tuple.retain(|_, r| now_ns.saturating_sub(r.ts_ns) < GRACE_NS);
        self.closers.retain(|_, c| now_ns.saturating_sub(c.1) < CLOSER_NS);
        self.dropped.expire(now_ns);
        let socks = &self.socks;
        self.by_tuple.retain(|t, sk| {
            socks.get(sk).and_then(|e| e.tuple.as_ref()).and_then(tuple) == Some(*t)
        });
    }

    /// The other end's account of a reset of connection `conn`, if it is on this host.
    fn peer_rst(&self, sk: u64, conn: Option<Tuple>) -> Option<PeerRst> {
        peer_rst_of(self.socks.get(&sk), conn, &self.rst_by_tuple)
    }

    /// Records the other end's account of a reset, keeping at most `cap` of them.
    fn note_peer_rst(&mut self, t: Tuple, rst: PeerRst) {
        // The other end is a socket seen on this host: its entry carries the account (what a
        // loopback RST storm mostly is; the tuple map below grows by one per connection).
        if let Some(e) = self.by_tuple.get(&mirror(&t)).and_then(|sk| self.socks.get_mut(sk)) {
            e.peer_rst = Some(rst);
            return;
        }
        if self.rst_by_tuple.len() >= self.cap && !self.rst_by_tuple.contains_key(&t) {
            let mut ts: Vec<u64> = self.rst_by_tuple.values().map(|r| r.ts_ns).collect();
            let idx = ts.len() / 4;
            let cut = *ts.select_nth_unstable(idx).1;
            let before = self.rst_by_tuple.len();
            self.rst_by_tuple.retain(|_, r| r.ts_ns > cut);
            self.evicted += (before - self.rst_by_tuple.len()) as u64;
        }
        self.rst_by_tuple.insert(t, rst);
    }

    /// At the cap: drop the least recently seen quarter.
    fn evict(&mut self) {
        let mut seen: Vec<u64> = self.socks.values().map(|e| e.seen_ns).collect();
        let idx = seen.len() / 4;
        let (_, cut, _) = seen.select_nth_unstable(idx);
        let cut = *cut;
        let before = self.socks.len();
        self.socks.retain(|_, e| e.seen_ns > cut);
        self.evicted += (before - self.socks.len()) as u64;
        self.rst_by_tuple.retain(|_, r| r.ts_ns > cut);
        let socks = &self.socks;
        self.by_tuple.retain(|_, sk| socks.contains_key(sk));
    }
}

#[cfg(test)]
mod tests {
    use tcperr_common::{
        EventKind, RstReceived, SendError, SocketError, StateChange,
        tcp::{errno::ECONNRESET, state},
    };

    use super::*;
    use crate::owner::Comm;

    fn header(kind: EventKind, ts: u64, pid: u32, comm: &[u8]) -> EventHeader {
        let mut c = [0u8; 16];
        c[..comm.len()].copy_from_slice(comm);
        EventHeader {
            kind: kind as u32,
            cpu: 0,
            ts_ns: ts,
            pid_tgid: (u64::from(pid) << 32) | u64::from(pid + 1),
            comm: c,
            sk: 0x1000,
        }
    }

    fn sock(state: u8, ino: u64) -> SockInfo {
        let mut s = SockInfo::ZERO;
        s.family = 2;
        s.state = state;
        s.ino = ino;
        s.laddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        s.raddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        s.rport = 8090;
        s
    }

    fn connect(pid: u32, comm: &[u8]) -> Event {
        Event::StateChange(StateChange {
            header: header(EventKind::StateChange, 1, pid, comm),
            sock: sock(state::CLOSE, 1),
            oldstate: state::CLOSE,
            newstate: state::SYN_SENT,
            _pad0: 0,
            _pad1: 0,
        })
    }

    fn rst(state: u8, errno: u32, interrupted_pid: u32) -> Event {
        Event::RstReceived(RstReceived {
            stakes: tcperr_common::Stakes::ZERO,
            header: header(EventKind::RstReceived, 2, interrupted_pid, b"swapper/0"),
            sock: sock(state, 1),
            errno,
            _pad: 0,
        })
    }

    /// This process's pid and the inode of a socket it holds (`_socket` keeps it open).
    fn held_socket() -> (u32, u64, std::net::TcpListener) {
        use std::os::{fd::AsRawFd, unix::fs::MetadataExt};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let ino = std::fs::metadata(format!("/proc/self/fd/{}", l.as_raw_fd())).expect("stat");
        (std::process::id(), ino.ino(), l)
    }

    fn with_ino(mut ev: Event, ino: u64) -> Event {
        match &mut ev {
            Event::StateChange(e) => e.sock.ino = ino,
            Event::RstReceived(e) => e.sock.ino = ino,
            _ => unreachable!(),
        }
        ev
    }

    #[test]
    fn softirq_rst_is_attributed_to_the_process_that_connected() {
        let mut c = Correlator::new(BTreeMap::new(), false);
        let (me, ino, _socket) = held_socket();
        assert_eq!(c.observe(&with_ino(connect(me, b"client"), ino)), None);
        let r = c.observe(&with_ino(rst(state::CLOSE_WAIT, 32, 0), ino)).unwrap();
        assert_eq!(
            (r.pid, r.comm.as_ref().map(Comm::as_str), r.owner_from),
            (Some(me), Some("client"), OwnerSource::Socket)
        );
        assert_eq!(
            (r.kind, r.state, r.errno.as_deref(), r.error.as_deref()),
            ("rst_received", "CLOSE_WAIT", Some("EPIPE"), Some("broken pipe"))
        );
    }

    #[test]
    fn socket_error_repeating_an_rst_is_not_reported_twice() {
        let mut c = Correlator::new(BTreeMap::new(), false);
        c.observe(&connect(7, b"client"));
        assert!(c.observe(&rst(state::ESTABLISHED, 104, 0)).is_some());
        let err = |e| {
            Event::SocketError(SocketError {
                stakes: tcperr_common::Stakes::ZERO,
                header: header(EventKind::SocketError, 3, 0, b""),
                sock: sock(state::ESTABLISHED, 1),
                errno: e,
                _pad: 0,
            })
        };
        assert_eq!(c.observe(&err(104)), None);
        // A later, different error (a timeout) is reported.
        assert_eq!(c.observe(&err(110)).unwrap().errno.as_deref(), Some("ETIMEDOUT"));
    }

    #[test]
    fn send_error_names_the_calling_thread() {
        let mut c = Correlator::new(BTreeMap::new(), false);
        let ev = Event::SendError(SendError {
            stakes: tcperr_common::Stakes::ZERO,
            header: header(EventKind::SendError, 5, 99, b"writer"),
            sock: sock(state::CLOSE, 1),
            errno: 32,
            _pad: 0,
        });
        let r = c.observe(&ev).unwrap();
        assert_eq!((r.pid, r.tid, r.owner_from), (Some(99), Some(100), OwnerSource::Context));
    }

    #[test]
    fn a_reused_struct_sock_does_not_inherit_the_old_owner() {
        let mut c = Correlator::new(BTreeMap::new(), true);
        c.observe(&connect(4242, b"old"));
        // Another socket at the same kernel address (inode 2), aborted inside its owner's close().
        let abort = Event::StateChange(StateChange {
            header: header(EventKind::StateChange, 9, 77, b"new"),
            sock: SockInfo { locked: 1, ..sock(state::ESTABLISHED, 2) },
            oldstate: state::ESTABLISHED,
            newstate: state::CLOSE,
            _pad0: 0,
            _pad1: 0,
        });
        let r = c.observe(&abort).unwrap();
        assert_eq!((r.pid, r.owner_from), (Some(77), OwnerSource::Context));
    }

    #[test]
    fn recycled_sockets_and_their_resets_do_not_accumulate() {
        // A storm: one struct sock address after another for new connections, each reset.
        let mut c = Correlator::new(BTreeMap::new(), false);
        for i in 0..20_000u64 {
            let ts = i * 1_000_000; // 1 ms apart: 20 s in all
            let mut s = sock(state::ESTABLISHED, 100 + i);
            s.lport = 30_000 + (i % 20_000) as u16;
            let h = |kind| {
                let mut h = header(kind, ts, 7, b"storm");
                h.sk = 0x1000 + (i % 64) * 64;
                h
            };
            c.observe(&Event::StateChange(StateChange {
                header: h(EventKind::StateChange),
                sock: s,
                oldstate: state::CLOSE,
                newstate: state::SYN_SENT,
                _pad0: 0,
                _pad1: 0,
            }));
            c.observe(&Event::RstSent(tcperr_common::RstSent {
                header: h(EventKind::RstSent),
                sock: s,
                reason: tcperr_common::ABSENT,
                closed_from: 0,
                _pad0: 0,
                _pad1: 0,
                unread: 0,
                _pad2: 0,
            }));
            if i % 1000 == 0 {
                c.expire(ts);
            }
        }
        // At most 5 s of grace at 1,000 connections a second, plus one second between expiries,
        // plus the 64 recycled sockets and their current tuples; unbounded, it would be 40,000.
        assert!(c.tracked() < 8_000, "{} entries", c.tracked());
    }

    #[test]
    fn a_loopback_storm_joins_each_reset_and_keeps_only_live_sockets() {
        // Both ends on this host, each connection aborted by the server and read by the client,
        // struct socks recycled as the kernel does: the client's failed read carries the
        // server's account, and without any expiry the maps hold the live sockets, not every
        // connection made.
        let mut c = Correlator::new(BTreeMap::new(), false);
        for i in 0..20_000u64 {
            let ts = 1 + i * 10_000;
            let mut client = sock(state::ESTABLISHED, 100 + 2 * i);
            client.lport = 30_000 + (i % 20_000) as u16;
            let mut server = client;
            (server.ino, server.lport, server.rport) = (101 + 2 * i, client.rport, client.lport);
            server.locked = 1; // (its abort runs inside the server's close())
            let h =
                |kind, pid: u32, comm: &[u8], sk| EventHeader { sk, ..header(kind, ts, pid, comm) };
            let (client_sk, server_sk) = (0x10_0000 + (i % 64) * 64, 0x20_0000 + (i % 64) * 64);
            c.observe(&Event::StateChange(StateChange {
                header: h(EventKind::StateChange, 7, b"client", client_sk),
                sock: SockInfo { state: state::CLOSE, ..client },
                oldstate: state::CLOSE,
                newstate: state::SYN_SENT,
                _pad0: 0,
                _pad1: 0,
            }));
            c.observe(&Event::StateChange(StateChange {
                header: h(EventKind::StateChange, 9, b"server", server_sk),
                sock: server,
                oldstate: state::ESTABLISHED,
                newstate: state::CLOSE,
                _pad0: 0,
                _pad1: 0,
            }));
            c.observe(&Event::RstSent(tcperr_common::RstSent {
                header: h(EventKind::RstSent, 9, b"server", server_sk),
                sock: SockInfo { state: state::CLOSE, ..server },
                reason: tcperr_common::ABSENT,
                closed_from: 0,
                _pad0: 0,
                _pad1: 0,
                unread: 0,
                _pad2: 0,
            }));
            c.observe(&Event::RstReceived(RstReceived {
                stakes: tcperr_common::Stakes::ZERO,
                header: h(EventKind::RstReceived, 0, b"swapper/0", client_sk),
                sock: client,
                errno: ECONNRESET,
                _pad: 0,
            }));
            let read = c.observe(&Event::RecvError(tcperr_common::RecvError {
                stakes: tcperr_common::Stakes::ZERO,
                header: h(EventKind::RecvError, 7, b"client", client_sk),
                sock: SockInfo { state: state::CLOSE, ..client },
                errno: ECONNRESET,
                flags: 0,
            }));
            let r = read.expect("the failed read is reported");
            assert_eq!(
                (r.cause, r.peer_pid, r.peer_comm.as_ref().map(Comm::as_str)),
                (Some("peer_aborted"), Some(9), Some("server")),
                "connection {i}"
            );
        }
        assert!(c.tracked() <= 256, "{} entries", c.tracked());
    }

    #[test]
    fn the_cap_bounds_memory_and_counts_evictions() {
        let mut c = Correlator::new(BTreeMap::new(), false).with_cap(8);
        for i in 0..100u64 {
            let mut ev = connect(1, b"c");
            if let Event::StateChange(s) = &mut ev {
                s.header.sk = 0x1000 + i;
                s.header.ts_ns = i;
            }
            c.observe(&ev);
            assert!(c.tracked() <= 8);
        }
        assert!(c.evicted >= 92);
    }

    #[test]
    fn closed_sockets_expire_after_the_grace_period() {
        let mut c = Correlator::new(BTreeMap::new(), false);
        c.observe(&connect(1, b"c"));
        let close = Event::StateChange(StateChange {
            header: header(EventKind::StateChange, 10, 1, b"c"),
            sock: sock(state::ESTABLISHED, 1),
            oldstate: state::ESTABLISHED,
            newstate: state::CLOSE,
            _pad0: 0,
            _pad1: 0,
        });
        c.observe(&close);
        c.expire(10 + GRACE_NS - 1);
        assert_eq!(c.tracked(), 1);
        c.expire(10 + GRACE_NS);
        assert_eq!(c.tracked(), 0);
    }

    #[test]
    fn the_peer_that_closed_is_named_after_its_socket_is_gone() {
        // The server closes (FIN) in its own call; its struct sock is then reused by another
        // process's connect before the client reads the EOF (the server's socket went to
        // TIME_WAIT, its process may have exited).
        let mut c = Correlator::new(BTreeMap::new(), true);
        let client =
            SockInfo { lport: 40_000, rport: 8090, ino: 20, ..sock(state::CLOSE_WAIT, 20) };
        let server = SockInfo { lport: 8090, rport: 40_000, ino: 21, ..client };
        let at = |kind, pid: u32, comm: &[u8], sk| EventHeader { sk, ..header(kind, 5, pid, comm) };
        c.observe(&Event::StateChange(StateChange {
            header: at(EventKind::StateChange, 9, b"server", 0x2000),
            sock: SockInfo { state: state::ESTABLISHED, locked: 1, ..server },
            oldstate: state::ESTABLISHED,
            newstate: state::FIN_WAIT1,
            _pad0: 0,
            _pad1: 0,
        }));
        c.observe(&Event::StateChange(StateChange {
            header: at(EventKind::StateChange, 5, b"other", 0x2000),
            sock: SockInfo { state: state::CLOSE, ino: 30, ..SockInfo::ZERO },
            oldstate: state::CLOSE,
            newstate: state::SYN_SENT,
            _pad0: 0,
            _pad1: 0,
        }));
        let eof = c
            .observe(&Event::RecvEof(tcperr_common::RecvEof {
                header: at(EventKind::RecvEof, 7, b"client", 0x1000),
                sock: client,
                flags: 0,
                _pad: 0,
                stakes: tcperr_common::Stakes::ZERO,
            }))
            .expect("--all reports the EOF");
        assert_eq!(
            (eof.peer_pid, eof.peer_comm.as_ref().map(Comm::as_str)),
            (Some(9), Some("server"))
        );
    }

    #[test]
    fn an_rst_names_its_owner_that_closed_the_socket_since() {
        // The connecting process no longer holds the socket (inode 1) by the time the RST is
        // read, and no other process does: it closed it after the RST, which was still its.
        // (A process that took the socket over is named instead: tests/scenarios.rs.)
        let mut c = Correlator::new(BTreeMap::new(), false);
        let (me, _, _socket) = held_socket();
        c.observe(&connect(me, b"client"));
        let r = c.observe(&rst(state::ESTABLISHED, 104, 0)).unwrap();
        assert_eq!((r.pid, r.owner_from), (Some(me), OwnerSource::Socket));
    }
}
