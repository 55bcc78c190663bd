//! §3: an RST storm (two generators connecting and aborting as fast as they can) untraced and
//! under each tracer, in interleaved rounds: the connection rate, the tracer's CPU, lines,
//! counts and memory.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use serde_json::Value;
use tcperr_scenarios::{drive, storm};

use super::{
    Sizes, median,
    process::{Launch, Tracer, clock_ticks},
};

/// Events tcperr reports per storm connection: the connect, the abort's move to CLOSE, the RST
/// sent, the RST received and the failed read.
pub const EVENTS_PER_CONNECTION: u64 = 5;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum StormMode {
    Untraced,
    Tcperr,
    /// `tcperr --every`.
    TcperrEvery,
    /// `tcperr --no-drops`: without the hooks on freed packets, whose cost the difference from
    /// `Tcperr` is.
    TcperrNoDrops,
    /// tcperr's programs alone (`Config::discard_records`), in this process.
    Discarded,
    /// `tcperr serve`: metrics, the journal written, scraped once a second.
    Serve,
    Bpftrace,
}

impl StormMode {
    pub fn label(self) -> &'static str {
        match self {
            Self::Untraced => "untraced",
            Self::Tcperr => "tcperr",
            Self::TcperrEvery => "tcperr --every",
            Self::TcperrNoDrops => "tcperr --no-drops",
            Self::Discarded => "records discarded in the kernel",
            Self::Serve => "tcperr serve (journal, scraped 1/s)",
            Self::Bpftrace => "bpftrace",
        }
    }

    /// Whether a tracer process runs (whose CPU, lines and memory are measured).
    pub fn has_process(self) -> bool {
        matches!(
            self,
            Self::Tcperr | Self::TcperrEvery | Self::TcperrNoDrops | Self::Serve | Self::Bpftrace
        )
    }

    /// Whether that process is tcperr.
    pub fn is_tcperr(self) -> bool {
        matches!(self, Self::Tcperr | Self::TcperrEvery | Self::TcperrNoDrops | Self::Serve)
    }

    /// Starts its tracer process, its lines going to `out`.
    fn start(self, bin: &Path, out: &Path) -> Result<Option<Tracer>, String> {
        let launch = match self {
            Self::Tcperr => Launch::tcperr(bin, &["--json"]),
            Self::TcperrEvery => Launch::tcperr(bin, &["--every", "--json"]),
            Self::TcperrNoDrops => Launch::tcperr(bin, &["--no-drops", "--json"]),
            Self::Bpftrace => Launch::bpftrace(),
            Self::Serve => {
                return Ok(Some(
                    Launch::serve(bin, &super::journal_dir()).spawn()?.scrape_every_second(),
                ));
            }
            Self::Untraced | Self::Discarded => return Ok(None),
        };
        let out = std::fs::File::create(out).map_err(|e| e.to_string())?;
        Ok(Some(launch.stdout(out).spawn()?))
    }
}

pub struct Storm {
    pub rounds: usize,
    /// Per mode per round.
    pub secs: f64,
    /// In the order of the first round, untraced first.
    pub modes: Vec<ModeRuns>,
}

/// A mode's rounds.
pub struct ModeRuns {
    pub mode: StormMode,
    /// Connections/s, the median of the rounds.
    pub median_rate: f64,
    /// Per round, its rate over untraced's in the same round.
    pub ratios: Vec<f64>,
    /// The median of `ratios`.
    pub ratio: f64,
    /// The tracer process's measures, where one runs.
    pub tracer: Option<TracerCost>,
}

pub struct TracerCost {
    /// Its CPU time (user + system) per 10,000 connections.
    pub cpu_per_10k: f64,
    /// Lines it printed.
    pub lines: u64,
    /// tcperr's own count (none from bpftrace, or when a round's tcperr printed no stats).
    pub counted: Option<Counted>,
    /// The highest resident memory sampled during the rounds.
    pub peak_rss_kib: u64,
}

