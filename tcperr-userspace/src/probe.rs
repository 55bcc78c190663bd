//! What the running kernel offers, and which hook serves each event source. Decided by
//! probing (tracepoint `format` files, BTF prototypes and members), never by version number.
use std::{fmt, path::Path};

use anyhow::{Context as _, Result, anyhow, bail};
use tcperr_common::{ABSENT, EventKind, KernelLayout, names::program as P};

use crate::{
    btf::{Btf, Kind},
    tracefs::{self, Format, Tracefs},
};

/// The event sources tcperr traces; each names the event kind(s) it produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    RstReceived,
    RstSent,
    SendError,
    RecvResult,
    StateChange,
    SocketError,
    AcceptQueueFull,
    /// SYNs a full accept queue dropped: `accept_queue_full` events of action `syn_dropped`.
    SynDropped,
    /// TCP segments the kernel dropped, for the reasons users act on: `drop` events.
    Drop,
}

impl Source {
    pub const ALL: [Self; 9] = [
        Self::RstReceived,
        Self::RstSent,
        Self::SendError,
        Self::RecvResult,
        Self::StateChange,
        Self::SocketError,
        Self::AcceptQueueFull,
        Self::SynDropped,
        Self::Drop,
    ];

    /// The source's name: the kind(s) of event it produces.
    pub fn name(self) -> &'static str {
        match self {
            Self::RstReceived => EventKind::RstReceived.name(),
            Self::RstSent => EventKind::RstSent.name(),
            Self::SendError => EventKind::SendError.name(),
            Self::RecvResult => "recv_error/recv_eof",
            Self::StateChange => EventKind::StateChange.name(),
            Self::SocketError => EventKind::SocketError.name(),
            Self::AcceptQueueFull => EventKind::AcceptQueueFull.name(),
            Self::SynDropped => "syn_dropped",
            Self::Drop => EventKind::Drop.name(),
        }
    }
}

/// How a program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    TracePoint {
        category: &'static str,
        name: &'static str,
    },
    RawTracePoint {
        name: &'static str,
    },
    /// A BTF-typed tracepoint (`tp_btf`): the arguments of a raw tracepoint, with pointers the
    /// program may load through directly.
    BtfTracePoint {
        name: &'static str,
    },
    FExit {
        function: &'static str,
        /// The return value is read from the context after this many arguments (a kernel
        /// without `bpf_get_func_ret`), not through that helper.
        ret_after_args: Option<u8>,
    },
    /// A BPF trampoline at a kernel function's entry (the fexit family's hook for a source that
    /// needs no return value).
    FEntry {
        function: &'static str,
    },
    /// A kprobe at a kernel function's entry alone (no return value needed).
    KProbe {
        function: &'static str,
    },
    /// A kprobe program at entry and a kretprobe program (`Hook::ret_program`) at return.
    KProbePair {
        function: &'static str,
    },
}

/// Families of hooks for the socket calls' results, in the order tcperr prefers them. fexit
/// is the family of BPF trampolines (fexit, and fentry where no return value is needed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    FExit,
    KProbe,
    TracePoint,
}

impl Family {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "fexit" => Ok(Self::FExit),
            "kprobe" => Ok(Self::KProbe),
            "tracepoint" => Ok(Self::TracePoint),
            _ => Err(format!("unknown hook family {s:?}: use fexit, kprobe or tracepoint")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::FExit => "fexit",
            Self::KProbe => "kprobe",
            Self::TracePoint => "tracepoint",
        }
    }
}

impl Attach {
    pub fn family(self) -> Family {
        match self {
            Self::TracePoint { .. } | Self::RawTracePoint { .. } | Self::BtfTracePoint { .. } => {
                Family::TracePoint
            }
            Self::FExit { .. } | Self::FEntry { .. } => Family::FExit,
            Self::KProbePair { .. } | Self::KProbe { .. } => Family::KProbe,
        }
    }
}

