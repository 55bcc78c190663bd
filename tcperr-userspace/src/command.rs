//! `tcperr trace [flags] -- CMD ARGS...`: runs CMD (as the user who ran sudo, when tcperr runs
//! as root through sudo), follows it and every process it forks from the kernel side, reports
//! only their events, and ends with the command's exit status.
//!
//! Following: the fork tracepoint (`tcperr-ebpf/src/sched_process_fork.rs`) adds the child of
//! every fork a followed process makes to the `FOLLOWED` map before the child first runs. The
//! command's own process joins the map between fork and exec, after tracing is attached, so
//! nothing it does, nor any descendant, is missed. The filter asks [`Followed`] about each
//! event's process: its owner as attribution found it, so that an RST received in softirq on
//! the command's socket is the command's. Records of other processes are still read (not
//! dropped in the kernel): on loopback the peer's account is what explains the command's error.
use std::{
    ffi::{CString, OsStr, OsString},
    fmt, io,
    os::{
        fd::{AsRawFd, RawFd},
        unix::{
            ffi::OsStrExt,
            process::{CommandExt, ExitStatusExt},
        },
    },
    process::{Child, ExitStatus},
    sync::{Arc, Mutex, OnceLock},
};

use aya::maps::{HashMap, MapData};
use rustc_hash::FxHashSet;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::load::Tracer;

/// The processes followed: the kernel side's map, and those already found in it. Empty (no
/// process) until the command is started.
#[derive(Clone, Default)]
pub struct Followed(Arc<OnceLock<Mutex<Known>>>);

struct Known {
    map: HashMap<MapData, u32, u8>,
    found: FxHashSet<u32>,
}

impl Followed {
    /// Whether process `pid` is the command or one of its descendants. A process found once
    /// stays found (its events may come after it exited); others cost a map lookup.
    pub fn contains(&self, pid: u32) -> bool {
        let Some(known) = self.0.get() else { return false };
        let Ok(mut known) = known.lock() else { return false };
        if known.found.contains(&pid) {
            return true;
        }
        let followed = known.map.get(&pid, 0).is_ok();
        if followed {
            known.found.insert(pid);
        }
        followed
    }
}

impl PartialEq for Followed {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Followed {}

impl fmt::Debug for Followed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let found = self.0.get().and_then(|k| k.lock().ok().map(|k| k.found.len()));
        f.debug_struct("Followed").field("found", &found).finish()
    }
}

/// Who the command runs as when tcperr runs as root through sudo: the user who ran sudo
/// (`SUDO_UID`, `SUDO_GID`), with that user's supplementary groups and `HOME`, `USER`,
/// `LOGNAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<libc::gid_t>,
    pub env: Vec<(OsString, OsString)>,
}

/// A command to run and follow.
#[derive(Debug)]
pub struct Command {
    argv: Vec<OsString>,
    run_as: Option<RunAs>,
    /// Shared with the filter ([`crate::filter::Filter::followed`]).
    pub followed: Followed,
}

/// Why the command could not be started: tcperr exits `code` (127: not found, 126: found but
/// not run), as shells do.
#[derive(Debug)]
pub struct SpawnError {
    pub message: String,
    pub code: u8,
}

impl Command {
    /// `argv` as given after `--`; who it runs as from the environment (see [`RunAs`]). Err:
    /// a `SUDO_UID` or `SUDO_GID` that is not an id (exit 2).
    pub fn new(argv: Vec<OsString>) -> Result<Self, String> {
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let var = |name| std::env::var_os(name);
        let run_as = match root {
            true => run_as(var("SUDO_UID"), var("SUDO_GID"))?,
            false => None,
        };
        Ok(Self { argv, run_as, followed: Followed::default() })
    }

    pub fn run_as(&self) -> Option<&RunAs> {
        self.run_as.as_ref()
    }

    /// Attaches the fork tracepoint, then starts the command, which joins the followed
    /// processes before it execs.
    pub fn start(&self, tracer: &mut Tracer) -> Result<Running, SpawnError> {
        let name = self.argv.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
        let (map, fd) = tracer
            .follow_descendants()
            .map_err(|e| SpawnError { message: e.to_string(), code: 2 })?;
        self.followed.0.get_or_init(|| Mutex::new(Known { map, found: FxHashSet::default() }));
        // (registered before the child exists, so that its exit is never missed)
        let sigchld = signal(SignalKind::child())
            .map_err(|e| SpawnError { message: format!("SIGCHLD: {e}"), code: 1 })?;
        let mut cmd = std::process::Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]);
        let ids = self.run_as.as_ref().map(|r| {
            cmd.envs(r.env.iter().map(|(k, v)| (k, v)));
            (r.uid, r.gid, r.groups.clone())
        });
        let map_fd = fd.as_raw_fd();
        // SAFETY: between fork and exec the closure makes raw system calls only (no allocation:
        // `ids` was built before).
        unsafe {
            cmd.pre_exec(move || {
                join_followed(map_fd)?;
                if let Some((uid, gid, groups)) = &ids {
                    become_user(*uid, *gid, groups)?;
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| SpawnError {
            message: format!("cannot run {name}: {e}"),
            code: if e.kind() == io::ErrorKind::NotFound { 127 } else { 126 },
        })?;
        drop(fd);
        Ok(Running { child, sigchld, signalled: false })
    }
}

/// The started command.
pub struct Running {
    child: Child,
    sigchld: Signal,
    /// A stop signal was forwarded to it.
    signalled: bool,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the command to exit (cancel-safe: for `select!`).
    pub async fn exited(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            self.sigchld.recv().await;
        }
    }

    /// What stop signal `sig` does while the command runs: the first is passed on to the
    /// command (but SIGINT, which a terminal's Ctrl-C has already sent it) and tracing goes on
    /// until it exits; a second stops tracing (true).
    pub fn stop_signal(&mut self, sig: i32) -> bool {
        if self.signalled {
            return true;
        }
        self.signalled = true;
        if sig != libc::SIGINT {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(self.child.id() as i32, sig) };
        }
        false
    }
}

