//! Loading, attaching and reading: the eBPF object embedded in the binary, configured with the
//! running kernel's layout, one program per chosen hook, one ring buffer.
use std::{
    fmt,
    os::fd::{AsRawFd, RawFd},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{RawTracePoint, TracePoint},
};

use crate::{
    btf::Btf,
    decode::{DecodeError, Event, decode},
    probe::{self, Attach, Plan},
    tracefs,
};

/// Why tracing cannot start: one line for the user, always exit code 2.
#[derive(Debug)]
pub struct StartError(pub String);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

fn fail(msg: impl Into<String>) -> StartError {
    StartError(msg.into())
}

#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ringbuf_bytes: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self { ringbuf_bytes: 1 << 20 }
    }
}

pub struct Tracer {
    ring: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
    pub plan: Plan,
    /// Hooks that failed to attach although probing chose them: (source, error).
    pub attach_failures: Vec<(probe::Source, String)>,
    // Keeps programs and links alive; dropping it detaches everything.
    _ebpf: Ebpf,
}

/// Effective capabilities of this process (CapEff in /proc/self/status).
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

const CAP_SYS_ADMIN: u64 = 1 << 21;
const CAP_PERFMON: u64 = 1 << 38;
const CAP_BPF: u64 = 1 << 39;

/// Checks the privileges tracing needs: CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN).
pub fn check_privileges() -> Result<(), StartError> {
    let caps = effective_caps();
    if caps & CAP_SYS_ADMIN != 0 || caps & (CAP_BPF | CAP_PERFMON) == CAP_BPF | CAP_PERFMON {
        return Ok(());
    }
    let mut missing = Vec::new();
    if caps & CAP_BPF == 0 {
        missing.push("CAP_BPF");
    }
    if caps & CAP_PERFMON == 0 {
        missing.push("CAP_PERFMON");
    }
    Err(fail(format!(
        "missing privilege {} (or CAP_SYS_ADMIN on kernels before 5.8): run as root, e.g. `sudo tcperr trace`",
        missing.join(" and ")
    )))
}

/// Probes the running kernel: tracefs (mounting it if needed), BTF, then a hook per source.
pub fn probe_kernel() -> Result<Plan, StartError> {
    let root = tracefs::mount_point().map_err(fail)?;
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(fail(
            "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): tcperr needs a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        ));
    }
    let btf = Btf::from_sys_fs().map_err(|e| fail(format!("reading kernel BTF: {e:#}")))?;
    probe::plan(&root, &btf).map_err(|e| fail(format!("{e:#}")))
}

impl Tracer {
    pub fn start(config: &Config) -> Result<Self, StartError> {
        check_privileges()?;
        let rb = config.ringbuf_bytes;
        if !rb.is_power_of_two() || rb < 4096 {
            return Err(fail(format!(
                "ring buffer size {rb} must be a power of two of at least 4096 bytes"
            )));
        }
        let plan = probe_kernel()?;
        if plan.hooks().next().is_none() {
            let why: Vec<_> = plan
                .choices
                .iter()
                .filter_map(|c| c.hook.as_ref().err().map(|e| format!("{}: {e}", c.source.name())))
                .collect();
            return Err(fail(format!(
                "no event source can be traced on this kernel ({})",
                why.join("; ")
            )));
        }
        let mut ebpf = EbpfLoader::new()
            .override_global("LAYOUT", &plan.layout, true)
            .map_max_entries("EVENTS", rb)
            .load(aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcperr")))
            .map_err(|e| {
                fail(format!(
                    "loading the eBPF object failed: {e} (tcperr needs Linux 5.8+ with the BPF ring buffer)"
                ))
            })?;
        let mut attach_failures = Vec::new();
        for (source, hook) in plan.hooks() {
            let res = attach(&mut ebpf, hook.program, hook.attach);
            if let Err(e) = res {
                log::warn!("{} via {}: {e}", source.name(), hook.attach);
                attach_failures.push((source, e));
            }
        }
        if attach_failures.len() == plan.hooks().count() {
            return Err(fail(format!(
                "no hook could be attached: {}",
                attach_failures
                    .iter()
                    .map(|(s, e)| format!("{}: {e}", s.name()))
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        let take = |ebpf: &mut Ebpf, name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| fail(format!("map {name} missing from the eBPF object")))
        };
        let ring =
            RingBuf::try_from(take(&mut ebpf, "EVENTS")?).map_err(|e| fail(e.to_string()))?;
        let lost =
            PerCpuArray::try_from(take(&mut ebpf, "LOST")?).map_err(|e| fail(e.to_string()))?;
        Ok(Self { ring, lost, plan, attach_failures, _ebpf: ebpf })
    }

    /// One line per source: the hook that serves it on this kernel, or why none does.
    pub fn hook_summary(&self) -> Vec<String> {
        self.plan
            .choices
            .iter()
            .map(|c| {
                let failed = self.attach_failures.iter().find(|(s, _)| *s == c.source);
                match (&c.hook, failed) {
                    (Ok(h), None) => format!("{} via {}", c.source.name(), h.attach),
                    (Ok(h), Some((_, e))) => {
                        format!("{} OFF ({} failed: {e})", c.source.name(), h.attach)
                    }
                    (Err(e), _) => format!("{} OFF ({e})", c.source.name()),
                }
            })
            .collect()
    }

    /// Decodes every record waiting in the ring buffer; returns how many there were.
    pub fn drain(&mut self, mut f: impl FnMut(Result<Event, DecodeError>)) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            n += 1;
            f(decode(&item));
        }
        n
    }

    /// Records the programs could not write because the ring buffer was full, all CPUs.
    pub fn lost(&self) -> u64 {
        self.lost.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }

    /// Blocks until records are waiting or `timeout` passes; true if records are waiting.
    pub fn wait(&self, timeout: std::time::Duration) -> bool {
        let mut p = libc::pollfd { fd: self.ring.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, timeout.as_millis().min(i32::MAX as u128) as i32) == 1 }
    }

    pub fn ring_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

fn attach(ebpf: &mut Ebpf, program: &str, how: Attach) -> Result<(), String> {
    let prog =
        ebpf.program_mut(program).ok_or_else(|| format!("program {program} not in object"))?;
    match how {
        Attach::TracePoint { category, name } => {
            let p: &mut TracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
            p.load().map_err(|e| format!("load: {e}"))?;
            p.attach(category, name).map_err(|e| format!("attach: {e}"))?;
        }
        Attach::RawTracePoint { name } => {
            let p: &mut RawTracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
            p.load().map_err(|e| format!("load: {e}"))?;
            p.attach(name).map_err(|e| format!("attach: {e}"))?;
        }
    }
    Ok(())
}
