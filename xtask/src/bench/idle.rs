//! §6: attribution on a busy host. A health checker connects to a service and resets, 200 times
//! a second; each reset reaches the server's accepted socket in softirq, so tcperr must find
//! that socket's owner in `/proc`. tcperr's start-up and CPU, with and without 100,000 idle
//! loopback sockets held by other processes, in interleaved rounds: what attribution costs must
//! not grow with sockets it has nothing to do with.
//!
//! The service starts before tcperr, as on a host where the agent arrives last: tcperr learns
//! nothing of it at `listen()`.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use tcperr_scenarios::{drive, health_check, idle::IdleSockets};

use super::{Sizes, median, process::Launch};

/// Health checks a second.
pub const CHECKS_PER_SEC: f64 = 200.0;

pub struct Idle {
    /// Idle sockets held in the rounds with them.
    pub sockets: usize,
    /// Processes holding them (each at most its `RLIMIT_NOFILE` hard limit).
    pub holders: usize,
    pub rounds: usize,
    /// The first part of each round's checks (tcperr first meets the service), then the rest.
    pub first_secs: f64,
    pub secs: f64,
    pub without: Case,
    pub with: Case,
}

/// One case (with or without the idle sockets) over the rounds: medians.
pub struct Case {
    /// Start → attached and ready.
    pub ready_ms: f64,
    /// tcperr's CPU over the first part of the checks, in ms.
    pub first_cpu_ms: f64,
    /// tcperr's CPU per second of checks after that, in ms.
    pub steady_cpu_ms_per_s: f64,
    /// Checks made, over all rounds.
    pub checks: u64,
}

impl Idle {
    /// With over without, steady CPU.
    pub fn cpu_ratio(&self) -> f64 {
        self.with.steady_cpu_ms_per_s / self.without.steady_cpu_ms_per_s.max(f64::MIN_POSITIVE)
    }

    /// With over without, start-up.
    pub fn ready_ratio(&self) -> f64 {
        self.with.ready_ms / self.without.ready_ms.max(f64::MIN_POSITIVE)
    }
}

/// One round of one case.
struct Round {
    ready_ms: f64,
    first_cpu_ms: f64,
    steady_cpu_ms_per_s: f64,
    checks: u64,
}

pub fn run(s: &Sizes, bin: &Path) -> Result<Idle, String> {
    eprintln!(
        "==> bench: health checks with and without {} idle sockets ({} interleaved rounds)",
        2 * s.idle_connections,
        s.idle_rounds
    );
    let (mut without, mut with) = (Vec::new(), Vec::new());
    let mut holders = 0;
    for round in 0..s.idle_rounds {
        // Each round starts with the other case.
        for idle in [round % 2 == 1, round % 2 == 0] {
            let sockets = if idle {
                let open = IdleSockets::open(s.idle_connections)
                    .map_err(|e| format!("idle sockets: {e}"))?;
                holders = open.pids.len();
                Some(open)
            } else {
                None
            };
            let r = once(s, bin)?;
            drop(sockets);
            if idle { with.push(r) } else { without.push(r) }
        }
    }
    Ok(Idle {
        sockets: 2 * s.idle_connections,
        holders,
        rounds: s.idle_rounds,
        first_secs: s.idle_first_secs,
        secs: s.idle_secs,
        without: summarize(&without),
        with: summarize(&with),
    })
}

fn summarize(rounds: &[Round]) -> Case {
    let m = |f: fn(&Round) -> f64| median(&mut rounds.iter().map(f).collect::<Vec<_>>());
    Case {
        ready_ms: m(|r| r.ready_ms),
        first_cpu_ms: m(|r| r.first_cpu_ms),
        steady_cpu_ms_per_s: m(|r| r.steady_cpu_ms_per_s),
        checks: rounds.iter().map(|r| r.checks).sum(),
    }
}

/// The service, then tcperr, then the checks: the first part, then the rest.
fn once(s: &Sizes, bin: &Path) -> Result<Round, String> {
    let server = health_check::HealthServer::start().map_err(|e| format!("service: {e}"))?;
    let out = std::env::temp_dir().join("tcperr-bench-idle.out");
    let file = std::fs::File::create(&out).map_err(|e| e.to_string())?;
    let tracer = Launch::tcperr(bin, &["--json"]).stdout(file).spawn()?;
    let ready_ms = tracer.ready_after.as_secs_f64() * 1000.0;
    let hold = Duration::from_millis(1);
    let cpu0 = drive::cpu_ns(tracer.pid());
    let first = health_check::check(server.addr, CHECKS_PER_SEC, hold, secs(s.idle_first_secs));
    let cpu1 = drive::cpu_ns(tracer.pid());
    let t = Instant::now();
    let rest = health_check::check(server.addr, CHECKS_PER_SEC, hold, secs(s.idle_secs));
    std::thread::sleep(Duration::from_millis(300)); // let it drain
    let cpu2 = drive::cpu_ns(tracer.pid());
    let elapsed = t.elapsed().as_secs_f64();
    tracer.stop();
    let _ = std::fs::remove_file(&out);
    Ok(Round {
        ready_ms,
        first_cpu_ms: cpu1.saturating_sub(cpu0) as f64 / 1e6,
        steady_cpu_ms_per_s: cpu2.saturating_sub(cpu1) as f64 / 1e6 / elapsed,
        checks: first.made + rest.made,
    })
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}
