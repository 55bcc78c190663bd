//! The results as markdown: what `cargo xtask bench` prints and keeps in
//! `bench/results/latest.md`.
use std::fmt::Write as _;

use super::{
    Results,
    ceiling::Ceiling,
    hot_path::HotPath,
    idle::{CHECKS_PER_SEC, Idle},
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
    idle(&mut md, &r.idle);
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
    if t.modes.iter().any(|m| m.mode == Mode::TcperrNoDrops) {
        let _ = writeln!(
            md,
            "\n*{}*: without the hooks on packets the kernel frees (`kfree_skb`, `consume_skb`), which fire for every packet: the difference from `tcperr` is their cost.",
            Mode::TcperrNoDrops.label()
        );
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
    if s.mode(StormMode::TcperrNoDrops).is_some() {
        let _ = writeln!(
            md,
            "*{}*: without the hooks on packets the kernel frees (`kfree_skb`, `consume_skb`: the `drop` and `syn_dropped` sources), which fire for every packet: the difference from `tcperr` is their cost.",
            StormMode::TcperrNoDrops.label()
        );
    }
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

fn idle(md: &mut String, i: &Idle) {
    let _ = writeln!(
        md,
        "\n## 6. Attribution on a busy host ({CHECKS_PER_SEC:.0} health checks a second, each a connect and reset, on a service started before tcperr; {} interleaved rounds; idle loopback sockets held by {} other processes)\n",
        i.rounds, i.holders
    );
    let _ = writeln!(
        md,
        "| case | start → ready (median) | tracer CPU over the first {:.1} s of checks (median) | tracer CPU per second of the next {:.1} s (median) | checks made |\n| --- | --- | --- | --- | --- |",
        i.first_secs, i.secs
    );
    for (name, c) in [
        ("no idle sockets".to_owned(), &i.without),
        (format!("{} idle sockets", i.sockets), &i.with),
    ] {
        let _ = writeln!(
            md,
            "| {name} | {:.0} ms | {:.1} ms | {:.2} ms | {} |",
            c.ready_ms, c.first_cpu_ms, c.steady_cpu_ms_per_s, c.checks
        );
    }
    let _ = writeln!(
        md,
        "\nEach check's reset reaches the server's accepted socket in softirq, where the task is not its owner: tcperr looks for the owner in `/proc`. With idle sockets over without: start-up {:.2}, steady CPU {:.2}.",
        i.ready_ratio(),
        i.cpu_ratio()
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

#[cfg(test)]
mod tests {
    use super::{super::*, markdown};
    use hot_path::{Holder, HotPath, Program};
    use storm::{Counted, ModeRuns, Storm, StormMode, TracerCost};
    use throughput::{Mode, ModeRate, Throughput};

    fn program(name: &str, holder: Holder, ns_per_run: f64, runs: u64, ratio: f64) -> Program {
        let (lo, hi) = SPREADS.iter().find(|s| s.0 == name).map(|s| (s.1, s.2)).unwrap();
        let per_round = vec![lo, ratio, hi];
        Program { name: name.into(), holder, ns_per_run, runs, per_round, ratio }
    }

    const SPREADS: [(&str, f64, f64); 6] = [
        ("bpftrace sock_recv_lengt", 0.64, 0.87),
        ("bpftrace sock_send_lengt", 0.89, 1.07),
        ("floor_sock_recv_length", 1.0, 1.0),
        ("floor_sock_send_length", 1.0, 1.0),
        ("sock_recv_length", 0.76, 1.07),
        ("sock_send_length", 0.87, 1.12),
    ];

    fn rate(mode: Mode, median_rate: f64, ratio: f64, pairs: &[f64]) -> ModeRate {
        ModeRate { mode, median_rate, pairs: pairs.to_vec(), ratio }
    }

    fn storm_mode(
        mode: StormMode,
        median_rate: f64,
        ratio: f64,
        ratios: &[f64],
        tracer: Option<TracerCost>,
    ) -> ModeRuns {
        ModeRuns { mode, median_rate, ratios: ratios.to_vec(), ratio, tracer }
    }

    fn cost(cpu_per_10k: f64, lines: u64, seen: Option<u64>, peak_rss_kib: u64) -> TracerCost {
        let counted = seen.map(|seen| Counted { seen, lost: 0, connections: seen / 5 });
        TracerCost { cpu_per_10k, lines, counted, peak_rss_kib }
    }

    /// The numbers of bench/results/latest.md as the code before the split into sections wrote
    /// it, and made-up numbers for §6, which came later.
    fn latest() -> Results {
        use Holder::*;
        let programs = vec![
            program("bpftrace sock_recv_lengt", Bpftrace, 59.8, 1440012, 0.79),
            program("bpftrace sock_send_lengt", Bpftrace, 65.8, 1440000, 0.99),
            program("floor_sock_recv_length", Floor, 75.5, 1440012, 1.0),
            program("floor_sock_send_length", Floor, 66.1, 1440000, 1.0),
            program("sock_recv_length", Tcperr, 72.2, 1440012, 0.97),
            program("sock_send_length", Tcperr, 66.4, 1440000, 1.02),
        ];
        let throughput = vec![
            rate(Mode::Untraced, 19177.0, 1.0, &[]),
            rate(Mode::Tcperr, 19578.0, 1.016, &[0.87, 1.12]),
            rate(Mode::Bpftrace, 18818.0, 0.960, &[0.81, 1.12]),
        ];
        let storm = vec![
            storm_mode(StormMode::Untraced, 66913.0, 1.0, &[1.0], None),
            storm_mode(
                StormMode::Tcperr,
                60003.0,
                0.903,
                &[0.89, 0.95],
                Some(cost(0.0077, 2640, Some(9115900), 13210)),
            ),
            storm_mode(
                StormMode::TcperrEvery,
                49141.0,
                0.743,
                &[0.72, 0.77],
                Some(cost(0.0806, 4460031, Some(7433425), 13312)),
            ),
            storm_mode(StormMode::Discarded, 63460.0, 0.957, &[0.93, 0.99], None),
            storm_mode(
                StormMode::Bpftrace,
                17627.0,
                0.265,
                &[0.26, 0.27],
                Some(cost(0.2709, 4767775, None, 40000)),
            ),
        ];
        Results {
            smoke: false,
            date: "2026-11-26 18:19 UTC".into(),
            machine: "2 cores (AMD EPYC), kernel 6.18.44-fc-v595".into(),
            hot_path: HotPath { round_trips: 60000, rounds: 12, programs },
            throughput: Throughput { rounds: 15, secs: 1.5, modes: throughput },
            storm: Storm { rounds: 10, secs: 3.0, modes: storm },
            ceiling: ceiling::Ceiling {
                decode: 1441001.0,
                json: 1009659.0,
                storm_replay: 5574915.0,
            },
            startup: startup::Startup { ready_ms: 88.0 },
            idle: idle::Idle {
                sockets: 100_000,
                holders: 6,
                rounds: 4,
                first_secs: 1.0,
                secs: 4.0,
                without: idle::Case {
                    ready_ms: 120.0,
                    first_cpu_ms: 4.2,
                    steady_cpu_ms_per_s: 3.1,
                    checks: 4000,
                },
                with: idle::Case {
                    ready_ms: 126.0,
                    first_cpu_ms: 5.0,
                    steady_cpu_ms_per_s: 3.3,
                    checks: 3998,
                },
            },
        }
    }

    const LATEST: &str = r#"# tcperr benchmark

2026-11-26 18:19 UTC, 2 cores (AMD EPYC), kernel 6.18.44-fc-v595.

## 1. In-kernel cost per socket call (success path; each program alone on the hooks, 60000 ping-pong round trips, 12 rounds)

| program | ns/run (all rounds) | runs | vs floor (median of rounds) | spread of rounds |
| --- | --- | --- | --- | --- |
| bpftrace sock_recv_lengt | 59.8 | 1440012 | 0.79 | 0.64–0.87 |
| bpftrace sock_send_lengt | 65.8 | 1440000 | 0.99 | 0.89–1.07 |
| floor_sock_recv_length | 75.5 | 1440012 | 1.00 | 1.00–1.00 |
| floor_sock_send_length | 66.1 | 1440000 | 1.00 | 1.00–1.00 |
| sock_recv_length | 72.2 | 1440012 | 0.97 | 0.76–1.07 |
| sock_send_length | 66.4 | 1440000 | 1.02 | 0.87–1.12 |

## 2. Request/response throughput (1-byte ping-pong, 15 interleaved rounds of 1.5 s)

| mode | median round trips/s | ratio to untraced (median of pairs) | spread of pairs |
| --- | --- | --- | --- |
| untraced | 19177 | 1.00 | |
| tcperr | 19578 | 1.016 | 0.87–1.12 |
| bpftrace | 18818 | 0.960 | 0.81–1.12 |

## 3. RST storm (2 generators, 10 interleaved rounds of 3 s per mode)

| mode | connections/s (median) | ratio to untraced (median of rounds) | spread | tracer CPU s per 10k conns | lines | events seen / lost | peak RSS |
| --- | --- | --- | --- | --- | --- | --- | --- |
| untraced | 66913 | 1.000 |  | | | | |
| tcperr | 60003 | 0.903 | 0.89–0.95 | 0.0077 | 2640 | 9115900 / 0 (5.00 per connection) | 12.9 MB |
| tcperr --every | 49141 | 0.743 | 0.72–0.77 | 0.0806 | 4460031 | 7433425 / 0 (5.00 per connection) | 13.0 MB |
| records discarded in the kernel | 63460 | 0.957 | 0.93–0.99 | | | | |
| bpftrace | 17627 | 0.265 | 0.26–0.27 | 0.2709 | 4767775 |  |  |

Default tcperr prints ten reports a second per story and counts the rest in `repeated` lines (README "Storms"); `--every` prints each report. *records discarded in the kernel*: tcperr's programs attached and doing all their work, each record dropped where it would enter the ring buffer (no ring buffer, no userspace): the cost of the kernel side alone.

## 4. Userspace ceiling (synthetic stream, no kernel)

| stage | events/s |
| --- | --- |
| decode + correlate | 1441001 |
| decode + correlate + JSON | 1009659 |
| an RST storm's records as `tcperr trace --json` takes them (summary, storm folding) | 5574915 |

## 5. Start-up and memory

| measure | value |
| --- | --- |
| start → attached and ready (median) | 88 ms |
| peak RSS during the storm | 12.9 MB |

## 6. Attribution on a busy host (200 health checks a second, each a connect and reset, on a service started before tcperr; 4 interleaved rounds; idle loopback sockets held by 6 other processes)

| case | start → ready (median) | tracer CPU over the first 1.0 s of checks (median) | tracer CPU per second of the next 4.0 s (median) | checks made |
| --- | --- | --- | --- | --- |
| no idle sockets | 120 ms | 4.2 ms | 3.10 ms | 4000 |
| 100000 idle sockets | 126 ms | 5.0 ms | 3.30 ms | 3998 |

Each check's reset reaches the server's accepted socket in softirq, where the task is not its owner: tcperr looks for the owner in `/proc`. With idle sockets over without: start-up 1.05, steady CPU 1.06.

## Targets

| target | measured | |
| --- | --- | --- |
| hot-path programs within 10 % of the floor | 1.02 (slowest) | met |
| request/response ≥ 0.98 of untraced | 1.016 | met |
| RST storm ≥ 0.90 of untraced | 0.90 | met |
| serve: request/response ≥ 0.98 of untraced | n/a | **missed** |
| serve: RST storm ≥ 0.90 of untraced | 0.00 | **missed** |
| no lost events at the default buffer | 0 lost | met |
| storm: events seen + lost = what the generators caused | 5.00 per connection (5 caused) | met |
| tracer CPU per connection ≤ ½ of bpftrace's | 0.03 | met |
| ≥ 1,000,000 events/s decoded and correlated | 1441001 | met |
| ≥ 300,000 events/s as JSON | 1009659 | met |
| ready ≤ 300 ms | 88 ms | met |
| peak RSS ≤ 30 MB under the storm | 12.9 MB | met |
| health checks: tracer CPU with 100,000 idle sockets ≤ 1.5× without | 1.06 | met |
| ready with 100,000 idle sockets ≤ 1.5× without | 1.05 | met |
"#;

    #[test]
    fn the_results_render_as_the_report_did_before_the_sections_were_typed() {
        assert_eq!(markdown(&latest()), LATEST);
    }

    #[test]
    fn the_rows_without_the_drop_hooks_are_shown_with_what_they_measure() {
        let mut r = latest();
        r.throughput.modes.insert(2, rate(Mode::TcperrNoDrops, 19600.0, 1.02, &[0.9, 1.1]));
        r.storm.modes.insert(2, storm_mode(StormMode::TcperrNoDrops, 61000.0, 0.92, &[0.9], None));
        let md = markdown(&r);
        assert!(md.contains("| tcperr --no-drops | 19600 | 1.020 | 0.90–1.10 |"), "{md}");
        assert!(md.contains("| tcperr --no-drops | 61000 | 0.920 |"), "{md}");
        assert_eq!(md.matches("*tcperr --no-drops*: without the hooks").count(), 2, "{md}");
        assert!(!markdown(&latest()).contains("--no-drops"));
    }

    #[test]
    fn a_smoke_run_says_so_and_has_no_targets() {
        let md = markdown(&Results { smoke: true, ..latest() });
        let full = LATEST.replacen("benchmark", "benchmark (smoke run: no targets)", 1);
        assert_eq!(md, full[..full.find("\n## Targets").unwrap()]);
    }

    #[test]
    fn without_tcperr_counts_the_count_targets_are_missed() {
        let mut r = latest();
        r.storm.modes[1].tracer.as_mut().unwrap().counted = None;
        let md = markdown(&r);
        assert!(md.contains("| no lost events at the default buffer | n/a | **missed** |"), "{md}");
        assert!(md.contains(
            "| storm: events seen + lost = what the generators caused | 0.00 per connection (5 caused) | **missed** |"
        ));
        assert!(md.contains("| tcperr | 60003 | 0.903 | 0.89–0.95 | 0.0077 | 2640 |  | 12.9 MB |"));
    }

    #[test]
    fn lost_records_count_for_up_to_two_events_each() {
        let mut r = latest();
        let counted = &mut r.storm.modes[1].tracer.as_mut().unwrap().counted;
        // 1,000 connections: 4,900 seen and 50 lost add up (50 lost RSTs carrying their CLOSE).
        *counted = Some(Counted { seen: 4_900, lost: 50, connections: 1_000 });
        let md = markdown(&r);
        assert!(md.contains("| no lost events at the default buffer | 50 lost | **missed** |"));
        assert!(md.contains(
            "| storm: events seen + lost = what the generators caused | 4.95 per connection (5 caused) | met |"
        ));
    }
}
