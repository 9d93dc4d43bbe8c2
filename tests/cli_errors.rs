//! Bad input and hostile environments: each is a clear error naming the problem and a
//! non-zero exit, never a panic, and nothing is left attached.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

fn pwru(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pwru"))
        .args(args)
        .output()
        .expect("run pwru")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Asserts a failure with `code` whose first stderr line is a `pwru: error:` line (or
/// clap's `error:`) containing every one of `needles`.
fn assert_error(out: &Output, code: i32, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let first = stderr
        .lines()
        .find(|l| l.contains("error"))
        .unwrap_or_else(|| panic!("no error line in: {stderr}"));
    for n in needles {
        assert!(
            first.contains(n),
            "{first:?} lacks {n:?} (stderr: {stderr})"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let table: &[(&[&str], &[&str])] = &[
        (&["--backend", "nope"], &["nope", "kprobe"]),
        (&["--filter-func", "("], &["regex"]),
        (&["--filter-mark", "1/2/3"], &["mark"]),
        (&["--filter-kprobe-batch", "0"], &["batch"]),
        (&["--filter-netns", "netns-without-slash"], &["netns"]),
        (&["--timestamp", "yesterday"], &["yesterday"]),
        (&["--output-tunnel", "icmp"], &["--output-tunnel"]),
        (&["--filter-trace-tc"], &["--filter-trace-tc"]),
        (
            &[
                "--backend",
                "tracepoint",
                "--filter-non-skb-funcs",
                "f",
                "icmp",
            ],
            &["--filter-non-skb-funcs", "kprobe"],
        ),
    ];
    for (args, needles) in table {
        assert_error(&pwru(args), 2, needles);
    }
}

#[test]
fn bad_filters_are_rejected_before_anything_is_loaded() {
    assert_error(&pwru(&["tcp", "port"]), 1, &["filter", "column 9"]);
    assert_error(
        &pwru(&["host", "no-such-host-in-etc-hosts"]),
        1,
        &["no-such-host"],
    );
    assert_error(
        &pwru(&["--dump-filter", "ip and arp"]),
        1,
        &["rejects all packets"],
    );
    assert_error(&pwru(&["--dump-filter", "--l3", "arp"]), 1, &["raw IP"]);
    assert_error(
        &pwru(&["--filter-skb-expr", "skb->len >", "icmp"]),
        1,
        &["--filter-skb-expr", "cannot parse"],
    );
    assert_error(
        &pwru(&["--filter-check", "/nonexistent.pcap", "icmp"]),
        1,
        &["/nonexistent.pcap"],
    );
    let not_pcap = std::env::temp_dir().join(format!("pwru-not-a-pcap-{}", std::process::id()));
    std::fs::write(&not_pcap, b"this is not a capture file").unwrap();
    assert_error(
        &pwru(&["--filter-check", not_pcap.to_str().unwrap(), "icmp"]),
        1,
        &["pcap"],
    );
    std::fs::remove_file(&not_pcap).ok();
}

#[test]
fn bad_kernel_btf_files() {
    assert_error(
        &pwru(&["--list-funcs", "--kernel-btf", "/nonexistent-btf"]),
        1,
        &["/nonexistent-btf"],
    );
    let garbage = std::env::temp_dir().join(format!("pwru-garbage-btf-{}", std::process::id()));
    std::fs::write(
        &garbage,
        [0x9fu8, 0xeb, 1, 0, 24, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f],
    )
    .unwrap();
    assert_error(
        &pwru(&["--list-funcs", "--kernel-btf", garbage.to_str().unwrap()]),
        1,
        &["BTF"],
    );
    std::fs::remove_file(&garbage).ok();
}

#[test]
fn not_root_says_what_to_do() {
    if !is_root() {
        assert_error(&pwru(&["icmp"]), 1, &["root"]);
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pwru"))
        .arg("icmp")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run pwru as nobody");
    assert_error(&out, 1, &["root"]);
}

#[test]
fn environment_errors_as_root() {
    if !is_root() {
        eprintln!("skipped: not root");
        return;
    }
    assert_error(
        &pwru(&["--filter-func", "no_such_function_xyz", "icmp"]),
        1,
        &["no_such_function_xyz", "--list-funcs"],
    );
    assert_error(
        &pwru(&["--filter-netns", "/proc/999999999/ns/net", "icmp"]),
        1,
        &["/proc/999999999/ns/net"],
    );
    assert_error(
        &pwru(&["--filter-ifname", "no-such-if0", "icmp"]),
        1,
        &["no-such-if0"],
    );
    if !std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists() {
        assert_error(
            &pwru(&["--backend", "kprobe", "icmp"]),
            1,
            &["kprobe", "tracepoint"],
        );
        assert_error(
            &pwru(&["--backend", "kprobe-multi", "icmp"]),
            1,
            &["kprobe-multi"],
        );
        // auto picks the tracepoint backend here, which cannot probe non-skb functions.
        assert_error(
            &pwru(&["--filter-non-skb-funcs", "ip_rcv_core", "icmp"]),
            1,
            &["--filter-non-skb-funcs", "kprobe"],
        );
    }
}
