//! Fuzz target: a filter (first line) and a packet (the rest) run in the userspace VM with the
//! direct and the kernel-memory back end, for both link types; both must run and agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pwru::asm::AsmError;
use pwru::pcapc::compile::{CompileError, FilterEnv, ProgramKind};
use pwru::pcapc::run::UserspaceFilter;
use pwru_fuzz::{assert_filter_error, parse_filter, split_filter_and_packet, LINK_TYPES};

fuzz_target!(|data: &[u8]| {
    let Some((text, packet)) = split_filter_and_packet(data) else {
        return;
    };
    let Some(expr) = parse_filter(text) else {
        return;
    };
    let env = FilterEnv::default();
    for link in LINK_TYPES {
        let compiled = [ProgramKind::UserDirect, ProgramKind::UserKernelMemory]
            .map(|kind| (kind, UserspaceFilter::new(&expr, link, kind, &env)));
        let verdict = |kind: ProgramKind, filter: &UserspaceFilter| {
            filter.matches(packet).unwrap_or_else(|e| {
                panic!("{kind:?} program for `{expr}` ({link:?}) failed to run: {e}")
            })
        };
        match compiled {
            [(dk, Ok(direct)), (kk, Ok(kernel_memory))] => {
                assert_eq!(
                    verdict(dk, &direct),
                    verdict(kk, &kernel_memory),
                    "back ends disagree on `{expr}` ({link:?})"
                );
            }
            [(kind, Ok(filter)), (_, Err(e))] | [(_, Err(e)), (kind, Ok(filter))] => {
                assert_filter_error(&expr, link, kind, &e);
                match e {
                    // One back end's load limit is lower than the other's (the direct
                    // one stops at DIRECT_MAX_END); a fuzzer packet is shorter than both,
                    // so the back end that compiled must reject it too.
                    CompileError::RejectsAll => assert!(
                        !verdict(kind, &filter),
                        "`{expr}` ({link:?}) rejects all on one back end, matches on {kind:?}"
                    ),
                    // A size limit: the two back ends emit different code.
                    CompileError::Asm(AsmError::JumpOutOfRange { .. }) => {}
                    e => panic!("`{expr}` ({link:?}) compiles on {kind:?} only; other: {e}"),
                }
            }
            [(dk, Err(a)), (kk, Err(b))] => {
                assert_filter_error(&expr, link, dk, &a);
                assert_filter_error(&expr, link, kk, &b);
            }
        }
    }
});
