//! The results as markdown: what `cargo xtask bench` prints and keeps in
//! `bench/results/latest.md`.
use std::fmt::Write as _;

use super::{
    Results,
    ceiling::Ceiling,
    hot_path::HotPath,
    storm::{ModeRuns, Storm, StormMode},
    targets::TARGETS,
    throughput::{Mode, Throughput},
};

pub fn markdown(r: &Results) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# tcperr benchmark{}\n\n{}, {}.\n",
        if r.smoke { " (smoke run: no targets)" } else { "" },
        r.date,
        r.machine
    );
    hot_path(&mut md, &r.hot_path);
    throughput(&mut md, &r.throughput);
    storm(&mut md, &r.storm);
    ceiling(&mut md, &r.ceiling);
    let _ = writeln!(
        md,
        "\n## 5. Start-up and memory\n\n| measure | value |\n| --- | --- |\n| start → attached and ready (median) | {:.0} ms |\n| peak RSS during the storm | {:.1} MB |",
        r.startup.ready_ms,
        r.tcperr_storm_rss_kib() as f64 / 1024.0
    );
    if !r.smoke {
        targets(&mut md, r);
    }
    md
}

/// The lowest and highest of ratios.
fn spread(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    format!("{min:.2}–{max:.2}")
}

fn hot_path(md: &mut String, h: &HotPath) {
    let _ = writeln!(
        md,
        "## 1. In-kernel cost per socket call (success path; each program alone on the hooks, {} ping-pong round trips, {} rounds)\n",
        h.round_trips, h.rounds,
    );
    let _ = writeln!(
        md,
        "| program | ns/run (all rounds) | runs | vs floor (median of rounds) | spread of rounds |\n| --- | --- | --- | --- | --- |"
    );
    for p in &h.programs {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {} | {:.2} | {} |",
            p.name,
            p.ns_per_run,
            p.runs,
            p.ratio,
            spread(&p.per_round)
        );
    }
}

fn throughput(md: &mut String, t: &Throughput) {
    let _ = writeln!(
        md,
        "\n## 2. Request/response throughput (1-byte ping-pong, {} interleaved rounds of {:.1} s)\n",
        t.rounds, t.secs
    );
    let _ = writeln!(
        md,
        "| mode | median round trips/s | ratio to untraced (median of pairs) | spread of pairs |\n| --- | --- | --- | --- |"
    );
    for m in &t.modes {
        let _ = if m.mode == Mode::Untraced {
            writeln!(md, "| {} | {:.0} | 1.00 | |", m.mode.label(), m.median_rate)
        } else {
            writeln!(
                md,
                "| {} | {:.0} | {:.3} | {} |",
                m.mode.label(),
                m.median_rate,
                m.ratio,
                spread(&m.pairs)
            )
        };
    }
}

fn storm(md: &mut String, s: &Storm) {
    let _ = writeln!(
        md,
        "\n## 3. RST storm (2 generators, {} interleaved rounds of {:.0} s per mode)\n",
        s.rounds, s.secs
    );
    let _ = writeln!(
        md,
        "| mode | connections/s (median) | ratio to untraced (median of rounds) | spread | tracer CPU s per 10k conns | lines | events seen / lost | peak RSS |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for m in &s.modes {
        let _ = writeln!(md, "{}", storm_row(m));
    }
    let _ = writeln!(
        md,
        "\nDefault tcperr prints ten reports a second per story and counts the rest in `repeated` lines (README \"Storms\"); `--every` prints each report. *{}*: tcperr's programs attached and doing all their work, each record dropped where it would enter the ring buffer (no ring buffer, no userspace): the cost of the kernel side alone.",
        StormMode::Discarded.label()
    );
}

fn storm_row(m: &ModeRuns) -> String {
    let spread = if m.mode == StormMode::Untraced { String::new() } else { spread(&m.ratios) };
    let tracer = match &m.tracer {
        None => String::from("| | | | |"),
        Some(t) => {
            let counted = t.counted.map_or(String::new(), |c| {
                format!("{} / {} ({:.2} per connection)", c.seen, c.lost, c.per_connection())
            });
            let rss = if m.mode.is_tcperr() {
                format!("{:.1} MB", t.peak_rss_kib as f64 / 1024.0)
            } else {
                String::new()
            };
            format!("| {:.4} | {} | {counted} | {rss} |", t.cpu_per_10k, t.lines)
        }
    };
    format!("| {} | {:.0} | {:.3} | {spread} {tracer}", m.mode.label(), m.median_rate, m.ratio)
}

fn ceiling(md: &mut String, c: &Ceiling) {
    let _ = writeln!(
        md,
        "\n## 4. Userspace ceiling (synthetic stream, no kernel)\n\n| stage | events/s |\n| --- | --- |\n| decode + correlate | {:.0} |\n| decode + correlate + JSON | {:.0} |\n| an RST storm's records as `tcperr trace --json` takes them (summary, storm folding) | {:.0} |",
        c.decode, c.json, c.storm_replay
    );
}

fn targets(md: &mut String, r: &Results) {
    let _ = writeln!(md, "\n## Targets\n\n| target | measured | |\n| --- | --- | --- |");
    for t in TARGETS.iter().map(|t| t.evaluate(r)) {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            t.name,
            t.measured,
            if t.met { "met" } else { "**missed**" }
        );
    }
}
