//! `cargo xtask package [--verify]`: a Debian package of tcperr (README "Packaging"): the
//! static binary, the systemd unit running `tcperr serve` with only the capabilities it uses,
//! man pages and shell completions generated from the clap definitions. `--verify` checks the
//! package as a user would meet it: its contents, `systemd-analyze verify` of its unit, the
//! packaged binary's `check`, and the unit's command line under exactly the capabilities the
//! unit grants, counting a real error.
use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use clap::CommandFactory;

use crate::{vm, workspace_root};

/// The unit, as shipped.
const UNIT: &str = "packaging/tcperr.service";

/// Where each file goes in the package, and its mode.
const MAN_DIR: &str = "usr/share/man/man1";
const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "usr/share/bash-completion/completions/tcperr"),
    ("zsh", "usr/share/zsh/vendor-completions/_tcperr"),
    ("fish", "usr/share/fish/vendor_completions.d/tcperr.fish"),
];

pub fn package(verify: bool) -> Result<bool, String> {
    let root = workspace_root();
    eprintln!("==> package: building the static tcperr");
    let bin = vm::build_static(&root, vm::Arch::Amd64)?.join("tcperr");
    let version = version(&bin)?;
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?.trim().to_owned();
    let name = format!("tcperr_{version}_{arch}");
    let out_dir = root.join("target/package");
    let stage = out_dir.join(&name);
    let _ = fs::remove_dir_all(&stage);
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let put = |rel: &str, bytes: &[u8], mode: u32| -> Result<(), String> {
        let path = stage.join(rel);
        fs::create_dir_all(path.parent().unwrap_or(&stage)).map_err(|e| io(rel, e))?;
        fs::write(&path, bytes).map_err(|e| io(rel, e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(|e| io(rel, e))
    };
    put("usr/bin/tcperr", &fs::read(&bin).map_err(|e| io("tcperr", e))?, 0o755)?;
    put(
        "lib/systemd/system/tcperr.service",
        &fs::read(root.join(UNIT)).map_err(|e| io(UNIT, e))?,
        0o644,
    )?;
    for (page, text) in man_pages()? {
        put(&format!("{MAN_DIR}/{page}.1.gz"), &gzip(&text)?, 0o644)?;
    }
    for (shell, rel) in COMPLETIONS {
        let script = output(Command::new(&bin).args(["completions", shell]))?;
        put(rel, script.as_bytes(), 0o644)?;
    }
    put("usr/share/doc/tcperr/copyright", copyright().as_bytes(), 0o644)?;
    let installed_kib = du_kib(&stage)?;
    put("DEBIAN/control", control(&version, &arch, installed_kib).as_bytes(), 0o644)?;
    let deb = out_dir.join(format!("{name}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb))?;
    eprintln!("==> package: {}", deb.display());
    if verify { verify_deb(&deb) } else { Ok(true) }
}

/// `tcperr --version` of the built binary ("tcperr 0.1.0" → "0.1.0").
fn version(bin: &Path) -> Result<String, String> {
    let v = output(Command::new(bin).arg("--version"))?;
    v.split_whitespace().nth(1).map(str::to_owned).ok_or(format!("tcperr --version: {v:?}"))
}

/// tcperr(1) and one page per subcommand (tcperr-trace(1), ...), roff.
fn man_pages() -> Result<Vec<(String, Vec<u8>)>, String> {
    let cmd = tcperr_userspace::cli::Cli::command();
    let mut pages = Vec::new();
    let render = |c: clap::Command| -> Result<Vec<u8>, String> {
        let mut roff = Vec::new();
        clap_mangen::Man::new(c).render(&mut roff).map_err(|e| e.to_string())?;
        Ok(roff)
    };
    for sub in cmd.get_subcommands() {
        let page = format!("tcperr-{}", sub.get_name());
        // (clap's names are &'static: the page names live as long as this run)
        let version: &'static str = cmd.get_version().unwrap_or_default().to_owned().leak();
        let sub = sub.clone().name(&*page.clone().leak()).version(version);
        pages.push((page, render(sub)?));
    }
    pages.push(("tcperr".to_owned(), render(cmd)?));
    Ok(pages)
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new("gzip")
        .args(["-9n"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("gzip: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("gzip: no stdin")?;
    let data = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .ok_or("gzip: no stdout")?
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    let _ = writer.join();
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("gzip failed".into());
    }
    Ok(out)
}

fn du_kib(dir: &Path) -> Result<u64, String> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(|e| e.to_string())?.flatten() {
            let meta = e.metadata().map_err(|e| e.to_string())?;
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                total += meta.len().div_ceil(1024);
            }
        }
    }
    Ok(total)
}

fn control(version: &str, arch: &str, installed_kib: u64) -> String {
    format!(
        "Package: tcperr
Version: {version}
Architecture: {arch}
Maintainer: tcperr developers <tcperr@localhost>
Installed-Size: {installed_kib}
Section: net
Priority: optional
Homepage: https://github.com/tcperr/tcperr
Description: explains TCP socket errors from the kernel (eBPF)
 tcperr tells why a program got a broken pipe, a connection reset, an unexpected
 EOF, a refused connection or a timeout: which process, which connection, what
 the peer did and when. `tcperr trace` streams them; the tcperr service runs
 `tcperr serve`, which exports Prometheus metrics (systemctl enable --now tcperr).
 Needs a kernel with BTF and the BPF ring buffer (5.8 or later).
"
    )
}

fn copyright() -> String {
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: tcperr\n\nFiles: *\nCopyright: tcperr developers\nLicense: MIT OR Apache-2.0\n".to_owned()
}

/// The files every package must hold.
fn expected_files() -> Vec<String> {
    let mut files = vec![
        "./usr/bin/tcperr".to_owned(),
        "./lib/systemd/system/tcperr.service".to_owned(),
        "./usr/share/doc/tcperr/copyright".to_owned(),
        format!("./{MAN_DIR}/tcperr.1.gz"),
    ];
    let cmd = tcperr_userspace::cli::Cli::command();
    files
        .extend(cmd.get_subcommands().map(|s| format!("./{MAN_DIR}/tcperr-{}.1.gz", s.get_name())));
    files.extend(COMPLETIONS.iter().map(|(_, rel)| format!("./{rel}")));
    files
}

/// Checks the package as installed: contents, the unit, `check`, and the unit's command under
/// its capabilities. Prints each check; false if one failed.
fn verify_deb(deb: &Path) -> Result<bool, String> {
    let mut ok = true;
    let mut report = |what: &str, res: Result<(), String>| {
        match &res {
            Ok(()) => eprintln!("    ok      {what}"),
            Err(e) => eprintln!("    FAILED  {what}: {e}"),
        }
        ok &= res.is_ok();
    };
    let listing = output(Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    let files: Vec<&str> = listing.lines().filter_map(|l| l.split_whitespace().nth(5)).collect();
    let missing: Vec<String> =
        expected_files().into_iter().filter(|f| !files.contains(&f.as_str())).collect();
    report(
        "the package holds the binary, the unit, the man pages and the completions",
        if missing.is_empty() { Ok(()) } else { Err(format!("missing {missing:?} in {files:?}")) },
    );
    let tree = deb.with_extension("tree");
    let _ = fs::remove_dir_all(&tree);
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tree))?;
    let tcperr = tree.join("usr/bin/tcperr");
    report("the packaged tcperr is static", static_binary(&tcperr));
    report("the packaged tcperr check says tracing can run", check_runs(&tcperr));
    report("systemd-analyze verify accepts the unit, its man pages found", analyze(&tree));
    report(
        "the unit's command line serves metrics and counts an EPIPE under exactly its capabilities",
        unit_command_runs(&tree),
    );
    let _ = fs::remove_dir_all(&tree);
    Ok(ok)
}

/// A static ELF has no program interpreter (no `PT_INTERP` program header).
fn static_binary(bin: &Path) -> Result<(), String> {
    const PT_INTERP: u32 = 3;
    let elf = fs::read(bin).map_err(|e| e.to_string())?;
    let at = |off: usize, n: usize| elf.get(off..off + n).ok_or("truncated ELF");
    if at(0, 5)? != b"\x7fELF\x02" {
        return Err("not a 64-bit ELF".into());
    }
    let u = |b: &[u8]| b.iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x)) as usize;
    let (phoff, phentsize, phnum) = (u(at(0x20, 8)?), u(at(0x36, 2)?), u(at(0x38, 2)?));
    for i in 0..phnum {
        if u(at(phoff + i * phentsize, 4)?) == PT_INTERP as usize {
            return Err("it has a program interpreter (dynamically linked)".into());
        }
    }
    Ok(())
}

