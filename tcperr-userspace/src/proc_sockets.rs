//! Finding a socket's owner in `/proc` without paying for sockets that are not its own; and
//! which processes holding an overflowing listener are at their open-files limit.
//!
//! Events raised in softirq (an RST received, an overflow) name no owner, and a socket tcperr has
//! not seen in its owner's context (one opened before tracing, or accepted: accept() raises no
//! event) is found by its inode among `/proc/PID/fd` links. Reading every link of every process
//! on each such socket, as tcperr did, costs in proportion to all sockets on the host: 100,000
//! idle ones took 0.6 s a read, and a health checker resetting 200 connections a second kept a
//! core busy (issue #22 item 7). Now, in this order:
//!
//! 1. **The port's processes.** An accepted socket has its listener's local port and is held by
//!    a process that accepts on that listener: the one that listened (learned at `listen()`),
//!    one that held a socket of the port before (seen in its own context, or found in `/proc`),
//!    or a child of either (prefork workers inherit the listener). Their links are read first.
//! 2. **Known ports stop there.** When the port is a listener's, or a service port (below the
//!    ephemeral range) whose holders were seen, and none of them holds the socket, it is gone:
//!    its owner read the reset and closed it before tcperr got to the record, which is what a
//!    health check's reset mostly is. (A socket handed to another process with `SCM_RIGHTS` is
//!    not looked for further.)
//! 3. **Otherwise a pass over `/proc`, smallest first, in slices.** Processes in order of their
//!    open files (`st_size` of `/proc/PID/fd`, kernel 6.2+), so a small service is found before
//!    the big holders of idle connections are read; a lookup reads for 20 ms of CPU at most and
//!    stops at the owner, and the pass goes on where it stopped at the next lookup that needs
//!    it. Everything read is kept until the next pass starts, so the next socket of a process
//!    already read costs nothing.
//! 4. **A CPU budget.** All of it is charged, in the thread's own CPU time, to two budgets of
//!    1 % of one core each (passes; the port's processes), which save up at most 100 and 50 ms:
//!    whatever the number of sockets, reading `/proc` costs at most 2 % of a core over time,
//!    and an event waits at most one slice. While a budget is spent, owners it would pay for are
//!    not looked for (those events say `unknown`) until it has refilled.
//!
//! The price: the owner of a pre-existing socket held by a big process is found only once the
//! pass reaches that process, which the budget may put off by tens of seconds (a pass over
//! 100,000 idle sockets costs about 0.5 s of CPU here). An eBPF iterator over tasks' files
//! (`iter/task_file`: far cheaper per file, but another program type and kernel 5.8+) was
//! considered; with the order above the health checker's sockets never need a pass.
use std::{
    ffi::CString,
    fs,
    os::{fd::AsRawFd, unix::ffi::OsStrExt},
    time::{Duration, Instant},
};

use crate::owner::{Comm, Owner};
use rustc_hash::FxHashMap;
use serde::Serialize;

/// Each budget: this share of one core over time...
const BUDGET_SHARE: f64 = 0.01;
/// ... saved up to this much CPU time for a burst.
const PASS_BURST: Duration = Duration::from_millis(100);
const HINT_BURST: Duration = Duration::from_millis(50);
/// Processes kept per port (the most recent), children not counted.
const PER_PORT: usize = 4;
/// Children of a port's processes read per lookup, at most.
const MAX_FAMILY: usize = 64;
/// How long a process's children, and a listener's holders at their limit, are taken as known.
const FRESH: Duration = Duration::from_secs(1);
/// A lookup reads for at most this much CPU time of a pass (an event waits no longer), testing
/// the time every so many links.
const SLICE: Duration = Duration::from_millis(20);
const LINKS_PER_SLICE: usize = 256;
/// Socket inodes kept from what was read, at most (then started over).
const MAX_KNOWN: usize = 1 << 18;

/// CPU time allowed to some work: `share` of one core over time, saved up to `burst`. Work
/// starts only while some is left, and is charged what it cost afterwards (so it may overdraw).
#[derive(Debug)]
pub struct Budget {
    share: f64,
    burst: f64,
    left: f64,
    at: Option<Instant>,
}

impl Budget {
    pub fn new(share: f64, burst: Duration) -> Self {
        Self { share, burst: burst.as_secs_f64(), left: burst.as_secs_f64(), at: None }
    }

