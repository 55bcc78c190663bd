//! `tcperr trace -- CMD` with the built binary: the command (this test binary, re-executed as
//! `forking-client PORT CODE`, tcperr-scenarios' forking_client.rs) forks a child whose
//! connection is refused; tcperr reports the child's error and not an unrelated process's (this
//! test's own, made meanwhile, which a plain `--json` tcperr beside it does see), runs the
//! command as the user of SUDO_UID/SUDO_GID, and exits with the command's status. Needs root.
//!
//! No test harness (`harness = false`): the binary is also the command.
use std::{
    io::{BufRead, BufReader, Read},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;
use tcperr_scenarios::{drive, forking_client};

mod support;

const TCPERR: &str = env!("CARGO_BIN_EXE_tcperr");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, port, code] = args.as_slice()
        && role == "forking-client"
    {
        let code = forking_client::run(port.parse().expect("port"), code.parse().expect("code"));
        std::process::exit(i32::from(code));
    }
    let tests: [(&str, fn()); 2] = [
        (
            "a_commands_forked_childs_error_is_reported_an_unrelated_one_is_not_and_its_status_is_passed_on",
            a_commands_forked_childs_error_is_reported_an_unrelated_one_is_not_and_its_status_is_passed_on,
        ),
        (
            "a_command_that_cannot_be_run_or_bad_sudo_ids_exit_as_documented",
            a_command_that_cannot_be_run_or_bad_sudo_ids_exit_as_documented,
        ),
    ];
    for (name, test) in tests {
        test();
        println!("test {name} ... ok");
    }
}

/// A port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn a_commands_forked_childs_error_is_reported_an_unrelated_one_is_not_and_its_status_is_passed_on()
{
    let (theirs, ours) = (closed_port(), closed_port());
    let oracle = drive::start(Path::new(TCPERR), &[], Duration::from_secs(30))
        .unwrap_or_else(|(code, e)| panic!("tcperr --json did not start ({code:?}): {e}"));
    let me = std::env::current_exe().expect("this binary");
    let mut child = Command::new(TCPERR)
        .args(["trace", "--json", "--"])
        .arg(&me)
        .args(["forking-client", &theirs.to_string(), "3"])
        .env("SUDO_UID", "65534")
        .env("SUDO_GID", "65534")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tcperr");
    let mut stdout = child.stdout.take().expect("stdout");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut stderr = Vec::new();
    // The command starts once tcperr traces; then this process's own connection is refused,
    // while the command lingers.
    while !stderr.iter().any(|l: &String| l.starts_with(forking_client::CHILD_PREFIX)) {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("the command reports");
        stderr.push(line);
    }
    let refused = TcpStream::connect(("127.0.0.1", ours));
    assert!(refused.is_err(), "nothing listens on {ours}");
    let status = child.wait().expect("wait");
    stderr.extend(rx.iter());
    let out = out.join().expect("reader").expect("read stdout");
    let seen = drive::stop(oracle).expect("stop the --json tcperr");

    assert_eq!(status.code(), Some(3), "the command's exit status; stderr: {stderr:#?}");
    assert!(
        stderr.iter().any(|l| l == "forking-client: uid 65534 gid 65534 groups [65534]"),
        "run as SUDO_UID/SUDO_GID with that user's groups: {stderr:#?}"
    );
    let child_pid: u64 = stderr
        .iter()
        .find_map(|l| l.strip_prefix(forking_client::CHILD_PREFIX)?.strip_suffix(" refused"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the child met the refusal: {stderr:#?}"));
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    support::assert_all_schema(&lines);
    let events: Vec<&Value> =
        lines.iter().filter(|e| e["kind"] != "summary" && e["kind"] != "stats").collect();
    // Only the child's refusal: its RST, received in softirq, attributed to the child.
    let mine: Vec<&&Value> = events.iter().filter(|e| e["rport"] == theirs).collect();
    assert_eq!(mine.len(), 1, "{events:#?}");
    assert_eq!(
        (mine[0]["kind"].as_str(), mine[0]["errno"].as_str(), mine[0]["pid"].as_u64()),
        (Some("rst_received"), Some("ECONNREFUSED"), Some(child_pid)),
        "{:#}",
        mine[0]
    );
    assert!(events.iter().all(|e| e["pid"] == child_pid), "only the command's: {events:#?}");
    let summary: Vec<&Value> = lines.iter().filter(|e| e["kind"] == "summary").collect();
    assert_eq!(summary.len(), 1, "{summary:#?}");
    assert_eq!(
        (summary[0]["pid"].as_u64(), summary[0]["count"].as_u64()),
        (Some(child_pid), Some(1))
    );
    // The unrelated refusal happened while tcperr traced: the plain tcperr saw it, this one did
    // not.
    let pid = u64::from(std::process::id());
    assert!(
        seen.events.iter().any(|e| e["rport"] == ours && e["pid"] == pid),
        "the oracle saw this process's refusal: {:#?}",
        seen.events
    );
    assert!(!events.iter().any(|e| e["rport"] == ours), "{events:#?}");
}

fn a_command_that_cannot_be_run_or_bad_sudo_ids_exit_as_documented() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(TCPERR)
            .arg("trace")
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run tcperr");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, stderr) = run(&["--", "/nonexistent/command"], &[]);
    assert_eq!(code, Some(127), "{stderr}");
    assert!(stderr.contains("cannot run /nonexistent/command: No such file"), "{stderr}");
    let (code, stderr) = run(&["--", "/"], &[]);
    assert_eq!(code, Some(126), "a directory is not run: {stderr}");
    assert!(stderr.contains("cannot run /: Permission denied"), "{stderr}");
    let (code, stderr) = run(&["--", "true"], &[("SUDO_UID", "alice")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("SUDO_UID=\"alice\" is not a numeric id"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // A command killed by a signal: 128 + its number.
    let (code, stderr) = run(&["--", "sh", "-c", "kill -TERM $$"], &[]);
    assert_eq!(code, Some(128 + libc::SIGTERM), "{stderr}");
}