impl fmt::Display for Attach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TracePoint { category, name } => write!(f, "tracepoint {category}:{name}"),
            Self::RawTracePoint { name } => write!(f, "raw_tracepoint {name}"),
            Self::BtfTracePoint { name } => write!(f, "tp_btf {name}"),
            Self::FExit { function, ret_after_args: None } => write!(f, "fexit {function}"),
            Self::FExit { function, ret_after_args: Some(n) } => write!(
                f,
                "fexit {function} (return value from ctx[{n}]: no bpf_get_func_ret in this kernel)"
            ),
            Self::FEntry { function } => write!(f, "fentry {function}"),
            Self::KProbe { function } => write!(f, "kprobe {function}"),
            Self::KProbePair { function } => write!(f, "kprobe+kretprobe {function}"),
        }
    }
}

/// One candidate hook for a source: the program in the object and its attach point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hook {
    pub program: &'static str,
    /// The kretprobe program of a [`Attach::KProbePair`].
    pub ret_program: Option<&'static str>,
    pub attach: Attach,
}

impl Hook {
    pub(crate) const fn new(program: &'static str, attach: Attach) -> Self {
        Self { program, ret_program: None, attach }
    }
}

/// One way to serve a source: a hook probing found usable, or why it is not.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub family: Family,
    pub hook: Result<Hook, String>,
}

/// The candidates for one source, in order of preference. The tracer takes the first that
/// loads and attaches.
#[derive(Clone, Debug)]
pub struct Choice {
    pub source: Source,
    pub candidates: Vec<Candidate>,
}

fn candidate(family: Family, hook: Result<Hook, String>) -> Candidate {
    Candidate { family, hook }
}

/// Everything probing decided: offsets for the programs and a hook per source.
#[derive(Clone, Debug)]
pub struct Plan {
    pub layout: KernelLayout,
    pub choices: Vec<Choice>,
    /// `enum sk_rst_reason`'s names from kernel BTF, if `tcp_send_reset` reports reasons.
    pub rst_reasons: std::collections::BTreeMap<u64, String>,
    /// tcperr found or mounted tracefs here, or could not (why); None: no hook needed it.
    pub tracefs: Option<Result<std::path::PathBuf, String>>,
}

/// The names of `enum sk_rst_reason` as `tcp_send_reset` prints them: without the enum's
/// `SK_RST_REASON_` prefix (the tracepoint's `__print_symbolic` table is built from the same
/// list of names, `DEFINE_RST_REASON` in include/net/rstreason.h).
fn rst_reason_names(btf: &Btf) -> std::collections::BTreeMap<u64, String> {
    let values = btf.enum_values("sk_rst_reason").unwrap_or_default();
    values.into_iter().map(|(v, name)| (v, rst_reason_name(name))).collect()
}

/// One enumerator's name as printed: a C identifier, as the kernel's are. Anything else (a BTF
/// file that is not the kernel's) is escaped, so that it cannot forge output.
fn rst_reason_name(enumerator: &str) -> String {
    let name = enumerator.strip_prefix("SK_RST_REASON_").unwrap_or(enumerator);
    if name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        name.to_owned()
    } else {
        crate::owner::escape(name)
    }
}

