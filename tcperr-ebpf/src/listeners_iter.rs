//! `iter/tcp` → the [`crate::listeners`] map, once at start: every TCP socket of the network
//! namespace the iterator was opened in (userspace opens one in each namespace it finds), of
//! which the listeners are noted as if tcperr had seen them move to LISTEN. Without it a
//! listener that called `listen()` before tcperr started is unknown to `consume_skb.rs`, and the
//! SYNs its full accept queue drops go unreported. Writes nothing to the iterator's output.
use core::ffi::c_void;

use tcperr_common::tcp::state;

use crate::{
    layout::layout,
    listeners::note_listener,
    sock::{Head, read},
};

/// `struct bpf_iter__tcp { struct bpf_iter_meta *meta; struct sock_common *sk_common; uid_t
/// uid; }`: called once per socket (`sk_common` NULL at the end).
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/tcp")]
pub extern "C" fn listeners_iter(ctx: *mut c_void) -> i32 {
    // SAFETY: the context is the iterator's record; its second member is the socket.
    let sk = unsafe { *ctx.cast::<u64>().add(1) };
    if sk == 0 {
        return 0;
    }
    // (only a listener is a full socket here whose fields past sock_common are read; request
    // and TIME_WAIT sockets are sock_common alone)
    if read::<u8>(sk, layout!(sk_state)) == state::LISTEN {
        note_listener::<Head>(sk, state::CLOSE, state::LISTEN);
    }
    0
}
