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
        (&["--filter-netns", "relative/path"], &["netns"]),
        (&["--timestamp", "yesterday"], &["yesterday"]),
        (&["--output-bpfmap", "icmp"], &["--output-bpfmap"]),
        (
            &["--filter-xdp-expr", "xdp->rxq->queue_index == 1"],
            &["--filter-xdp-expr", "--filter-trace-xdp"],
        ),
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
        (
            &[
                "--backend",
                "tracepoint",
                "--filter-track-bpf-helpers",
                "icmp",
            ],
            &["--filter-track-bpf-helpers", "kprobe"],
        ),
        (
            &["--backend", "fentry", "--output-caller", "icmp"],
            &["--output-caller", "fentry", "pt_regs"],
        ),
        (
            &["--backend=fentry", "--filter-track-bpf-helpers", "icmp"],
            &["--filter-track-bpf-helpers", "fentry"],
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
        &pwru(&["--filter-tunnel-pcap-l2", "tcp port", "udp"]),
        1,
        &["--filter-tunnel-pcap-l2", "column 9"],
    );
    assert_error(
        &pwru(&["--filter-tunnel-pcap-l3", "ether host 1:2:3:4:5:6"]),
        1,
        &["--filter-tunnel-pcap-l3", "not supported"],
    );
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

/// Rust debug formats (`Path("…")`, `Some(…)`, `Os { code: … }`) in any line pwru prints.
fn assert_no_debug_format(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    for debug in ["Path(", "Some(", "Os {", "kind:", "code:"] {
        assert!(!stderr.contains(debug), "{debug} in: {stderr}");
    }
}

#[test]
fn messages_say_what_to_do_once() {
    // --filter-check without a filter: the example names the file.
    let out = pwru(&["--filter-check", "capture.pcap"]);
    assert_error(&out, 2, &["pwru --filter-check capture.pcap 'tcp port 80'"]);
    // An OS error is printed once.
    for args in [
        &["--filter-check", "/nonexistent.pcap", "icmp"][..],
        &["--list-funcs", "--kernel-btf", "/nonexistent-btf"],
    ] {
        let out = pwru(args);
        assert_error(&out, 1, &["/nonexistent", "No such file or directory"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
        assert_no_debug_format(&out);
    }
    // The hint about kernels without /sys/kernel/btf/vmlinux only where it applies.
    for args in [
        &["--list-funcs", "--kernel-btf", "/nonexistent-btf"][..],
        &["--list-funcs", "--kmods", "pwru_no_such_module"],
    ] {
        let out = pwru(args);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("kernels without"), "{stderr}");
        assert!(!stderr.contains("CONFIG_DEBUG_INFO_BTF"), "{stderr}");
    }
    // A keyword typo taken for a host name: the keyword is suggested.
    for (filter, keyword) in [
        ("hots 1.2.3.4", "did you mean 'host'?"),
        ("dst hots 1.2.3.4", "did you mean 'host'?"),
        ("tcp and prot 80", "did you mean 'port' or 'proto'?"),
        ("src hots", "did you mean 'host'?"),
    ] {
        assert_error(&pwru(&["--dump-filter", filter]), 1, &[keyword]);
    }
    // A netns name from /run/netns is accepted; a bare number is an inode mistake.
    assert_error(
        &pwru(&["--filter-netns", "4026531840", "icmp"]),
        2,
        &["inode:4026531840"],
    );
    for args in [
        &["--filter-netns", "/run/netns/x", "icmp"][..],
        &["--filter-netns", "x/y", "icmp"],
        &["--kernel-btf", "/nonexistent", "icmp"],
        &["--output-file", "/nonexistent-dir/x", "icmp"],
    ] {
        assert_no_debug_format(&pwru(args));
    }
}

/// A veth pair between two namespaces of our own, removed on drop (`None`: no `ip`).
struct TestNetns {
    names: [String; 2],
}

impl TestNetns {
    fn new(interface: &str) -> Option<TestNetns> {
        let pid = std::process::id();
        let names = [format!("pwru-cli-{pid}-a"), format!("pwru-cli-{pid}-b")];
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        let netns = TestNetns {
            names: names.clone(),
        };
        let made = ip(&["netns", "add", &names[0]])
            && ip(&["netns", "add", &names[1]])
            && ip(&[
                "link", "add", interface, "netns", &names[0], "type", "veth", "peer", "name",
                interface, "netns", &names[1],
            ]);
        made.then_some(netns)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

#[test]
fn netns_and_interface_errors_as_root() {
    if !is_root() {
        eprintln!("skipped: not root");
        return;
    }
    assert_error(
        &pwru(&["--filter-netns", "pwru-no-such-netns", "icmp"]),
        1,
        &[
            "/run/netns/pwru-no-such-netns",
            "no such network namespace",
            "ip netns list",
        ],
    );
    assert_error(
        &pwru(&["--filter-netns", "/proc/self/status", "icmp"]),
        1,
        &["/proc/self/status", "is not a network namespace"],
    );
    let interface = format!("pwruv{}", std::process::id() % 100_000);
    let Some(netns) = TestNetns::new(&interface) else {
        eprintln!("skipped: cannot create network namespaces with a veth pair (ip)");
        return;
    };
    // Not here, but in both test namespaces: named as --filter-netns takes them.
    let out = pwru(&["--filter-ifname", &interface, "icmp"]);
    assert_error(
        &out,
        1,
        &[
            &format!(
                "--filter-ifname '{interface}': no such interface in the current network namespace"
            ),
            &format!("netns {}, {} have one", netns.names[0], netns.names[1]),
            &format!("add --filter-netns {}", netns.names[0]),
        ],
    );
    assert_no_debug_format(&out);
    // By name in the other namespace: the interface is found (the run stops at once).
    let out = Command::new(env!("CARGO_BIN_EXE_pwru"))
        .args([
            "--filter-netns",
            &netns.names[0],
            "--filter-ifname",
            &interface,
        ])
        .args(["--output-file", "/nonexistent-dir/x", "icmp"])
        .output()
        .expect("run pwru");
    assert_error(&out, 1, &["--output-file /nonexistent-dir/x"]);
}

#[test]
fn an_output_file_that_cannot_be_created_fails_before_attaching() {
    if !is_root() {
        eprintln!("skipped: not root");
        return;
    }
    let out = pwru(&["--output-file", "/nonexistent-dir/trace.txt", "icmp"]);
    assert_error(&out, 1, &["/nonexistent-dir/trace.txt", "No such file"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Attaching"), "{stderr}");
}
