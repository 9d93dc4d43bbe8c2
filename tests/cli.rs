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

/// The original's first flags and Go's single dash: translated into today's pcap filter
/// (joined with `and` to the expression), with one stderr line giving today's command.
#[test]
fn legacy_flags_filter_like_todays_command() {
    let capture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/lo_udp.pcap");
    let (code, stdout, stderr) = pwru(&[
        "--filter-check",
        capture,
        "-filter-dst-ip",
        "127.0.0.1",
        "-filter-proto",
        "udp",
        "--filter-dst-port=9999",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "1 48 bytes\n2 48 bytes\nmatched 2 of 3 frames\n");
    assert_eq!(
        stderr,
        format!(
            "pwru: note: -filter-dst-ip, -filter-proto, --filter-dst-port are the original's old \
             spelling; today's command: pwru --filter-check {capture} \
             'dst host 127.0.0.1 and udp and dst port 9999'\n"
        )
    );

    // Joined to the positional expression, which keeps its own precedence.
    let (code, stdout, stderr) = pwru(&[
        "--filter-check",
        capture,
        "--filter-src-ip",
        "::1",
        "tcp",
        "or",
        "udp",
    ]);
    assert_eq!(
        (code, stdout.as_str()),
        (0, "3 69 bytes\nmatched 1 of 3 frames\n"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("'src host ::1 and (tcp or udp)'\n"),
        "{stderr}"
    );

    // Today's flags in Go's spelling; -h and -V stay clap's short flags.
    let (code, stdout, stderr) = pwru(&["--dump-filter", "-l3", "-output-meta=false", "udp"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("; udp for raw IP (DLT_RAW)"), "{stdout}");
    assert!(stderr.contains("today's command: pwru --dump-filter --l3 --output-meta=false udp"));
    assert_eq!(
        pwru(&["-V"]).1,
        format!("pwru {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert!(pwru(&["-h"]).1.contains("Usage: pwru"));
}

#[test]
fn bad_legacy_values_are_usage_errors() {
    let table: &[(&[&str], &str)] = &[
        (
            &["--filter-dst-ip", "1.2.3", "icmp"],
            "expected an IPv4 or IPv6 address",
        ),
        (&["-filter-dst-port"], "-filter-dst-port needs a value"),
        (
            &["--filter-proto", "gre"],
            "expected tcp, udp, icmp or icmp6",
        ),
    ];
    for (args, needle) in table {
        let (code, _, stderr) = pwru(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.lines().next().unwrap_or("").contains(needle),
            "{args:?}: {stderr}"
        );
        // No clap guess at a similar flag (it once offered --filter-trace-xdp).
        assert!(!stderr.contains("similar argument"), "{args:?}: {stderr}");
    }
}
