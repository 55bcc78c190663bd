//! What a report of an error the kernel set on a socket (`sk->sk_err`) becomes, shared by the
//! hooks of `socket_error` (`inet_sk_error_report.rs`, `sock_def_error_report.rs`), each reading
//! the socket as its context allows ([`SockMem`]).
use tcperr_common::SocketError;

use crate::{
    emit::{emit_in_place, header, write_header},
    held_close::release_held_of,
    last_rst::take_rst,
    layout::layout,
    sock::{SockMem, is_tcp, sock_info},
    stakes::stakes,
};

#[inline(always)]
pub fn socket_error<M: SockMem>(sk: u64) -> i32 {
    // This socket's move to CLOSE, held back for an RST that did not come (tcp_disconnect()
    // reports an error after the RST, and also when it sent none).
    release_held_of(sk);
    if take_rst(sk) {
        return 0; // repeats the RST just reported for this socket on this CPU
    }
    if !is_tcp::<M>(sk) {
        return 0;
    }
    let errno = M::load::<i32>(sk, layout!(sk_err)).unsigned_abs();
    if errno == 0 {
        return 0; // a wake-up without an error (sk_err already collected)
    }
    let header = header::<SocketError, M>(sk);
    // (in place: with the stakes, the record and what this program holds do not fit the stack)
    emit_in_place::<SocketError>(header.ts_ns, |e| {
        // SAFETY: `e` points at a reserved record of this type; every field is written.
        unsafe {
            write_header(&raw mut (*e).header, &header);
            (&raw mut (*e).sock).write(sock_info::<M>(sk));
            (&raw mut (*e).errno).write(errno);
            (&raw mut (*e)._pad).write(0);
            (&raw mut (*e).stakes).write(stakes::<M>(sk));
        }
    });
    0
}
