//! From parsed flags to the run's settings, once: the cross-flag checks clap cannot express,
//! the flags not implemented yet, pwru's implied settings, and the `Mode` the run executes.

use crate::attach::{self, FeatureError};
use crate::btf::Kmods;
use crate::output::sections::pcap::{DEFAULT_SNAPLEN, MAX_SNAPLEN, MIN_SNAPLEN};
use crate::settings::{
    self, BackendChoice, BackendSettings, DumpLinkType, FilterSettings, KernelSettings,
    ListSettings, Mode, NetnsSpec, OutputFile, OutputSettings, PcapSettings, PcapTarget,
    TraceSettings, TunnelFilterSettings,
};

use super::Args;

/// Most `--output-skb-metadata` / `--output-xdp-metadata` fields pwru accepts.
pub const MAX_METADATA_FIELDS: usize = 4;

/// A usage problem found by [`Args::resolve`]. Messages are one line and say what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--filter-ifname cannot be used with --filter-netns inode:<n>; give the netns as a path such as /proc/<pid>/ns/net")]
    IfnameWithInodeNetns,
    #[error("{flag} accepts at most {MAX_METADATA_FIELDS} fields, got {count}; drop some")]
    TooManyMetadataFields { flag: &'static str, count: usize },
    #[error("--l3 only applies to --dump-filter and --filter-check; add one of them or drop --l3")]
    L3WithoutFilterTool,
    #[error("--link-type only applies to --dump-filter (a capture file names its own); add --dump-filter or drop --link-type")]
    LinkTypeWithoutDumpFilter,
    #[error("--l3 and --link-type {0} disagree on where packets start; keep one")]
    L3AndLinkType(&'static str),
    #[error("--dump-filter needs a pcap-filter expression after the options, e.g. `pwru --dump-filter 'tcp port 80'`")]
    MissingDumpFilter,
    /// `--filter-check FILE` without an expression; holds FILE as given.
    #[error("--filter-check needs a pcap-filter expression after the file, e.g. `pwru --filter-check {0} 'tcp port 80'`")]
    MissingCheckFilter(String),
    #[error(
        "--list-funcs, --dump-filter and --filter-check are separate modes; use one at a time"
    )]
    ConflictingModes,
    #[error("--output-pcap-snaplen must be {MIN_SNAPLEN}..={MAX_SNAPLEN} bytes, got {0}")]
    PcapSnaplen(u32),
    #[error(
        "--output-pcap-snaplen only applies to --output-pcap; add --output-pcap FILE or drop it"
    )]
    SnaplenWithoutPcap,
    #[error("--output-pcap and --output-file name the same file {0}; give the packets and the table different files")]
    PcapIsOutputFile(String),
    #[error("{flag} cannot be negative, got {value}")]
    Negative { flag: &'static str, value: i64 },
    /// `--backend` names a backend without a feature the flags ask for.
    #[error(transparent)]
    Backend(#[from] FeatureError),
    #[error("--output-bpfmap shows what the probed map functions do; add --filter-track-bpf-helpers (the map helpers of the loaded BPF programs) or name map functions with --filter-non-skb-funcs")]
    BpfmapWithoutMapFunctions,
    /// `--filter-xdp-expr` or `--output-xdp-metadata` without `--filter-trace-xdp`.
    #[error("{0} only applies to XDP programs traced with --filter-trace-xdp; add it or drop {0}")]
    XdpWithoutTraceXdp(&'static str),
    #[error("the following flags are not supported yet by this pwru: {0}; drop them")]
    Unsupported(String),
}

/// A flag pwru has that this build does not implement yet, and how to tell it was set.
struct PendingFlag {
    name: &'static str,
    is_set: fn(&Args) -> bool,
}

/// What `--help` writes before the help of a flag in [`PENDING_FLAGS`].
pub const PENDING_MARK: &str = "[not supported yet]";

/// Flags parsed for compatibility but not implemented yet (none today: every flag of
/// pwru works). A flag of a newer pwru goes here until it lands: `--help` marks it with
/// [`PENDING_MARK`], and setting it is a usage error.
const PENDING_FLAGS: &[PendingFlag] = &[];

/// The names of the flags in [`PENDING_FLAGS`], e.g. `--filter-trace-tc`.
#[cfg(test)]
pub(super) fn pending_flag_names() -> Vec<&'static str> {
    PENDING_FLAGS.iter().map(|f| f.name).collect()
}

/// `cmd` with the help of every flag in [`PENDING_FLAGS`] starting with [`PENDING_MARK`].
pub(super) fn mark_pending_flags(mut cmd: clap::Command) -> clap::Command {
    for flag in PENDING_FLAGS {
        let long = flag.name.trim_start_matches("--");
        let id = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .map(|a| a.get_id().clone())
            .expect("every pending flag is a flag of Args");
        cmd = cmd.mut_arg(id, |arg| {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{PENDING_MARK} {help}"))
        });
    }
    cmd
}

impl Args {
    /// Checks the flags together and resolves them into the mode to run: every usage
    /// error is found here (the caller exits with code 2).
    pub fn resolve(self) -> Result<Mode, ConfigError> {
        self.validate()?;
        let pending = self.unsupported_flags();
        if !pending.is_empty() {
            return Err(ConfigError::Unsupported(pending.join(", ")));
        }
        Ok(self.into_mode())
    }

    /// Cross-flag checks that clap cannot express, the first problem first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.filter_ifname.is_some() && matches!(self.filter_netns, Some(NetnsSpec::Inode(_))) {
            return Err(ConfigError::IfnameWithInodeNetns);
        }
        for (flag, fields) in [
            ("--output-skb-metadata", &self.output_skb_metadata),
            ("--output-xdp-metadata", &self.output_xdp_metadata),
        ] {
            if fields.len() > MAX_METADATA_FIELDS {
                return Err(ConfigError::TooManyMetadataFields {
                    flag,
                    count: fields.len(),
                });
            }
        }
        for (flag, value) in [
            ("--output-file-max-size", self.output_file_max_size),
            ("--output-file-max-backups", self.output_file_max_backups),
            ("--output-file-max-age", self.output_file_max_age),
        ] {
            if value < 0 {
                return Err(ConfigError::Negative { flag, value });
            }
        }
        if !self.filter_trace_xdp {
            if not_blank(&self.filter_xdp_expr).is_some() {
                return Err(ConfigError::XdpWithoutTraceXdp("--filter-xdp-expr"));
            }
            if self
                .output_xdp_metadata
                .iter()
                .any(|f| !f.trim().is_empty())
            {
                return Err(ConfigError::XdpWithoutTraceXdp("--output-xdp-metadata"));
            }
        }
        if let Some(snaplen) = self.output_pcap_snaplen {
            if self.output_pcap.is_none() {
                return Err(ConfigError::SnaplenWithoutPcap);
            }
            if !(MIN_SNAPLEN..=MAX_SNAPLEN).contains(&snaplen) {
                return Err(ConfigError::PcapSnaplen(snaplen));
            }
        }
        if let (Some(pcap), Some(file)) = (&self.output_pcap, &self.output_file) {
            if pcap == file {
                return Err(ConfigError::PcapIsOutputFile(pcap.display().to_string()));
            }
        }
        if self.output_bpfmap
            && !self.filter_track_bpf_helpers
            && self.filter_non_skb_funcs.is_empty()
        {
            return Err(ConfigError::BpfmapWithoutMapFunctions);
        }
        let modes = [
            self.list_funcs,
            self.dump_filter,
            self.filter_check.is_some(),
        ];
        if modes.iter().filter(|m| **m).count() > 1 {
            return Err(ConfigError::ConflictingModes);
        }
        // A named backend must offer what the flags ask of it (`auto` is checked once the
        // kernel has said which backend it runs).
        if let BackendChoice::Named(kind) = self.backend {
            let wanted =
                settings::wanted_features(&self.filter_settings(), &self.output_settings());
            attach::check_features(attach::backend(kind).as_ref(), &wanted, None)?;
        }
        if self.l3 && !self.dump_filter && self.filter_check.is_none() {
            return Err(ConfigError::L3WithoutFilterTool);
        }
        if let Some(link) = self.link_type {
            if !self.dump_filter {
                return Err(ConfigError::LinkTypeWithoutDumpFilter);
            }
            let name = match link {
                DumpLinkType::Ethernet => "EN10MB",
                DumpLinkType::RawIp => "RAW",
                DumpLinkType::LinuxSll => "LINUX_SLL",
                DumpLinkType::LinuxSll2 => "LINUX_SLL2",
            };
            if self.l3 && link != DumpLinkType::RawIp {
                return Err(ConfigError::L3AndLinkType(name));
            }
        }
        if self.filter_words.is_empty() {
            if self.dump_filter {
                return Err(ConfigError::MissingDumpFilter);
            }
            if let Some(file) = &self.filter_check {
                return Err(ConfigError::MissingCheckFilter(file.display().to_string()));
            }
        }
        Ok(())
    }

    /// The pwru flags set on this command line that this build does not implement yet.
    pub fn unsupported_flags(&self) -> Vec<&'static str> {
        PENDING_FLAGS
            .iter()
            .filter(|f| (f.is_set)(self))
            .map(|f| f.name)
            .collect()
    }

    /// The pcap-filter expression: the positional words joined with spaces ("" = everything).
    pub fn pcap_filter(&self) -> String {
        self.filter_words.join(" ")
    }

    fn into_mode(self) -> Mode {
        if self.list_funcs {
            return Mode::ListFuncs(ListSettings {
                kernel: self.kernel_settings(),
                backend: self.backend,
                func: self.filter_func,
            });
        }
        if self.dump_filter {
            return Mode::DumpFilter {
                filter: self.pcap_filter(),
                link: if self.l3 {
                    DumpLinkType::RawIp
                } else {
                    self.link_type.unwrap_or_default()
                },
            };
        }
        if let Some(capture) = &self.filter_check {
            return Mode::FilterCheck {
                capture: capture.clone(),
                filter: self.pcap_filter(),
            };
        }
        Mode::Trace(Box::new(TraceSettings {
            kernel: self.kernel_settings(),
            backend: BackendSettings {
                choice: self.backend,
                kprobe_batch: self.filter_kprobe_batch as usize,
                detach_wait: self.detach_wait,
            },
            filter: self.filter_settings(),
            output: self.output_settings(),
            debug: self.debug,
            ready_file: self.ready_file,
        }))
    }

    pub(super) fn kernel_settings(&self) -> KernelSettings {
        KernelSettings {
            btf: self.kernel_btf.clone(),
            kmods: if self.all_kmods {
                Kmods::All
            } else {
                Kmods::Named(self.kmods.clone())
            },
        }
    }

    /// With pwru's implied settings: non-skb funcs and helper tracking need by-stackid
    /// tracking.
    pub(super) fn filter_settings(&self) -> FilterSettings {
        FilterSettings {
            pcap: self.pcap_filter(),
            func: self.filter_func.clone(),
            mark: self.filter_mark.is_active().then_some(self.filter_mark),
            netns: self.filter_netns.clone(),
            ifname: self.filter_ifname.clone(),
            track_skb: self.filter_track_skb,
            track_by_stackid: self.filter_track_skb_by_stackid
                || !self.filter_non_skb_funcs.is_empty()
                || self.filter_track_bpf_helpers,
            non_skb_funcs: self.filter_non_skb_funcs.clone(),
            // pwru's default is the empty expression: no filter.
            skb_expr: not_blank(&self.filter_skb_expr),
            tunnel: TunnelFilterSettings {
                l2: not_blank(&self.filter_tunnel_pcap_l2),
                l3: not_blank(&self.filter_tunnel_pcap_l3),
            },
            trace_tc: self.filter_trace_tc,
            track_bpf_helpers: self.filter_track_bpf_helpers,
            trace_xdp: self.filter_trace_xdp,
            xdp_expr: not_blank(&self.filter_xdp_expr),
        }
    }

    /// With pwru's implied settings: the netns-name column is at least 10 wide, and the
    /// `__sk_buff->cb[]` column shows with tc tracing too.
    pub(super) fn output_settings(&self) -> OutputSettings {
        // `validate` refused negative rotation values.
        let non_negative = |v: i64| u64::try_from(v).unwrap_or(0);
        OutputSettings {
            timestamp: self.timestamp,
            meta: self.output_meta,
            netns_names: self
                .output_netns_names
                .then(|| usize::from(self.netns_names_max_length.max(10))),
            tuple: self.output_tuple,
            tcp_flags: self.output_tcp_flags,
            tunnel: self.output_tunnel,
            caller: self.output_caller,
            stack: self.output_stack,
            skb_cb: self.filter_trace_tc || self.output_skb_cb,
            json: self.output_json,
            limit_lines: self.output_limit_lines,
            summary: self.summary,
            journey: self.output_journey,
            pcap: self.output_pcap.as_ref().map(|path| PcapSettings {
                target: if path.as_os_str() == "-" {
                    PcapTarget::Stdout
                } else {
                    PcapTarget::File(path.clone())
                },
                snaplen: self.output_pcap_snaplen.unwrap_or(DEFAULT_SNAPLEN),
            }),
            skb_metadata: self.output_skb_metadata.clone(),
            xdp_metadata: self.output_xdp_metadata.clone(),
            skb_dump: self.output_skb,
            shinfo_dump: self.output_shinfo,
            bpfmap: self.output_bpfmap,
            dump_bytes: self.set_percpu_buf,
            file: self.output_file.as_ref().map(|path| OutputFile {
                path: path.clone(),
                max_size_mb: non_negative(self.output_file_max_size),
                max_backups: non_negative(self.output_file_max_backups),
                max_age_days: non_negative(self.output_file_max_age),
                compress: self.output_file_compress,
            }),
        }
    }
}

/// A flag's expression unless it is blank (pwru's empty expression: no filter).
fn not_blank(expr: &Option<String>) -> Option<String> {
    expr.clone().filter(|e| !e.trim().is_empty())
}