/// tcperr's count of records seen and lost over the rounds, and the connections made.
#[derive(Clone, Copy)]
pub struct Counted {
    pub seen: u64,
    pub lost: u64,
    pub connections: u64,
}

impl Counted {
    /// Events per connection: each causes [`EVENTS_PER_CONNECTION`]; the host's other traffic
    /// during the run adds a few. (Lost counts records: a lost RST record that carried a move
    /// to CLOSE would count one for two events.)
    pub fn per_connection(&self) -> f64 {
        (self.seen + self.lost) as f64 / self.connections.max(1) as f64
    }
}

impl Storm {
    pub fn mode(&self, mode: StormMode) -> Option<&ModeRuns> {
        self.modes.iter().find(|m| m.mode == mode)
    }

    pub fn tracer(&self, mode: StormMode) -> Option<&TracerCost> {
        self.mode(mode)?.tracer.as_ref()
    }
}

/// Interleaved rounds (the connection rate alone moves ±5 % run to run here).
pub fn run(s: &Sizes, bin: &Path, bpftrace: bool) -> Result<Storm, String> {
    use StormMode::*;
    let modes: &[StormMode] = if bpftrace {
        &[Untraced, Tcperr, TcperrEvery, TcperrNoDrops, Serve, Discarded, Bpftrace]
    } else {
        &[Untraced, Tcperr, TcperrEvery, TcperrNoDrops, Serve, Discarded]
    };
    eprintln!(
        "==> bench: RST storm ({} interleaved rounds of {:.0} s per mode)",
        s.storm_rounds, s.storm_secs
    );
    // runs[mode][round]
    let mut runs: Vec<Vec<Run>> = modes.iter().map(|_| Vec::new()).collect();
    for round in 0..s.storm_rounds {
        // Each round starts at another mode, so that no mode always follows the same one.
        for i in 0..modes.len() {
            let m = (round + i) % modes.len();
            runs[m].push(once(modes[m], bin, s.storm_secs)?);
        }
    }
    // (modes[0] is untraced)
    let untraced: Vec<f64> = runs[0].iter().map(|r| r.rate).collect();
    let modes = modes.iter().zip(&runs).map(|(&mode, rs)| summarize(mode, rs, &untraced));
    Ok(Storm { rounds: s.storm_rounds, secs: s.storm_secs, modes: modes.collect() })
}

/// A mode's rounds summed up, against untraced's rates in the same rounds.
fn summarize(mode: StormMode, rs: &[Run], untraced: &[f64]) -> ModeRuns {
    let ratios: Vec<f64> = rs.iter().zip(untraced).map(|(r, u)| r.rate / u).collect();
    let tracer = mode.has_process().then(|| {
        let connections: u64 = rs.iter().map(|r| r.connections).sum();
        let counted = rs.iter().map(|r| r.seen_lost).collect::<Option<Vec<_>>>().map(|v| {
            let (seen, lost) = v.iter().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            Counted { seen, lost, connections }
        });
        TracerCost {
            cpu_per_10k: rs.iter().map(|r| r.cpu_secs).sum::<f64>() / (connections as f64 / 1e4),
            lines: rs.iter().map(|r| r.lines).sum(),
            counted,
            peak_rss_kib: rs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0),
        }
    });
    ModeRuns {
        mode,
        median_rate: median(&mut rs.iter().map(|r| r.rate).collect::<Vec<_>>()),
        ratio: median(&mut ratios.clone()),
        ratios,
        tracer,
    }
}

/// One mode's turn in the storm.
#[derive(Default)]
struct Run {
    connections: u64,
    rate: f64,
    /// The tracer's CPU time (user + system).
    cpu_secs: f64,
    /// Lines the tracer printed.
    lines: u64,
    /// tcperr's own count of records seen and lost.
    seen_lost: Option<(u64, u64)>,
    /// Resident memory sampled during the storm (VmHWM would include start-up, where the
    /// kernel BTF is parsed and freed).
    peak_rss_kib: u64,
}

