//! Fuzz target: every filter the parser accepts, compiled for both link types, both back
//! ends and both prologues; never a panic, and a failure is a filter error, not an internal one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pwru::pcapc::compile::{check, compile_program_env, FilterEnv};
use pwru_fuzz::{assert_filter_error, parse_filter, LINK_TYPES, PROGRAM_KINDS};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(expr) = parse_filter(text) else {
        return;
    };
    // Without a netmask (the tracer's case) and with one (`ip broadcast` needs it).
    let envs = [
        FilterEnv::default(),
        FilterEnv {
            netmask: Some(0xffff_ff00),
            ..FilterEnv::default()
        },
    ];
    for link in LINK_TYPES {
        for env in &envs {
            // The pcap_compile-style check must return, whatever it says.
            let _ = check(&expr, link, env);
            for kind in PROGRAM_KINDS {
                if let Err(e) = compile_program_env(&expr, link, kind, env) {
                    assert_filter_error(&expr, link, kind, &e);
                }
            }
        }
    }
});
