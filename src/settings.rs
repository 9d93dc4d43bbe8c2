//! What a run needs, resolved once from the command line: the mode and, for a trace, its
//! kernel, backend, filter and output settings. No clap here: `cli` validates and builds these.

use std::fmt;
use std::path::PathBuf;

use regex::Regex;

use crate::attach::{BackendKind, Feature};
use crate::btf::Kmods;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Trace packets through the kernel (the default).
    Trace(Box<TraceSettings>),
    /// `--list-funcs`: print what would be probed, with each backend's targets.
    ListFuncs(ListSettings),
    /// `--dump-filter`: print the eBPF the pcap filter compiles to.
    DumpFilter {
        filter: String,
        /// What packets start with (`--link-type`, `--l3`).
        link: DumpLinkType,
    },
    /// `--filter-check FILE`: run the pcap filter over a capture file (whose link type
    /// says where packets start).
    FilterCheck { capture: PathBuf, filter: String },
}

/// `--dump-filter --link-type`: the link types a filter compiles for, as tcpdump's `-y`
/// names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DumpLinkType {
    /// `EN10MB`: an Ethernet header.
    #[default]
    Ethernet,
    /// `RAW` (`--l3`): an IPv4 or IPv6 header.
    RawIp,
    /// `LINUX_SLL`: Linux cooked capture v1 (`tcpdump -i any` before libpcap 1.10).
    LinuxSll,
    /// `LINUX_SLL2`: Linux cooked capture v2.
    LinuxSll2,
}

/// `--list-funcs`: where the targets come from, whose targets (`--backend`), and which to
/// keep.
#[derive(Debug, Clone, PartialEq)]
pub struct ListSettings {
    pub kernel: KernelSettings,
    pub backend: BackendChoice,
    pub func: Option<FuncFilter>,
}

/// A tracing run.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    pub kernel: KernelSettings,
    pub backend: BackendSettings,
    pub filter: FilterSettings,
    pub output: OutputSettings,
    /// `--debug`: report how long start-up, attaching and detaching took.
    pub debug: bool,
    /// Created once every probe is attached (test harnesses wait for it).
    pub ready_file: Option<PathBuf>,
}

impl TraceSettings {
    /// Whether the probes record which tracked skb a followed clone was made from (for
    /// `--output-journey`, which groups a packet's clones with it).
    pub fn records_clone_parents(&self) -> bool {
        self.output.journey && self.filter.track_skb
    }

    /// Whether this run probes anything besides its backend's targets: the skb trackers'
    /// untrack and clone programs, non-skb functions (`--filter-non-skb-funcs`,
    /// `--filter-track-bpf-helpers`) and the map functions of `--output-bpfmap`.
    pub fn asks_for_helper_programs(&self) -> bool {
        let f = &self.filter;
        f.track_skb
            || f.track_by_stackid
            || !f.non_skb_funcs.is_empty()
            || f.track_bpf_helpers
            || self.output.bpfmap
    }

    /// The backend features this run asks for (checked against the chosen backend).
    pub fn wanted_features(&self) -> Vec<Feature> {
        let mut wanted = wanted_features(&self.filter, &self.output);
        if self.kernel.wants_modules() {
            wanted.push(Feature::ModuleFunctions);
        }
        wanted
    }
}

/// The backend features that `filter` and `output` ask for.
pub fn wanted_features(filter: &FilterSettings, output: &OutputSettings) -> Vec<Feature> {
    let mut wanted = Vec::new();
    if output.caller {
        wanted.push(Feature::Caller);
    }
    if !filter.non_skb_funcs.is_empty() {
        wanted.push(Feature::NonSkbFunctions);
    }
    if filter.track_bpf_helpers {
        wanted.push(Feature::BpfHelpers);
    }
    if filter.track_skb {
        wanted.push(Feature::CloneFollowing);
    }
    wanted
}

/// Where the kernel's BTF comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSettings {
    /// `--kernel-btf`: this file instead of /sys/kernel/btf/vmlinux.
    pub btf: Option<PathBuf>,
    /// `--kmods` / `--all-kmods`: the modules whose functions are probed too.
    pub kmods: Kmods,
}

impl KernelSettings {
    /// Whether `--kmods` or `--all-kmods` asks for module functions.
    pub fn wants_modules(&self) -> bool {
        match &self.kmods {
            Kmods::None => false,
            Kmods::Named(names) => !names.is_empty(),
            Kmods::All => true,
        }
    }
}

