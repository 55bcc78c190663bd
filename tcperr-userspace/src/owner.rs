//! Which process owns a socket. Hooks in the owner's context (send/recv results, connect, close)
//! name it directly; events raised in softirq (RST receipt, most state changes) take the owner
//! learned earlier for the same socket, else the process holding the socket's inode in
//! `/proc/*/fd` (sockets opened before tracing started, accepted ones: `proc_sockets.rs`). A
//! record raised while the running task held the socket's lock (inside its close(), whose fd is
//! already gone) names that task.
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub pid: u32,
    /// The thread, when the owner was seen in its own context.
    pub tid: Option<u32>,
    pub comm: Comm,
    /// Its cgroup v2 id (low 32 bits) where the kernel side saw it in its own context; 0 unknown.
    #[serde(skip)]
    pub cgroup: u32,
}

/// A task name as the kernel keeps it (at most 15 bytes), held inline: every event carries one,
/// and a heap string each was a measurable share of the RST-storm cost.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Comm {
    bytes: [u8; 16],
    len: u8,
}

impl Comm {
    /// From `bpf_get_current_comm()`'s NUL-padded bytes; bytes that are not UTF-8 become `?`.
    pub fn from_kernel(raw: &[u8; 16]) -> Self {
        // The first NUL, all 16 bytes tested at once: in a word minus 0x01 per byte, the lowest
        // byte whose top bit turns on and was off is the first zero byte (a borrow only runs
        // upwards from one). This runs for every record of an RST storm.
        let word = u128::from_le_bytes(*raw);
        let (ones, tops) = (u128::from_le_bytes([0x01; 16]), u128::from_le_bytes([0x80; 16]));
        let zeros = word.wrapping_sub(ones) & !word & tops;
        let len = if zeros == 0 { 16 } else { zeros.trailing_zeros() as usize / 8 };
        // Zeroes past the name: a name loaded from the task (not by bpf_get_current_comm) keeps
        // whatever a longer earlier name left there, and equal names must compare equal.
        let kept = if len == 16 { word } else { word & ((1u128 << (len * 8)) - 1) };
        let mut bytes = kept.to_le_bytes();
        // (task names are ASCII but for the rare exception: one test of all 16 bytes first)
        let ascii = kept & tops == 0;
        if !ascii && std::str::from_utf8(&bytes[..len]).is_err() {
            bytes[..len].iter_mut().filter(|b| !b.is_ascii()).for_each(|b| *b = b'?');
        }
        Self { bytes, len: len as u8 }
    }

    /// From `/proc/<pid>/comm` (cut to 16 bytes on a character boundary).
    pub fn new(s: &str) -> Self {
        let mut end = s.len().min(16);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0; 16];
        bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        Self { bytes, len: end as u8 }
    }

    pub fn as_str(&self) -> &str {
        // Valid UTF-8 by construction (both constructors).
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }

    /// The name with control characters escaped ([`escape`]).
    pub fn escaped(&self) -> String {
        escape(self.as_str())
    }
}

/// Escapes control characters so that a hostile task name cannot forge output.
pub fn escape(s: &str) -> String {
    s.chars().flat_map(char::escape_default).collect()
}

impl std::fmt::Display for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Comm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// How the owner of an event was found (JSON field `owner_from`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerSource {
    /// The event ran in the owner's own context: its call, or while it held the socket's lock.
    Context,
    /// Learned from an earlier event of the same socket.
    Socket,
    /// Found in /proc/<pid>/fd by socket inode.
    Proc,
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &[u8]) -> [u8; 16] {
        let mut r = [0; 16];
        r[..s.len()].copy_from_slice(s);
        r
    }

    #[test]
    fn a_kernel_task_name_ends_at_its_first_nul() {
        assert_eq!(Comm::from_kernel(&raw(b"nginx")).as_str(), "nginx");
        assert_eq!(Comm::from_kernel(&raw(b"0123456789abcdef")).as_str(), "0123456789abcdef");
        assert_eq!(Comm::from_kernel(&raw(b"")).as_str(), "");
    }

    #[test]
    fn a_kernel_task_name_ends_at_its_first_nul_whatever_surrounds_it() {
        // Bytes next to a NUL that a word-wise search could mistake for one (0x01, 0x80, 0xff).
        for first_nul in 0..=16 {
            for fill in [0x01, 0x7f, 0x80, 0xff, b'a'] {
                let mut r = [fill; 16];
                if first_nul < 16 {
                    r[first_nul] = 0;
                    r[first_nul + 1..].fill(if fill == b'a' { 0 } else { 1 });
                }
                assert_eq!(Comm::from_kernel(&r).len as usize, first_nul, "{r:x?}");
            }
        }
    }

    #[test]
    fn control_characters_in_names_are_escaped() {
        assert_eq!(escape("evil\n\x1b[31m"), "evil\\n\\u{1b}[31m");
        assert_eq!(escape("nginx"), "nginx");
    }

    #[test]
    fn names_equal_up_to_their_nul_are_equal() {
        // A task renamed from a longer name keeps the old bytes past the new NUL.
        assert_eq!(Comm::from_kernel(b"ab\0gername\0\0\0\0\0\0"), Comm::from_kernel(&raw(b"ab")));
    }

    #[test]
    fn a_kernel_task_name_keeps_utf8_and_marks_bytes_that_are_not() {
        assert_eq!(Comm::from_kernel(&raw("wörker".as_bytes())).as_str(), "wörker");
        assert_eq!(Comm::from_kernel(&raw(b"bad\xff\xfename")).as_str(), "bad??name");
        // cut inside a character by the kernel's 16 bytes
        let cut = raw(&"aaaaaaaaaaaaaaaö".as_bytes()[..16]);
        assert_eq!(Comm::from_kernel(&cut).as_str(), "aaaaaaaaaaaaaaa?");
    }
}
