//! `tcperr serve` as its own process: metrics over HTTP while it runs, a clean exit on SIGTERM
//! and SIGINT with nothing left attached, exit 2 and one line when it cannot start, and its
//! journal surviving a `kill -9` for `tcperr query`. Needs root.
use std::{process::Command, time::Duration};

use tcperr_scenarios::drive;

mod support;
use support::serve::{Served, TCPERR, get};

/// Every agent counts every process's errors: the tests that make errors and count them take
/// turns.
static SCENARIOS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SCENARIOS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn serve_counts_a_broken_pipe_and_detaches_on_sigterm_and_sigint() {
    let _turn = one_at_a_time();
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let served = Served::start(&[]);
        let ids = drive::prog_ids(served.pid());
        assert!(ids.len() >= 7, "tcperr serve holds its programs while it runs: {ids:?}");
        let series = "tcperr_socket_errors_total{error=\"EPIPE\",cause=\"write_after_peer_close\",comm=\"client\",namespace=\"\",pod=\"\",container=\"\"}";
        let before = served.sample(series).unwrap_or(0.0);
        tcperr_scenarios::run("broken_pipe").expect("broken_pipe");
        // (read once a second at the latest)
        let mut now = before;
        for _ in 0..30 {
            now = served.sample(series).unwrap_or(0.0);
            if now > before {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(now - before, 1.0, "one EPIPE counted");
        // Every source says which hook serves it.
        let text = served.metrics();
        assert!(
            text.contains(
                "tcperr_source{source=\"rst_received\",hook=\"tp_btf tcp_receive_reset\"} 1"
            ),
            "{text}"
        );
        let (code, stderr) = served.stop(signal);
        assert_eq!(code, Some(0), "exit after signal {signal}: {stderr:#?}");
        assert!(stderr.iter().any(|l| l.contains("stopped:")), "{stderr:#?}");
        // (the kernel frees programs after an RCU grace period)
        let mut left = drive::still_loaded(&ids);
        for _ in 0..20 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            left = drive::still_loaded(&ids);
        }
        assert_eq!(left, Vec::<u32>::new(), "programs left loaded");
    }
}

#[test]
fn unknown_paths_are_404_and_the_root_points_to_metrics() {
    let served = Served::start(&[]);
    assert_eq!(get(&served.addr, "/nope").0, 404);
    let (status, body) = get(&served.addr, "/");
    assert_eq!((status, body.as_str()), (200, "tcperr serve: metrics at /metrics\n"));
}

#[test]
fn an_address_in_use_gives_exit_2_and_one_line_before_anything_is_attached() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = Command::new(TCPERR).args(["serve", "--listen", &addr]).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [format!("tcperr: cannot listen on {addr}: Address already in use (os error 98)")]
    );
    let out = Command::new(TCPERR).args(["serve", "--listen", "localhost"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "not an address");
}

/// The lines of every journal file under `dir`, whole lines only (a torn last line left out).
fn journal_lines(dir: &std::path::Path) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("journal dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut lines = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        lines.extend(whole.lines().filter(|l| !l.is_empty()).map(str::to_owned));
    }
    lines
}

/// Waits (up to 10 s) until `served` has counted `series` at least `n` times, and a second
/// more, so that its events are flushed to the journal too (once a second at the latest).
fn wait_counted(served: &Served, series: &str, n: f64) {
    for _ in 0..100 {
        if served.sample(series).unwrap_or(0.0) >= n {
            std::thread::sleep(Duration::from_millis(1200));
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{series} never reached {n}:\n{}", served.metrics());
}

#[test]
fn after_a_kill_9_in_a_storm_and_a_restart_query_returns_every_event_journaled_before_and_after() {
    let _turn = one_at_a_time();
    let dir = std::env::temp_dir().join(format!("tcperr-serve-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let journal = ["--journal", dir.to_str().expect("utf-8"), "--journal-max-bytes", "64M"];
    let epipe = "tcperr_socket_errors_total{error=\"EPIPE\",cause=\"write_after_peer_close\",comm=\"client\",namespace=\"\",pod=\"\",container=\"\"}";
    let refused = "tcperr_socket_errors_total{error=\"ECONNREFUSED\",cause=\"refused\",comm=\"client\",namespace=\"\",pod=\"\",container=\"\"}";

    let first = Served::start(&journal);
    let broken_pipe = tcperr_scenarios::run("broken_pipe").expect("broken_pipe");
    wait_counted(&first, epipe, 1.0);
    // A storm, and the agent killed in the middle of it.
    let storm = std::thread::spawn(|| tcperr_scenarios::storm::run(2, Duration::from_secs(3)));
    std::thread::sleep(Duration::from_millis(1500));
    let (code, _) = first.stop(libc::SIGKILL);
    assert_eq!(code, None, "killed");
    let before = journal_lines(&dir);
    let (stats, _) = storm.join().expect("storm");
    assert!(stats.connections > 0);
    let stormed = before.iter().filter(|l| l.contains("\"comm\":\"storm")).count();
    assert!(stormed > 0, "the storm's events before the kill are journaled");

    // A restart on the same journal (the killed agent's lock went with it), a new error.
    let second = Served::start(&journal);
    let refused_run = tcperr_scenarios::run("refused").expect("refused");
    wait_counted(&second, refused, 1.0);
    let (code, _) = second.stop(libc::SIGTERM);
    assert_eq!(code, Some(0));

    let out = Command::new(TCPERR)
        .args(["query", "--json", "--since", "10m", "--journal"])
        .arg(&dir)
        .output()
        .expect("tcperr query");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Vec<&str> = std::str::from_utf8(&out.stdout).expect("utf-8").lines().collect();
    // Every whole line written before the kill comes back, unchanged and in order.
    let mut at = 0;
    for line in &before {
        let found = printed[at..].iter().position(|p| p == line);
        assert!(found.is_some(), "journaled before the kill, not returned: {line}");
        at += found.unwrap_or(0) + 1;
    }
    let events: Vec<serde_json::Value> =
        printed.iter().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    support::assert_all_schema(&events);
    let rst_reason = drive::kernel_reports_rst_reason();
    // Both scenarios' events are there, as `trace --json` prints them: one run before the
    // kill, one after the restart.
    for run in [&broken_pipe, &refused_run] {
        assert_eq!(run.observed_lines(&events), run.expected_lines(rst_reason), "{}", run.scenario);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_journal_in_use_by_another_agent_gives_exit_2_and_one_line() {
    let dir = std::env::temp_dir().join(format!("tcperr-serve-locked-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().expect("utf-8");
    let first = Served::start(&["--journal", d]);
    let out = Command::new(TCPERR)
        .args(["serve", "--listen", "127.0.0.1:0", "--journal", d])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with(&format!("tcperr: cannot open the journal {d}: ")), "{stderr}");
    drop(first);
    let _ = std::fs::remove_dir_all(&dir);
}
