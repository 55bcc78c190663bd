//! Every reproduction scenario with the real loader attached in this process (on a kernel
//! without fexit/kprobes: the tracepoint path): the exact events tcperr reports, with ports
//! normalised to roles and processes to the scenario's threads. Needs root.
use std::time::{Duration, Instant};

use std::{
    io::Read,
    net::{TcpListener, TcpStream},
};

use tcperr_common::tcp::state;

mod support;
use tcperr_scenarios::{Run, sock};
use tcperr_userspace::{
    correlate::Correlator,
    decode::Event,
    load::{Config, Tracer},
};

/// Runs `scenario` under a fresh tracer; returns the run and tcperr's reports of its sockets as
/// JSON, plus whether the kernel reports RST reasons.
/// A tracer started with `config` and a correlator for its records (`all`: as `--all`).
fn tracing(config: &Config, all: bool) -> (Tracer, Correlator) {
    let tracer = Tracer::start(config).unwrap_or_else(|e| panic!("tcperr cannot start: {e}"));
    let correlator = Correlator::new(tracer.plan.rst_reasons.clone(), all);
    (tracer, correlator)
}

fn trace(scenario: &str) -> (Run, Vec<serde_json::Value>, bool) {
    trace_with(scenario, &Config::default())
}

fn trace_with(scenario: &str, config: &Config) -> (Run, Vec<serde_json::Value>, bool) {
    trace_in_mode(scenario, config, false)
}

/// As [`trace_with`]; `all`: also what `--all` prints (orderly closes, context).
fn trace_in_mode(
    scenario: &str,
    config: &Config,
    all: bool,
) -> (Run, Vec<serde_json::Value>, bool) {
    let (mut tracer, mut correlator) = tracing(config, all);
    // The scenario runs beside the reader, so that events are handled while their processes
    // still exist (as they are by `tcperr trace`).
    let name = scenario.to_owned();
    let running = std::thread::spawn(move || tcperr_scenarios::run(&name));
    let reports = reports_until(&mut tracer, &mut correlator, || running.is_finished());
    let run =
        running.join().expect("scenario thread").unwrap_or_else(|e| panic!("{scenario}: {e}"));
    assert_eq!(tracer.lost(), 0, "records lost");
    (run, reports, tcperr_scenarios::drive::kernel_reports_rst_reason())
}

/// tcperr's reports (as JSON, each checked against the documented schema), read until `done`
/// has said so and the ring buffer has then been quiet for 300 ms: what happened meanwhile is
/// handled while its processes still exist, as `tcperr trace` does.
fn reports_until(
    tracer: &mut Tracer,
    correlator: &mut Correlator,
    mut done: impl FnMut() -> bool,
) -> Vec<serde_json::Value> {
    let mut reports = Vec::new();
    let mut last = Instant::now();
    let mut finished = false;
    while !finished || last.elapsed() < Duration::from_millis(300) {
        if !finished && done() {
            finished = true;
            last = Instant::now(); // the quiet period counts from the end
        }
        if tracer.wait(Duration::from_millis(50)) {
            tracer.drain(|ev| {
                let ev = ev.unwrap_or_else(|e| panic!("undecodable record: {e}"));
                if let Some(r) = correlator.observe(&ev) {
                    let r = serde_json::to_value(&r).expect("report serialises");
                    support::assert_schema(&r);
                    reports.push(r);
                }
            });
            last = Instant::now();
        }
    }
    reports
}

fn assert_scenario(scenario: &str) {
    assert_scenario_with(scenario, &Config::default());
}

fn assert_scenario_with(scenario: &str, config: &Config) {
    let (run, reports, rst_reason) = trace_with(scenario, config);
    assert_eq!(
        run.observed_lines(&reports),
        run.expected_lines(rst_reason),
        "{scenario}: tcperr reported (left) vs expected (right); raw reports: {:#?}",
        reports
            .iter()
            .filter(|r| r["lport"] == run.server_port || r["rport"] == run.server_port)
            .collect::<Vec<_>>()
    );
}

#[test]
fn broken_pipe_is_an_rst_in_close_wait_then_a_failed_write_by_the_client() {
    assert_scenario("broken_pipe");
}

#[test]
fn reset_by_abort_is_an_rst_in_established_then_a_failed_read_by_the_client() {
    assert_scenario("reset_by_abort");
}

#[test]
fn reset_by_abort_over_ipv6() {
    assert_scenario("reset_by_abort_ipv6");
}

#[test]
fn reset_by_unread_data_is_an_rst_sent_by_the_closing_server() {
    assert_scenario("reset_by_unread_data");
    // The client's story says how much the server threw away: its 18-byte request, read from
    // the server's socket as it reset the connection.
    let (run, reports, _) = trace("reset_by_unread_data");
    let failed = find(&run, &reports, "recv_error");
    let text = failed["explanation"].as_str().expect("text");
    assert!(
        text.contains(
            "without reading all we had sent (18 bytes still unread in its receive buffer)"
        ),
        "{failed:#}"
    );
}

#[test]
fn eof_after_the_client_finished_is_an_orderly_close_and_prints_nothing() {
    assert_scenario("eof");
}

#[test]
fn eof_on_an_unanswered_request_is_an_error_of_the_client() {
    assert_scenario("unanswered");
    let (run, reports, _) = trace("unanswered");
    let eof = find(&run, &reports, "recv_eof");
    assert_eq!(eof["peer_comm"], "server", "the closing end is named: {eof:#}");
    assert!(eof["explanation"].as_str().expect("text").contains("without answering"), "{eof:#}");
    // What was at stake, exactly: the 7-byte request sent and acknowledged, nothing received.
    let st = &eof["stakes"];
    assert_eq!(
        (
            &st["bytes_sent"],
            &st["bytes_acked"],
            &st["bytes_received"],
            &st["unacked"],
            &st["unread"]
        ),
        (&7.into(), &7.into(), &0.into(), &0.into(), &0.into()),
        "{eof:#}"
    );
}

#[test]
fn refused_is_an_rst_in_syn_sent_attributed_to_the_connecting_thread() {
    assert_scenario("refused");
}

/// The hooks serving the socket's own events (RST received, state changes, socket errors) are
/// BTF tracepoints where the kernel loads them, which it does here.
#[test]
fn socket_events_come_from_btf_tracepoints() {
    let tracer =
        Tracer::start(&Config::default()).unwrap_or_else(|e| panic!("tcperr cannot start: {e}"));
    let summary = tracer.hook_summary().join("\n");
    for hook in ["tcp_receive_reset", "inet_sock_set_state", "inet_sk_error_report"] {
        assert!(summary.contains(&format!("tp_btf {hook}")), "{hook} not tp_btf:\n{summary}");
    }
}

