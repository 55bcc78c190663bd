//! Reading a `struct sock` at the offsets in [`crate::layout`].
use core::{ffi::c_void, mem::MaybeUninit};

use aya_ebpf::helpers::{bpf_get_current_cgroup_id, generated};
use tcperr_common::{
    ABSENT, SockInfo,
    tcp::{AF_INET, AF_INET6, IPPROTO_TCP, state},
};

use crate::layout::layout;

/// Reads a `T` at `base + off`: zero if the offset is absent or the read faults (the helper
/// fills its destination with zeroes when it fails). `T` is a plain integer or array of them.
///
/// No branch on the helper's result and none on `base` (a null `base` faults like any bad
/// address): each branch whose two sides leave different values behind (zero or unknown)
/// doubles the paths the verifier walks, and 5.10's and 6.1's verifiers could not merge them —
/// a program with a dozen such reads (`stakes.rs` on a kretprobe) hit their 1M-instruction limit.
#[inline(always)]
pub fn read<T: Default>(base: u64, off: u32) -> T {
    if off == ABSENT {
        return T::default();
    }
    let mut value = MaybeUninit::<T>::uninit();
    // SAFETY: the helper validates the source address and writes all of `value`, zeroes on a
    // fault; every `T` read here is valid as any bit pattern, zero included.
    // (no diagnostic here: its call would cost programs that use this stack they do not have,
    // see `emit::emit_noted`)
    unsafe {
        generated::bpf_probe_read_kernel(
            value.as_mut_ptr() as *mut c_void,
            size_of::<T>() as u32,
            (base + off as u64) as *const c_void,
        );
        value.assume_init()
    }
}

/// The address of a tracepoint's record, for [`read`] at the offsets of its `format` file.
#[inline(always)]
pub fn ctx_addr(ctx: &aya_ebpf::programs::TracePointContext) -> u64 {
    use aya_ebpf::EbpfContext as _;
    ctx.as_ptr() as u64
}

/// Reads a `T` at `base + off` with a plain load, or `T::default()` if the offset is absent.
/// Only for BTF-typed pointers (a `tp_btf` program's arguments and what is loaded through them):
/// the verifier checks the offset against the kernel's BTF and makes the load fault-tolerant (a
/// bad address reads as zero). No helper call: a few instructions where
/// `bpf_probe_read_kernel` costs tens of nanoseconds.
#[inline(always)]
pub fn direct<T: Default + Copy>(base: u64, off: u32) -> T {
    if off == ABSENT {
        return T::default();
    }
    // SAFETY: see above; volatile so that adjacent fields are not merged into one wider load
    // that no BTF member covers.
    unsafe { core::ptr::read_volatile((base + off as u64) as *const T) }
}

/// How a program reads a `struct sock` and what hangs off it, and the current task's name:
/// [`Head`] (copies by `bpf_probe_read_kernel` and helpers, for raw tracepoints and kprobes,
/// whose arguments are plain numbers to the verifier) or [`Direct`] (loads through BTF-typed
/// pointers, for `tp_btf` and fexit).
pub trait SockMem: Sized {
    /// Whether this is [`Direct`].
    const DIRECT: bool;
    /// Prepares reading `sk`.
    fn of(sk: u64) -> Self;
    /// The field at `off` of `sk` (the socket [`Self::of`] was given).
    fn field<T: Default + Copy>(&self, sk: u64, off: u32) -> T;
    /// A field of `sk` read on its own, without [`Self::of`] (or of a pointer loaded from it).
    fn load<T: Default + Copy>(sk: u64, off: u32) -> T;

    /// The inode number of `sk`'s socket (0: none), from the inode that follows `struct
    /// socket` in its `struct socket_alloc`.
    #[inline(always)]
    fn ino(sk: u64) -> u64 {
        read(Self::load::<u64>(sk, layout!(sk_socket)), layout!(socket_ino))
    }

    /// The current task's name (NUL-terminated unless 16 bytes long).
    #[inline(always)]
    fn current_comm() -> [u8; 16] {
        crate::emit::current_comm()
    }

    /// `inet_sport` of `sk` (network order), past `struct sock` in `struct inet_sock`.
    #[inline(always)]
    fn sport(sk: u64) -> u16 {
        read(sk, layout!(sk_sport))
    }
}

/// Loads through a BTF-typed socket pointer ([`direct`]).
pub struct Direct;

impl SockMem for Direct {
    const DIRECT: bool = true;

    #[inline(always)]
    fn of(_sk: u64) -> Self {
        Direct
    }

    #[inline(always)]
    fn field<T: Default + Copy>(&self, sk: u64, off: u32) -> T {
        direct(sk, off)
    }