    /// Whether work may start at `now`.
    pub fn allows(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let earned = now.saturating_duration_since(at).as_secs_f64() * self.share;
            self.left = (self.left + earned).min(self.burst);
        }
        self.at = Some(now);
        self.left > 0.0
    }

    /// Charges work that cost `cpu`.
    pub fn charge(&mut self, cpu: Duration) {
        self.left -= cpu.as_secs_f64();
    }
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// This thread's CPU time since `t0` (a [`thread_cpu`] reading).
fn cpu_since(t0: Duration) -> Duration {
    thread_cpu().saturating_sub(t0)
}

/// The start of the ephemeral port range (`net.ipv4.ip_local_port_range`): ports below it are
/// services' (Linux's default, 32768, if it cannot be read).
fn ephemeral_low() -> u16 {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// The processes seen holding sockets of one local port.
#[derive(Clone, Copy, Debug, Default)]
struct Port {
    /// Most recent first; 0: none.
    pids: [u32; PER_PORT],
    /// A listener of the port was seen (`listen()`, or an overflow).
    listening: bool,
}

impl Port {
    fn add(&mut self, pid: u32) {
        if self.pids[0] == pid {
            return;
        }
        let at = self.pids.iter().position(|&p| p == pid).unwrap_or(PER_PORT - 1);
        self.pids.copy_within(0..at, 1);
        self.pids[0] = pid;
    }

    fn remove(&mut self, pid: u32) {
        if let Some(at) = self.pids.iter().position(|&p| p == pid) {
            self.pids.copy_within(at + 1.., at);
            self.pids[PER_PORT - 1] = 0;
        }
    }

    fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.pids.iter().copied().filter(|&p| p != 0)
    }
}

/// A process holding a listener at its open-files limit (`RLIMIT_NOFILE`): its accept() fails
/// with EMFILE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AtLimit {
    pub pid: u32,
    pub comm: Comm,
    pub open_files: u64,
    pub max_open_files: u64,
}

/// What an overflowing listener's processes have of their open files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenerFiles {
    /// The listener's owner's open files and limit, when known.
    pub owner: Option<(u64, u64)>,
    /// Every process holding the listener that is at its limit (the owner among them if it is).
    pub at_limit: Vec<AtLimit>,
}

/// Socket owners found in `/proc`, the hints that find them cheaply, and the budgets that bound
/// the cost.
pub struct ProcSockets {
    /// Socket inode → the process found holding it.
    known: FxHashMap<u64, (u32, Comm)>,
    ports: FxHashMap<u16, Port>,
    children: FxHashMap<u32, (Instant, Vec<u32>)>,
    /// Listener inode → its holders at their limit, and when that was found.
    at_limit: FxHashMap<u64, (Instant, Vec<AtLimit>)>,
    /// The pass under way, if one stopped with its budget spent.
    current: Option<Pass>,
    pass: Budget,
    hints: Budget,
    ephemeral_low: u16,
    /// `/proc/PID/fd` links read, over the tracer's life.
    pub links_read: u64,
    /// Socket inodes each process checked by [`ProcSockets::still_holds`] held, and when its
    /// fds were read.
    /// None: the process was gone.
    held: FxHashMap<u32, (Instant, Option<rustc_hash::FxHashSet<u64>>)>,
}

/// How often one process's fds are read again to see whether it still holds a socket.
pub const RECHECK_EVERY: Duration = Duration::from_secs(1);
/// Processes whose fds are remembered at once (all are forgotten past it).
const HELD_CAP: usize = 4096;

impl Default for ProcSockets {
    fn default() -> Self {
        Self {
            known: FxHashMap::default(),
            ports: FxHashMap::default(),
            children: FxHashMap::default(),
            at_limit: FxHashMap::default(),
            current: None,
            pass: Budget::new(BUDGET_SHARE, PASS_BURST),
            hints: Budget::new(BUDGET_SHARE, HINT_BURST),
            ephemeral_low: ephemeral_low(),
            links_read: 0,
            held: FxHashMap::default(),
        }
    }
}

