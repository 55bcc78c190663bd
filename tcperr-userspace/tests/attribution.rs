//! Attribution on a busy host (issue #22 item 7), with the real loader attached in this process
//! and real sockets: the owner of a server's accepted sockets, whose resets arrive in softirq, is
//! found in `/proc` without reading the links of processes that only hold idle sockets. Counted
//! in links read, not in time. Needs root.
use std::{
    net::TcpStream,
    sync::mpsc,
    time::{Duration, Instant},
};

use tcperr_scenarios::{health_check, idle::IdleSockets, sock};
use tcperr_userspace::{
    correlate::Correlator,
    load::{Config, Tracer},
};

#[test]
fn a_servers_accepted_sockets_are_attributed_without_reading_unrelated_idle_sockets() {
    // 20,000 idle sockets in processes of their own, and a service that listened before tcperr
    // started (nothing learned at listen()) and keeps every connection it accepts.
    let idle = IdleSockets::open(10_000).expect("idle sockets");
    let listener = health_check::service_listener().expect("service port");
    let addr = listener.local_addr().expect("address");
    let (held_tx, held_rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept() {
            held.push(s);
            if held_tx.send(()).is_err() {
                break;
            }
        }
        held
    });
    let mut tracer = Tracer::start(&Config::default()).expect("tcperr starts");
    let mut correlator = Correlator::new(tracer.plan.rst_reasons.clone(), false);
    // Health checks: connect, wait until the server holds the connection, reset.
    const CHECKS: usize = 50;
    let checker = std::thread::spawn(move || {
        for _ in 0..CHECKS {
            let c = TcpStream::connect(addr).expect("connect");
            held_rx.recv_timeout(Duration::from_secs(5)).expect("accepted");
            sock::set_linger_zero(&c).expect("SO_LINGER");
            drop(c);
            std::thread::sleep(Duration::from_millis(5));
        }
        held_rx
    });
    let mut resets = Vec::new();
    let mut last = Instant::now();
    while !checker.is_finished() || last.elapsed() < Duration::from_millis(300) {
        if tracer.wait(Duration::from_millis(50)) {
            tracer.drain(|ev| {
                let ev = ev.expect("decodable");
                if let Some(r) = correlator.observe(&ev)
                    && r.kind == "rst_received"
                    && r.lport == addr.port()
                {
                    resets.push((r.pid, r.owner_from));
                }
            });
            last = Instant::now();
        }
    }
    let held_rx = checker.join().expect("checker");
    drop(held_rx); // the server's next accept ends it
    let _ = TcpStream::connect(addr);
    let held = server.join().expect("server");
    assert_eq!(held.len(), CHECKS + 1);
    let me = std::process::id();
    let proc = tcperr_userspace::owner::OwnerSource::Proc;
    assert_eq!(resets.len(), CHECKS, "the server's sockets' resets: {resets:?}");
    assert!(
        resets.iter().all(|&(pid, from)| pid == Some(me) && from == proc),
        "each reset names the server process, found in /proc: {resets:?}"
    );
    let links = correlator.proc_links_read();
    assert!(
        links < idle.sockets as u64,
        "{links} /proc links read for {CHECKS} sockets: more than the {} idle sockets of processes {:?}",
        idle.sockets,
        idle.pids
    );
}
