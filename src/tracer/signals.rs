//! The signals that end a trace: SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal was
//! closed) all stop the event loop so that the probes are detached before pwru exits.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;

/// Waits for SIGINT, SIGTERM or SIGHUP, then sets `stop` and wakes the event loop.
/// After SIGHUP the terminal is gone: stdout and stderr, where they were that terminal,
/// are pointed at /dev/null first, so the messages of detaching cannot fail.
pub async fn watch_signals(stop: Arc<AtomicBool>, wake: Arc<Notify>) {
    // Which standard outputs are a terminal, asked now: after a hangup the terminal
    // answers every question with EIO.
    let terminal_fds: Vec<RawFd> = [libc::STDOUT_FILENO, libc::STDERR_FILENO]
        .into_iter()
        // SAFETY: isatty only queries the fd.
        .filter(|fd| unsafe { libc::isatty(*fd) } == 1)
        .collect();
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = hup.recv() => release_terminal(&terminal_fds),
    }
    stop.store(true, Ordering::Relaxed);
    wake.notify_one();
}

/// Points `fds` at /dev/null (writes to a hung-up terminal fail).
fn release_terminal(fds: &[RawFd]) {
    let Ok(null) = OpenOptions::new().write(true).open("/dev/null") else {
        return;
    };
    for &fd in fds {
        // SAFETY: dup2 onto one of our standard fds; the old terminal fd is closed by it.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
}
