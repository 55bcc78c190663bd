//! TCP segments the kernel dropped (`tcperr-ebpf/src/kfree_skb.rs`): probing for the hook, the
//! names of the running kernel's drop reasons (BTF `enum skb_drop_reason`, never a fixed
//! table), and the few causes users act on that they are grouped into. Reasons of no such cause
//! are routine on a healthy host (a closing socket freeing what it had queued, duplicate or old
//! segments, RSTs, checksum and flag noise, drops of unspecified reason): the programs leave
//! them in the kernel, so they cost one compare and are never shown.
use std::{collections::BTreeMap, sync::OnceLock};

use tcperr_common::{ABSENT, KernelLayout, names::program as P};

use crate::{
    btf::{Btf, Kind},
    probe::{Attach, Hook},
};

/// What a user does something about, from the reason's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropCause {
    /// A queue was full: a socket's receive buffer or backlog, a listener's queue, a CPU's.
    QueueOverflow,
    /// No socket for the segment (nothing listens, or the connection is forgotten).
    NoSocket,
    /// A firewall or filter said no: netfilter (nftables, iptables), a socket filter, BPF, tc.
    Filtered,
    /// Memory pressure: TCP's memory limits or an allocation that failed.
    MemoryPressure,
    /// Timestamps (PAWS) or sequence numbers that do not fit the connection.
    PawsOrSequence,
    /// Data outside the receive window (a zero window, past its right edge).
    OutOfWindow,
}

impl DropCause {
    /// The JSON `cause`.
    pub fn name(self) -> &'static str {
        match self {
            Self::QueueOverflow => "queue_overflow",
            Self::NoSocket => "no_socket",
            Self::Filtered => "filtered",
            Self::MemoryPressure => "memory_pressure",
            Self::PawsOrSequence => "paws_or_sequence",
            Self::OutOfWindow => "out_of_window",
        }
    }

    /// The cause class (`cause`) of the `drop` event.
    pub fn cause(self) -> crate::story::Cause {
        use crate::story::Cause;
        match self {
            Self::QueueOverflow => Cause::QueueOverflow,
            Self::NoSocket => Cause::NoSocket,
            Self::Filtered => Cause::Filtered,
            Self::MemoryPressure => Cause::MemoryPressure,
            Self::PawsOrSequence => Cause::PawsOrSequence,
            Self::OutOfWindow => Cause::OutOfWindow,
        }
    }

    /// Whether drops of this cause are traced at all. No socket is not: every one that merits
    /// an answer is already an `rst_sent` (reason NO_SOCKET), and the rest (RSTs and late
    /// segments for connections gone, port scans) is noise at the volume of a scan.
    pub fn traced(self) -> bool {
        self != Self::NoSocket
    }

    /// What it means, for the explanation.
    pub fn words(self) -> &'static str {
        match self {
            Self::QueueOverflow => {
                "a queue was full (the socket's receive buffer or backlog, a listener's queue, a CPU's backlog): the reader or the listener does not keep up"
            }
            Self::NoSocket => {
                "no socket wants it here (nothing listens, or this host forgot the connection)"
            }
            Self::Filtered => {
                "a firewall or filter dropped it (netfilter: nftables/iptables; a socket filter; BPF; tc)"
            }
            Self::MemoryPressure => {
                "TCP or the kernel was out of memory for it (net.ipv4.tcp_mem, or an allocation failed)"
            }
            Self::PawsOrSequence => {
                "its timestamp (PAWS) or sequence numbers do not fit the connection (NAT reusing a 4-tuple, a stale peer, a middlebox rewriting segments)"
            }
            Self::OutOfWindow => {
                "it lies outside the receive window (a zero window: the reader does not read; or past the window's edge)"
            }
        }
    }
}

/// The cause a reason (its name without `SKB_DROP_REASON_`) is grouped into; None: routine.
pub fn cause_of(reason: &str) -> Option<DropCause> {
    use DropCause::*;
    Some(match reason {
        "SOCKET_RCVBUFF"
        | "SOCKET_BACKLOG"
        | "TCP_LISTEN_OVERFLOW"
        | "TCP_OFO_QUEUE_PRUNE"
        | "CPU_BACKLOG" => QueueOverflow,
        "NO_SOCKET" => NoSocket,
        "NETFILTER_DROP" | "SOCKET_FILTER" | "BPF_CGROUP_EGRESS" | "BPF_CGROUP_INGRESS" | "XDP"
        | "TC_INGRESS" | "TC_EGRESS" | "IP_RPFILTER" | "SECURITY_HOOK" | "XFRM_POLICY" => Filtered,
        "PROTO_MEM" | "NOMEM" | "PFMEMALLOC" => MemoryPressure,
        r if r.starts_with("TCP_RFC7323_") => PawsOrSequence,
        "TCP_INVALID_SEQUENCE"
        | "TCP_INVALID_END_SEQUENCE"
        | "TCP_INVALID_ACK_SEQUENCE"
        | "TCP_TOO_OLD_ACK"
        | "TCP_ACK_UNSENT_DATA" => PawsOrSequence,
        "TCP_ZEROWINDOW" | "TCP_OVERWINDOW" | "TCP_OFO_DROP" => OutOfWindow,
        _ => return None,
    })
}

