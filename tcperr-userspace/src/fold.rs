//! Storm folding. When the same story repeats — same event kind, cause, errno, process and remote
//! address — more than [`FULL_PER_SECOND`] times within a second, the rest of that second's
//! reports are counted instead of printed, and one `repeated` line per story says how many.
//! Counted, never dropped: the summary still counts every one, and `--every` prints each.
//! (Cilium's monitor aggregation does the same for its datapath events.)
use rustc_hash::FxHashMap;

use crate::{
    error_names,
    owner::Comm,
    report::{Brief, SCHEMA, addr, wall_time},
    story::Cause,
};

/// Reports of one story printed in full per second before the rest are folded.
pub const FULL_PER_SECOND: u32 = 10;
const SECOND_NS: u64 = 1_000_000_000;
/// A story not seen for this long is forgotten.
const IDLE_NS: u64 = 10 * SECOND_NS;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    kind: &'static str,
    cause: Option<Cause>,
    errno: Option<u32>,
    pid: Option<u32>,
    comm: Option<Comm>,
    family: u16,
    raddr: [u8; 16],
}

struct Slot {
    window_ns: u64,
    shown: u32,
    folded: u64,
    first_ns: u64,
    last: Brief,
}

#[derive(Default)]
pub struct Fold {
    slots: FxHashMap<Key, Slot>,
}

/// One story's folded reports (JSON kind `repeated`): every field an event has, those of the
/// folded reports' story filled in and the others null, and what was folded.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Repeated {
    pub schema: u32,
    /// Wall-clock time of the last folded report.
    pub time: String,
    pub ts_ns: u64,
    pub kind: &'static str,
    /// The kind of the folded reports.
    pub of: &'static str,
    /// How many were folded.
    pub count: u64,
    /// Wall-clock time of the first folded report.
    pub first_time: String,
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    pub comm: Option<Comm>,
    pub owner_from: Option<&'static str>,
    pub family: &'static str,
    pub laddr: Option<String>,
    pub raddr: String,
    /// A local and remote port of the last one (the others differ at most in ports).
    pub lport: u16,
    pub rport: u16,
    pub errno: Option<String>,
    pub errno_code: Option<u32>,
    pub cause: Option<&'static str>,
    /// What the summary counted each folded report as (`error`, `orderly_close`, null).
    pub counted_as: Option<&'static str>,
    pub peer_pid: Option<u32>,
    pub peer_comm: Option<Comm>,
    /// The story's process's cgroup, container and pod (of the last one).
    #[serde(flatten)]
    pub place: crate::container::Place,
    pub peer_namespace: Option<String>,
    pub peer_pod: Option<String>,
    pub netns: Option<u32>,
    pub state: Option<&'static str>,
    pub newstate: Option<&'static str>,
    pub error: Option<String>,
    pub reason: Option<String>,
    pub timeline: [(); 0],
    pub accept_queue: Option<()>,
    pub stakes: Option<()>,
    pub cookie: Option<u64>,
    pub ino: Option<u64>,
    pub explanation: String,
}

impl Fold {
    /// Whether this report is printed in full; if not, it is counted for the next [`Self::take`].
    pub fn admit(&mut self, b: &Brief) -> bool {
        let key = Key {
            kind: b.kind,
            cause: b.cause,
            errno: b.errno_code,
            pid: b.pid,
            comm: b.comm,
            family: b.family,
            raddr: b.raddr,
        };
        let slot = self.slots.entry(key).or_insert(Slot {
            window_ns: b.ts_ns,
            shown: 0,
            folded: 0,
            first_ns: 0,
            last: b.clone(),
        });
        if b.ts_ns.saturating_sub(slot.window_ns) >= SECOND_NS {
            slot.window_ns = b.ts_ns;
            slot.shown = 0;
        }
        slot.last = b.clone();
        if slot.shown < FULL_PER_SECOND {
            slot.shown += 1;
            return true;
        }
        if slot.folded == 0 {
            slot.first_ns = b.ts_ns;
        }
        slot.folded += 1;
        false
    }

