//! End-to-end tests of the `pwru` binary inside QEMU VMs booting Debian's 6.1
//! (kprobe) and 6.12 (kprobe-multi) kernels, through `tests/e2e/run-vm-suite.sh`;
//! runs only with `PWRU_E2E=1`.

mod e2e_common;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use e2e_common::{e2e_enabled, pwru_binary, repo_path, run_script, ScriptOutcome};

/// Serializes kernel downloads: the tests of both kernels run in parallel and
/// share one private apt directory.
static FETCH_LOCK: Mutex<()> = Mutex::new(());

/// Reason why VM tests cannot run here, if any.
fn vm_unavailable(kernel: &str) -> Option<String> {
    let kernels = std::env::var("PWRU_E2E_KERNELS").unwrap_or_else(|_| "6.1 6.12".to_owned());
    if !kernels.split_whitespace().any(|k| k == kernel) {
        return Some(format!(
            "kernel {kernel} not in PWRU_E2E_KERNELS={kernels:?}"
        ));
    }
    for tool in [
        "qemu-system-x86_64",
        "busybox",
        "cpio",
        "dpkg-deb",
        "apt-get",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{tool} not found (see tests/vm/README.md)"));
        }
    }
    let fetch = repo_path("tests/vm/fetch-kernels.sh");
    let _guard = FETCH_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match Command::new("bash").arg(&fetch).arg(kernel).output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "kernel {kernel} not fetchable: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(err) => Some(format!("cannot run {}: {err}", fetch.display())),
    }
}

fn vm_suite(kernel: &str) {
    if let Err(reason) = e2e_enabled() {
        eprintln!("skipped: {reason}");
        return;
    }
    if let Some(reason) = vm_unavailable(kernel) {
        eprintln!("skipped: {reason}");
        return;
    }
    let script = repo_path("tests/e2e/run-vm-suite.sh");
    let binary = pwru_binary();
    let fixture = match build_fixture() {
        Ok(path) => path,
        Err(why) => panic!("building the e2e_fixture example: {why}"),
    };
    let args = [Path::new(kernel).as_os_str(), binary.as_os_str()];
    // Full guest outputs stay in target/tmp/e2e-vm-logs (CI artifacts).
    let log_dir = std::env::var_os("E2E_LOG_DIR").unwrap_or_else(|| {
        Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("e2e-vm-logs")
            .into()
    });
    eprintln!(
        "VM suite on {kernel}: logs in {}",
        Path::new(&log_dir).display()
    );
    let env = [
        ("E2E_LOG_DIR", log_dir.as_os_str()),
        ("E2E_FIXTURE", fixture.as_os_str()),
    ];
    match run_script(&script, &args, &env) {
        ScriptOutcome::Passed => {}
        ScriptOutcome::Skipped(reason) => eprintln!("skipped: {reason}"),
        ScriptOutcome::Failed(summary) => panic!("VM e2e suite on {kernel} failed: {summary}"),
    }
}

/// Builds the `e2e_fixture` example (the BPF programs the trace-tc scenario traces) with
/// this test's profile; returns its path.
fn build_fixture() -> Result<std::path::PathBuf, String> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "--example", "e2e_fixture"]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let exe = Path::new(env!("CARGO_BIN_EXE_pwru"));
    let path = exe.with_file_name("examples").join("e2e_fixture");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{} was not built", path.display()))
    }
}

/// Debian 6.1: single kprobes (no kprobe-multi in this kernel).
#[test]
fn vm_suite_kernel_6_1() {
    vm_suite("6.1");
}

/// Debian 6.12: kprobe-multi, plus the forced `--backend=kprobe-multi` test.
#[test]
fn vm_suite_kernel_6_12() {
    vm_suite("6.12");
}
