//! `tcperr-scenario NAME`: runs one scenario and prints its run as one JSON line (ports, actors,
//! expected events). Exit 2 for an unknown name, 1 when the kernel did not produce the case.
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
