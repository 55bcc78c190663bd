//! The built `tcperr` binary as a separate process: `tcperr trace --json` while scenarios run in
//! this process; exit on SIGINT with a summary and nothing left attached; bad input and missing
//! privilege give exit code 2 and one line. Needs root.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use tcperr_scenarios::drive::{self, Stopped, Traced};

mod support;

const TCPERR: &str = env!("CARGO_BIN_EXE_tcperr");

fn start(args: &[&str]) -> Traced {
    drive::start(Path::new(TCPERR), args, Duration::from_secs(30))
        .unwrap_or_else(|(code, stderr)| panic!("tcperr did not start (exit {code:?}): {stderr}"))
}

/// Stops `t`; every line it printed is an object of the documented schema.
fn stop(t: Traced) -> Stopped {
    let stopped = drive::stop(t).unwrap_or_else(|e| panic!("stopping tcperr: {e}"));
    support::assert_all_schema(stopped.events.iter().chain(&stopped.stats));
    stopped
}

#[test]
fn trace_json_reports_scenarios_run_by_another_process_and_detaches_on_sigint() {
    let all = start(&[]);
    let programs = drive::prog_ids(all.pid());
    assert!(programs.len() >= 7, "tcperr holds its programs: {programs:?}");
    let epipe_only = start(&["--errno", "EPIPE"]);
    let summary_only = start(&["--summary-only"]);
    let broken_pipe = tcperr_scenarios::run("broken_pipe").expect("broken_pipe");
    let refused = tcperr_scenarios::run("refused").expect("refused");
    // SIGUSR1: the summary so far, where the events go, and tracing goes on.
    std::thread::sleep(Duration::from_millis(500)); // (the scenarios' events are read by now)
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(all.pid() as i32, libc::SIGUSR1) }, 0);
    let Stopped { events: rows, .. } = stop(summary_only);
    let all = stop(all);
    let Stopped { code, events, stderr, .. } = &all;
    let Stopped { code: code_epipe, events: events_epipe, .. } = stop(epipe_only);
    assert_eq!((*code, code_epipe), (0, 0), "exit codes; stderr: {stderr:#?}");
    // The stats line ends the output, and its counts add up.
    let stat = |name| all.stat(name).unwrap_or_else(|| panic!("no {name}: {:?}", all.stats));
    assert_eq!((stat("lost"), stat("undecodable")), (0, 0));
    assert!(stat("events_seen") >= stat("printed") + stat("folded"), "{:?}", all.stats);
    let reports =
        events.iter().filter(|e| e["kind"] != "repeated" && e["kind"] != "summary").count() as u64;
    assert_eq!(stat("printed"), reports, "every printed report is a line");
    let rst_reason = drive::kernel_reports_rst_reason();
    for run in [&broken_pipe, &refused] {
        assert_eq!(run.observed_lines(events), run.expected_lines(rst_reason), "{}", run.scenario);
    }
    // The second, filtered process saw the same events independently, and only EPIPE ones.
    let epipe: Vec<String> = broken_pipe
        .expected_lines(rst_reason)
        .into_iter()
        .filter(|l| l.contains(" EPIPE "))
        .collect();
    assert_eq!(broken_pipe.observed_lines(&events_epipe), epipe);
    assert!(refused.observed_lines(&events_epipe).is_empty());
    // (`repeated` lines are another test's storm, folded; summary rows are checked below)
    for e in events.iter().filter(|e| e["kind"] != "repeated" && e["kind"] != "summary") {
        for field in [
            "time",
            "kind",
            "pid",
            "tid",
            "comm",
            "laddr",
            "lport",
            "raddr",
            "rport",
            "state",
            "errno",
            "error",
            "explanation",
        ] {
            assert!(e.get(field).is_some(), "field {field} missing in {e}");
        }
    }
    assert_eq!(drive::still_loaded(&programs), Vec::<u32>::new(), "programs left loaded");
    // The summary goes where the events go, in their format: with --json, `summary` objects
    // on stdout, on SIGUSR1 and on exit (our EPIPE row twice); no table on stderr.
    let mine = |r: &&serde_json::Value| r["kind"] == "summary" && r["pid"] == std::process::id();
    let epipe_rows = events.iter().filter(mine).filter(|r| r["errno"] == "EPIPE").count();
    assert_eq!(epipe_rows, 2, "summary on SIGUSR1 and on exit: {events:#?}");
    assert!(!stderr.iter().any(|l| l.starts_with("ERROR ")), "no table on stderr: {stderr:#?}");
    // --summary-only: no events, one row per errno × process × peer, counting what programs
    // received, each once: the client's failed write, not also the RST that announced it.
    let epipe = rows.iter().filter(mine).find(|r| r["errno"] == "EPIPE").expect("EPIPE row");
    assert_eq!((epipe["comm"].as_str(), epipe["count"].as_u64()), (Some("client"), Some(1)));
    assert!(rows.iter().all(|r| r["kind"] == "summary"), "only summary rows: {rows:#?}");
}

