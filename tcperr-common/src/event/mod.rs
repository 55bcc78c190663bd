//! One wire type per event kind. The name of each kind is carried unchanged from the hook that
//! emits it (`tcperr-ebpf/src/<hook>.rs`) through the decoder and the explanation to the scenario
//! that proves it (`vm/src/scenarios/`).

mod accept_queue_full;
mod drop;
mod recv_eof;
mod recv_error;
mod rst_received;
mod rst_sent;
mod send_error;
mod socket_error;
mod state_change;

pub use accept_queue_full::AcceptQueueFull;
pub use drop::Drop;
pub use recv_eof::RecvEof;
pub use recv_error::RecvError;
pub use rst_received::RstReceived;
pub use rst_sent::RstSent;
pub use send_error::SendError;
pub use socket_error::SocketError;
pub use state_change::StateChange;

/// Which record follows the header. Values are part of the wire format: never reuse one.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `tcp:tcp_receive_reset`: this host's socket took an RST (see [`RstReceived`]).
    RstReceived = 1,
    /// `tcp:tcp_send_reset`: this host sent an RST (see [`RstSent`]).
    RstSent = 2,
    /// A `sendmsg` on a TCP socket returned an error (see [`SendError`]).
    SendError = 3,
    /// A `recvmsg` on a TCP socket returned an error (see [`RecvError`]).
    RecvError = 4,
    /// A `recvmsg` on a TCP socket returned 0 after the peer's FIN (see [`RecvEof`]).
    RecvEof = 5,
    /// `sock:inet_sock_set_state`: a TCP state transition the story needs (see [`StateChange`]).
    StateChange = 6,
    /// `sock:inet_sk_error_report`: the kernel set an error on a socket (see [`SocketError`]).
    SocketError = 7,
    /// A listener's accept queue overflowed (see [`AcceptQueueFull`]).
    AcceptQueueFull = 8,
    /// `skb:kfree_skb`: the kernel dropped a TCP segment, with its reason (see [`Drop`]).
    Drop = 9,
}

impl EventKind {
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::RstReceived,
            2 => Self::RstSent,
            3 => Self::SendError,
            4 => Self::RecvError,
            5 => Self::RecvEof,
            6 => Self::StateChange,
            7 => Self::SocketError,
            8 => Self::AcceptQueueFull,
            9 => Self::Drop,
            _ => return None,
        })
    }

    /// The kind's name: JSON `kind`, the human lines' EVENT column, the scenarios' expectations.
    pub const fn name(self) -> &'static str {
        match self {
            Self::RstReceived => "rst_received",
            Self::RstSent => "rst_sent",
            Self::SendError => "send_error",
            Self::RecvError => "recv_error",
            Self::RecvEof => "recv_eof",
            Self::StateChange => "state_change",
            Self::SocketError => "socket_error",
            Self::AcceptQueueFull => "accept_queue_full",
            Self::Drop => "drop",
        }
    }
}

/// Common prefix of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventKind`] as `u32`.
    pub kind: u32,
    /// CPU the program ran on (orders records of one CPU; the ring buffer orders them anyway).
    pub cpu: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// `bpf_get_current_pid_tgid()` of the task the hook ran in. Only meaningful for hooks that run
    /// in the socket owner's context (send/recv results, connect, close); for events raised in
    /// softirq (most state changes) it is whatever task was interrupted. 0 in records of an RST
    /// received, which the eBPF side does not stamp with a task at all.
    pub pid_tgid: u64,
    /// `bpf_get_current_comm()` of that task (zeroes where `pid_tgid` is 0).
    pub comm: [u8; 16],
    /// Kernel address of the `struct sock`; 0 when the event has no socket (an RST answering a
    /// segment for which no socket exists).
    pub sk: u64,
}

/// The socket as the kernel sees it when the event fires, read from `struct sock` with offsets
/// taken from the running kernel's BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockInfo {
    /// `sk->__sk_common.skc_cookie`: the kernel's socket cookie (`ss -e` shows it as `sk:`), 0 if
    /// the kernel has not assigned one yet.
    pub cookie: u64,
    /// Inode number of the socket's file (`/proc/<pid>/fd/N -> socket:[ino]`); 0 when no file
    /// holds the socket any more (orphaned after close).
    pub ino: u64,
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u16,
    /// Local port, host byte order.
    pub lport: u16,
    /// Remote port, host byte order.
    pub rport: u16,
    /// TCP state (`crate::tcp::state`) when the event fired.
    pub state: u8,
    /// 1 when the task the record ran in held the socket's lock (`sk->sk_lock.owned`: it was
    /// inside a call on this socket — close(), connect(), send(), a backlog it processes on
    /// release), so that task holds the socket; 0 in softirq and timers, which never touch a
    /// socket a task has locked (they queue to its backlog or retry later).
    pub locked: u8,
    /// The socket's network namespace: the inode of `/proc/PID/ns/net` (`net:[N]`); 0 unknown.
    /// A 4-tuple names one connection only within its namespace.
    pub netns: u32,
    /// The cgroup v2 id of the socket's owner as the kernel side knows it: the running task's
    /// (`bpf_get_current_cgroup_id()`) where the record runs in the owner's context (its own
    /// call's result, or `locked`), else the socket's own (`sk->sk_cgrp_data`: the cgroup of the
    /// task that created it, or of its listener for an accepted socket), which softirq, timers
    /// and a socket whose owner has exited still have. 0 where neither is known: a TIME_WAIT or
    /// request socket, a kernel without that data, or one before 5.15 holding cgroup v1
    /// `net_cls`/`net_prio` data in that word instead.
    ///
    /// The id's low 32 bits (the records keep their size): the part the kernel's id allocator
    /// (kernfs's IDR) keeps unique among live cgroups; on 64-bit kernels the whole id until 2^31
    /// cgroups were made. It is the inode number of the cgroup's directory on the unified
    /// hierarchy (truncated alike), by which userspace finds its path.
    pub cgroup: u32,
    /// Local address: IPv4 in the first 4 bytes, or IPv6.
    pub laddr: [u8; 16],
    /// Remote address: IPv4 in the first 4 bytes, or IPv6.
    pub raddr: [u8; 16],
}

