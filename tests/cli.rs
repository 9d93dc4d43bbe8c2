//! The `pwru` binary's command-line contract: version text, help, and exit codes for usage errors.

use std::process::Command;

fn pwru(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pwru"))
        .args(args)
        .output()
        .expect("run pwru");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_and_help_exit_zero() {
    let (code, stdout, _) = pwru(&["--version"]);
    assert_eq!(
        (code, stdout.as_str()),
        (0, format!("pwru {}\n", env!("CARGO_PKG_VERSION")).as_str())
    );
    let (code, stdout, _) = pwru(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("Examples:") && stdout.contains("--filter-mark"));
}

#[test]
fn usage_errors_exit_two_with_one_line_reason() {
    let table: &[(&[&str], &str)] = &[
        (&["--filter-mark", "1/2/3"], "expected mark[/mask]"),
        (&["--filter-func", "ip_("], "invalid regex"),
        (&["--filter-kprobe-batch", "0"], "at least 1"),
        (&["--backend", "fentry"], "invalid tracing backend"),
        (&["--filter-trace-tc"], "--filter-trace-tc"),
        (
            &["--filter-ifname", "lo", "--filter-netns", "inode:1"],
            "--filter-ifname cannot be used",
        ),
    ];
    for (args, needle) in table {
        let (code, _, stderr) = pwru(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or("");
        assert!(first.contains(needle), "{args:?}: {stderr}");
    }
}