/// Struct offsets every hook needs (a kernel without them cannot be traced).
fn sock_layout(btf: &Btf, l: &mut KernelLayout) -> Result<()> {
    let member = |ty: &str, path: &str, size: u32| -> Result<u32> {
        let (off, tid) = btf.member_offset(ty, path)?;
        let actual = btf.size_of(tid).unwrap_or(0);
        if actual != size {
            bail!("{ty}.{path} is {actual} bytes in this kernel, tcperr reads {size}");
        }
        Ok(off)
    };
    let optional = |ty: &str, path: &str, size: u32| member(ty, path, size).unwrap_or(ABSENT);
    l.sk_state = member("sock", "__sk_common.skc_state", 1)?;
    l.sk_family = member("sock", "__sk_common.skc_family", 2)?;
    l.sk_num = member("sock", "__sk_common.skc_num", 2)?;
    l.sk_sport = optional("inet_sock", "inet_sport", 2);
    l.sk_dport = member("sock", "__sk_common.skc_dport", 2)?;
    l.sk_daddr = member("sock", "__sk_common.skc_daddr", 4)?;
    l.sk_rcv_saddr = member("sock", "__sk_common.skc_rcv_saddr", 4)?;
    l.sk_v6_daddr = optional("sock", "__sk_common.skc_v6_daddr", 16);
    l.sk_v6_rcv_saddr = optional("sock", "__sk_common.skc_v6_rcv_saddr", 16);
    l.sk_cookie = optional("sock", "__sk_common.skc_cookie", 8);
    l.sk_net = optional("sock", "__sk_common.skc_net.net", 8);
    l.net_ns_inum = optional("net", "ns.inum", 4);
    l.skb_dev = optional("sk_buff", "dev", 8);
    l.netdev_net = optional("net_device", "nd_net.net", 8);
    l.sk_socket = member("sock", "sk_socket", 8)?;
    l.sk_protocol = member("sock", "sk_protocol", 2)?;
    l.sk_err = member("sock", "sk_err", 4)?;
    l.sk_lock_owned = member("sock", "sk_lock.owned", 4)?;
    l.sk_ack_backlog = optional("sock", "sk_ack_backlog", 4);
    l.sk_max_ack_backlog = optional("sock", "sk_max_ack_backlog", 4);
    l.skb_head = optional("sk_buff", "head", 8);
    l.skb_network_header = optional("sk_buff", "network_header", 2);
    l.skb_transport_header = optional("sk_buff", "transport_header", 2);
    l.icsk_defer_accept =
        optional("inet_connection_sock", "icsk_accept_queue.rskq_defer_accept", 1);
    if let Ok((byte, mask)) = btf.bit_member("inet_request_sock", "acked") {
        (l.req_acked_byte, l.req_acked_mask) = (byte, u32::from(mask));
    }
    let i_ino = member("inode", "i_ino", 8);
    l.socket_ino = match (
        btf.member_offset("socket_alloc", "socket"),
        btf.member_offset("socket_alloc", "vfs_inode"),
        &i_ino,
    ) {
        (Ok((sock, _)), Ok((inode, _)), Ok(ino)) => (inode + ino)
            .checked_sub(sock)
            .ok_or_else(|| anyhow!("socket_alloc: inode before socket"))?,
        _ => ABSENT,
    };
    // Loaded through bpf_get_current_task_btf() (5.11+): where the kernel lacks that helper (its
    // BTF has no such function), the programs keep bpf_get_current_comm().
    if btf.func_params("bpf_get_current_task_btf").is_some() {
        l.task_comm = optional("task_struct", "comm", 16);
    }
    // The process of the child the fork tracepoint hands over (`-- CMD` follows descendants).
    l.task_tgid = optional("task_struct", "tgid", 4);
    // Likewise bpf_skc_to_tcp_sock() (5.9+), else inet_sport is probe-read.
    if btf.func_params("bpf_skc_to_tcp_sock").is_some() {
        l.tcp_sock_sport = optional("tcp_sock", "inet_conn.icsk_inet.inet_sport", 2);
    }
    // What was at stake when a call failed (the error paths only).
    l.tp_bytes_sent = optional("tcp_sock", "bytes_sent", 8);
    l.tp_bytes_acked = optional("tcp_sock", "bytes_acked", 8);
    l.tp_bytes_received = optional("tcp_sock", "bytes_received", 8);
    l.tp_write_seq = optional("tcp_sock", "write_seq", 4);
    l.tp_snd_una = optional("tcp_sock", "snd_una", 4);
    l.tp_rcv_nxt = optional("tcp_sock", "rcv_nxt", 4);
    l.tp_copied_seq = optional("tcp_sock", "copied_seq", 4);
    l.tp_total_retrans = optional("tcp_sock", "total_retrans", 4);
    l.tp_lsndtime = optional("tcp_sock", "lsndtime", 4);
    l.tp_lrcvtime = optional("tcp_sock", "inet_conn.icsk_ack.lrcvtime", 4);
    // A connection's retransmissions, as the kernel counts them when a call on it fails.
    l.tp_retrans_stamp = optional("tcp_sock", "retrans_stamp", 4);
    l.tp_icsk_rto = optional("tcp_sock", "inet_conn.icsk_rto", 4);
    l.tp_icsk_retransmits = optional("tcp_sock", "inet_conn.icsk_retransmits", 1);
    l.tp_icsk_probes_out = optional("tcp_sock", "inet_conn.icsk_probes_out", 1);
    sock_cgroup_layout(btf, l);
    // (all three or none: the programs take the chain only when it is whole)
    if let (Ok(file), Ok(inode), Ok(ino)) =
        (member("socket", "file", 8), member("file", "f_inode", 8), i_ino)
    {
        (l.socket_file, l.file_inode, l.inode_ino) = (file, inode, ino);
    }
    Ok(())
}

