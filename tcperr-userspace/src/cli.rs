//! Command line. Every bad value is rejected by clap with one line and exit code 2.
use clap::{Args, Parser, Subcommand};

use crate::{error_names, filter, journal, probe, query};

#[derive(Debug, Parser)]
#[command(
    name = "tcperr",
    version,
    about = "Explains TCP socket errors (broken pipe, connection reset, EOF, refused, timeouts) from the kernel"
)]
pub struct Cli {
    /// More log output on stderr (-v: why hooks were passed over and other warnings; -vv: also
    /// debug: each hook chosen, the kernel offsets and the programs' own diagnostics, where one
    /// gave up (aya-log); -vvv: everything).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream socket errors and RSTs as they happen (only those of CMD and its descendants with
    /// `-- CMD`).
    Trace(TraceArgs),
    /// Print the events a `tcperr serve` journal holds, filtered, as `trace` printed them, then
    /// their summary (exit 2: the journal cannot be read).
    Query(QueryArgs),
    /// Show what this kernel offers and which hook serves each event (exit 0: tracing can run;
    /// 2: it cannot, and why).
    Check(CheckArgs),
    /// Run as an agent: trace continuously and serve Prometheus metrics at
    /// http://ADDR/metrics. Logs to stderr (RUST_LOG or -v); stops on SIGTERM or SIGINT.
    /// Exit 0 after a clean stop, 2 if it cannot start (address in use, no privileges).
    Serve(ServeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout, e.g.
    /// `tcperr completions bash > /etc/bash_completion.d/tcperr`.
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to serve metrics on (port 0: any free port, logged at start).
    #[arg(long, value_name = "ADDR", default_value = crate::serve::DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
    /// Directory of the journal of explained events, read by `tcperr query`.
    #[arg(long, value_name = "DIR", default_value = crate::journal::DEFAULT_DIR)]
    pub journal: std::path::PathBuf,
    /// The journal's size limit: bytes, or with K, M, G or T (binary); the oldest events go
    /// first. At least 64K.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = crate::journal::parse_max_bytes)]
    pub journal_max_bytes: u64,
    /// Keep no journal (metrics only).
    #[arg(long, conflicts_with_all = ["journal", "journal_max_bytes"])]
    pub no_journal: bool,
    /// Force the hooks for send/recv results, as `trace --hooks`.
    #[arg(long, value_name = "FAMILY", value_parser = probe::Family::parse)]
    pub hooks: Option<probe::Family>,
    /// Ring buffer size, as `trace --ringbuf-size`.
    #[arg(long, value_name = "SIZE", default_value = "4M", value_parser = parse_size)]
    pub ringbuf_size: u32,
    /// Attach no hook on freed packets, as `trace --no-drops`.
    #[arg(long)]
    pub no_drops: bool,
    #[command(flatten)]
    pub names: NameArgs,
}

/// Which containers' and pods' events (trace and query).
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Only events of this container: its id (at least 12 hex digits of it) or its name
    /// (repeatable).
    #[arg(long, value_name = "ID|NAME", value_parser = crate::container::parse_container)]
    pub container: Vec<String>,
    /// Only events of this Kubernetes pod, named by the kubelet's log tree (repeatable).
    #[arg(long, value_name = "[NS/]NAME", value_parser = crate::container::parse_pod)]
    pub pod: Vec<(Option<String>, String)>,
    /// Only events of pods in this Kubernetes namespace (repeatable).
    #[arg(long, value_name = "NS", value_parser = crate::container::parse_namespace)]
    pub namespace: Vec<String>,
    /// Only events of processes in this cgroup or below it: a path on the unified hierarchy
    /// from its root, e.g. /system.slice/nginx.service (repeatable).
    #[arg(long, value_name = "PATH", value_parser = crate::container::parse_cgroup_path)]
    pub cgroup: Vec<String>,
}

impl From<SelectArgs> for crate::container::Selector {
    fn from(a: SelectArgs) -> Self {
        Self { containers: a.container, pods: a.pod, namespaces: a.namespace, cgroups: a.cgroup }
    }
}

/// Where containers' and pods' names are read (trace and serve).
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The kubelet's log tree (`NAMESPACE_POD_UID/CONTAINER/`): pods' and containers' names.
    #[arg(long, value_name = "DIR", default_value = crate::container::DEFAULT_PODS_DIR)]
    pub pods_dir: std::path::PathBuf,
    /// Docker's data root (`dockerd --data-root`): Docker containers' names.
    #[arg(long, value_name = "DIR", default_value = crate::container::DEFAULT_DOCKER_ROOT)]
    pub docker_root: std::path::PathBuf,
    /// podman's storage graph root (`storage.conf` graphroot): podman containers' names.
    #[arg(long, value_name = "DIR", default_value = crate::container::DEFAULT_STORAGE_ROOT)]
    pub storage_root: std::path::PathBuf,
}