fn run_tcperr(args: &[&str], as_nobody: bool) -> (i32, String) {
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", TCPERR]);
        c
    } else {
        Command::new(TCPERR)
    };
    let out = cmd.args(args).stdout(Stdio::null()).output().expect("run tcperr");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_input_exits_2_with_a_line_naming_the_problem() {
    let cases: &[(&[&str], &str)] = &[
        (&["trace", "--port", "0"], "1-65535"),
        (&["trace", "--port", "http"], "not a TCP port"),
        (&["trace", "--pid", "-1"], "'-1'"),
        (&["trace", "--pid", "x"], "not a process id"),
        (&["trace", "--errno", "EWHAT"], "unknown errno name"),
        (&["trace", "--comm", ""], "empty process name"),
        (&["trace", "--bogus"], "--bogus"),
        (&["trace", "--ringbuf-size", "1000"], "power of two"),
        (&["trace", "--ringbuf-size", "4T"], "K, M or G"),
        (&["trace", "--errno", "EAGAIN"], "never reported"),
        (&["trace", "--hooks", "uprobe"], "use fexit, kprobe or tracepoint"),
        (&["frobnicate"], "frobnicate"),
        (&[], "Usage"),
    ];
    for (args, needle) in cases {
        let (code, stderr) = run_tcperr(args, false);
        assert_eq!(code, 2, "tcperr {args:?}: stderr {stderr}");
        assert!(stderr.contains(needle), "tcperr {args:?}: {needle:?} not in {stderr}");
        assert!(!stderr.contains("panicked"), "tcperr {args:?} panicked: {stderr}");
    }
}