/// The socket's cgroup v2 id (`sock.rs`): `sk_cgrp_data` holds a `struct cgroup *` of its own
/// (Linux 5.15+), or packs it with two flag bits into one word (`val`, before 5.15: a flag set,
/// the word holds cgroup v1 `net_cls`/`net_prio` data instead); then the cgroup's kernfs node and
/// its id. All of it or none (ABSENT: records carry the task's cgroup only where they run in its
/// context, and userspace attributes the rest by owner).
fn sock_cgroup_layout(btf: &Btf, l: &mut KernelLayout) {
    let sized = |ty: &str, path: &str, size: u32| {
        let (off, tid) = btf.member_offset(ty, path).ok()?;
        (btf.size_of(tid) == Some(size)).then_some(off)
    };
    let (kn, id) = (sized("cgroup", "kn", 8), sized("kernfs_node", "id", 8));
    let (Some(kn), Some(id)) = (kn, id) else { return };
    let word = match sized("sock", "sk_cgrp_data.cgroup", 8) {
        Some(off) => Some((off, 0)),
        None => sized("sock", "sk_cgrp_data.val", 8).map(|off| (off, 3)),
    };
    if let Some((off, flags)) = word {
        (l.sk_cgroup, l.sk_cgroup_flags, l.cgroup_kn, l.kernfs_id) = (off, flags, kn, id);
    }
}

fn field(fmt: &Format, tp: &str, name: &str, size: u32) -> Result<u32, String> {
    match fmt.field(name) {
        Some(f) if f.size == size => Ok(f.offset),
        Some(f) => Err(format!("{tp}: field {name} is {} bytes, expected {size}", f.size)),
        None => Err(format!("{tp}: no field {name}")),
    }
}

/// A tracepoint whose prototype is `(struct sock *, int, int)` or `(struct sock *)`, as a
/// `tp_btf` program (`program`) and, should that not load, a raw tracepoint (`raw_<program>`).
fn sock_tp(
    btf: &Btf,
    name: &'static str,
    ints: usize,
    program: &'static str,
    raw_program: &'static str,
) -> Vec<Candidate> {
    match raw_sock_tp(btf, name, ints, raw_program) {
        Ok(raw) => vec![
            candidate(Family::TracePoint, Ok(Hook::new(program, Attach::BtfTracePoint { name }))),
            candidate(Family::TracePoint, Ok(raw)),
        ],
        Err(e) => vec![candidate(Family::TracePoint, Err(e))],
    }
}

/// A raw tracepoint whose prototype is `(struct sock *, int, int)` or `(struct sock *)`.
fn raw_sock_tp(
    btf: &Btf,
    name: &'static str,
    ints: usize,
    program: &'static str,
) -> Result<Hook, String> {
    let params = btf.tracepoint_params(name).map_err(|e| e.to_string())?;
    let ok = params.len() == 1 + ints
        && btf.is_ptr_to_struct(&params[0], "sock")
        && params[1..].iter().all(|t| t.kind == Kind::Int && t.size_or_type == 4);
    if !ok {
        return Err(format!("{name}: prototype is not (struct sock *{})", ", int".repeat(ints)));
    }
    Ok(Hook::new(program, Attach::RawTracePoint { name }))
}

