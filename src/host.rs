//! Facts about the machine the tracer runs on, read with syscalls: privileges, what the
//! kernel offers the backends, netns inodes and interface indexes inside a netns.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::attach::{self, KernelSupport};
use crate::btf::KernelBtf;
use crate::output::netns::RUN_NETNS;
use crate::output::Ksyms;
use crate::settings::NetnsSpec;

/// Why a host fact could not be read. Messages name the flag that asked for it.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("pwru needs root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN) to load eBPF programs: run it with sudo")]
    NotRoot,
    #[error("--filter-netns {spec}")]
    NetnsInode {
        spec: NetnsSpec,
        #[source]
        source: io::Error,
    },
    #[error("--filter-netns {spec}: no such network namespace (`ip netns list` shows the named ones; a process's is /proc/<pid>/ns/net)")]
    NoSuchNetns { spec: NetnsSpec },
    #[error("--filter-netns {spec} is not a network namespace (use a name from `ip netns list`, /proc/<pid>/ns/net or inode:<n>)")]
    NotNetns { spec: NetnsSpec },
    #[error("--filter-ifname '{0}' contains NUL")]
    NulInIfname(String),
    #[error("opening netns {}", path.display())]
    OpenNetns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("entering --filter-netns")]
    EnterNetns(#[source] io::Error),
    #[error("--filter-ifname '{0}': no such interface in {1}")]
    NoSuchInterface(String, Searched),
    #[error("--filter-ifname '{name}': no such interface in {searched}, but {}: add --filter-netns {}", has_one(found_in), found_in[0])]
    InterfaceInOtherNetns {
        name: String,
        searched: Searched,
        /// As `--filter-netns` takes them: `ip netns` names, else `/proc/<pid>/ns/net`.
        found_in: Vec<String>,
    },
    #[error("interface lookup thread panicked")]
    LookupPanicked,
}

/// "netns blue has one", "netns blue, red have one".
fn has_one(netns: &[String]) -> String {
    let verb = if netns.len() == 1 { "has" } else { "have" };
    format!("netns {} {verb} one", netns.join(", "))
}

/// The network namespace an interface was looked up in, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Searched {
    /// pwru's own (no `--filter-netns`).
    Current,
    /// The `--filter-netns` path.
    Netns(PathBuf),
}

impl std::fmt::Display for Searched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Current => write!(f, "the current network namespace"),
            Self::Netns(path) => write!(f, "netns {}", path.display()),
        }
    }
}

/// The filesystem type of namespace files (`NSFS_MAGIC` of linux/magic.h).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// At most this many other network namespaces are searched for a missing interface.
const MAX_NETNS_SEARCHED: usize = 64;

/// Loading eBPF programs needs root (or the capabilities it implies).
pub fn require_root() -> Result<(), HostError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(HostError::NotRoot);
    }
    Ok(())
}

/// This process's resident memory in KiB: the peak so far (`VmHWM`) and now (`VmRSS`).
pub fn memory_kib() -> Option<(u64, u64)> {
    memory_from_status(&fs::read_to_string("/proc/self/status").ok()?)
}