/// Their raw-tracepoint fallbacks (for a kernel that will not load a `tp_btf` program) report
/// the same stories.
#[test]
fn raw_tracepoint_fallbacks_report_the_same_events() {
    let config = Config { raw_tracepoints_only: true, ..Config::default() };
    let tracer = Tracer::start(&config).unwrap_or_else(|e| panic!("tcperr cannot start: {e}"));
    let summary = tracer.hook_summary().join("\n");
    drop(tracer);
    for hook in ["tcp_receive_reset", "inet_sock_set_state", "inet_sk_error_report"] {
        assert!(summary.contains(&format!("raw_tracepoint {hook}")), "{hook}:\n{summary}");
    }
    for scenario in ["broken_pipe", "reset_by_abort", "reset_by_unread_data", "eof", "refused"] {
        assert_scenario_with(scenario, &config);
    }
    // (the drop source has no raw-tracepoint form: off here, so the timeout's story names no
    // dropped segments, which the scenario expects where the kernel gives drop reasons)
    let (run, reports, rst_reason) = trace_with("silent_peer", &config);
    let without_drops = |lines: Vec<String>| -> Vec<String> {
        lines.into_iter().map(|l| l.split(" dropped=").next().unwrap_or("").to_owned()).collect()
    };
    assert_eq!(
        without_drops(run.observed_lines(&reports)),
        without_drops(run.expected_lines(rst_reason))
    );
}

fn find<'a>(run: &Run, reports: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    reports
        .iter()
        .find(|r| run.owns(r) && r["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} of {} in {reports:#?}", run.scenario))
}

fn steps(r: &serde_json::Value) -> Vec<&str> {
    r["timeline"]
        .as_array()
        .map_or(vec![], |t| t.iter().filter_map(|i| i["step"].as_str()).collect())
}

#[test]
fn broken_pipe_story_holds_the_peers_fin_its_rst_and_the_failing_write_in_order() {
    let (run, reports, rst_reason) = trace("broken_pipe");
    let failed = find(&run, &reports, "send_error");
    assert_eq!(
        steps(failed),
        ["connect", "peer_fin", "rst_received", "end", "call_failed"],
        "{failed:#}"
    );
    let client = run.actors.iter().find(|a| a.name == "client").expect("client");
    assert_eq!(
        (failed["pid"].as_u64(), failed["tid"].as_u64()),
        (Some(client.pid.into()), Some(client.tid.into()))
    );
    assert_eq!(failed["peer_comm"], "server", "the other end is named: {failed:#}");
    assert_eq!(failed["error"], "broken pipe");
    let story = failed["explanation"].as_str().expect("explanation");
    assert!(
        story.contains("closed the connection (FIN at +") && story.contains("drew its RST at +"),
        "{story}"
    );
    if rst_reason {
        assert_eq!(find(&run, &reports, "rst_sent")["reason"], "TCP_ABORT_ON_DATA");
    }
}

#[test]
fn reset_stories_name_the_abort_and_the_unread_data() {
    let (run, reports, _) = trace("reset_by_abort");
    let failed = find(&run, &reports, "recv_error");
    assert!(failed["explanation"].as_str().expect("text").contains("SO_LINGER"), "{failed:#}");
    assert_eq!(failed["peer_comm"], "server");
    let (run, reports, rst_reason) = trace("reset_by_unread_data");
    if rst_reason {
        assert_eq!(find(&run, &reports, "rst_sent")["reason"], "TCP_ABORT_ON_CLOSE");
        let failed = find(&run, &reports, "recv_error");
        assert!(
            failed["explanation"].as_str().expect("text").contains("without reading"),
            "{failed:#}"
        );
    }
}

#[test]
fn eof_story_is_a_clean_close_with_no_rst_in_the_timeline() {
    let (run, reports, _) = trace_in_mode("eof", &Config::default(), true);
    let eof = find(&run, &reports, "recv_eof");
    assert_eq!(eof["cause"], "peer_closed", "an orderly close: {eof:#}");
    assert!(!steps(eof).contains(&"rst_received"), "{eof:#}");
    assert!(eof["explanation"].as_str().expect("text").contains("no RST"), "{eof:#}");
    assert_eq!(eof["peer_comm"], "client", "the closing end is named: {eof:#}");
}

#[test]
fn overflow_story_names_the_listener_and_its_queue() {
    let (run, reports, _) = trace("accept_queue_overflow_reset");
    let full = find(&run, &reports, "accept_queue_full");
    assert_eq!(
        (full["comm"].as_str(), full["accept_queue"]["action"].as_str()),
        (Some("server"), Some("reset"))
    );
    assert_eq!(
        (full["accept_queue"]["backlog"].as_u64(), full["accept_queue"]["queued"].as_u64()),
        (Some(0), Some(1))
    );
    let failed = find(&run, &reports, "recv_error");
    assert_eq!(failed["peer_comm"], "server", "{failed:#}");
    assert!(
        failed["explanation"].as_str().expect("text").contains("accept queue was full"),
        "{failed:#}"
    );
}

#[test]
fn a_queued_connection_the_listener_never_accepted_keeps_its_peer_when_the_listener_closes() {
    // The filler's connection waits in the accept queue, never accepted; the filler aborts it,
    // then the server closes its listener, which disconnects every queued connection: the kernel
    // reports the reset again on it, with its remote port cleared and its counters rewritten.
    // (`--all`: such a socket has no process, so the default output has nothing of it.)
    let (run, reports, _) = trace_in_mode("accept_queue_overflow_reset", &Config::default(), true);
    let port = u64::from(run.server_port);
    let queued: Vec<_> =
        reports.iter().filter(|r| r["kind"] == "socket_error" && r["lport"] == port).collect();
    let [e] = queued.as_slice() else {
        panic!("one socket_error of the queued child: {reports:#?}")
    };
    let rport = e["rport"].as_u64().expect("rport");
    assert!(
        u16::try_from(rport).is_ok_and(|p| run.client_ports.contains(&p)),
        "the peer's port, from before the disconnect: {e:#}"
    );
    assert_eq!(
        (e["cause"].as_str(), e["peer_comm"].as_str()),
        (Some("peer_aborted"), Some("filler"))
    );
    assert!(e["stakes"].is_null(), "a disconnect rewrote the counters: none quoted: {e:#}");
}

