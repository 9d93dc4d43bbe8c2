//! Facts about the machine the tracer runs on, read with syscalls: privileges, what the
//! kernel offers the backends, netns inodes and interface indexes inside a netns.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::attach::{self, KernelSupport};
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
    #[error("--filter-ifname {0:?} contains NUL")]
    NulInIfname(String),
    #[error("opening netns {}", path.display())]
    OpenNetns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("entering --filter-netns")]
    EnterNetns(#[source] io::Error),
    #[error("--filter-ifname: no interface {0:?} in that network namespace")]
    NoSuchInterface(String),
    #[error("interface lookup thread panicked")]
    LookupPanicked,
}

/// Loading eBPF programs needs root (or the capabilities it implies).
pub fn require_root() -> Result<(), HostError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(HostError::NotRoot);
    }
    Ok(())
}

/// What the running kernel offers the backends (fprobe from its symbols).
pub fn kernel_support(kallsyms: &Ksyms) -> KernelSupport {
    KernelSupport {
        kprobes: attach::kprobes_available(),
        fprobe: !kallsyms.addresses_of("register_fprobe").is_empty(),
    }
}

/// The netns inode: stat of the path, or the given inode.
pub fn netns_inode(spec: &NetnsSpec) -> Result<u32, HostError> {
    let path = match spec {
        NetnsSpec::Inode(n) => return Ok(*n),
        NetnsSpec::Path(p) => p,
    };
    let inode = fs::metadata(path).and_then(|m| {
        let ino = m.ino();
        u32::try_from(ino).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "netns inode {ino} of {} does not fit in 32 bits",
                    path.display()
                ),
            )
        })
    });
    inode.map_err(|source| HostError::NetnsInode {
        spec: spec.clone(),
        source,
    })
}

/// The index of interface `name` inside the netns at `netns` (or ours), looked up from a
/// thread of our own that enters the netns.
pub fn ifindex_in_netns(name: &str, netns: Option<PathBuf>) -> Result<u32, HostError> {
    let cname = CString::new(name).map_err(|_| HostError::NulInIfname(name.to_string()))?;
    let name = name.to_string();
    let lookup = move || -> Result<u32, HostError> {
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
        // SAFETY: cname is a valid NUL-terminated string.
        match unsafe { libc::if_nametoindex(cname.as_ptr()) } {
            0 => Err(HostError::NoSuchInterface(name)),
            i => Ok(i),
        }
    };
    std::thread::spawn(lookup)
        .join()
        .map_err(|_| HostError::LookupPanicked)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_inodes() {
        assert_eq!(netns_inode(&NetnsSpec::Inode(7)).unwrap(), 7);
        let own = netns_inode(&NetnsSpec::Path("/proc/self/ns/net".into())).unwrap();
        assert!(own > 0);
        let missing = netns_inode(&NetnsSpec::Path("/nonexistent/ns".into())).unwrap_err();
        assert_eq!(missing.to_string(), "--filter-netns /nonexistent/ns");
        assert!(std::error::Error::source(&missing).is_some());
    }

    #[test]
    fn interfaces_in_our_netns() {
        assert_eq!(ifindex_in_netns("lo", None).unwrap(), 1);
        assert!(matches!(
            ifindex_in_netns("no-such-if0", None),
            Err(HostError::NoSuchInterface(_))
        ));
        assert!(matches!(
            ifindex_in_netns("a\0b", None),
            Err(HostError::NulInIfname(_))
        ));
        let err = ifindex_in_netns("lo", Some("/nonexistent/ns".into())).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ns"), "{err}");
    }
}
