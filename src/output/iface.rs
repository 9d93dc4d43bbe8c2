//! IFACE column: interface names keyed by (netns inode, ifindex). Built by entering every
//! network namespace in a helper thread (setns) and listing its links; no fd outlives the scan.

use std::collections::HashSet;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::text::{push_centered, tail_with_tilde};
use crate::fasthash::FastMap;

/// Width of the IFACE column.
pub const IFACE_WIDTH: usize = 16;

/// Interface names per (netns inode, ifindex), plus the centred column text cache.
#[derive(Debug, Default, Clone)]
pub struct IfaceNames {
    names: FastMap<(u32, u32), Box<str>>,
    centered: FastMap<(u32, u32), Box<str>>,
}

/// What a scan could not read (the names it found are kept).
#[derive(Debug, Default)]
pub struct ScanErrors(pub Vec<(PathBuf, io::Error)>);

impl IfaceNames {
    /// An empty table (every interface printed as its bare ifindex).
    pub fn new() -> Self {
        Self::default()
    }

    /// Scans the netns of every process (`/proc/<pid>/ns/net`) and every `/run/netns/*`.
    pub fn scan() -> (Self, ScanErrors) {
        Self::scan_paths(default_netns_paths())
    }

    /// Scans the given netns files (duplicates by inode are entered once).
    pub fn scan_paths(paths: Vec<PathBuf>) -> (Self, ScanErrors) {
        let joined = std::thread::Builder::new()
            .name("pwru-netns-scan".into())
            .spawn(move || scan_in_this_thread(paths));
        let (found, errors) = match joined.map(|h| h.join()) {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => (
                Vec::new(),
                vec![(
                    PathBuf::new(),
                    io::Error::other("netns scan thread panicked"),
                )],
            ),
            Err(e) => (Vec::new(), vec![(PathBuf::new(), e)]),
        };
        let mut names = Self::new();
        for (netns, ifindex, name) in found {
            names.insert(netns, ifindex, &name);
        }
        (names, ScanErrors(errors))
    }

    /// Records one interface.
    pub fn insert(&mut self, netns: u32, ifindex: u32, name: &str) {
        self.names.insert((netns, ifindex), name.into());
        self.centered.remove(&(netns, ifindex));
    }

    /// Number of known interfaces.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The interface name, if known.
    pub fn name(&self, netns: u32, ifindex: u32) -> Option<&str> {
        self.names.get(&(netns, ifindex)).map(|n| &**n)
    }

    /// `name:ifindex` (cut to 16 with `~`), or the bare ifindex when unknown (JSON `iface`).
    pub fn label(&self, netns: u32, ifindex: u32) -> String {
        match self.name(netns, ifindex) {
            Some(name) => tail_with_tilde(&format!("{name}:{ifindex}"), IFACE_WIDTH),
            None => ifindex.to_string(),
        }
    }

    /// The label centred in 16 columns (table IFACE column), cached.
    pub fn centered(&mut self, netns: u32, ifindex: u32) -> &str {
        let key = (netns, ifindex);
        if !self.centered.contains_key(&key) {
            let mut s = String::with_capacity(IFACE_WIDTH);
            push_centered(&mut s, &self.label(netns, ifindex), IFACE_WIDTH);
            self.centered.insert(key, s.into());
        }
        self.centered.get(&key).map_or("", |s| s)
    }
}

/// `/proc/<pid>/ns/net` for every process, then `/run/netns/*`.
pub fn default_netns_paths() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let name = entry.file_name();
            if name
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            {
                paths.push(entry.path().join("ns/net"));
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        paths.extend(dir.flatten().map(|e| e.path()));
    }
    paths
}

type Found = Vec<(u32, u32, String)>;

/// Enters each netns in turn and lists its links. Runs in a throwaway thread: `setns`
/// changes only the calling thread's namespace, and the thread ends with the scan.
fn scan_in_this_thread(paths: Vec<PathBuf>) -> (Found, Vec<(PathBuf, io::Error)>) {
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let inode = match std::fs::metadata(&path) {
            Ok(m) => m.ino() as u32,
            // Processes exit while we scan; that is not worth reporting.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                errors.push((path, e));
                continue;
            }
        };
        if !seen.insert(inode) {
            continue;
        }
        match links_in_netns(&path) {
            Ok(links) => found.extend(links.into_iter().map(|(idx, name)| (inode, idx, name))),
            Err(e) => errors.push((path, e)),
        }
    }
    (found, errors)
}

