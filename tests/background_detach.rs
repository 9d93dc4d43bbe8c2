//! The background kprobe detacher, end to end with the built binary: fds handed to it
//! stay open until it has closed them, it runs in a session of its own, and it exits.
//! Pipes stand in for perf kprobe events (closing is closing); the kernel part is covered
//! by the VM suites (tests/e2e/scenarios.sh waits for the detacher, then checks that
//! nothing is left attached).

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use pwru::attach::background::{hand_off_to, SCM_MAX_FD};

fn session_of(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "(comm)": state ppid pgrp session ...
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(3)?.parse().ok()
}

fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            stat.rfind(')')
                .and_then(|i| stat[i + 2..].split_whitespace().next())
                == Some("Z")
        }
    }
}

#[test]
fn the_detacher_owns_the_fds_until_it_exits() {
    let exe = Path::new(env!("CARGO_BIN_EXE_pwru"));
    let n = 2 * SCM_MAX_FD + 17;
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..n {
        let (r, w) = io::pipe().unwrap();
        readers.push(OwnedFd::from(r));
        writers.push(w);
    }
    let h = hand_off_to(exe, readers).map_err(|(e, _)| e).unwrap();
    assert_eq!(h.count, n);
    // A session of its own: a terminal's Ctrl-C does not reach it. (It may already be
    // done and gone: then there is nothing to check.)
    if let Some(sid) = session_of(h.pid) {
        // SAFETY: getsid(0) has no preconditions.
        let ours = unsafe { libc::getsid(0) } as i64;
        assert_ne!(sid, ours, "the detacher shares our session");
    }
    let started = Instant::now();
    while !gone(h.pid) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "detacher still running"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Our copies were dropped by hand_off, the detacher's closed: every pipe is broken.
    for w in &mut writers {
        let err = w.write(b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}

#[test]
fn a_binary_that_is_not_a_detacher_gives_the_fds_back() {
    // `true` exits without answering: the hand-off fails and returns every fd.
    let (r, mut w) = io::pipe().unwrap();
    let (e, back) = hand_off_to(Path::new("/bin/true"), vec![OwnedFd::from(r)]).unwrap_err();
    assert_eq!(back.len(), 1, "{e}");
    // The fd we got back still holds the pipe open.
    w.write_all(b"x").unwrap();
}
