//! The probe generator's input for a run: `ProbeOptions` from the settings, BTF facts and
//! host facts, the maps the programs share, and the non-skb functions to probe.

use anyhow::{anyhow, Context, Result};

use crate::attach::{Backend, Feature, Target};
use crate::btf::{ArchFacts, KernelBtf};
use crate::host;
use crate::load::{self, MapSpec};
use crate::output::sections::skb_dump::{self, SkbDump};
use crate::output::{sections, OutputOptions};
use crate::pcapc::ast::Expr;
use crate::pcapc::compile::{check, CompileError, FilterEnv, LinkType};
use crate::probes::{
    maps, record, skb_expr, BpfProgKind, MapOp, ProbeOptions, StackTracking, TunnelFilters,
};
use crate::settings::{FilterSettings, NetnsSpec, OutputSettings, TraceSettings};

/// A run's pcap filters, parsed: the filter (`None`: every packet) and the tunnel filters.
#[derive(Debug, Clone, Default)]
pub struct PcapFilters {
    pub main: Option<Expr>,
    pub tunnel: TunnelFilters,
}

/// Parses the filter and the tunnel filters; a tunnel filter must also compile for the
/// inner packet's start (pwru refuses one libpcap cannot compile).
pub fn parse_filters(f: &FilterSettings) -> Result<PcapFilters> {
    let main = crate::pcapc::parse(&f.pcap).context("invalid pcap filter")?;
    let tunnel = |text: &Option<String>, link: LinkType, flag: &str| -> Result<Option<Expr>> {
        let Some(text) = text else {
            return Ok(None);
        };
        let expr = crate::pcapc::parse(text).with_context(|| format!("invalid {flag}"))?;
        if let Some(e) = &expr {
            match check(e, link, &FilterEnv::default()) {
                Ok(()) | Err(CompileError::RejectsAll) => {}
                Err(err) => return Err(err).with_context(|| format!("invalid {flag}")),
            }
        }
        Ok(expr)
    };
    Ok(PcapFilters {
        main,
        tunnel: TunnelFilters {
            l2: tunnel(&f.tunnel.l2, LinkType::Ethernet, "--filter-tunnel-pcap-l2")?,
            l3: tunnel(&f.tunnel.l3, LinkType::RawIp, "--filter-tunnel-pcap-l3")?,
        },
    })
}

/// What the probe programs filter on and record: the settings resolved against this
/// kernel (BTF offsets and types, `pt_regs` layout and stack size) and host (netns inode,
/// ifindex) for `backend`.
pub fn probe_options(
    settings: &TraceSettings,
    filters: PcapFilters,
    btf: &KernelBtf,
    backend: &dyn Backend,
    output: &OutputOptions,
) -> Result<ProbeOptions> {
    let f = &settings.filter;
    let arch = ArchFacts::resolve(btf)
        .context("cannot tell where this kernel keeps the probed function's registers")?;
    Ok(ProbeOptions {
        arch,
        filter: filters.main,
        tunnel: filters.tunnel,
        mark: f.mark.map(|m| (m.mark, m.mask)),
        netns: f.netns.as_ref().map(host::netns_inode).transpose()?,
        ifindex: ifindex_filter(f)?,
        track_skb: f.track_skb,
        track_xdp: f.track_skb && f.trace_xdp,
        track_stackid: f.track_by_stackid.then(|| stack_tracking(btf)),
        has_get_func_ip: backend.supports(Feature::FuncIp)
            && load::func_ip_available().unwrap_or(false),
        skb_expr: match &f.skb_expr {
            Some(text) => Some(
                skb_expr::compile_filter(btf, skb_expr::SKB, text).context("--filter-skb-expr")?,
            ),
            None => None,
        },
        xdp_expr: match &f.xdp_expr {
            Some(text) => Some(
                skb_expr::compile_filter(btf, skb_expr::XDP, text).context("--filter-xdp-expr")?,
            ),
            None => None,
        },
        sections: sections::record_sections(output),
    })
}

