//! Which process owns a socket. Hooks in the owner's context (send/recv results, connect, close)
//! name it directly; events raised in softirq (RST receipt, most state changes) take the owner
//! learned earlier for the same socket, else the process holding the socket's inode in
//! `/proc/*/fd` (sockets opened before tracing started), else — for events raised inside
//! `close()`, whose fd is already gone — the task that was closing it.
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub pid: u32,
    /// The thread, when the owner was seen in its own context.
    pub tid: Option<u32>,
    pub comm: String,
}

/// How the owner of an event was found (JSON field `owner_from`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerSource {
    /// The event ran in the owner's own context.
    Context,
    /// Learned from an earlier event of the same socket.
    Socket,
    /// Found in /proc/<pid>/fd by socket inode.
    Proc,
    /// Raised inside the owner's close(): the fd was gone, the closing task is the owner.
    Closing,
    Unknown,
}

/// Maps socket inodes to processes by scanning /proc/*/fd, at most once per `min_age`.
pub struct ProcSockets {
    by_ino: FxHashMap<u64, (u32, String)>,
    scanned: Option<Instant>,
    min_age: Duration,
    pub scans: u64,
}

impl Default for ProcSockets {
    fn default() -> Self {
        Self {
            by_ino: FxHashMap::default(),
            scanned: None,
            min_age: Duration::from_millis(50),
            scans: 0,
        }
    }
}

impl ProcSockets {
    pub fn lookup(&mut self, ino: u64) -> Option<Owner> {
        if ino == 0 {
            return None;
        }
        if !self.by_ino.contains_key(&ino)
            && self.scanned.is_none_or(|t| t.elapsed() >= self.min_age)
        {
            self.scan();
        }
        let (pid, comm) = self.by_ino.get(&ino)?;
        Some(Owner { pid: *pid, tid: None, comm: comm.clone() })
    }

    /// As [`Self::lookup`], from the last scan only.
    pub fn lookup_cached(&self, ino: u64) -> Option<Owner> {
        let (pid, comm) = self.by_ino.get(&ino)?;
        Some(Owner { pid: *pid, tid: None, comm: comm.clone() })
    }

    fn scan(&mut self) {
        self.scans += 1;
        self.scanned = Some(Instant::now());
        self.by_ino.clear();
        let Ok(procs) = std::fs::read_dir("/proc") else { return };
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else { continue };
            let mut comm = None;
            for fd in fds.flatten() {
                let Ok(target) = std::fs::read_link(fd.path()) else { continue };
                let Some(ino) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|t| t.parse::<u64>().ok())
                else {
                    continue;
                };
                let comm = comm.get_or_insert_with(|| {
                    std::fs::read_to_string(p.path().join("comm"))
                        .map(|c| c.trim_end().to_owned())
                        .unwrap_or_default()
                });
                self.by_ino.entry(ino).or_insert_with(|| (pid, comm.clone()));
            }
        }
    }
}

/// Open files of process `pid` and its `RLIMIT_NOFILE` soft limit, from /proc.
pub fn fd_usage(pid: u32) -> Option<(u64, u64)> {
    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some((open, soft))
}
