//! PROCESS column: `exe:pid` from /proc, else the task name the probe recorded (`comm:pid`,
//! for a process that exited before its line was printed), cached per pid and name.

use std::path::PathBuf;

use super::text::tail_with_tilde;
use crate::fasthash::FastMap;
use crate::probes::event::COMM_LEN;

/// Width pwru keeps of `exe:pid` in the table.
pub const PROCESS_WIDTH: usize = 16;

/// One process's name, whole and as the table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessName {
    /// `exe:pid`, `comm:pid` or `<empty>:pid` in full (JSON `process`).
    pub full: Box<str>,
    /// The same cut to [`PROCESS_WIDTH`] with a leading `~` (the PROCESS column).
    pub column: Box<str>,
}

impl ProcessName {
    fn new(full: String) -> Self {
        let column = tail_with_tilde(&full, PROCESS_WIDTH).into();
        Self {
            full: full.into(),
            column,
        }
    }
}

/// Cache of PROCESS names per pid and recorded task name.
#[derive(Debug)]
pub struct ProcessNames {
    proc_root: PathBuf,
    cache: FastMap<(u32, [u8; COMM_LEN]), ProcessName>,
}

impl Default for ProcessNames {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessNames {
    /// Resolves pids through `/proc`.
    pub fn new() -> Self {
        Self::with_proc_root("/proc")
    }

    /// Resolves pids through another procfs mount (tests, containers).
    pub fn with_proc_root(root: impl Into<PathBuf>) -> Self {
        Self {
            proc_root: root.into(),
            cache: FastMap::default(),
        }
    }

    /// Seeds the cache for events of `pid` named `comm`: `exe` is the executable path,
    /// `None` for a pid with no process.
    pub fn insert(&mut self, pid: u32, comm: &[u8; COMM_LEN], exe: Option<&str>) {
        let name = format_process(pid, exe, &comm_text(comm));
        self.cache.insert((pid, *comm), ProcessName::new(name));
    }

    /// The name of the process `pid` whose thread `tid` was named `comm` when the probe
    /// ran, looked up once.
    pub fn get(&mut self, pid: u32, tid: u32, comm: &[u8; COMM_LEN]) -> &ProcessName {
        let key = (pid, *comm);
        if !self.cache.contains_key(&key) {
            let comm_text = comm_text(comm);
            let exe = self.read_exe(pid, tid, &comm_text);
            let name = format_process(pid, exe.as_deref(), &comm_text);
            self.cache.insert(key, ProcessName::new(name));
        }
        &self.cache[&key]
    }

    /// `Some(path)` when `pid` is still the process the event came from (`""` when its exe
    /// is unreadable, e.g. kernel threads), `None` when it is gone. With a recorded name,
    /// the live thread (or the process) must still carry it: a pid reused by another
    /// program, or a process that has exec'd since, keeps the recorded name.
    fn read_exe(&self, pid: u32, tid: u32, comm: &str) -> Option<String> {
        let dir = self.proc_root.join(pid.to_string());
        std::fs::symlink_metadata(&dir).ok()?;
        if !comm.is_empty() {
            let live = std::fs::read_to_string(dir.join("task").join(tid.to_string()).join("comm"))
                .or_else(|_| std::fs::read_to_string(dir.join("comm")))
                .ok()?;
            if live.trim_end_matches('\n') != comm {
                return None;
            }
        }
        Some(
            std::fs::read_link(dir.join("exe"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )
    }
}

/// The recorded task name up to its first NUL.
fn comm_text(comm: &[u8; COMM_LEN]) -> String {
    let len = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&comm[..len]).into_owned()
}

/// `exe:pid`; for a process without a readable exe (gone, or a kernel thread) the recorded
/// task name, `comm:pid`; without either `:pid` for a live process and `<empty>:pid` for
/// an unknown one, as pwru prints them.
pub fn format_process(pid: u32, exe: Option<&str>, comm: &str) -> String {
    match exe {
        Some(exe) if !exe.is_empty() => format!("{exe}:{pid}"),
        _ if !comm.is_empty() => format!("{comm}:{pid}"),
        Some(_) => format!(":{pid}"),
        None => format!("<empty>:{pid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comm(name: &str) -> [u8; COMM_LEN] {
        let mut raw = [0u8; COMM_LEN];
        raw[..name.len()].copy_from_slice(name.as_bytes());
        raw
    }

    #[test]
    fn formats() {
        let table: &[(u32, Option<&str>, &str, &str)] = &[
            (12345, Some("/usr/bin/curl"), "curl", "/usr/bin/curl:12345"),
            (4526, Some("/bin/pwru"), "", "/bin/pwru:4526"),
            (0, None, "", "<empty>:0"),
            (4194304, None, "", "<empty>:4194304"),
            (15, Some(""), "", ":15"),
            // Gone before its line was printed: the name the probe recorded.
            (4321, None, "ping", "ping:4321"),
            (0, None, "swapper/3", "swapper/3:0"),
            // A kernel thread (no exe).
            (15, Some(""), "kworker/0:1", "kworker/0:1:15"),
        ];
        for (pid, exe, comm, want) in table {
            assert_eq!(format_process(*pid, *exe, comm), *want);
        }
    }

    #[test]
    fn json_keeps_the_whole_name_and_the_column_cuts_it() {
        let mut names = ProcessNames::with_proc_root("/nonexistent");
        names.insert(12345, &comm("curl"), Some("/usr/local/bin/curl"));
        let name = names.get(12345, 12345, &comm("curl"));
        assert_eq!(&*name.full, "/usr/local/bin/curl:12345");
        assert_eq!(&*name.column, "~/bin/curl:12345");
        assert_eq!(name.column.len(), PROCESS_WIDTH);
        let long = names.get(77, 77, &comm("a-long-thread-n"));
        assert_eq!(&*long.full, "a-long-thread-n:77");
        assert_eq!(&*long.column, "~ong-thread-n:77");
    }

    #[test]
    fn resolves_own_process_and_missing_pids() {
        let mut names = ProcessNames::new();
        let me = std::process::id();
        let exe = std::env::current_exe().unwrap();
        let want = format_process(me, Some(&exe.to_string_lossy()), "");
        // No recorded name: /proc alone.
        assert_eq!(&*names.get(me, me, &[0; COMM_LEN]).full, want);
        // The recorded name matches this thread's: the exe.
        let own = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
        let tid = std::fs::read_link("/proc/thread-self")
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .parse()
            .unwrap();
        assert_eq!(&*names.get(me, tid, &comm(own.trim_end())).full, want);
        // Another name under our pid: the process has exec'd or the pid was reused.
        assert_eq!(
            &*names.get(me, tid, &comm("not-us")).full,
            format!("not-us:{me}")
        );
        // pid 0 never has a /proc entry.
        assert_eq!(&*names.get(0, 0, &[0; COMM_LEN]).full, "<empty>:0");
        assert_eq!(&*names.get(0, 0, &comm("swapper/1")).full, "swapper/1:0");
        names.insert(7, &[0; COMM_LEN], Some("/x"));
        assert_eq!(&*names.get(7, 7, &[0; COMM_LEN]).column, "/x:7");
    }

    #[test]
    fn a_process_that_exited_is_named_by_its_recorded_comm() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let mut names = ProcessNames::new();
        assert_eq!(
            &*names.get(pid, pid, &comm("true")).full,
            format!("true:{pid}")
        );
    }
}
