//! Driving the built `tcperr` binary as a separate process: start `tcperr trace --json`, wait
//! until it traces, stop it with SIGINT and collect its JSON events. Used by the binary-level
//! tests and by the VM guest.
use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;

pub struct Traced {
    child: Child,
    stderr_lines: mpsc::Receiver<String>,
    /// Reads tcperr's stdout while it runs: a pipe nobody reads fills at 64 KiB and then blocks
    /// tcperr's writes, and with them its reading of the ring buffer (a storm then loses all
    /// but one ring buffer's worth of records).
    stdout: std::thread::JoinHandle<std::io::Result<String>>,
    /// tcperr's start-up line naming the hook of each source.
    pub hooks: String,
}

pub struct Stopped {
    pub code: i32,
    /// The JSON lines tcperr printed, but for the stats line that ends them.
    pub events: Vec<Value>,
    /// That `{"kind": "stats", ...}` line (events_seen, printed, folded, lost, undecodable,
    /// evicted), if tcperr got to print it.
    pub stats: Option<Value>,
    pub stderr: Vec<String>,
}

impl Stopped {
    /// One count of the stats line.
    pub fn stat(&self, name: &str) -> Option<u64> {
        self.stats.as_ref()?[name].as_u64()
    }
}

/// Starts `tcperr trace --json ARGS` and waits (up to `timeout`) until it says it is tracing.
/// Err carries tcperr's exit code (2: it cannot trace this way here) and its stderr.
pub fn start(
    tcperr: &Path,
    args: &[&str],
    timeout: Duration,
) -> Result<Traced, (Option<i32>, String)> {
    start_command(Command::new(tcperr), args, timeout)
}

/// As [`start`], with `tcperr` as `cmd` (which may be a launcher such as `setpriv ... tcperr`).
pub fn start_command(
    mut cmd: Command,
    args: &[&str],
    timeout: Duration,
) -> Result<Traced, (Option<i32>, String)> {
    let mut child = cmd
        .args(["trace", "--json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| (None, format!("spawn {cmd:?}: {e}")))?;
    let (tx, rx) = mpsc::channel();
    let mut stdout = child.stdout.take().ok_or((None, "no stdout".to_owned()))?;
    let stdout = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).map(|_| out)
    });
    let stderr = child.stderr.take().ok_or((None, "no stderr".to_owned()))?;
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let mut hooks = String::new();
    loop {
        match rx.recv_timeout(timeout) {
            Ok(line) if line.contains("tracing TCP errors") => break,
            Ok(line) => {
                if let Some(h) = line.strip_prefix("tcperr: hooks: ") {
                    hooks = h.to_owned();
                }
                seen.push(line);
            }
            Err(_) => {
                let _ = child.kill();
                let code = child.wait().ok().and_then(|s| s.code());
                return Err((code, seen.join("\n")));
            }
        }
    }
    Ok(Traced { child, stderr_lines: rx, stdout, hooks })
}

impl Traced {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Lets the last records drain, sends SIGINT, and collects the events.
pub fn stop(mut t: Traced) -> Result<Stopped, String> {
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on our own child.
    if unsafe { libc::kill(t.child.id() as i32, libc::SIGINT) } != 0 {
        return Err(format!("SIGINT: {}", std::io::Error::last_os_error()));
    }
    let out = t
        .stdout
        .join()
        .map_err(|_| "stdout reader panicked".to_owned())?
        .map_err(|e| format!("read stdout: {e}"))?;
    let status = t.child.wait().map_err(|e| format!("wait: {e}"))?;
    let mut events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not JSON ({e}): {l}")))
        .collect::<Result<_, _>>()?;
    let stats = events.pop_if(|e| e["kind"] == "stats");
    let mut stderr: Vec<String> = Vec::new();
    while let Ok(line) = t.stderr_lines.recv_timeout(Duration::from_secs(5)) {
        stderr.push(line);
    }
    Ok(Stopped { code: status.code().unwrap_or(-1), events, stats, stderr })
}

/// Whether the running kernel's `tcp:tcp_send_reset` reports RSTs without a socket and their
/// reason (Linux 6.10+), read from the tracepoint's format: an oracle of the tests' own,
/// independent of tcperr's probe (which reads BTF). Mounts tracefs at /sys/kernel/tracing if
/// nothing has (the tests' own set-up: tcperr itself does not need it); panics if it cannot.
pub fn kernel_reports_rst_reason() -> bool {
    const ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    let mounted = || ROOTS.iter().find(|r| Path::new(r).join("events").is_dir());
    if mounted().is_none() {
        // SAFETY: constant NUL-terminated strings. (EBUSY: someone mounted it meanwhile.)
        unsafe {
            libc::mount(
                c"tracefs".as_ptr(),
                c"/sys/kernel/tracing".as_ptr(),
                c"tracefs".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
    }
    let root = mounted().expect("tracefs is not mounted and mounting it failed");
    std::fs::read_to_string(format!("{root}/events/tcp/tcp_send_reset/format"))
        .is_ok_and(|f| f.contains(" reason;"))
}

/// The eBPF programs process `pid` holds (`prog_id` in /proc/PID/fdinfo).
pub fn prog_ids(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return vec![] };
    let mut ids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("prog_id:").and_then(|v| v.trim().parse().ok()))
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Which of `ids` are still loaded in the kernel (`bpftool prog show id N`). Panics if bpftool
/// cannot run (`./dev` installs it): an absent tool must not pass for "nothing loaded".
pub fn still_loaded(ids: &[u32]) -> Vec<u32> {
    ids.iter()
        .copied()
        .filter(|id| {
            Command::new("bpftool")
                .args(["prog", "show", "id", &id.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("bpftool: {e} (install the Debian package bpftool)"))
                .success()
        })
        .collect()
}

/// A `/proc/PID/status` figure in KiB (`VmRSS`, `VmHWM`), 0 if unknown.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) of process `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    num(11) + num(12) // utime, stime
}

/// CPU time of process `pid` in nanoseconds: the sum of its threads' time on a CPU
/// (`/proc/PID/task/*/schedstat`), finer than [`cpu_ticks`]' 10 ms ticks. Threads that ended are
/// not counted.
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}
