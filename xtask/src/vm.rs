//! `cargo xtask vm`: boots Debian kernels (amd64, and arm64 on QEMU's `virt` board) under QEMU
//! (TCG) with an initramfs holding the static `tcperr` and the scenario runner
//! (`vm/src/guest.rs` as `/init`), both built for the guest's architecture, and prints scenario ×
//! kernel × hook family → pass/fail.
use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{cpio::Cpio, workspace_root};

/// A guest architecture: what its binaries are built for and how QEMU boots it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Arch {
    Amd64,
    Arm64,
}

pub const ARCHES: &[&str] = &["amd64", "arm64"];

impl Arch {
    fn parse(s: &str) -> Option<Arch> {
        match s {
            "amd64" => Some(Arch::Amd64),
            "arm64" => Some(Arch::Arm64),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The Rust target of the static guest binaries. amd64: glibc linked statically (the host's
    /// own target, which `cargo xtask package` ships too). arm64: musl, whose C library and start
    /// files come with the rustup target and which rustc links with its own rust-lld: no cross C
    /// toolchain (no crate here compiles C), and the result is static by construction.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-musl",
        }
    }

    /// QEMU's binary and the Debian package that has it.
    fn qemu(self) -> (&'static str, &'static str) {
        match self {
            Arch::Amd64 => ("qemu-system-x86_64", "qemu-system-x86"),
            Arch::Arm64 => ("qemu-system-aarch64", "qemu-system-arm"),
        }
    }

    /// The board, CPU and exit device: the PC with isa-debug-exit (the guest's exit code
    /// leaves through it); arm64's `virt` board, whose PL011 UART is the console and which
    /// Debian's arm64 kernel drives without modules (the guest powers off through PSCI).
    fn machine(self) -> &'static [&'static str] {
        match self {
            Arch::Amd64 => &["-cpu", "max", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
            // (pauth-impdef: pointer authentication, which Debian's arm64 kernels use, with
            // QEMU's implementation-defined algorithm, much cheaper to emulate than QARMA)
            Arch::Arm64 => &["-M", "virt", "-cpu", "max,pauth-impdef=on"],
        }
    }

    fn console(self) -> &'static str {
        match self {
            Arch::Amd64 => "ttyS0",
            Arch::Arm64 => "ttyAMA0",
        }
    }

    /// QEMU's exit status when the guest reports success: isa-debug-exit's `(0 << 1) | 1`, or
    /// a power-off.
    fn exit_ok(self) -> i32 {
        match self {
            Arch::Amd64 => 1,
            Arch::Arm64 => 0,
        }
    }

    /// The kernel's name in the result table: amd64's plain ("6.1"), others prefixed.
    fn label(self, kernel: &str) -> String {
        match self {
            Arch::Amd64 => kernel.to_owned(),
            _ => format!("{} {kernel}", self.name()),
        }
    }
}

/// A kernel of the suite: a Debian metapackage resolved at run time (old versions leave the
/// archive), from the host's apt sources or from a private apt state under [`APT_DIR`] (another
/// suite, Debian 11 "bullseye"; or another architecture's packages, "bookworm-arm64"), which
/// `./dev setup` fetches.
pub struct Kernel {
    pub arch: Arch,
    pub name: &'static str,
    pub meta: &'static str,
    pub state: Option<&'static str>,
}

pub const KERNELS: &[Kernel] = &[
    Kernel { arch: Arch::Amd64, name: "5.10", meta: "linux-image-amd64", state: Some("bullseye") },
    Kernel { arch: Arch::Amd64, name: "6.1", meta: "linux-image-amd64", state: None },
    Kernel { arch: Arch::Amd64, name: "6.12", meta: "linux-image-6.12-amd64", state: None },
    Kernel {
        arch: Arch::Arm64,
        name: "6.1",
        meta: "linux-image-arm64",
        state: Some("bookworm-arm64"),
    },
    Kernel {
        arch: Arch::Arm64,
        name: "6.12",
        meta: "linux-image-6.12-arm64",
        state: Some("bookworm-arm64"),
    },
];
/// Private apt states, `APT_DIR/<state>` (the same path as `./dev`'s VM_APT_DIR): sources list,
/// lists, package cache; the host's apt configuration is not used.
pub const APT_DIR: &str = "target/vm/apt";
pub const FAMILIES: &[&str] = &["default", "fexit", "kprobe", "tracepoint"];
/// A guest that prints nothing for this long is hung.
const SILENCE: Duration = Duration::from_secs(90);

