//! Healthy request/response traffic of several shapes, traced for real: tcperr's default output
//! is empty (an orderly close is how most connections end), while `--all` shows each EOF as an
//! orderly close. Needs root.
use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

mod support;

use tcperr_userspace::{
    correlate::Correlator,
    load::{Config, Tracer},
};

/// A server that answers each 4-byte request with a 6-byte response until EOF, then closes
/// (`close_after`: closes by itself after that many answers instead, as an idle timeout or
/// HTTP/1.0 does). Returns its port.
fn server(close_after: Option<usize>, connections: usize) -> (u16, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let h = thread::Builder::new()
        .name("server".into())
        .spawn(move || {
            for _ in 0..connections {
                let (mut s, _) = listener.accept().expect("accept");
                let mut answered = 0;
                let mut req = [0u8; 4];
                while close_after != Some(answered) {
                    match s.read_exact(&mut req) {
                        Ok(()) => {}
                        Err(_) => break, // EOF: the client finished
                    }
                    s.write_all(b"answer").expect("answer");
                    answered += 1;
                }
                if close_after.is_some() {
                    // An idle server closing: wait a little as a keep-alive timeout would.
                    thread::sleep(Duration::from_millis(30));
                }
                drop(s);
            }
        })
        .expect("server thread");
    (port, h)
}

/// Sends `requests` requests on one connection, reading each answer; then `end`s it.
fn client(port: u16, requests: usize, end: End) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut answer = [0u8; 6];
    for _ in 0..requests {
        c.write_all(b"ping").expect("request");
        c.read_exact(&mut answer).expect("answer");
        thread::sleep(Duration::from_millis(5)); // keep-alive reuse, a little later
    }
    match end {
        End::ClientCloses => drop(c),
        End::ServerCloses => {
            // An idle pooled connection: the server's close is read as EOF, later.
            let mut buf = [0u8; 1];
            assert_eq!(c.read(&mut buf).expect("EOF"), 0);
        }
        End::HalfClose => {
            c.shutdown(Shutdown::Write).expect("shutdown");
            let mut buf = [0u8; 1];
            assert_eq!(c.read(&mut buf).expect("EOF"), 0);
        }
    }
}

#[derive(Clone, Copy)]
enum End {
    ClientCloses,
    ServerCloses,
    HalfClose,
}

#[test]
fn healthy_request_response_traffic_prints_nothing_and_its_eofs_are_orderly_closes() {
    let mut tracer =
        Tracer::start(&Config::default()).unwrap_or_else(|e| panic!("tcperr cannot start: {e}"));
    let mut default = Correlator::new(tracer.plan.rst_reasons.clone(), false);
    let mut all = Correlator::new(tracer.plan.rst_reasons.clone(), true);
    let (done_tx, done_rx) = mpsc::channel();
    let mut ports = BTreeSet::new();
    let mut threads = Vec::new();
    let shapes: [(&str, Option<usize>, usize, usize, End); 5] = [
        // keep-alive reuse, then the client closes; the server reads EOF
        ("keep-alive reuse", None, 1, 3, End::ClientCloses),
        // the server closes an idle keep-alive connection; the client's pool reads EOF
        ("idle close by the server", Some(2), 1, 2, End::ServerCloses),
        // HTTP/1.0: one request, the answer, the server's close
        ("close after the response", Some(1), 1, 1, End::ServerCloses),
        // the request ends with a half-close, the answer with the server's close
        ("half-close", None, 1, 1, End::HalfClose),
        // many short connections
        ("many short connections", None, 40, 1, End::ClientCloses),
    ];
    for (_, close_after, connections, requests, end) in shapes {
        let (port, s) = server(close_after, connections);
        ports.insert(port);
        let done = done_tx.clone();
        threads.push(s);
        threads.push(
            thread::Builder::new()
                .name("client".into())
                .spawn(move || {
                    for _ in 0..connections {
                        client(port, requests, end);
                    }
                    done.send(()).expect("done");
                })
                .expect("client thread"),
        );
    }
    drop(done_tx);
    let (mut printed, mut shown_with_all) = (Vec::new(), Vec::new());
    let mut last = Instant::now();
    let mut finished = false;
    while !finished || last.elapsed() < Duration::from_millis(300) {
        if !finished && threads.iter().all(|t| t.is_finished()) {
            finished = true;
            last = Instant::now();
        }
        if tracer.wait(Duration::from_millis(50)) {
            tracer.drain(|ev| {
                let ev = ev.unwrap_or_else(|e| panic!("undecodable record: {e}"));
                let ours = |r: &serde_json::Value| {
                    ports.iter().any(|&p| r["lport"] == p || r["rport"] == p)
                };
                if let Some(r) = default.observe(&ev) {
                    let r = serde_json::to_value(&r).expect("report serialises");
                    support::assert_schema(&r);
                    if ours(&r) {
                        printed.push(r);
                    }
                }
                if let Some(r) = all.observe(&ev) {
                    let r = serde_json::to_value(&r).expect("report serialises");
                    support::assert_schema(&r);
                    if ours(&r) && r["kind"] != "state_change" {
                        shown_with_all.push(r);
                    }
                }
            });
            last = Instant::now();
        }
    }
    threads.into_iter().for_each(|t| t.join().expect("thread"));
    drop(done_rx);
    assert_eq!(tracer.lost(), 0, "records lost");
    assert!(printed.is_empty(), "the default output of healthy traffic: {printed:#?}");
    // Every EOF was seen, and each is an orderly close: 45 connections, one EOF on each side
    // that reads to the end (the server for client closes, the client for server closes, both
    // for the half-close).
    let eofs: Vec<_> = shown_with_all.iter().filter(|r| r["kind"] == "recv_eof").collect();
    assert!(shown_with_all.iter().all(|r| r["kind"] == "recv_eof"), "{shown_with_all:#?}");
    assert!(eofs.iter().all(|r| r["cause"] == "peer_closed"), "{eofs:#?}");
    assert_eq!(eofs.len(), 1 + 1 + 1 + 2 + 40, "{eofs:#?}");
}