#[test]
fn without_privilege_tcperr_names_the_capabilities_and_exits_2() {
    let (code, stderr) = run_tcperr(&["trace"], true);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("CAP_BPF") && stderr.contains("CAP_PERFMON"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn a_reset_storm_prints_ten_a_second_of_each_story_and_counts_every_other_one_in_repeated_lines() {
    // Room for the whole burst: this test is about the accounting, not about keeping up while
    // the other tests' tracers and the harness share the two cores.
    let folded = start(&["--ringbuf-size", "134217728"]);
    let every = start(&["--every", "--ringbuf-size", "134217728"]);
    let (storm, _) = tcperr_scenarios::storm::run(1, Duration::from_millis(500));
    let folded = stop(folded);
    let every = stop(every);
    assert_eq!((folded.code, every.code, storm.unexpected), (0, 0, 0), "{:#?}", folded.stderr);
    for s in [&folded, &every] {
        assert_eq!(s.stat("lost"), Some(0), "{:?}", s.stats);
    }
    let me = std::process::id();
    let ours = |e: &&serde_json::Value| {
        e["pid"] == me && e["comm"].as_str().is_some_and(|c| c.starts_with("storm"))
    };
    // Each storm connection: the server's abort (rst_sent), the client's RST (rst_received)
    // and its failed read (recv_error).
    for kind in ["rst_sent", "rst_received", "recv_error"] {
        let full = folded.events.iter().filter(ours).filter(|e| e["kind"] == kind).count() as u64;
        let repeated: u64 = folded
            .events
            .iter()
            .filter(ours)
            .filter(|e| e["kind"] == "repeated" && e["of"] == kind)
            .map(|e| e["count"].as_u64().expect("count"))
            .sum();
        assert!(full <= 10 * 2, "{kind}: {full} printed in full over ~0.5 s");
        assert_eq!(full + repeated, storm.connections, "{kind}: printed + folded");
        let each = every.events.iter().filter(ours).filter(|e| e["kind"] == kind).count() as u64;
        assert_eq!(each, storm.connections, "{kind} with --every");
    }
}

#[test]
fn a_reader_that_stops_reading_never_keeps_tcperr_from_stopping_on_sigterm() {
    // stdout is a pipe nobody reads: once its 64 KiB are full, every write would block. SIGTERM
    // must still end tcperr, at once and with exit 0, and the summary says what went unwritten.
    use std::io::Read;
    let mut child = Command::new(TCPERR)
        .args(["trace", "--json", "--all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tcperr");
    let mut stderr = child.stderr.take().expect("stderr");
    let mut started = String::new();
    let mut byte = [0u8; 1];
    while !started.contains("tracing TCP errors") {
        assert_eq!(stderr.read(&mut byte).expect("stderr"), 1, "tcperr exited: {started}");
        started.push(byte[0] as char);
    }
    // A few thousand lines of JSON: resets on loopback, each several records with --all.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    for _ in 0..400 {
        let client = std::net::TcpStream::connect(addr).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        tcperr_scenarios::sock::set_linger_zero(&server).expect("linger");
        drop((server, client));
    }
    std::thread::sleep(Duration::from_millis(1500)); // (tcperr has met the full pipe)
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("tcperr did not stop within 3 s of SIGTERM with its output unread");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("stderr");
    assert_eq!(status.code(), Some(0), "{rest}");
    let unwritten = rest
        .split(", ")
        .find_map(|p| p.strip_suffix(" lines not written (output not read)\n"))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("the closing counts say what was not written: {rest}"));
    assert!(unwritten > 0, "{rest}");
    drop(child.stdout.take());
}

#[test]
fn the_documented_schema_refuses_what_it_does_not_describe() {
    // An event tcperr printed, as printed: of the schema. Changed in the ways the schema
    // forbids, it is refused, so that the checks on every object the tests see can fail.
    let ok: serde_json::Value = serde_json::from_str(concat!(
        r#"{"schema":1,"time":"2026-11-28T08:14:18.060816Z","ts_ns":1,"kind":"rst_received","#,
        r#""pid":null,"tid":null,"comm":null,"owner_from":"unknown","family":"ipv4","#,
        r#""laddr":"127.0.0.1","lport":34826,"raddr":"127.0.0.1","rport":38455,"netns":1,"#,
        r#""state":"ESTABLISHED","newstate":null,"errno":"ECONNRESET","errno_code":104,"#,
        r#""error":"connection reset by peer","reason":null,"cause":"peer_reset","#,
        r#""counted_as":null,"#,
        r#""peer_pid":null,"peer_comm":null,"timeline":[{"t_ms":0.0,"step":"connect","#,
        r#""detail":"CLOSE"}],"accept_queue":null,"stakes":null,"cookie":null,"ino":7,"#,
        r#""explanation":"why"}"#
    ))
    .expect("JSON");
    assert_eq!(support::schema_errors(&ok), Vec::<String>::new());
    let with = |key: &str, value: serde_json::Value| {
        let mut v = ok.clone();
        v[key] = value;
        v
    };
    for bad in [
        with("schema", 2.into()),
        with("pid", "".into()),
        with("cookie", 0.5.into()),
        with("undocumented", 1.into()),
        with("kind", "rst_received_v2".into()),
        with("counted_as", "maybe".into()),
        with("time", "08:14:18.060816".into()),
    ] {
        assert!(!support::schema_errors(&bad).is_empty(), "accepted: {bad}");
    }
    let mut missing = ok.clone();
    missing.as_object_mut().expect("object").remove("netns");
    assert!(!support::schema_errors(&missing).is_empty(), "a field may not be left out");
}

#[test]
fn human_times_are_in_the_local_zone_the_header_names_or_in_utc_with_utc() {
    // TZ=America/New_York: the TIME column says UTC-05:00 (or -04:00 in summer); --utc: UTC.
    use std::io::{BufRead, BufReader};
    let header = |args: &[&str]| {
        let mut child = Command::new(TCPERR)
            .arg("trace")
            .args(args)
            .env("TZ", "America/New_York")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tcperr");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("header");
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        assert_eq!(child.wait().expect("wait").code(), Some(0));
        line
    };
    let local = header(&[]);
    assert!(
        local.starts_with("TIME(UTC-05:00) ") || local.starts_with("TIME(UTC-04:00) "),
        "{local}"
    );
    assert!(header(&["--utc"]).starts_with("TIME(UTC)       PID"));
}
