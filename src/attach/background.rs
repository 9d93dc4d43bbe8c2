//! Detaching a large perf-kprobe set in the background, so that the prompt comes back at
//! once after Ctrl-C.
//!
//! Unregistering a perf kprobe costs the kernel RCU grace periods under its `event_mutex`
//! (15–25 ms per kprobe under emulation even with expedited grace periods and 64 closing
//! threads), and nothing user space does makes that faster. So the tracer hands the
//! kprobe event fds to a fresh process and exits:
//!
//! 1. the parent switches RCU grace periods to expedited ([`ExpeditedRcu`]) and starts
//!    `/proc/self/exe` [`DETACHER_ARG`] (a fresh exec: no fork of the multi-threaded
//!    tracer), whose stdin is one end of a `SOCK_SEQPACKET` socketpair, stdout and stderr
//!    `/dev/null`, and working directory `/`;
//! 2. the parent sends the fds over the socket with `SCM_RIGHTS`, at most
//!    [`SCM_MAX_FD`] per message, then an end message with the total; the detacher answers
//!    with the number it holds; only when that matches does the parent drop its own copies
//!    (cheap: the kprobes stay registered as long as the detacher holds the files);
//! 3. the detacher, in its own session (`setsid`: the terminal's Ctrl-C and hang-up do not
//!    reach it) and ignoring SIGINT, SIGQUIT, SIGHUP and SIGTERM, closes the fds from 64
//!    threads, then restores `/sys/kernel/rcu_expedited` when the parent had changed it,
//!    and exits. The kprobes are gone when it has exited.
//!
//! Ownership of the `rcu_expedited` restore: the parent's guard restores it on every
//! failure (spawn, send, no or a wrong answer; the parent then closes the fds itself, in
//! the foreground); after a confirmed hand-off the detacher owns it. If the detacher is
//! killed with SIGKILL, the kernel still closes its fds at its exit (nothing stays
//! attached), but `rcu_expedited` stays 1 (a performance knob, not a leak).

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use super::{close_in_parallel, NoProgress, KPROBE_DETACH_THREADS};
use crate::load::perf::ExpeditedRcu;

/// The first argument that makes the `pwru` binary run as the detacher (not a flag: it is
/// checked before the command line is parsed and is not part of `--help`).
pub const DETACHER_ARG: &str = "__pwru-kprobe-detacher";
/// Second argument: the detacher writes 0 to `/sys/kernel/rcu_expedited` when done.
const RESTORE_RCU_ARG: &str = "--restore-rcu-expedited";
/// The kernel's limit of fds in one `SCM_RIGHTS` message.
pub const SCM_MAX_FD: usize = 253;
/// Below this many kprobes the tracer detaches in the foreground: closing them takes
/// about a second under emulation (milliseconds on hardware), less than starting a process
/// is worth.
pub const BACKGROUND_MIN_KPROBES: usize = 100;
/// How long the parent waits for the detacher to take the fds.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(10);

/// Message kinds of the hand-off protocol (first `u32` of each message).
const MSG_FDS: u32 = 1;
const MSG_END: u32 = 2;