    #[inline(always)]
    fn load<T: Default + Copy>(sk: u64, off: u32) -> T {
        direct(sk, off)
    }

    /// The same inode reached by loads alone (socket → file → inode): no helper call. A socket
    /// without a file (the kernel's own) is read as [`SockMem::ino`] does.
    #[inline(always)]
    fn ino(sk: u64) -> u64 {
        let socket: u64 = direct(sk, layout!(sk_socket));
        if socket == 0 {
            return 0;
        }
        let file: u64 = direct(socket, layout!(socket_file));
        if file == 0 {
            return read(socket, layout!(socket_ino));
        }
        direct(direct::<u64>(file, layout!(file_inode)), layout!(inode_ino))
    }

    /// Two loads from the task (BTF-typed): `bpf_get_current_comm` copies it with a string
    /// function, which cost 50-80 ns a record in RST storms. The bytes after the name's NUL are
    /// whatever the kernel left there (userspace reads up to the NUL).
    #[inline(always)]
    fn current_comm() -> [u8; 16] {
        let off = layout!(task_comm);
        if off == ABSENT {
            return crate::emit::current_comm();
        }
        // SAFETY: a helper without arguments; its result is a BTF-typed pointer to the task.
        let task = unsafe { generated::bpf_get_current_task_btf() } as u64;
        let words: [u64; 2] = [direct(task, off), direct(task, off + 8)];
        // SAFETY: same size, any bit pattern is valid.
        unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>(words) }
    }

    /// A load through the socket as a `tcp_sock` (a helper that checks it is one, and no copy).
    #[inline(always)]
    fn sport(sk: u64) -> u16 {
        let off = layout!(tcp_sock_sport);
        if off == ABSENT {
            return read(sk, layout!(sk_sport));
        }
        // SAFETY: the helper takes the BTF-typed socket and returns it as a tcp_sock, or NULL.
        let tp = unsafe { generated::bpf_skc_to_tcp_sock(sk as *mut c_void) } as u64;
        if tp == 0 { 0 } else { direct(tp, off) }
    }
}

/// Whether `sk`, whose family is `family`, is a TCP socket over IPv4 or IPv6.
#[inline(always)]
fn is_tcp_of<M: SockMem>(sk: u64, family: u16) -> bool {
    (family == AF_INET || family == AF_INET6)
        && M::load::<u16>(sk, layout!(sk_protocol)) == IPPROTO_TCP
}

/// Whether `sk` is a TCP socket over IPv4 or IPv6.
#[inline(always)]
pub fn is_tcp<M: SockMem>(sk: u64) -> bool {
    is_tcp_of::<M>(sk, M::load(sk, layout!(sk_family)))
}

/// [`sock_info`] of `sk` if it is a TCP socket over IPv4 or IPv6 (for a record that is sent
/// anyway when it is: the family comes with the head, one read fewer than [`is_tcp`] first).
#[inline(always)]
pub fn tcp_sock_info<M: SockMem>(sk: u64) -> Option<SockInfo> {
    let info = sock_info::<M>(sk);
    is_tcp_of::<M>(sk, info.family).then_some(info)
}

/// 8-byte words of `struct sock_common` read in one go by [`sock_info`]: on x86-64 everything
/// from `skc_daddr` to `skc_cookie` (bytes 0..96). A field the running kernel places further out,
/// or at an offset its type's alignment does not divide, is read on its own.
const HEAD_WORDS: usize = 12;

/// The start of `struct sock_common`, copied once; fields are taken from it at the offsets in
/// [`crate::layout`] (constants to the verifier, so each access is a fixed stack offset, and
/// aligned: a 16-byte address is two 8-byte loads, not sixteen byte loads).
pub struct Head([u64; HEAD_WORDS]);

impl SockMem for Head {
    const DIRECT: bool = false;

    #[inline(always)]
    fn of(sk: u64) -> Self {
        let mut head = MaybeUninit::<[u64; HEAD_WORDS]>::uninit();
        // SAFETY: the helper writes all of `head` (zeroes on a fault), so it is initialised after.
        unsafe {
            generated::bpf_probe_read_kernel(
                head.as_mut_ptr() as *mut c_void,
                size_of::<[u64; HEAD_WORDS]>() as u32,
                sk as *const c_void,
            );
            Head(head.assume_init())
        }
    }

    #[inline(always)]
    fn load<T: Default + Copy>(sk: u64, off: u32) -> T {
        read(sk, off)
    }

