//! Test fixture for the end-to-end suites (shipped into the VM): loads a BPF program made
//! with our assembler, with BTF (the tc one with its map of drops), and pins it for
//! `tc filter ... bpf object-pinned PATH` or `ip link set dev DEV xdp pinned PATH`.
//!
//! Usage: `e2e_fixture tc-drop-tcp|xdp-drop-udp PORT PIN_PATH` (prints the program id).

#[path = "../tests/e2e_common/fixtures.rs"]
mod fixtures;

use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;

use pwru::load::TracedProgType;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, port, pin] = args.as_slice() else {
        eprintln!("usage: e2e_fixture tc-drop-tcp|xdp-drop-udp PORT PIN_PATH");
        return ExitCode::from(2);
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("e2e_fixture: bad port {port}");
        return ExitCode::from(2);
    };
    // The tc program holds its map: both live as long as the pinned program.
    let loaded = match kind.as_str() {
        "tc-drop-tcp" => fixtures::load_tc_drop_tcp(port).map(|(prog, _drops)| prog),
        "xdp-drop-udp" => pwru::load::load_with_btf(
            TracedProgType::Xdp,
            fixtures::XDP_DROP_UDP_NAME,
            &fixtures::xdp_drop_udp(port),
        )
        .map_err(|e| format!("loading {}: {e}", fixtures::XDP_DROP_UDP_NAME)),
        _ => {
            eprintln!("e2e_fixture: unknown fixture {kind}");
            return ExitCode::from(2);
        }
    };
    let fd = match loaded {
        Ok(fd) => fd,
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
