//! `tcperr query` as a separate process, over a journal of real errors: `tcperr trace --json`
//! traces real sockets (the broken_pipe and refused scenarios, a short reset storm that trace
//! folds into `repeated` lines, and whatever else the host does meanwhile), its output goes into a journal through the real writer (`Journal`), and the
//! built `tcperr query` must print those same events, filtered and by time, in trace's human
//! lines, with trace's summary; a journal with a torn or garbage tail is read without panic and
//! says what it skipped; one kept at its size limit stays under it. Needs root (to trace).
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use serde_json::Value;
use tcperr_scenarios::drive;
use tcperr_userspace::journal::{self, Journal};

mod support;

const TCPERR: &str = env!("CARGO_BIN_EXE_tcperr");

/// One traced run, shared by the tests: everything `tcperr trace --json` printed.
struct Traced {
    /// Every line, as objects: events, `repeated`, the summary rows, the stats line.
    all: Vec<Value>,
    /// The events and `repeated` objects among them, in order.
    events: Vec<Value>,
    /// The summary rows trace printed on exit.
    rows: Vec<Value>,
    broken_pipe_port: u16,
    refused_port: u16,
    /// The events of each scenario's own sockets (by port and time: a later connection may
    /// reuse a port, the storm's clients use thousands).
    broken_pipe: Vec<Value>,
    refused: Vec<Value>,
    /// The time of the refused scenario's first event (RFC 3339 UTC, as JSON has it).
    refused_from: String,
}

fn traced() -> &'static Traced {
    static TRACED: OnceLock<Traced> = OnceLock::new();
    TRACED.get_or_init(|| {
        // (room for the storm's burst: the test is about what was printed, not about keeping up)
        let args = ["--ringbuf-size", "134217728"];
        let t = drive::start(Path::new(TCPERR), &args, Duration::from_secs(30))
            .unwrap_or_else(|(code, e)| panic!("tcperr did not start (exit {code:?}): {e}"));
        let broken_pipe = tcperr_scenarios::run("broken_pipe").expect("broken_pipe");
        std::thread::sleep(Duration::from_millis(20)); // (the two runs' events apart in time)
        let refused = tcperr_scenarios::run("refused").expect("refused");
        let (storm, _) = tcperr_scenarios::storm::run(1, Duration::from_millis(300));
        assert_eq!(storm.unexpected, 0);
        let stopped = drive::stop(t).expect("stop tcperr");
        assert_eq!(stopped.code, 0, "{:#?}", stopped.stderr);
        let mut all = stopped.events.clone();
        all.extend(stopped.stats.clone());
        support::assert_all_schema(&all);
        let is_event = |e: &&Value| e["kind"] != "summary" && e["kind"] != "stats";
        let events: Vec<Value> = all.iter().filter(is_event).cloned().collect();
        let rows = all.iter().filter(|e| e["kind"] == "summary").cloned().collect();
        let of = |run: &tcperr_scenarios::Run| {
            let mine: Vec<Value> = events.iter().filter(|e| run.owns(e)).cloned().collect();
            assert!(!mine.is_empty(), "{}: no events traced", run.scenario);
            mine
        };
        let first = |evs: &[Value]| {
            evs.iter().map(|e| e["time"].as_str().expect("time").to_owned()).min().expect("one")
        };
        let last = |evs: &[Value]| {
            evs.iter().map(|e| e["time"].as_str().expect("time").to_owned()).max().expect("one")
        };
        let (bp_events, refused_events) = (of(&broken_pipe), of(&refused));
        let refused_from = first(&refused_events);
        assert!(last(&bp_events) < refused_from, "the two runs apart in time");
        Traced {
            all,
            events,
            rows,
            broken_pipe_port: broken_pipe.server_port,
            refused_port: refused.server_port,
            broken_pipe: bp_events,
            refused: refused_events,
            refused_from,
        }
    })
}

/// A directory of its own under the temp dir, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tcperr-query-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A journal holding everything trace printed, written by the journal's writer a few lines
/// per flush, as `tcperr serve` writes it.
fn journal_of(name: &str, t: &Traced) -> Dir {
    let dir = Dir::new(name);
    let mut j = Journal::open(&dir.0, journal::DEFAULT_MAX_BYTES).expect("open the journal");
    for (i, v) in t.all.iter().enumerate() {
        writeln!(j, "{v}").expect("write");
        if i % 5 == 0 {
            j.flush().expect("flush");
        }
    }
    j.flush().expect("flush");
    dir
}

