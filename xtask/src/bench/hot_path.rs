//! §1: the in-kernel cost per socket call on the success path, from the kernel's own bpf_stats,
//! of tcperr's programs and bpftrace's next to a floor (an empty program on the same hooks).
use std::{collections::BTreeMap, path::Path, process::Command, time::Duration};

use serde_json::Value;
use tcperr_scenarios::{drive, load};

use super::{Sizes, median, process::Launch};

/// Who holds the programs measured in a turn: each alone on the hooks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// This process, with the floor's empty programs.
    Floor,
    Tcperr,
    Bpftrace,
}

/// The order of the holders in each round (which goes first rotates).
pub const ORDERS: [[Holder; 3]; 3] = {
    use Holder::*;
    [[Floor, Tcperr, Bpftrace], [Tcperr, Bpftrace, Floor], [Bpftrace, Floor, Tcperr]]
};

/// The programs measured: each holder's on the send and receive paths.
const HOT: [&str; 4] = ["sock_send_len", "sock_recv_len", "tcp_sendmsg", "tcp_recvmsg"];

pub struct HotPath {
    /// Ping-pong round trips per turn.
    pub round_trips: u64,
    pub rounds: usize,
    /// By name.
    pub programs: Vec<Program>,
}

pub struct Program {
    /// The program's name (as the kernel keeps it), bpftrace's prefixed with "bpftrace ".
    pub name: String,
    pub holder: Holder,
    /// Over all rounds.
    pub ns_per_run: f64,
    pub runs: u64,
    /// Per round, its ns/run over the floor's on the same hook in the same round.
    pub per_round: Vec<f64>,
    /// The median of `per_round`.
    pub ratio: f64,
}

impl HotPath {
    /// The ratio to the floor of tcperr's slowest program (0 without any).
    pub fn slowest_tcperr(&self) -> f64 {
        let tcperr = self.programs.iter().filter(|p| p.holder == Holder::Tcperr);
        tcperr.map(|p| p.ratio).fold(0.0, f64::max)
    }
}

/// `kernel.bpf_stats_enabled` while it lives (§1 only: the timing it adds to every program run
/// would be charged to the tracers in the throughput and storm measurements).
struct BpfStats(String);

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn enable() -> Result<Self, String> {
        let before = std::fs::read_to_string(BPF_STATS).unwrap_or_default();
        std::fs::write(BPF_STATS, "1").map_err(|e| format!("enabling bpf stats: {e}"))?;
        Ok(Self(before.trim().to_owned()))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, if self.0.is_empty() { "0" } else { &self.0 });
    }
}

/// A program's measurements summed over the rounds.
struct Samples {
    holder: Holder,
    /// ns/run in each round.
    per_round: Vec<f64>,
    total_ns: f64,
    runs: u64,
}

/// Each of floor, tcperr and bpftrace alone on the hooks in turn, all three in every round
/// (which goes first rotates), and a program's ratio is the median over the rounds of its
/// ns/run over the floor's in the same round, as in §2 and §3. (All three attached together,
/// as this did before, every program's cost depended on its place on the hook: the first after
/// the kernel's own code paid for the cold caches and the next ran warm. A program of tcperr's
/// exact shape, always attached just after the floor, measured 0.92 of it while tcperr's
/// measured 1.05 in the same rounds.)
pub fn run(s: &Sizes, bin: &Path, bpftrace: bool) -> Result<HotPath, String> {
    eprintln!("==> bench: hot-path cost (bpf_stats, {} round trips)", s.pingpong_rounds);
    let mut samples: BTreeMap<String, Samples> = BTreeMap::new();
    let stats = BpfStats::enable()?;
    for order in ORDERS.iter().cycle().take(s.hot_path_rounds) {
        for &holder in order.iter().filter(|&&h| bpftrace || h != Holder::Bpftrace) {
            for (name, ns, runs) in turn(holder, bin, s.pingpong_rounds)? {
                let e = samples.entry(name).or_insert(Samples {
                    holder,
                    per_round: Vec::new(),
                    total_ns: 0.0,
                    runs: 0,
                });
                e.per_round.push(ns);
                e.total_ns += ns * runs as f64;
                e.runs += runs;
            }
        }
    }
    drop(stats);
    Ok(HotPath {
        round_trips: s.pingpong_rounds,
        rounds: s.hot_path_rounds,
        programs: against_floor(samples),
    })
}

