//! The command line: every flag of pwru 1.0.12 spelled as there (pflag-style booleans
//! included), plus pwru-rs extras, parsed with clap into `Args` and resolved once into `Settings`.

pub mod filter_tools;
mod legacy;
mod resolve;
mod values;

use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};

use crate::settings::{
    BackendChoice, DumpLinkType, FuncFilter, MarkFilter, NetnsSpec, TimestampMode,
};

pub use resolve::{ConfigError, MAX_METADATA_FIELDS, PENDING_MARK};
pub use values::{
    parse_backend, parse_batch, parse_func_filter, parse_go_bool, parse_link_type, parse_mark,
    parse_netns,
};

const ABOUT: &str =
    "pwru: packet, where are you? Traces every kernel function an sk_buff passes through.";

const LONG_ABOUT: &str = "\
pwru: packet, where are you?

Traces every Linux kernel function a packet (struct sk_buff) passes through, keeps the
packets matching a tcpdump-style pcap filter (see `man 7 pcap-filter`), and shows why the
kernel dropped them. Every word after the options is joined into one pcap-filter expression.
Needs root (CAP_BPF + CAP_PERFMON) and a kernel with BTF (/sys/kernel/btf/vmlinux).";

const EXAMPLES: &str = "\
Examples:
  # Why are TCP packets to 1.0.0.1:8080 dropped?
  pwru 'dst host 1.0.0.1 and tcp and dst port 8080'

  # IPv6, with timestamps and the caller of each function
  pwru --timestamp current --output-caller 'ip6 and dst host 2606:4700:4700::1001'

  # Only functions whose whole name matches a regex, with TCP flags and stacks
  pwru --filter-func 'ip_.*|tcp_.*' --output-tcp-flags --output-stack 'tcp[tcpflags] & tcp-syn != 0'

  # Packets with mark 0xa00 in the masked bits, in the network namespace `ip netns` calls blue
  pwru --filter-mark 0xa00/0xf00 --filter-netns blue icmp

  # Keep following a packet after NAT rewrote its address
  pwru --filter-track-skb 'dst host 10.10.20.99'

  # JSON lines to a file, stop after 100 events
  pwru --output-json --output-file /tmp/pwru.json --output-limit-lines 100 arp

  # Booleans take an optional =value, as in the original: hide the meta columns
  pwru --output-meta=false udp

  # The traced packets for Wireshark, one per event, commented with the function and drop reason
  pwru --output-pcap - --output-file /tmp/pwru.log icmp | wireshark -k -i -

  # Without tracing: list the probed functions, show the compiled filter, or test it on a capture
  pwru --list-funcs --filter-func '.*xmit.*'
  pwru --dump-filter --l3 'tcp port 443'
  pwru --filter-check capture.pcap 'udp and port 53'

The original's first flags still work: --filter-src-ip/--filter-dst-ip ADDR,
--filter-src-port/--filter-dst-port PORT and --filter-proto tcp|udp|icmp|icmp6 are joined
with `and` to the pcap filter, --output-relative-timestamp is --timestamp relative, and Go's
single dash (-filter-dst-ip) works for every long flag; pwru prints today's command.";

/// Everything the command line says, as parsed. Field names follow pwru's flag names;
/// [`Args::resolve`] checks them together and turns them into the run's settings.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "pwru",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = EXAMPLES,
    after_help = "Run `pwru --help` for examples.",
    override_usage = "pwru [options] [pcap-filter]",
    args_override_self = true,
    max_term_width = 110
)]
pub struct Args {
    // ---- Kernel and backend ----
    /// Load kernel BTF from this file instead of /sys/kernel/btf/vmlinux (e.g. a btfhub file)
    #[arg(long, value_name = "FILE", help_heading = "Kernel")]
    pub kernel_btf: Option<PathBuf>,

    /// Also probe skb functions of these kernel modules (comma list, repeatable), e.g. --kmods nf_tables,veth
    #[arg(long, value_delimiter = ',', action = ArgAction::Append, value_name = "MOD,...", help_heading = "Kernel")]
    pub kmods: Vec<String>,

    /// Probe every module with BTF under /sys/kernel/btf (all but vmlinux)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Kernel")]
    pub all_kmods: bool,

