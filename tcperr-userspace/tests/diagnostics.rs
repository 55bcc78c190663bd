//! The programs' own diagnostics (aya-log, `tcperr-ebpf/src/diag.rs`): with `-vv`, a record that
//! did not fit the ring buffer is logged from the kernel side as it happens; without it the
//! programs log nothing (the diagnostics are dead code to the verifier). Needs root.
use std::{path::Path, time::Duration};

use tcperr_scenarios::drive;

mod support;

const TCPERR: &str = env!("CARGO_BIN_EXE_tcperr");

const LOST_LINE: &str = "lost: the ring buffer is full";

#[test]
fn with_vv_the_programs_log_records_the_ring_buffer_had_no_room_for_and_without_it_nothing() {
    // A ring buffer of one page cannot take a storm's records between two reads.
    let args = ["--ringbuf-size", "4096", "--summary-only"];
    let start = |v: &str| {
        let args: Vec<&str> = [v].into_iter().chain(args).collect();
        drive::start(Path::new(TCPERR), &args, Duration::from_secs(30))
            .unwrap_or_else(|(code, e)| panic!("tcperr {args:?} did not start ({code:?}): {e}"))
    };
    let (debug, warn) = (start("-vv"), start("-v"));
    let (storm, _) = tcperr_scenarios::storm::run(2, Duration::from_secs(2));
    assert!(storm.connections > 100, "the storm made only {} connections", storm.connections);
    let (debug, warn) = (drive::stop(debug).expect("stop"), drive::stop(warn).expect("stop"));
    for t in [&debug, &warn] {
        assert_eq!(t.code, 0, "{:#?}", t.stderr);
        support::assert_all_schema(t.events.iter().chain(&t.stats));
        assert!(t.stat("lost").is_some_and(|n| n > 0), "records were lost: {:?}", t.stats);
    }
    let logged = |t: &drive::Stopped| t.stderr.iter().filter(|l| l.contains(LOST_LINE)).count();
    assert!(
        logged(&debug) > 0,
        "-vv: the kernel side says so: {:#?}",
        &debug.stderr[..20.min(debug.stderr.len())]
    );
    let line = debug.stderr.iter().find(|l| l.contains(LOST_LINE)).unwrap();
    assert!(line.starts_with("[DEBUG] record of kind "), "{line}");
    assert_eq!(logged(&warn), 0, "-v: no diagnostics from the programs");
}
