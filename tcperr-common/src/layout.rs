//! Offsets the programs need, read by userspace from the running kernel (tracepoint `format`
//! files and `/sys/kernel/btf/vmlinux`) and handed to the programs as a read-only global before
//! load. Nothing here is a constant of one kernel.

/// Marks an offset or value the running kernel does not have.
pub const ABSENT: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    // --- struct sock (byte offsets from the start of struct sock) ---
    pub sk_state: u32,
    pub sk_family: u32,
    /// `skc_num`: local port, host order.
    pub sk_num: u32,
    /// `inet_sock.inet_sport`: local port, network order (kept after CLOSE).
    pub sk_sport: u32,
    /// `skc_dport`: remote port, network order.
    pub sk_dport: u32,
    pub sk_daddr: u32,
    pub sk_rcv_saddr: u32,
    /// ABSENT on kernels without IPv6.
    pub sk_v6_daddr: u32,
    pub sk_v6_rcv_saddr: u32,
    pub sk_cookie: u32,
    /// `skc_net.net` (a `struct net *`) and that struct's `ns.inum`: the socket's network
    /// namespace as `/proc/PID/ns/net` names it. ABSENT without network namespaces.
    pub sk_net: u32,
    pub net_ns_inum: u32,
    pub sk_socket: u32,
    /// `sk_protocol`, a u16 since Linux 5.6.
    pub sk_protocol: u32,
    pub sk_err: u32,
    /// `sk_lock.owned` (int): a task holds the socket's lock (`lock_sock()`).
    pub sk_lock_owned: u32,
    /// `sk_ack_backlog` / `sk_max_ack_backlog` (u32): accept queue length and limit.
    pub sk_ack_backlog: u32,
    pub sk_max_ack_backlog: u32,
    /// Byte offset and bit mask of `inet_request_sock.acked`: the final ACK arrived while the
    /// accept queue was full and was dropped.
    pub req_acked_byte: u32,
    pub req_acked_mask: u32,
    /// `inet_connection_sock.icsk_accept_queue.rskq_defer_accept` (u8): a listener with
    /// TCP_DEFER_ACCEPT drops a bare final ACK and marks the connection `acked` too, with room
    /// in its queue.
    pub icsk_defer_accept: u32,
    /// `sk_buff.head` (pointer), `.network_header`, `.transport_header` (u16 offsets from head).
    /// `sk_buff.dev` and `net_device.nd_net.net`: the namespace of a segment with no socket.
    pub skb_dev: u32,
    pub netdev_net: u32,
    pub skb_head: u32,
    pub skb_network_header: u32,
    pub skb_transport_header: u32,
    /// Offset of `vfs_inode.i_ino` from the start of the `struct socket` inside `struct
    /// socket_alloc`.
    pub socket_ino: u32,
    /// `socket.file`, `file.f_inode`, `inode.i_ino`: the same inode number by loads a BTF-typed
    /// program may make (`socket_ino` lies past `struct socket`, where none may go).
    pub socket_file: u32,
    pub file_inode: u32,
    pub inode_ino: u32,
    /// `task_struct.comm`: the task's name, loaded where the task pointer is BTF-typed.
    pub task_comm: u32,
    /// `tcp_sock`'s `inet_sport`, loaded through `bpf_skc_to_tcp_sock()` where the socket
    /// pointer is BTF-typed (`sk_sport` lies past `struct sock`, where no such load may go).
    pub tcp_sock_sport: u32,

    // --- struct tcp_sock (byte offsets from its start, the socket's address): [`crate::Stakes`]
    pub tp_bytes_sent: u32,
    pub tp_bytes_acked: u32,
    pub tp_bytes_received: u32,
    pub tp_write_seq: u32,
    pub tp_snd_una: u32,
    pub tp_rcv_nxt: u32,
    pub tp_copied_seq: u32,
    pub tp_total_retrans: u32,
    pub tp_lsndtime: u32,
    /// `inet_conn.icsk_ack.lrcvtime`.
    pub tp_lrcvtime: u32,

    // --- raw tracepoint arguments ---
    /// Index of `tcp_send_reset`'s `reason` argument (`enum sk_rst_reason`, Linux 6.10+), else
    /// ABSENT.
    pub send_reset_reason_arg: u32,

    // --- tracepoint record fields (byte offsets from the start of the record) ---
    pub tp_synack_skaddr: u32,
    pub tp_synack_req: u32,

    // --- function arguments ---
    /// Index of `flags` among `tcp_recvmsg`'s parameters (4 before Linux 5.19, then 3).
    pub recvmsg_flags_arg: u32,

    // --- SYNs a full accept queue drops (`consume_skb.rs`) ---
    /// `sk_buff._skb_refdst` (the input route, low bit a flag), `dst_entry.dev`: the namespace
    /// of a segment whose `dev` the TCP receive path has cleared.
    pub skb_refdst: u32,
    pub dst_dev: u32,
    /// `net.ipv4.sysctl_tcp_syncookies` (u8).
    pub net_syncookies: u32,
    /// `tcp_rcv_state_process` in kernel text (from /proc/kallsyms): its address (high and low
    /// 32 bits) and length. `consume_skb`'s caller inside it is a listener done with a SYN.
    pub syn_site_hi: u32,
    pub syn_site_lo: u32,
    pub syn_site_len: u32,

    // --- TCP segments the kernel drops (`kfree_skb.rs`) ---
    /// Index of `kfree_skb`'s `reason` argument (Linux 5.17+), of its `rx_sk` (6.13+), else
    /// ABSENT.
    pub kfree_skb_reason_arg: u32,
    pub kfree_skb_rx_sk_arg: u32,
    /// `sk_buff.sk`: the socket a buffer belongs to (the sender's on the way out).
    pub skb_sk: u32,
    /// Bit `r % 32` of word `r / 32`: drop reason `r` is reported (the causes users act on);
    /// reasons from 256 on never are.
    pub drop_reasons: [u32; 8],

    // --- last, so that the offsets before it stay where they were ---
    /// `task_struct.tgid`: the process of a task the fork tracepoint hands over (`-- CMD`).
    pub task_tgid: u32,
    /// `tcp_sock`'s `retrans_stamp` (u32), `inet_conn.icsk_rto` (u32),
    /// `inet_conn.icsk_retransmits` and `inet_conn.icsk_probes_out` (u8): the retransmissions of
    /// a connection whose call failed ([`crate::Stakes`], the error paths only).
    pub tp_retrans_stamp: u32,
    pub tp_icsk_rto: u32,
    pub tp_icsk_retransmits: u32,
    pub tp_icsk_probes_out: u32,

    // --- the socket's cgroup (`sock.rs`), added after `task_tgid` for the same reason ---
    /// `sk_cgrp_data.cgroup` (a `struct cgroup *`, Linux 5.15+), or where the kernel packs
    /// that pointer with flags in one word (`sk_cgrp_data.val`, before 5.15) that word's offset;
    /// ABSENT without `CONFIG_SOCK_CGROUP_DATA`.
    pub sk_cgroup: u32,
    /// The flag bits of the packed word (a set flag: the word holds cgroup v1 data, not the
    /// pointer); 0 where the pointer is a member of its own.
    pub sk_cgroup_flags: u32,
    /// `cgroup.kn` (a `struct kernfs_node *`) and `kernfs_node.id` (u64): the cgroup v2 id
    /// `bpf_get_current_cgroup_id()` returns for a task in that cgroup.
    pub cgroup_kn: u32,
    pub kernfs_id: u32,
}

