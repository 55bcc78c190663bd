//! The RST storm: generator threads that each connect, accept, abort with `SO_LINGER {on, 0}`
//! and read the ECONNRESET, as fast as the machine allows. Used by the storm test and by
//! `cargo xtask bench`.
use std::{
    io::{ErrorKind, Read},
    net::{TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{loopback, sock};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StormStats {
    /// Connections made and reset (each: one RST sent, one received, one failed read).
    pub connections: u64,
    /// Reads that did not fail with ECONNRESET (should stay 0).
    pub unexpected: u64,
}

/// Runs `generators` threads for `duration`; their listeners' ports are returned with the stats
/// so that a tracer's events can be matched to the storm.
pub fn run(generators: usize, duration: Duration) -> (StormStats, Vec<u16>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    let mut ports = Vec::new();
    for i in 0..generators {
        let Ok(listener) = TcpListener::bind(loopback(false)) else { continue };
        let Ok(addr) = listener.local_addr() else { continue };
        ports.push(addr.port());
        let stop = stop.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("storm{i}"))
                .spawn(move || generate(&listener, addr, &stop))
                .expect("storm thread"),
        );
    }
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = StormStats::default();
    for h in handles {
        if let Ok(s) = h.join() {
            total.connections += s.connections;
            total.unexpected += s.unexpected;
        }
    }
    (total, ports)
}

fn generate(listener: &TcpListener, addr: std::net::SocketAddr, stop: &AtomicBool) -> StormStats {
    let mut stats = StormStats::default();
    let mut buf = [0u8; 1];
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut client) = TcpStream::connect(addr) else { continue };
        let Ok((server, _)) = listener.accept() else { continue };
        if sock::set_linger_zero(&server).is_err() {
            continue;
        }
        drop(server); // RST
        match client.read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::ConnectionReset => stats.connections += 1,
            _ => stats.unexpected += 1,
        }
    }
    stats
}
