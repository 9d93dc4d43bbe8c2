//! Raw perf-event kprobes: `perf_event_open(2)` on the kprobe PMU plus the ioctls that hook
//! a loaded BPF program onto the event. What the per-function kprobe backend attaches with.

use std::ffi::CStr;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Where the PMU of perf kprobes publishes its dynamic type number (kernel 4.17+).
pub const KPROBE_PMU_TYPE_FILE: &str = "/sys/bus/event_source/devices/kprobe/type";

/// `PERF_SAMPLE_RAW`.
const SAMPLE_RAW: u64 = 1 << 10;
/// Bit 0 of the `perf_event_attr` flags word: create the event disabled.
const FLAG_DISABLED: u64 = 1;
/// `PERF_FLAG_FD_CLOEXEC`.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
/// `PERF_EVENT_IOC_ENABLE` = `_IO('$', 0)`.
const IOC_ENABLE: libc::c_ulong = 0x2400;
/// `PERF_EVENT_IOC_DISABLE` = `_IO('$', 1)`.
const IOC_DISABLE: libc::c_ulong = 0x2401;
/// `PERF_EVENT_IOC_SET_BPF` = `_IOW('$', 8, __u32)`.
const IOC_SET_BPF: libc::c_ulong = 0x4004_2408;

/// `struct perf_event_attr` up to `config2` (`PERF_ATTR_SIZE_VER1`); the kernel zero-fills
/// the fields it knows past the size we pass.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    /// `kprobe_func`: user pointer to the function name, or 0 to probe `config2` as an address.
    config1: u64,
    /// `kprobe_addr` (when `config1` is 0) or `probe_offset` (from the named function).
    config2: u64,
}

/// Where a kprobe goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KprobePoint<'a> {
    /// The entry of the function with this kallsyms name (the kernel looks it up and
    /// refuses names that are missing, ENOENT, or ambiguous, EADDRNOTAVAIL).
    Symbol(&'a CStr),
    /// A kernel text address (the kernel skips the name lookup).
    Address(u64),
}

/// The kprobe PMU's type number, read from sysfs.
pub fn kprobe_pmu_type() -> io::Result<u32> {
    let text = fs::read_to_string(KPROBE_PMU_TYPE_FILE)?;
    text.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{KPROBE_PMU_TYPE_FILE} holds {:?}, not a number",
                text.trim()
            ),
        )
    })
}