/// Why the fds could not be handed to a detacher (the caller then closes them itself).
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("creating the socket pair: {0}")]
    Socket(#[source] io::Error),
    #[error("starting the detacher process: {0}")]
    Spawn(#[source] io::Error),
    #[error("passing the kprobe fds to the detacher: {0}")]
    Send(#[source] io::Error),
    #[error("the detacher did not confirm: {0}")]
    Confirm(#[source] io::Error),
    #[error("the detacher confirmed {got} fds, {sent} were sent")]
    Count { got: u64, sent: u64 },
}

/// A confirmed hand-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    /// The detacher's process id: the kprobes are gone when it has exited.
    pub pid: u32,
    /// The number of kprobe events it closes.
    pub count: usize,
}

/// Hands `events` to a new detacher process (see the module documentation). On failure
/// the events come back with the error, and `rcu_expedited` is as it was.
pub fn hand_off(events: Vec<OwnedFd>) -> Result<Handoff, (HandoffError, Vec<OwnedFd>)> {
    hand_off_to(Path::new("/proc/self/exe"), events)
}

/// [`hand_off`] to the detacher of the `pwru` binary at `exe` (tests pass the built binary).
pub fn hand_off_to(
    exe: &Path,
    events: Vec<OwnedFd>,
) -> Result<Handoff, (HandoffError, Vec<OwnedFd>)> {
    let rcu = ExpeditedRcu::enable();
    match start_and_send(exe, &events, rcu.changed()) {
        Ok(pid) => {
            // The detacher restores rcu_expedited (if we changed it) when it is done.
            rcu.hand_over();
            let count = events.len();
            drop(events);
            Ok(Handoff { pid, count })
        }
        // `rcu` is dropped here: restored.
        Err(e) => Err((e, events)),
    }
}

/// Duplicates of this process's other open perf-event and BPF-link fds (those not in
/// `taken`): the kprobes of the tracer's helper programs (skb free, clone following,
/// non-skb functions), which the loader holds as perf links (a BPF link keeps its perf
/// event, and so its kprobe, alive). Handed off with the backend's, their last close (and
/// so the kernel's unregistration) happens in the detacher; the loader's close is cheap.
pub fn other_perf_events(taken: &[OwnedFd]) -> Vec<OwnedFd> {
    let taken: Vec<RawFd> = taken.iter().map(|f| f.as_raw_fd()).collect();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut fds = Vec::new();
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        if taken.contains(&fd) {
            continue;
        }
        let is_perf = std::fs::read_link(entry.path()).is_ok_and(|target| {
            target.as_os_str() == "anon_inode:[perf_event]"
                || target.as_os_str() == "anon_inode:bpf_link"
        });
        if !is_perf {
            continue;
        }
        // SAFETY: F_DUPFD_CLOEXEC on an fd number read from /proc/self/fd; a failure (the
        // fd closed meanwhile) returns -1 and is skipped. The new fd is ours alone.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup >= 0 {
            // SAFETY: `dup` is a fresh descriptor nothing else owns.
            fds.push(unsafe { OwnedFd::from_raw_fd(dup) });
        }
    }
    fds
}

fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    let ret = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair succeeded: both are fresh descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_timeout(sock: &OwnedFd, option: libc::c_int, d: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: `tv` is a valid timeval for SO_SNDTIMEO/SO_RCVTIMEO and outlives the call.
    let ret = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            &tv as *const libc::timeval as *const libc::c_void,
            mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts the detacher, passes it `events`, and waits for its confirmation; returns its
/// pid. On failure a started detacher is killed (what it holds is closed at its exit).
fn start_and_send(exe: &Path, events: &[OwnedFd], restore_rcu: bool) -> Result<u32, HandoffError> {
    let (ours, theirs) = socketpair().map_err(HandoffError::Socket)?;
    for option in [libc::SO_SNDTIMEO, libc::SO_RCVTIMEO] {
        set_timeout(&ours, option, HANDOFF_TIMEOUT).map_err(HandoffError::Socket)?;
    }
    let mut cmd = Command::new(exe);
    cmd.arg0("pwru")
        .arg(DETACHER_ARG)
        .current_dir("/")
        .stdin(Stdio::from(theirs))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if restore_rcu {
        cmd.arg(RESTORE_RCU_ARG);
    }
    let mut child = cmd.spawn().map_err(HandoffError::Spawn)?;
    // Our copy of the detacher's end is closed by now (it moved into `cmd`, dropped here).
    drop(cmd);
    let sent = send_all(&ours, events);
    let confirmed = sent.and_then(|()| {
        let got = recv_u64(&ours).map_err(HandoffError::Confirm)?;
        let sent = events.len() as u64;
        if got == sent {
            Ok(())
        } else {
            Err(HandoffError::Count { got, sent })
        }
    });
    match confirmed {
        Ok(()) => Ok(child.id()),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// Sends the fds in `SCM_RIGHTS` messages of at most [`SCM_MAX_FD`], then the end message.
fn send_all(sock: &OwnedFd, events: &[OwnedFd]) -> Result<(), HandoffError> {
    for chunk in events.chunks(SCM_MAX_FD) {
        let fds: Vec<RawFd> = chunk.iter().map(|f| f.as_raw_fd()).collect();
        send_msg(sock, MSG_FDS, fds.len() as u64, &fds).map_err(HandoffError::Send)?;
    }
    send_msg(sock, MSG_END, events.len() as u64, &[]).map_err(HandoffError::Send)
}

/// Space for a control message carrying `n` fds.
fn cmsg_space(n: usize) -> usize {
    // SAFETY: CMSG_SPACE only computes a size.
    unsafe { libc::CMSG_SPACE((n * mem::size_of::<RawFd>()) as u32) as usize }
}

/// One message: `kind` and `value` (12 bytes), plus `fds` as `SCM_RIGHTS` when not empty.
fn send_msg(sock: &OwnedFd, kind: u32, value: u64, fds: &[RawFd]) -> io::Result<()> {
    let mut payload = [0u8; 12];
    payload[..4].copy_from_slice(&kind.to_ne_bytes());
    payload[4..].copy_from_slice(&value.to_ne_bytes());
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; cmsg_space(fds.len()).div_ceil(8)];
    // SAFETY: an all-zero msghdr is valid (no name, no iov, no control).
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = cmsg_space(fds.len()) as _;
        // SAFETY: msg_control points at a zeroed, aligned buffer of msg_controllen bytes,
        // room for one cmsghdr with `fds.len()` ints (CMSG_SPACE), so CMSG_FIRSTHDR is
        // non-null and CMSG_DATA has room for the copy.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of_val(fds) as u32) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr() as *const u8,
                libc::CMSG_DATA(cmsg),
                mem::size_of_val(fds),
            );
        }
    }
    loop {
        // SAFETY: `msg` points at live buffers (payload, control) for the whole call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// What one received message held.
struct Received {
    kind: u32,
    value: u64,
    fds: Vec<OwnedFd>,
    /// The kernel dropped fds that did not fit the control buffer (`MSG_CTRUNC`).
    truncated: bool,
}

/// Receives one message; `None` at end of stream (the peer closed its end).
fn recv_msg(sock: RawFd) -> io::Result<Option<Received>> {
    let mut payload = [0u8; 12];
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    let space = cmsg_space(SCM_MAX_FD);
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: `msg` points at live buffers of the sizes it states.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `msg`; CMSG_FIRSTHDR/CMSG_NXTHDR walk only within
    // msg_controllen, and each SCM_RIGHTS payload holds (cmsg_len - CMSG_LEN(0)) / 4
    // fresh descriptors that now belong to this process.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                for i in 0..bytes / mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    if n < payload.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("short hand-off message ({n} bytes)"),
        ));
    }
    let kind = u32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
    let mut value = [0u8; 8];
    value.copy_from_slice(&payload[4..]);
    Ok(Some(Received {
        kind,
        value: u64::from_ne_bytes(value),
        fds,
        truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
    }))
}