#[test]
fn refused_nonblocking_connect_is_reported_when_the_rst_arrives() {
    // connect() returned EINPROGRESS; the program collects ECONNREFUSED later via SO_ERROR, a
    // call tcperr does not see: the report is the RST in SYN_SENT, attributed to the thread
    // that called connect().
    assert_scenario("refused_nonblocking");
}

#[test]
fn silent_peer_is_a_timeout_reported_on_the_socket_then_on_the_next_write() {
    assert_scenario("silent_peer");
}

#[test]
fn accept_queue_overflow_with_abort_on_overflow_resets_the_client() {
    assert_scenario("accept_queue_overflow_reset");
}

#[test]
fn accept_queue_overflow_without_abort_on_overflow_drops_the_handshake() {
    assert_scenario("accept_queue_overflow_drop");
}

#[test]
fn too_many_open_files_names_the_listener_out_of_descriptors() {
    assert_scenario("too_many_open_files");
    let (run, reports, _) = trace("too_many_open_files");
    let full = find(&run, &reports, "accept_queue_full");
    let q = &full["accept_queue"];
    assert!(q["open_files"].as_u64() >= q["max_open_files"].as_u64(), "{full:#}");
    assert!(full["explanation"].as_str().expect("text").contains("EMFILE"), "{full:#}");
}

#[test]
fn a_prefork_workers_too_many_open_files_names_the_worker_not_the_master() {
    // The master listened (tcperr learns the listener's owner there) with thousands of files to
    // spare; the worker that inherited the listener is at its limit. The overflow names the
    // worker, with its open files, and the master as the listener's opener.
    assert_scenario("prefork_too_many_open_files");
    let (run, reports, _) = trace("prefork_too_many_open_files");
    let full = find(&run, &reports, "accept_queue_full");
    let worker = run.actors.iter().find(|a| a.name == "worker").expect("a worker");
    let master = run.actors.iter().find(|a| a.name == "master").expect("a master");
    let q = &full["accept_queue"];
    assert_eq!(
        (full["pid"].as_u64(), full["owner_from"].as_str(), q["out_of_files"][0]["pid"].as_u64()),
        (Some(u64::from(worker.pid)), Some("proc"), Some(u64::from(worker.pid))),
        "{full:#}"
    );
    assert!(q["open_files"].as_u64() >= q["max_open_files"].as_u64(), "{full:#}");
    let text = full["explanation"].as_str().expect("text");
    assert!(text.contains(&format!("process {} (worker)", worker.pid)), "{text}");
    assert!(text.contains(&format!("process {} (master)", master.pid)), "{text}");
}

/// One loopback connection that `end` finishes on the server's side; returns what the programs
/// wrote about the server's socket, record by record: (kind, state or old state or
/// `closed_from`, new state, errno).
fn records_of_server_socket(end: impl FnOnce(TcpStream)) -> Vec<(String, u8, u8, u32)> {
    let mut tracer =
        Tracer::start(&Config::default()).unwrap_or_else(|e| panic!("tcperr cannot start: {e}"));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    let (lport, rport) =
        (server.local_addr().expect("addr").port(), client.local_addr().expect("addr").port());
    end(server);
    client.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let _ = client.read(&mut [0u8; 1]);
    std::thread::sleep(Duration::from_millis(50));
    let mut records = Vec::new();
    while tracer.wait(Duration::from_millis(100)) {
        tracer.drain_records(|r| records.push(r.unwrap_or_else(|e| panic!("undecodable: {e}"))));
    }
    assert_eq!(tracer.lost(), 0, "records lost");
    // (by the socket's address: its records after tcp_disconnect() have the remote port zeroed;
    // up to a new socket at that address, tests running beside this one reuse it)
    let first = records
        .iter()
        .position(|ev| ev.sock().lport == lport && ev.sock().rport == rport)
        .expect("a record of the server's socket");
    let sk = records[first].header().sk;
    let new_socket = |ev: &Event| matches!(ev, Event::StateChange(e) if matches!(e.newstate, state::SYN_SENT | state::LISTEN));
    records[first..]
        .iter()
        .filter(|ev| ev.header().sk == sk)
        .take_while(|ev| !new_socket(ev))
        .map(|ev| match ev {
            Event::StateChange(e) => (ev.kind_name().to_owned(), e.oldstate, e.newstate, 0),
            Event::RstSent(e) => (ev.kind_name().to_owned(), e.closed_from, 0, 0),
            _ => (ev.kind_name().to_owned(), ev.sock().state, 0, ev.errno().unwrap_or(0)),
        })
        .collect()
}

#[test]
fn an_abort_sends_its_move_to_close_inside_its_rst() {
    // close() with SO_LINGER {1, 0}: the kernel moves the socket to CLOSE, then sends the RST.
    // One record, not two (RST storms are made of these); `drain` hands over both events.
    let records = records_of_server_socket(|server| {
        sock::set_linger_zero(&server).expect("linger");
        drop(server);
    });
    assert_eq!(records, vec![("rst_sent".to_owned(), state::ESTABLISHED, 0, 0)]);
}

#[test]
fn an_abort_without_an_rst_still_records_its_move_to_close() {
    // TCP_REPAIR: close() moves the socket to CLOSE and sends nothing; tcp_disconnect() reports
    // ECONNABORTED instead. The move held back for an RST is released by that report.
    let records = records_of_server_socket(|server| {
        sock::set_repair(&server).expect("TCP_REPAIR (needs CAP_NET_ADMIN)");
        drop(server);
    });
    assert_eq!(
        records,
        vec![
            ("state_change".to_owned(), state::ESTABLISHED, state::CLOSE, 0),
            ("socket_error".to_owned(), state::CLOSE, 0, 103),
        ]
    );
}