fn memory_from_status(status: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// The function a kernel with fprobe (`CONFIG_FPROBE`) has.
const FPROBE_FUNC: &str = "register_fprobe";

/// Where to look for fprobe: the running kernel's BTF (cheap, already parsed), or its
/// symbols when the BTF at hand may be another kernel's (`--kernel-btf`).
#[derive(Clone, Copy)]
pub enum FprobeSource<'a> {
    /// A FUNC `register_fprobe` in the running kernel's BTF.
    Btf(&'a KernelBtf),
    /// `register_fprobe` in /proc/kallsyms.
    Kallsyms(&'a Ksyms),
}

/// What the running kernel offers the backends.
pub fn kernel_support(fprobe: FprobeSource<'_>) -> KernelSupport {
    KernelSupport {
        kprobes: attach::kprobes_available(),
        fprobe: match fprobe {
            FprobeSource::Btf(btf) => btf.has_func(FPROBE_FUNC),
            FprobeSource::Kallsyms(ksyms) => !ksyms.addresses_of(FPROBE_FUNC).is_empty(),
        },
    }
}

/// The netns inode: stat of the path (which must be a namespace file), or the given inode.
pub fn netns_inode(spec: &NetnsSpec) -> Result<u32, HostError> {
    let path = match spec {
        NetnsSpec::Inode(n) => return Ok(*n),
        NetnsSpec::Path(p) => p,
    };
    let inode = match fs::metadata(path) {
        Ok(m) => m.ino(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(HostError::NoSuchNetns { spec: spec.clone() })
        }
        Err(source) => {
            return Err(HostError::NetnsInode {
                spec: spec.clone(),
                source,
            })
        }
    };
    if !is_namespace_file(path) {
        return Err(HostError::NotNetns { spec: spec.clone() });
    }
    u32::try_from(inode).map_err(|_| HostError::NetnsInode {
        spec: spec.clone(),
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!("netns inode {inode} does not fit in 32 bits"),
        ),
    })
}

/// Whether `path` is on nsfs, where `/run/netns/*` and `/proc/<pid>/ns/*` lead.
fn is_namespace_file(path: &Path) -> bool {
    let Ok(cpath) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we own; cpath is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(cpath.as_ptr(), &mut st) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs
    let fs_type = st.f_type as i64;
    fs_type == NSFS_MAGIC
}

/// The index of interface `name` inside the netns at `netns` (or ours), looked up from a
/// thread of our own that enters the netns. When it is not there, the other network
/// namespaces that have one are named in the error.
pub fn ifindex_in_netns(name: &str, netns: Option<PathBuf>) -> Result<u32, HostError> {
    let cname = CString::new(name).map_err(|_| HostError::NulInIfname(name.to_string()))?;
    let searched = match &netns {
        Some(path) => Searched::Netns(path.clone()),
        None => Searched::Current,
    };
    let except = fs::metadata(netns.as_deref().unwrap_or(Path::new("/proc/self/ns/net")))
        .map(|m| m.ino())
        .ok();
    match ifindex_in(&cname, netns)? {
        Some(index) => Ok(index),
        None => {
            let found_in = netns_with_interface(&cname, except);
            if found_in.is_empty() {
                Err(HostError::NoSuchInterface(name.to_string(), searched))
            } else {
                Err(HostError::InterfaceInOtherNetns {
                    name: name.to_string(),
                    searched,
                    found_in,
                })
            }
        }
    }
}

/// The index of `name` in the netns at `netns` (or ours), `None` when it has no such
/// interface.
fn ifindex_in(name: &CString, netns: Option<PathBuf>) -> Result<Option<u32>, HostError> {
    let name = name.clone();
    let lookup = move || -> Result<Option<u32>, HostError> {
        if let Some(path) = netns {
            let f = fs::File::open(&path).map_err(|source| HostError::OpenNetns {
                path: path.clone(),
                source,
            })?;
            // SAFETY: setns on a valid fd in a thread of our own that does nothing else.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(HostError::EnterNetns(io::Error::last_os_error()));
            }
        }
        // SAFETY: name is a valid NUL-terminated string.
        match unsafe { libc::if_nametoindex(name.as_ptr()) } {
            0 => Ok(None),
            i => Ok(Some(i)),
        }
    };
    std::thread::spawn(lookup)
        .join()
        .map_err(|_| HostError::LookupPanicked)?
}

/// The network namespaces but `except` (an inode) with an interface `name`, as
/// `--filter-netns` takes them: `ip netns` names first, then `/proc/<pid>/ns/net` of the
/// first process of each unnamed one.
fn netns_with_interface(name: &CString, except: Option<u64>) -> Vec<String> {
    let mut seen: Vec<u64> = except.into_iter().collect();
    let mut candidates: Vec<(String, PathBuf)> = Vec::new();
    let mut consider = |spec: String, path: PathBuf| {
        if let Ok(inode) = fs::metadata(&path).map(|m| m.ino()) {
            if !seen.contains(&inode) && candidates.len() < MAX_NETNS_SEARCHED {
                seen.push(inode);
                candidates.push((spec, path));
            }
        }
    };
    let mut named: Vec<String> = fs::read_dir(RUN_NETNS)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    named.sort();
    for n in named {
        let path = Path::new(RUN_NETNS).join(&n);
        consider(n, path);
    }
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        consider(path.display().to_string(), path);
    }
    candidates
        .into_iter()
        .filter(|(_, path)| matches!(ifindex_in(name, Some(path.clone())), Ok(Some(_))))
        .map(|(spec, _)| spec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_read_from_the_status_lines() {
        let status = "Name:\tpwru\nVmPeak:\t  99 kB\nVmHWM:\t   38536 kB\nVmRSS:\t   35664 kB\n";
        assert_eq!(memory_from_status(status), Some((38536, 35664)));
        assert_eq!(memory_from_status("Name:\tpwru\n"), None);
        assert!(memory_kib().is_some_and(|(peak, now)| peak >= now && now > 0));
    }

    #[test]
    fn netns_inodes() {
        assert_eq!(netns_inode(&NetnsSpec::Inode(7)).unwrap(), 7);
        let own = netns_inode(&NetnsSpec::Path("/proc/self/ns/net".into())).unwrap();
        assert!(own > 0);
        let missing = netns_inode(&NetnsSpec::Path("/nonexistent/ns".into())).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("--filter-netns /nonexistent/ns: no such network namespace"),
            "{missing}"
        );
        let not_netns = netns_inode(&NetnsSpec::Path("/proc/self/status".into())).unwrap_err();
        assert!(
            matches!(not_netns, HostError::NotNetns { .. }),
            "{not_netns}"
        );
    }

    #[test]
    fn interfaces_in_our_netns() {
        assert_eq!(ifindex_in_netns("lo", None).unwrap(), 1);
        let missing = ifindex_in_netns("no-such-if0", None).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "--filter-ifname 'no-such-if0': no such interface in the current network namespace"
        );
        assert!(matches!(
            ifindex_in_netns("a\0b", None),
            Err(HostError::NulInIfname(_))
        ));
        let err = ifindex_in_netns("lo", Some("/nonexistent/ns".into())).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ns"), "{err}");
    }
}
