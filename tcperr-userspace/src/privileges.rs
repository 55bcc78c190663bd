//! The privileges tracing needs: CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN).
use crate::load::StartError;

/// Effective capabilities of this process (CapEff in /proc/self/status).
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

const CAP_SYS_ADMIN: u64 = 1 << 21;
const CAP_PERFMON: u64 = 1 << 38;
const CAP_BPF: u64 = 1 << 39;

/// Checks the privileges tracing needs: CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN).
pub fn check_privileges() -> Result<(), StartError> {
    let caps = effective_caps();
    if caps & CAP_SYS_ADMIN != 0 || caps & (CAP_BPF | CAP_PERFMON) == CAP_BPF | CAP_PERFMON {
        return Ok(());
    }
    let mut missing = Vec::new();
    if caps & CAP_BPF == 0 {
        missing.push("CAP_BPF");
    }
    if caps & CAP_PERFMON == 0 {
        missing.push("CAP_PERFMON");
    }
    Err(StartError(format!(
        "missing privilege {} (or CAP_SYS_ADMIN on kernels before 5.8): run as root, e.g. `sudo tcperr trace`",
        missing.join(" and ")
    )))
}
