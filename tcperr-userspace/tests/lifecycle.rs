//! tcperr's lifetime on a real kernel: `tcperr check`, nothing left attached after SIGKILL, a
//! closed output pipe, and tracing with only the documented capabilities. Needs root.
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use tcperr_scenarios::drive;

mod support;

const TCPERR: &str = env!("CARGO_BIN_EXE_tcperr");

#[test]
fn check_names_the_hook_of_every_source_and_exits_0() {
    let out = Command::new(TCPERR).arg("check").output().expect("run tcperr check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for source in [
        "rst_received",
        "rst_sent",
        "send_error",
        "recv_error/recv_eof",
        "state_change",
        "socket_error",
        "accept_queue_full",
    ] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(source))
            .unwrap_or_else(|| panic!("{source} missing: {text}"));
        assert!(
            line.contains("tracepoint")
                || line.contains("tp_btf")
                || line.contains("fexit")
                || line.contains("kprobe"),
            "{line}"
        );
    }
    assert!(text.contains("tracing:     can run"), "{text}");
}

#[test]
fn nothing_stays_attached_after_sigkill() {
    let t = drive::start(Path::new(TCPERR), &[], Duration::from_secs(30)).expect("tcperr starts");
    let ids = drive::prog_ids(t.pid());
    assert!(ids.len() >= 7, "tcperr should hold its programs while it runs: {ids:?}");
    assert_eq!(drive::still_loaded(&ids), ids, "bpftool sees them");
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(t.pid() as i32, libc::SIGKILL) }, 0);
    let stopped = drive::stop(t);
    assert!(stopped.is_err() || stopped.is_ok_and(|s| s.code != 0));
    std::thread::sleep(Duration::from_millis(200));
    let left = drive::still_loaded(&ids);
    assert_eq!(left, Vec::<u32>::new(), "programs of the killed tcperr are still loaded");
}

