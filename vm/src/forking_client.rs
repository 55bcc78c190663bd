//! The command `tcperr trace -- CMD` is tested with (`tcperr-scenario forking-client PORT CODE`,
//! or a test binary that runs [`run`] when re-executed so): a client whose failing connection is
//! made by a child it forks after it started, as a shell or a prefork worker would. The child
//! connects to 127.0.0.1:PORT, where nothing listens (ECONNREFUSED); the parent reports on
//! stderr who it runs as and the child's pid, lingers a second (while the test makes an error of
//! its own, which is not the command's), and exits CODE.
use std::{io::Write as _, net::TcpStream, time::Duration};

/// How long the parent stays after its child's failure.
pub const LINGER: Duration = Duration::from_secs(1);

/// The line on stderr naming the child: `forking-client: child PID refused`.
pub const CHILD_PREFIX: &str = "forking-client: child ";

/// Runs the command; returns the exit code it is to end with (`code`, or 1 when the child did
/// not meet the refusal). Call only from a process of its own with one thread (it forks).
pub fn run(port: u16, code: u8) -> u8 {
    // SAFETY: getuid, getgid cannot fail; getgroups with 0 returns the count only.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut groups = vec![0 as libc::gid_t; 64];
    // SAFETY: `groups` holds 64 ids.
    let n = unsafe { libc::getgroups(64, groups.as_mut_ptr()) };
    groups.truncate(n.max(0) as usize);
    let mut err = std::io::stderr();
    let _ = writeln!(err, "forking-client: uid {uid} gid {gid} groups {groups:?}");
    // SAFETY: this process has one thread (its caller's promise): the child may use std.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let refused = matches!(
            TcpStream::connect(("127.0.0.1", port)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        );
        // SAFETY: ends the child without the parent's destructors.
        unsafe { libc::_exit(if refused { 0 } else { 1 }) };
    }
    if pid < 0 {
        let _ = writeln!(err, "forking-client: fork: {}", std::io::Error::last_os_error());
        return 1;
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let refused = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    let _ =
        writeln!(err, "{CHILD_PREFIX}{pid} {}", if refused { "refused" } else { "not refused" });
    std::thread::sleep(LINGER);
    if refused { code } else { 1 }
}
