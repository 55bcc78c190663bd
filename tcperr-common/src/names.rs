//! The names of the eBPF object's programs, maps and globals: the kernel side defines them (a
//! program is named by its function, a map or global by its static), userspace finds them by
//! these constants. A test that loads the object (`tcperr-userspace/tests/lifecycle.rs`) checks
//! that each name is there and that nothing else is.

/// Programs, by the hook file that defines them (`tcperr-ebpf/src/<hook>.rs`).
pub mod program {
    pub const TCP_RECEIVE_RESET: &str = "tcp_receive_reset";
    pub const RAW_TCP_RECEIVE_RESET: &str = "raw_tcp_receive_reset";
    pub const TCP_SEND_RESET: &str = "tcp_send_reset";
    pub const TCP_RETRANSMIT_SYNACK: &str = "tcp_retransmit_synack";
    pub const TP_TCP_RETRANSMIT_SYNACK: &str = "tp_tcp_retransmit_synack";
    pub const INET_SOCK_SET_STATE: &str = "inet_sock_set_state";
    pub const RAW_INET_SOCK_SET_STATE: &str = "raw_inet_sock_set_state";
    pub const INET_SK_ERROR_REPORT: &str = "inet_sk_error_report";
    pub const RAW_INET_SK_ERROR_REPORT: &str = "raw_inet_sk_error_report";
    pub const FENTRY_SOCK_DEF_ERROR_REPORT: &str = "fentry_sock_def_error_report";
    pub const KPROBE_SOCK_DEF_ERROR_REPORT: &str = "kprobe_sock_def_error_report";
    pub const SOCK_SEND_LENGTH: &str = "sock_send_length";
    pub const RAW_SOCK_SEND_LENGTH: &str = "raw_sock_send_length";
    pub const SOCK_RECV_LENGTH: &str = "sock_recv_length";
    pub const RAW_SOCK_RECV_LENGTH: &str = "raw_sock_recv_length";
    pub const FEXIT_TCP_SENDMSG: &str = "fexit_tcp_sendmsg";
    /// fexit reading the return value from its context (kernels without `bpf_get_func_ret`).
    pub const FEXIT_CTX_TCP_SENDMSG: &str = "fexit_ctx_tcp_sendmsg";
    pub const KPROBE_TCP_SENDMSG: &str = "kprobe_tcp_sendmsg";
    pub const KRETPROBE_TCP_SENDMSG: &str = "kretprobe_tcp_sendmsg";
    pub const FEXIT_TCP_RECVMSG: &str = "fexit_tcp_recvmsg";
    pub const FEXIT_CTX_TCP_RECVMSG: &str = "fexit_ctx_tcp_recvmsg";
    pub const KPROBE_TCP_RECVMSG: &str = "kprobe_tcp_recvmsg";
    pub const KRETPROBE_TCP_RECVMSG: &str = "kretprobe_tcp_recvmsg";
    /// SYNs a full accept queue dropped (`consume_skb.rs`).
    pub const CONSUME_SKB: &str = "consume_skb";
    /// TCP segments the kernel dropped, with its reason (`kfree_skb.rs`).
    pub const KFREE_SKB: &str = "kfree_skb";
    /// The benchmark's floor programs (`floor.rs`).
    pub const FLOOR_SOCK_SEND_LENGTH: &str = "floor_sock_send_length";
    pub const FLOOR_SOCK_RECV_LENGTH: &str = "floor_sock_recv_length";
    /// Follows the descendants of `tcperr trace -- CMD` (`sched_process_fork.rs`).
    pub const SCHED_PROCESS_FORK: &str = "sched_process_fork";
    /// Notes the listeners that listened before tcperr started, once at start
    /// (`listeners_iter.rs`).
    pub const LISTENERS_ITER: &str = "listeners_iter";

    pub const ALL: [&str; 29] = [
        TCP_RECEIVE_RESET,
        RAW_TCP_RECEIVE_RESET,
        TCP_SEND_RESET,
        TCP_RETRANSMIT_SYNACK,
        TP_TCP_RETRANSMIT_SYNACK,
        INET_SOCK_SET_STATE,
        RAW_INET_SOCK_SET_STATE,
        INET_SK_ERROR_REPORT,
        RAW_INET_SK_ERROR_REPORT,
        FENTRY_SOCK_DEF_ERROR_REPORT,
        KPROBE_SOCK_DEF_ERROR_REPORT,
        SOCK_SEND_LENGTH,
        RAW_SOCK_SEND_LENGTH,
        SOCK_RECV_LENGTH,
        RAW_SOCK_RECV_LENGTH,
        FEXIT_TCP_SENDMSG,
        FEXIT_CTX_TCP_SENDMSG,
        KPROBE_TCP_SENDMSG,
        KRETPROBE_TCP_SENDMSG,
        FEXIT_TCP_RECVMSG,
        FEXIT_CTX_TCP_RECVMSG,
        KPROBE_TCP_RECVMSG,
        KRETPROBE_TCP_RECVMSG,
        FLOOR_SOCK_SEND_LENGTH,
        FLOOR_SOCK_RECV_LENGTH,
        CONSUME_SKB,
        KFREE_SKB,
        SCHED_PROCESS_FORK,
        LISTENERS_ITER,
    ];
}

/// Maps.
pub mod map {
    /// The ring buffer (`emit.rs`).
    pub const EVENTS: &str = "EVENTS";
    /// Records lost to a full ring buffer, per CPU (`emit.rs`).
    pub const LOST: &str = "LOST";
    /// The held-CLOSE slot, per CPU (`held_close.rs`).
    pub const HELD_CLOSE: &str = "HELD_CLOSE";
    /// Kernel side only: the last RST per CPU (`last_rst.rs`), the last wake-up per CPU
    /// (`emit.rs`), the socket of each thread inside tcp_sendmsg/tcp_recvmsg (kprobe path).
    pub const LAST_RST: &str = "LAST_RST";
    pub const WOKE: &str = "WOKE";
    pub const SENDING: &str = "SENDING";
    pub const RECEIVING: &str = "RECEIVING";
    /// Kernel side only: each listening socket by namespace and port (`listeners.rs`).
    pub const LISTENERS: &str = "LISTENERS";
    /// The processes `tcperr trace -- CMD` follows: the command and its descendants
    /// (`sched_process_fork.rs`).
    pub const FOLLOWED: &str = "FOLLOWED";
    /// aya-log's records: the programs' diagnostics (`diag.rs`), shown with `-vv`.
    pub const AYA_LOGS: &str = "AYA_LOGS";

    pub const ALL: [&str; 10] = [
        EVENTS, LOST, HELD_CLOSE, LAST_RST, WOKE, SENDING, RECEIVING, LISTENERS, FOLLOWED, AYA_LOGS,
    ];
}

/// Read-only globals userspace sets before load.
pub mod global {
    /// The running kernel's offsets ([`crate::KernelLayout`], `layout.rs`).
    pub const LAYOUT: &str = "LAYOUT";
    /// 1: the programs drop every record (the benchmark's reference run, `emit.rs`).
    pub const DISCARD: &str = "DISCARD";
    /// aya-log's level (`diag.rs`): debug with `-vv`, else 0, which leaves the diagnostics dead
    /// code to the verifier.
    pub const AYA_LOG_LEVEL: &str = "AYA_LOG_LEVEL";
}
