//! pwru command-line entry: parses and validates the configuration (exit code 2 on usage
//! errors), then runs the tracer or one of the tools; any failure is one line, exit code 1.

use std::process::ExitCode;

use pwru::cli::Config;

fn main() -> ExitCode {
    let config = match Config::try_parse_args(std::env::args_os()) {
        Ok(config) => config,
        Err(e) => e.exit(),
    };
    if let Err(e) = config.check() {
        eprintln!("pwru: error: {e}");
        return ExitCode::from(2);
    }
    match pwru::app::run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pwru: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