struct Queried {
    code: i32,
    stdout: Vec<String>,
    stderr: String,
}

fn query(dir: &Path, args: &[&str]) -> Queried {
    let out = Command::new(TCPERR)
        .args(["query", "--journal"])
        .arg(dir)
        .args(args)
        .output()
        .expect("run tcperr query");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "tcperr query {args:?} panicked: {stderr}");
    Queried {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect(),
        stderr,
    }
}

/// `tcperr query --json ARGS`: its events (and `repeated` objects), and its summary rows.
fn query_json(dir: &Path, args: &[&str]) -> (Vec<Value>, Vec<Value>) {
    let q = query(dir, &[&["--json"], args].concat());
    assert_eq!(q.code, 0, "tcperr query --json {args:?}: {}", q.stderr);
    let all: Vec<Value> =
        q.stdout.iter().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    support::assert_all_schema(&all);
    all.into_iter().partition(|v| v["kind"] != "summary")
}

/// The events of trace's output that `keep` keeps, in order.
fn events_where(t: &Traced, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    t.events.iter().filter(|e| keep(e)).cloned().collect()
}

fn has_port(e: &Value, port: u16) -> bool {
    e["lport"] == port || e["rport"] == port
}

/// A summary row as compared: every field.
fn rows_of(rows: &[Value], pid: u32) -> Vec<String> {
    let mut r: Vec<String> =
        rows.iter().filter(|r| r["pid"] == pid).map(Value::to_string).collect();
    r.sort();
    r
}

#[test]
fn query_prints_the_journaled_events_trace_printed_and_trace_s_summary_of_them() {
    let t = traced();
    let dir = journal_of("all", t);
    let (events, rows) = query_json(&dir.0, &[]);
    // Every event and repeated object, in trace's order, as stored; no summary or stats
    // object of trace's is taken for an event.
    assert_eq!(events, t.events);
    // The summary of this process's errors (the scenarios' threads): trace's, row for row.
    let me = std::process::id();
    assert!(!rows_of(&t.rows, me).is_empty(), "trace counted our errors: {:#?}", t.rows);
    assert_eq!(rows_of(&rows, me), rows_of(&t.rows, me));
    // The client's broken pipe is counted once (the failed write, not the RST before it).
    let epipe: Vec<&Value> =
        rows.iter().filter(|r| r["pid"] == me && r["errno"] == "EPIPE").collect();
    assert_eq!(epipe.len(), 1, "{rows:#?}");
    assert_eq!((epipe[0]["comm"].as_str(), epipe[0]["count"].as_u64()), (Some("client"), Some(1)));
    // The storm's failed reads: counted with the repeated lines' counts, far more than were
    // printed in full.
    let stormy =
        |e: &Value| e["pid"] == me && e["comm"].as_str().is_some_and(|c| c.starts_with("storm"));
    assert!(events.iter().any(|e| stormy(e) && e["kind"] == "repeated"), "the storm was folded");
    let full = events.iter().filter(|e| stormy(e) && e["kind"] == "recv_error").count() as u64;
    let counted: u64 = rows
        .iter()
        .filter(|r| stormy(r) && r["errno"] == "ECONNRESET")
        .map(|r| r["count"].as_u64().expect("count"))
        .sum();
    assert!(counted > full, "{counted} counted, {full} printed in full");
}

#[test]
fn query_filters_by_port_pid_comm_and_errno_as_trace_does() {
    let t = traced();
    let dir = journal_of("filters", t);
    let me = std::process::id();
    let bp = t.broken_pipe_port;
    let (events, _) = query_json(&dir.0, &["--port", &bp.to_string()]);
    assert_eq!(events, events_where(t, |e| has_port(e, bp)));
    assert!(events.len() >= 3, "broken_pipe's rst_sent, rst_received, send_error: {events:#?}");
    let (events, rows) = query_json(&dir.0, &["--pid", &me.to_string(), "--errno", "EPIPE"]);
    assert_eq!(events, events_where(t, |e| e["pid"] == me && e["errno_code"] == 32));
    assert!(events.iter().any(|e| e["kind"] == "send_error"), "{events:#?}");
    assert!(rows.iter().all(|r| r["errno"] == "EPIPE" && r["pid"] == me), "{rows:#?}");
    let (events, _) = query_json(&dir.0, &["--comm", "client", "--errno", "ECONNREFUSED"]);
    assert_eq!(events, events_where(t, |e| e["comm"] == "client" && e["errno_code"] == 111));
    assert!(events.iter().any(|e| has_port(e, t.refused_port)), "{events:#?}");
    // Several values of one flag: any of them.
    let ports = ["--port", &bp.to_string(), "--port", &t.refused_port.to_string()];
    let (events, _) = query_json(&dir.0, &ports);
    assert_eq!(events, events_where(t, |e| has_port(e, bp) || has_port(e, t.refused_port)));
}