/// What was at stake on a TCP socket when a call on it failed or read EOF: its byte counts and
/// sequence numbers, read from `struct tcp_sock` on that error path only. Sequence numbers are
/// raw (wrapping u32): unacknowledged = `write_seq - snd_una`, received but not read =
/// `rcv_nxt - copied_seq`. All zero when the kernel lacks a field or the socket is not TCP's.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stakes {
    /// `bytes_sent` (data bytes put on the wire, retransmissions included), `bytes_acked` (data
    /// bytes the peer acknowledged), `bytes_received` (sequence space received: data, plus one
    /// for the peer's FIN once it came).
    pub bytes_sent: u64,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    /// `jiffies` when the record was made: the clock of `lsndtime` and `lrcvtime`.
    pub jiffies: u64,
    pub write_seq: u32,
    pub snd_una: u32,
    pub rcv_nxt: u32,
    pub copied_seq: u32,
    /// `total_retrans`: segments retransmitted over the connection's life.
    pub total_retrans: u32,
    /// `lsndtime`: when data was last sent; `icsk_ack.lrcvtime`: when data was last received
    /// (the connection's start until then). Low 32 bits of jiffies.
    pub lsndtime: u32,
    pub lrcvtime: u32,
    /// `sk_max_ack_backlog`: an accepted socket keeps its listener's backlog (> 0); a socket
    /// that connected has 0. The one kernel fact of which side opened the connection.
    pub backlog: u32,
    /// `retrans_stamp`: when the oldest segment still being retransmitted was first sent, on
    /// TCP's clock (CLOCK_MONOTONIC in ms, low 32 bits); 0 when nothing is being retransmitted.
    pub retrans_stamp: u32,
    /// `icsk_rto`: the retransmission timeout, backed off by each unanswered retransmission
    /// (jiffies, the clock of `lsndtime`).
    pub rto: u32,
    /// `icsk_retransmits`: retransmissions in a row without an answer (the kernel's u8);
    /// `icsk_probes_out`: keepalive or zero-window probes unanswered (u8).
    pub retransmits: u32,
    pub probes_out: u32,
}

impl Stakes {
    pub const ZERO: Self = Self {
        bytes_sent: 0,
        bytes_acked: 0,
        bytes_received: 0,
        jiffies: 0,
        write_seq: 0,
        snd_una: 0,
        rcv_nxt: 0,
        copied_seq: 0,
        total_retrans: 0,
        lsndtime: 0,
        lrcvtime: 0,
        backlog: 0,
        retrans_stamp: 0,
        rto: 0,
        retransmits: 0,
        probes_out: 0,
    };
}

impl SockInfo {
    pub const ZERO: Self = Self {
        cookie: 0,
        ino: 0,
        family: 0,
        lport: 0,
        rport: 0,
        state: 0,
        locked: 0,
        netns: 0,
        cgroup: 0,
        laddr: [0; 16],
        raddr: [0; 16],
    };
}

/// Implemented by every record type: the kind its header carries.
pub trait Event: Copy {
    const KIND: EventKind;
    fn header(&self) -> &EventHeader;
}

macro_rules! event {
    ($ty:ident) => {
        impl $crate::event::Event for $ty {
            const KIND: $crate::event::EventKind = $crate::event::EventKind::$ty;
            #[inline(always)]
            fn header(&self) -> &$crate::event::EventHeader {
                &self.header
            }
        }
    };
}

/// How long after a CPU woke the reader its further records are written without waking it
/// (`BPF_RB_NO_WAKEUP`): under a storm one wake-up carries thousands of records instead of one.
/// The reader, after every read that found records, reads again this long (plus a margin)
/// later, so that no record waits longer than this.
pub const WAKEUP_BATCH_NS: u64 = 10_000_000;
pub(crate) use event;
