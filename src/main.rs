//! pwru command-line entry: parses and validates the configuration; exit code 2 on usage errors.
//! Help and version (`pwru <version>`) are printed by the parser with exit code 0.

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
    ExitCode::SUCCESS
}
