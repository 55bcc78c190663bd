//! docs/kernel-facts.md §4, the timeout. The peer vanishes: every segment for the server's socket
//! is dropped before TCP sees it (a socket filter, the firewall-free equivalent of a dead host or a
//! link gone down). The client's data is never acknowledged; after its `TCP_USER_TIMEOUT` the
//! kernel gives up with ETIMEDOUT, and the next write fails with "connection timed out".
//!
//! Both reports of the timeout must carry the connection's retransmissions as the kernel counts
//! them: after the failed write the client asks its kernel (`TCP_INFO`, which nothing changes
//! once the connection is closed) how many it made and how many in a row went unanswered; the
//! oldest unacknowledged segment went out at least the user timeout before. Where the kernel
//! says why it drops, the story also says that it dropped the data segment and each
//! retransmission (the filter's `SOCKET_FILTER`).
use std::{
    io::Write,
    net::{TcpListener, TcpStream},
    sync::mpsc,
    time::Duration,
};

use super::{actor, ctx, ev, finish, join};
use crate::{Retransmits, Run, loopback, sock};

/// The client's `TCP_USER_TIMEOUT`: with loopback's 200 ms minimum RTO, one or two
/// retransmissions fit before it.
const USER_TIMEOUT_MS: u32 = 500;

pub fn run() -> Result<Run, String> {
    let listener = TcpListener::bind(loopback(false)).map_err(ctx("bind"))?;
    let addr = listener.local_addr().map_err(ctx("local_addr"))?;
    let (silent_tx, silent_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let server = actor("server", move || {
        let (s, _) = listener.accept().map_err(ctx("accept"))?;
        sock::drop_all_input(&s).map_err(ctx("SO_ATTACH_FILTER"))?;
        silent_tx.send(()).map_err(ctx("signal"))?;
        done_rx.recv().map_err(ctx("wait for client"))?;
        // Leave without a FIN the client's kernel would have to answer.
        sock::set_linger_zero(&s).map_err(ctx("SO_LINGER"))?;
        Ok(())
    });
    let client = actor("client", move || {
        let mut c = TcpStream::connect(addr).map_err(ctx("connect"))?;
        let port = c.local_addr().map_err(ctx("local_addr"))?.port();
        sock::set_user_timeout(&c, USER_TIMEOUT_MS).map_err(ctx("TCP_USER_TIMEOUT"))?;
        silent_rx.recv().map_err(ctx("wait for server"))?;
        c.write_all(b"anyone there?").map_err(ctx("write"))?;
        sock::wait_for(&c, 0, Duration::from_secs(10)).map_err(ctx("wait for the timeout"))?;
        let res = c.write(b"again");
        let retrans = sock::retransmissions(&c).map_err(ctx("TCP_INFO"));
        let _ = done_tx.send(());
        match res {
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            other => {
                return Err(format!("write returned {other:?}, expected connection timed out"));
            }
        }
        let retrans = retrans?;
        if retrans.total == 0 {
            return Err(format!(
                "the kernel made no retransmission before the timeout: {retrans:?}"
            ));
        }
        Ok((port, retrans))
    });
    let (client, (port, retrans)) = join(client)?;
    let retransmits = Retransmits {
        total: retrans.total,
        in_row: u32::from(retrans.in_row),
        since_at_least_ms: USER_TIMEOUT_MS,
        // The filter dropped the data segment and each retransmission of it.
        dropped: kernel_tells_drop_reasons().then_some(u64::from(retrans.total) + 1),
    };
    let (server, ()) = join(server)?;
    Ok(finish(
        "silent_peer",
        addr,
        [port],
        vec![client, server],
        vec![
            ev(
                "socket_error",
                "client",
                "client->server",
                timeout_report_state(),
                "ETIMEDOUT",
                "timeout",
            )
            .retransmits(retransmits),
            ev("send_error", "client", "client->server", "CLOSE", "ETIMEDOUT", "timeout")
                .retransmits(retransmits),
            ev("rst_sent", "server", "server->client", "CLOSE", "-", "aborted"),
        ],
    ))
}

/// Whether the kernel's `kfree_skb` tracepoint carries why it dropped (5.17+), which tcperr's
/// `drop` source needs: read from its format, an oracle independent of tcperr.
fn kernel_tells_drop_reasons() -> bool {
    crate::drive::kernel_reports_rst_reason(); // (mounts tracefs if nothing has)
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"].iter().any(|root| {
        std::fs::read_to_string(format!("{root}/events/skb/kfree_skb/format"))
            .is_ok_and(|f| f.contains(" reason;"))
    })
}

/// The state a timeout is reported in: kernels with `tcp_done_with_error()` (6.10, and stable
/// kernels it was backported to, such as Debian 12's 6.1) move the socket to CLOSE and then
/// report the error; older ones (Debian 11's 5.10) report it first, from the state the socket
/// was in. Read from the kernel's symbols: an oracle of the scenario's own, independent of
/// tcperr.
fn timeout_report_state() -> &'static str {
    let symbols = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    if symbols.lines().any(|l| l.split_whitespace().nth(2) == Some("tcp_done_with_error")) {
        "CLOSE"
    } else {
        "ESTABLISHED"
    }
}
