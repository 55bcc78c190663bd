//! §2: request/response throughput (a 1-byte ping-pong) untraced, under tcperr and under
//! bpftrace, in interleaved rounds.
use std::{path::Path, time::Duration};

use tcperr_scenarios::load;

use super::{
    Sizes, median,
    process::{Launch, Tracer},
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Untraced,
    Tcperr,
    /// `tcperr --no-drops`: without the hooks on freed packets (`kfree_skb`, `consume_skb`),
    /// whose cost the difference from `Tcperr` is.
    TcperrNoDrops,
    /// `tcperr serve`, journaling, scraped once a second.
    Serve,
    Bpftrace,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Self::Untraced => "untraced",
            Self::Tcperr => "tcperr",
            Self::TcperrNoDrops => "tcperr --no-drops",
            Self::Serve => "tcperr serve",
            Self::Bpftrace => "bpftrace",
        }
    }

    fn start(self, bin: &Path) -> Result<Option<Tracer>, String> {
        Ok(match self {
            Self::Untraced => None,
            Self::Tcperr => Some(Launch::tcperr(bin, &["--json"]).spawn()?),
            Self::TcperrNoDrops => Some(Launch::tcperr(bin, &["--no-drops", "--json"]).spawn()?),
            Self::Serve => {
                Some(Launch::serve(bin, &super::journal_dir()).spawn()?.scrape_every_second())
            }
            Self::Bpftrace => Some(Launch::bpftrace().spawn()?),
        })
    }
}

pub struct Throughput {
    pub rounds: usize,
    /// Per mode per round.
    pub secs: f64,
    /// In the order measured, untraced first.
    pub modes: Vec<ModeRate>,
}

pub struct ModeRate {
    pub mode: Mode,
    /// Round trips/s, the median of the rounds.
    pub median_rate: f64,
    /// Per round, its rate over untraced's in the same round (untraced: none).
    pub pairs: Vec<f64>,
    /// The median of `pairs` (untraced: 1).
    pub ratio: f64,
}

impl Throughput {
    pub fn ratio(&self, mode: Mode) -> Option<f64> {
        self.modes.iter().find(|m| m.mode == mode).map(|m| m.ratio)
    }
}

pub fn run(s: &Sizes, bin: &Path, bpftrace: bool) -> Result<Throughput, String> {
    eprintln!(
        "==> bench: request/response throughput ({} interleaved rounds)",
        s.throughput_rounds
    );
    let modes: &[Mode] = if bpftrace {
        &[Mode::Untraced, Mode::Tcperr, Mode::TcperrNoDrops, Mode::Serve, Mode::Bpftrace]
    } else {
        &[Mode::Untraced, Mode::Tcperr, Mode::TcperrNoDrops, Mode::Serve]
    };
    // rates[mode][round]
    let mut rates = vec![Vec::new(); modes.len()];
    for _ in 0..s.throughput_rounds {
        for (mode, rates) in modes.iter().zip(&mut rates) {
            let tracer = mode.start(bin)?;
            let (n, el) = load::ping_pong(u64::MAX, Duration::from_secs_f64(s.throughput_secs))
                .map_err(|e| e.to_string())?;
            rates.push(n as f64 / el.as_secs_f64());
            if let Some(t) = tracer {
                t.stop();
            }
            let _ = std::fs::remove_dir_all(super::journal_dir());
        }
    }
    let untraced = rates[0].clone();
    let modes = modes.iter().zip(rates).map(|(&mode, mut rates)| {
        let (pairs, ratio) = if mode == Mode::Untraced {
            (Vec::new(), 1.0)
        } else {
            let pairs: Vec<f64> = rates.iter().zip(&untraced).map(|(r, u)| r / u).collect();
            let ratio = median(&mut pairs.clone());
            (pairs, ratio)
        };
        ModeRate { mode, median_rate: median(&mut rates), pairs, ratio }
    });
    Ok(Throughput { rounds: s.throughput_rounds, secs: s.throughput_secs, modes: modes.collect() })
}
