//! The tracers under test as processes: building tcperr, starting tcperr or bpftrace and waiting
//! until their programs are in the kernel, stopping them.
use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use tcperr_scenarios::drive;

use crate::workspace_root;

/// Builds the release `tcperr` (what users run) and returns its path.
pub fn build_release_tcperr() -> Result<PathBuf, String> {
    let root = workspace_root();
    eprintln!("==> bench: building tcperr (release)");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "tcperr-userspace", "--bin", "tcperr"])
        .current_dir(&root)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("building tcperr failed".into());
    }
    Ok(root.join("target/release/tcperr"))
}

/// bpftrace doing what tcperr's hooks do: the same tracepoints, a line per error or RST.
const BPFTRACE: &str = r#"
tracepoint:sock:sock_send_length /args->ret < 0 && args->protocol == 6/ { printf("%d %s send %d\n", pid, comm, args->ret); }
tracepoint:sock:sock_recv_length /args->ret <= 0 && args->protocol == 6/ { printf("%d %s recv %d\n", pid, comm, args->ret); }
tracepoint:tcp:tcp_receive_reset { printf("%d %s rst received %d\n", pid, comm, args->dport); }
tracepoint:tcp:tcp_send_reset { printf("%d %s rst sent\n", pid, comm); }
tracepoint:sock:inet_sock_set_state /args->protocol == 6/ { printf("%d %s %d>%d\n", pid, comm, args->oldstate, args->newstate); }
"#;

/// A tracer to start, and how to tell it is ready.
pub struct Launch {
    name: &'static str,
    cmd: Command,
    /// A line it prints once attached.
    ready: &'static str,
    /// The programs it holds once attached.
    programs: usize,
}

impl Launch {
    /// `tcperr trace ARGS`.
    pub fn tcperr(bin: &Path, args: &[&str]) -> Self {
        let mut cmd = Command::new(bin);
        cmd.arg("trace").args(args).stdout(Stdio::piped());
        Self { name: "tcperr", cmd, ready: "tracing TCP errors", programs: 7 }
    }

    /// `tcperr serve` on a free port, journaling under `journal` (README "tcperr serve"); the
    /// harness scrapes it once a second ([`Tracer::scrape_every_second`]).
    pub fn serve(bin: &Path, journal: &Path) -> Self {
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--journal"]).arg(journal);
        cmd.stdout(Stdio::null());
        Self { name: "tcperr serve", cmd, ready: "serving metrics on http://", programs: 7 }
    }

    /// bpftrace running [`BPFTRACE`].
    pub fn bpftrace() -> Self {
        let mut cmd = Command::new("bpftrace");
        cmd.args(["-e", BPFTRACE]).stdout(Stdio::piped());
        Self { name: "bpftrace", cmd, ready: "Attaching", programs: 5 }
    }

    /// Sends its standard output elsewhere than to the harness (which reads it by default).
    pub fn stdout(mut self, out: impl Into<Stdio>) -> Self {
        self.cmd.stdout(out);
        self
    }

    /// Starts it and waits until it is attached: until a line containing `ready` appears
    /// (stdout or stderr), or, its output redirected to a file, until all its programs are in.
    /// Every later line is kept. Err if it exits, stays silent, or holds too few programs.
    pub fn spawn(mut self) -> Result<Tracer, String> {
        let t0 = Instant::now();
        let mut child =
            self.cmd.stderr(Stdio::piped()).spawn().map_err(|e| format!("{}: {e}", self.name))?;
        let lines = forward_lines(&mut child);
        let (seen, ready_line) = self.wait_ready(&child, &lines).map_err(|seen| {
            let _ = child.kill();
            format!("{} did not attach: {}", self.name, seen.join(" | "))
        })?;
        let ready_after = t0.elapsed();
        // A tracer that failed to attach exits or warns: check it is alive and quiet about it.
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{} exited after attaching: {status}", self.name));
        }
        // ... and that its programs are really in the kernel (bpftrace's RLIMIT_MEMLOCK
        // complaint is harmless here; a probe that failed is not).
        let programs = drive::prog_ids(child.id()).len();
        if programs < self.programs {
            let _ = child.kill();
            return Err(format!(
                "{} holds {programs} programs, expected {}: {}",
                self.name,
                self.programs,
                seen.join(" | ")
            ));
        }
        let scrape = ready_line
            .split("serving metrics on http://")
            .nth(1)
            .map(|a| a.trim_end_matches("/metrics").to_owned());
        Ok(Tracer { child, lines, ready_after, scrape, scraper: None })
    }

    /// Waits until it is ready. Returns the lines it printed before, and the ready line (empty
    /// when its programs told): Err if it exits or times out first.
    fn wait_ready(
        &self,
        child: &Child,
        lines: &mpsc::Receiver<String>,
    ) -> Result<(Vec<String>, String), Vec<String>> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match lines.recv_timeout(Duration::from_millis(50)) {
                Ok(l) if l.contains(self.ready) => return Ok((seen, l)),
                Ok(l) => seen.push(l),
                Err(mpsc::RecvTimeoutError::Timeout)
                    if drive::prog_ids(child.id()).len() >= self.programs =>
                {
                    std::thread::sleep(Duration::from_millis(300)); // let it finish attaching
                    return Ok((seen, String::new()));
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => return Err(seen),
            }
        }
    }
}

/// The lines the child prints on stdout (where piped) and stderr, as they come.
fn forward_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    for stream in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

/// A tracer under test, running as its own process.
pub struct Tracer {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// From its start to its being attached and ready.
    pub ready_after: Duration,
    /// `tcperr serve`'s metrics address.
    scrape: Option<String>,
    /// The thread scraping it, and the flag that stops it.
    scraper: Option<(std::sync::Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<u64>)>,
}

impl Tracer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// For `tcperr serve`: GETs its metrics once a second, as Prometheus would, until stopped.
    pub fn scrape_every_second(mut self) -> Self {
        let Some(addr) = self.scrape.clone() else { return self };
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut scrapes = 0;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                if scrape(&addr) {
                    scrapes += 1;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            scrapes
        });
        self.scraper = Some((stop, thread));
        self
    }

    /// Stops it and returns the lines (stderr and, where piped, stdout) it printed.
    /// SIGINT, repeated each second (bpftrace sometimes misses one that arrives while it is
    /// still setting up), SIGKILL after 10 s.
    pub fn stop(mut self) -> Vec<String> {
        if let Some((stop, thread)) = self.scraper.take() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = thread.join();
        }
        let pid = self.child.id() as i32;
        for i in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return self.lines.try_iter().collect();
            }
            if i % 10 == 0 {
                // SAFETY: kill(2) on our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGINT) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.lines.try_iter().collect()
    }
}

/// One GET of `addr`'s /metrics, its body read to the end: whether it answered 200.
fn scrape(addr: &str) -> bool {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut resp = Vec::new();
    s.write_all(req.as_bytes()).is_ok()
        && s.read_to_end(&mut resp).is_ok()
        && resp.starts_with(b"HTTP/1.1 200")
}

/// Clock ticks per second, the unit of [`drive::cpu_ticks`].
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}