fn check_runs(tcperr: &Path) -> Result<(), String> {
    let out = Command::new(tcperr).arg("check").output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && text.contains("tracing:     can run") {
        Ok(())
    } else {
        Err(format!("exit {:?}: {text}{}", out.status.code(), String::from_utf8_lossy(&out.stderr)))
    }
}

/// `systemd-analyze verify` of the packaged unit against this host's systemd, its
/// Documentation= pages looked up in the packaged man pages. (The one change: ExecStart names
/// the unpacked binary, as /usr/bin/tcperr is not installed here; that the package puts it
/// there is checked with the contents.)
fn analyze(tree: &Path) -> Result<(), String> {
    let unit = fs::read_to_string(tree.join("lib/systemd/system/tcperr.service"))
        .map_err(|e| e.to_string())?;
    let dir = tree.with_extension("unit");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let copy = dir.join("tcperr.service");
    let here = format!("ExecStart={}", tree.join("usr/bin/tcperr").display());
    fs::write(&copy, unit.replace("ExecStart=/usr/bin/tcperr", &here))
        .map_err(|e| e.to_string())?;
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .env("MANPATH", tree.join("usr/share/man"))
        .output()
        .map_err(|e| format!("systemd-analyze: {e}"))?;
    let _ = fs::remove_dir_all(&dir);
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("exit {:?}: {said}", out.status.code()))
    }
}

