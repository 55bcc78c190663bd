//! Human output of the built `tcperr trace` while the broken-pipe scenario runs in this process:
//! under a pseudo-terminal 100 columns wide, the terminal layout (aligned columns, the
//! explanation wrapped below, colour by severity; none with `NO_COLOR`); into a pipe, the one
//! line per event of before, coloured only with `--color always`. A `--json` tcperr beside them
//! is the oracle of each event's fields. Needs root.
use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    os::fd::{FromRawFd, OwnedFd},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use tcperr_scenarios::drive;

mod support;

const TCPERR: &str = env!("CARGO_BIN_EXE_tcperr");
const WIDTH: u16 = 100;

/// A pseudo-terminal `cols` columns wide: (master, slave).
fn pty(cols: u16) -> (File, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let ws = libc::winsize { ws_row: 40, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty writes two fds into the ints it is given; name and termios may be null.
    let rc = unsafe {
        libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &ws)
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: fresh fds of our own.
    unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// A human-output tcperr, started and tracing, and its stdout being read.
struct Human {
    child: Child,
    out: std::thread::JoinHandle<Vec<u8>>,
}

/// Starts `tcperr trace --utc ARGS` with stdout `stdout` (read through `reader`) and the
/// environment changed by `env` (a None value removes the variable); returns once it traces.
fn start(args: &[&str], env: &[(&str, Option<&str>)], stdout: Stdio, reader: File) -> Human {
    let mut cmd = Command::new(TCPERR);
    cmd.args(["trace", "--utc"]).args(args);
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tcperr");
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut reader = reader;
        // (a pty's master reads EIO once every slave is closed: the end of the output)
        let _ = reader.read_to_end(&mut buf);
        buf
    });
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("tracing TCP errors") => break,
            Ok(_) => {}
            Err(_) => panic!("tcperr {args:?} did not start: {:?}", child.try_wait()),
        }
    }
    Human { child, out }
}

fn on_pty(args: &[&str], env: &[(&str, Option<&str>)]) -> Human {
    let (master, slave) = pty(WIDTH);
    // (the child holds the only slave once spawned: its exit ends the master's reads)
    start(args, env, Stdio::from(slave), master)
}

fn on_pipe(args: &[&str], env: &[(&str, Option<&str>)]) -> Human {
    let (read, write) = std::io::pipe().expect("pipe");
    start(args, env, Stdio::from(write), File::from(OwnedFd::from(read)))
}

/// SIGINT, exit 0, and the output with the pty's carriage returns taken out.
fn stop(h: Human) -> String {
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(h.child.id() as i32, libc::SIGINT) }, 0);
    let mut child = h.child;
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    let out = h.out.join().expect("reader");
    String::from_utf8(out).expect("UTF-8").replace('\r', "")
}

fn strip_colour(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// Words with the relative times (`+0.178`) masked: each tcperr computes them itself, and
/// two may differ in the last digit.
fn masked(words: Vec<&str>) -> Vec<&str> {
    let time = |w: &str| w.strip_prefix('+').is_some_and(|n| n.parse::<f64>().is_ok());
    words.into_iter().map(|w| if time(w) { "+T" } else { w }).collect()
}

/// Microseconds of the day of `HH:MM:SS.ffffff`.
fn micros(time: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| time[r].parse::<i64>().expect(time);
    ((n(0..2) * 60 + n(3..5)) * 60 + n(6..8)) * 1_000_000 + n(9..15)
}

/// Whether `line` starts with a time within 10 µs of `time`: each tcperr converts the kernel's
/// clock to the wall clock itself, and two may differ by a microsecond.
fn at_time(line: &str, time: &str) -> bool {
    line.get(..15)
        .is_some_and(|t| t.as_bytes()[2] == b':' && (micros(t) - micros(time)).abs() <= 10)
}

/// The row of `output` of a `kind` event at `time`, and the explanation lines below it.
fn event_lines<'a>(output: &'a str, time: &str, kind: &str) -> (&'a str, Vec<&'a str>) {
    let at = |l: &str| at_time(&strip_colour(l), time) && l.contains(kind);
    let mut lines = output.lines().skip_while(|l| !at(l));
    let row = lines.next().unwrap_or_else(|| panic!("no row at {time} in:\n{output}"));
    (row, lines.take_while(|l| l.starts_with(' ')).collect())
}