/// The running kernel's drop reasons by value, names without their prefix (set by probing).
static NAMES: OnceLock<BTreeMap<u32, String>> = OnceLock::new();

/// The name of drop reason `value`, as the running kernel calls it.
pub fn reason_name(value: u32) -> Option<&'static str> {
    NAMES.get()?.get(&value).map(String::as_str)
}

/// The hook, with `layout` completed (argument indexes, offsets, the reasons to report), or why
/// this kernel cannot serve the source (then it is off, and `tcperr check` says why).
pub fn hook(btf: &Btf, layout: &mut KernelLayout) -> Result<Hook, String> {
    let params = btf.tracepoint_params("kfree_skb").map_err(|e| e.to_string())?;
    if params.len() < 3 || !btf.is_ptr_to_struct(&params[0], "sk_buff") {
        return Err("kfree_skb: no drop reason argument (struct sk_buff *, void *, enum skb_drop_reason): the kernel does not say why it drops".into());
    }
    if !matches!(params[2].kind, Kind::Enum | Kind::Int) || params[2].size_or_type != 4 {
        return Err("kfree_skb: its third argument is not enum skb_drop_reason".into());
    }
    let rx_sk = params.len() >= 4 && btf.is_ptr_to_struct(&params[3], "sock");
    let values =
        btf.enum_values("skb_drop_reason").ok_or("enum skb_drop_reason not in kernel BTF")?;
    let member = |ty: &str, path: &str| btf.member_offset(ty, path).map(|(o, _)| o);
    let skb_sk = member("sk_buff", "sk").map_err(|e| e.to_string())?;
    for (what, off) in [
        ("sk_buff.head", layout.skb_head),
        ("sk_buff.network_header", layout.skb_network_header),
        ("sk_buff.transport_header", layout.skb_transport_header),
    ] {
        if off == ABSENT {
            return Err(format!("{what} not in kernel BTF"));
        }
    }
    let mut names = BTreeMap::new();
    let mut bits = [0u32; 8];
    for (value, name) in values {
        let name = name.strip_prefix("SKB_DROP_REASON_").unwrap_or(name);
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue; // not the kernel's (a C identifier): never printed
        }
        let Ok(value) = u32::try_from(value) else { continue };
        if value < 256 && cause_of(name).is_some_and(DropCause::traced) {
            bits[(value / 32) as usize] |= 1 << (value % 32);
        }
        names.insert(value, name.to_owned());
    }
    let _ = NAMES.set(names);
    layout.kfree_skb_reason_arg = 2;
    layout.kfree_skb_rx_sk_arg = if rx_sk { 3 } else { ABSENT };
    layout.skb_sk = skb_sk;
    // (the route's device names a segment's namespace where `skb->dev` is cleared)
    if let (Ok(refdst), Ok(dev)) = (member("sk_buff", "_skb_refdst"), member("dst_entry", "dev")) {
        (layout.skb_refdst, layout.dst_dev) = (refdst, dev);
    }
    layout.drop_reasons = bits;
    Ok(Hook::new(P::KFREE_SKB, Attach::BtfTracePoint { name: "kfree_skb" }))
}

#[cfg(test)]
mod tests {
    use super::{DropCause, cause_of};

    #[test]
    fn reasons_users_act_on_have_a_cause_and_routine_ones_none() {
        assert_eq!(cause_of("NETFILTER_DROP"), Some(DropCause::Filtered));
        assert_eq!(cause_of("SOCKET_FILTER"), Some(DropCause::Filtered));
        assert_eq!(cause_of("TCP_LISTEN_OVERFLOW"), Some(DropCause::QueueOverflow));
        assert_eq!(cause_of("TCP_RFC7323_PAWS"), Some(DropCause::PawsOrSequence));
        assert_eq!(cause_of("TCP_ZEROWINDOW"), Some(DropCause::OutOfWindow));
        assert_eq!(cause_of("PROTO_MEM"), Some(DropCause::MemoryPressure));
        assert_eq!(cause_of("NO_SOCKET"), Some(DropCause::NoSocket));
        for routine in ["NOT_SPECIFIED", "SOCKET_CLOSE", "TCP_OLD_DATA", "TCP_RESET", "QUEUE_PURGE"]
        {
            assert_eq!(cause_of(routine), None, "{routine}");
        }
    }
}
