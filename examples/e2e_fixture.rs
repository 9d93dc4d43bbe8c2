//! Test fixture for the end-to-end suites (shipped into the VM): loads a BPF program made
//! with our assembler, with BTF, and pins it for `tc filter ... bpf object-pinned PATH`.
//!
//! Usage: `e2e_fixture tc-drop-tcp PORT PIN_PATH` (prints the program id).

#[path = "../tests/e2e_common/fixtures.rs"]
mod fixtures;

use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, port, pin] = args.as_slice() else {
        eprintln!("usage: e2e_fixture tc-drop-tcp PORT PIN_PATH");
        return ExitCode::from(2);
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("e2e_fixture: bad port {port}");
        return ExitCode::from(2);
    };
    if kind != "tc-drop-tcp" {
        eprintln!("e2e_fixture: unknown fixture {kind}");
        return ExitCode::from(2);
    }
    let prog = fixtures::tc_drop_tcp(port);
    let fd = match pwru::load::load_sched_cls_with_btf(fixtures::TC_DROP_TCP_NAME, &prog) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("e2e_fixture: loading {}: {e}", fixtures::TC_DROP_TCP_NAME);
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = pwru::load::pin_program(fd.as_fd(), Path::new(pin)) {
        eprintln!("e2e_fixture: pinning at {pin}: {e}");
        return ExitCode::FAILURE;
    }
    match pwru::load::prog_id(fd.as_fd()) {
        Ok(id) => println!("{id}"),
        Err(e) => {
            eprintln!("e2e_fixture: program id: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
