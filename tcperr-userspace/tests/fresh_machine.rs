//! tcperr on a machine where nothing has mounted tracefs yet (a fresh boot): in a private mount
//! namespace with tracefs and debugfs unmounted, several `tcperr check` and `tcperr trace` start
//! at the same instant and all succeed; and several finders of tracefs racing to mount it all
//! get it. Needs root.
//!
//! The namespace is made for a second run of this test binary (the child test below), so that
//! every process it starts shares the one fresh namespace, and the host's mounts stay as they
//! are.
use std::{
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Barrier},
    time::Duration,
};

use tcperr_scenarios::drive;
use tcperr_userspace::tracefs;

const TCPERR: &str = env!("CARGO_BIN_EXE_tcperr");
/// Set for the child run, which is the one that does the work.
const CHILD: &str = "TCPERR_FRESH_MACHINE_CHILD";
const STARTS: usize = 3;

#[test]
fn concurrent_first_starts_on_a_machine_without_tracefs_all_succeed() {
    let mut child = Command::new(std::env::current_exe().expect("test binary"));
    child
        .args([
            "--exact",
            "fresh_namespace_child",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, "1")
        .stdin(Stdio::null());
    // SAFETY: only async-signal-safe system calls between fork and exec, on constant strings.
    unsafe {
        child.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Private: what is unmounted and mounted in here stays in here.
            let (none, flags) = (std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE);
            if libc::mount(none, c"/".as_ptr(), none, flags, std::ptr::null()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // tracefs where tcperr looks, and debugfs (whose tracing/ mounts tracefs on first
            // access), each as many times as it is stacked.
            for path in [c"/sys/kernel/debug/tracing", c"/sys/kernel/tracing", c"/sys/kernel/debug"]
            {
                while libc::umount2(path.as_ptr(), libc::MNT_DETACH) == 0 {}
            }
            Ok(())
        });
    }
    let out = child.output().expect("run the child test in a fresh mount namespace");
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "in a namespace without tracefs:\n{text}");
    assert!(text.contains("1 passed"), "the child test did not run:\n{text}");
}

/// Runs only as the child of the test above, inside its fresh mount namespace.
#[test]
#[ignore = "runs as the child of concurrent_first_starts_on_a_machine_without_tracefs_all_succeed"]
fn fresh_namespace_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    assert_eq!(tracefs::find(), None, "tracefs should not be mounted in the fresh namespace");
    // `tcperr check` and `tcperr trace` released at the same instant.
    let go = Arc::new(Barrier::new(2 * STARTS));
    let checks: Vec<_> = (0..STARTS)
        .map(|_| {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                Command::new(TCPERR).arg("check").output().expect("run tcperr check")
            })
        })
        .collect();
    let traces: Vec<_> = (0..STARTS)
        .map(|_| {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                drive::start(Path::new(TCPERR), &[], Duration::from_secs(30))
            })
        })
        .collect();
    for check in checks {
        let out = check.join().expect("check thread");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "tcperr check: {text}");
        assert!(text.contains("tracing:     can run"), "{text}");
    }
    for trace in traces {
        let traced = trace
            .join()
            .expect("trace thread")
            .unwrap_or_else(|(code, stderr)| panic!("tcperr trace (exit {code:?}): {stderr}"));
        let stopped = drive::stop(traced).expect("stop tcperr trace");
        assert_eq!(stopped.code, 0, "{:#?}", stopped.stderr);
    }

    // The hooks tcperr needs on this kernel may need no tracefs at all: race its finder itself,
    // as tcperr would where a hook does need it (and as a trace beside a serve would).
    // SAFETY: a constant NUL-terminated path, in this process's own mount namespace.
    while unsafe { libc::umount2(c"/sys/kernel/tracing".as_ptr(), libc::MNT_DETACH) } == 0 {}
    assert_eq!(tracefs::find(), None);
    let go = Arc::new(Barrier::new(4));
    let finders: Vec<_> = (0..4)
        .map(|_| {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                tracefs::find_or_mount()
            })
        })
        .collect();
    for f in finders {
        let root = f.join().expect("finder thread").expect("tracefs found or mounted");
        assert!(root.join("events/tcp").is_dir(), "{}", root.display());
    }
}
