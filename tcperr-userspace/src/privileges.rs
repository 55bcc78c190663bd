//! The privileges tracing needs: CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN).
use crate::load::StartError;

/// Effective capabilities of this process, from capget(2): no dependence on /proc, which may
/// be hidden (0 if the call fails).
fn effective_caps() -> u64 {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // _LINUX_CAPABILITY_VERSION_3: 64 capabilities in two words.
    let mut header = Header { version: 0x2008_0522, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two `Data` for version 3, into our array.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    u64::from(data[0].effective) | (u64::from(data[1].effective) << 32)
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
