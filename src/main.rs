//! pwru command-line entry: parses the flags and resolves them into the run's settings (exit
//! code 2 on usage errors), then runs the mode they select; any failure is one line, exit 1.

use std::process::ExitCode;

use pwru::cli::Args;

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
    let args = match Args::try_parse_args(args) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    if let Some(note) = &args.legacy_note {
        eprintln!("{note}");
    }
    let mode = match args.resolve() {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!("pwru: error: {e}");
            return ExitCode::from(2);
        }
    };
    match pwru::app::run(mode) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pwru: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