/// Runs the storm once under `mode`.
fn once(mode: StormMode, bin: &Path, secs: f64) -> Result<Run, String> {
    if mode == StormMode::Discarded {
        let config = tcperr_userspace::load::Config { discard_records: true, ..Default::default() };
        let tracer = tcperr_userspace::load::Tracer::start(&config).map_err(|e| e.0)?;
        let (connections, rate) = timed_storm(Instant::now(), secs);
        drop(tracer);
        return Ok(Run { connections, rate, ..Run::default() });
    }
    // The tracers write their lines to a file, as an operator would redirect them: the
    // harness spends nothing reading them during the storm.
    let out_file = std::env::temp_dir().join("tcperr-bench-storm.out");
    let tracer = mode.start(bin, &out_file)?;
    let cpu0 = tracer.as_ref().map_or(0, |t| drive::cpu_ticks(t.pid()));
    let t0 = Instant::now();
    let sampler = tracer.as_ref().map(|t| sample_rss(t.pid(), secs));
    let (connections, rate) = timed_storm(t0, secs);
    let peak_rss_kib = sampler.and_then(|h| h.join().ok()).unwrap_or(0);
    let mut run = Run { connections, rate, peak_rss_kib, ..Run::default() };
    if let Some(t) = tracer {
        std::thread::sleep(Duration::from_millis(500)); // let it drain
        run.cpu_secs = (drive::cpu_ticks(t.pid()) - cpu0) as f64 / clock_ticks();
        let said = t.stop();
        if mode == StormMode::Serve {
            // (its lines are the journal's; its counts end its log)
            run.lines = journal_lines(&super::journal_dir());
            run.seen_lost = said.iter().find_map(|l| serve_counts(l));
            let _ = std::fs::remove_dir_all(super::journal_dir());
        } else {
            let out = std::fs::read_to_string(&out_file).unwrap_or_default();
            run.lines = out.lines().count() as u64;
            if mode.is_tcperr() {
                let stats = last_stats(&out);
                run.lines -= u64::from(stats.is_some());
                let num = |name: &str| stats.as_ref()?[name].as_u64();
                run.seen_lost = num("events_seen").zip(num("lost"));
            }
        }
    }
    let _ = std::fs::remove_file(&out_file);
    // The lines written are flushed to disk now, not during the next mode's storm.
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    Ok(run)
}

/// The storm for `secs`: connections made and their rate since `t0`.
fn timed_storm(t0: Instant, secs: f64) -> (u64, f64) {
    let (st, _) = storm::run(2, Duration::from_secs_f64(secs));
    (st.connections, st.connections as f64 / t0.elapsed().as_secs_f64())
}

/// The highest resident memory of `pid` sampled every 100 ms for `secs`.
fn sample_rss(pid: u32, secs: f64) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        let end = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < end {
            peak = peak.max(drive::status_kib(pid, "VmRSS"));
            std::thread::sleep(Duration::from_millis(100));
        }
        peak
    })
}

/// The lines of every file in the journal directory `dir`.
fn journal_lines(dir: &Path) -> u64 {
    let files = std::fs::read_dir(dir).into_iter().flatten().flatten();
    files
        .filter_map(|f| std::fs::read(f.path()).ok())
        .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
        .sum()
}

/// The events seen and lost of `tcperr serve`'s last log line ("stopped: N events seen, M
/// lost, ...").
fn serve_counts(line: &str) -> Option<(u64, u64)> {
    let rest = line.split("stopped: ").nth(1)?;
    let mut words = rest.split_whitespace();
    let seen = words.next()?.parse().ok()?;
    let lost = words.nth(2)?.trim_end_matches(',').parse().ok()?;
    Some((seen, lost))
}

/// The last line of `tcperr trace --json`'s output, `{"kind": "stats", ...}`, if it is that.
fn last_stats(out: &str) -> Option<Value> {
    let stats = out.lines().next_back().and_then(|l| serde_json::from_str::<Value>(l).ok());
    stats.filter(|s| s["kind"] == "stats")
}
