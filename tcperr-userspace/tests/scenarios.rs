//! Every reproduction scenario with the real loader attached in this process (on a kernel
//! without fexit/kprobes: the tracepoint path): the exact events tcperr reports, with ports
//! normalised to roles and processes to the scenario's threads. Needs root.
use std::time::{Duration, Instant};

use tcperr_scenarios::Run;
use tcperr_userspace::{
    correlate::Correlator,
    tracer::{Config, Tracer},
};

/// Runs `scenario` under a fresh tracer; returns the run and tcperr's reports of its sockets as
/// JSON, plus whether the kernel reports RST reasons.
fn trace(scenario: &str) -> (Run, Vec<serde_json::Value>, bool) {
    let mut tracer =
        Tracer::start(&Config::default()).unwrap_or_else(|e| panic!("tcperr cannot start: {e}"));
    let mut correlator = Correlator::new(tracer.plan.rst_reasons.clone(), false);
    let run = tcperr_scenarios::run(scenario).unwrap_or_else(|e| panic!("{scenario}: {e}"));
    let mut reports = Vec::new();
    // Drain until the ring buffer has been quiet for 300 ms.
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_millis(300) {
        if tracer.wait(Duration::from_millis(50)) {
            tracer.drain(|ev| {
                let ev = ev.unwrap_or_else(|e| panic!("undecodable record: {e}"));
                if let Some(r) = correlator.observe(&ev) {
                    reports.push(serde_json::to_value(&r).expect("report serialises"));
                }
            });
            last = Instant::now();
        }
    }
    assert_eq!(tracer.lost(), 0, "records lost");
    (run, reports, tcperr_scenarios::drive::kernel_reports_rst_reason())
}

fn assert_scenario(scenario: &str) {
    let (run, reports, rst_reason) = trace(scenario);
    assert_eq!(
        run.observed_lines(&reports),
        run.expected_lines(rst_reason),
        "{scenario}: tcperr reported (left) vs expected (right); raw reports: {:#?}",
        reports.iter().filter(|r| run.owns(r)).collect::<Vec<_>>()
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
}

#[test]
fn eof_is_a_clean_close_seen_by_the_reading_server_with_no_rst() {
    assert_scenario("eof");
}

#[test]
fn refused_is_an_rst_in_syn_sent_attributed_to_the_connecting_thread() {
    assert_scenario("refused");
}

#[test]
fn explanations_and_reasons_name_the_cause() {
    let (run, reports, rst_reason) = trace("broken_pipe");
    let find = |kind: &str| {
        reports
            .iter()
            .find(|r| run.owns(r) && r["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {reports:#?} ({run:?})"))
    };
    assert_eq!(find("send_error")["error"], "broken pipe");
    assert!(find("rst_received")["explanation"].as_str().unwrap().contains("had already closed"));
    if rst_reason {
        assert_eq!(find("rst_sent")["reason"], "TCP_ABORT_ON_DATA");
    }
    let (run, reports, rst_reason) = trace("reset_by_unread_data");
    let rst = reports.iter().find(|r| run.owns(r) && r["kind"] == "rst_sent").expect("rst_sent");
    if rst_reason {
        assert_eq!(rst["reason"], "TCP_ABORT_ON_CLOSE");
    }
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
