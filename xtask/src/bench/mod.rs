//! `cargo xtask bench`: tcperr's costs measured side by side with a floor and with bpftrace in
//! one run, printed as ratios (this machine is noisy: interleaved rounds, medians, spreads).
//! Results go to stdout and `bench/results/latest.md`. `--smoke`: seconds, no targets.
//!
//! Each section measures and returns its typed results (`hot_path` §1, `throughput` §2, `storm`
//! §3, `ceiling` §4, `startup` §5, `idle` §6); `render` turns them into the markdown, `targets`
//! holds what the full run is held to.
use std::process::Command;

mod ceiling;
mod hot_path;
mod idle;
mod process;
mod render;
mod soak;
mod startup;
mod storm;
mod targets;
mod throughput;

pub use soak::soak;

use crate::workspace_root;

pub struct Options {
    pub smoke: bool,
}

/// How long each section measures.
struct Sizes {
    /// §5: tcperr started this many times.
    startup_runs: usize,
    /// §1: rounds of floor, tcperr and bpftrace each alone on the hooks in turn.
    hot_path_rounds: usize,
    /// §1: ping-pong round trips per turn.
    pingpong_rounds: u64,
    /// §2: rounds, and seconds per mode per round.
    throughput_rounds: usize,
    throughput_secs: f64,
    /// §3: rounds, and seconds per mode per round.
    storm_rounds: usize,
    storm_secs: f64,
    /// §4: records in the synthetic stream.
    synthetic_events: usize,
    /// §6: idle connections (two sockets each), rounds, and seconds of health checks per case
    /// per round: a first part, then the part measured as the steady cost.
    idle_connections: usize,
    idle_rounds: usize,
    idle_first_secs: f64,
    idle_secs: f64,
}

impl Sizes {
    const SMOKE: Self = Self {
        startup_runs: 1,
        hot_path_rounds: 1,
        pingpong_rounds: 20_000,
        throughput_rounds: 1,
        throughput_secs: 0.3,
        storm_rounds: 1,
        storm_secs: 1.0,
        synthetic_events: 50_000,
        idle_connections: 2_000,
        idle_rounds: 1,
        idle_first_secs: 0.5,
        idle_secs: 1.0,
    };

    const FULL: Self = Self {
        startup_runs: 5,
        // four times each order
        hot_path_rounds: 4 * hot_path::ORDERS.len(),
        pingpong_rounds: 60_000,
        throughput_rounds: 15,
        throughput_secs: 1.5,
        storm_rounds: 10,
        storm_secs: 3.0,
        synthetic_events: 1_000_000,
        idle_connections: 50_000,
        idle_rounds: 4,
        idle_first_secs: 1.0,
        idle_secs: 4.0,
    };
}

/// All that one run measured.
struct Results {
    smoke: bool,
    /// When it started, and on what.
    date: String,
    machine: String,
    hot_path: hot_path::HotPath,
    throughput: throughput::Throughput,
    storm: storm::Storm,
    ceiling: ceiling::Ceiling,
    startup: startup::Startup,
    idle: idle::Idle,
}

impl Results {
    /// tcperr's peak resident memory during the storm, at the default settings.
    fn tcperr_storm_rss_kib(&self) -> u64 {
        self.storm.tracer(storm::StormMode::Tcperr).map_or(0, |t| t.peak_rss_kib)
    }
}

pub fn bench(o: &Options) -> Result<bool, String> {
    let s = if o.smoke { Sizes::SMOKE } else { Sizes::FULL };
    let root = workspace_root();
    let bin = process::build_release_tcperr()?;
    let have_bpftrace = Command::new("bpftrace").arg("--version").output().is_ok();
    if have_bpftrace {
        // bpftrace attaches its classic tracepoints through tracefs, which tcperr does not need.
        tcperr_userspace::tracefs::find_or_mount()
            .map_err(|e| format!("bpftrace needs tracefs: {e}"))?;
    }
    let (date, machine) = (date(), machine());
    // §5 measured first, on a quiet machine: after the storm the kernel is still catching up
    // with its writeback and a start-up measured then says more about that.
    let startup = startup::run(&s, &bin)?;
    let results = Results {
        smoke: o.smoke,
        date,
        machine,
        hot_path: hot_path::run(&s, &bin, have_bpftrace)?,
        throughput: throughput::run(&s, &bin, have_bpftrace)?,
        storm: storm::run(&s, &bin, have_bpftrace)?,
        ceiling: ceiling::run(&s),
        startup,
        idle: idle::run(&s, &bin)?,
    };
    let report = render::markdown(&results);
    print!("{report}");
    if !o.smoke {
        let dir = root.join("bench/results");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("latest.md"), &report).map_err(|e| e.to_string())?;
        eprintln!("==> bench: written to bench/results/latest.md");
    }
    Ok(true)
}

fn date() -> String {
    Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find_map(|l| l.strip_prefix("model name\t: ").map(str::to_owned)))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores ({cpu}), kernel {}", kernel.trim())
}

/// The median; of an even number of values, the mean of the middle two (the upper one alone,
/// as this took before, leant every ratio of 8 or 12 rounds upward).
/// Where `tcperr serve` journals during the bench (emptied after each run).
fn journal_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("tcperr-bench-journal")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_value() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&mut [1.0, 4.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }
}
