//! docs/kernel-facts.md §2, second cause. The client sends a request the server never reads; the
//! server closes with those bytes still in its receive buffer, so its kernel sends RST, not FIN
//! (RFC 2525 §2.17). The client's next read fails with "connection reset by peer".
use std::{
    io::{ErrorKind, Read, Write},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    time::{Duration, Instant},
};

use super::{actor, ctx, ev, finish, join};
use crate::{Run, loopback, sock};

pub fn run() -> Result<Run, String> {
    let listener = TcpListener::bind(loopback(false)).map_err(ctx("bind"))?;
    let addr = listener.local_addr().map_err(ctx("local_addr"))?;
    let (closed_tx, closed_rx) = mpsc::channel();
    let server = actor("server", move || {
        let (s, _) = listener.accept().map_err(ctx("accept"))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while sock::unread_bytes(&s).map_err(ctx("FIONREAD"))? == 0 {
            if Instant::now() > deadline {
                return Err("the request never arrived".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(s); // unread data: RST
        closed_tx.send(()).map_err(ctx("signal"))
    });
    let client = actor("client", move || {
        let mut c = TcpStream::connect(addr).map_err(ctx("connect"))?;
        let port = c.local_addr().map_err(ctx("local_addr"))?.port();
        c.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(ctx("write"))?;
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
        "reset_by_unread_data",
        addr,
        [port],
        vec![client, server],
        vec![
            ev("rst_sent", "server", "server->client", "CLOSE", "-", "closed_with_unread_data")
                .without_reason("aborted"),
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
                "peer_closed_with_unread_data",
            )
            .without_reason("peer_aborted"),
        ],
    ))
}