/// What the output prints, with the `--output-skb-metadata` fields and the
/// `--output-skb`/`--output-skb-shared-info` dumps resolved through BTF; the probe's
/// record sections follow from it.
pub fn output_options(settings: &TraceSettings, btf: &KernelBtf) -> Result<OutputOptions> {
    let out = &settings.output;
    let mut opts = OutputOptions::from_settings(out);
    opts.clone_parents = settings.records_clone_parents();
    opts.skb_metadata = skb_expr::compile_metadata(btf, skb_expr::SKB, &out.skb_metadata)
        .context("--output-skb-metadata")?;
    opts.xdp_metadata = skb_expr::compile_metadata(btf, skb_expr::XDP, &out.xdp_metadata)
        .context("--output-xdp-metadata")?;
    opts.skb_dump = skb_dump_options(out, btf)?;
    if out.bpfmap {
        opts.bpfmap = Some(
            sections::bpfmap::BpfMapFields::resolve(btf)
                .context("--output-bpfmap needs struct bpf_map in the kernel BTF")?,
        );
    }
    Ok(opts)
}

/// `--filter-ifname`, resolved to an ifindex inside `--filter-netns` (or ours).
fn ifindex_filter(f: &FilterSettings) -> Result<Option<u32>> {
    let Some(name) = &f.ifname else {
        return Ok(None);
    };
    let netns = match &f.netns {
        Some(NetnsSpec::Path(p)) => Some(p.clone()),
        _ => None,
    };
    Ok(Some(host::ifindex_in_netns(name, netns)?))
}

/// How the programs name the kernel stack they run on (`task_struct.stack` from BTF).
fn stack_tracking(btf: &KernelBtf) -> StackTracking {
    StackTracking {
        task_stack_offset: btf
            .optional_member("task_struct", "stack")
            .ok()
            .flatten()
            .map(|f| f.offset_bytes()),
    }
}

/// `--output-skb`/`--output-skb-shared-info`: the BTF ids of the structs to render and
/// the `--set-percpu-buf` text size.
fn skb_dump_options(out: &OutputSettings, btf: &KernelBtf) -> Result<Option<SkbDump>> {
    if !out.skb_dump && !out.shinfo_dump {
        return Ok(None);
    }
    let id = |wanted: bool, name: &str, flag: &str| -> Result<Option<u32>> {
        if !wanted {
            return Ok(None);
        }
        btf.vmlinux_struct_id(name)
            .map(Some)
            .with_context(|| format!("{flag} needs struct {name} in the kernel BTF"))
    };
    let skb = id(out.skb_dump, "sk_buff", "--output-skb")?;
    let shinfo = id(
        out.shinfo_dump,
        "skb_shared_info",
        "--output-skb-shared-info",
    )?;
    SkbDump::new(skb, shinfo, out.dump_bytes)
        .map(Some)
        .ok_or_else(|| {
            anyhow!(
                "--set-percpu-buf {} is out of range ({}..={} bytes)",
                out.dump_bytes,
                skb_dump::MIN_DUMP_BYTES,
                skb_dump::MAX_DUMP_BYTES
            )
        })
}

/// The maps the programs share; `follows_clones`: the clone stash of the clone probes;
/// `traced`: the kinds of BPF programs traced with fentry/fexit.
pub fn map_specs(
    opts: &ProbeOptions,
    follows_clones: bool,
    traced: &[BpfProgKind],
) -> Vec<MapSpec> {
    let mut m = vec![maps::EVENTS, maps::LOST];
    m.extend(traced.iter().map(|k| k.matched_map()));
    if opts.track_skb {
        m.push(maps::TRACKED_SKBS);
    }
    if opts.track_xdp {
        m.push(maps::XDP_HEADS);
    }
    if opts.track_stackid.is_some() {
        m.extend([maps::STACKID_SKB, maps::SKB_STACKID]);
    }
    if follows_clones {
        m.push(maps::CLONE_STASH);
    }
    m.extend(opts.sections.iter().flat_map(|s| s.maps()));
    let mut specs: Vec<MapSpec> = m.into_iter().map(MapSpec::from).collect();
    specs.extend(record::scratch_map(&opts.sections).map(|m| m.spec()));
    specs
}

/// The `--filter-non-skb-funcs` functions and the `--filter-track-bpf-helpers` `helpers`
/// to probe: sorted, deduplicated, without the ones already probed as skb functions and
/// without BPF programs (`[bpf]`), which are counted as ignored like pwru does. Returns
/// them and the ignored count.
pub fn non_skb_functions(
    f: &FilterSettings,
    helpers: &[String],
    targets: &[Target],
) -> (Vec<String>, usize) {
    let mut funcs: Vec<String> = f
        .non_skb_funcs
        .iter()
        .chain(helpers)
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect();
    funcs.sort();
    funcs.dedup();
    let before = funcs.len();
    funcs.retain(|f| !f.ends_with("[bpf]") && !targets.iter().any(|t| t.name == *f));
    let skipped = before - funcs.len();
    (funcs, skipped)
}

