//! `tcperr-scenario NAME`: runs one scenario and prints its run as one JSON line (ports, actors,
//! expected events). Exit 2 for an unknown name, 1 when the kernel did not produce the case.
//! `tcperr-scenario storm SECS` and `forking-client PORT CODE` (forking_client.rs) run the
//! storm generator and the command `tcperr trace -- CMD` is tested with.
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [cmd, secs] = args.as_slice()
        && cmd == "storm"
    {
        // `tcperr-scenario storm SECS`: the RST storm of the benchmarks, two generators.
        let Ok(secs) = secs.parse::<f64>() else {
            eprintln!("tcperr-scenario storm SECS: {secs:?} is not a number of seconds");
            return ExitCode::from(2);
        };
        let (stats, _) = tcperr_scenarios::storm::run(2, std::time::Duration::from_secs_f64(secs));
        println!(
            "{{\"connections\": {}, \"unexpected\": {}}}",
            stats.connections, stats.unexpected
        );
        return ExitCode::SUCCESS;
    }
    if let [cmd, port, code] = args.as_slice()
        && cmd == "forking-client"
    {
        // `tcperr-scenario forking-client PORT CODE`: the command `tcperr trace -- CMD` is
        // tested with (forking_client.rs).
        let (Ok(port), Ok(code)) = (port.parse::<u16>(), code.parse::<u8>()) else {
            eprintln!(
                "tcperr-scenario forking-client PORT CODE: {port:?} {code:?} are not a port and an exit code"
            );
            return ExitCode::from(2);
        };
        return ExitCode::from(tcperr_scenarios::forking_client::run(port, code));
    }
    let [name] = args.as_slice() else {
        eprintln!("usage: tcperr-scenario NAME; scenarios: {}", tcperr_scenarios::ALL.join(", "));
        return ExitCode::from(2);
    };
    if !tcperr_scenarios::ALL.contains(&name.as_str()) {
        eprintln!(
            "tcperr-scenario: unknown scenario {name:?}; valid: {}",
            tcperr_scenarios::ALL.join(", ")
        );
        return ExitCode::from(2);
    }
    match tcperr_scenarios::run(name) {
        Ok(run) => {
            println!("{}", run.to_json());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tcperr-scenario: {name}: {e}");
            ExitCode::from(1)
        }
    }
}
