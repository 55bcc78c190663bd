//! Command line. Every bad value is rejected by clap with one line and exit code 2.
use clap::{Args, Parser, Subcommand};

use crate::{error_names, filter, probe};

#[derive(Debug, Parser)]
#[command(
    name = "tcperr",
    version,
    about = "Explains TCP socket errors (broken pipe, connection reset, EOF, refused, timeouts) from the kernel"
)]
pub struct Cli {
    /// More log output (-v: warnings about hooks, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream socket errors and RSTs as they happen, one line each.
    Trace(TraceArgs),
    /// Show what this kernel offers and which hook serves each event (exit 0: tracing can run;
    /// 2: it cannot, and why).
    Check(CheckArgs),
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
    /// Print no events, only the summary table at the end (errors by errno × process × peer).
    #[arg(long)]
    pub summary_only: bool,
    /// Also print state changes and events that only repeat another (implies --every).
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
    /// Ring buffer size in bytes (power of two, at least 4096).
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    pub ringbuf_size: u32,
}
