//! `tcperr check`: what this kernel offers and which hook will serve each event source,
//! established the only reliable way: by loading and attaching, then detaching at once.
//! Exit 0 when tracing can run, 2 when it cannot (with why).
use std::io::Write;

use crate::{
    load::{Config, StartError, Tracer},
    privileges,
};

pub fn run(config: &Config, out: &mut impl Write) -> Result<(), StartError> {
    let io = |e: std::io::Error| StartError(e.to_string());
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    writeln!(out, "kernel:      {}", release.trim()).map_err(io)?;
    let privileges = privileges::check_privileges();
    writeln!(
        out,
        "privileges:  {}",
        privileges.as_ref().map_or_else(
            |e| e.to_string(),
            |()| "ok (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)".into()
        )
    )
    .map_err(io)?;
    privileges?;
    let btf = std::path::Path::new("/sys/kernel/btf/vmlinux").exists();
    writeln!(out, "BTF:         {}", if btf { "/sys/kernel/btf/vmlinux" } else { "missing" })
        .map_err(io)?;
    let tracer = Tracer::start(config).inspect_err(|e| {
        let _ = writeln!(out, "tracing:     cannot run: {e}");
    })?;
    writeln!(out, "ring buffer: ok ({} bytes)", config.ringbuf_bytes).map_err(io)?;
    writeln!(
        out,
        "RST reasons: {}",
        if tracer.plan.rst_reasons.is_empty() {
            "not reported by this kernel (tcperr infers them)".to_owned()
        } else {
            format!("{} names (enum sk_rst_reason in kernel BTF)", tracer.plan.rst_reasons.len())
        }
    )
    .map_err(io)?;
    let tracefs = match &tracer.plan.tracefs {
        None => "not needed by the chosen hooks".to_owned(),
        Some(Ok(root)) => root.display().to_string(),
        Some(Err(e)) => format!("unavailable: {e}"),
    };
    writeln!(out, "tracefs:     {tracefs}").map_err(io)?;
    writeln!(out, "hooks:").map_err(io)?;
    for s in &tracer.selected {
        match s.hook {
            Some(h) => writeln!(out, "  {:<20} {}", s.source.name(), h.attach),
            None => writeln!(out, "  {:<20} OFF", s.source.name()),
        }
        .map_err(io)?;
        for why in &s.passed_over {
            writeln!(out, "  {:<20}   passed over: {why}", "").map_err(io)?;
        }
    }
    // A source this kernel has a hook for but that could not be loaded or attached: tracing
    // would run without it.
    let failed: Vec<&str> = tracer
        .selected
        .iter()
        .filter(|s| s.hook.is_none())
        .filter(|s| {
            s.passed_over.iter().any(|w| w.contains(": load: ") || w.contains(": attach: "))
        })
        .map(|s| s.source.name())
        .collect();
    drop(tracer);
    if !failed.is_empty() {
        let why = format!("{} could not be loaded or attached (above)", failed.join(", "));
        writeln!(out, "tracing:     cannot run fully: {why}").map_err(io)?;
        return Err(StartError(why));
    }
    writeln!(out, "tracing:     can run").map_err(io)?;
    Ok(())
}