/// How the probes attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendSettings {
    pub choice: BackendChoice,
    /// Functions per attach chunk of the kprobe backend (`--filter-kprobe-batch`).
    pub kprobe_batch: usize,
    /// `--detach-wait`: detach in the foreground, never hand kprobes to a background process.
    pub detach_wait: bool,
}

/// `--backend`: a named backend, or `auto` (the best this kernel has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// Pick the best available (also spelled as the empty string).
    #[default]
    Auto,
    Named(BackendKind),
}

impl BackendChoice {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Named(kind) => kind.name(),
        }
    }
}

/// Which packets are traced, and which kernel functions probed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FilterSettings {
    /// The pcap-filter expression ("" = every packet); parsed before the run starts.
    pub pcap: String,
    /// `--filter-func`: probe only the functions (or tracepoints) it matches.
    pub func: Option<FuncFilter>,
    /// `--filter-mark`, when it restricts anything.
    pub mark: Option<MarkFilter>,
    /// `--filter-netns`.
    pub netns: Option<NetnsSpec>,
    /// `--filter-ifname`, resolved in `netns` (or the current netns).
    pub ifname: Option<String>,
    /// `--filter-track-skb`.
    pub track_skb: bool,
    /// `--filter-track-skb-by-stackid` (implied by `--filter-non-skb-funcs`).
    pub track_by_stackid: bool,
    /// `--filter-non-skb-funcs`, as given (names are trimmed and deduplicated at run time).
    pub non_skb_funcs: Vec<String>,
    /// `--filter-skb-expr`, when not blank.
    pub skb_expr: Option<String>,
    /// `--filter-tunnel-pcap-l2` / `-l3`: pcap expressions on the inner frame and the
    /// inner packet of encapsulated traffic.
    pub tunnel: TunnelFilterSettings,
    /// `--filter-trace-tc`: also trace every tc BPF program (fentry and fexit).
    pub trace_tc: bool,
    /// `--filter-track-bpf-helpers`: also probe, as non-skb functions, the kernel
    /// functions that the loaded BPF programs call.
    pub track_bpf_helpers: bool,
    /// `--filter-trace-xdp`: also trace every XDP BPF program (fentry and fexit).
    pub trace_xdp: bool,
    /// `--filter-xdp-expr`, when not blank (only with `trace_xdp`).
    pub xdp_expr: Option<String>,
}

/// `--filter-tunnel-pcap-l2` / `--filter-tunnel-pcap-l3`, when not blank (a blank one
/// passes every packet, as pwru's empty expression does). They apply to skbs with inner
/// headers (`inner_network_header != 0`, VXLAN and Geneve); other skbs pass them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TunnelFilterSettings {
    /// On the inner Ethernet frame (from `inner_mac_header`).
    pub l2: Option<String>,
    /// On the inner IPv4/IPv6 packet (from `inner_network_header`).
    pub l3: Option<String>,
}

/// What is printed, and where.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutputSettings {
    pub timestamp: TimestampMode,
    /// The NETNS, MARK, IFACE, PROTO, MTU and LEN columns.
    pub meta: bool,
    /// The NETNS NAME column and its width (at least 10).
    pub netns_names: Option<usize>,
    pub tuple: bool,
    pub tcp_flags: bool,
    /// The TUNNEL column: the inner tuple of encapsulated traffic (`--output-tunnel`).
    pub tunnel: bool,
    pub caller: bool,
    pub stack: bool,
    /// The `__sk_buff->cb[]` column (`--output-skb-cb`).
    pub skb_cb: bool,
    pub json: bool,
    /// Stop after this many events (0 = no limit).
    pub limit_lines: u64,
    /// `--output-skb-metadata` fields as written (typed from BTF at run time).
    pub skb_metadata: Vec<String>,
    /// `--output-xdp-metadata` fields as written (only with `FilterSettings::trace_xdp`).
    pub xdp_metadata: Vec<String>,
    /// `--output-skb`: dump `struct sk_buff` with every event.
    pub skb_dump: bool,
    /// `--output-skb-shared-info`: dump `struct skb_shared_info` with every event.
    pub shinfo_dump: bool,
    /// `--set-percpu-buf`: bytes of the dump text.
    pub dump_bytes: u32,
    /// `--output-file` and its rotation; `None` is stdout.
    pub file: Option<OutputFile>,
    /// `--summary`: drops by reason and function, and totals, at exit.
    pub summary: bool,
    /// `--output-journey`: one block per packet, printed when its life ends.
    pub journey: bool,
    /// `--output-pcap`: the traced packets as pcap-ng.
    pub pcap: Option<PcapSettings>,
    /// `--output-bpfmap`: map id, name, key and value of the probed map functions.
    pub bpfmap: bool,
}