    /// Tracing backend: auto, kprobe-multi, kprobe, tracepoint or fentry (empty = auto-detect;
    /// auto never picks fentry)
    #[arg(long, default_value = "", value_parser = parse_backend, hide_default_value = true, value_name = "BACKEND", help_heading = "Kernel")]
    pub backend: BackendChoice,

    /// Enable debug logging
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Kernel")]
    pub debug: bool,

    /// Create this file once every probe is attached (used by test harnesses)
    #[arg(long, hide = true, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,

    // ---- Filters ----
    /// Probe only functions whose WHOLE name matches this regex (use '.*foo.*' for a substring)
    #[arg(long, value_parser = parse_func_filter, value_name = "REGEX", help_heading = "Filters")]
    pub filter_func: Option<FuncFilter>,

    /// Also probe these functions that take no skb, reporting the skb last seen on the same kernel stack (kprobe backends; forces --filter-track-skb-by-stackid)
    #[arg(long, value_delimiter = ',', action = ArgAction::Append, value_name = "FUNC,...", help_heading = "Filters")]
    pub filter_non_skb_funcs: Vec<String>,

    /// Keep packets of one netns: a name from `ip netns list` (/run/netns/NAME), a path like /proc/<pid>/ns/net, or inode:<n>
    #[arg(long, value_parser = parse_netns, value_name = "NETNS", help_heading = "Filters")]
    pub filter_netns: Option<NetnsSpec>,

    /// Keep packets with (skb->mark & mask) == (mark & mask); hex (0x..) or decimal; no mask = exact match
    #[arg(long, value_parser = parse_mark, default_value = "0x0/0x0", value_name = "mark[/mask]", help_heading = "Filters")]
    pub filter_mark: MarkFilter,

    /// Keep tracing a packet after it first matched, even if it stops matching (NAT, decapsulation), and its clones and copies (kprobe backends)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Filters")]
    pub filter_track_skb: bool,

    /// Also trace any packet on the kernel stack where a traced packet was last seen (follows a packet freed and rebuilt, e.g. through a bridge)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Filters")]
    pub filter_track_skb_by_stackid: bool,

    /// Trace tc BPF programs (fentry, and fexit for the verdict); programs loaded later too
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Filters")]
    pub filter_trace_tc: bool,

    /// Trace XDP BPF programs (fentry, and fexit for the verdict); programs loaded later too. The pcap filter (at L2), --filter-netns/--filter-ifname and --filter-xdp-expr apply to their packets; --filter-mark and --filter-skb-expr do not (as pwru)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Filters")]
    pub filter_trace_xdp: bool,

    /// Probe, as non-skb functions, the kernel functions (helpers) that the loaded BPF programs on a packet's path call, read from their translated instructions; implies --filter-track-skb-by-stackid
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Filters")]
    pub filter_track_bpf_helpers: bool,

    /// pcap expression for the inner Ethernet frame of VXLAN/Geneve traffic (from skb->inner_mac_header); ANDed with the filter; skbs without inner headers pass it, as in pwru
    #[arg(long, value_name = "EXPR", help_heading = "Filters")]
    pub filter_tunnel_pcap_l2: Option<String>,

    /// pcap expression for the inner IP packet of VXLAN/Geneve traffic (from skb->inner_network_header); ANDed with the filter; skbs without inner headers pass it, as in pwru
    #[arg(long, value_name = "EXPR", help_heading = "Filters")]
    pub filter_tunnel_pcap_l3: Option<String>,

    /// Keep packets of this interface (resolved in --filter-netns, or the current netns)
    #[arg(long, value_name = "IFNAME", help_heading = "Filters")]
    pub filter_ifname: Option<String>,

    /// How many kprobes attach/detach concurrently per batch (kprobe backend)
    #[arg(long, default_value = "10", value_parser = parse_batch, value_name = "N", help_heading = "Filters")]
    pub filter_kprobe_batch: u32,

    /// Keep skbs matching a simple C expression, e.g. 'skb->dev->ifindex == 9'
    #[arg(long, value_name = "EXPR", help_heading = "Filters")]
    pub filter_skb_expr: Option<String>,

