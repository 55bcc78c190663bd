//! What was at stake on a socket whose call failed ([`Stakes`]): its byte counts, sequence
//! numbers, retransmissions and the times it last sent and received data, from `struct tcp_sock`
//! at the offsets in [`crate::layout`]. Read on the error paths only, never on a call that
//! succeeded.
use core::ffi::c_void;

use aya_ebpf::helpers::generated;
use tcperr_common::{ABSENT, Stakes};

use crate::{
    layout::layout,
    sock::{Direct, Head, SockMem},
};

/// The stakes of TCP socket `sk`, read as `M` reads (a `tcp_sock` field lies past `struct
/// sock`: with [`Direct`], through the socket as a `tcp_sock` from `bpf_skc_to_tcp_sock()`,
/// else copied).
#[inline(always)]
pub fn stakes<M: SockMem>(sk: u64) -> Stakes {
    if M::DIRECT && layout!(tcp_sock_sport) != ABSENT {
        // SAFETY: the helper takes the BTF-typed socket and returns it as a tcp_sock, or NULL.
        let tp = unsafe { generated::bpf_skc_to_tcp_sock(sk as *mut c_void) } as u64;
        if tp == 0 {
            return Stakes::ZERO;
        }
        return stakes_at::<Direct>(tp);
    }
    stakes_at::<Head>(sk)
}

#[inline(always)]
fn stakes_at<M: SockMem>(tp: u64) -> Stakes {
    let at = |off: u32| -> u32 { if off == ABSENT { 0 } else { M::load::<u32>(tp, off) } };
    let at64 = |off: u32| -> u64 { if off == ABSENT { 0 } else { M::load::<u64>(tp, off) } };
    let at8 =
        |off: u32| -> u32 { if off == ABSENT { 0 } else { u32::from(M::load::<u8>(tp, off)) } };
    Stakes {
        bytes_sent: at64(layout!(tp_bytes_sent)),
        bytes_acked: at64(layout!(tp_bytes_acked)),
        bytes_received: at64(layout!(tp_bytes_received)),
        // SAFETY: a helper without arguments.
        jiffies: unsafe { generated::bpf_jiffies64() },
        write_seq: at(layout!(tp_write_seq)),
        snd_una: at(layout!(tp_snd_una)),
        rcv_nxt: at(layout!(tp_rcv_nxt)),
        copied_seq: at(layout!(tp_copied_seq)),
        total_retrans: at(layout!(tp_total_retrans)),
        lsndtime: at(layout!(tp_lsndtime)),
        lrcvtime: at(layout!(tp_lrcvtime)),
        backlog: at(layout!(sk_max_ack_backlog)),
        retrans_stamp: at(layout!(tp_retrans_stamp)),
        rto: at(layout!(tp_icsk_rto)),
        retransmits: at8(layout!(tp_icsk_retransmits)),
        probes_out: at8(layout!(tp_icsk_probes_out)),
    }
}
