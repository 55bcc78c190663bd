//! Probing for the hook of SYNs a full accept queue drops (`tcperr-ebpf/src/consume_skb.rs`):
//! `consume_skb` with its caller's address (the tracepoint's `location` argument), the range of
//! `tcp_rcv_state_process` in kernel text to tell a listener's SYN by, and the offsets the
//! program reads. No drop reason serves: `tcp_conn_request()` frees a SYN it drops at a full
//! accept queue as one it answered (docs/kernel-facts.md §2).
use tcperr_common::{ABSENT, KernelLayout, names::program as P};

use crate::{
    btf::{Btf, Kind},
    probe::{Attach, Hook},
};

/// The function whose call of `consume_skb` is a listener done with a SYN.
const SITE: &str = "tcp_rcv_state_process";

/// The hook, with `layout` completed, or why this kernel cannot serve the source.
pub fn hook(btf: &Btf, layout: &mut KernelLayout) -> Result<Hook, String> {
    let params = btf.tracepoint_params("consume_skb").map_err(|e| e.to_string())?;
    let ok = params.len() == 2
        && btf.is_ptr_to_struct(&params[0], "sk_buff")
        && params[1].kind == Kind::Ptr;
    if !ok {
        return Err("consume_skb: prototype is not (struct sk_buff *, void *location): the caller that freed a SYN cannot be told".into());
    }
    for (what, off) in [
        ("sock.sk_ack_backlog", layout.sk_ack_backlog),
        ("sock.sk_max_ack_backlog", layout.sk_max_ack_backlog),
        ("sk_buff.head", layout.skb_head),
        ("sk_buff.transport_header", layout.skb_transport_header),
        ("net_device.nd_net", layout.netdev_net),
        ("net.ns.inum", layout.net_ns_inum),
        ("sock.__sk_common.skc_net", layout.sk_net),
    ] {
        if off == ABSENT {
            return Err(format!("{what} not in kernel BTF"));
        }
    }
    let member = |ty: &str, path: &str, size: u32| -> Result<u32, String> {
        let (off, tid) = btf.member_offset(ty, path).map_err(|e| e.to_string())?;
        match btf.size_of(tid) {
            Some(s) if s == size => Ok(off),
            s => Err(format!(
                "{ty}.{path} is {} bytes in this kernel, tcperr reads {size}",
                s.unwrap_or(0)
            )),
        }
    };
    let refdst = member("sk_buff", "_skb_refdst", 8)?;
    let dev = member("dst_entry", "dev", 8)?;
    let syncookies = member("net", "ipv4.sysctl_tcp_syncookies", 1).unwrap_or(ABSENT);
    let symbols =
        std::fs::read_to_string("/proc/kallsyms").map_err(|e| format!("/proc/kallsyms: {e}"))?;
    let (start, len) = text_range(&symbols, SITE)?;
    layout.skb_refdst = refdst;
    layout.dst_dev = dev;
    layout.net_syncookies = syncookies;
    (layout.syn_site_hi, layout.syn_site_lo) = ((start >> 32) as u32, start as u32);
    layout.syn_site_len = len;
    Ok(Hook::new(P::CONSUME_SKB, Attach::BtfTracePoint { name: "consume_skb" }))
}

/// The address of function `name` in kernel text and its length (up to the next symbol), from
/// the text of /proc/kallsyms.
fn text_range(kallsyms: &str, name: &str) -> Result<(u64, u32), String> {
    let mut start = None;
    let mut addresses = Vec::new();
    for line in kallsyms.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(addr), Some(ty), Some(sym)) = (f.next(), f.next(), f.next()) else { continue };
        let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
        if f.next().is_some() {
            continue; // a module's symbol: "[module]" follows
        }
        addresses.push(addr);
        if sym == name && matches!(ty, "T" | "t") {
            start = Some(addr);
        }
    }
    let start = start.ok_or_else(|| format!("{name} not in /proc/kallsyms"))?;
    if start == 0 {
        return Err(
            "/proc/kallsyms shows no addresses (kernel.kptr_restrict, or no CAP_SYSLOG)".into()
        );
    }
    let end = addresses
        .into_iter()
        .filter(|&a| a > start)
        .min()
        .ok_or_else(|| format!("{name}: no symbol follows it in /proc/kallsyms"))?;
    u32::try_from(end - start)
        .map(|len| (start, len))
        .map_err(|_| format!("{name}: implausible length in /proc/kallsyms"))
}

#[cfg(test)]
mod tests {
    use super::text_range;

    #[test]
    fn a_function_spans_up_to_the_next_symbol_and_hidden_addresses_are_refused() {
        let syms = "ffffffff82020240 T tcp_rcv_state_process\nffffffff82020000 t before\nffffffff82021880 T tcp_conn_request\nffffffffc0000000 t x [mod]\n";
        assert_eq!(text_range(syms, "tcp_rcv_state_process"), Ok((0xffff_ffff_8202_0240, 0x1640)));
        let hidden =
            "0000000000000000 T tcp_rcv_state_process\n0000000000000000 T tcp_conn_request\n";
        assert!(text_range(hidden, "tcp_rcv_state_process").unwrap_err().contains("kptr_restrict"));
        assert!(text_range(syms, "nothing").is_err());
    }
}
