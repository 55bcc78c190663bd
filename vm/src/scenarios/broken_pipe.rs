//! docs/kernel-facts.md §1. The server reads and closes (FIN); the client, not reading, sits in
//! CLOSE_WAIT and writes again; the server's kernel has no reader and answers RST
//! (TCPAbortOnData); the RST lands in CLOSE_WAIT, so the kernel records EPIPE; the client's third
//! write fails with "broken pipe".
use std::{
    io::{ErrorKind, Read, Write},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    time::Duration,
};

use super::{actor, ctx, ev, finish, join};
use crate::{Run, loopback, sock};

pub fn run() -> Result<Run, String> {
    let listener = TcpListener::bind(loopback(false)).map_err(ctx("bind"))?;
    let addr = listener.local_addr().map_err(ctx("local_addr"))?;
    let (closed_tx, closed_rx) = mpsc::channel();
    let server = actor("server", move || {
        let (mut s, _) = listener.accept().map_err(ctx("accept"))?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).map_err(ctx("read"))?;
        // Keep the closed socket a full socket in FIN_WAIT2 (a FIN_WAIT2 timeout above
        // TIME_WAIT's 60 s), so that the client's data meets it rather than, depending on timing,
        // the TIME_WAIT socket that can replace it.
        sock::set_linger2(&s, 90).map_err(ctx("TCP_LINGER2"))?;
        drop(s); // FIN to the client
        closed_tx.send(()).map_err(ctx("signal"))
    });
    let client = actor("client", move || {
        let mut c = TcpStream::connect(addr).map_err(ctx("connect"))?;
        let port = c.local_addr().map_err(ctx("local_addr"))?.port();
        c.write_all(b"hello").map_err(ctx("first write"))?;
        closed_rx.recv().map_err(ctx("wait for server"))?;
        sock::wait_for(&c, libc::POLLRDHUP, Duration::from_secs(5)).map_err(ctx("wait for FIN"))?;
        c.write_all(b"more").map_err(ctx("write in CLOSE_WAIT"))?;
        sock::wait_for(&c, 0, Duration::from_secs(5)).map_err(ctx("wait for RST"))?;
        match c.write(b"again") {
            Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(port),
            other => Err(format!("third write returned {other:?}, expected broken pipe")),
        }
    });
    let (server, ()) = join(server)?;
    let (client, port) = join(client)?;
    Ok(finish(
        "broken_pipe",
        addr,
        [port],
        vec![client, server],
        vec![
            // The server's kernel resets the client that wrote to its closed socket.
            ev("rst_sent", "server", "server->client", "CLOSE", "-", "data_after_close"),
            ev(
                "rst_received",
                "client",
                "client->server",
                "CLOSE_WAIT",
                "EPIPE",
                "write_after_peer_close",
            ),
            ev(
                "send_error",
                "client",
                "client->server",
                "CLOSE",
                "EPIPE",
                "write_after_peer_close",
            ),
        ],
    ))
}
