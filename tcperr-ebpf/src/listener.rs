//! A listener whose accept queue is full: the record both hooks that see an overflow emit
//! (`tcp_retransmit_synack.rs`: the final ACK dropped; `tcp_send_reset.rs`: the client reset).
use tcperr_common::AcceptQueueFull;

use crate::{
    emit::header,
    layout::layout,
    sock::{Head, read},
};

/// An [`AcceptQueueFull`] for listener `sk` about connection `sock`.
#[inline(always)]
pub fn overflow(sk: u64, mut sock: tcperr_common::SockInfo, action: u32) -> AcceptQueueFull {
    sock.state = tcperr_common::tcp::state::LISTEN;
    if sock.netns == 0 {
        // A segment's tuple takes its namespace from the device it came in on, which a segment
        // answered later (from the listener's backlog) no longer has: the listener's is the same.
        sock.netns = read(read::<u64>(sk, layout!(sk_net)), layout!(net_ns_inum));
    }
    AcceptQueueFull {
        header: header::<AcceptQueueFull, Head>(sk),
        sock,
        backlog: read(sk, layout!(sk_max_ack_backlog)),
        queued: read(sk, layout!(sk_ack_backlog)),
        action,
        syncookies: tcperr_common::ABSENT,
    }
}

/// Whether listener `sk`'s accept queue is full (`sk_acceptq_is_full`).
#[inline(always)]
pub fn accept_queue_full(sk: u64) -> bool {
    read::<u32>(sk, layout!(sk_ack_backlog)) > read::<u32>(sk, layout!(sk_max_ack_backlog))
}