impl ProcSockets {
    /// Notes that process `pid` holds a socket of local port `lport` (`listener`: a listening
    /// one). Kept for listeners and for service ports, where the next socket of the port is
    /// likely the same process's; an ephemeral port says nothing of its next socket's owner.
    #[inline]
    pub fn note(&mut self, lport: u16, pid: u32, listener: bool) {
        if lport == 0 || pid == 0 || !(listener || lport < self.ephemeral_low) {
            return;
        }
        self.note_port(lport, pid, listener);
    }

    /// Notes that process `pid`, found in /proc, holds a socket of local port `lport`: a hint
    /// even for an ephemeral port (a listener there that started before tracing serves its next
    /// socket too), though not one that stops the search.
    pub fn note_found(&mut self, lport: u16, pid: u32, listener: bool) {
        if lport != 0 && pid != 0 {
            self.note_port(lport, pid, listener);
        }
    }

    #[cold]
    fn note_port(&mut self, lport: u16, pid: u32, listener: bool) {
        let port = self.ports.entry(lport).or_default();
        port.add(pid);
        port.listening |= listener;
    }

    /// The owner of socket `ino` (of local port `lport`), as far as /proc says within the
    /// budgets (see the module's documentation).
    pub fn lookup(&mut self, ino: u64, lport: u16) -> Option<Owner> {
        if ino == 0 {
            return None;
        }
        if let Some(o) = self.lookup_cached(ino) {
            return Some(o);
        }
        let now = Instant::now();
        let mut read = Vec::new();
        if let Some(port) = self.ports.get(&lport).copied() {
            if self.hints.allows(now) {
                let t0 = thread_cpu();
                for pid in self.family(lport, &port, now) {
                    read.push(pid);
                    // (a process is read whole here; a slice cut short is not resumed)
                    if let Some(mut r) = Reading::open(pid) {
                        let found = r.slice(self, Some(ino), usize::MAX).0;
                        if found {
                            break;
                        }
                    }
                }
                self.hints.charge(cpu_since(t0));
                if let Some(o) = self.lookup_cached(ino) {
                    return Some(o);
                }
            }
            // The port's processes are the ones that can hold its sockets: not found with them,
            // the socket is gone.
            if port.listening || lport < self.ephemeral_low {
                return None;
            }
        }
        self.pass_over_proc(ino, &read, now);
        self.lookup_cached(ino)
    }

    /// As [`Self::lookup`], from what was read already.
    #[inline]
    /// Whether process `pid` still holds socket `ino` (false once it exited or gave the socket
    /// up: closed its fd after a fork or after passing it on with SCM_RIGHTS). Its fds are read
    /// when `ino` is not among those last seen, at most once per [`RECHECK_EVERY`]; in between,
    /// a socket it was last seen holding, or one newer than that reading, is taken as held, and
    /// a process last seen gone stays gone.
    pub fn still_holds(&mut self, pid: u32, ino: u64) -> bool {
        if ino == 0 {
            return true;
        }
        // (no syscall between readings: in an RST storm this runs for every record)
        if let Some((at, inos)) = self.held.get(&pid) {
            match inos {
                Some(held) if held.contains(&ino) => return true,
                _ if at.elapsed() < RECHECK_EVERY => return inos.is_some(),
                _ => {}
            }
        }
        if self.held.len() >= HELD_CAP {
            self.held.clear();
        }
        let inos = match socket_inodes(pid) {
            Ok(inos) => Some(inos),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None, // the process is gone
            Err(_) => return true, // its fds cannot be read (no CAP_SYS_PTRACE): cannot tell
        };
        let holds = inos.as_ref().is_some_and(|held| held.contains(&ino));
        self.held.insert(pid, (Instant::now(), inos));
        holds
    }

    pub fn lookup_cached(&self, ino: u64) -> Option<Owner> {
        let (pid, comm) = self.known.get(&ino)?;
        Some(Owner { pid: *pid, tid: None, comm: *comm, cgroup: 0 })
    }

    /// The processes of port `lport`, then their children (at most [`MAX_FAMILY`] in all).
    /// Processes that have ended leave the port.
    fn family(&mut self, lport: u16, port: &Port, now: Instant) -> Vec<u32> {
        let mut family: Vec<u32> = Vec::new();
        for pid in port.pids() {
            if !fs::exists(format!("/proc/{pid}")).unwrap_or(false) {
                if let Some(p) = self.ports.get_mut(&lport) {
                    p.remove(pid);
                }
                continue;
            }
            family.push(pid);
        }
        let parents = family.clone();
        for pid in parents {
            for child in self.children_of(pid, now) {
                if family.len() >= MAX_FAMILY {
                    return family;
                }
                if !family.contains(&child) {
                    family.push(child);
                }
            }
        }
        family
    }

