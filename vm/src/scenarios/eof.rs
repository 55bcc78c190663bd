//! docs/kernel-facts.md §3. The client closes cleanly (FIN); the server's read returns 0 bytes
//! (io.EOF in Go). No RST anywhere, and no request left unanswered: an orderly close, which
//! tcperr prints only with `--all` (attributed to the reading server) and counts apart from
//! errors.
use std::{
    io::Read,
    net::{TcpListener, TcpStream},
};

use super::{actor, ctx, finish, join};
use crate::{Run, loopback};

pub fn run() -> Result<Run, String> {
    let listener = TcpListener::bind(loopback(false)).map_err(ctx("bind"))?;
    let addr = listener.local_addr().map_err(ctx("local_addr"))?;
    let server = actor("server", move || {
        let (mut s, _) = listener.accept().map_err(ctx("accept"))?;
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(0) => Ok(()),
            other => Err(format!("read returned {other:?}, expected EOF (0 bytes)")),
        }
    });
    let client = actor("client", move || {
        let c = TcpStream::connect(addr).map_err(ctx("connect"))?;
        let port = c.local_addr().map_err(ctx("local_addr"))?.port();
        drop(c); // FIN
        Ok(port)
    });
    let (client, port) = join(client)?;
    let (server, ()) = join(server)?;
    Ok(finish("eof", addr, [port], vec![client, server], vec![]))
}