/// Each record about a socket a process holds names the socket's inode as that process sees it
/// (the key to its owner in /proc), whether the programs reach it by loads through BTF-typed
/// pointers or, in the raw-tracepoint fallbacks, by copies.
#[test]
fn records_name_the_inode_of_the_socket_the_process_holds() {
    use std::os::unix::{fs::MetadataExt, io::AsRawFd};
    for config in [Config::default(), Config { raw_tracepoints_only: true, ..Config::default() }] {
        let mut tracer = Tracer::start(&config).unwrap_or_else(|e| panic!("cannot start: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let server_port = listener.local_addr().expect("addr").port();
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let client_port = client.local_addr().expect("addr").port();
        let ino = std::fs::metadata(format!("/proc/self/fd/{}", client.as_raw_fd()))
            .expect("stat the socket")
            .ino();
        let (server, _) = listener.accept().expect("accept");
        sock::set_linger_zero(&server).expect("linger");
        drop(server);
        client.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        assert!(client.read(&mut [0u8; 1]).is_err(), "the read fails: connection reset");
        std::thread::sleep(Duration::from_millis(50));
        let mut records = Vec::new();
        while tracer.wait(Duration::from_millis(100)) {
            tracer.drain_records(|r| records.push(r.unwrap_or_else(|e| panic!("{e}"))));
        }
        // The client's failed read, then its socket's records from its connect on (tests run
        // side by side: other sockets, also earlier ones at the same address, are in the ring).
        let read = records
            .iter()
            .position(|ev| {
                matches!(ev, Event::RecvError(_))
                    && (ev.sock().lport, ev.sock().rport) == (client_port, server_port)
            })
            .expect("the client's recv_error record");
        let sk = records[read].header().sk;
        let connect = records[..read]
            .iter()
            .rposition(|ev| {
                ev.header().sk == sk
                    && matches!(ev, Event::StateChange(c) if c.newstate == state::SYN_SENT)
            })
            .expect("the client's connect record");
        let seen: Vec<(&str, u64)> = records[connect..=read]
            .iter()
            .filter(|ev| ev.header().sk == sk)
            .map(|ev| (ev.kind_name(), ev.sock().ino))
            .collect();
        assert_eq!(
            seen,
            vec![("state_change", ino), ("rst_received", ino), ("recv_error", ino)],
            "raw tracepoints only: {}",
            config.raw_tracepoints_only
        );
    }
}

#[test]
fn a_move_to_close_whose_rst_never_came_is_handed_over_once() {
    // The programs hold an abort's move to CLOSE for the RST that should carry it. If the kernel
    // cannot allocate that RST, nothing takes it: userspace claims it from the map, and when a
    // later abort on that CPU releases it into the ring buffer, that copy is dropped.
    let mut tracer =
        Tracer::start(&Config::default()).unwrap_or_else(|e| panic!("tcperr cannot start: {e}"));
    let mut held = tcperr_common::StateChange {
        header: tcperr_common::EventHeader {
            kind: tcperr_common::EventKind::StateChange as u32,
            cpu: 0,
            ts_ns: tcperr_common::clock::monotonic_ns() - 1_000_000_000,
            pid_tgid: 4242 << 32 | 4242,
            comm: *b"held\0\0\0\0\0\0\0\0\0\0\0\0",
            sk: 0xdead_0000,
        },
        sock: tcperr_common::SockInfo::ZERO,
        oldstate: state::ESTABLISHED,
        newstate: state::CLOSE,
        _pad0: 0,
        _pad1: 0,
    };
    held.sock.state = state::ESTABLISHED;
    tracer.hold_close_for_test(0, held).expect("write the held slot");
    let count = |tracer: &mut Tracer| {
        let mut n = 0;
        tracer.drain(|ev| {
            if matches!(ev, Ok(Event::StateChange(c)) if c.header.sk == 0xdead_0000) {
                n += 1;
            }
        });
        n
    };
    std::thread::sleep(tcperr_userspace::held_close::SWEEP_EVERY);
    let mut seen = count(&mut tracer);
    assert_eq!(seen, 1, "claimed from the map");
    // An abort on CPU 0 holds its own move to CLOSE there, releasing the old one first.
    std::thread::spawn(|| {
        // SAFETY: a zeroed cpu_set_t with CPU 0 set, for this thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            assert_eq!(libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set), 0);
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let _client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        sock::set_linger_zero(&server).expect("linger");
        drop(server);
    })
    .join()
    .expect("abort on CPU 0");
    std::thread::sleep(Duration::from_millis(50));
    seen += count(&mut tracer);
    std::thread::sleep(tcperr_userspace::held_close::SWEEP_EVERY);
    seen += count(&mut tracer);
    assert_eq!(seen, 1, "the held move to CLOSE is handed over exactly once");
}

#[test]
fn a_deferred_accept_listener_dropping_a_bare_ack_is_not_an_accept_queue_overflow() {
    // TCP_DEFER_ACCEPT (nginx `listen ... deferred`, haproxy): the kernel drops a client's bare
    // final ACK, marks the pending connection `acked` as a full queue would, and retransmits its
    // SYN-ACK at the end of the deferring period. The queue (backlog 128, nothing waiting) was
    // never full: no accept_queue_full.
    let mut tracer =
        Tracer::start(&Config::default()).unwrap_or_else(|e| panic!("tcperr cannot start: {e}"));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let secs: libc::c_int = 1;
    // SAFETY: setsockopt on a valid socket with an int value.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&listener),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&raw const secs).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "TCP_DEFER_ACCEPT: {}", std::io::Error::last_os_error());
    let port = listener.local_addr().expect("addr").port();
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let cport = client.local_addr().expect("addr").port();
    // The SYN-ACK is retransmitted by timer 1 s in; the client's ACK to it then completes the
    // connection (the deferring period is over), so the pending connection is gone soon after.
    std::thread::sleep(Duration::from_millis(2500));
    let mut kinds = Vec::new();
    while tracer.wait(Duration::from_millis(100)) {
        tracer.drain_records(|r| {
            let ev = r.unwrap_or_else(|e| panic!("undecodable: {e}"));
            if ev.sock().lport == port || ev.sock().rport == cport {
                kinds.push(ev.kind_name());
            }
        });
    }
    assert!(!kinds.contains(&"accept_queue_full"), "{kinds:?}");
    drop((client, listener));
}

/// Runs `server` in a child process named "srvproc" (a process of its own, so that /proc names
/// it) and `client` in a thread named "cliproc", both beside a tracer; returns the child's pid
/// and tcperr's reports about the connection (lport, rport as the server sees them).
fn trace_two_processes(
    server: impl FnOnce(TcpStream) -> bool,
    client: impl FnOnce(TcpStream) + Send + 'static,
) -> (u32, Vec<serde_json::Value>) {
    let (mut tracer, mut correlator) = tracing(&Config::default(), false);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // SAFETY: the child only makes socket calls and exits with _exit.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork: {}", std::io::Error::last_os_error());
    if child == 0 {
        // Only the listener stays: the fork copied the sockets of scenarios other tests run
        // meanwhile too, and holding them would make this child their owner (and closer).
        let keep = std::os::fd::AsRawFd::as_raw_fd(&listener) as u32;
        // SAFETY: close_range(2) on the child's own descriptors around the listener's;
        // prctl with a NUL-terminated name.
        unsafe {
            if keep > 3 {
                libc::syscall(libc::SYS_close_range, 3u32, keep - 1, 0u32);
            }
            libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0u32);
            libc::prctl(libc::PR_SET_NAME, c"srvproc".as_ptr());
        }
        let ok = listener.accept().is_ok_and(|(s, _)| server(s));
        // SAFETY: leaves the child without running the test harness's exit path.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    drop(listener);
    let running = std::thread::Builder::new()
        .name("cliproc".into())
        .spawn(move || client(TcpStream::connect(addr).expect("connect")))
        .expect("client thread");
    let mut status = 0;
    let mut exited = false;
    let mut reports = reports_until(&mut tracer, &mut correlator, || {
        // SAFETY: waitpid on our own child.
        exited = exited || unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) } == child;
        exited
    });
    running.join().expect("client thread");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "server: {status:#x}");
    let port = u64::from(addr.port());
    reports.retain(|r| r["lport"] == port || r["rport"] == port);
    (child as u32, reports)
}