    /// Process `pid`'s children (`/proc/PID/task/*/children`), read at most once per [`FRESH`].
    fn children_of(&mut self, pid: u32, now: Instant) -> Vec<u32> {
        if let Some((at, kids)) = self.children.get(&pid)
            && now.saturating_duration_since(*at) < FRESH
        {
            return kids.clone();
        }
        if self.children.len() > 4096 {
            self.children.clear();
        }
        let mut kids = Vec::new();
        if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                let Ok(list) = fs::read_to_string(t.path().join("children")) else { continue };
                kids.extend(list.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
            }
        }
        self.children.insert(pid, (now, kids.clone()));
        kids
    }

    /// Goes on with the pass under way, or starts one: reads processes (those with the fewest
    /// open files first) for one [`SLICE`] at most, or until one holds socket `ino`; the pass
    /// goes on at the next lookup that needs it, while the budget allows. `skip`: processes
    /// just read.
    fn pass_over_proc(&mut self, ino: u64, skip: &[u32], now: Instant) {
        if !self.pass.allows(now) {
            return;
        }
        let t0 = thread_cpu();
        let mut pass = match self.current.take() {
            Some(p) => p,
            None => Pass::start(skip, &mut self.known),
        };
        while thread_cpu().saturating_sub(t0) < SLICE {
            let Some(reading) = pass.reading.as_mut() else {
                match pass.order.pop() {
                    Some(pid) => pass.reading = Reading::open(pid),
                    None => break,
                }
                continue;
            };
            let (found, done) = reading.slice(self, Some(ino), LINKS_PER_SLICE);
            if done {
                pass.reading = None;
            }
            if found {
                break;
            }
        }
        self.pass.charge(cpu_since(t0));
        if pass.reading.is_some() || !pass.order.is_empty() {
            self.current = Some(pass);
        }
    }

    /// What the processes holding listener socket `ino` (of local port `lport`, owned by
    /// `owner`, if known) have of their open files: every one at its limit. Processes at their
    /// limit are rare and cheap to find (`/proc/PID/fd`'s size against `/proc/PID/limits`, no
    /// link read); only those are read for the listener. The listener's owner and the port's
    /// processes (and children) are checked first, every other process only within the pass
    /// budget. Known for [`FRESH`] per listener.
    pub fn listener_files(&mut self, ino: u64, lport: u16, owner: Option<u32>) -> ListenerFiles {
        let owner_files = owner.and_then(fd_usage);
        if ino == 0 {
            // The listener's inode is unknown (it listened before tracing): only its owner.
            let at_limit = owner
                .zip(owner_files)
                .filter(|(_, (open, max))| open >= max)
                .map(|(pid, (open, max))| AtLimit {
                    pid,
                    comm: read_comm(pid),
                    open_files: open,
                    max_open_files: max,
                })
                .into_iter()
                .collect();
            return ListenerFiles { owner: owner_files, at_limit };
        }
        let now = Instant::now();
        if let Some((at, known)) = self.at_limit.get(&ino)
            && now.saturating_duration_since(*at) < FRESH
        {
            return ListenerFiles { owner: owner_files, at_limit: known.clone() };
        }
        let everyone = self.pass.allows(now);
        let t0 = thread_cpu();
        // The listener's owner first, then the port's processes and their children: the usual
        // holders (a prefork master's workers), checked before they can end; then, within the
        // budget, everyone else.
        let mut checked: Vec<u32> = owner.into_iter().collect();
        let mut at_limit: Vec<AtLimit> =
            checked.iter().filter_map(|&p| self.holder_at_limit(p, ino)).collect();
        let port = self.ports.get(&lport).copied().unwrap_or_default();
        let family = self.family(lport, &port, now);
        let mut check = |procs: &mut Self, pid: u32| {
            if !checked.contains(&pid) {
                checked.push(pid);
                at_limit.extend(procs.holder_at_limit(pid, ino));
            }
        };
        for pid in family {
            check(self, pid);
        }
        if everyone && let Ok(procs) = fs::read_dir("/proc") {
            let pids: Vec<u32> = procs
                .flatten()
                .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
                .collect();
            for pid in pids {
                check(self, pid);
            }
        }
        // The owner first, then by pid.
        at_limit.sort_by_key(|a| (Some(a.pid) != owner, a.pid));
        self.pass.charge(cpu_since(t0));
        if self.at_limit.len() > 1024 {
            self.at_limit.clear();
        }
        self.at_limit.insert(ino, (now, at_limit.clone()));
        ListenerFiles { owner: owner_files, at_limit }
    }

    /// Process `pid`, if it is at its open-files limit and holds socket `ino`.
    fn holder_at_limit(&mut self, pid: u32, ino: u64) -> Option<AtLimit> {
        let (open, max) = at_its_limit(pid)?;
        let holds = Reading::open(pid)?.slice(self, Some(ino), usize::MAX).0;
        holds.then(|| AtLimit { pid, comm: read_comm(pid), open_files: open, max_open_files: max })
    }
}

