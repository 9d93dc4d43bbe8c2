//! Fuzz target: any bytes into the pcap / pcap-ng reader; it must return, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cap) = pwru::capture::parse(data) {
        for f in &cap.frames {
            assert!(f.data.len() <= data.len());
        }
    }
});
