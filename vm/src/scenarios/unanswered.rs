//! docs/kernel-facts.md §3. The client sends a request; the server reads it and closes (FIN)
//! without answering, as a server that drops a request does (a crash, a limit, a keep-alive
//! timeout racing the request). The client's read returns 0: an EOF that is an error, because
//! the last data of the connection went out from the client.
use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

use super::{actor, ctx, ev, finish, join};
use crate::{Run, loopback};

pub fn run() -> Result<Run, String> {
    let listener = TcpListener::bind(loopback(false)).map_err(ctx("bind"))?;
    let addr = listener.local_addr().map_err(ctx("local_addr"))?;
    let (sent_tx, sent_rx) = mpsc::channel();
    let server = actor("server", move || {
        let (mut s, _) = listener.accept().map_err(ctx("accept"))?;
        sent_rx.recv().map_err(ctx("wait for the request"))?;
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).map_err(ctx("read the request"))?;
        drop(s); // FIN, no answer
        Ok(())
    });
    let client = actor("client", move || {
        let mut c = TcpStream::connect(addr).map_err(ctx("connect"))?;
        let port = c.local_addr().map_err(ctx("local_addr"))?.port();
        c.write_all(b"request").map_err(ctx("write the request"))?;
        sent_tx.send(()).map_err(ctx("signal"))?;
        let mut buf = [0u8; 16];
        match c.read(&mut buf) {
            Ok(0) => Ok(port),
            other => Err(format!("read returned {other:?}, expected EOF (0 bytes)")),
        }
    });
    let (server, ()) = join(server)?;
    let (client, port) = join(client)?;
    Ok(finish(
        "unanswered",
        addr,
        [port],
        vec![client, server],
        vec![ev("recv_eof", "client", "client->server", "CLOSE_WAIT", "EOF", "unanswered")],
    ))
}