#[test]
fn since_and_until_cut_the_journal_at_a_time_or_a_duration_back_from_now() {
    let t = traced();
    let dir = journal_of("times", t);
    let at = t.refused_from.as_str();
    let time = |e: &Value| e["time"].as_str().expect("time").to_owned();
    let (since, _) = query_json(&dir.0, &["--since", at]);
    assert_eq!(since, events_where(t, |e| time(e).as_str() >= at));
    assert!(t.refused.iter().all(|e| since.contains(e)), "{since:#?}");
    assert!(!t.broken_pipe.iter().any(|e| since.contains(e)), "{since:#?}");
    let (until, _) = query_json(&dir.0, &["--until", at]);
    assert_eq!(until, events_where(t, |e| time(e).as_str() < at));
    assert!(t.broken_pipe.iter().all(|e| until.contains(e)), "{until:#?}");
    assert!(!t.refused.iter().any(|e| until.contains(e)), "{until:#?}");
    // Both, as a window: the first event's time is in it, the cut is not.
    let first = t.events[0]["time"].as_str().expect("time");
    let (both, _) = query_json(&dir.0, &["--since", first, "--until", at]);
    assert_eq!(both, until);
    // Durations back from now: everything was in the last hour, nothing before it.
    let (recent, _) = query_json(&dir.0, &["--since", "1h"]);
    assert_eq!(recent, t.events);
    let (old, rows) = query_json(&dir.0, &["--until", "1h"]);
    assert!(old.is_empty() && rows.is_empty(), "{old:#?}");
}

/// The human line of a trace JSON object, as README documents the columns: TIME (here UTC),
/// PID, COMM, EVENT, LOCAL -> REMOTE (netns:N when not ours), STATE (old>new for state
/// changes), ERROR (the name and the words, or the RST reason), then the explanation.
fn human(e: &Value, own_netns: u64) -> String {
    let s = |k: &str| e[k].as_str().map(str::to_owned);
    let time = &s("time").expect("time")[11..26];
    let pid = e["pid"].as_u64().map_or("-".to_owned(), |p| p.to_string());
    let comm = s("comm").unwrap_or_else(|| "?".into());
    let hp = |h: String, p: &Value| {
        if h.contains(':') { format!("[{h}]:{p}") } else { format!("{h}:{p}") }
    };
    let (conn, state, error) = if e["kind"] == "repeated" {
        (
            format!("* -> {}", s("raddr").expect("raddr")),
            "-".into(),
            s("errno").unwrap_or("-".into()),
        )
    } else {
        let mut conn = format!(
            "{} -> {}",
            hp(s("laddr").expect("laddr"), &e["lport"]),
            hp(s("raddr").expect("raddr"), &e["rport"])
        );
        if let Some(ns) = e["netns"].as_u64().filter(|&n| n != own_netns) {
            conn.push_str(&format!(" netns:{ns}"));
        }
        let state = match s("newstate") {
            Some(new) => format!("{}>{new}", s("state").expect("state")),
            None => s("state").expect("state"),
        };
        let error = match (s("errno"), s("error")) {
            (Some(n), Some(w)) if n == w => n,
            (Some(n), Some(w)) => format!("{n} ({w})"),
            _ => s("reason").unwrap_or("-".into()),
        };
        (conn, state, error)
    };
    let kind = s("kind").expect("kind");
    let explanation = s("explanation").expect("explanation");
    format!("{time} {pid:<7} {comm:<15} {kind:<13} {conn:<44} {state:<12} {error}: {explanation}")
}

