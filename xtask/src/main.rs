//! `cargo xtask <task>`: the project's entry points beyond plain cargo.
//!
//! - `test`: the whole suite: formatting, lints, unit tests, the integration tests that load
//!   eBPF and make real TCP traffic (needs root), and the VM suite on the Debian kernels.
//! - `vm`: the reproduction scenarios inside QEMU guests (`vm.rs`).
use std::{
    path::PathBuf,
    process::{Command, ExitCode},
    time::Instant,
};

mod bench;
mod cpio;
mod package;
mod vm;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args(args).current_dir(workspace_root());
    c
}

/// The nightly that builds the eBPF crate: the same pin as `tcperr-userspace/build.rs` and
/// `./dev` (a test below keeps them equal).
const EBPF_TOOLCHAIN: &str = "nightly-2026-10-29";

/// clippy on the eBPF crate, which the workspace's default members leave out (it only builds
/// for bpfel-unknown-none).
fn ebpf_clippy() -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", EBPF_TOOLCHAIN, "cargo"])
        .args(["clippy", "--release", "--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args(["--target-dir", "../target/ebpf-clippy", "--", "-D", "warnings"])
        .current_dir(workspace_root().join("tcperr-ebpf"))
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN");
    c
}

fn step(name: &str, mut cmd: Command) -> bool {
    eprintln!("\n==> {name}: {cmd:?}");
    let t = Instant::now();
    let ok = cmd.status().is_ok_and(|s| s.success());
    eprintln!(
        "==> {name}: {} in {:.1}s",
        if ok { "ok" } else { "FAILED" },
        t.elapsed().as_secs_f64()
    );
    ok
}

fn test() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "xtask test: the integration tests load eBPF programs: run as root (sudo ./dev test)"
        );
        return false;
    }
    let t = Instant::now();
    let steps = [
        ("format", cargo(&["fmt", "--all", "--check"])),
        ("lints", cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])),
        ("eBPF lints", ebpf_clippy()),
        // Every test binary runs even when one fails (cargo's summary names each failed one).
        ("tests", cargo(&["test", "--no-fail-fast", "--", "--test-threads", "2"])),
        ("vm", cargo(&["xtask", "vm"])),
        ("package", cargo(&["xtask", "package", "--verify"])),
        ("bench smoke", cargo(&["xtask", "bench", "--smoke"])),
    ];
    let failed: Vec<&str> =
        steps.into_iter().filter_map(|(name, cmd)| (!step(name, cmd)).then_some(name)).collect();
    eprintln!(
        "\n==> suite {} in {:.1}s",
        if failed.is_empty() {
            "passed".to_owned()
        } else {
            format!("FAILED ({})", failed.join(", "))
        },
        t.elapsed().as_secs_f64()
    );
    failed.is_empty()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ok = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("bench") if args.iter().any(|a| a == "--vm") => {
            vm::bench_vm(args.iter().any(|a| a == "-v")).unwrap_or_else(|e| {
                eprintln!("xtask bench --vm: {e}");
                false
            })
        }
        Some("bench") => {
            let o = bench::Options { smoke: args.iter().any(|a| a == "--smoke") };
            match bench::bench(&o) {
                Ok(ok) => ok,
                Err(e) => {
                    eprintln!("xtask bench: {e}");
                    false
                }
            }
        }
        Some("package") => {
            package::package(args.iter().any(|a| a == "--verify")).unwrap_or_else(|e| {
                eprintln!("xtask package: {e}");
                false
            })
        }
        Some("soak") => {
            let minutes = args
                .iter()
                .position(|a| a == "--minutes")
                .and_then(|i| args.get(i + 1))
                .map_or(Ok(10.0), |m| m.parse::<f64>());
            match minutes {
                Err(_) => {
                    eprintln!("xtask soak: --minutes takes a number");
                    return ExitCode::from(2);
                }
                Ok(m) => bench::soak(m).unwrap_or_else(|e| {
                    eprintln!("xtask soak: {e}");
                    false
                }),
            }
        }
        Some("vm") => match vm::parse(&args[1..], tcperr_scenarios::ALL) {
            Err(e) => {
                eprintln!("xtask vm: {e}");
                return ExitCode::from(2);
            }
            Ok(o) => match vm::vm(&o) {
                Ok(ok) => ok,
                Err(e) => {
                    eprintln!("xtask vm: {e}");
                    false
                }
            },
        },
        _ => {
            eprintln!(
                "usage: cargo xtask test | cargo xtask vm [--arch A] [--kernel K] [--scenario S] [--hooks F] [-v] | cargo xtask bench [--smoke | --vm] | cargo xtask package [--verify] | cargo xtask soak [--minutes N]"
            );
            return ExitCode::from(2);
        }
    };
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pinned_nightly_is_the_same_everywhere() {
        let root = super::workspace_root();
        for file in ["tcperr-userspace/build.rs", "dev"] {
            let text = std::fs::read_to_string(root.join(file)).expect("read");
            assert!(text.contains(super::EBPF_TOOLCHAIN), "{file} pins another nightly");
        }
    }

    #[test]
    fn dev_makes_apt_know_the_vm_kernels() {
        let dev = std::fs::read_to_string(super::workspace_root().join("dev")).expect("read dev");
        // (the list may continue on the following lines, up to its closing parenthesis)
        let start = dev.find("\nVM_KERNEL_PACKAGES=(").expect("the list");
        let line = &dev[start + 1..];
        let line = &line[..line.find(')').expect("the end of the list")];
        let listed: Vec<&str> =
            line.trim_start_matches("VM_KERNEL_PACKAGES=(").split_whitespace().collect();
        for k in super::vm::KERNELS {
            // (a metapackage of a private apt state is STATE/NAME: dev fetches that state's lists)
            let name = k.state.map_or(k.meta.to_string(), |s| format!("{s}/{}", k.meta));
            assert!(listed.contains(&name.as_str()), "dev does not check {name}: {line}");
        }
        let apt_dir = format!("VM_APT_DIR={}", super::vm::APT_DIR);
        assert!(dev.lines().any(|l| l == apt_dir), "dev keeps other suites' apt state elsewhere");
    }
}