#[test]
fn a_servers_broken_pipe_names_the_server_not_the_client_whose_close_raised_its_close_wait() {
    // On loopback the client's close() delivers its FIN in softirq inside that call: the
    // server's socket moves to CLOSE_WAIT in the client's context. The server then writes its
    // reply, the client's orphan answers RST, and the server's next write fails with EPIPE.
    // Every record of the server's socket is the server's.
    let (closed_tx, closed_rx) = std::sync::mpsc::channel::<()>();
    let (server, reports) = trace_two_processes(
        |mut s| {
            let mut request = [0u8; 5];
            let send = |s: &TcpStream, data: &[u8]| {
                // SAFETY: send on a valid socket; MSG_NOSIGNAL: an error, not SIGPIPE.
                unsafe {
                    libc::send(
                        std::os::fd::AsRawFd::as_raw_fd(s),
                        data.as_ptr().cast(),
                        data.len(),
                        libc::MSG_NOSIGNAL,
                    )
                }
            };
            s.read_exact(&mut request).is_ok()
                && sock::wait_for(&s, libc::POLLRDHUP, Duration::from_secs(5)).is_ok()
                && send(&s, b"reply") == 5
                && sock::wait_for(&s, libc::POLLHUP, Duration::from_secs(5)).is_ok()
                && send(&s, b"again") == -1
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EPIPE)
        },
        move |mut c| {
            std::io::Write::write_all(&mut c, b"hello").expect("request");
            drop(c); // FIN: the server's socket moves to CLOSE_WAIT inside this close()
            let _ = closed_rx.recv_timeout(Duration::from_secs(3)); // (stays alive meanwhile)
        },
    );
    drop(closed_tx);
    let of_server: Vec<_> = reports
        .iter()
        .filter(|r| r["errno"] == "EPIPE")
        .map(|r| (r["kind"].as_str(), r["pid"].as_u64(), r["comm"].as_str()))
        .collect();
    let server = Some(u64::from(server));
    assert_eq!(
        of_server,
        vec![
            (Some("rst_received"), server, Some("srvproc")),
            (Some("send_error"), server, Some("srvproc")),
        ],
        "{reports:#?}"
    );
}

/// A TCP socket bound to 127.0.0.1:`lport` and connected to 127.0.0.1:`rport`, in the calling
/// thread's network namespace.
fn connect_from(lport: u16, rport: u16) -> TcpStream {
    use std::os::fd::{FromRawFd, OwnedFd};
    let sin = |port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be() },
        sin_zero: [0; 8],
    };
    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: socket/bind/connect on a descriptor owned right away, with sockaddr_in of `len`.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let fd = OwnedFd::from_raw_fd(fd);
        let (local, remote) = (sin(lport), sin(rport));
        let fd_raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        assert_eq!(libc::bind(fd_raw, (&raw const local).cast(), len), 0, "bind");
        assert_eq!(libc::connect(fd_raw, (&raw const remote).cast(), len), 0, "connect");
        TcpStream::from(fd)
    }
}

#[test]
fn the_same_connection_in_two_network_namespaces_keeps_its_own_story_and_peer() {
    // Two containers each talking to their own 127.0.0.1 sidecar: the same 4-tuple alive at
    // once in two network namespaces. In A the server aborts (RST), in B it closes (FIN), B
    // first, so that A's records are the later ones at that tuple. Each client's story and peer
    // come from its own namespace.
    use std::sync::{Arc, Barrier, mpsc};
    use tcperr_scenarios::netns::Netns;
    let (sport, cport) = (18_080, 18_081);
    // (--all: B's orderly close is printed too)
    let (mut tracer, mut correlator) = tracing(&Config::default(), true);
    let connected = Arc::new(Barrier::new(4));
    let (b_closed_tx, b_closed_rx) = mpsc::channel::<()>();
    let mut b_closed = (Some(b_closed_tx), Some(b_closed_rx));
    let mut threads = Vec::new();
    for (server_name, client_name, abort) in [("srvA", "cliA", true), ("srvB", "cliB", false)] {
        let ns = Arc::new(Netns::new(&[]).expect("network namespace"));
        let listening = Arc::new(Barrier::new(2));
        let in_ns = |name: &str, f: Box<dyn FnOnce() + Send>| {
            let ns = Arc::clone(&ns);
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || {
                    ns.enter().expect("setns");
                    f();
                })
                .expect("thread")
        };
        let (connected_s, listening_s) = (Arc::clone(&connected), Arc::clone(&listening));
        let (closed_tx, closed_rx) =
            if abort { (None, b_closed.1.take()) } else { (b_closed.0.take(), None) };
        threads.push(in_ns(
            server_name,
            Box::new(move || {
                let listener = TcpListener::bind(("127.0.0.1", sport)).expect("bind");
                listening_s.wait();
                let (server, _) = listener.accept().expect("accept");
                connected_s.wait();
                if let Some(rx) = closed_rx {
                    rx.recv_timeout(Duration::from_secs(5)).expect("B closed");
                    std::thread::sleep(Duration::from_millis(50));
                    sock::set_linger_zero(&server).expect("linger");
                }
                drop(server); // A: RST; B: FIN
                if let Some(tx) = closed_tx {
                    tx.send(()).expect("signal");
                }
                std::thread::sleep(Duration::from_millis(500)); // (alive for the peer lookup)
            }),
        ));
        let (connected_c, listening_c) = (Arc::clone(&connected), Arc::clone(&listening));
        threads.push(in_ns(
            client_name,
            Box::new(move || {
                listening_c.wait();
                let mut c = connect_from(cport, sport);
                connected_c.wait();
                sock::wait_for(&c, libc::POLLRDHUP, Duration::from_secs(5))
                    .expect("the server's FIN or RST");
                std::thread::sleep(Duration::from_millis(150)); // (both servers have ended)
                let _ = c.read(&mut [0u8; 1]);
            }),
        ));
    }
    let reports =
        reports_until(&mut tracer, &mut correlator, || threads.iter().all(|t| t.is_finished()));
    threads.into_iter().for_each(|t| t.join().expect("thread"));
    let mut calls: Vec<_> = reports
        .iter()
        .filter(|r| r["lport"] == cport && r["rport"] == sport)
        .filter(|r| matches!(r["kind"].as_str(), Some("recv_error" | "recv_eof")))
        .map(|r| {
            let s = |k: &str| r[k].as_str();
            (s("comm"), s("cause"), s("peer_comm"), r["netns"].as_u64())
        })
        .collect();
    calls.sort();
    let namespaces: std::collections::BTreeSet<_> = calls.iter().map(|c| c.3).collect();
    assert_eq!(namespaces.len(), 2, "two namespaces named: {calls:?}");
    let calls: Vec<_> = calls.into_iter().map(|(c, cause, peer, _)| (c, cause, peer)).collect();
    assert_eq!(
        calls,
        vec![
            (Some("cliA"), Some("peer_aborted"), Some("srvA")),
            (Some("cliB"), Some("peer_closed"), Some("srvB")),
        ],
        "{reports:#?}"
    );
}