#[test]
fn query_s_human_output_is_trace_s_lines_then_trace_s_summary_table() {
    let t = traced();
    let dir = journal_of("human", t);
    let own_netns = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/ns/net").expect("netns").ino()
    };
    let q = query(&dir.0, &["--utc"]);
    assert_eq!(q.code, 0, "{}", q.stderr);
    assert!(
        q.stdout[0].starts_with("TIME(UTC)       PID     COMM            EVENT"),
        "{:?}",
        q.stdout[0]
    );
    let lines = &q.stdout[1..];
    let expected: Vec<String> = t.events.iter().map(|e| human(e, own_netns)).collect();
    assert_eq!(&lines[..expected.len()], expected.as_slice());
    // Then the summary table: our rows as trace counted them, times in UTC.
    let table = &lines[expected.len()..];
    assert!(table[0].starts_with("ERROR            COUNT PID     COMM"), "{table:#?}");
    let me = std::process::id();
    for r in t.rows.iter().filter(|r| r["pid"] == me) {
        let s = |k: &str| r[k].as_str().expect(k).to_owned();
        let utc = |k: &str| s(k).replace('Z', "+00:00");
        let row = format!(
            "{:<14} {:>7} {me:<7} {:<15} {:<40} {:<32} {}",
            s("errno"),
            r["count"].as_u64().expect("count"),
            s("comm"),
            s("peer"),
            utc("first_time"),
            utc("last_time")
        );
        assert!(table.contains(&row), "{row:?} not in {table:#?}");
    }
    // --summary-only: the table alone.
    let q = query(&dir.0, &["--utc", "--summary-only"]);
    assert_eq!(q.stdout, table);
    assert!(q.stderr.contains("0 torn lines skipped"), "{}", q.stderr);
}

#[test]
fn a_journal_with_a_torn_and_garbage_tail_is_read_without_panic_and_says_what_it_skipped() {
    let t = traced();
    let dir = journal_of("torn", t);
    let (_, newest) = std::fs::read_dir(&dir.0)
        .expect("dir")
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(|n| (n.to_owned(), e.path())))
        .filter(|(n, _)| n.starts_with("events-"))
        .max()
        .expect("a segment");
    let event = t.events[0].to_string();
    let mut f = std::fs::OpenOptions::new().append(true).open(&newest).expect("segment");
    f.write_all(b"not json at all\n\x00\x00\x00\x00\n{\"schema\":1,\"kind\":\"new_kind\"}\n")
        .expect("write");
    // What a kill in the middle of a write leaves: the start of a line.
    f.write_all(&event.as_bytes()[..event.len() / 2]).expect("write");
    drop(f);
    let (events, _) = query_json(&dir.0, &[]);
    assert_eq!(events, t.events, "every whole event is read");
    let q = query(&dir.0, &["--summary-only"]);
    assert_eq!(q.code, 0);
    assert!(q.stderr.contains("1 torn lines skipped"), "{}", q.stderr);
    assert!(q.stderr.contains("3 unreadable lines skipped"), "{}", q.stderr);
    // A segment of noise, as a disk error might leave one: read, skipped, no panic.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(dir.0.join("events-999999999999.jsonl"), noise).expect("noise");
    let (events, _) = query_json(&dir.0, &[]);
    assert_eq!(events, t.events);
    // And a restarted writer appends after all that, in a segment of its own.
    let mut j = Journal::open(&dir.0, journal::DEFAULT_MAX_BYTES).expect("reopen");
    writeln!(j, "{}", t.events[0]).expect("write");
    j.flush().expect("flush");
    drop(j);
    let (events, _) = query_json(&dir.0, &[]);
    assert_eq!(events.len(), t.events.len() + 1);
    assert_eq!(events.last(), t.events.first());
}

#[test]
fn a_journal_at_its_size_limit_stays_under_it_and_query_reads_its_newest_events() {
    let t = traced();
    let dir = Dir::new("limit");
    let max = journal::MIN_MAX_BYTES;
    let mut j = Journal::open(&dir.0, max).expect("open");
    let size = || -> u64 {
        std::fs::read_dir(&dir.0)
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("events-"))
            .map(|e| e.metadata().expect("metadata").len())
            .sum()
    };
    while j.bytes_written() < 4 * max {
        for e in &t.events {
            writeln!(j, "{e}").expect("write");
        }
        j.flush().expect("flush");
        assert!(size() <= max, "{} bytes in the journal, limit {max}", size());
    }
    assert_eq!(j.counters().write_errors, 0);
    assert!(j.counters().segments_deleted > 0);
    drop(j);
    let (events, _) = query_json(&dir.0, &[]);
    assert!(!events.is_empty());
    // The newest are kept: the journal ends with the last copy of trace's events.
    let n = events.len().min(t.events.len());
    assert_eq!(events[events.len() - n..], t.events[t.events.len() - n..]);
    let q = query(&dir.0, &["--summary-only"]);
    assert!(
        q.stderr.contains("0 torn lines skipped") && q.stderr.contains("0 unreadable"),
        "{}",
        q.stderr
    );
}