/// `--output-pcap FILE` and `--output-pcap-snaplen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapSettings {
    pub target: PcapTarget,
    /// Packet bytes kept per event.
    pub snaplen: u32,
}

/// Where `--output-pcap` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PcapTarget {
    /// `-`: the table or JSON lines go to `--output-file`, else to stderr.
    Stdout,
    /// Created or truncated.
    File(PathBuf),
}

/// `--output-file` and its `--output-file-max-*` rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub path: PathBuf,
    /// Rotate before the file passes this many MB (0 = the 100 MB default).
    pub max_size_mb: u64,
    /// Rotated files to keep (0 = all).
    pub max_backups: u64,
    /// Days to keep rotated files (0 = forever).
    pub max_age_days: u64,
    /// gzip rotated files.
    pub compress: bool,
}

/// `--timestamp`: which time columns to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampMode {
    /// No time column.
    #[default]
    None,
    /// TIMESTAMP: monotonic ns since boot (bpf_ktime_get_ns).
    Current,
    /// TIMESTAMP: ns since the previous event of the same skb (0 for the first).
    Relative,
    /// TIME: wall clock at print time, plus TIMESTAMP.
    Absolute,
}

/// `--filter-mark mark[/mask]`: keep packets where `(skb->mark & mask) == (mark & mask)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MarkFilter {
    pub mark: u32,
    /// 0 means "no mark filtering" (the default).
    pub mask: u32,
}

impl MarkFilter {
    /// Whether this filter restricts anything.
    pub fn is_active(&self) -> bool {
        self.mask != 0
    }
    /// Whether a packet with `mark` passes.
    pub fn matches(&self, mark: u32) -> bool {
        mark & self.mask == self.mark & self.mask
    }
}

impl fmt::Display for MarkFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}/{:#x}", self.mark, self.mask)
    }
}

/// `--filter-netns`: a netns file path or a bare inode number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsSpec {
    /// Any netns path such as `/proc/<pid>/ns/net` or `/run/netns/<name>`.
    Path(PathBuf),
    /// `inode:<n>`.
    Inode(u32),
}

impl fmt::Display for NetnsSpec {
    /// As written on the command line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(p) => write!(f, "{}", p.display()),
            Self::Inode(n) => write!(f, "inode:{n}"),
        }
    }
}

/// `--filter-func`: a regex that must match the whole function name.
#[derive(Debug, Clone)]
pub struct FuncFilter {
    /// The pattern as given.
    pub pattern: String,
    anchored: Regex,
}

impl FuncFilter {
    /// Compiles `pattern` anchored at both ends.
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        Ok(FuncFilter {
            pattern: pattern.to_string(),
            anchored: Regex::new(&format!("^(?:{pattern})$"))?,
        })
    }

    /// Whether `name` matches the pattern as a whole.
    pub fn is_match(&self, name: &str) -> bool {
        self.anchored.is_match(name)
    }
}

impl PartialEq for FuncFilter {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn func_filter_matches_whole_names() {
        let f = FuncFilter::new("ip_.*|tcp_v4_rcv").unwrap();
        assert!(f.is_match("ip_rcv") && f.is_match("tcp_v4_rcv"));
        assert!(!f.is_match("xip_rcv") && !f.is_match("tcp_v4_rcv_x"));
        assert!(FuncFilter::new("(").is_err());
    }

    #[test]
    fn netns_spec_prints_as_written() {
        assert_eq!(
            NetnsSpec::Path("/run/netns/blue".into()).to_string(),
            "/run/netns/blue"
        );
        assert_eq!(NetnsSpec::Inode(4026531840).to_string(), "inode:4026531840");
    }

    #[test]
    fn wanted_features_follow_the_flags() {
        let mut filter = FilterSettings::default();
        let mut output = OutputSettings::default();
        assert!(wanted_features(&filter, &output).is_empty());
        output.caller = true;
        filter.non_skb_funcs = vec!["f".into()];
        filter.track_skb = true;
        assert_eq!(
            wanted_features(&filter, &output),
            [
                Feature::Caller,
                Feature::NonSkbFunctions,
                Feature::CloneFollowing
            ]
        );
    }
}
