//! tcperr's kernel side: one file per hook, each emitting its kinds of record
//! (`tcperr_common::event`; `tcp_send_reset` emits two) into the one ring buffer
//! [`emit::EVENTS`].
//!
//! Offsets into `struct sock` and into tracepoint records are never compiled in: userspace reads
//! them from the running kernel and sets [`layout::LAYOUT`] before load.
//!
//! Hot hooks (`sock_send_length`, `sock_recv_length`) fire on every socket send and receive on
//! the machine; they decide from the return value in their first instructions and leave without
//! a helper call when the call succeeded.
#![no_std]
#![no_main]

mod call_result;
mod consume_skb;
mod diag;
mod emit;
mod floor;
mod held_close;
mod inet_sk_error_report;
mod inet_sock_set_state;
mod kfree_skb;
mod last_rst;
mod layout;
mod listener;
mod listeners;
mod listeners_iter;
mod sched_process_fork;
mod skb;
mod sock;
mod sock_def_error_report;
mod sock_recv_length;
mod sock_send_length;
mod socket_error;
mod stakes;
mod tcp_receive_reset;
mod tcp_recvmsg;
mod tcp_retransmit_synack;
mod tcp_send_reset;
mod tcp_sendmsg;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