/// `tcp_send_reset`'s prototype: `(struct sock *, struct sk_buff *)`, and since Linux 6.10 a
/// third `enum sk_rst_reason`; returns the index of the reason argument or ABSENT.
fn send_reset_tp(btf: &Btf) -> Result<u32, String> {
    let params = btf.tracepoint_params("tcp_send_reset").map_err(|e| e.to_string())?;
    let ok = (params.len() == 2 || params.len() == 3)
        && btf.is_ptr_to_struct(&params[0], "sock")
        && btf.is_ptr_to_struct(&params[1], "sk_buff")
        && params
            .get(2)
            .is_none_or(|t| matches!(t.kind, Kind::Enum | Kind::Int) && t.size_or_type == 4);
    if !ok {
        return Err("tcp_send_reset: prototype is not (struct sock *, struct sk_buff *[, enum sk_rst_reason])".into());
    }
    Ok(if params.len() == 3 { 2 } else { ABSENT })
}

/// `tcp_retransmit_synack` as a raw tracepoint, if its prototype is
/// `(const struct sock *, const struct request_sock *)`.
fn retransmit_synack_tp(btf: &Btf) -> Result<Hook, String> {
    let name = "tcp_retransmit_synack";
    let params = btf.tracepoint_params(name).map_err(|e| e.to_string())?;
    let ok = params.len() == 2
        && btf.is_ptr_to_struct(&params[0], "sock")
        && btf.is_ptr_to_struct(&params[1], "request_sock");
    if !ok {
        return Err(format!("{name}: prototype is not (struct sock *, struct request_sock *)"));
    }
    Ok(Hook::new(P::TCP_RETRANSMIT_SYNACK, Attach::RawTracePoint { name }))
}

/// Whether the kernel has the BPF helper `name` (`BPF_FUNC_<name>` in its BTF's `enum
/// bpf_func_id`, the list of helpers it implements).
fn has_helper(btf: &Btf, name: &str) -> bool {
    let want = format!("BPF_FUNC_{name}");
    btf.enum_values("bpf_func_id").is_some_and(|v| v.iter().any(|(_, n)| *n == want))
}

/// fexit on `function` if BTF describes it (loading can still fail: then the next candidate):
/// `program` reads the return value with `bpf_get_func_ret` (5.17+); on a kernel without that
/// helper, `ctx_program` reads it from the context right after the arguments, compiled for a
/// prototype of `ctx_args` parameters (the verifier allows only that offset).
fn fexit(
    btf: &Btf,
    function: &'static str,
    program: &'static str,
    (ctx_program, ctx_args): (&'static str, u8),
) -> Result<Hook, String> {
    let params =
        btf.func_params(function).ok_or_else(|| format!("fexit: {function} not in kernel BTF"))?;
    if has_helper(btf, "get_func_ret") {
        return Ok(Hook::new(program, Attach::FExit { function, ret_after_args: None }));
    }
    if params.len() != usize::from(ctx_args) {
        return Err(format!(
            "fexit: no bpf_get_func_ret in this kernel, and {function} has {} parameters where tcperr reads the return value after {ctx_args}",
            params.len()
        ));
    }
    Ok(Hook::new(ctx_program, Attach::FExit { function, ret_after_args: Some(ctx_args) }))
}

/// fentry on `function` if BTF describes it.
fn fentry(btf: &Btf, function: &'static str, program: &'static str) -> Result<Hook, String> {
    btf.func_params(function).ok_or_else(|| format!("fentry: {function} not in kernel BTF"))?;
    Ok(Hook::new(program, Attach::FEntry { function }))
}

/// The kprobe PMU, or why kprobes cannot be used. Every kernel tcperr can trace (5.8+) creates
/// kprobes through it (4.17+), without tracefs.
fn kprobes() -> Result<(), String> {
    if !Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        return Err("kprobe: kernel built without kprobes (no kprobe PMU)".into());
    }
    Ok(())
}

