//! The targets the full run is held to: one table, each target's measured value read from the
//! typed results.
use super::{
    Results,
    storm::{Counted, EVENTS_PER_CONNECTION, StormMode},
    throughput::Mode,
};

pub struct Target {
    pub name: &'static str,
    /// The value measured; None where this run could not measure it (shown "n/a", missed).
    value: fn(&Results) -> Option<f64>,
    /// The value as shown in the table.
    shown: fn(f64) -> String,
    met: Met,
}

enum Met {
    AtLeast(f64),
    AtMost(f64),
    /// A test on the results rather than a threshold on the value.
    When(fn(&Results) -> bool),
}

pub const TARGETS: [Target; 14] = [
    Target {
        name: "hot-path programs within 10 % of the floor",
        value: |r| Some(r.hot_path.slowest_tcperr()),
        shown: |v| format!("{v:.2} (slowest)"),
        met: Met::AtMost(1.10),
    },
    Target {
        name: "request/response ≥ 0.98 of untraced",
        value: |r| r.throughput.ratio(Mode::Tcperr),
        shown: |v| format!("{v:.3}"),
        met: Met::AtLeast(0.98),
    },
    Target {
        name: "RST storm ≥ 0.90 of untraced",
        value: |r| Some(r.storm.mode(StormMode::Tcperr).map_or(0.0, |m| m.ratio)),
        shown: |v| format!("{v:.2}"),
        met: Met::AtLeast(0.90),
    },
    Target {
        name: "serve: request/response ≥ 0.98 of untraced",
        value: |r| r.throughput.ratio(Mode::Serve),
        shown: |v| format!("{v:.3}"),
        met: Met::AtLeast(0.98),
    },
    Target {
        name: "serve: RST storm ≥ 0.90 of untraced",
        value: |r| Some(r.storm.mode(StormMode::Serve).map_or(0.0, |m| m.ratio)),
        shown: |v| format!("{v:.2}"),
        met: Met::AtLeast(0.90),
    },
    Target {
        name: "no lost events at the default buffer",
        value: |r| tcperr_counted(r).map(|c| c.lost as f64),
        shown: |v| format!("{v:.0} lost"),
        met: Met::AtMost(0.0),
    },
    Target {
        name: "storm: events seen + lost = what the generators caused",
        value: |r| Some(tcperr_counted(r).unwrap_or(NOTHING_COUNTED).per_connection()),
        shown: |v| format!("{v:.2} per connection ({EVENTS_PER_CONNECTION} caused)"),
        met: Met::When(|r| tcperr_counted(r).is_some_and(adds_up)),
    },
    Target {
        name: "tracer CPU per connection ≤ ½ of bpftrace's",
        value: |r| {
            let cpu = |mode| r.storm.tracer(mode).map(|t| t.cpu_per_10k);
            match (cpu(StormMode::Tcperr), cpu(StormMode::Bpftrace)) {
                (Some(t), Some(b)) if b > 0.0 => Some(t / b),
                _ => None,
            }
        },
        shown: |v| format!("{v:.2}"),
        met: Met::AtMost(0.5),
    },
    Target {
        name: "≥ 1,000,000 events/s decoded and correlated",
        value: |r| Some(r.ceiling.decode),
        shown: |v| format!("{v:.0}"),
        met: Met::AtLeast(1e6),
    },
    Target {
        name: "≥ 300,000 events/s as JSON",
        value: |r| Some(r.ceiling.json),
        shown: |v| format!("{v:.0}"),
        met: Met::AtLeast(3e5),
    },
    Target {
        name: "ready ≤ 300 ms",
        value: |r| Some(r.startup.ready_ms),
        shown: |v| format!("{v:.0} ms"),
        met: Met::AtMost(300.0),
    },
    Target {
        name: "peak RSS ≤ 30 MB under the storm",
        value: |r| Some(r.tcperr_storm_rss_kib() as f64 / 1024.0),
        shown: |v| format!("{v:.1} MB"),
        met: Met::AtMost(30.0),
    },
    Target {
        name: "health checks: tracer CPU with 100,000 idle sockets ≤ 1.5× without",
        value: |r| Some(r.idle.cpu_ratio()),
        shown: |v| format!("{v:.2}"),
        met: Met::AtMost(1.5),
    },
    Target {
        name: "ready with 100,000 idle sockets ≤ 1.5× without",
        value: |r| Some(r.idle.ready_ratio()),
        shown: |v| format!("{v:.2}"),
        met: Met::AtMost(1.5),
    },
];

/// A target as this run measured it.
pub struct Outcome {
    pub name: &'static str,
    pub measured: String,
    pub met: bool,
}

impl Target {
    pub fn evaluate(&self, r: &Results) -> Outcome {
        let value = (self.value)(r);
        let met = match self.met {
            Met::AtLeast(min) => value.is_some_and(|v| v >= min),
            Met::AtMost(max) => value.is_some_and(|v| v <= max),
            Met::When(test) => test(r),
        };
        Outcome { name: self.name, measured: value.map_or("n/a".into(), self.shown), met }
    }
}

/// (Without counts, as when a round's tcperr printed no stats, the storm shows 0 per connection.)
const NOTHING_COUNTED: Counted = Counted { seen: 0, lost: 0, connections: 0 };

/// tcperr's counts in the storm at the default settings.
fn tcperr_counted(r: &Results) -> Option<Counted> {
    r.storm.tracer(StormMode::Tcperr)?.counted
}

/// Whether tcperr's count adds up to what the generators caused: [`EVENTS_PER_CONNECTION`] per
/// connection, each lost record standing for at most two events (an RST carrying its move to
/// CLOSE), and at most 1 % more from the host's other traffic (and connections cut by the end
/// of a round).
fn adds_up(c: Counted) -> bool {
    let Counted { seen, lost, connections } = c;
    connections > 0
        && seen + 2 * lost >= EVENTS_PER_CONNECTION * connections
        && (seen + lost) as f64 <= EVENTS_PER_CONNECTION as f64 * 1.01 * connections as f64
}
