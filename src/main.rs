//! pwru command-line entry: parses and validates the configuration (exit code 2 on usage
//! errors), then runs the tracer or one of the tools; any failure is one line, exit code 1.

use std::process::ExitCode;

use pwru::cli::Config;

fn main() -> ExitCode {
    // The background kprobe detacher the tracer starts on exit (not a user command).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == pwru::attach::background::DETACHER_ARG)
    {
        let rest: Vec<String> = args[2..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return pwru::attach::background::detacher_main(&rest);
    }
    let config = match Config::try_parse_args(args) {
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