    /// The stories folded since the last call, oldest first; forgets stories idle for 10 s.
    pub fn take(&mut self, now_ns: u64) -> Vec<Repeated> {
        let mut out = Vec::new();
        self.slots.retain(|_, s| {
            if s.folded > 0 {
                out.push(repeated(s.folded, s.first_ns, &s.last));
                s.folded = 0;
            }
            now_ns.saturating_sub(s.last.ts_ns) < IDLE_NS
        });
        out.sort_by_key(|r| r.ts_ns);
        out
    }
}

fn repeated(count: u64, first_ns: u64, b: &Brief) -> Repeated {
    let raddr = addr(b.family, &b.raddr).to_string();
    let errno = b.errno_code.map(error_names::name);
    let who = match (b.pid, b.comm) {
        (Some(pid), Some(comm)) => format!("pid {pid} ({})", comm.escaped()),
        _ => "an unknown process".to_owned(),
    };
    let secs = b.ts_ns.saturating_sub(first_ns) as f64 / 1e9;
    let what = match (b.cause, &errno) {
        (Some(c), Some(e)) => format!("{e}, {}", c.name()),
        (Some(c), None) => c.name().to_owned(),
        (None, Some(e)) => e.clone(),
        (None, None) => "-".to_owned(),
    };
    Repeated {
        schema: SCHEMA,
        time: wall_time(b.ts_ns),
        ts_ns: b.ts_ns,
        kind: "repeated",
        of: b.kind,
        count,
        first_time: wall_time(first_ns),
        pid: b.pid,
        tid: None,
        comm: b.comm,
        owner_from: None,
        family: if b.family == tcperr_common::tcp::AF_INET6 { "ipv6" } else { "ipv4" },
        laddr: None,
        raddr: raddr.clone(),
        lport: b.lport,
        rport: b.rport,
        errno,
        errno_code: b.errno_code,
        cause: b.cause.map(Cause::name),
        counted_as: b.counts_as.name(),
        peer_pid: None,
        peer_comm: None,
        place: crate::container::Place::of(b.cgroup.as_deref()),
        peer_namespace: None,
        peer_pod: None,
        netns: None,
        state: None,
        newstate: None,
        error: b.errno_code.map(error_names::words),
        reason: None,
        timeline: [],
        accept_queue: None,
        stakes: None,
        cookie: None,
        ino: None,
        explanation: format!(
            "{count} more {} like the above ({what}) for {who} with {raddr} in {secs:.1} s; more than {FULL_PER_SECOND} a second of one story are counted, not printed (--every prints each)",
            b.kind
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ts_ns: u64) -> Brief {
        Brief { ts_ns, ..Brief::sample() }
    }

    #[test]
    fn prints_ten_a_second_of_one_story_and_counts_the_rest() {
        let mut f = Fold::default();
        let shown = (0..25).filter(|i| f.admit(&at(i * 1_000_000))).count();
        assert_eq!(shown, FULL_PER_SECOND as usize);
        let r = f.take(30_000_000);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].count, r[0].of, r[0].ts_ns), (15, "send_error", 24_000_000));
        assert!(r[0].explanation.starts_with("15 more send_error like the above (EPIPE"));
        // Counted once: nothing new, nothing to say.
        assert!(f.take(40_000_000).is_empty());
        // A new second prints in full again.
        assert!(f.admit(&at(SECOND_NS + 1_000_000)));
    }

    #[test]
    fn different_stories_are_counted_apart() {
        let mut f = Fold::default();
        for i in 0..(FULL_PER_SECOND as u64) {
            assert!(f.admit(&at(i)));
        }
        assert!(!f.admit(&at(20)));
        let other = Brief { pid: Some(7), ..at(21) };
        assert!(f.admit(&other), "another process's story is not folded with the first");
    }

    #[test]
    fn idle_stories_are_forgotten() {
        let mut f = Fold::default();
        f.admit(&at(0));
        f.take(IDLE_NS + 1);
        assert!(f.slots.is_empty());
    }
}
