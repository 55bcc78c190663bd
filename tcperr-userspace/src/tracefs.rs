//! Tracepoint record layouts, read from the running kernel's tracefs `format` files.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Result, anyhow};

const MOUNT_POINTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: u32,
    pub size: u32,
    pub signed: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Format {
    pub fields: Vec<Field>,
    pub print_fmt: String,
}

impl Format {
    pub fn parse(text: &str) -> Result<Self> {
        let mut fmt = Self::default();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("print fmt:") {
                fmt.print_fmt = rest.trim().to_owned();
                continue;
            }
            let Some(rest) = line.strip_prefix("field:") else { continue };
            let mut parts = rest.split(';').map(str::trim);
            let decl = parts.next().unwrap_or_default();
            let mut num = |key: &str| -> Result<u32> {
                let p = parts.next().unwrap_or_default();
                p.strip_prefix(key)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| anyhow!("bad format line: {line}"))
            };
            let offset = num("offset:")?;
            let size = num("size:")?;
            let signed = num("signed:")? == 1;
            let name = decl
                .split(|c: char| c.is_whitespace() || c == '*')
                .next_back()
                .and_then(|n| n.split('[').next())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| anyhow!("bad field declaration: {decl}"))?;
            fmt.fields.push(Field { name: name.to_owned(), offset, size, signed });
        }
        if fmt.fields.is_empty() {
            return Err(anyhow!("format has no fields"));
        }
        Ok(fmt)
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The value → name table of `__print_symbolic(REC-><field>, { v, "NAME" }, ...)`.
    pub fn symbols(&self, field: &str) -> BTreeMap<u64, String> {
        let mut out = BTreeMap::new();
        let key = format!("__print_symbolic(REC->{field},");
        let Some(start) = self.print_fmt.find(&key) else { return out };
        let mut rest = &self.print_fmt[start + key.len()..];
        while let Some(open) = rest.find('{') {
            // Stop at the closing parenthesis of this __print_symbolic.
            if rest[..open].contains(')') {
                break;
            }
            let Some(close) = rest[open..].find('}') else { break };
            let entry = &rest[open + 1..open + close];
            if let Some((v, name)) = entry.split_once(',') {
                let name = name.trim().trim_matches('"');
                if let Ok(v) = v.trim().parse::<u64>() {
                    out.insert(v, name.to_owned());
                }
            }
            rest = &rest[open + close + 1..];
        }
        out
    }
}

/// Where tracefs is mounted, if anywhere (a mount point with `events/` in it).
pub fn find() -> Option<PathBuf> {
    MOUNT_POINTS.iter().map(Path::new).find(|p| p.join("events").is_dir()).map(Path::to_owned)
}

/// A mount point where tracefs is mounted but whose `events/` this process may not enter.
fn unreadable() -> Option<PathBuf> {
    MOUNT_POINTS.iter().map(Path::new).find_map(|p| match std::fs::metadata(p.join("events")) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Some(p.to_owned()),
        _ => None,
    })
}