pub struct Options {
    /// `--arch`: empty means the default suite (every amd64 kernel, and [`DEFAULT_ARM64`]).
    pub arches: Vec<Arch>,
    pub kernels: Vec<String>,
    pub scenarios: Vec<String>,
    pub families: Vec<String>,
    pub verbose: bool,
    /// Run `tcperr check` in each guest first and print what it says.
    pub check: bool,
}

/// `v` if it is one of `valid`, else the line listing them.
fn one_of(v: String, valid: &[&str], what: &str) -> Result<String, String> {
    if valid.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(format!("unknown {what} {v:?}; valid: {}", valid.join(", ")))
    }
}

pub fn parse(args: &[String], scenario_names: &[&str]) -> Result<Options, String> {
    let mut o = Options {
        arches: vec![],
        kernels: vec![],
        scenarios: vec![],
        families: vec![],
        verbose: false,
        check: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| it.next().cloned().ok_or(format!("{a} needs a {what}"));
        match a.as_str() {
            "--arch" => {
                let a = one_of(value("architecture")?, ARCHES, "architecture")?;
                if let Some(a) = Arch::parse(&a).filter(|a| !o.arches.contains(a)) {
                    o.arches.push(a);
                }
            }
            "--kernel" => {
                let k = value("kernel")?;
                if !KERNELS.iter().any(|n| n.name == k) && !Path::new(&k).is_file() {
                    let mut names: Vec<_> = KERNELS.iter().map(|n| n.name).collect();
                    names.dedup();
                    return Err(format!(
                        "unknown kernel {k:?}: use {} or the path of a kernel image",
                        names.join(", ")
                    ));
                }
                o.kernels.push(k);
            }
            "--scenario" => {
                o.scenarios.push(one_of(value("scenario")?, scenario_names, "scenario")?)
            }
            "--hooks" => o.families.push(one_of(value("hook family")?, FAMILIES, "hook family")?),
            "-v" | "--verbose" => o.verbose = true,
            "--check" => o.check = true,
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: cargo xtask vm [--arch amd64|arm64]... [--kernel 5.10|6.1|6.12|PATH]... [--scenario NAME]... [--hooks default|fexit|kprobe|tracepoint]... [--check] [-v]"
                ));
            }
        }
    }
    Ok(o)
}

/// What the default suite (`cargo xtask vm` without `--arch` or `--kernel`, as `cargo xtask
/// test` and CI run it) boots of arm64: kernels and their families. Both, in every family: with
/// the kprobe programs passing 6.1's verifier in seconds, arm64's 6.1 (no fexit attachment
/// before arm64's 6.4: the kprobe pair serves it) fits in the suite's 15 minutes beside the
/// rest (README, "The reproduction VM"). A kernel that stops fitting is narrowed here.
pub const DEFAULT_ARM64: &[(&str, &[&str])] = &[("6.1", FAMILIES), ("6.12", FAMILIES)];