fn recv_u64(sock: &OwnedFd) -> io::Result<u64> {
    let mut buf = [0u8; 8];
    loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n == buf.len() as isize {
            return Ok(u64::from_ne_bytes(buf));
        }
        if n >= 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the detacher exited before answering",
            ));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives fds from `sock` until the end message (answered with the count received) or
/// the end of the stream. Returns the fds and whether the end message came.
fn receive_all(sock: RawFd) -> (Vec<OwnedFd>, bool) {
    let mut fds = Vec::new();
    let mut truncated = false;
    loop {
        match recv_msg(sock) {
            Ok(Some(m)) => {
                truncated |= m.truncated;
                fds.extend(m.fds);
                if m.kind == MSG_END {
                    // A message truncated by the kernel lost fds: answer a count that
                    // cannot match, so that the parent closes its own copies itself.
                    let complete = !truncated && fds.len() as u64 == m.value;
                    let held = if complete { m.value } else { u64::MAX };
                    let ack = held.to_ne_bytes();
                    // SAFETY: `ack` is readable for its length.
                    let _ = unsafe {
                        libc::send(
                            sock,
                            ack.as_ptr() as *const libc::c_void,
                            ack.len(),
                            libc::MSG_NOSIGNAL,
                        )
                    };
                    return (fds, complete);
                }
            }
            Ok(None) | Err(_) => return (fds, false),
        }
    }
}