#[test]
fn an_rst_names_the_process_that_holds_the_socket_after_its_connecting_parent_forked_and_exited() {
    // A process connects (so tcperr learns it as the socket's owner), forks, closes its copy
    // and exits; the child holds the connection when the server resets it. Both the RST and the
    // child's failed read are the child's.
    let (mut tracer, mut correlator) = tracing(&Config::default(), false);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // SAFETY: the children only make socket calls, sleep and leave with _exit.
    let parent = unsafe { libc::fork() };
    assert!(parent >= 0, "fork: {}", std::io::Error::last_os_error());
    if parent == 0 {
        // The fork copied every descriptor of this test process, sockets of the scenarios other
        // tests run meanwhile among them: holding those, the children would become their
        // owners (and their closers). Only what the children open themselves stays.
        // SAFETY: close_range(2) on the child's own descriptors from 3 up.
        unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
        // SAFETY: prctl with a NUL-terminated name; fork in a single-threaded child.
        unsafe { libc::prctl(libc::PR_SET_NAME, c"parentproc".as_ptr()) };
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            unsafe { libc::_exit(1) }
        };
        if unsafe { libc::fork() } == 0 {
            unsafe { libc::prctl(libc::PR_SET_NAME, c"childproc".as_ptr()) };
            let _ = stream.read(&mut [0u8; 1]); // fails when the server resets
            std::thread::sleep(Duration::from_millis(1500)); // (still there to be found)
            unsafe { libc::_exit(0) };
        }
        drop(stream);
        unsafe { libc::_exit(0) };
    }
    let (server, _) = listener.accept().expect("accept");
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    assert_eq!(unsafe { libc::waitpid(parent, &mut status, 0) }, parent);
    assert_eq!(status, 0, "the parent connected and exited");
    std::thread::sleep(Duration::from_millis(100));
    sock::set_linger_zero(&server).expect("linger");
    drop(server); // RST to the child
    let start = Instant::now();
    let reports = reports_until(&mut tracer, &mut correlator, || {
        start.elapsed() > Duration::from_millis(1000)
    });
    let client: Vec<_> = reports
        .iter()
        .filter(|r| r["rport"] == port && r["kind"] != "rst_sent")
        .map(|r| (r["kind"].as_str(), r["comm"].as_str()))
        .collect();
    assert_eq!(
        client,
        vec![(Some("rst_received"), Some("childproc")), (Some("recv_error"), Some("childproc"))],
        "{reports:#?}"
    );
}

#[test]
fn closing_a_listener_with_a_connection_still_queued_resets_it_as_never_accepted() {
    // The program never set SO_LINGER and never accepted: closing its listener makes the
    // kernel reset every connection still in the accept queue. Its own cause on both ends.
    let (mut tracer, mut correlator) = tracing(&Config::default(), false);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    std::thread::sleep(Duration::from_millis(50)); // (queued, never accepted)
    drop(listener);
    client.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    assert!(client.read(&mut [0u8; 1]).is_err(), "the queued connection is reset");
    let start = Instant::now();
    let reports = reports_until(&mut tracer, &mut correlator, || {
        start.elapsed() > Duration::from_millis(600)
    });
    let ours: Vec<_> = reports
        .iter()
        .filter(|r| r["lport"] == port || r["rport"] == port)
        .filter(|r| r["kind"] == "rst_sent" || r["kind"] == "recv_error")
        .map(|r| (r["kind"].as_str(), r["cause"].as_str()))
        .collect();
    assert_eq!(
        ours,
        vec![
            (Some("rst_sent"), Some("not_accepted")),
            (Some("recv_error"), Some("peer_listener_closed"))
        ],
        "{reports:#?}"
    );
    let sent = reports.iter().find(|r| r["kind"] == "rst_sent" && r["lport"] == port);
    let text = sent.and_then(|r| r["explanation"].as_str()).unwrap_or_default();
    assert!(text.contains("accept queue") && !text.contains("SO_LINGER"), "{text}");
}

/// SYNs at a full accept queue (issue #20 item 2): one `accept_queue_full` per client whose SYN
/// was dropped, action `syn_dropped`, named after the listener's owner, with the backlog, the
/// queue and the namespace's `tcp_syncookies` (which changes nothing: no cookie is sent).
fn assert_syn_flood(scenario: &str, syncookies: u64) {
    assert_scenario(scenario);
    let (run, reports, _) = trace(scenario);
    let drops: Vec<_> =
        reports.iter().filter(|r| run.owns(r) && r["kind"] == "accept_queue_full").collect();
    if !tcperr_scenarios::scenarios::kernel_tells_syn_drops() {
        assert!(drops.is_empty(), "{drops:#?}");
        return;
    }
    assert_eq!(drops.len(), 4, "{drops:#?}");
    for d in drops {
        let q = &d["accept_queue"];
        assert_eq!(
            (
                q["action"].as_str(),
                q["syncookies"].as_u64(),
                q["backlog"].as_u64(),
                q["queued"].as_u64()
            ),
            (Some("syn_dropped"), Some(syncookies), Some(0), Some(1)),
            "{d:#}"
        );
        assert_eq!(
            (d["comm"].as_str(), d["lport"].as_u64()),
            (Some("server"), Some(u64::from(run.server_port)))
        );
        assert!(d["explanation"].as_str().expect("text").contains("dropped the SYN"), "{d:#}");
    }
}