/// The kernel one guest boots.
pub enum Image {
    Debian(&'static Kernel),
    Path(PathBuf),
}

/// One guest: its architecture, its name in the table, its kernel and the hook families it runs.
pub struct Guest {
    pub arch: Arch,
    pub label: String,
    pub image: Image,
    pub families: Vec<String>,
}

/// The guests `o` asks for, in order: without `--arch` and `--kernel`, the default suite; a
/// `--kernel` without `--arch` is amd64's (a kernel image given as a path too).
pub fn plan(o: &Options) -> Result<Vec<Guest>, String> {
    let all = |f: &[&str]| f.iter().map(|f| (*f).to_owned()).collect::<Vec<_>>();
    let families = if o.families.is_empty() { all(FAMILIES) } else { o.families.clone() };
    let mut guests = Vec::new();
    if o.arches.is_empty() && o.kernels.is_empty() {
        for k in KERNELS.iter().filter(|k| k.arch == Arch::Amd64) {
            let families = families.clone();
            guests.push(Guest {
                arch: k.arch,
                label: k.arch.label(k.name),
                image: Image::Debian(k),
                families,
            });
        }
        for (name, default_families) in DEFAULT_ARM64 {
            let k = KERNELS
                .iter()
                .find(|k| k.arch == Arch::Arm64 && k.name == *name)
                .ok_or(format!("DEFAULT_ARM64 names {name}, which KERNELS lacks"))?;
            // (--hooks narrows the default suite's arm64 families too)
            let families: Vec<String> = all(default_families)
                .into_iter()
                .filter(|f| o.families.is_empty() || o.families.contains(f))
                .collect();
            if !families.is_empty() {
                guests.push(Guest {
                    arch: k.arch,
                    label: k.arch.label(k.name),
                    image: Image::Debian(k),
                    families,
                });
            }
        }
        return Ok(guests);
    }
    let arches = if o.arches.is_empty() { vec![Arch::Amd64] } else { o.arches.clone() };
    for arch in arches {
        let names: Vec<String> = if o.kernels.is_empty() {
            KERNELS.iter().filter(|k| k.arch == arch).map(|k| k.name.to_owned()).collect()
        } else {
            o.kernels.clone()
        };
        for name in names {
            let image = match KERNELS.iter().find(|k| k.arch == arch && k.name == name) {
                Some(k) => Image::Debian(k),
                None if Path::new(&name).is_file() => Image::Path(PathBuf::from(&name)),
                None => {
                    let names: Vec<_> =
                        KERNELS.iter().filter(|k| k.arch == arch).map(|k| k.name).collect();
                    return Err(format!(
                        "no {} kernel {name:?}: use {} or the path of a kernel image",
                        arch.name(),
                        names.join(", ")
                    ));
                }
            };
            guests.push(Guest {
                arch,
                label: arch.label(&name),
                image,
                families: families.clone(),
            });
        }
    }
    Ok(guests)
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// apt options that read and write only the private state `state` under [`APT_DIR`]: a suite
/// (`bullseye`) or a suite's packages of another architecture (`bookworm-arm64`), which apt then
/// takes as its only architecture (the same as `./dev`'s suite_apt_options, which fetches it).
fn suite_apt_options(state: &str) -> Vec<String> {
    let d = workspace_root().join(APT_DIR).join(state);
    let d = fs::canonicalize(&d).unwrap_or(d);
    let d = d.display();
    let mut options = vec![
        format!("Dir::Etc::SourceList={d}/sources.list"),
        format!("Dir::Etc::SourceParts={d}/sources.list.d"),
        format!("Dir::State::Lists={d}/lists"),
        format!("Dir::Cache={d}/cache"),
    ];
    if let Some(arch) = ARCHES.iter().find(|a| state.ends_with(&format!("-{a}"))) {
        options.push(format!("APT::Architecture={arch}"));
        options.push(format!("APT::Architectures={arch}"));
    }
    options.into_iter().flat_map(|o| ["-o".to_owned(), o]).collect()
}

/// The kernel image (bzImage; arm64's `Image`) of a Debian kernel, downloaded and extracted once
/// into `cache`: the kernel package metapackage `meta` depends on, in the host's apt sources or
/// the private state `suite`.
fn debian_kernel(meta: &str, suite: Option<&str>, cache: &Path) -> Result<PathBuf, String> {
    let apt_options = suite.map(suite_apt_options).unwrap_or_default();
    let depends = run(Command::new("apt-cache").args(&apt_options).args(["depends", meta]))?;
    let pkg = depends
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .filter(|p| p.starts_with("linux-image-"))
        .ok_or_else(|| {
            let name = suite.map_or(meta.to_owned(), |s| format!("{s}/{meta}"));
            format!("cannot resolve {name} (apt-cache depends): run ./dev setup")
        })?
        .to_owned();
    let image = cache.join(format!("{pkg}.vmlinuz"));
    if image.exists() {
        return Ok(image);
    }
    fs::create_dir_all(cache).map_err(|e| e.to_string())?;
    eprintln!("==> vm: downloading {pkg} ({meta})");
    run(Command::new("apt-get")
        .args(&apt_options)
        .args(["download", "-q", &pkg])
        .current_dir(cache))?;
    let deb = fs::read_dir(cache)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb"))
        })
        .ok_or_else(|| format!("apt-get download {pkg} left no .deb"))?;
    let script = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -xO --wildcards './boot/vmlinuz-*' > '{}.part'",
        deb.display(),
        image.display()
    );
    run(Command::new("sh").args(["-c", &script]))?;
    fs::rename(format!("{}.part", image.display()), &image).map_err(|e| e.to_string())?;
    let _ = fs::remove_file(&deb);
    Ok(image)
}

