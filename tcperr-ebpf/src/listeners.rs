//! Every listening TCP socket by network namespace and port, learned as it moves to LISTEN
//! (`inet_sock_set_state.rs`) and forgotten as it leaves it: the SYN path (`consume_skb.rs`)
//! has the segment, not the listener that handled it.
use aya_ebpf::{macros::map, maps::LruHashMap};
use tcperr_common::tcp::{IPPROTO_TCP, state};

use crate::{layout::layout, sock::SockMem};

/// `(netns inode << 16) | port` → the listener's `struct sock` address. LRU: a host with more
/// listeners than this forgets the least recently used, never fails an insert.
#[map]
static LISTENERS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(8192, 0);

#[inline(always)]
fn key(netns: u32, port: u16) -> u64 {
    (u64::from(netns) << 16) | u64::from(port)
}

/// Notes `sk` moving from `old` to `new` (only moves to and from LISTEN read anything).
#[inline(always)]
pub fn note_listener<M: SockMem>(sk: u64, old: u8, new: u8) {
    if new != state::LISTEN && old != state::LISTEN {
        return;
    }
    if M::load::<u16>(sk, layout!(sk_protocol)) != IPPROTO_TCP {
        return;
    }
    let port: u16 = M::load(sk, layout!(sk_num));
    let net: u64 = M::load(sk, layout!(sk_net));
    let netns: u32 = if net == 0 { 0 } else { M::load(net, layout!(net_ns_inum)) };
    let k = key(netns, port);
    if new == state::LISTEN {
        let _ = LISTENERS.insert(&k, &sk, 0);
    } else if listener_of(netns, port) == Some(sk) {
        let _ = LISTENERS.remove(&k);
    }
}

/// The listener on `port` in namespace `netns`, if one is known.
#[inline(always)]
pub fn listener_of(netns: u32, port: u16) -> Option<u64> {
    // SAFETY: a value of this map, read at once.
    LISTENERS.get_ptr(&key(netns, port)).map(|v| unsafe { *v })
}
