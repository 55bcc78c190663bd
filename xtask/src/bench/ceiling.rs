//! §4: the userspace ceiling: events/s through tcperr's own userspace code on synthetic records,
//! no kernel.
use std::{collections::BTreeMap, time::Instant};

use tcperr_common::{
    ABSENT, EventHeader, EventKind, RecvError, RstReceived, RstSent, SockInfo, StateChange,
    tcp::{AF_INET, errno, state},
};
use tcperr_userspace::{
    correlate::Correlator,
    decode::{decode, encode},
    filter::Filter,
    held_close::unfold,
    load::Config,
    output::{self, Format},
    summary::Summary,
    trace::{Options, Sink, Stats},
};

use super::{Sizes, storm::EVENTS_PER_CONNECTION};

/// Events/s of each stage.
pub struct Ceiling {
    pub decode: f64,
    pub json: f64,
    /// An RST storm's records as `tcperr trace --json` takes them.
    pub storm_replay: f64,
}

pub fn run(s: &Sizes) -> Ceiling {
    eprintln!("==> bench: userspace ceiling ({} synthetic events)", s.synthetic_events);
    let records = synthetic_records(s.synthetic_events);
    let (decode, json) = (correlate(&records, false), correlate(&records, true));
    let storm_replay = storm_replay(s.synthetic_events / EVENTS_PER_CONNECTION as usize);
    Ceiling { decode, json, storm_replay }
}

/// An IPv4 socket on 127.0.0.1 talking to 127.0.0.1, for the synthetic streams.
fn loopback_sock(lport: u16, rport: u16, ino: u64) -> SockInfo {
    let mut sock = SockInfo { family: AF_INET, lport, rport, ino, ..SockInfo::ZERO };
    sock.laddr[..4].copy_from_slice(&[127, 0, 0, 1]);
    sock.raddr[..4].copy_from_slice(&[127, 0, 0, 1]);
    sock
}

/// A synthetic stream shaped like the storm: per connection a connect, an RST received, a failed
/// read and the close, over 4,096 recycled sockets.
fn synthetic_records(n: usize) -> Vec<Vec<u8>> {
    let mut records = Vec::with_capacity(n);
    for i in 0..n {
        let conn = (i / 4) as u64;
        let mut sock = loopback_sock(30000 + (conn % 20000) as u16, 8080, 1_000_000 + conn);
        let header = |kind: EventKind| EventHeader {
            kind: kind as u32,
            cpu: 0,
            ts_ns: i as u64 * 1000,
            pid_tgid: (42 << 32) | 43,
            comm: *b"storm0\0\0\0\0\0\0\0\0\0\0",
            sk: 0xffff_0000 + (conn % 4096) * 64,
        };
        records.push(match i % 4 {
            0 => encode(&StateChange {
                header: header(EventKind::StateChange),
                sock,
                oldstate: state::CLOSE,
                newstate: state::SYN_SENT,
                _pad0: 0,
                _pad1: 0,
            }),
            1 => {
                sock.state = state::ESTABLISHED;
                encode(&RstReceived {
                    stakes: tcperr_common::Stakes::ZERO,
                    header: header(EventKind::RstReceived),
                    sock,
                    errno: errno::ECONNRESET,
                    _pad: 0,
                })
            }
            2 => {
                sock.state = state::CLOSE;
                encode(&RecvError {
                    stakes: tcperr_common::Stakes::ZERO,
                    header: header(EventKind::RecvError),
                    sock,
                    errno: errno::ECONNRESET,
                    flags: 0,
                })
            }
            _ => encode(&StateChange {
                header: header(EventKind::StateChange),
                sock,
                oldstate: state::ESTABLISHED,
                newstate: state::CLOSE,
                _pad0: 0,
                _pad1: 0,
            }),
        });
    }
    records
}

/// Events/s through decode → correlate, and with `json` on through decode → correlate → JSON
/// (to a sink).
fn correlate(records: &[Vec<u8>], json: bool) -> f64 {
    let mut c = Correlator::new(BTreeMap::new(), false);
    let mut sink = std::io::sink();
    let t = Instant::now();
    for r in records {
        if let Ok(ev) = decode(r)
            && let Some(rep) = c.observe(&ev)
            && json
        {
            let _ = output::write(&mut sink, Format::Json, &rep);
        }
    }
    records.len() as f64 / t.elapsed().as_secs_f64()
}