/// Enters the netns at `path` (this thread only) and lists `(ifindex, name)` of its links.
fn links_in_netns(path: &Path) -> io::Result<Vec<(u32, String)>> {
    let ns = File::open(path)?;
    // SAFETY: setns with a valid namespace fd; affects only the calling thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    drop(ns);
    list_links()
}

/// `(ifindex, name)` of the current thread's netns, via if_nameindex(3) (rtnetlink inside libc).
fn list_links() -> io::Result<Vec<(u32, String)>> {
    // SAFETY: if_nameindex returns a heap array terminated by a zero entry, or null on error;
    // it is freed once with if_freenameindex.
    unsafe {
        let head = libc::if_nameindex();
        if head.is_null() {
            return Err(io::Error::last_os_error());
        }
        let mut links = Vec::new();
        let mut cur = head;
        while (*cur).if_index != 0 && !(*cur).if_name.is_null() {
            let name = CStr::from_ptr((*cur).if_name)
                .to_string_lossy()
                .into_owned();
            links.push(((*cur).if_index, name));
            cur = cur.add(1);
        }
        libc::if_freenameindex(head);
        Ok(links)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans open netns fds process-wide; the fd-count checks must not overlap.
    static SCAN_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn open_netns_fds() -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("net:["))
            })
            .count()
    }

    #[test]
    fn labels_and_centering() {
        let mut names = IfaceNames::new();
        names.insert(4026531840, 2, "eth0");
        names.insert(4026531840, 7, "a-very-long-interface-name");
        let table: &[(u32, u32, &str, &str)] = &[
            (4026531840, 2, "eth0:2", "     eth0:2     "),
            (4026531840, 3, "3", "       3        "),
            (1, 2, "2", "       2        "),
            (4026531840, 0, "0", "       0        "),
            (4026531840, 7, "~nterface-name:7", "~nterface-name:7"),
        ];
        for (ns, idx, label, centered) in table {
            assert_eq!(names.label(*ns, *idx), *label);
            assert_eq!(names.centered(*ns, *idx), *centered);
        }
    }

    #[test]
    fn scan_finds_loopback_in_a_new_netns_without_leaking_fds() {
        let _guard = SCAN_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // A thread in a fresh netns: it has only `lo`, ifindex 1.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            // SAFETY: unshare of the net namespace for this thread only.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            let tid = unsafe { libc::gettid() };
            tx.send((rc, tid)).unwrap();
            let _ = done_rx.recv();
        });
        let (rc, tid) = rx.recv().unwrap();
        if rc != 0 {
            let _ = done_tx.send(());
            holder.join().unwrap();
            eprintln!(
                "skipped: unshare(CLONE_NEWNET) failed ({}), needs root",
                io::Error::last_os_error()
            );
            return;
        }
        let path = PathBuf::from(format!("/proc/self/task/{tid}/ns/net"));
        let inode = std::fs::metadata(&path).unwrap().ino() as u32;
        let own_inode = std::fs::metadata("/proc/self/ns/net").unwrap().ino() as u32;
        let before = open_netns_fds();
        let (names, errors) = IfaceNames::scan_paths(vec![path, "/proc/self/ns/net".into()]);
        let after = open_netns_fds();
        let _ = done_tx.send(());
        holder.join().unwrap();
        assert!(errors.0.is_empty(), "{:?}", errors.0);
        assert_eq!(names.name(inode, 1), Some("lo"));
        assert_eq!(names.label(inode, 1), "lo:1");
        assert_eq!(
            names.name(own_inode, 1),
            Some("lo"),
            "own netns scanned too"
        );
        assert_eq!(before, after, "netns fds leaked");
    }

    #[test]
    fn full_scan_includes_our_netns() {
        let _guard = SCAN_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (names, _errors) = IfaceNames::scan();
        let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino() as u32;
        assert_eq!(names.name(own, 1), Some("lo"));
        assert_eq!(open_netns_fds(), 0);
    }
}