/// Builds the static guest binaries for `arch` and packs them as an initramfs.
fn build_initramfs(root: &Path, arch: Arch) -> Result<PathBuf, String> {
    eprintln!("==> vm: building static tcperr and guest /init for {}", arch.name());
    let bin = build_static(root, arch)?;
    let read = |name: &str| fs::read(bin.join(name)).map_err(|e| format!("{name}: {e}"));
    let mut cpio = Cpio::new(Vec::new());
    let io = |e: std::io::Error| e.to_string();
    cpio.dir("bin").map_err(io)?;
    cpio.file("init", 0o755, &read("tcperr-vm-init")?).map_err(io)?;
    cpio.file("bin/tcperr", 0o755, &read("tcperr")?).map_err(io)?;
    let out = root.join(match arch {
        Arch::Amd64 => "target/vm/initramfs.cpio".to_owned(),
        _ => format!("target/vm/initramfs-{}.cpio", arch.name()),
    });
    fs::create_dir_all(root.join("target/vm")).map_err(io)?;
    fs::write(&out, cpio.finish().map_err(io)?).map_err(io)?;
    Ok(out)
}

/// Builds the static (no shared libraries) `tcperr` and guest `/init` for `arch`; returns their
/// directory. The VM's initramfs and `cargo xtask package` (amd64) ship these. tcperr's build
/// script builds the eBPF object for the same architecture: aya-build passes the target's
/// `CARGO_CFG_TARGET_ARCH` to the eBPF crate as `--cfg bpf_target_arch`, which decides how
/// aya-ebpf's kprobe programs read arguments and return values from `pt_regs`.
pub fn build_static(root: &Path, arch: Arch) -> Result<PathBuf, String> {
    let target = arch.rust_target();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    if arch == Arch::Arm64 {
        // rustc finds its rust-lld in its own sysroot
        cmd.env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER", "rust-lld");
    }
    let status = cmd
        .args(["build", "--release", "--target", target])
        .args([
            "-p",
            "tcperr-userspace",
            "--bin",
            "tcperr",
            "-p",
            "tcperr-scenarios",
            "--bin",
            "tcperr-vm-init",
        ])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .current_dir(root)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!(
            "building the static binaries for {target} failed{}",
            if arch == Arch::Amd64 { "" } else { " (is its rustup target added? ./dev setup)" }
        ));
    }
    Ok(root.join("target").join(target).join("release"))
}

enum Boot {
    /// Console lines and QEMU's exit status.
    Exited(Vec<String>, Option<i32>),
    Hung(Vec<String>),
}

