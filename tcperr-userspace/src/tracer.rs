//! Loading, attaching and reading: the eBPF object embedded in the binary, configured with the
//! running kernel's layout, one program per chosen hook, one ring buffer.
use std::{
    fmt,
    os::fd::{AsRawFd, RawFd},
    time::{Duration, Instant},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, PerCpuValues, RingBuf},
    programs::{BtfTracePoint, FExit, KProbe, Program, RawTracePoint, TracePoint},
};

use tcperr_common::{EventHeader, SockInfo, StateChange};

use crate::{
    btf::Btf,
    decode::{DecodeError, Event, decode},
    probe::{self, Attach, Family, Hook, Plan},
    tracefs,
};

/// How often [`Tracer::drain`] looks for moves to CLOSE held back too long.
pub const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// A held move to CLOSE is taken by its RST microseconds later, in the same call; one this old
/// is waiting for an RST that never came (and for the next move held on its CPU to push it out).
pub const HELD_FOR_LONG: Duration = Duration::from_millis(200);

/// CLOCK_MONOTONIC in nanoseconds: the clock of the records' `ts_ns` (`bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The eBPF object, built by build.rs and embedded in the binary.
pub const OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcperr"));

/// Attaches the benchmark floor programs (`tcperr-ebpf/src/floor.rs`) on the hot hooks; they
/// stay attached while the returned object lives.
pub fn attach_floor() -> Result<Ebpf, String> {
    let mut ebpf = EbpfLoader::new().load(OBJECT).map_err(|e| e.to_string())?;
    let mut btf = None;
    for (program, name) in [
        ("floor_sock_send_length", "sock_send_length"),
        ("floor_sock_recv_length", "sock_recv_length"),
    ] {
        let hook = Hook::new(program, Attach::BtfTracePoint { name });
        attach(&mut ebpf, &mut btf, &hook).map_err(|e| format!("{program}: {e}"))?;
    }
    Ok(ebpf)
}

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
    /// Force one family of hooks for the socket calls' results (`--hooks`).
    pub hooks: Option<Family>,
    /// Benchmark reference only (`cargo xtask bench`): the programs do all their work and
    /// drop each record instead of writing it, which isolates their own cost from the ring
    /// buffer's and userspace's.
    pub discard_records: bool,
    /// Tests only: skip the `tp_btf` programs, so that their raw-tracepoint fallbacks (for a
    /// kernel that will not load them) serve instead.
    pub raw_tracepoints_only: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ringbuf_bytes: 4 << 20,
            hooks: None,
            discard_records: false,
            raw_tracepoints_only: false,
        }
    }
}

/// What serves one source on this kernel, and why the candidates before it did not.
#[derive(Clone, Debug)]
pub struct Selected {
    pub source: probe::Source,
    pub hook: Option<Hook>,
    /// One line per candidate passed over (unavailable, not the forced family, failed to load).
    pub passed_over: Vec<String>,
}

