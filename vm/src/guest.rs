//! `/init` of the reproduction VM (`cargo xtask vm`). Mounts what tcperr needs, brings `lo` up,
//! then for each hook family named on the kernel command line (`tcperr.families=`) starts
//! `/bin/tcperr trace --json [--hooks F]`, runs every scenario of `tcperr.scenarios=` in this
//! process, and prints one `TCPERR-RESULT {json}` line per scenario on the console. The exit
//! code (0: all passed) goes to QEMU's isa-debug-exit port on x86_64; on arm64 the guest powers
//! off and the host reads `TCPERR-GUEST done failed=...`.
use std::{
    ffi::CString,
    path::Path,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tcperr_scenarios::drive;

fn mount(src: &str, target: &str, fstype: &str) {
    let _ = std::fs::create_dir_all(target);
    let c = |s: &str| CString::new(s).unwrap_or_default();
    let (s, t, f) = (c(src), c(target), c(fstype));
    // SAFETY: valid NUL-terminated strings.
    if unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) } != 0 {
        println!("TCPERR-GUEST mount {fstype} on {target}: {}", std::io::Error::last_os_error());
    }
}

/// Ends the VM. On x86_64, QEMU's isa-debug-exit turns `code` into exit status
/// `(code << 1) | 1`; the arm64 board (`-M virt`) has no such port, so the guest powers off
/// (PSCI: QEMU exits 0) and the host reads the outcome from the `TCPERR-GUEST done` line.
fn exit_vm(code: u8) -> ! {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: ioperm/outb on the debug-exit port QEMU provides; power-off below is the fallback.
    unsafe {
        if libc::ioperm(0xf4, 1, 1) == 0 {
            std::arch::asm!("out dx, al", in("dx") 0xf4u16, in("al") code);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = code;
    // SAFETY: sync and reboot take no pointers.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn cmdline_list(cmdline: &str, key: &str, default: &[&str]) -> Vec<String> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .map(|v| v.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_else(|| default.iter().map(|s| (*s).to_owned()).collect())
}

fn main() {
    mount("proc", "/proc", "proc");
    mount("sysfs", "/sys", "sysfs");
    mount("devtmpfs", "/dev", "devtmpfs");
    mount("tmpfs", "/tmp", "tmpfs");
    mount("bpf", "/sys/fs/bpf", "bpf");
    if let Err(e) = tcperr_scenarios::loopback_up() {
        println!("TCPERR-GUEST lo up: {e}");
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let scenarios = cmdline_list(&cmdline, "tcperr.scenarios=", tcperr_scenarios::ALL);
    let families = cmdline_list(&cmdline, "tcperr.families=", &["default"]);
    // The oracle reads tracefs (mounting it); tcperr then starts without it, as on a machine
    // that never mounted it, and finds or mounts it only for a hook that needs it.
    let rst_reason = drive::kernel_reports_rst_reason();
    // SAFETY: a constant NUL-terminated path.
    if unsafe { libc::umount2(c"/sys/kernel/tracing".as_ptr(), 0) } != 0 {
        println!("TCPERR-GUEST umount tracefs: {}", std::io::Error::last_os_error());
    }
    println!("TCPERR-GUEST kernel={} rst_reason={rst_reason}", release.trim());
    let tcperr = Path::new("/bin/tcperr");
    if let Some(secs) = cmdline.split_whitespace().find_map(|w| w.strip_prefix("tcperr.bench=")) {
        let secs = secs.parse::<f64>().unwrap_or(3.0);
        let ok = bench(tcperr, &families, secs);
        println!("TCPERR-GUEST done failed={}", !ok);
        exit_vm(if ok { 0 } else { 1 });
    }
    if cmdline.split_whitespace().any(|w| w == "tcperr.check") {
        // `tcperr check` as a user would run it: each source's hook and why the ones before it
        // were passed over (`cargo xtask vm --check` prints these lines).
        // (its diagnostics go straight to the console, as they come: with RUST_LOG=debug on
        // the kernel command line, which the kernel hands to /init's environment, they show
        // where a slow start spends its time)
        let check = std::process::Command::new(tcperr)
            .arg("check")
            .stderr(std::process::Stdio::inherit())
            .output();
        match check {
            Ok(out) => {
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    println!("TCPERR-CHECK {line}");
                }
                println!("TCPERR-CHECK (exit {:?})", out.status.code());
            }
            Err(e) => println!("TCPERR-CHECK cannot run tcperr check: {e}"),
        }
    }
    let mut failed = false;
    for family in &families {
        failed |= !run_family(tcperr, family, &scenarios, rst_reason);
    }
    println!("TCPERR-GUEST done failed={failed}");
    exit_vm(if failed { 1 } else { 0 });
}

/// Runs every scenario under one `tcperr trace` with hook family `family` and prints a
/// `TCPERR-RESULT` line per scenario; returns whether all passed (a family this kernel cannot
/// serve, exit 2, is not a failure).
fn run_family(tcperr: &Path, family: &str, scenarios: &[String], rst_reason: bool) -> bool {
    let args: Vec<&str> = if family == "default" { vec![] } else { vec!["--hooks", family] };
    let t0 = Instant::now();
    // Loading can take minutes under emulation (5.10's verifier walks the kprobe programs far
    // longer than later ones): say so every 30 s, so that the host does not take the quiet for
    // a hung guest, and give tcperr 5 minutes.
    let started = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let heartbeat = {
        let (started, family) = (started.clone(), family.to_owned());
        std::thread::spawn(move || {
            let mut waited = 0;
            while !started.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                waited += 1;
                if waited % 30 == 0 {
                    println!("TCPERR-GUEST family={family} tcperr still starting ({waited} s)");
                }
            }
        })
    };
    let traced = drive::start(tcperr, &args, Duration::from_secs(300));
    started.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = heartbeat.join();
    let traced = match traced {
        Ok(t) => t,
        Err((code, stderr)) => {
            // Exit 2: this kernel cannot trace with that family (a hook it lacks); anything
            // else is a failure, and so is a program the kernel refused to load: a family that
            // probing chose must load (a verifier refusal is ours to fix, not the kernel's).
            let unavailable =
                code == Some(2) && family != "default" && !stderr.contains("BPF_PROG_LOAD");
            println!(
                "TCPERR-RESULT {}",
                json!({"family": family, "status": if unavailable { "unavailable" } else { "start-failed" }, "exit": code, "stderr": stderr})
            );
            return unavailable;
        }
    };
    let start_secs = t0.elapsed().as_secs_f64();
    let hooks = traced.hooks.clone();
    let mut runs = Vec::new();
    for name in scenarios {
        let t = Instant::now();
        runs.push((name.clone(), tcperr_scenarios::run(name), t.elapsed().as_secs_f64()));
    }
    let stopped = match drive::stop(traced) {
        Ok(s) => s,
        Err(e) => {
            println!(
                "TCPERR-RESULT {}",
                json!({"family": family, "status": "stop-failed", "error": e})
            );
            return false;
        }
    };
    let mut ok = true;
    for (name, run, secs) in runs {
        let result = match run {
            Ok(run) => {
                let got = run.observed_lines(&stopped.events);
                let expected = run.expected_lines(rst_reason);
                let pass = got == expected && stopped.code == 0;
                ok &= pass;
                json!({"family": family, "hooks": hooks, "scenario": name, "status": if pass { "pass" } else { "fail" },
                       "got": got, "expected": expected, "secs": secs, "tcperr_start_secs": start_secs})
            }
            Err(e) => {
                ok = false;
                json!({"family": family, "scenario": name, "status": "fail", "error": e, "secs": secs})
            }
        };
        println!("TCPERR-RESULT {result}");
    }
    let stats = stopped.stats.as_ref().map_or("no stats line".to_owned(), Value::to_string);
    println!("TCPERR-GUEST family={family} {stats}");
    ok
}

/// CPU time a process's eBPF programs spent and how often they ran (`run_time_ns`, `run_cnt` of
/// each program fd in /proc/PID/fdinfo; needs kernel.bpf_stats_enabled).
fn prog_run_stats(pid: u32) -> (u64, u64) {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return (0, 0) };
    let mut seen = std::collections::BTreeSet::new();
    let (mut ns, mut cnt) = (0, 0);
    for info in dir.flatten().filter_map(|e| std::fs::read_to_string(e.path()).ok()) {
        let field = |k: &str| {
            info.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(id), Some(t), Some(c)) =
            (field("prog_id:"), field("run_time_ns:"), field("run_cnt:"))
            && seen.insert(id)
        {
            ns += t;
            cnt += c;
        }
    }
    (ns, cnt)
}