#[test]
fn on_a_terminal_columns_fit_its_width_and_colour_marks_severity_and_pipes_keep_one_line() {
    let json = drive::start(Path::new(TCPERR), &[], Duration::from_secs(30))
        .unwrap_or_else(|(code, e)| panic!("tcperr --json did not start ({code:?}): {e}"));
    let coloured = on_pty(&[], &[("NO_COLOR", None), ("COLUMNS", None)]);
    let no_color = on_pty(&[], &[("NO_COLOR", Some("1"))]);
    let piped = on_pipe(&["--color", "always"], &[]);
    let run = tcperr_scenarios::run("broken_pipe").expect("broken_pipe");
    std::thread::sleep(Duration::from_millis(500)); // (the scenario's events are read by now)
    let json = drive::stop(json).expect("stop the --json tcperr");
    let (coloured, no_color, piped) = (stop(coloured), stop(no_color), stop(piped));
    support::assert_all_schema(&json.events);

    // The oracle: the client's failed write, as --json reports it.
    let me = std::process::id();
    let ev = json
        .events
        .iter()
        .find(|e| e["kind"] == "send_error" && e["pid"] == me && e["rport"] == run.server_port)
        .unwrap_or_else(|| panic!("no send_error of the scenario: {:#?}", json.events));
    let field = |name: &str| ev[name].as_str().unwrap_or_else(|| panic!("{name} in {ev}"));
    let time = &field("time")[11..26]; // HH:MM:SS.ffffff of the RFC 3339 UTC time
    let (lport, rport) = (ev["lport"].as_u64().unwrap(), ev["rport"].as_u64().unwrap());
    let (state, explanation) = (field("state"), field("explanation"));
    assert_eq!((field("errno"), field("error")), ("EPIPE", "broken pipe"));

    // The terminal layout, 100 columns: the titles, then the row (too narrow for the whole
    // connection: the local port, the local address at the explanation's end), the explanation
    // indented under it and wrapped to the width.
    let header = "TIME(UTC)       PID/COMM         EVENT             CONNECTION               STATE       ERROR";
    let expected_row = format!(
        "{time} {:<16} send_error        {:<24} {state:<11} EPIPE",
        format!("{me}/client"),
        format!("{lport} -> 127.0.0.1:{rport}"),
    );
    let expected_words = format!("broken pipe: {explanation} (local address 127.0.0.1)");
    for (output, colour) in [(&coloured, true), (&no_color, false)] {
        let first = output.lines().next().expect("a header");
        let (row, detail) = event_lines(output, time, "send_error");
        if colour {
            assert_eq!(first, format!("\x1b[1m{header}\x1b[0m"));
            assert!(row.contains("\x1b[1;31msend_error\x1b[0m"), "errors in red: {row:?}");
            assert!(row.ends_with("\x1b[1;31mEPIPE\x1b[0m"), "{row:?}");
            let rst_sent = output.lines().find(|l| l.contains("rst_sent")).expect("rst_sent");
            assert!(rst_sent.contains("\x1b[33mrst_sent\x1b[0m"), "resets sent in yellow");
        } else {
            assert!(!output.contains('\x1b'), "NO_COLOR: no colour codes in:\n{output}");
            assert_eq!(first, header);
        }
        assert_eq!(strip_colour(row)[15..], expected_row[15..], "in:\n{output}");
        assert!(detail.len() >= 2, "the explanation wraps: {detail:#?}");
        for line in &detail {
            assert!(line.chars().count() <= usize::from(WIDTH), "wider than the terminal: {line}");
            assert!(line.starts_with(&" ".repeat(16)) && !line[16..].starts_with(' '), "{line:?}");
        }
        let words: Vec<&str> = detail.iter().flat_map(|l| l.split_whitespace()).collect();
        assert_eq!(masked(words), masked(expected_words.split_whitespace().collect()));
    }

    // Into a pipe with --color always: one line per event, in the format of before, coloured.
    let line = piped
        .lines()
        .find(|l| at_time(l, time) && l.contains("send_error"))
        .unwrap_or_else(|| panic!("no send_error line at {time} in:\n{piped}"));
    assert!(line.contains("\x1b[1;31msend_error\x1b[0m"), "{line:?}");
    let conn = format!("127.0.0.1:{lport} -> 127.0.0.1:{rport}");
    let expected = format!(
        "{time} {me:<7} {:<15} send_error    {conn:<44} {state:<12} EPIPE (broken pipe): {explanation}",
        "client"
    );
    let plain = strip_colour(line);
    assert_eq!(
        masked(plain[15..].split(' ').collect()),
        masked(expected[15..].split(' ').collect())
    );
    assert!(piped.lines().next().is_some_and(|h| h.starts_with("TIME(UTC)       PID     COMM")));
}