/// Events/s through what `tcperr trace --json` does with each record of an RST storm, with its
/// own code (`trace::Sink`): decode, the RST's folded move to CLOSE, correlation, the summary,
/// storm folding, and JSON for what is printed.
fn storm_replay(conns: usize) -> f64 {
    let records = storm_records(conns);
    let opts = Options {
        format: Format::Json,
        filter: Filter::default(),
        all: false,
        every: false,
        summary_only: false,
        debug_fields: false,
        utc: false,
        names: Default::default(),
        config: Config::default(),
    };
    let mut correlator = Correlator::new(BTreeMap::new(), false);
    let (mut summary, mut stats, mut write_err) = (Summary::default(), Stats::default(), None);
    let mut sink = Sink::new(&mut correlator, &opts, &mut summary, &mut stats, &mut write_err);
    let mut out = std::io::sink();
    let mut events = 0u64;
    let t = Instant::now();
    for r in &records {
        // (as `Tracer::drain` hands the records over)
        let (close, ev) = match decode(r) {
            Ok(ev) => unfold(ev),
            Err(e) => {
                sink.queue(Err(e), &mut out);
                continue;
            }
        };
        for ev in close.into_iter().chain([ev]) {
            events += 1;
            sink.queue(Ok(ev), &mut out);
        }
        // (as the reader releases what it read, a batch at a time, in time order)
        if sink.pending() >= 4096 {
            sink.release(u64::MAX, &mut out);
        }
    }
    sink.release(u64::MAX, &mut out);
    sink.flush_folded(&mut out);
    events as f64 / t.elapsed().as_secs_f64()
}

/// The records shaped as §3's generators make them: per connection the client's connect, its
/// RST received (no task: softirq), the server's RST carrying its abort's move to CLOSE, and the
/// client's failed read; two generator threads, 4,096 recycled sockets a side.
fn storm_records(conns: usize) -> Vec<Vec<u8>> {
    let mut records = Vec::with_capacity(conns * 4);
    // (times from now on, as the kernel's would be: folding forgets stories idle by the clock)
    let mut ts_ns = tcperr_common::clock::monotonic_ns();
    for c in 0..conns as u64 {
        let thread = c % 2;
        let comm = if thread == 0 {
            *b"storm0\0\0\0\0\0\0\0\0\0\0"
        } else {
            *b"storm1\0\0\0\0\0\0\0\0\0\0"
        };
        let task = (7000 << 32) | (7001 + thread);
        let mut header = |kind: EventKind, sk: u64, tasked: bool| {
            ts_ns += 1_000;
            EventHeader {
                kind: kind as u32,
                cpu: thread as u32,
                ts_ns,
                pid_tgid: if tasked { task } else { 0 },
                comm: if tasked { comm } else { [0; 16] },
                sk,
            }
        };
        let (client_sk, server_sk) = (
            0xffff_8881_0000_0000 + (c % 4096) * 0x940,
            0xffff_8882_0000_0000 + (c % 4096) * 0x940,
        );
        let (client_port, server_port) = (32768 + (c % 28_000) as u16, 40_000 + thread as u16);
        let mut client = loopback_sock(client_port, server_port, 2_000_000 + 2 * c);
        let mut server = loopback_sock(server_port, client_port, client.ino + 1);
        let connecting = SockInfo { lport: 0, state: state::CLOSE, ..client };
        records.push(encode(&StateChange {
            header: header(EventKind::StateChange, client_sk, true),
            sock: connecting,
            oldstate: state::CLOSE,
            newstate: state::SYN_SENT,
            _pad0: 0,
            _pad1: 0,
        }));
        client.state = state::ESTABLISHED;
        records.push(encode(&RstReceived {
            stakes: tcperr_common::Stakes::ZERO,
            header: header(EventKind::RstReceived, client_sk, false),
            sock: client,
            errno: errno::ECONNRESET,
            _pad: 0,
        }));
        server.state = state::CLOSE;
        server.locked = 1; // (sent inside the server's close(), which holds the socket's lock)
        records.push(encode(&RstSent {
            header: header(EventKind::RstSent, server_sk, true),
            sock: server,
            reason: ABSENT,
            closed_from: state::ESTABLISHED,
            _pad0: 0,
            _pad1: 0,
            unread: 0,
            _pad2: 0,
        }));
        client.state = state::CLOSE;
        records.push(encode(&RecvError {
            stakes: tcperr_common::Stakes::ZERO,
            header: header(EventKind::RecvError, client_sk, true),
            sock: client,
            errno: errno::ECONNRESET,
            flags: 0,
        }));
    }
    records
}