    #[inline(always)]
    fn field<T: Default + Copy>(&self, sk: u64, off: u32) -> T {
        if off == ABSENT
            || off as usize + size_of::<T>() > size_of::<[u64; HEAD_WORDS]>()
            || !(off as usize).is_multiple_of(align_of::<T>())
        {
            return read(sk, off);
        }
        // SAFETY: in bounds and aligned (checked above).
        unsafe { *((self.0.as_ptr() as *const u8).add(off as usize) as *const T) }
    }
}

/// An address copied as whole words; the same bytes as the `[u8; N]` it stands for.
#[inline(always)]
pub fn v6(words: [u64; 2]) -> [u8; 16] {
    // SAFETY: same size, any bit pattern is valid.
    unsafe { core::mem::transmute(words) }
}

/// Identity, 4-tuple and state of `sk`: with [`Head`], one copy of the `sock_common` head, then
/// the inode behind `sk_socket` (two more reads); with [`Direct`], loads only. A TIME_WAIT or
/// NEW_SYN_RECV "socket" is a smaller structure that shares only `struct sock_common`: nothing
/// past it is read.
#[inline(always)]
pub fn sock_info<M: SockMem>(sk: u64) -> SockInfo {
    sock_info_of::<M>(sk, true)
}

/// As [`sock_info`]; `may_have_port` false for a socket that has no local port yet (connect()
/// picks it after the move to SYN_SENT), which spares a read.
#[inline(always)]
pub fn sock_info_of<M: SockMem>(sk: u64, may_have_port: bool) -> SockInfo {
    let head = M::of(sk);
    let family: u16 = head.field(sk, layout!(sk_family));
    let state: u8 = head.field(sk, layout!(sk_state));
    let full = !matches!(state, state::TIME_WAIT | state::NEW_SYN_RECV);
    let mut lport: u16 = head.field(sk, layout!(sk_num));
    if lport == 0 && full && may_have_port {
        // skc_num is cleared when the socket leaves the hash tables (CLOSE); inet_sport is not.
        lport = u16::from_be(M::sport(sk));
    }
    let (laddr, raddr) = if family == AF_INET6 {
        (v6(head.field(sk, layout!(sk_v6_rcv_saddr))), v6(head.field(sk, layout!(sk_v6_daddr))))
    } else {
        // IPv4 in the first 4 bytes (network order as in memory), the rest zero.
        let l: u32 = head.field(sk, layout!(sk_rcv_saddr));
        let r: u32 = head.field(sk, layout!(sk_daddr));
        (v6([l as u64, 0]), v6([r as u64, 0]))
    };
    let ino = if full { M::ino(sk) } else { 0 };
    let locked = full && M::load::<i32>(sk, layout!(sk_lock_owned)) != 0;
    let cgroup = if locked {
        // SAFETY: a helper without arguments.
        unsafe { bpf_get_current_cgroup_id() as u32 }
    } else if full {
        cgroup_id::<M>(sk)
    } else {
        0
    };
    let net: u64 = head.field(sk, layout!(sk_net));
    let netns = if net == 0 { 0 } else { M::load::<u32>(net, layout!(net_ns_inum)) };
    // (a literal of every field: `SockInfo::ZERO` first became a call to a byte-wise memset)
    SockInfo {
        cookie: head.field(sk, layout!(sk_cookie)),
        ino,
        family,
        lport,
        rport: u16::from_be(head.field(sk, layout!(sk_dport))),
        state,
        locked: locked as u8,
        netns,
        cgroup,
        laddr,
        raddr,
    }
}

/// The cgroup v2 id of `sk`'s own cgroup (`sk_cgrp_data` → `cgroup` → `kn` → `id`), 0 where it
/// cannot be read: the kernel has no such data, or (before 5.15) the word that holds the pointer
/// holds cgroup v1 data instead. Loads where the socket is BTF-typed and the pointer a member of
/// its own; copies otherwise (the packed word is a plain integer to the verifier).
#[inline(always)]
fn cgroup_id<M: SockMem>(sk: u64) -> u32 {
    let off = layout!(sk_cgroup);
    if off == ABSENT {
        return 0;
    }
    let flags = layout!(sk_cgroup_flags) as u64;
    if M::DIRECT && flags == 0 {
        let cgroup: u64 = direct(sk, off);
        if cgroup == 0 {
            return 0;
        }
        let kn: u64 = direct(cgroup, layout!(cgroup_kn));
        if kn == 0 {
            return 0;
        }
        return direct::<u64>(kn, layout!(kernfs_id)) as u32;
    }
    let word: u64 = read(sk, off);
    if word == 0 || word & flags != 0 {
        return 0;
    }
    read::<u64>(read::<u64>(word, layout!(cgroup_kn)), layout!(kernfs_id)) as u32
}