/// The unit's `Key=` value.
fn unit_value(unit: &str, key: &str) -> Option<String> {
    unit.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=').map(str::to_owned))
}

/// Runs the unit's ExecStart (its binary from the package, `--listen` moved to a free port and
/// a journal directory of its own, so that an agent already running is left alone) with the bounding set the unit grants and no
/// other capability; a broken pipe made meanwhile must be counted, SIGTERM must end it with 0.
fn unit_command_runs(tree: &Path) -> Result<(), String> {
    let unit = fs::read_to_string(tree.join("lib/systemd/system/tcperr.service"))
        .map_err(|e| e.to_string())?;
    let exec = unit_value(&unit, "ExecStart").ok_or("no ExecStart")?;
    let caps = unit_value(&unit, "CapabilityBoundingSet").ok_or("no CapabilityBoundingSet")?;
    let ambient = unit_value(&unit, "AmbientCapabilities").ok_or("no AmbientCapabilities")?;
    if ambient != caps {
        return Err(format!(
            "AmbientCapabilities {ambient:?} differ from the bounding set {caps:?}"
        ));
    }
    let setpriv_caps: Vec<String> = caps
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect();
    let mut args: Vec<String> = exec.split_whitespace().map(str::to_owned).collect();
    if args.first().map(String::as_str) != Some("/usr/bin/tcperr") {
        return Err(format!("ExecStart runs {:?}, not /usr/bin/tcperr", args.first()));
    }
    args[0] = tree.join("usr/bin/tcperr").display().to_string();
    let listen = args.iter().position(|a| a == "--listen").ok_or("ExecStart has no --listen")?;
    args[listen + 1] = "127.0.0.1:0".into();
    // (and a journal of its own, not this host's /var/lib/tcperr)
    let journal = tree.with_extension("journal");
    args.extend(["--journal".to_owned(), journal.display().to_string()]);
    let mut child = Command::new("setpriv")
        .arg(format!("--bounding-set=-all,{}", setpriv_caps.join(",")))
        .arg("--inh-caps=-all")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("setpriv: {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let result = (|| {
        let mut seen = Vec::new();
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .map_err(|_| format!("it did not start: {seen:#?}"))?;
            if let Some(at) = line.split("serving metrics on http://").nth(1) {
                break at.trim_end_matches("/metrics").to_owned();
            }
            seen.push(line);
        };
        tcperr_scenarios::run("broken_pipe").map_err(|e| format!("broken_pipe: {e}"))?;
        let series = "tcperr_socket_errors_total{error=\"EPIPE\",cause=\"write_after_peer_close\",comm=\"client\",namespace=\"\",pod=\"\",container=\"\"} 1";
        for _ in 0..30 {
            if metrics(&addr)?.lines().any(|l| l == series) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("no `{series}` in:\n{}", metrics(&addr)?))
    })();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().map_err(|e| e.to_string())?;
    let _ = fs::remove_dir_all(&journal);
    result?;
    if status.code() != Some(0) {
        return Err(format!(
            "exit {:?} after SIGTERM: {:#?}",
            status.code(),
            rx.try_iter().collect::<Vec<_>>()
        ));
    }
    Ok(())
}

fn metrics(addr: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    Ok(resp.split_once("\r\n\r\n").map_or(resp.clone(), |(_, b)| b.to_owned()))
}

fn output(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    output(cmd).map(|_| ())
}