/// A kprobe/kretprobe pair on `function` if the kernel has kprobes.
fn kprobe_pair(
    function: &'static str,
    program: &'static str,
    ret_program: &'static str,
) -> Result<Hook, String> {
    kprobes()?;
    Ok(Hook { program, ret_program: Some(ret_program), attach: Attach::KProbePair { function } })
}

/// Probes the kernel with `btf`, and with `tracefs` for the hooks that need it.
pub fn plan(tracefs: &Tracefs, btf: &Btf) -> Result<Plan> {
    let mut layout = KernelLayout::UNSET;
    sock_layout(btf, &mut layout).context("reading struct sock from kernel BTF")?;
    layout.recvmsg_flags_arg = btf
        .func_params("tcp_recvmsg")
        .and_then(|p| p.iter().position(|n| n == "flags"))
        .map_or(ABSENT, |i| i as u32);
    let mut rst_reasons = Default::default();
    let choices = Source::ALL
        .into_iter()
        .map(|source| {
            let candidates = match source {
                Source::RstReceived => sock_tp(
                    btf,
                    "tcp_receive_reset",
                    0,
                    P::TCP_RECEIVE_RESET,
                    P::RAW_TCP_RECEIVE_RESET,
                ),
                Source::RstSent => rst_sent(btf, &mut layout, &mut rst_reasons),
                Source::SendError => socket_call(btf, Call::Send),
                Source::RecvResult => socket_call(btf, Call::Recv),
                Source::StateChange => sock_tp(
                    btf,
                    "inet_sock_set_state",
                    2,
                    P::INET_SOCK_SET_STATE,
                    P::RAW_INET_SOCK_SET_STATE,
                ),
                Source::AcceptQueueFull => accept_queue_full(btf, tracefs, &mut layout),
                Source::Drop => {
                    vec![candidate(Family::TracePoint, crate::drops::hook(btf, &mut layout))]
                }
                Source::SynDropped => {
                    vec![candidate(Family::TracePoint, crate::syn_drops::hook(btf, &mut layout))]
                }
                Source::SocketError => socket_error(btf),
            };
            Choice { source, candidates }
        })
        .collect();
    Ok(Plan { layout, choices, rst_reasons, tracefs: tracefs.outcome() })
}

/// `rst_sent`: the raw tracepoint `tcp_send_reset`, with its reason argument and the reasons'
/// names where the kernel has them.
fn rst_sent(
    btf: &Btf,
    layout: &mut KernelLayout,
    rst_reasons: &mut std::collections::BTreeMap<u64, String>,
) -> Vec<Candidate> {
    vec![candidate(
        Family::TracePoint,
        send_reset_tp(btf).map(|reason_arg| {
            layout.send_reset_reason_arg = reason_arg;
            if reason_arg != ABSENT {
                *rst_reasons = rst_reason_names(btf);
            }
            Hook::new(P::TCP_SEND_RESET, Attach::RawTracePoint { name: "tcp_send_reset" })
        }),
    )]
}

/// `socket_error`: the tracepoint `inet_sk_error_report` (5.14+), else the entry of
/// `sock_def_error_report`, the `sk->sk_error_report` callback of every TCP socket a program
/// holds, which the kernel called directly where it now calls `sk_error_report()` (fentry, else
/// a kprobe: the callback is reached through a pointer, so it is never inlined).
fn socket_error(btf: &Btf) -> Vec<Candidate> {
    let function = "sock_def_error_report";
    let mut candidates = sock_tp(
        btf,
        "inet_sk_error_report",
        0,
        P::INET_SK_ERROR_REPORT,
        P::RAW_INET_SK_ERROR_REPORT,
    );
    candidates
        .push(candidate(Family::FExit, fentry(btf, function, P::FENTRY_SOCK_DEF_ERROR_REPORT)));
    candidates.push(candidate(
        Family::KProbe,
        kprobes().map(|()| Hook::new(P::KPROBE_SOCK_DEF_ERROR_REPORT, Attach::KProbe { function })),
    ));
    candidates
}