impl From<NameArgs> for crate::container::NameSources {
    fn from(a: NameArgs) -> Self {
        Self { pods_dir: a.pods_dir, docker_root: a.docker_root, storage_root: a.storage_root }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Check with this hook family forced for send/recv results, as `trace --hooks` would.
    #[arg(long, value_name = "FAMILY", value_parser = probe::Family::parse)]
    pub hooks: Option<probe::Family>,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// One JSON object per line (fields: README "JSON fields").
    #[arg(long)]
    pub json: bool,
    /// Only events of this process id (repeatable).
    #[arg(long, value_name = "PID", value_parser = filter::parse_pid)]
    pub pid: Vec<u32>,
    /// Only events of processes with this name (repeatable; the kernel keeps 15 characters).
    #[arg(long, value_name = "NAME", value_parser = filter::parse_comm)]
    pub comm: Vec<String>,
    /// Only connections with this local or remote port (repeatable).
    #[arg(long, value_name = "PORT", value_parser = filter::parse_port)]
    pub port: Vec<u16>,
    /// Only this error: a name (EPIPE, ECONNRESET, ECONNREFUSED, ETIMEDOUT, EOF) or number
    /// (repeatable).
    #[arg(long, value_name = "NAME", value_parser = error_names::parse)]
    pub errno: Vec<u32>,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub names: NameArgs,
    /// Print no events, only the summary at the end (errors by errno × process × peer).
    #[arg(long)]
    pub summary_only: bool,
    /// Human lines and the summary table in UTC (default: the system's time zone, `TZ` or
    /// /etc/localtime; the TIME column says which). JSON is always UTC.
    #[arg(long)]
    pub utc: bool,
    /// Colour human output by severity (errors red, resets sent yellow, orderly closes green):
    /// auto (when stdout is a terminal and NO_COLOR is unset), always, never. On a terminal the
    /// columns fit its width and the explanation is on the lines below; into a pipe or file,
    /// one line per event.
    #[arg(long, value_name = "WHEN", value_enum, default_value_t = crate::tty::ColorChoice::Auto)]
    pub color: crate::tty::ColorChoice,
    /// Add the kernel address of each event's socket (`sk`) to JSON: for debugging tcperr;
    /// it is a kernel pointer, which logs should not carry.
    #[arg(long)]
    pub debug_fields: bool,
    /// Also print orderly closes (an EOF after the peer finished), state changes, and RSTs on
    /// sockets no process holds any more (implies --every).
    #[arg(long)]
    pub all: bool,
    /// Print every report even in a storm. By default, after 10 reports of one story (same
    /// event, cause, errno, process and remote address) in a second, the rest of that second
    /// are counted and one `repeated` line says how many.
    #[arg(long)]
    pub every: bool,
    /// Force the hooks for send/recv results: fexit, kprobe or tracepoint (default: the first
    /// of these that works on this kernel).
    #[arg(long, value_name = "FAMILY", value_parser = probe::Family::parse)]
    pub hooks: Option<probe::Family>,
    /// Ring buffer size: bytes, or with K, M or G (KiB, MiB, GiB: 4M is 4194304); a power of
    /// two, at least 4096.
    #[arg(long, value_name = "SIZE", default_value = "4M", value_parser = parse_size)]
    pub ringbuf_size: u32,
    /// Attach no hook on freed packets (`kfree_skb`, `consume_skb`, which fire for every packet
    /// the kernel frees): no `drop` events, no SYNs dropped at a full accept queue, and no
    /// drops in the stories of errors. For a host where their cost matters.
    #[arg(long)]
    pub no_drops: bool,
    /// After `--`: run this command (as the user who ran sudo, when run through sudo) and trace
    /// only it and the processes it forks, then exit with its exit status (128 + N when signal
    /// N ended it; 127: not found, 126: could not run). A first SIGTERM or SIGHUP is passed on
    /// to it and tracing goes on until it exits; a second stops tracing (exit 128 + N).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Only events at or after WHEN: a duration back from now (30s, 10m, 2h, 1d, 1h30m) or a
    /// time (2026-11-28T10:00:00Z; 2026-11-28 10:00[:SS] or 2026-11-28 in the local zone, UTC
    /// with --utc).
    #[arg(long, value_name = "WHEN", value_parser = query::parse_when)]
    pub since: Option<query::When>,
    /// Only events before WHEN (the forms of --since).
    #[arg(long, value_name = "WHEN", value_parser = query::parse_when)]
    pub until: Option<query::When>,
    /// Only events of this process id (repeatable).
    #[arg(long, value_name = "PID", value_parser = filter::parse_pid)]
    pub pid: Vec<u32>,
    /// Only events of processes with this name (repeatable; the kernel keeps 15 characters).
    #[arg(long, value_name = "NAME", value_parser = filter::parse_comm)]
    pub comm: Vec<String>,
    /// Only connections with this local or remote port (repeatable).
    #[arg(long, value_name = "PORT", value_parser = filter::parse_port)]
    pub port: Vec<u16>,
    /// Only this error: a name (EPIPE, ECONNRESET, ECONNREFUSED, ETIMEDOUT, EOF) or number
    /// (repeatable).
    #[arg(long, value_name = "NAME", value_parser = error_names::parse)]
    pub errno: Vec<u32>,
    #[command(flatten)]
    pub select: SelectArgs,
    /// The stored JSON objects as they are, one per line, then `summary` objects.
    #[arg(long)]
    pub json: bool,
    /// Print no events, only the summary (errors by errno × process × peer).
    #[arg(long)]
    pub summary_only: bool,
    /// Human lines and the summary table in UTC, and times given without an offset taken as
    /// UTC (default: the system's time zone).
    #[arg(long)]
    pub utc: bool,
    /// The journal's directory.
    #[arg(long, value_name = "DIR", default_value = journal::DEFAULT_DIR)]
    pub journal: std::path::PathBuf,
}

/// A size in bytes, or with a K, M or G suffix (binary: 4M = 4 MiB).
pub fn parse_size(s: &str) -> Result<u32, String> {
    let (digits, unit) = match s.trim().char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s.trim()[..i], c.to_ascii_uppercase()),
        _ => (s.trim(), 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return Err(format!("{s:?}: a size is bytes or a number with K, M or G")),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a size (4096, 64K, 4M)"))?;
    n.checked_shl(shift)
        .filter(|&b| b >> shift == n)
        .and_then(|b| u32::try_from(b).ok())
        .ok_or_else(|| format!("{s:?} is too large (at most 2G)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_buffer_sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("4m"), Ok(4 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("4G").is_err(), "too large");
        assert!(parse_size("4T").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("-1").is_err());
    }
}