/// The detacher process: `pwru __pwru-kprobe-detacher [--restore-rcu-expedited]` with the
/// hand-off socket as stdin. `args` are the arguments after [`DETACHER_ARG`].
pub fn detacher_main(args: &[String]) -> ExitCode {
    // SAFETY: setsid and signal have no memory-safety preconditions; SIG_IGN is a valid
    // disposition. A new session: the terminal's SIGINT/SIGHUP no longer reach us; the
    // job is to finish closing, so the usual termination signals are ignored too.
    unsafe {
        libc::setsid();
        for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGTERM] {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let restore_requested = args.iter().any(|a| a == RESTORE_RCU_ARG);
    let (fds, confirmed) = receive_all(libc::STDIN_FILENO);
    // Close the socket (stdin becomes /dev/null): the parent sees our answer, then EOF.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        // SAFETY: dup2 onto stdin of two valid descriptors.
        unsafe { libc::dup2(null.as_raw_fd(), libc::STDIN_FILENO) };
    }
    // The parent restores rcu_expedited itself unless the hand-off was confirmed.
    let rcu = (confirmed && restore_requested).then(ExpeditedRcu::take_over);
    close_in_parallel(fds, KPROBE_DETACH_THREADS, &NoProgress);
    drop(rcu);
    if confirmed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipes(n: usize) -> (Vec<OwnedFd>, Vec<std::io::PipeWriter>) {
        let mut readers = Vec::new();
        let mut writers = Vec::new();
        for _ in 0..n {
            let (r, w) = std::io::pipe().unwrap();
            readers.push(OwnedFd::from(r));
            writers.push(w);
        }
        (readers, writers)
    }

    /// A software perf event (cpu-clock, this task): a perf-event fd without kprobes.
    fn software_perf_event() -> Option<OwnedFd> {
        #[repr(C)]
        #[derive(Default)]
        struct Attr {
            type_: u32,
            size: u32,
            config: u64,
            rest: [u64; 14],
        }
        let attr = Attr {
            type_: 1, // PERF_TYPE_SOFTWARE; config 0 = PERF_COUNT_SW_CPU_CLOCK
            size: std::mem::size_of::<Attr>() as u32,
            ..Default::default()
        };
        // SAFETY: a zeroed perf_event_attr prefix of its own size; pid 0, cpu -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const Attr,
                0,
                -1,
                -1,
                0,
            )
        };
        // SAFETY: a fresh fd from perf_event_open.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    #[test]
    fn other_perf_events_finds_perf_fds_not_already_taken() {
        let Some(event) = software_perf_event() else {
            eprintln!(
                "skipped: perf_event_open refused here: {}",
                io::Error::last_os_error()
            );
            return;
        };
        // O_NONBLOCK is a flag of the open file description, so dups share it: it marks
        // `event`'s dups among any other perf fds of this (multi-threaded) test process.
        // SAFETY: fcntl on an fd we own.
        let marked = |fd: &OwnedFd| unsafe {
            libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) & libc::O_NONBLOCK != 0
        };
        // SAFETY: fcntl on an fd we own.
        assert_eq!(
            unsafe { libc::fcntl(event.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) },
            0
        );
        let (pipes, _w) = pipes(1);
        let found = other_perf_events(&pipes);
        assert!(found.iter().any(marked), "the open perf event is found");
        assert!(
            found.iter().all(|f| f.as_raw_fd() != event.as_raw_fd()),
            "dups, not the fd"
        );
        drop(found);
        let taken = vec![event];
        let again = other_perf_events(&taken);
        assert!(!again.iter().any(marked), "a taken fd is not duplicated");
    }

    #[test]
    fn fds_cross_the_socket_in_batches_and_are_confirmed() {
        for n in [0, 1, SCM_MAX_FD, SCM_MAX_FD + 1, 600] {
            let (a, b) = socketpair().unwrap();
            let (readers, mut writers) = pipes(n);
            let receiver = std::thread::spawn(move || {
                let (fds, confirmed) = receive_all(b.as_raw_fd());
                (fds, confirmed)
            });
            send_all(&a, &readers).unwrap();
            assert_eq!(recv_u64(&a).unwrap(), n as u64);
            drop(readers);
            let (fds, confirmed) = receiver.join().unwrap();
            assert!(confirmed);
            assert_eq!(fds.len(), n);
            // The read ends are open only in `fds` now: closing them breaks every pipe.
            close_in_parallel(fds, 8, &NoProgress);
            for w in &mut writers {
                let err = std::io::Write::write(w, b"x").unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
            }
        }
    }

    #[test]
    fn a_stream_without_the_end_message_is_not_confirmed() {
        let (a, b) = socketpair().unwrap();
        let (readers, _writers) = pipes(3);
        let fds: Vec<RawFd> = readers.iter().map(|f| f.as_raw_fd()).collect();
        send_msg(&a, MSG_FDS, 3, &fds).unwrap();
        drop(a);
        let (got, confirmed) = receive_all(b.as_raw_fd());
        assert_eq!(got.len(), 3);
        assert!(!confirmed);
    }

    #[test]
    fn a_dead_peer_is_a_send_or_confirm_error() {
        let (a, b) = socketpair().unwrap();
        drop(b);
        let (readers, _writers) = pipes(2);
        let err = send_all(&a, &readers).unwrap_err();
        assert!(matches!(err, HandoffError::Send(_)), "{err}");
        let err = recv_u64(&a).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    }
}
