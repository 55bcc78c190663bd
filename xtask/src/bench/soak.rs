//! `cargo xtask soak [--minutes N]`: tcperr under the RST storm for N minutes (default 10),
//! printing its resident memory and CPU every 10 s, then its final counts. Memory must stay
//! flat: per-socket state is evicted and capped.
use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use tcperr_scenarios::{drive, storm};

use super::process::{Launch, build_release_tcperr, clock_ticks};

pub fn soak(minutes: f64) -> Result<bool, String> {
    let t = Launch::tcperr(&build_release_tcperr()?, &["--json"]).stdout(Stdio::null()).spawn()?;
    let ticks = clock_ticks();
    let end = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let start = Instant::now();
    let (mut conns, mut first_rss, mut max_rss) = (0u64, 0u64, 0u64);
    println!("{:>8} {:>12} {:>10} {:>12}", "time s", "connections", "RSS MB", "CPU s");
    while Instant::now() < end {
        let (st, _) = storm::run(2, Duration::from_secs(10));
        conns += st.connections;
        let rss = drive::status_kib(t.pid(), "VmRSS");
        if first_rss == 0 {
            first_rss = rss;
        }
        max_rss = max_rss.max(rss);
        let cpu = drive::cpu_ticks(t.pid()) as f64 / ticks;
        println!(
            "{:>8.0} {conns:>12} {:>10.1} {cpu:>12.1}",
            start.elapsed().as_secs_f64(),
            rss as f64 / 1024.0
        );
    }
    let lines = t.stop();
    for l in lines.iter().filter(|l| l.contains("events seen")) {
        println!("{l}");
    }
    let flat = max_rss <= first_rss * 2;
    println!(
        "RSS after the first 10 s {:.1} MB, at most {:.1} MB: {}",
        first_rss as f64 / 1024.0,
        max_rss as f64 / 1024.0,
        if flat { "bounded" } else { "GROWING" }
    );
    Ok(flat)
}