/// `cargo xtask bench --vm`: per hook family, the in-kernel cost per run of tcperr's programs
/// over a ping-pong (mostly the hot send/recv hooks), and the RST-storm rate with tcperr against
/// untraced. Under emulation only ratios mean anything: the host side prints them.
fn bench(tcperr: &Path, families: &[String], secs: f64) -> bool {
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1");
    let storm = |secs: f64| {
        let t = Instant::now();
        let (s, _) = tcperr_scenarios::storm::run(1, Duration::from_secs_f64(secs));
        s.connections as f64 / t.elapsed().as_secs_f64()
    };
    let untraced = storm(secs);
    println!("TCPERR-BENCH {}", json!({"family": "untraced", "storm_rate": untraced}));
    let mut ok = true;
    for family in families {
        let args: Vec<&str> = if family == "default" { vec![] } else { vec!["--hooks", family] };
        let traced = match drive::start(tcperr, &args, Duration::from_secs(120)) {
            Ok(t) => t,
            Err((code, stderr)) => {
                ok &= code == Some(2);
                let why = stderr.lines().last().unwrap_or("").to_owned();
                println!("TCPERR-BENCH {}", json!({"family": family, "unavailable": why}));
                continue;
            }
        };
        let pid = traced.pid();
        let (ns0, cnt0) = prog_run_stats(pid);
        let pp = tcperr_scenarios::load::ping_pong(20_000, Duration::from_secs(120));
        let (ns1, cnt1) = prog_run_stats(pid);
        // The storm runs without the timing bpf_stats adds to every program run.
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0");
        let rate = storm(secs);
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1");
        let stopped = drive::stop(traced);
        let stats = stopped.as_ref().ok().and_then(|s| s.stats.clone());
        ok &= pp.is_ok() && stopped.is_ok();
        let runs = cnt1.saturating_sub(cnt0);
        println!(
            "TCPERR-BENCH {}",
            json!({
                "family": family,
                "hooks": stopped.as_ref().map(|_| "ok").unwrap_or("stop failed"),
                "ns_per_run": if runs > 0 { (ns1 - ns0) as f64 / runs as f64 } else { 0.0 },
                "runs": runs,
                "storm_rate": rate,
                "storm_ratio": rate / untraced,
                "stats": stats,
            })
        );
    }
    ok
}
