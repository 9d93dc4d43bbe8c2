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
        (&["--backend", "fexit"], "invalid tracing backend"),
        (
            &["--output-xdp-metadata", "xdp->rxq->queue_index"],
            "--output-xdp-metadata only applies to XDP programs",
        ),
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

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs pwru with `args` and a stdout whose reader is already gone; returns the exit code
/// and stderr.
fn run_with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_pwru"))
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run pwru");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `pwru --list-funcs | head` and the like: a closed stdout ends the run with exit 0 and no
/// error; a trace detaches its probes first.
#[test]
fn a_closed_stdout_ends_quietly() {
    let capture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/lo_udp.pcap");
    let check = ["--filter-check", capture, "udp"];
    let mut runs: Vec<&[&str]> = vec![
        &["--help"],
        &["--list-funcs"],
        &["--dump-filter", "tcp port 80"],
        &check,
    ];
    if is_root() {
        runs.push(&["icmp"]);
    }
    for args in runs {
        let (code, stderr) = run_with_closed_stdout(args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("error") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        if args == ["icmp"] {
            assert!(stderr.contains("Detaching"), "{stderr}");
        }
    }
}

/// Waits up to 60 s for `path` to exist.
fn wait_for(path: &std::path::Path) -> bool {
    let started = std::time::Instant::now();
    while !path.exists() {
        if started.elapsed() > std::time::Duration::from_secs(60) {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    true
}

/// SIGHUP detaches like SIGINT and SIGTERM: exit 0 after "Detaching".
#[test]
fn sighup_sigint_and_sigterm_detach() {
    if !is_root() {
        eprintln!("skipped: tracing needs root");
        return;
    }
    for signal in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM] {
        let ready =
            std::env::temp_dir().join(format!("pwru-cli-ready-{}-{signal}", std::process::id()));
        let _ = std::fs::remove_file(&ready);
        let child = Command::new(env!("CARGO_BIN_EXE_pwru"))
            .arg(format!("--ready-file={}", ready.display()))
            .arg("icmp")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run pwru");
        assert!(wait_for(&ready), "signal {signal}: pwru never got ready");
        // SAFETY: kill on the pid of our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let out = child.wait_with_output().expect("wait for pwru");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "signal {signal}: {stderr}");
        assert!(
            stderr.contains("Detaching") && stderr.contains("Received signal, exiting program.."),
            "signal {signal}: {stderr}"
        );
        let _ = std::fs::remove_file(&ready);
    }
}

/// The terminal pwru runs in is closed (its pseudo-terminal's other end goes away): the
/// kernel sends SIGHUP, and pwru detaches and exits 0 although its stdout and stderr are
/// now a hung-up terminal.
#[test]
fn closing_the_terminal_detaches() {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    if !is_root() {
        eprintln!("skipped: tracing needs root");
        return;
    }
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two fds into the ints we pass; the other arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned these fds, and nothing else owns them; pwru must not
    // inherit the master (the terminal closes when its last master fd does).
    let (master, slave) = unsafe {
        libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC);
        (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave))
    };
    let ready = std::env::temp_dir().join(format!("pwru-cli-tty-ready-{}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pwru"));
    cmd.arg(format!("--ready-file={}", ready.display()))
        .arg("icmp")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    // SAFETY: only async-signal-safe calls between fork and exec: a new session whose
    // controlling terminal is the pseudo-terminal on stdin.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("run pwru on a pseudo-terminal");
    drop(slave);
    drop(cmd);
    assert!(wait_for(&ready), "pwru never got ready");
    drop(master);
    let status = child.wait().expect("wait for pwru");
    assert_eq!(status.code(), Some(0), "{status}");
    let _ = std::fs::remove_file(&ready);
}

/// Runs pwru and returns (exit code, stdout lines, stderr).
fn lines(args: &[&str]) -> (i32, Vec<String>, String) {
    let (code, stdout, stderr) = pwru(args);
    (code, stdout.lines().map(String::from).collect(), stderr)
}

/// `--list-funcs` lists what the chosen backend probes: auto's choice, or `--backend`.
#[test]
fn list_funcs_lists_the_chosen_backends_targets() {
    let kprobes = std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists();
    let (code, auto, stderr) = lines(&["--list-funcs"]);
    assert_eq!(code, 0, "{stderr}");
    let auto_kind = if kprobes { "function " } else { "tracepoint " };
    assert!(
        !auto.is_empty() && auto.iter().all(|l| l.starts_with(auto_kind)),
        "{stderr}"
    );

    let (code, tracepoints, stderr) = lines(&["--list-funcs", "--backend", "tracepoint"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(tracepoints.iter().all(|l| l.starts_with("tracepoint ")));
    assert!(tracepoints.contains(&"tracepoint kfree_skb skb-arg=0".to_string()));
    assert!(
        stderr.ends_with(&format!(
            "{} tracepoints for the tracepoint backend\n",
            tracepoints.len()
        )),
        "{stderr}"
    );

    // Listed even where this kernel cannot run the backend, with a note saying so.
    let (code, functions, stderr) = lines(&[
        "--list-funcs",
        "--backend=kprobe",
        "--filter-func",
        "ip_rcv.*",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        functions.contains(&"function ip_rcv skb-arg=1".to_string()),
        "{functions:?}"
    );
    assert!(functions.iter().all(|l| l.starts_with("function ip_rcv")));
    assert_eq!(
        stderr.contains("cannot run") || stderr.contains("not available"),
        !kprobes,
        "{stderr}"
    );

    // --all-kmods does not give the tracepoint backend the modules' functions: it says so.
    let (code, _, stderr) = lines(&["--list-funcs", "--backend", "tracepoint", "--all-kmods"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(
            "pwru: warning: --kmods and --all-kmods do not apply to the tracepoint backend"
        ),
        "{stderr}"
    );
}

/// At start, the tracepoint backend says what its tracepoints cover, and that it is not
/// every kernel function.
#[test]
fn the_tracepoint_backend_says_what_it_covers() {
    if !is_root() {
        eprintln!("skipped: tracing needs root");
        return;
    }
    let ready = std::env::temp_dir().join(format!("pwru-cli-tp-ready-{}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let child = Command::new(env!("CARGO_BIN_EXE_pwru"))
        .args(["--backend", "tracepoint", "--all-kmods"])
        .arg(format!("--ready-file={}", ready.display()))
        .arg("icmp")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run pwru");
    assert!(wait_for(&ready), "pwru never got ready");
    // SAFETY: kill on the pid of our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().expect("wait for pwru");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let coverage = stderr
        .lines()
        .find(|l| l.starts_with("Probing "))
        .unwrap_or_else(|| panic!("no coverage line: {stderr}"));
    for needle in [
        " tracepoints: ",
        " device",
        " drop",
        "not in every kernel function",
    ] {
        assert!(coverage.contains(needle), "{coverage}");
    }
    assert!(
        stderr.contains("pwru: warning: --kmods and --all-kmods do not apply"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Listening for events.. (Ctrl-C to stop)"),
        "{stderr}"
    );
    let _ = std::fs::remove_file(&ready);
}
