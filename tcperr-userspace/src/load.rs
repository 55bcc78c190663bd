//! Loading and attaching: the eBPF object embedded in the binary, configured with the running
//! kernel's layout (from [`crate::probe`]), the first hook of each source that loads, one ring
//! buffer. Reading it is [`crate::read`].
use std::fmt;

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, FEntry, FExit, KProbe, Program, RawTracePoint, TracePoint},
};
use tcperr_common::{StateChange, names};

use crate::{
    btf::Btf,
    held_close::HeldClose,
    privileges::check_privileges,
    probe::{self, Attach, Choice, Family, Hook, Plan},
    tracefs,
};

/// The eBPF object, built by build.rs and embedded in the binary.
pub const OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcperr"));

/// Attaches the benchmark floor programs (`tcperr-ebpf/src/floor.rs`) on the hot hooks; they
/// stay attached while the returned object lives.
pub fn attach_floor() -> Result<Ebpf, String> {
    let mut ebpf = EbpfLoader::new().load(OBJECT).map_err(|e| e.to_string())?;
    let mut btf = None;
    for (program, name) in [
        (names::program::FLOOR_SOCK_SEND_LENGTH, "sock_send_length"),
        (names::program::FLOOR_SOCK_RECV_LENGTH, "sock_recv_length"),
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
    /// `--no-drops`: the sources on freed packets (`drop`, `syn_dropped`) stay off.
    pub no_drops: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ringbuf_bytes: 4 << 20,
            hooks: None,
            discard_records: false,
            raw_tracepoints_only: false,
            no_drops: false,
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

/// tcperr's programs, attached, and the maps userspace reads ([`crate::read`]).
pub struct Tracer {
    pub(crate) ring: RingBuf<MapData>,
    pub(crate) lost: PerCpuArray<MapData, u64>,
    pub(crate) held: HeldClose,
    pub plan: Plan,
    pub selected: Vec<Selected>,
    /// The programs' diagnostics (aya-log), with `-vv` only (`tcperr-ebpf/src/diag.rs`).
    pub(crate) logs: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    // Keeps programs and links alive; dropping it detaches everything.
    ebpf: Ebpf,
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
        raise_open_files_limit();
        let plan = probe_kernel()?;
        // The programs' diagnostics are on with -vv (log's level debug), else dead code.
        let log_level = if log::max_level() >= log::LevelFilter::Debug {
            aya_log::Level::Debug as u8
        } else {
            0
        };
        let mut ebpf = EbpfLoader::new()
            .override_global(names::global::LAYOUT, &plan.layout, true)
            .override_global(names::global::DISCARD, &u8::from(config.discard_records), true)
            .override_global(names::global::AYA_LOG_LEVEL, &log_level, true)
            .map_max_entries(names::map::EVENTS, rb)
            .load(OBJECT)
            .map_err(|e| {
                let e = chain(&e);
                let hint = if e.contains("(os error 24)") {
                    "raise the open-files limit (ulimit -n: tcperr needs about 32)"
                } else {
                    "tcperr needs Linux 5.8+ with the BPF ring buffer"
                };
                fail(format!("loading the eBPF object failed: {e}: {hint}"))
            })?;
        let mut btf = None;
        let mut selected = Vec::new();
        for choice in &plan.choices {
            selected.push(select(&mut ebpf, &mut btf, choice, config)?);
        }
        if let Some(why) = out_of_resources(&selected) {
            return Err(fail(why));
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
        // The listeners that listened before now, for the SYNs their full queues drop.
        if selected.iter().any(|s| s.source == probe::Source::SynDropped && s.hook.is_some()) {
            let t0 = std::time::Instant::now();
            match kernel_btf(&mut btf).and_then(|b| crate::known_listeners::note_all(&mut ebpf, b))
            {
                Ok(w) => {
                    log::debug!(
                        "syn_dropped: listeners noted in {} network namespaces in {:.1} ms",
                        w.namespaces,
                        t0.elapsed().as_secs_f64() * 1e3
                    );
                    for why in &w.skipped {
                        log::warn!("syn_dropped: listeners already listening not known in {why}");
                    }
                }
                Err(e) => log::warn!(
                    "syn_dropped: listeners that listened before tcperr started are not known: {e}"
                ),
            }
        }
        let take = |ebpf: &mut Ebpf, name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| fail(format!("map {name} missing from the eBPF object")))
        };
        let ring = RingBuf::try_from(take(&mut ebpf, names::map::EVENTS)?)
            .map_err(|e| fail(e.to_string()))?;
        let lost = PerCpuArray::try_from(take(&mut ebpf, names::map::LOST)?)
            .map_err(|e| fail(e.to_string()))?;
        let held = PerCpuArray::try_from(take(&mut ebpf, names::map::HELD_CLOSE)?)
            .map_err(|e| fail(e.to_string()))?;
        let logs = match log_level {
            0 => None,
            _ => Some(
                aya_log::EbpfLogger::init(&mut ebpf)
                    .map_err(|e| fail(format!("the programs' diagnostics: {e}")))?,
            ),
        };
        drop(btf);
        // Kernel BTF (parsed twice: offsets, fexit) was the largest allocation by far: give the
        // freed memory back now, or it stays in glibc's heap, in tcperr's resident set, for its
        // whole life. (musl, which the arm64 VM guests' static build uses, has no malloc_trim:
        // its allocator unmaps large freed blocks itself.)
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim only releases free heap memory.
        unsafe {
            libc::malloc_trim(0)
        };
        Ok(Self { ring, lost, held: HeldClose::new(held), plan, selected, logs, ebpf })
    }

    /// Attaches the fork tracepoint that follows `tcperr trace -- CMD`'s descendants and hands
    /// over the map of followed processes (`tcperr-ebpf/src/sched_process_fork.rs`), with a
    /// descriptor of it for the command's process, which joins the map before it execs.
    pub fn follow_descendants(
        &mut self,
    ) -> Result<(aya::maps::HashMap<MapData, u32, u8>, std::os::fd::OwnedFd), StartError> {
        if self.plan.layout.task_tgid == tcperr_common::ABSENT {
            return Err(fail(
                "this kernel's BTF has no task_struct.tgid: tcperr cannot follow a command's processes",
            ));
        }
        let hook = Hook::new(
            names::program::SCHED_PROCESS_FORK,
            Attach::RawTracePoint { name: "sched_process_fork" },
        );
        attach(&mut self.ebpf, &mut None, &hook).map_err(|e| {
            fail(format!("following the command's processes: {}: {e}", hook.attach))
        })?;
        let map = self.ebpf.take_map(names::map::FOLLOWED).ok_or_else(|| {
            fail(format!("map {} missing from the eBPF object", names::map::FOLLOWED))
        })?;
        let aya::maps::Map::HashMap(data) = &map else {
            return Err(fail(format!("map {} is not a hash map", names::map::FOLLOWED)));
        };
        let fd = std::os::fd::AsFd::as_fd(data.fd())
            .try_clone_to_owned()
            .map_err(|e| fail(format!("map {}: {e}", names::map::FOLLOWED)))?;
        Ok((aya::maps::HashMap::try_from(map).map_err(|e| fail(e.to_string()))?, fd))
    }

    /// Test support: see [`HeldClose::hold_for_test`].
    #[doc(hidden)]
    pub fn hold_close_for_test(&mut self, cpu: usize, close: StateChange) -> Result<(), String> {
        self.held.hold_for_test(cpu, close)
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
}

/// The first candidate hook of `choice` that loads and attaches (within `--hooks`), and why the
/// ones before it did not.
fn select(
    ebpf: &mut Ebpf,
    btf: &mut Option<aya::Btf>,
    choice: &Choice,
    config: &Config,
) -> Result<Selected, StartError> {
    // (--hooks chooses the family of the socket calls, which have one in each. Another source
    // with hooks of several families, socket_error, tries the chosen family's first and keeps
    // the others as fallbacks: --hooks proves each path where the kernel has it, and never
    // turns that source off.)
    let socket_call = matches!(choice.source, probe::Source::SendError | probe::Source::RecvResult);
    let forced = config.hooks.filter(|_| socket_call);
    let mut candidates: Vec<&probe::Candidate> = choice.candidates.iter().collect();
    if let Some(f) = config.hooks.filter(|_| !socket_call) {
        candidates.sort_by_key(|c| c.family != f); // (stable: the order within each stays)
    }
    let mut sel = Selected { source: choice.source, hook: None, passed_over: Vec::new() };
    if config.no_drops && matches!(choice.source, probe::Source::Drop | probe::Source::SynDropped) {
        sel.passed_over.push("--no-drops".into());
        return Ok(sel);
    }
    for candidate in candidates {
        if forced.is_some_and(|f| f != candidate.family) {
            continue;
        }
        if config.raw_tracepoints_only
            && matches!(candidate.hook, Ok(Hook { attach: Attach::BtfTracePoint { .. }, .. }))
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
        match attach(ebpf, btf, &hook) {
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
    if let Some(h) = &sel.hook {
        log::debug!("{}: {}", choice.source.name(), h.attach);
    }
    if let (Some(f), None) = (forced, sel.hook) {
        return Err(fail(format!(
            "--hooks {}: {} cannot use it on this kernel ({})",
            f.name(),
            choice.source.name(),
            sel.passed_over.join("; ")
        )));
    }
    Ok(sel)
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
                Some(Program::FEntry(p)) => p.unload(),
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

/// An error with the errors that caused it (aya says which syscall failed, its source says
/// with which errno: "`bpf_raw_tracepoint_open` failed: Too many open files (os error 24)").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            s = format!("{s}: {text}");
        }
        source = cause.source();
    }
    s
}

/// Raises the soft limit on open files to the hard limit: every program, link and map is a
/// file descriptor (as libbpf-based tools do).
fn raise_open_files_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A source turned off because the process ran out of a resource, not because the kernel
/// lacks a hook: tracing cannot run as it should, with what to do about it.
fn out_of_resources(selected: &[Selected]) -> Option<String> {
    const SHORT: [(&str, &str); 3] = [
        ("(os error 24)", "raise the open-files limit (ulimit -n: tcperr needs about 32)"),
        ("(os error 23)", "the system's open-files table is full (fs.file-max)"),
        ("(os error 12)", "the kernel is out of memory for BPF"),
    ];
    let off = selected.iter().filter(|s| s.hook.is_none());
    for s in off {
        for why in &s.passed_over {
            if let Some((_, advice)) = SHORT.iter().find(|(e, _)| why.contains(e)) {
                return Some(format!("{} cannot be attached ({why}): {advice}", s.source.name()));
            }
        }
    }
    None
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
            p.load().map_err(|e| format!("load: {}", chain(&e)))?;
            p.attach(category, name).map_err(|e| format!("attach: {}", chain(&e)))?;
        }
        Attach::RawTracePoint { name } => {
            let p: &mut RawTracePoint =
                program_of(ebpf, hook.program)?.try_into().map_err(|e| format!("{e}"))?;
            p.load().map_err(|e| format!("load: {}", chain(&e)))?;
            p.attach(name).map_err(|e| format!("attach: {}", chain(&e)))?;
        }
        Attach::BtfTracePoint { name } => {
            let btf = kernel_btf(btf)?;
            let p: &mut BtfTracePoint =
                program_of(ebpf, hook.program)?.try_into().map_err(|e| format!("{e}"))?;
            p.load(name, btf).map_err(|e| format!("load: {}", chain(&e)))?;
            p.attach().map_err(|e| format!("attach: {}", chain(&e)))?;
        }
        Attach::FExit { function, .. } => {
            let btf = kernel_btf(btf)?;
            let p: &mut FExit =
                program_of(ebpf, hook.program)?.try_into().map_err(|e| format!("{e}"))?;
            p.load(function, btf).map_err(|e| format!("load: {}", chain(&e)))?;
            p.attach().map_err(|e| format!("attach: {}", chain(&e)))?;
        }
        Attach::FEntry { function } => {
            let btf = kernel_btf(btf)?;
            let p: &mut FEntry =
                program_of(ebpf, hook.program)?.try_into().map_err(|e| format!("{e}"))?;
            p.load(function, btf).map_err(|e| format!("load: {}", chain(&e)))?;
            p.attach().map_err(|e| format!("attach: {}", chain(&e)))?;
        }
        Attach::KProbe { function } => {
            let p: &mut KProbe =
                program_of(ebpf, hook.program)?.try_into().map_err(|e| format!("{e}"))?;
            p.load().map_err(|e| format!("load: {}", chain(&e)))?;
            p.attach(function, 0).map_err(|e| format!("attach: {}", chain(&e)))?;
        }
        Attach::KProbePair { function } => {
            let ret = hook.ret_program.ok_or("kprobe pair without a return program")?;
            for name in [hook.program, ret] {
                let p: &mut KProbe =
                    program_of(ebpf, name)?.try_into().map_err(|e| format!("{e}"))?;
                p.load().map_err(|e| format!("load: {}", chain(&e)))?;
                p.attach(function, 0).map_err(|e| format!("attach: {}", chain(&e)))?;
            }
        }
    }
    Ok(())
}