fn boot(
    arch: Arch,
    kernel: &Path,
    initrd: &Path,
    append: &str,
    verbose: bool,
) -> Result<Boot, String> {
    let (qemu, package) = arch.qemu();
    let append = format!("console={} {append}", arch.console());
    let mut child = Command::new(qemu)
        .args(["-accel", "tcg,thread=single", "-m", "1G", "-smp", "1", "-nodefaults"])
        .args(arch.machine())
        .args(["-display", "none", "-serial", "stdio", "-no-reboot"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{qemu}: {e} (install the Debian package {package})"))?;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(SILENCE) {
            Ok(line) => {
                let line = line.trim_end_matches('\r').to_owned();
                if verbose {
                    eprintln!("    | {line}");
                }
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(Boot::Hung(lines));
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    Ok(Boot::Exited(lines, status.code()))
}

pub struct Cell {
    pub kernel: String,
    pub family: String,
    pub scenario: String,
    pub status: String,
    pub detail: Value,
}

/// What every guest run of `arch` needs: QEMU present, the kernel cache directory and a fresh
/// initramfs.
fn prepare(arch: Arch) -> Result<(PathBuf, PathBuf), String> {
    let (qemu, package) = arch.qemu();
    if Command::new(qemu).arg("--version").output().is_err() {
        return Err(format!("{qemu} is missing: install the Debian package {package}"));
    }
    let root = workspace_root();
    Ok((root.join("target/vm/kernels"), build_initramfs(&root, arch)?))
}

/// Runs the suite; returns whether every cell passed.
pub fn vm(o: &Options) -> Result<bool, String> {
    let guests = plan(o)?;
    let mut prepared: BTreeMap<&str, (PathBuf, PathBuf)> = BTreeMap::new();
    for g in &guests {
        if !prepared.contains_key(g.arch.name()) {
            prepared.insert(g.arch.name(), prepare(g.arch)?);
        }
    }
    let total = Instant::now();
    let mut cells = Vec::new();
    let mut all_ok = true;
    for g in &guests {
        let (cache, initrd) = &prepared[g.arch.name()];
        let k = &g.label;
        let image = match &g.image {
            Image::Debian(kernel) => debian_kernel(kernel.meta, kernel.state, cache)?,
            Image::Path(p) => p.clone(),
        };
        let mut append = format!("panic=-1 quiet tcperr.families={}", g.families.join(","));
        if o.check {
            append.push_str(" tcperr.check");
        }
        if !o.scenarios.is_empty() {
            append.push_str(&format!(" tcperr.scenarios={}", o.scenarios.join(",")));
        }
        let t = Instant::now();
        let mut attempt = 0;
        let (lines, code) = loop {
            attempt += 1;
            match boot(g.arch, &image, initrd, &append, o.verbose)? {
                Boot::Exited(lines, code) => break (lines, code),
                Boot::Hung(lines) if attempt == 1 => {
                    eprintln!(
                        "==> vm: {k}: guest silent for {}s, retrying once",
                        SILENCE.as_secs()
                    );
                    let _ = lines;
                }
                Boot::Hung(lines) => {
                    let tail =
                        lines.iter().rev().take(30).rev().cloned().collect::<Vec<_>>().join("\n");
                    return Err(format!("{k}: guest hung twice; console tail:\n{tail}"));
                }
            }
        };
        let secs = t.elapsed().as_secs_f64();
        let guest = lines.iter().find(|l| l.starts_with("TCPERR-GUEST kernel=")).cloned();
        let done = lines.iter().find(|l| l.starts_with("TCPERR-GUEST done"));
        // The guest's own verdict, and QEMU's exit status agreeing with it (arch.exit_ok).
        let guest_ok =
            done.is_some_and(|l| l.ends_with("failed=false")) && code == Some(g.arch.exit_ok());
        if guest.is_none() || done.is_none() {
            let panic =
                lines.iter().position(|l| l.contains("Kernel panic") || l.contains("panicked"));
            let from = panic.unwrap_or(lines.len().saturating_sub(30));
            return Err(format!(
                "{k}: the guest did not finish (qemu exit {code:?}):\n{}",
                lines[from..].join("\n")
            ));
        }
        eprintln!(
            "==> vm: {k}: {} in {secs:.1}s",
            guest.unwrap_or_default().trim_start_matches("TCPERR-GUEST ")
        );
        for l in lines.iter().filter_map(|l| l.strip_prefix("TCPERR-CHECK ")) {
            eprintln!("    check: {l}");
        }
        for l in lines.iter().filter(|l| l.starts_with("TCPERR-GUEST family=")) {
            eprintln!("    {}", l.trim_start_matches("TCPERR-GUEST "));
        }
        for l in lines.iter().filter_map(|l| l.strip_prefix("TCPERR-RESULT ")) {
            let v: Value =
                serde_json::from_str(l).map_err(|e| format!("bad result line ({e}): {l}"))?;
            let s = |key: &str| v[key].as_str().unwrap_or("-").to_owned();
            let cell = Cell {
                kernel: k.clone(),
                family: s("family"),
                scenario: s("scenario"),
                status: s("status"),
                detail: v,
            };
            all_ok &= matches!(cell.status.as_str(), "pass" | "unavailable");
            cells.push(cell);
        }
        all_ok &= guest_ok;
    }
    print_table(&cells, o.verbose);
    eprintln!(
        "==> vm: {} in {:.1}s",
        if all_ok { "all passed" } else { "FAILED" },
        total.elapsed().as_secs_f64()
    );
    Ok(all_ok)
}

fn print_table(cells: &[Cell], verbose: bool) {
    let mut columns: Vec<(String, String)> = Vec::new();
    let mut rows: BTreeMap<String, BTreeMap<(String, String), String>> = BTreeMap::new();
    for c in cells {
        let col = (c.kernel.clone(), c.family.clone());
        if !columns.contains(&col) {
            columns.push(col.clone());
        }
        if c.status == "unavailable" {
            continue;
        }
        let secs = c.detail["secs"].as_f64().map_or(String::new(), |s| format!(" {s:.1}s"));
        rows.entry(c.scenario.clone()).or_default().insert(col, format!("{}{secs}", c.status));
    }
    let unavailable: BTreeMap<(String, String), String> = cells
        .iter()
        .filter(|c| c.status == "unavailable")
        .map(|c| ((c.kernel.clone(), c.family.clone()), "n/a".to_owned()))
        .collect();
    print!("\n| scenario |");
    for (k, f) in &columns {
        print!(" {k} {f} |");
    }
    print!("\n| --- |");
    for _ in &columns {
        print!(" --- |");
    }
    println!();
    for (scenario, by_col) in rows.iter().filter(|(s, _)| *s != "-") {
        print!("| {scenario} |");
        for col in &columns {
            let cell = by_col.get(col).or_else(|| unavailable.get(col)).map_or("-", String::as_str);
            print!(" {cell} |");
        }
        println!();
    }
    println!();
    for c in cells {
        if c.status == "unavailable" {
            println!(
                "{} {}: unavailable: {}",
                c.kernel,
                c.family,
                c.detail["stderr"].as_str().unwrap_or("").lines().last().unwrap_or("")
            );
        }
    }
    let mut shown = std::collections::BTreeSet::new();
    for c in cells {
        if let Some(h) = c.detail["hooks"].as_str()
            && shown.insert((c.kernel.clone(), c.family.clone()))
        {
            println!("{} {}: hooks: {h}", c.kernel, c.family);
        }
    }
    for c in
        cells.iter().filter(|c| verbose || !matches!(c.status.as_str(), "pass" | "unavailable"))
    {
        println!("\n{} {} {}: {}", c.kernel, c.family, c.scenario, c.status);
        println!("  got:      {}", c.detail["got"]);
        println!("  expected: {}", c.detail["expected"]);
        if let Some(e) = c.detail.get("error").or_else(|| c.detail.get("stderr")) {
            println!("  error:    {e}");
        }
    }
}

/// `cargo xtask bench --vm`: items 1 and 3 of the benchmark inside the guests, per hook family
/// (the fexit and kprobe paths this host's kernel does not allow). Under emulation absolute
/// times mean little: the table gives each family's in-kernel cost relative to the cheapest
/// family on that kernel, and the RST-storm rate with tcperr relative to untraced.
pub fn bench_vm(verbose: bool) -> Result<bool, String> {
    let (cache, initrd) = prepare(Arch::Amd64)?;
    let mut ok = true;
    let mut md = String::from(
        "| kernel | family | in-kernel ns/run (emulated) | vs cheapest family | RST storm vs untraced | events seen / lost |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for k in KERNELS.iter().filter(|k| k.arch == Arch::Amd64) {
        let name = k.name;
        let image = debian_kernel(k.meta, k.state, &cache)?;
        let append = "panic=-1 quiet tcperr.bench=3 tcperr.families=fexit,kprobe,tracepoint";
        let lines = match boot(k.arch, &image, &initrd, append, verbose)? {
            Boot::Exited(lines, code) => {
                ok &= code == Some(k.arch.exit_ok());
                lines
            }
            Boot::Hung(lines) => {
                ok = false;
                lines
            }
        };
        let rows: Vec<Value> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("TCPERR-BENCH "))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if rows.is_empty() {
            return Err(format!("{name}: the guest reported nothing:\n{}", lines.join("\n")));
        }
        let cheapest = rows
            .iter()
            .filter_map(|r| r["ns_per_run"].as_f64())
            .filter(|&v| v > 0.0)
            .fold(f64::INFINITY, f64::min);
        for r in rows.iter().filter(|r| r["family"] != "untraced") {
            let family = r["family"].as_str().unwrap_or("?");
            if let Some(why) = r["unavailable"].as_str() {
                md.push_str(&format!(
                    "| {name} | {family} | n/a | | | {} |\n",
                    why.replace('|', "/")
                ));
                continue;
            }
            let ns = r["ns_per_run"].as_f64().unwrap_or(0.0);
            let stats = &r["stats"];
            let seen_lost = if stats.is_object() {
                format!("{} / {}", stats["events_seen"], stats["lost"])
            } else {
                String::new()
            };
            md.push_str(&format!(
                "| {name} | {family} | {ns:.0} | {:.2} | {:.2} | {seen_lost} |\n",
                ns / cheapest,
                r["storm_ratio"].as_f64().unwrap_or(0.0)
            ));
        }
    }
    println!("{md}");
    let dir = workspace_root().join("bench/results");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("vm.md"),
        format!("# tcperr benchmark in the VM (TCG, -smp 1)\n\n{md}"),
    )
    .map_err(|e| e.to_string())?;
    eprintln!("==> bench --vm: written to bench/results/vm.md");
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guests(args: &[&str]) -> Vec<(Arch, String, Vec<String>)> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let o = parse(&args, &["eof"]).expect("parse");
        plan(&o).expect("plan").into_iter().map(|g| (g.arch, g.label, g.families)).collect()
    }

    fn all() -> Vec<String> {
        FAMILIES.iter().map(|f| (*f).to_owned()).collect()
    }

    #[test]
    fn the_default_suite_is_every_amd64_kernel_and_the_arm64_subset() {
        let mut expected: Vec<_> = KERNELS
            .iter()
            .filter(|k| k.arch == Arch::Amd64)
            .map(|k| (Arch::Amd64, k.name.to_owned(), all()))
            .collect();
        for (name, families) in DEFAULT_ARM64 {
            let families = families.iter().map(|f| (*f).to_owned()).collect();
            expected.push((Arch::Arm64, format!("arm64 {name}"), families));
        }
        assert_eq!(guests(&[]), expected);
    }

    #[test]
    fn arch_arm64_boots_every_arm64_kernel_in_every_family() {
        assert_eq!(
            guests(&["--arch", "arm64"]),
            vec![
                (Arch::Arm64, "arm64 6.1".to_owned(), all()),
                (Arch::Arm64, "arm64 6.12".to_owned(), all()),
            ]
        );
        assert_eq!(
            guests(&["--arch", "arm64", "--kernel", "6.12", "--hooks", "fexit"]),
            vec![(Arch::Arm64, "arm64 6.12".to_owned(), vec!["fexit".to_owned()])]
        );
    }

    #[test]
    fn a_kernel_without_arch_is_amd64s_and_a_missing_one_is_named() {
        assert_eq!(guests(&["--kernel", "5.10"]), vec![(Arch::Amd64, "5.10".to_owned(), all())]);
        let args: Vec<String> =
            ["--arch", "arm64", "--kernel", "5.10"].iter().map(|a| (*a).to_owned()).collect();
        let err = plan(&parse(&args, &[]).expect("parse")).err().expect("no arm64 5.10");
        assert!(err.starts_with("no arm64 kernel \"5.10\""), "{err}");
        assert!(parse(&["--arch".to_owned(), "riscv64".to_owned()], &[]).is_err());
    }

    #[test]
    fn another_architectures_apt_state_is_that_architecture_alone() {
        let o = suite_apt_options("bookworm-arm64");
        assert!(o.contains(&"APT::Architectures=arm64".to_owned()), "{o:?}");
        assert!(o.contains(&"APT::Architecture=arm64".to_owned()), "{o:?}");
        assert!(!suite_apt_options("bullseye").iter().any(|o| o.starts_with("APT::")));
    }
}