/// A map function and what it does.
pub type MapFunction = (String, MapOp);

/// `--output-bpfmap`: splits the non-skb functions into the map operations (named
/// `*_lookup_elem`, `*_update_elem`, `*_delete_elem`, taking a map first per BTF) and
/// the others.
pub fn map_functions(
    btf: &KernelBtf,
    funcs: Vec<String>,
) -> Result<(Vec<MapFunction>, Vec<String>)> {
    let mut maps = Vec::new();
    let mut others = Vec::new();
    for f in funcs {
        match MapOp::from_name(&f) {
            Some(op) if btf.takes_bpf_map_first(&f).context("reading kernel BTF")? => {
                maps.push((f, op))
            }
            _ => others.push(f),
        }
    }
    Ok((maps, others))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str) -> Target {
        Target {
            name: name.into(),
            module: None,
            skb_arg: 1,
            drop_reason_arg: None,
            nargs: 0,
            btf_id: 0,
            by_value: false,
            ftrace_addr: None,
        }
    }

    #[test]
    fn non_skb_functions_skip_skb_functions_and_bpf_programs() {
        let filter = FilterSettings {
            non_skb_funcs: ["b", "a", "ip_rcv", "a", "bpf_prog_x_f[bpf]", "", "c"]
                .map(String::from)
                .to_vec(),
            ..FilterSettings::default()
        };
        let (funcs, skipped) = non_skb_functions(&filter, &[], &[target("ip_rcv")]);
        assert_eq!(funcs, ["a", "b", "c"]);
        // ip_rcv is probed as an skb function already; the [bpf] name is a program.
        assert_eq!(skipped, 2);
        // --filter-track-bpf-helpers: the helpers join the list.
        let helpers = ["htab_map_update_elem", "a"].map(String::from);
        let (funcs, _) = non_skb_functions(&filter, &helpers, &[target("ip_rcv")]);
        assert_eq!(funcs, ["a", "b", "c", "htab_map_update_elem"]);
    }

    #[test]
    fn maps_follow_the_options() {
        let none = ProbeOptions::new(crate::btf::test_facts(crate::btf::KernelArch::X86_64));
        let names = |opts: &ProbeOptions, clones| -> Vec<String> {
            map_specs(opts, clones, &[])
                .into_iter()
                .map(|m| m.name)
                .collect()
        };
        assert_eq!(names(&none, false), [maps::EVENTS.name, maps::LOST.name]);
        let all = ProbeOptions {
            track_skb: true,
            track_stackid: Some(StackTracking::default()),
            sections: crate::output::sections::record_sections(&OutputOptions {
                stack: true,
                ..OutputOptions::default()
            }),
            ..none.clone()
        };
        assert_eq!(
            names(&all, true),
            [
                maps::EVENTS.name,
                maps::LOST.name,
                maps::TRACKED_SKBS.name,
                maps::STACKID_SKB.name,
                maps::SKB_STACKID.name,
                maps::CLONE_STASH.name,
                maps::STACKS.name
            ]
        );
        // --output-pcap: the per-CPU area its variable-length records are built in.
        let pcap = ProbeOptions {
            sections: crate::output::sections::record_sections(&OutputOptions {
                pcap_snaplen: Some(100),
                ..OutputOptions::default()
            }),
            ..none.clone()
        };
        let specs = map_specs(&pcap, false, &[]);
        let scratch = specs
            .iter()
            .find(|m| m.name == maps::RECORD_SCRATCH.name)
            .expect("the scratch map");
        // Busy flag, fixed record, meta (no bytes after it), packet head, 100 bytes
        // rounded up to 8.
        assert_eq!(scratch.value_size, 8 + 216 + 16 + 104);
        assert_eq!(scratch.kind, crate::load::MapKind::PerCpuArray);
        let tc: Vec<String> = map_specs(&none, false, &[BpfProgKind::Tc, BpfProgKind::Xdp])
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(
            tc,
            [
                maps::EVENTS.name,
                maps::LOST.name,
                maps::TC_MATCHED.name,
                maps::XDP_MATCHED.name
            ]
        );
    }
}