/// A pass over `/proc`: the processes still to read, and the one being read.
struct Pass {
    /// Largest first: the next to read is popped off the end.
    order: Vec<u32>,
    reading: Option<Reading>,
}

impl Pass {
    /// Lists `/proc` (but `skip`), and starts what is `known` over: sockets closed since the
    /// last pass go.
    fn start(skip: &[u32], known: &mut FxHashMap<u64, (u32, Comm)>) -> Self {
        known.clear();
        let mut order: Vec<(u64, u32)> = fs::read_dir("/proc")
            .map(|d| {
                d.flatten()
                    .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|pid| !skip.contains(pid))
                    .map(|pid| {
                        (fs::metadata(format!("/proc/{pid}/fd")).map_or(0, |m| m.len()), pid)
                    })
                    .collect()
            })
            .unwrap_or_default();
        order.sort_unstable_by(|a, b| b.cmp(a));
        Self { order: order.into_iter().map(|(_, pid)| pid).collect(), reading: None }
    }
}

/// One process's `/proc/PID/fd`, open, read so far. Each link is read relative to the open
/// directory (`readlinkat`), not by its full path.
struct Reading {
    pid: u32,
    dir: fs::File,
    entries: fs::ReadDir,
    comm: Option<Comm>,
}

impl Reading {
    fn open(pid: u32) -> Option<Self> {
        let path = format!("/proc/{pid}/fd");
        let (dir, entries) = (fs::File::open(&path).ok()?, fs::read_dir(&path).ok()?);
        Some(Self { pid, dir, entries, comm: None })
    }

