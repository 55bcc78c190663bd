use std::process::ExitCode;

use clap::Parser as _;
use tcperr_userspace::{
    cli::{Cli, Command},
    filter::Filter,
    load::Config,
    output::Format,
    serve::{self, ServeOptions},
    trace::{self, Error, Options},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // (an agent says what it serves and when it stops: info by default)
    let agent = matches!(cli.command, Command::Serve(_));
    let level = match (cli.verbose, agent) {
        (0 | 1, true) => log::LevelFilter::Info,
        (0, false) => log::LevelFilter::Error,
        (1, false) => log::LevelFilter::Warn,
        (2, _) => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    // RUST_LOG, when set, has the last word
    env_logger::Builder::new()
        .filter_level(level)
        .format_target(false)
        .parse_env("RUST_LOG")
        .init();
    match cli.command {
        Command::Check(args) => {
            let config = Config { hooks: args.hooks, ..Config::default() };
            match tcperr_userspace::check::run(&config, &mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(2),
            }
        }
        Command::Query(args) => query(args),
        Command::Trace(args) => {
            tcperr_userspace::tty::init(args.color);
            let command = match args.command.is_empty() {
                true => None,
                false => match tcperr_userspace::command::Command::new(args.command) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tcperr_userspace::output::note(format_args!("tcperr: {e}"));
                        return ExitCode::from(2);
                    }
                },
            };
            let opts = Options {
                format: if args.json { Format::Json } else { Format::Human },
                filter: Filter {
                    pids: args.pid,
                    comms: args.comm,
                    ports: args.port,
                    errnos: args.errno,
                    followed: command.as_ref().map(|c| c.followed.clone()),
                    containers: args.select.into(),
                },
                names: args.names.into(),
                all: args.all,
                every: args.every || args.all,
                summary_only: args.summary_only,
                debug_fields: args.debug_fields,
                utc: args.utc,
                config: Config {
                    ringbuf_bytes: args.ringbuf_size,
                    hooks: args.hooks,
                    no_drops: args.no_drops,
                    ..Config::default()
                },
            };
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            exit(rt.block_on(trace::run_command(opts, command)))
        }
        Command::Completions(args) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(args.shell, &mut cmd, "tcperr", &mut out);
            match std::io::Write::write_all(&mut std::io::stdout(), &out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    tcperr_userspace::output::note(format_args!("tcperr: {e}"));
                    ExitCode::from(1)
                }
            }
        }
        Command::Serve(args) => {
            let opts = ServeOptions {
                listen: args.listen,
                journal: (!args.no_journal).then_some((args.journal, args.journal_max_bytes)),
                names: args.names.into(),
                config: Config {
                    ringbuf_bytes: args.ringbuf_size,
                    hooks: args.hooks,
                    no_drops: args.no_drops,
                    ..Config::default()
                },
            };
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            exit(rt.block_on(serve::run(opts)))
        }
    }
}

/// The runtime `trace` and `serve` run on: one thread (reading, correlating and the metrics
/// endpoint are light; the hot path is in the kernel).
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
        tcperr_userspace::output::note(format_args!("tcperr: cannot start the runtime: {e}"));
        ExitCode::from(1)
    })
}

/// Exit 2 for what stopped tcperr from starting, 1 for a failure while running; with
/// `trace -- CMD`, the command's status, 127 or 126 when it could not be run.
fn exit(res: Result<trace::Stats, Error>) -> ExitCode {
    match res {
        Ok(stats) => ExitCode::from(stats.exit_code.unwrap_or(0)),
        Err(Error::Command(e)) => {
            tcperr_userspace::output::note(format_args!("tcperr: {}", e.message));
            ExitCode::from(e.code)
        }
        Err(Error::Start(e)) => {
            tcperr_userspace::output::note(format_args!("tcperr: {e}"));
            ExitCode::from(2)
        }
        Err(Error::Io(e)) => {
            tcperr_userspace::output::note(format_args!("tcperr: {e}"));
            ExitCode::from(1)
        }
    }
}

/// `tcperr query`: the journal's matching events and their summary on stdout, what was read on
/// stderr.
fn query(args: tcperr_userspace::cli::QueryArgs) -> ExitCode {
    use tcperr_userspace::query::{self, Error};
    let opts = query::Options {
        journal: args.journal,
        since: args.since,
        until: args.until,
        filter: Filter {
            pids: args.pid,
            comms: args.comm,
            ports: args.port,
            errnos: args.errno,
            followed: None,
            containers: args.select.into(),
        },
        format: if args.json { Format::Json } else { Format::Human },
        summary_only: args.summary_only,
        utc: args.utc,
    };
    let mut out = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    match query::run(&opts, &mut out) {
        Ok(c) => {
            tcperr_userspace::output::note(format_args!(
                "tcperr: journal {}: {} lines in {} files, {} matched ({} events), {} torn lines skipped (cut short by a crash, or being written), {} unreadable lines skipped",
                opts.journal.display(),
                c.lines,
                c.segments,
                c.matched,
                c.events,
                c.torn,
                c.unreadable
            ));
            ExitCode::SUCCESS
        }
        Err(Error::Input(e)) => {
            tcperr_userspace::output::note(format_args!("tcperr: {e}"));
            ExitCode::from(2)
        }
        Err(Error::Io(e)) => {
            tcperr_userspace::output::note(format_args!("tcperr: {e}"));
            ExitCode::from(1)
        }
    }
}
