use std::process::ExitCode;

use clap::Parser as _;
use tcperr_userspace::{
    cli::{Cli, Command},
    filter::Filter,
    load::Config,
    output::Format,
    trace::{self, Error, Options},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => log::LevelFilter::Error,
        1 => log::LevelFilter::Warn,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    env_logger::Builder::new().filter_level(level).format_target(false).init();
    match cli.command {
        Command::Check(args) => {
            let config = Config { hooks: args.hooks, ..Config::default() };
            match tcperr_userspace::check::run(&config, &mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(2),
            }
        }
        Command::Trace(args) => {
            let opts = Options {
                format: if args.json { Format::Json } else { Format::Human },
                filter: Filter {
                    pids: args.pid,
                    comms: args.comm,
                    ports: args.port,
                    errnos: args.errno,
                },
                all: args.all,
                every: args.every || args.all,
                summary_only: args.summary_only,
                debug_fields: args.debug_fields,
                utc: args.utc,
                config: Config {
                    ringbuf_bytes: args.ringbuf_size,
                    hooks: args.hooks,
                    ..Config::default()
                },
            };
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tcperr_userspace::output::note(format_args!(
                        "tcperr: cannot start the runtime: {e}"
                    ));
                    return ExitCode::from(1);
                }
            };
            match rt.block_on(trace::run(opts)) {
                Ok(_) => ExitCode::SUCCESS,
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
    }
}
