//! NETNS NAME column (`--output-netns-names`): netns inode -> name of its `/run/netns/*`
//! bind mount (as `ip netns add` creates), read once at start-up.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::text::{pad_from, tail_with_tilde};
use crate::fasthash::FastMap;

/// Where `ip netns` keeps its named network namespaces.
pub const RUN_NETNS: &str = "/run/netns";

/// Narrowest NETNS NAME column (pwru raises `--netns-names-max-length` to this).
pub const MIN_NETNS_NAME_WIDTH: usize = 10;

/// `statfs` magic of nsfs (`NSFS_MAGIC` in linux/magic.h).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Netns names by netns inode.
#[derive(Debug, Default, Clone)]
pub struct NetnsNames {
    names: FastMap<u32, Box<str>>,
}

impl NetnsNames {
    /// An empty table (every NETNS NAME cell blank).
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the netns with inode `netns`; the first name given for an inode wins.
    pub fn insert(&mut self, netns: u32, name: &str) {
        self.names.entry(netns).or_insert_with(|| name.into());
    }

    /// The name of netns `netns`, or "" when it has none.
    pub fn get(&self, netns: u32) -> &str {
        self.names.get(&netns).map_or("", |n| n)
    }

    /// Number of named netns.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no netns is named.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Reads [`RUN_NETNS`]. A missing directory gives an empty table; entries that cannot be
    /// read come back as warnings.
    pub fn scan() -> (Self, Vec<String>) {
        Self::scan_dir(Path::new(RUN_NETNS))
    }

    /// Names every nsfs bind mount in `dir` by its file name (sorted, so the first name of a
    /// netns mounted twice wins). Plain files (a stale entry whose mount is gone) are skipped.
    pub fn scan_dir(dir: &Path) -> (Self, Vec<String>) {
        let mut names = Self::new();
        let mut warnings = Vec::new();
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (names, warnings),
            Err(e) => return (names, vec![format!("listing {}: {e}", dir.display())]),
        };
        let mut found: Vec<(String, u32)> = Vec::new();
        for entry in entries {
            let path = match entry {
                Ok(entry) => entry.path(),
                Err(e) => {
                    warnings.push(format!("listing {}: {e}", dir.display()));
                    continue;
                }
            };
            match netns_inode(&path) {
                Ok(Some(inode)) => found.push((
                    path.file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                    inode,
                )),
                Ok(None) => {}
                Err(e) => warnings.push(format!("reading netns {}: {e}", path.display())),
            }
        }
        found.sort();
        for (name, inode) in found {
            names.insert(inode, &name);
        }
        (names, warnings)
    }

    /// Appends the NETNS NAME cell: the name padded to `width`, or `~` and its last
    /// `width - 1` characters when longer.
    pub fn push_cell(&self, buf: &mut String, netns: u32, width: usize) {
        let name = self.get(netns);
        let start = buf.len();
        if name.chars().count() <= width {
            buf.push_str(name);
        } else {
            buf.push_str(&tail_with_tilde(name, width));
        }
        pad_from(buf, start, width);
    }
}

/// The netns inode behind `path` when it is an nsfs file, `None` for any other file.
fn netns_inode(path: &Path) -> io::Result<Option<u32>> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `c_path` is a valid NUL-terminated string and `fs` a writable statfs buffer.
    let mut fs_info: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut fs_info) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if fs_info.f_type as i64 != NSFS_MAGIC {
        return Ok(None);
    }
    Ok(u32::try_from(fs::metadata(path)?.ino()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> NetnsNames {
        let mut n = NetnsNames::new();
        n.insert(4026532001, "blue");
        n.insert(4026532002, "a-rather-long-netns-name");
        n.insert(4026532001, "second-name-ignored");
        n
    }

    #[test]
    fn cells_are_padded_or_truncated_with_tilde() {
        let n = names();
        for (netns, width, want) in [
            (4026532001, 10, "blue      "),
            (4026532002, 10, "~etns-name"),
            (4026532002, 16, "~long-netns-name"),
            (4026532002, 26, "a-rather-long-netns-name  "),
            (1, 10, "          "),
        ] {
            let mut buf = String::from(">");
            n.push_cell(&mut buf, netns, width);
            assert_eq!(&buf[1..], want);
        }
        assert_eq!(n.get(4026532001), "blue");
        assert_eq!(n.get(7), "");
        assert_eq!(n.len(), 2);
    }

    #[test]
    fn scan_of_missing_dir_is_empty() {
        let (n, warnings) = NetnsNames::scan_dir(Path::new("/nonexistent/pwru/netns"));
        assert!(n.is_empty() && warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn scan_skips_plain_files() {
        let dir = std::env::temp_dir().join(format!("pwru-netns-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("stale"), "").unwrap();
        let (n, warnings) = NetnsNames::scan_dir(&dir);
        assert!(n.is_empty() && warnings.is_empty(), "{warnings:?}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Names a real netns when it can create one (root): `unshare` a netns in a thread and
    /// bind-mount it into a temp dir, as `ip netns add` does.
    #[test]
    fn scan_names_a_bind_mounted_netns() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to create and bind-mount a netns");
            return;
        }
        let dir = std::env::temp_dir().join(format!("pwru-netns-mount-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let target = dir.join("pwru-test-ns");
        fs::write(&target, "").unwrap();
        let target_c = CString::new(target.as_os_str().as_bytes()).unwrap();
        let inode = std::thread::spawn(move || -> io::Result<u32> {
            // SAFETY: plain syscalls on this thread; the netns change dies with the thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let src = CString::new("/proc/thread-self/ns/net").unwrap();
            let rc = unsafe {
                libc::mount(
                    src.as_ptr(),
                    target_c.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(fs::metadata("/proc/thread-self/ns/net")?.ino() as u32)
        })
        .join()
        .unwrap();
        let inode = match inode {
            Ok(i) => i,
            Err(e) => {
                eprintln!("skipped: cannot create a netns bind mount here: {e}");
                let _ = fs::remove_dir_all(&dir);
                return;
            }
        };
        let (n, warnings) = NetnsNames::scan_dir(&dir);
        let c = CString::new(target.as_os_str().as_bytes()).unwrap();
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        let _ = fs::remove_dir_all(&dir);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(n.get(inode), "pwru-test-ns");
        assert_eq!(n.len(), 1);
    }
}