/// A listener that listened before tcperr started (issue #20): tcperr never saw it move to
/// LISTEN, so it learns it at start from the kernel's own list of TCP sockets (the `tcp` BPF
/// iterator, walked in the scenario's namespace too). The SYNs its full queue drops are each an
/// `accept_queue_full` of action `syn_dropped`, carrying the listener's inode, by which its
/// process is found in `/proc`.
#[test]
fn syns_dropped_at_a_listener_that_listened_before_tcperr_started_are_reported() {
    use std::sync::mpsc;
    assert!(tcperr_scenarios::scenarios::kernel_tells_syn_drops(), "this kernel's consume_skb");
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let running = std::thread::spawn(move || {
        tcperr_scenarios::scenarios::syn_flood_with(false, move || {
            let _ = ready_tx.send(());
            let _ = go_rx.recv();
        })
    });
    if ready_rx.recv().is_err() {
        panic!("the scenario ended before its flood: {:?}", running.join().expect("thread"));
    }
    let (mut tracer, mut correlator) = tracing(&Config::default(), false);
    go_tx.send(()).expect("go");
    let reports = reports_until(&mut tracer, &mut correlator, || running.is_finished());
    let run = running.join().expect("thread").unwrap_or_else(|e| panic!("syn flood: {e}"));
    let drops: Vec<_> =
        reports.iter().filter(|r| run.owns(r) && r["kind"] == "accept_queue_full").collect();
    assert_eq!(drops.len(), 4, "{reports:#?}");
    let clients: Vec<u64> = run.client_ports.iter().map(|&p| u64::from(p)).collect();
    for d in drops {
        let q = &d["accept_queue"];
        assert_eq!(
            (
                q["action"].as_str(),
                q["backlog"].as_u64(),
                q["queued"].as_u64(),
                d["lport"].as_u64(),
            ),
            (Some("syn_dropped"), Some(0), Some(1), Some(u64::from(run.server_port))),
            "{d:#}"
        );
        assert!(d["rport"].as_u64().is_some_and(|p| clients.contains(&p)), "{d:#}");
        assert!(d["ino"].as_u64().is_some(), "the listener's inode: {d:#}");
        // The listener's process, where its `/proc` budget let tcperr find it in time: this test
        // process holds tcperr's own descriptors too, so its turn in a pass over `/proc` comes
        // late (`tcperr trace` is a process of its own).
        assert!(d["pid"].as_u64().is_none_or(|p| p == u64::from(std::process::id())), "{d:#}");
    }
}

#[test]
fn syns_at_a_full_accept_queue_are_dropped_one_event_per_client() {
    assert_syn_flood("syn_flood_accept_queue_full", 0);
}

#[test]
fn syns_at_a_full_accept_queue_are_dropped_with_syncookies_on_too() {
    assert_syn_flood("syn_flood_accept_queue_full_syncookies", 1);
}

/// Segments the kernel dropped (issue #20 item 1): the silent peer's socket filter drops every
/// segment of the client; with `--all` each is a `drop` on the server's socket, reason
/// `SOCKET_FILTER` as the running kernel names it, cause `filtered`, named after the server's
/// process.
/// Without `--all` none is shown (`silent_peer`'s exact events above have no `drop`).
#[test]
fn segments_a_socket_filter_drops_are_drop_events_with_the_kernels_reason_under_all() {
    let (run, reports, _) = trace_in_mode("silent_peer", &Config::default(), true);
    let drops: Vec<_> = reports.iter().filter(|r| run.owns(r) && r["kind"] == "drop").collect();
    assert!(!drops.is_empty(), "no drop in {reports:#?}");
    for d in &drops {
        assert_eq!(
            (d["reason"].as_str(), d["cause"].as_str(), d["lport"].as_u64()),
            (Some("SOCKET_FILTER"), Some("filtered"), Some(u64::from(run.server_port))),
            "{d:#}"
        );
        assert_eq!(d["counted_as"], serde_json::Value::Null, "{d:#}");
        assert!(d["explanation"].as_str().expect("text").contains("filter"), "{d:#}");
    }
    // The socket is the server's (accepted: its process, found in /proc, not its thread).
    let server = run.actors.iter().find(|a| a.name == "server").expect("server actor");
    assert!(drops.iter().all(|d| d["pid"].as_u64() == Some(u64::from(server.pid))), "{drops:#?}");
}

/// Drops joined into the story (issue #20): by default no `drop` line is printed, but the
/// silent peer's timeout says how many of the client's segments the kernel dropped and why: its
/// data segment and each retransmission of it (the kernel's own count), all `SOCKET_FILTER`.
#[test]
fn a_timeout_behind_a_socket_filter_names_the_segments_the_kernel_dropped() {
    let (run, reports, _) = trace("silent_peer");
    assert!(reports.iter().all(|r| r["kind"] != "drop"), "{reports:#?}");
    let timeouts: Vec<_> =
        reports.iter().filter(|r| run.owns(r) && r["errno"] == "ETIMEDOUT").collect();
    assert_eq!(timeouts.len(), 2, "{reports:#?}");
    for t in timeouts {
        let segments = t["stakes"]["retransmits"].as_u64().expect("retransmits") + 1;
        let text = t["explanation"].as_str().expect("text");
        let said = format!(
            "the kernel dropped {segments} of our segments to 127.0.0.1:{} (SOCKET_FILTER)",
            run.server_port
        );
        assert!(text.contains(&said), "{said:?} not in {text:?}");
    }
}

/// `--no-drops` (issue #20 item 5): the sources on freed packets stay off, saying why, and the
/// SYNs a full accept queue drops go unreported (the same flood as above).
#[test]
fn no_drops_leaves_the_hooks_on_freed_packets_off() {
    let config = Config { no_drops: true, ..Config::default() };
    let tracer = Tracer::start(&config).unwrap_or_else(|e| panic!("tcperr cannot start: {e}"));
    let hooks = tracer.hook_summary();
    for off in ["drop OFF (--no-drops)", "syn_dropped OFF (--no-drops)"] {
        assert!(hooks.iter().any(|h| h == off), "{off:?} not in {hooks:?}");
    }
    drop(tracer);
    let (run, reports, _) = trace_with("syn_flood_accept_queue_full", &config);
    assert!(
        reports.iter().all(|r| !(run.owns(r) && r["kind"] == "accept_queue_full")),
        "{reports:#?}"
    );
}

