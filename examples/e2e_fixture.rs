//! Test fixture for the end-to-end suites (shipped into the VM): loads a BPF program made
//! with our assembler, with BTF (and its map of drops), and pins it for
//! `tc filter ... bpf object-pinned PATH`.
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
    // The program holds its map: both live as long as the pinned program.
    let (fd, _drops) = match fixtures::load_tc_drop_tcp(port) {
        Ok(fds) => fds,
        Err(e) => {
            eprintln!("e2e_fixture: {e}");
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