pub struct Tracer {
    ring: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
    /// Per CPU: a move to CLOSE the programs hold back for the RST that should carry it
    /// (`tcperr-ebpf/src/emit.rs`, `hold_close`).
    held: PerCpuArray<MapData, StateChange>,
    /// Held moves delivered from here, by (cpu, socket, time): the programs may still release
    /// one into the ring buffer later, and that copy is dropped.
    claimed: Vec<(u32, u64, u64)>,
    last_sweep: Instant,
    pub plan: Plan,
    pub selected: Vec<Selected>,
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

/// Probes the running kernel: BTF, then a hook per source (tracefs, mounted if needed, only
/// for the hooks that need it).
pub fn probe_kernel() -> Result<Plan, StartError> {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(fail(
            "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): tcperr needs a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        ));
    }
    let btf = Btf::from_sys_fs().map_err(|e| fail(format!("reading kernel BTF: {e:#}")))?;
    probe::plan(&tracefs::Tracefs::default(), &btf).map_err(|e| fail(format!("{e:#}")))
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
        let mut ebpf = EbpfLoader::new()
            .override_global("LAYOUT", &plan.layout, true)
            .override_global("DISCARD", &u8::from(config.discard_records), true)
            .map_max_entries("EVENTS", rb)
            .load(OBJECT)
            .map_err(|e| {
                fail(format!(
                    "loading the eBPF object failed: {e} (tcperr needs Linux 5.8+ with the BPF ring buffer)"
                ))
            })?;
        let mut btf = None;
        let mut selected = Vec::new();
        for choice in &plan.choices {
            // (--hooks chooses between families: a source all of whose hooks are of one family
            // is not its business)
            let families_differ =
                choice.candidates.iter().any(|c| c.family != choice.candidates[0].family);
            let forced = config.hooks.filter(|_| families_differ);
            let mut sel = Selected { source: choice.source, hook: None, passed_over: Vec::new() };
            for candidate in &choice.candidates {
                if forced.is_some_and(|f| f != candidate.family) {
                    continue;
                }
                if config.raw_tracepoints_only
                    && matches!(
                        candidate.hook,
                        Ok(Hook { attach: Attach::BtfTracePoint { .. }, .. })
                    )
                {
                    continue;
                }
                let hook = match &candidate.hook {
                    Ok(h) => *h,
                    Err(why) => {
                        sel.passed_over.push(why.clone());
                        continue;
                    }
                };
                match attach(&mut ebpf, &mut btf, &hook) {
                    Ok(()) => {
                        sel.hook = Some(hook);
                        break;
                    }
                    Err(e) => {
                        // aya appends the verifier's log, empty when the kernel refused outright.
                        let e = e.trim_end().trim_end_matches(". Verifier output:");
                        sel.passed_over.push(format!("{}: {e}", hook.attach));
                    }
                }
            }
            for why in &sel.passed_over {
                log::warn!("{}: {why}", choice.source.name());
            }
            if let (Some(f), None) = (forced, sel.hook) {
                return Err(fail(format!(
                    "--hooks {}: {} cannot use it on this kernel ({})",
                    f.name(),
                    choice.source.name(),
                    sel.passed_over.join("; ")
                )));
            }
            selected.push(sel);
        }
        if selected.iter().all(|s| s.hook.is_none()) {
            let why: Vec<_> = selected
                .iter()
                .map(|s| format!("{}: {}", s.source.name(), s.passed_over.join("; ")))
                .collect();
            return Err(fail(format!(
                "no event source can be traced on this kernel ({})",
                why.join("; ")
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
        let held = PerCpuArray::try_from(take(&mut ebpf, "HELD_CLOSE")?)
            .map_err(|e| fail(e.to_string()))?;
        drop(btf);
        // Kernel BTF (parsed twice: offsets, fexit) was the largest allocation by far: give the
        // freed memory back now, or it stays in tcperr's resident set for its whole life.
        // SAFETY: malloc_trim only releases free heap memory.
        unsafe { libc::malloc_trim(0) };
        Ok(Self {
            ring,
            lost,
            held,
            claimed: Vec::new(),
            last_sweep: Instant::now(),
            plan,
            selected,
            _ebpf: ebpf,
        })
    }

    /// One entry per source: the hook that serves it on this kernel, or OFF and why.
    pub fn hook_summary(&self) -> Vec<String> {
        self.selected
            .iter()
            .map(|s| match s.hook {
                Some(h) => format!("{} via {}", s.source.name(), h.attach),
                None => format!("{} OFF ({})", s.source.name(), s.passed_over.join("; ")),
            })
            .collect()
    }

    /// Decodes every record waiting in the ring buffer and hands over its events; returns how
    /// many records there were. An RST that carries its socket's move to CLOSE
    /// ([`tcperr_common::RstSent::folded_close`]) is handed over as that move and then the RST,
    /// as if the kernel side had sent both. At most every [`SWEEP_EVERY`], moves to CLOSE the
    /// programs have held back for longer than [`HELD_FOR_LONG`] (an abort whose RST the kernel
    /// could not allocate) are handed over from their map.
    pub fn drain(&mut self, mut f: impl FnMut(Result<Event, DecodeError>)) -> usize {
        let mut claimed = std::mem::take(&mut self.claimed);
        let n = self.drain_records(|record| match record {
            Ok(Event::StateChange(c)) if was_claimed(&mut claimed, &c) => {}
            Ok(ev) => {
                let (close, ev) = ev.with_folded_close();
                if let Some(close) = close {
                    f(Ok(close));
                }
                f(Ok(ev));
            }
            Err(e) => f(Err(e)),
        });
        self.claimed = claimed;
        if self.last_sweep.elapsed() >= SWEEP_EVERY {
            self.last_sweep = Instant::now();
            self.claim_held(&mut f);
        }
        n
    }

    /// Test support: puts `close` in CPU `cpu`'s held slot (and empties the other CPUs'), as the
    /// programs would if the RST that should carry it never came (the kernel failing to
    /// allocate it cannot be provoked).
    #[doc(hidden)]
    pub fn hold_close_for_test(&mut self, cpu: usize, close: StateChange) -> Result<(), String> {
        let n = aya::util::nr_cpus().map_err(|(_, e)| e.to_string())?.get() as usize;
        let none = StateChange {
            header: EventHeader { kind: 0, cpu: 0, ts_ns: 0, pid_tgid: 0, comm: [0; 16], sk: 0 },
            sock: SockInfo::ZERO,
            oldstate: 0,
            newstate: 0,
            _pad0: 0,
            _pad1: 0,
        };
        let mut values = vec![none; n];
        *values.get_mut(cpu).ok_or("no such CPU")? = close;
        let values = PerCpuValues::try_from(values).map_err(|e| e.to_string())?;
        self.held.set(0, values, 0).map_err(|e| e.to_string())
    }

    fn claim_held(&mut self, f: &mut impl FnMut(Result<Event, DecodeError>)) {
        let Ok(values): Result<PerCpuValues<StateChange>, _> = self.held.get(&0, 0) else {
            return;
        };
        let now = monotonic_ns();
        for held in values.iter().filter(|h| h.header.sk != 0) {
            let key = held_key(held);
            if now.saturating_sub(held.header.ts_ns) < HELD_FOR_LONG.as_nanos() as u64
                || self.claimed.contains(&key)
            {
                continue;
            }
            // One claim per CPU at most: this one was held after the older claim, which the
            // programs released into the ring buffer then (and its copy was dropped there).
            self.claimed.retain(|k| k.0 != key.0);
            self.claimed.push(key);
            f(Ok(Event::StateChange(*held)));
        }
    }

    /// Decodes every record waiting in the ring buffer, as the programs wrote it (no move to
    /// CLOSE taken out of its RST, none claimed from the map); returns how many there were.
    pub fn drain_records(&mut self, mut f: impl FnMut(Result<Event, DecodeError>)) -> usize {
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

/// What tells one held move to CLOSE from another: its CPU, socket and time.
fn held_key(c: &StateChange) -> (u32, u64, u64) {
    (c.header.cpu, c.header.sk, c.header.ts_ns)
}

/// Whether `c` is a held move to CLOSE already handed over from the map (and forgets it).
fn was_claimed(claimed: &mut Vec<(u32, u64, u64)>, c: &StateChange) -> bool {
    let key = held_key(c);
    let before = claimed.len();
    claimed.retain(|k| *k != key);
    claimed.len() != before
}

fn program_of<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Program, String> {
    ebpf.program_mut(name).ok_or_else(|| format!("program {name} not in object"))
}

/// Loads and attaches one hook's program(s); on failure nothing of it stays loaded.
fn attach(ebpf: &mut Ebpf, btf: &mut Option<aya::Btf>, hook: &Hook) -> Result<(), String> {
    let res = attach_inner(ebpf, btf, hook);
    if res.is_err() {
        for name in [Some(hook.program), hook.ret_program].into_iter().flatten() {
            let _ = match ebpf.program_mut(name) {
                Some(Program::FExit(p)) => p.unload(),
                Some(Program::KProbe(p)) => p.unload(),
                Some(Program::TracePoint(p)) => p.unload(),
                Some(Program::RawTracePoint(p)) => p.unload(),
                Some(Program::BtfTracePoint(p)) => p.unload(),
                _ => Ok(()),
            };
        }
    }
    res
}

/// aya's parse of the kernel's BTF, made on first use (it is large: only hooks that need it).
fn kernel_btf(btf: &mut Option<aya::Btf>) -> Result<&aya::Btf, String> {
    if btf.is_none() {
        *btf = Some(aya::Btf::from_sys_fs().map_err(|e| format!("kernel BTF: {e}"))?);
    }
    btf.as_ref().ok_or_else(|| "kernel BTF unavailable".into())
}

fn attach_inner(ebpf: &mut Ebpf, btf: &mut Option<aya::Btf>, hook: &Hook) -> Result<(), String> {
    match hook.attach {
        Attach::TracePoint { category, name } => {
            let p: &mut TracePoint =
                program_of(ebpf, hook.program)?.try_into().map_err(|e| format!("{e}"))?;
            p.load().map_err(|e| format!("load: {e}"))?;
            p.attach(category, name).map_err(|e| format!("attach: {e}"))?;
        }
        Attach::RawTracePoint { name } => {
            let p: &mut RawTracePoint =
                program_of(ebpf, hook.program)?.try_into().map_err(|e| format!("{e}"))?;
            p.load().map_err(|e| format!("load: {e}"))?;
            p.attach(name).map_err(|e| format!("attach: {e}"))?;
        }
        Attach::BtfTracePoint { name } => {
            let btf = kernel_btf(btf)?;
            let p: &mut BtfTracePoint =
                program_of(ebpf, hook.program)?.try_into().map_err(|e| format!("{e}"))?;
            p.load(name, btf).map_err(|e| format!("load: {e}"))?;
            p.attach().map_err(|e| format!("attach: {e}"))?;
        }
        Attach::FExit { function } => {
            let btf = kernel_btf(btf)?;
            let p: &mut FExit =
                program_of(ebpf, hook.program)?.try_into().map_err(|e| format!("{e}"))?;
            p.load(function, btf).map_err(|e| format!("load: {e}"))?;
            p.attach().map_err(|e| format!("attach: {e}"))?;
        }
        Attach::KProbePair { function } => {
            let ret = hook.ret_program.ok_or("kprobe pair without a return program")?;
            for name in [hook.program, ret] {
                let p: &mut KProbe =
                    program_of(ebpf, name)?.try_into().map_err(|e| format!("{e}"))?;
                p.load().map_err(|e| format!("load: {e}"))?;
                p.attach(function, 0).map_err(|e| format!("attach: {e}"))?;
            }
        }
    }
    Ok(())
}