/// One holder's turn on the hooks: ns/run and runs of each of its programs.
fn turn(holder: Holder, bin: &Path, round_trips: u64) -> Result<Vec<(String, f64, u64)>, String> {
    match holder {
        Holder::Floor => {
            let _floor = tcperr_userspace::load::attach_floor()?;
            let names = [&HOT[..], &["floor_sock"]].concat();
            cost(std::process::id(), "", &names, round_trips)
        }
        Holder::Tcperr => {
            let t = Launch::tcperr(bin, &["--json"]).spawn()?;
            let cost = cost(t.pid(), "", &HOT, round_trips);
            t.stop();
            cost
        }
        Holder::Bpftrace => {
            let b = Launch::bpftrace().spawn()?;
            let cost = cost(b.pid(), "bpftrace ", &HOT, round_trips);
            b.stop();
            cost
        }
    }
}

/// Each program's ratio to the floor's program on the same hook, round by round.
fn against_floor(samples: BTreeMap<String, Samples>) -> Vec<Program> {
    let floor_of = |hook: &str| {
        samples
            .iter()
            .find(|(n, s)| s.holder == Holder::Floor && n.contains(hook))
            .map(|(_, s)| s.per_round.clone())
            .unwrap_or_default()
    };
    let mut programs = Vec::new();
    for (name, s) in &samples {
        let floor = floor_of(if name.contains("send") { "send" } else { "recv" });
        let per_round: Vec<f64> = s.per_round.iter().zip(&floor).map(|(n, f)| n / f).collect();
        programs.push(Program {
            name: name.clone(),
            holder: s.holder,
            ns_per_run: s.total_ns / s.runs.max(1) as f64,
            runs: s.runs,
            ratio: median(&mut per_round.clone()),
            per_round,
        });
    }
    programs
}

/// Drives the ping-pong and returns (name, ns/run, runs) of each program of `pid` whose name
/// contains one of `names`, by name, each name prefixed with `prefix`.
fn cost(
    pid: u32,
    prefix: &str,
    names: &[&str],
    round_trips: u64,
) -> Result<Vec<(String, f64, u64)>, String> {
    let ids = drive::prog_ids(pid);
    let before = prog_stats(&ids);
    load::ping_pong(round_trips, Duration::from_secs(600)).map_err(|e| e.to_string())?;
    let after = prog_stats(&ids);
    let mut out = Vec::new();
    for id in ids {
        let Some((name, t1, c1)) = after.get(&id) else { continue };
        if !names.iter().any(|n| name.contains(n)) {
            continue;
        }
        let (_, t0, c0) = before.get(&id).cloned().unwrap_or_default();
        let runs = c1.saturating_sub(c0);
        if runs > 0 {
            out.push((format!("{prefix}{name}"), (t1 - t0) as f64 / runs as f64, runs));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// run_time_ns and run_cnt of each program id, from bpftool.
fn prog_stats(ids: &[u32]) -> BTreeMap<u32, (String, u64, u64)> {
    ids.iter()
        .filter_map(|id| {
            let out = Command::new("bpftool")
                .args(["prog", "show", "id", &id.to_string(), "--json"])
                .output()
                .ok()?;
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            Some((
                *id,
                (
                    v["name"].as_str().unwrap_or("?").to_owned(),
                    v["run_time_ns"].as_u64().unwrap_or(0),
                    v["run_cnt"].as_u64().unwrap_or(0),
                ),
            ))
        })
        .collect()
}
