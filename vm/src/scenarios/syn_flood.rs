//! docs/kernel-facts.md §2, SYNs at a full accept queue: "clients time out connecting, but the
//! server logs nothing". A listener (backlog 0) that never accepts holds one connection (the
//! filler's), so its accept queue is full; four more clients then send their SYNs, and the
//! kernel drops each one (`tcp_conn_request()`: `sk_acceptq_is_full()`, counted as
//! ListenOverflows), with `net.ipv4.tcp_syncookies` 0 or 1 alike: cookies stand in for a full
//! SYN queue, never for a full accept queue. The clients would retransmit their SYNs and time
//! out; they give up first (close() in SYN_SENT sends nothing). Runs in a network namespace of
//! its own, whose sysctls touch nothing else.
//!
//! tcperr reports one `accept_queue_full` (action `syn_dropped`) per client, named after the
//! listener's owner, where the kernel's `consume_skb` tracepoint says where a buffer was freed
//! from (its `location` argument); elsewhere the drops are not seen and only the filler's reset
//! is expected.
use std::{
    io,
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd},
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use super::{actor, ctx, ev, finish, join};
use crate::{Run, loopback, netns, proc_net, sock};

/// Clients whose SYNs the full queue drops.
const FLOOD: usize = 4;

pub fn run(syncookies: bool) -> Result<Run, String> {
    run_with(syncookies, || {})
}

/// As [`run`], calling `before_flood` once the accept queue is full and before any client's
/// SYN (a test starts tcperr there: the listener listened before it).
pub fn run_with(
    syncookies: bool,
    before_flood: impl FnOnce() + Send + 'static,
) -> Result<Run, String> {
    let ns = Arc::new(
        netns::Netns::new(&[("net/ipv4/tcp_syncookies", if syncookies { "1" } else { "0" })])
            .map_err(ctx("network namespace"))?,
    );
    let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let server_ns = ns.clone();
    let server = actor("server", move || {
        server_ns.enter().map_err(ctx("setns"))?;
        let listener = TcpListener::bind(loopback(false)).map_err(ctx("bind"))?;
        sock::relisten(&listener, 0).map_err(ctx("listen"))?;
        addr_tx.send(listener.local_addr().map_err(ctx("local_addr"))?).map_err(ctx("signal"))?;
        done_rx.recv().map_err(ctx("wait"))?; // never accepts
        Ok(())
    });
    let addr = addr_rx.recv().map_err(ctx("listener address"))?;
    let filler_ns = ns.clone();
    let (full_tx, full_rx) = mpsc::channel::<()>();
    let (flooded_tx, flooded_rx) = mpsc::channel::<()>();
    let filler = actor("filler", move || {
        filler_ns.enter().map_err(ctx("setns"))?;
        let f = TcpStream::connect(addr).map_err(ctx("connect"))?;
        let port = f.local_addr().map_err(ctx("local_addr"))?.port();
        wait_for_queued(addr.port(), 1, Duration::from_secs(10)).map_err(ctx("queued"))?;
        full_tx.send(()).map_err(ctx("signal"))?;
        flooded_rx.recv().map_err(ctx("wait"))?;
        sock::set_linger_zero(&f).map_err(ctx("SO_LINGER"))?;
        drop(f);
        // The listener closes next: it must find the queued connection already reset by this
        // RST, or it resets it itself (a second RST, of another story).
        proc_net::wait_until_gone(addr.port(), port, Duration::from_secs(5))
            .map_err(ctx("the server side of the filler's connection"))?;
        Ok(port)
    });
    let client_ns = ns;
    let client = actor("client", move || {
        client_ns.enter().map_err(ctx("setns"))?;
        full_rx.recv().map_err(ctx("wait for the filler"))?;
        before_flood();
        let before = listen_overflows().map_err(ctx("netstat"))?;
        let mut clients = Vec::new();
        for _ in 0..FLOOD {
            clients.push(syn(addr).map_err(ctx("connect"))?);
        }
        // Each SYN met the full queue (the kernel's own count, not a guessed delay).
        let deadline = Instant::now() + Duration::from_secs(10);
        while listen_overflows().map_err(ctx("netstat"))? < before + FLOOD as u64 {
            if Instant::now() > deadline {
                return Err("the SYNs were not dropped (ListenOverflows did not grow)".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let ports = clients
            .iter()
            .map(|c| c.local_addr().map(|a| a.port()))
            .collect::<io::Result<Vec<_>>>()
            .map_err(ctx("local_addr"))?;
        drop(clients); // in SYN_SENT: gone without a segment
        Ok(ports)
    });
    let (client, mut ports) = join(client)?;
    let _ = flooded_tx.send(());
    let (filler, filler_port) = join(filler)?;
    let _ = done_tx.send(());
    let (server, ()) = join(server)?;
    ports.push(filler_port);
    let scenario = if syncookies {
        "syn_flood_accept_queue_full_syncookies"
    } else {
        "syn_flood_accept_queue_full"
    };
    let mut expected = Vec::new();
    if kernel_tells_syn_drops() {
        for _ in 0..FLOOD {
            expected.push(ev(
                "accept_queue_full",
                "server",
                "server->client",
                "LISTEN",
                "-",
                "accept_queue_overflow",
            ));
        }
    }
    expected.push(ev("rst_sent", "filler", "client->server", "CLOSE", "-", "aborted"));
    Ok(finish(scenario, addr, ports, vec![client, filler, server], expected))
}

/// Whether `consume_skb` carries its caller (`location`), which tcperr's hook needs.
pub fn kernel_tells_syn_drops() -> bool {
    crate::drive::kernel_reports_rst_reason(); // (mounts tracefs if nothing has)
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"].iter().any(|root| {
        std::fs::read_to_string(format!("{root}/events/skb/consume_skb/format"))
            .is_ok_and(|f| f.contains(" location;"))
    })
}

/// Waits until the listener on `port` (this thread's namespace) has `n` connections waiting
/// for accept() (`/proc/net/tcp` shows a listener's accept queue as its rx_queue).
fn wait_for_queued(port: u16, n: u32, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let table = std::fs::read_to_string("/proc/thread-self/net/tcp")?;
        let queued = table.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = f.get(1)?.rsplit(':').next()?;
            (u16::from_str_radix(local, 16).ok()? == port && *f.get(3)? == "0A")
                .then(|| u32::from_str_radix(f.get(4)?.rsplit(':').next()?, 16).ok())?
        });
        if queued.is_some_and(|q| q >= n) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the accept queue did not fill"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `TcpExt: ListenOverflows` of this thread's namespace.
fn listen_overflows() -> io::Result<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/netstat")?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| io::Error::other("no TcpExt ListenOverflows"))
}

/// A non-blocking socket whose connect to `addr` has started: its SYN is on its way.
fn syn(addr: SocketAddr) -> io::Result<TcpStream> {
    let SocketAddr::V4(v4) = addr else {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "IPv4 only"));
    };
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let s = unsafe { TcpStream::from_raw_fd(fd) };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() },
        sin_zero: [0; 8],
    };
    // SAFETY: valid fd and sockaddr_in.
    let rc = unsafe {
        libc::connect(
            s.as_raw_fd(),
            (&raw const sin).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    match rc {
        0 => Err(io::Error::other("connected at once: the queue was not full")),
        _ => match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(s),
            e => Err(e),
        },
    }
}
