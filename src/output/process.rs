//! PROCESS column: `exe:pid` from /proc, cut to 16 characters with a leading `~`, cached per pid.

use std::path::PathBuf;

use super::fasthash::FastMap;
use super::text::tail_with_tilde;

/// Width pwru keeps of `exe:pid`.
pub const PROCESS_WIDTH: usize = 16;

/// Cache of PROCESS strings per pid.
#[derive(Debug)]
pub struct ProcessNames {
    proc_root: PathBuf,
    cache: FastMap<u32, Box<str>>,
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

    /// Seeds the cache: `exe` is the executable path, `None` for a pid with no process.
    pub fn insert(&mut self, pid: u32, exe: Option<&str>) {
        self.cache.insert(pid, format_process(pid, exe).into());
    }

    /// The PROCESS string of `pid`, looked up once.
    pub fn get(&mut self, pid: u32) -> &str {
        if !self.cache.contains_key(&pid) {
            let exe = self.read_exe(pid);
            self.insert(pid, exe.as_deref());
        }
        self.cache.get(&pid).map_or("", |s| s)
    }

    /// `Some(path)` when the process exists (`""` when its exe is unreadable, e.g. kernel
    /// threads), `None` when it does not.
    fn read_exe(&self, pid: u32) -> Option<String> {
        let dir = self.proc_root.join(pid.to_string());
        std::fs::symlink_metadata(&dir).ok()?;
        Some(
            std::fs::read_link(dir.join("exe"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )
    }
}

/// `exe:pid` cut to 16 with `~`, or `<empty>:pid` for an unknown process.
pub fn format_process(pid: u32, exe: Option<&str>) -> String {
    match exe {
        None => format!("<empty>:{pid}"),
        Some(exe) => tail_with_tilde(&format!("{exe}:{pid}"), PROCESS_WIDTH),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let table: &[(u32, Option<&str>, &str)] = &[
            (12345, Some("/usr/bin/curl"), "~/bin/curl:12345"),
            (4526, Some("/bin/pwru"), "/bin/pwru:4526"),
            (0, None, "<empty>:0"),
            (4194304, None, "<empty>:4194304"),
            (15, Some(""), ":15"),
        ];
        for (pid, exe, want) in table {
            assert_eq!(format_process(*pid, *exe), *want);
        }
    }

    #[test]
    fn resolves_own_process_and_missing_pids() {
        let mut names = ProcessNames::new();
        let me = std::process::id();
        let exe = std::env::current_exe().unwrap();
        let want = format_process(me, Some(&exe.to_string_lossy()));
        assert_eq!(names.get(me), want);
        // pid 0 never has a /proc entry.
        assert_eq!(names.get(0), "<empty>:0");
        names.insert(7, Some("/x"));
        assert_eq!(names.get(7), "/x:7");
    }
}