/// Opens a disabled perf kprobe event at `point` (entry probe, all tasks, close-on-exec).
/// Closing the returned fd unregisters the kprobe.
pub fn open_kprobe(pmu_type: u32, point: KprobePoint<'_>) -> io::Result<OwnedFd> {
    let (config1, config2) = match point {
        KprobePoint::Symbol(name) => (name.as_ptr() as u64, 0),
        KprobePoint::Address(addr) => (0, addr),
    };
    let attr = PerfEventAttr {
        type_: pmu_type,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        sample_period: 1,
        sample_type: SAMPLE_RAW,
        flags: FLAG_DISABLED,
        wakeup_events: 1,
        config1,
        config2,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid perf_event_attr prefix whose `size` is its own size; the
    // name pointer in `config1` (when set) points at a NUL-terminated string that outlives
    // the call and is only read. pid -1 with cpu 0 is the form kprobe events take (the BPF
    // program runs on every CPU regardless); group -1 means no group.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            -1 as libc::pid_t,
            0 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: perf_event_open returned a fresh file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

/// `ioctl(event, request, arg)` for the perf ioctls that take an integer argument.
fn perf_ioctl(event: BorrowedFd<'_>, request: libc::c_ulong, arg: libc::c_int) -> io::Result<()> {
    // SAFETY: `event` is an open fd for the duration of the call; the perf ioctls used
    // here take their argument by value and write no memory.
    let ret = unsafe { libc::ioctl(event.as_raw_fd(), request as _, arg) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Runs the kprobe program `prog` on every hit of `event` (`PERF_EVENT_IOC_SET_BPF`), then
/// enables the event. The event holds a reference on the program until it is closed.
pub fn attach_bpf(event: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    perf_ioctl(event, IOC_SET_BPF, prog.as_raw_fd())?;
    perf_ioctl(event, IOC_ENABLE, 0)
}

/// `PERF_EVENT_IOC_DISABLE`: stops delivering the event to perf buffers (BPF programs on
/// kprobe events keep running until the event is closed).
pub fn disable(event: BorrowedFd<'_>) -> io::Result<()> {
    perf_ioctl(event, IOC_DISABLE, 0)
}

/// The kernel switch that turns every RCU grace-period wait into an expedited one.
pub const RCU_EXPEDITED_FILE: &str = "/sys/kernel/rcu_expedited";

/// While alive, RCU grace periods are expedited system-wide (`/sys/kernel/rcu_expedited`
/// = 1). Tearing down a perf kprobe waits for RCU grace periods under the kernel's
/// `event_mutex`, so normal grace periods make detaching 1000+ kprobes take a minute;
/// expedited ones take microseconds. Dropping the guard restores the previous value (only
/// when this guard changed it).
#[derive(Debug)]
pub struct ExpeditedRcu {
    restore: bool,
}

impl ExpeditedRcu {
    /// Turns expedited grace periods on; a kernel without the switch, or a read-only one,
    /// gives a guard that does nothing.
    pub fn enable() -> Self {
        Self::enable_at(RCU_EXPEDITED_FILE)
    }

    fn enable_at(path: &str) -> Self {
        let was_on = fs::read_to_string(path).map(|v| v.trim() != "0");
        let restore = matches!(was_on, Ok(false)) && fs::write(path, b"1").is_ok();
        ExpeditedRcu { restore }
    }

    /// Whether this guard switched expedited grace periods on (and will switch them off).
    pub fn changed(&self) -> bool {
        self.restore
    }

    /// Gives up the restore: another process (the background detacher) does it.
    pub fn hand_over(mut self) {
        self.restore = false;
    }

    /// A guard for a switch that another process turned on and handed over: dropping it
    /// writes 0.
    pub fn take_over() -> Self {
        ExpeditedRcu { restore: true }
    }

    fn restore_at(&mut self, path: &str) {
        if std::mem::take(&mut self.restore) {
            let _ = fs::write(path, b"0");
        }
    }
}

impl Drop for ExpeditedRcu {
    fn drop(&mut self) {
        self.restore_at(RCU_EXPEDITED_FILE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn attr_layout_matches_the_uapi() {
        // PERF_ATTR_SIZE_VER1 and the documented offsets of the fields we set.
        assert_eq!(size_of::<PerfEventAttr>(), 72);
        assert_eq!(offset_of!(PerfEventAttr, sample_type), 24);
        assert_eq!(offset_of!(PerfEventAttr, flags), 40);
        assert_eq!(offset_of!(PerfEventAttr, wakeup_events), 48);
        assert_eq!(offset_of!(PerfEventAttr, config1), 56);
        assert_eq!(offset_of!(PerfEventAttr, config2), 64);
    }

    #[test]
    fn ioctl_numbers_match_the_uapi() {
        // _IOC(dir, type, nr, size) = dir << 30 | size << 16 | type << 8 | nr.
        let io = |nr: libc::c_ulong| (b'$' as libc::c_ulong) << 8 | nr;
        assert_eq!(IOC_ENABLE, io(0));
        assert_eq!(IOC_DISABLE, io(1));
        assert_eq!(IOC_SET_BPF, 1 << 30 | 4 << 16 | io(8));
    }

    #[test]
    fn errors_come_back_as_errno() {
        // No PMU has this type number: the kernel answers ENOENT without a kprobe PMU too.
        let err = open_kprobe(u32::MAX - 7, KprobePoint::Address(0)).unwrap_err();
        assert!(err.raw_os_error().is_some(), "{err}");
        // The perf ioctls on something that is not a perf event: ENOTTY (or EINVAL).
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        use std::os::fd::AsFd;
        let err = disable(file.as_fd()).unwrap_err();
        assert!(
            matches!(err.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL)),
            "{err}"
        );
        let err = attach_bpf(file.as_fd(), file.as_fd()).unwrap_err();
        assert!(err.raw_os_error().is_some(), "{err}");
    }

    #[test]
    fn kprobe_events_open_or_report_why_not() {
        // This host may lack kprobes; then the PMU file is missing and that is the error.
        match kprobe_pmu_type() {
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
                eprintln!("skipped: no kprobe PMU here ({KPROBE_PMU_TYPE_FILE}: {e})");
            }
            Ok(pmu) => {
                let missing = c"pwru_no_such_function_xyz";
                let err = open_kprobe(pmu, KprobePoint::Symbol(missing)).unwrap_err();
                assert!(
                    matches!(err.raw_os_error(), Some(libc::ENOENT | libc::EINVAL)),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn expedited_rcu_guard_sets_and_restores_only_what_it_changed() {
        let dir = std::env::temp_dir().join(format!("pwru-rcu-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rcu_expedited");
        let path = file.to_str().unwrap();
        for (before, changed, during) in [("0\n", true, "1"), ("1\n", false, "1\n")] {
            fs::write(&file, before).unwrap();
            let mut guard = ExpeditedRcu::enable_at(path);
            assert_eq!(guard.changed(), changed);
            assert_eq!(fs::read_to_string(&file).unwrap(), during);
            guard.restore_at(path);
            let after = fs::read_to_string(&file).unwrap();
            assert_eq!(after.trim(), before.trim());
            std::mem::forget(guard);
        }
        // No such switch: nothing to do, nothing to restore.
        let guard = ExpeditedRcu::enable_at(dir.join("missing").to_str().unwrap());
        assert!(!guard.changed());
        fs::remove_dir_all(&dir).unwrap();
    }
}
