//! docs/kernel-facts.md §2, first cause. The server sets `SO_LINGER {on, 0}` and closes: RST
//! instead of FIN. The RST reaches the client in ESTABLISHED, the kernel records ECONNRESET, and
//! the client's next read fails with "connection reset by peer". Also the IPv6 case.
use std::{
    io::{ErrorKind, Read},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    time::Duration,
};

use super::{actor, ctx, ev, finish, join};
use crate::{Run, loopback, sock};

pub fn run(v6: bool) -> Result<Run, String> {
    let listener = TcpListener::bind(loopback(v6)).map_err(ctx("bind"))?;
    let addr = listener.local_addr().map_err(ctx("local_addr"))?;
    let (connected_tx, connected_rx) = mpsc::channel();
    let (closed_tx, closed_rx) = mpsc::channel();
    let server = actor("server", move || {
        let (s, _) = listener.accept().map_err(ctx("accept"))?;
        connected_rx.recv().map_err(ctx("wait for client"))?;
        sock::set_linger_zero(&s).map_err(ctx("SO_LINGER"))?;
        drop(s); // RST
        closed_tx.send(()).map_err(ctx("signal"))
    });
    let client = actor("client", move || {
        let mut c = TcpStream::connect(addr).map_err(ctx("connect"))?;
        let port = c.local_addr().map_err(ctx("local_addr"))?.port();
        connected_tx.send(()).map_err(ctx("signal"))?;
        closed_rx.recv().map_err(ctx("wait for server"))?;
        sock::wait_for(&c, 0, Duration::from_secs(5)).map_err(ctx("wait for RST"))?;
        let mut buf = [0u8; 16];
        match c.read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(port),
            other => Err(format!("read returned {other:?}, expected connection reset")),
        }
    });
    let (server, ()) = join(server)?;
    let (client, port) = join(client)?;
    Ok(finish(
        if v6 { "reset_by_abort_ipv6" } else { "reset_by_abort" },
        addr,
        [port],
        vec![client, server],
        vec![
            ev("rst_sent", "server", "server->client", "CLOSE", "-", "aborted"),
            // The server's account of its RST comes after this on loopback: cause not yet known.
            ev(
                "rst_received",
                "client",
                "client->server",
                "ESTABLISHED",
                "ECONNRESET",
                "peer_reset",
            ),
            ev("recv_error", "client", "client->server", "CLOSE", "ECONNRESET", "peer_aborted"),
        ],
    ))
}