impl KernelLayout {
    /// All ABSENT: the value compiled into the object, always overridden before load.
    pub const UNSET: Self = Self {
        sk_state: ABSENT,
        sk_family: ABSENT,
        sk_num: ABSENT,
        sk_sport: ABSENT,
        sk_dport: ABSENT,
        sk_daddr: ABSENT,
        sk_rcv_saddr: ABSENT,
        sk_v6_daddr: ABSENT,
        sk_v6_rcv_saddr: ABSENT,
        sk_cookie: ABSENT,
        sk_net: ABSENT,
        net_ns_inum: ABSENT,
        sk_socket: ABSENT,
        sk_protocol: ABSENT,
        sk_err: ABSENT,
        sk_lock_owned: ABSENT,
        sk_ack_backlog: ABSENT,
        sk_max_ack_backlog: ABSENT,
        req_acked_byte: ABSENT,
        req_acked_mask: 0,
        icsk_defer_accept: ABSENT,
        skb_dev: ABSENT,
        netdev_net: ABSENT,
        skb_head: ABSENT,
        skb_network_header: ABSENT,
        skb_transport_header: ABSENT,
        socket_ino: ABSENT,
        socket_file: ABSENT,
        file_inode: ABSENT,
        inode_ino: ABSENT,
        task_comm: ABSENT,
        tcp_sock_sport: ABSENT,
        tp_bytes_sent: ABSENT,
        tp_bytes_acked: ABSENT,
        tp_bytes_received: ABSENT,
        tp_write_seq: ABSENT,
        tp_snd_una: ABSENT,
        tp_rcv_nxt: ABSENT,
        tp_copied_seq: ABSENT,
        tp_total_retrans: ABSENT,
        tp_lsndtime: ABSENT,
        tp_lrcvtime: ABSENT,
        send_reset_reason_arg: ABSENT,
        tp_synack_skaddr: ABSENT,
        tp_synack_req: ABSENT,
        recvmsg_flags_arg: ABSENT,
        skb_refdst: ABSENT,
        dst_dev: ABSENT,
        net_syncookies: ABSENT,
        syn_site_hi: ABSENT,
        syn_site_lo: ABSENT,
        syn_site_len: 0,
        kfree_skb_reason_arg: ABSENT,
        kfree_skb_rx_sk_arg: ABSENT,
        skb_sk: ABSENT,
        drop_reasons: [0; 8],
        task_tgid: ABSENT,
        tp_retrans_stamp: ABSENT,
        tp_icsk_rto: ABSENT,
        tp_icsk_retransmits: ABSENT,
        tp_icsk_probes_out: ABSENT,
        sk_cgroup: ABSENT,
        sk_cgroup_flags: 0,
        cgroup_kn: ABSENT,
        kernfs_id: ABSENT,
    };
}

#[cfg(feature = "user")]
// SAFETY: plain old data: #[repr(C)], only u32 fields, no padding.
unsafe impl aya::Pod for KernelLayout {}
