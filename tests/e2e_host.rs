//! End-to-end test of the `pwru` binary on this host's own kernel (no kprobes:
//! tracepoint backend) through `tests/e2e/host-suite.sh`, plus output checks driven from
//! here (PROCESS of a short-lived process, stack frames); runs only with `PWRU_E2E=1`.

mod e2e_common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e_common::{e2e_enabled, pwru_binary, repo_path, run_script, ScriptOutcome};

/// Drop of TCP to 10.0.0.2:8080 (IPv4 and IPv6) with its NETFILTER_DROP reason,
/// a filter that must match nothing, `--filter-skb-expr`/`--output-skb-metadata`, and a
/// VXLAN overlay traced with `--filter-tunnel-pcap-l3` and `--output-tunnel`.
#[test]
fn host_suite_reports_netfilter_drops() {
    if let Err(reason) = e2e_enabled() {
        eprintln!("skipped: {reason}");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: the host e2e suite needs root (network namespaces, BPF)");
        return;
    }
    let script = repo_path("tests/e2e/host-suite.sh");
    match run_script(&script, &[pwru_binary().as_os_str()], &[]) {
        ScriptOutcome::Passed => {}
        ScriptOutcome::Skipped(reason) => eprintln!("skipped: {reason}"),
        ScriptOutcome::Failed(summary) => panic!("host e2e suite failed: {summary}"),
    }
}

/// A network namespace of this test run with its loopback up; deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("pwru-e2e-{}-{tag}", std::process::id());
        run_ok("ip", &["netns", "add", &name]);
        let ns = Netns(name);
        run_ok("ip", &["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run_ok(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(status.success(), "{program} {args:?}: {status}");
}

/// Root and `PWRU_E2E=1`, plus the tools; else why not.
fn host_skip_reason() -> Option<String> {
    if let Err(reason) = e2e_enabled() {
        return Some(reason);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the host e2e tests need root (network namespaces, BPF)".into());
    }
    for tool in ["ip", "busybox"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} not found"));
        }
    }
    None
}

/// Sends `signal` to `child`.
fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill has no memory preconditions; the pid is our own child's.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({}, {signal})", child.id());
}

/// Waits up to `secs` for `child` to exit.
fn wait_exit(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().expect("wait for pwru") {
            return status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("pwru did not exit within {secs}s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Traces ICMP in a fresh netns with `flags` while a `ping -c1` (busybox, run as `ping`)
/// sends one echo there. The tracer is stopped (SIGSTOP) from before the ping starts
/// until after it has exited, so every line is printed after the process is gone.
/// Returns the trace and the ping's pid.
fn trace_short_lived_ping(tag: &str, flags: &[&str]) -> (String, u32) {
    let dir = std::env::temp_dir().join(format!("pwru-e2e-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let busybox = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v busybox"])
            .output()
            .expect("sh")
            .stdout,
    )
    .expect("utf-8 path");
    let ping = dir.join("ping");
    std::os::unix::fs::symlink(busybox.trim(), &ping).expect("ping symlink");
    let ns = Netns::new(tag);
    let (log, ready, err) = (dir.join("log"), dir.join("ready"), dir.join("err"));
    let mut pwru = Command::new(pwru_binary())
        .args(flags)
        .arg("--filter-netns")
        .arg(format!("/run/netns/{}", ns.0))
        .arg("--output-file")
        .arg(&log)
        .arg("--ready-file")
        .arg(&ready)
        .arg("icmp")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("start pwru");
    let until = Instant::now() + Duration::from_secs(120);
    while !ready.exists() {
        if let Some(status) = pwru.try_wait().expect("pwru status") {
            panic!(
                "pwru exited ({status}) before it was ready: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        assert!(Instant::now() < until, "pwru not ready within 120s");
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&pwru, libc::SIGSTOP);
    let mut ping = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(&ping)
        .args(["-c1", "-W1", "127.0.0.1"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start ping");
    // `ip netns exec` execs the command in place: this is the ping's pid.
    let ping_pid = ping.id();
    let ping_status = ping.wait().expect("ping");
    signal(&pwru, libc::SIGCONT);
    let pid_suffix = format!(":{ping_pid}");
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().filter(|l| l.contains(&pid_suffix)).count() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    signal(&pwru, libc::SIGINT);
    let status = wait_exit(&mut pwru, 60);
    let trace = std::fs::read_to_string(&log).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    drop(ns);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        ping_status.success(),
        "ping -c1 127.0.0.1 in the netns: {ping_status}"
    );
    assert!(status.success(), "pwru: {status}\n{stderr}");
    (trace, ping_pid)
}

/// PROCESS of a process that exited before its events were printed: named by the task
/// name the probe recorded (`ping:<pid>`), in the table and whole in JSON.
#[test]
fn host_process_of_a_short_lived_ping_is_named() {
    if let Some(reason) = host_skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let (trace, pid) = trace_short_lived_ping("process-json", &["--output-json"]);
    let want = format!("ping:{pid}");
    let ours: Vec<serde_json::Value> = trace
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v: &serde_json::Value| {
            v["process"]
                .as_str()
                .is_some_and(|p| p.ends_with(&format!(":{pid}")))
        })
        .collect();
    assert!(
        !ours.is_empty(),
        "no event of the ping (pid {pid}):\n{trace}"
    );
    for v in &ours {
        assert_eq!(v["process"], want.as_str(), "{v}");
    }

    let (trace, pid) = trace_short_lived_ping("process-table", &[]);
    let want = format!("ping:{pid}");
    let rows: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains(&format!(":{pid} ")))
        .collect();
    assert!(
        !rows.is_empty(),
        "no event of the ping (pid {pid}):\n{trace}"
    );
    for row in rows {
        // SKB (18) CPU (3) PROCESS (16 wide, as pwru).
        let process = &row[23..39];
        assert_eq!(process.trim_end(), want, "{row}");
        assert!(!row.contains("<empty>"), "{row}");
    }
}

/// `--output-stack` on the tracepoint backend: the frames inside the tracer's own BPF
/// program are left out, so the first frame is a kernel function (it was `_einittext`:
/// the JIT image named after the last vmlinux symbol); frames are one a line, unindented.
#[test]
fn host_stack_first_frame_is_a_kernel_function() {
    if let Some(reason) = host_skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let (trace, _) = trace_short_lived_ping(
        "stack",
        &[
            "--output-stack",
            "--output-meta=false",
            "--output-tuple=false",
        ],
    );
    // Event lines have several columns; the frames after each are single symbols.
    let mut stacks: Vec<Vec<&str>> = Vec::new();
    for line in trace.lines().skip(1) {
        if line.split_whitespace().count() > 1 {
            stacks.push(Vec::new());
        } else if let Some(frames) = stacks.last_mut() {
            frames.push(line);
        }
    }
    assert!(!stacks.is_empty(), "no events:\n{trace}");
    for frames in &stacks {
        let first = frames
            .first()
            .unwrap_or_else(|| panic!("an event without frames:\n{trace}"));
        assert_ne!(*first, "_einittext", "\n{trace}");
        assert!(!first.ends_with("[bpf]"), "the tracer's own frame: {first}");
        assert!(!first.starts_with("0x"), "unresolved first frame {first}");
        for frame in frames {
            assert_ne!(*frame, "_einittext", "\n{trace}");
            assert_eq!(frame.trim(), *frame, "frames are unindented: {frame:?}");
        }
    }
}
