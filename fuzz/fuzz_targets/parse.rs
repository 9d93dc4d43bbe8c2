//! Fuzz target: any text into the pcap-filter parser; accepted filters must print back
//! to text that parses to the same AST, and errors must point inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pwru::pcapc::{parse_with, ParseOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A hosts file that never exists keeps runs independent of the machine.
    let opts = ParseOptions {
        hosts_file: "/nonexistent/pwru-fuzz-hosts".into(),
        ethers_file: "/nonexistent/pwru-fuzz-ethers".into(),
        networks_file: "/nonexistent/pwru-fuzz-networks".into(),
    };
    match parse_with(text, &opts) {
        Ok(Some(ast)) => {
            let again = parse_with(&ast.to_string(), &opts).expect("printed AST parses");
            assert_eq!(again, Some(ast));
        }
        Ok(None) => assert!(text.trim().is_empty()),
        Err(e) => assert!(e.column >= 1 && e.column <= text.chars().count() + 1),
    }
});