#[test]
fn a_journal_that_cannot_be_read_and_a_bad_time_exit_2_with_one_line() {
    let missing = query(Path::new("/nonexistent/tcperr-journal"), &[]);
    assert_eq!(missing.code, 2);
    assert_eq!(missing.stderr.trim().lines().count(), 1, "{}", missing.stderr);
    assert!(missing.stderr.contains("/nonexistent/tcperr-journal"), "{}", missing.stderr);
    assert!(missing.stdout.is_empty(), "{:?}", missing.stdout);
    let file = query(Path::new("/proc/self/status"), &[]);
    assert_eq!(file.code, 2, "{}", file.stderr);
    let dir = Dir::new("bad-time");
    std::fs::create_dir_all(&dir.0).expect("dir");
    for (args, needle) in [
        (&["--since", "yesterday"][..], "is not a time"),
        (&["--until", "2026-13-40"][..], "is not a time"),
        (&["--since", "19998y"][..], "before now"),
        (&["--errno", "EWHAT"][..], "unknown errno name"),
        (&["--port", "0"][..], "1-65535"),
    ] {
        let q = query(&dir.0, args);
        assert_eq!(q.code, 2, "{args:?}: {}", q.stderr);
        assert!(q.stderr.contains(needle), "{args:?}: {needle:?} not in {}", q.stderr);
    }
}

/// Set in the environment of the child process [`a_journal_writer_killed_mid_write_never_corrupts_what_it_wrote_before`]
/// starts: the journal directory to write until killed.
const CHILD_DIR: &str = "TCPERR_TEST_JOURNAL_CHILD";

/// Not a test of its own: the process the kill test starts (this test binary again, with
/// `--ignored --exact`), writing numbered lines into the journal in batches until SIGKILL.
#[test]
#[ignore = "the child process of a_journal_writer_killed_mid_write_never_corrupts_what_it_wrote_before"]
fn journal_writer_child_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    let mut j = Journal::open(Path::new(&dir), 1 << 20).expect("open");
    let pad = "p".repeat(300);
    let mut n = 0u64;
    loop {
        writeln!(j, "{{\"n\":{n},\"pad\":\"{pad}\"}}").expect("write");
        if n % 400 == 399 {
            j.flush().expect("flush");
        }
        n += 1;
    }
}

#[test]
fn a_journal_writer_killed_mid_write_never_corrupts_what_it_wrote_before() {
    let dir = Dir::new("killed");
    let numbers = |dir: &Path| {
        let mut reader = journal::read(dir).expect("read");
        let n: Vec<u64> = reader
            .by_ref()
            .map(|l| {
                let v: Value = serde_json::from_slice(&l.expect("line")).expect("a whole line");
                v["n"].as_u64().expect("n")
            })
            .collect();
        (n, reader.torn)
    };
    // Three writers in turn, each killed while writing (a killed writer's lock goes with it:
    // the next one opens the journal).
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--ignored", "--exact", "journal_writer_child_until_killed", "--test-threads=1"])
            .env(CHILD_DIR, &dir.0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the writer");
        // Until it has rotated a few times (and deleted old segments after the first round).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // (the newest segment's sequence number: the count stays at the limit's once full)
        let newest = || {
            std::fs::read_dir(&dir.0)
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| {
                            let name = e.file_name().to_string_lossy().into_owned();
                            name.strip_prefix("events-")?
                                .strip_suffix(".jsonl")?
                                .parse::<u64>()
                                .ok()
                        })
                        .max()
                        .unwrap_or(0)
                })
                .unwrap_or(0)
        };
        let before = newest();
        while newest() < before + 3 {
            assert!(std::time::Instant::now() < deadline, "the writer made no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        // Every line read is whole and in order: what the killed writer had written before is
        // intact, a run of consecutive numbers per writer (each restart counts from 0 again).
        let (n, torn) = numbers(&dir.0);
        assert!(torn <= round + 1, "at most one torn line per kill: {torn}");
        let restarts = n.windows(2).filter(|w| w[1] != w[0] + 1).count();
        for w in n.windows(2).filter(|w| w[1] != w[0] + 1) {
            assert_eq!(w[1], 0, "a gap that is not a restart: {} then {}", w[0], w[1]);
        }
        assert!(restarts <= round as usize, "{restarts} restarts in round {round}");
        assert!(n.len() > 1000, "{} lines", n.len());
    }
}
