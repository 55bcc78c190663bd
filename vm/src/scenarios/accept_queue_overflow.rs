//! docs/kernel-facts.md §2, the server that cannot take the connection. A listener (backlog 0) that
//! never accepts holds one connection, so its accept queue is full when a second client's final ACK
//! arrives. With `net.ipv4.tcp_abort_on_overflow=1` the kernel answers with RST and the client's
//! read fails with "connection reset by peer"; with 0 (the default) it drops the ACK: the client
//! believes it is connected, the server retransmits its SYN-ACK, nothing is reset.
//!
//! To have the second client's SYN arrive while the queue still had room and its ACK after the
//! queue filled, that client drops its own input until the first client is queued (its SYN-ACK
//! is lost; its SYN retransmission a second later completes the handshake). Runs in a network
//! namespace of its own, whose sysctl touches nothing else.
//!
//! `too_many_open_files`: the same overflow, but the listener is a process that has used up its
//! file descriptors (`RLIMIT_NOFILE`), so accept() fails with EMFILE and the queue never drains:
//! the classic incident, which tcperr must name.
//!
//! `prefork_too_many_open_files`: the prefork form of it. A master listens (tcperr learns the
//! listener's owner there) and forks a worker, which inherits the listener and is the one that
//! accepts; the worker has used up its descriptors, the master has thousands to spare. tcperr
//! must look past the master to every process holding the listener, and name the worker.
use std::{
    io::{ErrorKind, Read},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{Arc, mpsc},
    time::Duration,
};

use super::{actor, ctx, ev, finish, join};
use crate::{Actor, Run, loopback, netns, out_of_files, proc_net, sock};

/// Who holds the listener and does not accept.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// A thread that just never accepts.
    Idle,
    /// A process whose accept() fails with EMFILE (the "too many open files" server).
    OutOfFiles,
    /// A prefork master with files to spare, and its worker whose accept() fails with EMFILE.
    PreforkOutOfFiles,
}

pub fn run(abort_on_overflow: bool, listener: Listener) -> Result<Run, String> {
    let ns = Arc::new(
        netns::Netns::new(&[(
            "net/ipv4/tcp_abort_on_overflow",
            if abort_on_overflow { "1" } else { "0" },
        )])
        .map_err(ctx("network namespace"))?,
    );
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (server, addr) = start_server(ns.clone(), listener, done_rx)?;
    let (queued_tx, queued_rx) = mpsc::channel::<()>();
    let (filler_done_tx, filler_done_rx) = mpsc::channel::<()>();
    let filler_ns = ns.clone();
    let filler = actor("filler", move || {
        filler_ns.enter().map_err(ctx("setns"))?;
        let late_started = queued_rx.recv().map_err(ctx("wait for client"));
        late_started?;
        let f = TcpStream::connect(addr).map_err(ctx("connect"))?; // queued: the queue is full
        let port = f.local_addr().map_err(ctx("local_addr"))?.port();
        filler_done_rx.recv().map_err(ctx("wait"))?;
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
        let c = sock::stalled_connect(addr).map_err(ctx("connect"))?;
        let port = c.local_addr().map_err(ctx("local_addr"))?.port();
        queued_tx.send(()).map_err(ctx("signal"))?;
        std::thread::sleep(Duration::from_millis(200)); // the filler is queued by now
        sock::detach_filter(&c).map_err(ctx("SO_DETACH_FILTER"))?;
        sock::wait_for(&c, libc::POLLOUT, Duration::from_secs(10)).map_err(ctx("handshake"))?;
        let outcome = client_outcome(&c, port, abort_on_overflow);
        sock::set_linger_zero(&c).map_err(ctx("SO_LINGER"))?;
        drop(c);
        outcome?;
        // (as the filler's below: the pending connection is gone before the listener closes)
        proc_net::wait_until_gone(addr.port(), port, Duration::from_secs(5))
            .map_err(ctx("the server side of the client's connection"))?;
        Ok(port)
    });
    let (client, client_port) = join(client)?;
    let _ = filler_done_tx.send(());
    let (filler, filler_port) = join(filler)?;
    let _ = done_tx.send(());
    let servers = match server {
        Server::Thread(t) => vec![join(t)?.0],
        Server::Process(p) => {
            // tcperr reads the processes' files as it handles the overflow's record, after the
            // fact (tens of ms later on an emulated CPU): they outlive the scenario's events by a
            // second, as a real server would, rather than end with them.
            std::thread::sleep(Duration::from_secs(1));
            match p.master {
                None => vec![Actor { name: "server", pid: p.pid, tid: p.pid }],
                Some(master) => vec![
                    Actor { name: "master", pid: master, tid: master },
                    Actor { name: "worker", pid: p.pid, tid: p.pid },
                ],
            }
        }
    };
    let scenario = match (abort_on_overflow, listener) {
        (true, _) => "accept_queue_overflow_reset",
        (false, Listener::Idle) => "accept_queue_overflow_drop",
        (false, Listener::OutOfFiles) => "too_many_open_files",
        (false, Listener::PreforkOutOfFiles) => "prefork_too_many_open_files",
    };
    let mut actors = vec![client, filler];
    actors.extend(servers);
    Ok(finish(
        scenario,
        addr,
        [client_port, filler_port],
        actors,
        expected(abort_on_overflow, listener),
    ))
}