/// The socket calls whose results tcperr traces.
#[derive(Clone, Copy)]
enum Call {
    Send,
    Recv,
}

/// `send_error` or `recv_error/recv_eof`, in the order tcperr prefers the families: fexit on
/// `tcp_{send,recv}msg`, a kprobe pair there, the `sock_{send,recv}_length` tracepoints (6.3+).
fn socket_call(btf: &Btf, call: Call) -> Vec<Candidate> {
    let (function, fexit_program, fexit_ctx, kprobe, kretprobe, tp, tp_program, raw_program) =
        match call {
            Call::Send => (
                "tcp_sendmsg",
                P::FEXIT_TCP_SENDMSG,
                (P::FEXIT_CTX_TCP_SENDMSG, 3),
                P::KPROBE_TCP_SENDMSG,
                P::KRETPROBE_TCP_SENDMSG,
                "sock_send_length",
                P::SOCK_SEND_LENGTH,
                P::RAW_SOCK_SEND_LENGTH,
            ),
            Call::Recv => (
                "tcp_recvmsg",
                P::FEXIT_TCP_RECVMSG,
                (P::FEXIT_CTX_TCP_RECVMSG, 6),
                P::KPROBE_TCP_RECVMSG,
                P::KRETPROBE_TCP_RECVMSG,
                "sock_recv_length",
                P::SOCK_RECV_LENGTH,
                P::RAW_SOCK_RECV_LENGTH,
            ),
        };
    let mut candidates = vec![
        candidate(Family::FExit, fexit(btf, function, fexit_program, fexit_ctx)),
        candidate(Family::KProbe, kprobe_pair(function, kprobe, kretprobe)),
    ];
    candidates.extend(sock_tp(btf, tp, 2, tp_program, raw_program));
    candidates
}

/// `accept_queue_full` (dropped): `tcp_retransmit_synack` as a raw tracepoint, or where BTF
/// lacks its prototype the classic tracepoint, whose field offsets come from tracefs.
fn accept_queue_full(btf: &Btf, tracefs: &Tracefs, layout: &mut KernelLayout) -> Vec<Candidate> {
    let hook = if layout.req_acked_byte == ABSENT {
        Err("inet_request_sock.acked not in kernel BTF".into())
    } else {
        retransmit_synack_tp(btf).or_else(|raw| {
            let tp = "tcp_retransmit_synack";
            let f = tracefs
                .root()
                .and_then(|root| tracefs::read_format(root, "tcp", tp).map_err(|e| e.to_string()))
                .and_then(|f| f.ok_or_else(|| format!("tracepoint tcp:{tp} not in this kernel")))
                .map_err(|e| format!("{raw}; {e}"))?;
            layout.tp_synack_skaddr = field(&f, tp, "skaddr", 8)?;
            layout.tp_synack_req = field(&f, tp, "req", 8)?;
            Ok(Hook::new(
                P::TP_TCP_RETRANSMIT_SYNACK,
                Attach::TracePoint { category: "tcp", name: tp },
            ))
        })
    };
    vec![candidate(Family::TracePoint, hook)]
}

#[cfg(test)]
mod tests {
    use super::rst_reason_name;

    #[test]
    fn rst_reason_names_lose_their_prefix_and_cannot_carry_control_characters() {
        assert_eq!(rst_reason_name("SK_RST_REASON_TCP_ABORT_ON_DATA"), "TCP_ABORT_ON_DATA");
        assert_eq!(rst_reason_name("NOT_SPECIFIED"), "NOT_SPECIFIED");
        assert_eq!(rst_reason_name("SK_RST_REASON_X\x1b[2J\rok"), "X\\u{1b}[2J\\rok");
    }
}