    /// Reads up to `max` more links into what `procs` knows; with `want`, stops at that socket.
    /// Returns whether it was found, and whether the process is read to its end.
    fn slice(&mut self, procs: &mut ProcSockets, want: Option<u64>, max: usize) -> (bool, bool) {
        if procs.known.len() >= MAX_KNOWN {
            procs.known.clear();
        }
        let mut buf = [0u8; 64];
        for _ in 0..max {
            let Some(entry) = self.entries.next() else { return (false, true) };
            let Ok(entry) = entry else { continue };
            let Ok(name) = CString::new(entry.file_name().as_bytes()) else { continue };
            procs.links_read += 1;
            // SAFETY: a valid directory fd, a NUL-terminated name, and our buffer's length.
            let n = unsafe {
                libc::readlinkat(
                    self.dir.as_raw_fd(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            let Some(ino) = usize::try_from(n).ok().and_then(|n| socket_inode(&buf[..n])) else {
                continue;
            };
            let pid = self.pid;
            let comm = *self.comm.get_or_insert_with(|| read_comm(pid));
            procs.known.entry(ino).or_insert((pid, comm));
            if want == Some(ino) {
                return (true, false);
            }
        }
        (false, false)
    }
}

/// The inode of a `socket:[INODE]` link target.
fn socket_inode(target: &[u8]) -> Option<u64> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn read_comm(pid: u32) -> Comm {
    Comm::new(fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim_end())
}

/// The socket inodes among process `pid`'s fds (NotFound: the process is gone; PermissionDenied:
/// its fds cannot be read, without CAP_SYS_PTRACE).
fn socket_inodes(pid: u32) -> std::io::Result<rustc_hash::FxHashSet<u64>> {
    let mut inos = rustc_hash::FxHashSet::default();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
        let target = match std::fs::read_link(fd.path()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(e),
            Err(_) => continue, // (closed meanwhile)
        };
        if let Some(ino) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:[")?.strip_suffix(']')?.parse::<u64>().ok())
        {
            inos.insert(ino);
        }
    }
    Ok(inos)
}

/// Open files of process `pid` and its `RLIMIT_NOFILE` soft limit, from /proc.
pub fn fd_usage(pid: u32) -> Option<(u64, u64)> {
    let soft = soft_limit(pid)?;
    Some((open_files(pid)?, soft))
}

/// Process `pid`'s open files and limit, if it is at its limit; cheap for the others: the size
/// of `/proc/PID/fd` (kernel 6.2+), else the fd table's size (`FDSize`), which is at least the
/// number of open files, rules them out before anything is counted.
fn at_its_limit(pid: u32) -> Option<(u64, u64)> {
    let soft = soft_limit(pid)?;
    let size = fs::metadata(format!("/proc/{pid}/fd")).ok()?.len();
    let open = if size > 0 {
        size
    } else {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let table: u64 =
            status.lines().find_map(|l| l.strip_prefix("FDSize:"))?.trim().parse().ok()?;
        if table < soft {
            return None;
        }
        open_files(pid)?
    };
    (open >= soft).then_some((open, soft))
}

/// Process `pid`'s open files: `/proc/PID/fd`'s size where the kernel gives it (6.2+), else its
/// entries counted.
fn open_files(pid: u32) -> Option<u64> {
    let dir = format!("/proc/{pid}/fd");
    match fs::metadata(&dir).ok()?.len() {
        0 => Some(fs::read_dir(&dir).ok()?.count() as u64),
        n => Some(n),
    }
}

/// Process `pid`'s `RLIMIT_NOFILE` soft limit.
fn soft_limit(pid: u32) -> Option<u64> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_lets_work_start_until_it_is_spent_then_waits_until_it_is_earned_back() {
        let t0 = Instant::now();
        let mut b = Budget::new(0.01, Duration::from_millis(300));
        assert!(b.allows(t0));
        // A pass that cost 400 ms overdraws by 100 ms: 10 s at 1 % of a core earn it back.
        b.charge(Duration::from_millis(400));
        assert!(!b.allows(t0 + Duration::from_secs(9)));
        assert!(b.allows(t0 + Duration::from_millis(10_100)));
    }

    #[test]
    fn a_budget_saves_up_no_more_than_its_burst() {
        let t0 = Instant::now();
        let mut b = Budget::new(0.01, Duration::from_millis(300));
        assert!(b.allows(t0));
        // An hour idle saves 300 ms, not 36 s: two 200 ms passes, and the third waits.
        assert!(b.allows(t0 + Duration::from_secs(3600)));
        b.charge(Duration::from_millis(200));
        assert!(b.allows(t0 + Duration::from_secs(3600)));
        b.charge(Duration::from_millis(200));
        assert!(!b.allows(t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn a_port_keeps_its_most_recent_processes() {
        let mut p = Port::default();
        for pid in [1, 2, 3, 4, 5, 3] {
            p.add(pid);
        }
        assert_eq!(p.pids().collect::<Vec<_>>(), [3, 5, 4, 2]);
        p.remove(5);
        assert_eq!(p.pids().collect::<Vec<_>>(), [3, 4, 2]);
    }

    #[test]
    fn only_listeners_and_service_ports_are_hints() {
        let mut procs = ProcSockets { ephemeral_low: 32768, ..ProcSockets::default() };
        procs.note(8080, 10, false);
        procs.note(40000, 11, false); // a client's ephemeral port
        procs.note(45000, 12, true); // a listener on a port of the ephemeral range
        assert_eq!(procs.ports.get(&8080).map(|p| p.pids[0]), Some(10));
        assert!(!procs.ports.contains_key(&40000));
        assert!(procs.ports.get(&45000).is_some_and(|p| p.listening));
    }

    #[test]
    fn a_socket_link_names_its_inode() {
        assert_eq!(socket_inode(b"socket:[123456]"), Some(123456));
        assert_eq!(socket_inode(b"pipe:[123456]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
        assert_eq!(socket_inode(b"socket:[12x]"), None);
    }
}
