//! Shared helpers of the e2e integration tests: the `PWRU_E2E` gate, locating
//! the binary under test and running the e2e shell scripts.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Exit status with which the e2e scripts say "cannot run here".
const EXIT_SKIP: i32 = 77;

/// What an e2e script run ended with.
pub enum ScriptOutcome {
    Passed,
    Skipped(String),
    Failed(String),
}

/// `Ok` when `PWRU_E2E=1`, else the reason to skip.
pub fn e2e_enabled() -> Result<(), String> {
    match std::env::var("PWRU_E2E") {
        Ok(v) if v == "1" => Ok(()),
        _ => Err("end-to-end tests run only with PWRU_E2E=1 (root, minutes)".to_owned()),
    }
}

/// The binary under test: `PWRU_E2E_BINARY` if set, else the one cargo built.
pub fn pwru_binary() -> PathBuf {
    std::env::var_os("PWRU_E2E_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pwru")))
}

/// Absolute path of a file of this repository.
pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Run `bash SCRIPT ARGS...` with extra environment `ENV`; its output is
/// printed (shown by the test harness on failure or with `--nocapture`).
pub fn run_script(script: &Path, args: &[&OsStr], env: &[(&str, &OsStr)]) -> ScriptOutcome {
    let mut cmd = Command::new("bash");
    cmd.arg(script).args(args);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = match cmd.output() {
        Ok(out) => out,
        Err(err) => {
            return ScriptOutcome::Failed(format!("cannot run {}: {err}", script.display()))
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    if !stderr.is_empty() {
        println!("--- stderr ---\n{stderr}");
    }
    match out.status.code() {
        Some(0) => ScriptOutcome::Passed,
        Some(EXIT_SKIP) => ScriptOutcome::Skipped(
            stdout
                .lines()
                .find(|l| l.starts_with("SKIP"))
                .unwrap_or("the script reported that it cannot run here")
                .to_owned(),
        ),
        code => {
            let mut lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL ")).collect();
            if let Some(summary) = stdout.lines().rev().find(|l| l.contains(" passed, ")) {
                lines.push(summary);
            }
            ScriptOutcome::Failed(format!("exit status {code:?}: {}", lines.join(" | ")))
        }
    }
}