/// The listener, in namespace `ns`, with a backlog of 0, never accepting: a thread that stops
/// when `done` says so, or the out-of-files process (or prefork pair). Returns it and its
/// address.
fn start_server(
    ns: Arc<netns::Netns>,
    listener: Listener,
    done: mpsc::Receiver<()>,
) -> Result<(Server, SocketAddr), String> {
    if listener != Listener::Idle {
        let forked = std::thread::spawn(move || {
            ns.enter().map_err(ctx("setns"))?;
            let started = if listener == Listener::PreforkOutOfFiles {
                out_of_files::OutOfFilesServer::start_prefork()
            } else {
                out_of_files::OutOfFilesServer::start()
            };
            started.map_err(ctx("out-of-files server"))
        })
        .join()
        .map_err(|_| "fork thread panicked".to_owned())??;
        let addr = forked.addr;
        return Ok((Server::Process(forked), addr));
    }
    let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
    let server = Server::Thread(actor("server", move || {
        ns.enter().map_err(ctx("setns"))?;
        let listener = TcpListener::bind(loopback(false)).map_err(ctx("bind"))?;
        sock::relisten(&listener, 0).map_err(ctx("listen"))?;
        let addr = listener.local_addr().map_err(ctx("local_addr"))?;
        addr_tx.send(addr).map_err(ctx("signal"))?;
        done.recv().map_err(ctx("wait"))?; // never accepts
        Ok(())
    }));
    let addr = addr_rx.recv().map_err(ctx("listener address"))?;
    Ok((server, addr))
}

/// What the client, connected from `port` while the queue was full, must see: a reset when the
/// listener aborts on overflow, else nothing at all while the server retransmits its SYN-ACK.
fn client_outcome(c: &TcpStream, port: u16, abort_on_overflow: bool) -> Result<(), String> {
    if abort_on_overflow {
        sock::wait_for(c, 0, Duration::from_secs(5)).map_err(ctx("wait for RST"))?;
        set_blocking(c)?;
        return match (&*c).read(&mut [0u8; 8]) {
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(()),
            other => Err(format!("read returned {other:?}, expected connection reset")),
        };
    }
    // Wait until the server has retransmitted its SYN-ACK by timer at least twice: the second
    // time (3 s in) comes after the client's ACK was dropped, which is what tcperr reports. The
    // kernel's own count, not a guessed delay (timers slip under load).
    proc_net::wait_for_synack_retransmits(port, 2, Duration::from_secs(15))
        .map_err(ctx("SYN-ACK retransmissions"))?;
    match sock::wait_for(c, 0, Duration::from_millis(1)) {
        Err(e) if e.kind() == ErrorKind::TimedOut => Ok(()),
        other => Err(format!("dropped handshake: the client saw {other:?}, expected nothing")),
    }
}

/// The events tcperr must report. The overflow is the listener's: named after its owner, the
/// process that listened, unless a process holding the listener is at its open-files limit
/// (the prefork worker): then after that one.
fn expected(abort_on_overflow: bool, listener: Listener) -> Vec<crate::Expected> {
    let (overflow_actor, overflow_cause) = match listener {
        Listener::Idle => ("server", "accept_queue_overflow"),
        Listener::OutOfFiles => ("server", "listener_out_of_files"),
        Listener::PreforkOutOfFiles => ("worker", "listener_out_of_files"),
    };
    if abort_on_overflow {
        return vec![
            ev(
                "accept_queue_full",
                "server",
                "server->client",
                "LISTEN",
                "ECONNRESET",
                "accept_queue_overflow",
            ),
            ev(
                "rst_received",
                "client",
                "client->server",
                "ESTABLISHED",
                "ECONNRESET",
                "peer_reset",
            ),
            ev(
                "recv_error",
                "client",
                "client->server",
                "CLOSE",
                "ECONNRESET",
                "accept_queue_overflow",
            ),
            ev("rst_sent", "filler", "client->server", "CLOSE", "-", "aborted"),
        ];
    }
    vec![
        ev("accept_queue_full", overflow_actor, "server->client", "LISTEN", "-", overflow_cause),
        ev("rst_sent", "client", "client->server", "CLOSE", "-", "aborted"),
        ev("rst_sent", "filler", "client->server", "CLOSE", "-", "aborted"),
    ]
}

enum Server {
    Thread(std::thread::JoinHandle<(Actor, Result<(), String>)>),
    Process(out_of_files::OutOfFilesServer),
}

fn set_blocking(s: &TcpStream) -> Result<(), String> {
    // SAFETY: fcntl on a valid fd.
    let flags = unsafe { libc::fcntl(s.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0
        || unsafe { libc::fcntl(s.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0
    {
        return Err(format!("fcntl: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}
