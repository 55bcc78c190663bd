//! docs/kernel-facts.md §4. Connect to a port nobody listens on: the RST answers the SYN in
//! SYN_SENT and connect fails with "connection refused". The client binds first so that its port
//! stays known after the failure. `nonblocking`: the event-loop form, connect() returns EINPROGRESS
//! and the program learns of the refusal later from `SO_ERROR`; tcperr reports it when the RST
//! arrives, the same as for a blocking connect (collecting the error is no socket call tcperr
//! sees).
use std::{io, net::TcpListener};

use super::{actor, ctx, ev, finish, join};
use crate::{Needs, Run, loopback, sock};

pub fn run(nonblocking: bool) -> Result<Run, String> {
    // A port that was free a moment ago and has no listener now.
    let addr =
        TcpListener::bind(loopback(false)).and_then(|l| l.local_addr()).map_err(ctx("bind"))?;
    let client = actor("client", move || {
        let (port, res) = sock::connect_bound(addr, nonblocking).map_err(ctx("socket"))?;
        match res {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(port),
            other => Err(format!("connect returned {other:?}, expected connection refused")),
        }
    });
    let (client, port) = join(client)?;
    Ok(finish(
        if nonblocking { "refused_nonblocking" } else { "refused" },
        addr,
        [port],
        vec![client],
        vec![
            // The RST for a segment no socket wants: reported by kernels that give RST reasons.
            ev("rst_sent", "-", "server->client", "NONE", "-", "no_socket").needs(Needs::RstReason),
            ev("rst_received", "client", "client->server", "SYN_SENT", "ECONNREFUSED", "refused"),
        ],
    ))
}