/// The exit status tcperr passes on: the command's code, or 128 + the signal that ended it.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
        (None, None) => 1,
    }
}

/// The command's process adds itself to the followed map (a raw `bpf(BPF_MAP_UPDATE_ELEM)`:
/// it runs between fork and exec).
fn join_followed(map_fd: RawFd) -> io::Result<()> {
    #[repr(C)]
    struct MapElem {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() } as u32;
    let one = 1u8;
    let attr = MapElem {
        map_fd: map_fd as u32,
        _pad: 0,
        key: &raw const pid as u64,
        value: &raw const one as u64,
        flags: 0,
    };
    // SAFETY: the attribute points at a key and value that live across the call.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_MAP_UPDATE_ELEM, &raw const attr, size_of::<MapElem>())
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Drops root for `uid`, `gid` and supplementary `groups` (groups first, the user last).
fn become_user(uid: u32, gid: u32, groups: &[libc::gid_t]) -> io::Result<()> {
    let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) };
    // SAFETY: setgroups reads `groups.len()` ids; setgid and setuid take plain ids.
    unsafe {
        check(libc::setgroups(groups.len(), groups.as_ptr()))?;
        check(libc::setgid(gid))?;
        check(libc::setuid(uid))
    }
}

/// Who the command runs as, from `SUDO_UID` and `SUDO_GID` (tcperr being root): None without
/// `SUDO_UID`; the user's primary group when `SUDO_GID` is missing.
pub fn run_as(uid: Option<OsString>, gid: Option<OsString>) -> Result<Option<RunAs>, String> {
    let Some(uid) = uid else { return Ok(None) };
    let id = |name: &str, v: &OsStr| {
        v.to_str()
            .and_then(|s| s.parse::<u32>().ok())
            .ok_or_else(|| format!("{name}={v:?} is not a numeric id (set by sudo)"))
    };
    let uid = id("SUDO_UID", &uid)?;
    let user = passwd(uid);
    let gid = match (gid, &user) {
        (Some(g), _) => id("SUDO_GID", &g)?,
        (None, Some(u)) => u.gid,
        (None, None) => return Err(format!("SUDO_UID={uid} has no SUDO_GID and no passwd entry")),
    };
    let mut env = Vec::new();
    let groups = match &user {
        Some(u) => {
            env.push(("HOME".into(), OsString::from(&u.home)));
            env.push(("USER".into(), OsString::from(&u.name)));
            env.push(("LOGNAME".into(), OsString::from(&u.name)));
            group_list(&u.name, gid)
        }
        None => vec![gid],
    };
    Ok(Some(RunAs { uid, gid, groups, env }))
}

struct Passwd {
    name: String,
    home: String,
    gid: u32,
}

/// The passwd entry of `uid`, if there is one.
fn passwd(uid: u32) -> Option<Passwd> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: zeroed passwd is a valid out-parameter; getpwuid_r fills it with pointers into
    // `buf`, which outlives their use below.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut found = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut found);
        if rc != 0 || found.is_null() {
            return None;
        }
        let s = |p: *const libc::c_char| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned();
        Some(Passwd { name: s(pw.pw_name), home: s(pw.pw_dir), gid: pw.pw_gid })
    }
}

/// The groups of user `name` with primary group `gid` (`getgrouplist`, as login does).
fn group_list(name: &str, gid: u32) -> Vec<libc::gid_t> {
    let Ok(cname) = CString::new(OsStr::new(name).as_bytes()) else { return vec![gid] };
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut n = groups.len() as libc::c_int;
        // SAFETY: `groups` holds `n` ids; getgrouplist writes at most `n` and sets `n`.
        let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n.max(0) as usize);
            return groups;
        }
        if n as usize <= groups.len() || groups.len() >= 65536 {
            return vec![gid];
        }
        groups.resize(n as usize, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_pass_on_the_commands_or_128_plus_its_signal() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGKILL)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGTERM)), 143);
    }

    #[test]
    fn sudo_ids_name_the_user_and_bad_ones_say_which_variable() {
        assert_eq!(run_as(None, Some("0".into())), Ok(None), "no SUDO_UID: as tcperr runs");
        let root = run_as(Some("0".into()), Some("0".into())).unwrap().unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0), "{:?}", root.groups);
        assert!(root.env.contains(&("USER".into(), "root".into())), "{:?}", root.env);
        let e = run_as(Some("alice".into()), None).unwrap_err();
        assert!(e.contains("SUDO_UID=\"alice\" is not a numeric id"), "{e}");
        let e = run_as(Some("0".into()), Some("-1".into())).unwrap_err();
        assert!(e.contains("SUDO_GID"), "{e}");
        // A uid without a passwd entry: its SUDO_GID, no other group.
        let ghost = run_as(Some("4000123".into()), Some("4000124".into())).unwrap().unwrap();
        assert_eq!(
            (ghost.gid, ghost.groups.as_slice(), ghost.env.len()),
            (4000124, &[4000124][..], 0)
        );
    }
}
