//! §5: tcperr's start-up: from its start to its programs attached and its saying it is ready.
use std::path::Path;

use super::{Sizes, median, process::Launch};

pub struct Startup {
    /// The median of the runs.
    pub ready_ms: f64,
}

pub fn run(s: &Sizes, bin: &Path) -> Result<Startup, String> {
    let mut ms = Vec::new();
    for _ in 0..s.startup_runs {
        let t = Launch::tcperr(bin, &["--json"]).spawn()?;
        ms.push(t.ready_after.as_secs_f64() * 1000.0);
        t.stop();
    }
    Ok(Startup { ready_ms: median(&mut ms) })
}