/// How long to look again for a tracefs that another process is mounting at the same moment.
const MOUNT_RACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The tracefs mount point, mounting tracefs at /sys/kernel/tracing if nothing is mounted.
///
/// Another process may mount it at the same moment (a second tcperr, a bpftrace): the kernel
/// refuses the second mount of tracefs on the same mount point with EBUSY, which means the
/// first one's is there. So after a failed mount tcperr looks again, and takes whichever
/// mount it finds.
pub fn find_or_mount() -> Result<PathBuf, String> {
    if let Some(p) = find() {
        return Ok(p);
    }
    // Mounted, but closed to this user: tracefs is root's, mode 0700. Mounting again would
    // not help; say which permission is missing.
    if let Some(p) = unreadable() {
        return Err(format!(
            "tracefs at {} is not readable: permission denied (it is root's, mode 0700): run as root, or with CAP_DAC_READ_SEARCH besides CAP_BPF and CAP_PERFMON",
            p.display()
        ));
    }
    // SAFETY: constant NUL-terminated strings; mount(2) does not keep the pointers.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    let err = std::io::Error::last_os_error();
    let since = std::time::Instant::now();
    loop {
        if let Some(p) = find() {
            return Ok(p);
        }
        // Only EBUSY says someone else's mount is on its way; anything else will not change.
        if rc == 0 || err.raw_os_error() != Some(libc::EBUSY) || since.elapsed() > MOUNT_RACE {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(format!(
        "tracefs is not mounted and mounting it failed ({}); run: mount -t tracefs tracefs /sys/kernel/tracing",
        if rc == 0 { "mounted, but it has no events/".to_owned() } else { err.to_string() }
    ))
}

/// tracefs, found or mounted on first use and not before: only a source whose hook is a classic
/// tracepoint needs it (`tcp_retransmit_synack` where BTF lacks its raw prototype). BTF and raw
/// tracepoints attach without it, their record layouts come from BTF, and kprobes are created
/// through the kprobe PMU.
#[derive(Debug, Default)]
pub struct Tracefs {
    root: std::cell::OnceCell<Result<PathBuf, String>>,
}

impl Tracefs {
    /// The mount point (finding or mounting it on the first call).
    pub fn root(&self) -> Result<&Path, String> {
        self.root.get_or_init(find_or_mount).as_deref().map_err(Clone::clone)
    }

    /// What became of tracefs: None if nothing needed it.
    pub fn outcome(&self) -> Option<Result<PathBuf, String>> {
        self.root.get().cloned()
    }
}

/// The format of tracepoint `category/name`, or None if the kernel does not have it.
pub fn read_format(root: &Path, category: &str, name: &str) -> Result<Option<Format>> {
    let path = root.join("events").join(category).join(name).join("format");
    match crate::kernel_file::read_to_string(&path, crate::kernel_file::MAX_FORMAT) {
        Ok(text) => Format::parse(&text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("reading {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEND_RESET_6_18: &str = "name: tcp_send_reset\nID: 1\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:const void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
\tfield:const void * skaddr;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:int state;\toffset:24;\tsize:4;\tsigned:1;\n\
\tfield:enum sk_rst_reason reason;\toffset:28;\tsize:4;\tsigned:0;\n\
\tfield:__u8 saddr[28];\toffset:32;\tsize:28;\tsigned:0;\n\
\n\
print fmt: \"state=%s reason=%s\", REC->state ? __print_symbolic(REC->state, { TCP_ESTABLISHED, \"TCP_ESTABLISHED\" }) : \"UNKNOWN\", __print_symbolic(REC->reason, { 0, \"NOT_SPECIFIED\" }, { 1, \"NO_SOCKET\" }, { 12, \"TCP_ABORT_ON_LINGER\" })\n";

    #[test]
    fn parses_field_offsets_sizes_and_array_names() {
        let f = Format::parse(SEND_RESET_6_18).unwrap();
        assert_eq!(f.field("skaddr").unwrap().offset, 16);
        let saddr = f.field("saddr").unwrap();
        assert_eq!((saddr.offset, saddr.size, saddr.signed), (32, 28, false));
        assert!(f.field("state").unwrap().signed);
        assert!(f.field("sport").is_none());
    }

    #[test]
    fn parses_symbolic_names_of_one_field() {
        let f = Format::parse(SEND_RESET_6_18).unwrap();
        let s = f.symbols("reason");
        assert_eq!(s.get(&12).map(String::as_str), Some("TCP_ABORT_ON_LINGER"));
        assert_eq!(s.len(), 3);
        // Symbols with non-numeric values (TCP_ESTABLISHED) are skipped, not misparsed.
        assert!(f.symbols("state").is_empty());
    }

    #[test]
    fn rejects_text_without_fields() {
        assert!(Format::parse("name: x\nprint fmt: \"\"").is_err());
    }
}