    /// Keep XDP buffers matching a simple C expression, e.g. 'xdp->rxq->dev->ifindex == 9' (with --filter-trace-xdp)
    #[arg(long, value_name = "EXPR", help_heading = "Filters")]
    pub filter_xdp_expr: Option<String>,

    // ---- Output ----
    /// Time columns: none, current (TIMESTAMP ns since boot), relative (ns since the skb's previous event), absolute (TIME wall clock + TIMESTAMP)
    #[arg(
        long = "timestamp",
        value_enum,
        default_value = "none",
        value_name = "MODE",
        help_heading = "Output"
    )]
    pub timestamp: TimestampMode,

    /// Print the NETNS, MARK/x, IFACE, PROTO, MTU and LEN columns (--output-meta=false to hide)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_parser = parse_go_bool, value_name = "BOOL", help_heading = "Output")]
    pub output_meta: bool,

    /// Print a NETNS NAME column: the /run/netns name of the packet's netns (blank when unnamed); collects meta even with --output-meta=false
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Output")]
    pub output_netns_names: bool,

    /// Width of the NETNS NAME column (at least 10); longer names print as ~ and their tail
    #[arg(long, default_value = "16", value_name = "N", help_heading = "Output")]
    pub netns_names_max_length: u8,

    /// Print the saddr:sport->daddr:dport(proto) TUPLE column (--output-tuple=false to hide)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_parser = parse_go_bool, value_name = "BOOL", help_heading = "Output")]
    pub output_tuple: bool,

    /// Dump struct sk_buff with every event
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Output")]
    pub output_skb: bool,

    /// Dump struct skb_shared_info with every event
    #[arg(long = "output-skb-shared-info", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Output")]
    pub output_shinfo: bool,

    /// Print the inner tuple of encapsulated traffic (TUNNEL column, JSON tunnel_tuple)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Output")]
    pub output_tunnel: bool,

    /// Print the kernel stack of every event
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Output")]
    pub output_stack: bool,

    /// For the map functions probed as non-skb functions (*_lookup_elem, *_update_elem, *_delete_elem, found by --filter-track-bpf-helpers or named with --filter-non-skb-funcs, one of which it needs), print the map id, name, key and value in hex (up to 256 bytes each; JSON: a bpfmap object)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Output")]
    pub output_bpfmap: bool,

    /// Print a CALLER column: the function the probed function returns to
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Output")]
    pub output_caller: bool,

    /// Group events by packet: print one block per skb when its life ends (its tuple, the functions in order with the time between steps, and how it ended: dropped with its reason, delivered, transmitted, freed); one JSON object per packet with --output-json
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Output")]
    pub output_journey: bool,

    /// At exit, print drops by reason and function with counts, and packets, events, lost events and missed hits (one JSON object with --output-json)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Output")]
    pub summary: bool,

    /// Also write the traced packets as pcap-ng (tcpdump, tshark, Wireshark): one packet per event from its L2 start (a packet without a MAC header gets a made-up Ethernet header, zero addresses), with the function, drop reason, skb, CPU, process and netns as its comment. `-` writes to stdout and sends the table (or JSON) to stderr unless --output-file names a file: `pwru --output-pcap - icmp | wireshark -k -i -`
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub output_pcap: Option<PathBuf>,

    /// Packet bytes --output-pcap keeps per event (16..=16384; default 256)
    #[arg(long, value_name = "BYTES", help_heading = "Output")]
    pub output_pcap_snaplen: Option<u32>,

    /// Exit after printing this many events (0 = no limit)
    #[arg(long, default_value = "0", value_name = "N", help_heading = "Output")]
    pub output_limit_lines: u64,

    /// Print the __sk_buff->cb[] column (qdisc_skb_cb data)
    #[arg(long = "output-skb-cb", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Output")]
    pub output_skb_cb: bool,

    /// Append TCP flags to the tuple, e.g. (tcp:SYN|ACK)
    #[arg(long = "output-tcp-flags", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Output")]
    pub output_tcp_flags: bool,

    /// Extra skb fields to print as name=value, e.g. skb->hash (comma list, at most 4)
    #[arg(long, value_delimiter = ',', action = ArgAction::Append, value_name = "FIELD,...", help_heading = "Output")]
    pub output_skb_metadata: Vec<String>,

    /// Extra xdp_buff fields of XDP program events to print as name=value, e.g. xdp->rxq->queue_index (comma list, at most 4; with --filter-trace-xdp)
    #[arg(long, value_delimiter = ',', action = ArgAction::Append, value_name = "FIELD,...", help_heading = "Output")]
    pub output_xdp_metadata: Vec<String>,

    /// Write the trace to this file instead of stdout (appends; rotated as set by --output-file-max-*)
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub output_file: Option<PathBuf>,

    /// Rotate --output-file before it passes this many MB (0 = 100); the old file becomes NAME-<local time>.EXT
    #[arg(
        long,
        default_value = "100",
        value_name = "MB",
        help_heading = "Output"
    )]
    pub output_file_max_size: i64,

    /// Rotated --output-file files to keep, newest first (0 = all)
    #[arg(long, default_value = "0", value_name = "N", help_heading = "Output")]
    pub output_file_max_backups: i64,

    /// Days to keep rotated --output-file files, by the time in their name (0 = forever)
    #[arg(
        long,
        default_value = "0",
        value_name = "DAYS",
        help_heading = "Output"
    )]
    pub output_file_max_age: i64,

    /// gzip rotated --output-file files (to NAME-<time>.EXT.gz)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Output")]
    pub output_file_compress: bool,

    /// One JSON object per event instead of the table
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "Output")]
    pub output_json: bool,

    /// Size of the per-CPU buffer for --output-skb / --output-skb-shared-info dumps
    #[arg(
        long = "set-percpu-buf",
        default_value = "4096",
        value_name = "BYTES",
        help_heading = "Output"
    )]
    pub set_percpu_buf: u32,

    // ---- pwru-rs extras ----
    /// Print the functions that would be probed (with their skb argument position) and exit
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "pwru-rs extras")]
    pub list_funcs: bool,

    /// Print the eBPF listing the pcap filter compiles to and exit
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "pwru-rs extras")]
    pub dump_filter: bool,

    /// Run the pcap filter over every packet of this capture file, print the matches and exit
    #[arg(long, value_name = "FILE", help_heading = "pwru-rs extras")]
    pub filter_check: Option<PathBuf>,

    /// With --dump-filter: the link type packets start with, as tcpdump -y names it: EN10MB (Ethernet, the default), RAW (IP, like --l3), LINUX_SLL or LINUX_SLL2 (tcpdump -i any captures)
    #[arg(long, value_name = "TYPE", value_parser = parse_link_type, help_heading = "pwru-rs extras")]
    pub link_type: Option<DumpLinkType>,

    /// With --dump-filter / --filter-check: packets start at the IP header (L3) instead of Ethernet (L2)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "pwru-rs extras")]
    pub l3: bool,

    /// Kprobe backend: on exit, wait until every kprobe is detached instead of leaving that to a background process (the default for 100 kprobes or more)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool, hide_default_value = true, value_name = "BOOL", help_heading = "pwru-rs extras")]
    pub detach_wait: bool,

    /// pcap-filter expression (see `man 7 pcap-filter`); the words are joined with spaces
    #[arg(value_name = "PCAP-FILTER")]
    pub filter_words: Vec<String>,

    /// Set when the command line used the original's first flags or Go's single-dash
    /// spelling: one line naming them and giving today's command (for stderr).
    #[arg(skip)]
    pub legacy_note: Option<String>,
}

/// The command line as `--help`, the man page and the completions show it: the clap
/// definition of [`Args`], with the flags not implemented yet marked so in their help.
pub fn command() -> clap::Command {
    resolve::mark_pending_flags(Args::command())
}

impl Args {
    /// Parses `args` (including the program name) with [`command`], after translating
    /// the original's first flags and Go's `-long-flag` spelling (see [`Args::legacy_note`]).
    pub fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut cmd = command();
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let translated = legacy::translate(args, &cmd).map_err(|e| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, e.to_string())
                .format(&mut cmd)
        })?;
        let matches = cmd.try_get_matches_from_mut(translated.args)?;
        let mut parsed = Self::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
        parsed.legacy_note = translated.note;
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests;