/// The issue's own case: an nftables rule (in a network namespace of its own) drops what a
/// connected client sends to its server until `TCP_USER_TIMEOUT` gives ETIMEDOUT. The
/// timeout's story says how many retransmissions the kernel made (as `TCP_INFO` tells the
/// client), and that the kernel dropped each of the client's segments, `NETFILTER_DROP`.
#[test]
fn a_timeout_behind_an_nftables_rule_names_the_firewall_and_the_retransmissions() {
    use std::{io::Write as _, process::Command};
    let (mut tracer, mut correlator) = tracing(&Config::default(), false);
    let started = tcperr_common::clock::monotonic_ns();
    let running = std::thread::spawn(|| -> Result<(u16, u16, sock::Retransmissions), String> {
        let ns = tcperr_scenarios::netns::Netns::new(&[]).map_err(|e| e.to_string())?;
        ns.enter().map_err(|e| e.to_string())?;
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let mut c = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        let (_server, _) = listener.accept().map_err(|e| e.to_string())?;
        sock::set_user_timeout(&c, 500).map_err(|e| e.to_string())?;
        let mut nft = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("nft (Debian's nftables): {e}"))?;
        let rules = format!(
            "table inet tcperr_test {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n  tcp dport {} drop\n }}\n}}\n",
            addr.port()
        );
        nft.stdin.take().expect("stdin").write_all(rules.as_bytes()).map_err(|e| e.to_string())?;
        let status = nft.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("nft: {status}"));
        }
        c.write_all(b"anyone there?").map_err(|e| e.to_string())?;
        sock::wait_for(&c, 0, Duration::from_secs(10)).map_err(|e| e.to_string())?;
        let res = c.write(b"again");
        let retrans = sock::retransmissions(&c).map_err(|e| e.to_string())?;
        match res {
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            other => return Err(format!("write returned {other:?}, expected a timeout")),
        }
        let port = c.local_addr().map_err(|e| e.to_string())?.port();
        Ok((addr.port(), port, retrans))
    });
    let reports = reports_until(&mut tracer, &mut correlator, || running.is_finished());
    let (server, client, retrans) = running.join().expect("thread").expect("firewall timeout");
    assert!(retrans.total > 0, "{retrans:?}");
    let ours: Vec<_> = reports
        .iter()
        .filter(|r| r["ts_ns"].as_u64().is_some_and(|t| t >= started))
        .filter(|r| r["lport"] == client && r["rport"] == server)
        // (the rest: the server's FIN once its thread ended, answered with RSTs the rule drops)
        .filter(|r| r["kind"] != "rst_sent")
        .collect();
    let kinds: Vec<_> = ours.iter().map(|r| (r["kind"].as_str(), r["errno"].as_str())).collect();
    assert_eq!(
        kinds,
        vec![(Some("socket_error"), Some("ETIMEDOUT")), (Some("send_error"), Some("ETIMEDOUT"))],
        "{reports:#?}"
    );
    for r in ours {
        assert_eq!(
            (r["cause"].as_str(), r["stakes"]["retransmits"].as_u64()),
            (Some("timeout"), Some(u64::from(retrans.total))),
            "{r:#}"
        );
        let text = r["explanation"].as_str().expect("text");
        let said = format!(
            "the kernel dropped {} of our segments to 127.0.0.1:{server} (NETFILTER_DROP)",
            retrans.total + 1
        );
        assert!(text.contains(&said), "{said:?} not in {text:?}");
    }
}

/// A firewall drop (issue #20 item 1): in a network namespace of its own, an nftables rule
/// (Debian's `nft`) drops what comes in for a listener's port; a client's SYN is dropped once
/// (its retransmission, 1 s later, is not waited for). Under `--all` exactly that one segment
/// is a `drop`: reason `NETFILTER_DROP` as the running kernel names it, cause `filtered`, the
/// listener's port as local, the client's as remote, in that namespace, and no process (the
/// segment never reached a socket).
#[test]
fn a_syn_an_nftables_rule_drops_is_one_drop_event_named_netfilter_under_all() {
    use std::{io::Write as _, os::unix::fs::MetadataExt as _, process::Command};
    let (mut tracer, mut correlator) = tracing(&Config::default(), true);
    let started = tcperr_common::clock::monotonic_ns();
    let running = std::thread::spawn(|| -> Result<(u16, u16, u64), String> {
        let ns = tcperr_scenarios::netns::Netns::new(&[]).map_err(|e| e.to_string())?;
        ns.enter().map_err(|e| e.to_string())?;
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        // (`nft` runs in this thread's namespace: a child inherits its creator's)
        let mut nft = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("nft (Debian's nftables): {e}"))?;
        let rules = format!(
            "table inet tcperr_test {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n  tcp dport {} drop\n }}\n}}\n",
            addr.port()
        );
        nft.stdin.take().expect("stdin").write_all(rules.as_bytes()).map_err(|e| e.to_string())?;
        let status = nft.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("nft: {status}"));
        }
        let c = sock::stalled_connect(addr).map_err(|e| e.to_string())?;
        let client_port = c.local_addr().map_err(|e| e.to_string())?.port();
        std::thread::sleep(Duration::from_millis(300));
        let netns = std::fs::metadata("/proc/thread-self/ns/net").map_err(|e| e.to_string())?;
        Ok((addr.port(), client_port, netns.ino()))
    });
    let reports = reports_until(&mut tracer, &mut correlator, || running.is_finished());
    let (port, client_port, netns) = running.join().expect("thread").expect("firewall scenario");
    let drops: Vec<_> = reports
        .iter()
        .filter(|r| r["kind"] == "drop" && r["ts_ns"].as_u64().is_some_and(|t| t >= started))
        .filter(|r| r["lport"] == port && r["netns"] == netns)
        .collect();
    assert_eq!(drops.len(), 1, "{drops:#?}");
    let d = drops[0];
    assert_eq!(
        (d["reason"].as_str(), d["cause"].as_str(), d["rport"].as_u64(), d["pid"].as_u64()),
        (Some("NETFILTER_DROP"), Some("filtered"), Some(u64::from(client_port)), None),
        "{d:#}"
    );
    assert!(d["explanation"].as_str().expect("text").contains("firewall"), "{d:#}");
}