#[test]
fn a_closed_output_pipe_ends_tcperr_quietly_with_exit_0() {
    // `tcperr trace | head -1`: the reader takes the header line and goes away.
    let mut child = Command::new(TCPERR)
        .arg("trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tcperr");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut header = String::new();
    stdout.read_line(&mut header).expect("header line");
    assert!(header.starts_with("TIME"), "{header}");
    drop(stdout);
    // Events to write: the next write meets the closed pipe.
    for _ in 0..3 {
        tcperr_scenarios::run("refused").expect("refused");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("tcperr exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
}

#[test]
fn output_and_stderr_through_one_closed_pipe_end_tcperr_quietly_with_exit_0() {
    // `tcperr trace 2>&1 | head -3`: both streams go to the reader, which goes away.
    let (reader, writer) = std::io::pipe().expect("pipe");
    let mut child = Command::new(TCPERR)
        .arg("trace")
        .stdout(writer.try_clone().expect("dup"))
        .stderr(writer)
        .spawn()
        .expect("spawn tcperr");
    let mut reader = BufReader::new(reader);
    let mut line = String::new();
    while !line.starts_with("TIME") {
        line.clear();
        assert_ne!(reader.read_line(&mut line).expect("read"), 0, "tcperr ended early");
    }
    drop(reader);
    for _ in 0..3 {
        tcperr_scenarios::run("refused").expect("refused");
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = child.wait().expect("tcperr exits");
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn with_proc_hidden_root_is_still_root() {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new(TCPERR);
    cmd.arg("check");
    // SAFETY: only system calls on constant strings between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let (none, flags) = (std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE);
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(none, c"/".as_ptr(), none, flags, std::ptr::null()) != 0
                || libc::umount2(c"/proc".as_ptr(), libc::MNT_DETACH) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run tcperr check without /proc");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("privileges:  ok"), "{text}");
}

#[test]
fn tracing_runs_with_only_cap_bpf_and_cap_perfmon() {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set=-all,+bpf,+perfmon", "--inh-caps=-all", TCPERR]);
    let t =
        drive::start_command(cmd, &[], Duration::from_secs(30)).unwrap_or_else(|(code, stderr)| {
            panic!("tcperr with CAP_BPF+CAP_PERFMON did not start ({code:?}): {stderr}")
        });
    let run = tcperr_scenarios::run("reset_by_abort").expect("scenario");
    let stopped = drive::stop(t).expect("stop");
    assert_eq!(stopped.code, 0, "{:#?}", stopped.stderr);
    support::assert_all_schema(stopped.events.iter().chain(&stopped.stats));
    assert_eq!(
        run.observed_lines(&stopped.events),
        run.expected_lines(drive::kernel_reports_rst_reason())
    );
}

/// As a user other than root (nobody), holding exactly CAP_BPF and CAP_PERFMON as ambient
/// capabilities: the way a non-root service account runs tcperr. Every source attaches (on a
/// kernel whose hooks need no tracefs) but `syn_dropped`, which needs kernel addresses from
/// /proc/kallsyms (CAP_SYSLOG) and is off saying so, and the scenario's events are reported;
/// the processes, root's, are named from the kernel's records, not from their /proc entries
/// (closed to nobody).
#[test]
fn tracing_runs_as_a_non_root_user_with_only_cap_bpf_and_cap_perfmon() {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--inh-caps=-all,+bpf,+perfmon",
        "--ambient-caps=-all,+bpf,+perfmon",
        TCPERR,
    ]);
    let t = drive::start_command(cmd, &[], Duration::from_secs(30)).unwrap_or_else(|(code, e)| {
        panic!("tcperr as nobody with CAP_BPF+CAP_PERFMON did not start ({code:?}): {e}")
    });
    let off: Vec<&str> = t.hooks.split(", ").filter(|h| h.contains(" OFF")).collect();
    assert!(
        off.iter().all(|h| h.starts_with("syn_dropped OFF") && h.contains("kptr_restrict")),
        "every source attaches but syn_dropped, for want of kernel addresses: {}",
        t.hooks
    );
    let run = tcperr_scenarios::run("broken_pipe").expect("scenario");
    let stopped = drive::stop(t).expect("stop");
    assert_eq!(stopped.code, 0, "{:#?}", stopped.stderr);
    support::assert_all_schema(stopped.events.iter().chain(&stopped.stats));
    assert_eq!(
        run.observed_lines(&stopped.events),
        run.expected_lines(drive::kernel_reports_rst_reason())
    );
}

#[test]
fn under_a_30_second_rst_storm_tcperr_keeps_up_its_memory_is_bounded_and_counts_add_up() {
    let t = drive::start(Path::new(TCPERR), &["--summary-only"], Duration::from_secs(30))
        .expect("tcperr starts");
    let pid = t.pid();
    let (storm, ports) = tcperr_scenarios::storm::run(2, Duration::from_secs(30));
    let rss = drive::status_kib(pid, "VmHWM");
    let stopped = drive::stop(t).expect("stop");
    assert_eq!(stopped.code, 0, "{:#?}", stopped.stderr);
    support::assert_all_schema(stopped.events.iter().chain(&stopped.stats));
    assert_eq!(storm.unexpected, 0);
    assert!(storm.connections > 10_000, "the storm made only {} connections", storm.connections);
    // Each storm connection: one error a program received, the client's failed read
    // (ECONNRESET); the RST that announced it is not counted again.
    let me = std::process::id();
    let resets: u64 = stopped
        .events
        .iter()
        .filter(|r| r["kind"] == "summary" && r["pid"] == me && r["errno"] == "ECONNRESET")
        .filter(|r| r["comm"].as_str().is_some_and(|c| c.starts_with("storm")))
        .filter_map(|r| r["count"].as_u64())
        .sum();
    let lost = stopped.stat("lost").expect("the stats line's lost count");
    let summary = stopped.stats.as_ref().map(ToString::to_string).unwrap_or_default();
    let expected = storm.connections;
    assert!(
        resets <= expected && resets + lost >= expected,
        "{resets} resets + {lost} lost vs {expected} ({summary}; ports {ports:?})"
    );
    assert!(rss < 64 * 1024, "peak RSS {rss} KiB");
    eprintln!(
        "storm: {} connections, {resets} resets reported, {lost} lost, peak RSS {rss} KiB; {summary}",
        storm.connections
    );
}

#[test]
fn rst_reason_names_from_btf_are_the_names_tcp_send_reset_prints() {
    let plan = tcperr_userspace::load::probe_kernel().expect("probe the kernel");
    let root = tcperr_userspace::tracefs::find_or_mount().expect("tracefs");
    let format = tcperr_userspace::tracefs::read_format(&root, "tcp", "tcp_send_reset")
        .expect("read the format")
        .expect("tcp_send_reset is in every kernel tcperr traces");
    // Empty on both sides where the kernel reports no reasons (before 6.10).
    assert_eq!(plan.rst_reasons, format.symbols("reason"));
}

#[test]
fn the_object_holds_every_named_program_and_map_and_nothing_else() {
    use std::collections::BTreeSet;
    use tcperr_common::names;
    let ebpf =
        aya::EbpfLoader::new().load(tcperr_userspace::load::OBJECT).expect("load the object");
    let programs: BTreeSet<&str> = ebpf.programs().map(|(name, _)| name).collect();
    assert_eq!(programs, names::program::ALL.into_iter().collect());
    // (the globals' sections, .rodata and the like, are maps to aya too)
    let maps: BTreeSet<&str> =
        ebpf.maps().map(|(name, _)| name).filter(|n| !n.starts_with('.')).collect();
    assert_eq!(maps, names::map::ALL.into_iter().collect());
}

#[test]
fn out_of_file_descriptors_tcperr_says_so_and_exits_2_from_check_and_trace() {
    // Under a hard RLIMIT_NOFILE too low for its programs, links and maps (tcperr raises its
    // soft limit to the hard one, not further), a source cannot be attached: neither check nor
    // trace may go on as if tracing could run.
    use std::os::unix::process::CommandExt;
    for limit in [16u64, 24] {
        for args in [&["check"][..], &["trace"][..]] {
            let mut cmd = Command::new(TCPERR);
            cmd.args(args).stdin(Stdio::null());
            // SAFETY: setrlimit between fork and exec, on the child's own limits.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
            let out = cmd.output().expect("run tcperr");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.status.code(), Some(2), "limit {limit}, {args:?}: {text}");
            assert!(
                text.contains("Too many open files") && text.contains("open-files limit"),
                "limit {limit}, {args:?}: {text}"
            );
        }
    }
}
