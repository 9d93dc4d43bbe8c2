//! The tracepoint backend: one raw tracepoint program per tracepoint that carries an skb;
//! it runs on kernels without kprobes, with no caller, no clone following, no non-skb funcs.

use std::sync::atomic::AtomicBool;

use aya::programs::raw_trace_point::RawTracePointLinkId;

use crate::btf::KernelBtf;
use crate::load::{LoadedObject, ProgKind, ProgramSpec};
use crate::probes::Attachment;

use super::{
    check_stop, AttachError, AttachSummary, Backend, BackendKind, BackendOptions, BuildFn, Feature,
    KernelSupport, Progress, Target, TargetNames, Unavailable, UntrackPoint,
};

/// One raw tracepoint program per tracepoint that carries an skb.
#[derive(Default)]
pub struct TracepointBackend {
    links: Vec<(String, RawTracePointLinkId)>,
}

impl TracepointBackend {
    /// The registry's constructor (no settings).
    pub fn create(_opts: &BackendOptions) -> Box<dyn Backend> {
        Box::new(TracepointBackend::default())
    }
}

/// Program name of the tracepoint target at `index` (the event's probe id).
pub fn tracepoint_program_name(index: usize) -> String {
    format!("tp_skb_{index}")
}

impl Backend for TracepointBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Tracepoint
    }

    fn noun(&self) -> &'static str {
        "tracepoints"
    }

    fn target_noun(&self) -> &'static str {
        "tracepoint"
    }

    fn auto_reason(&self) -> &'static str {
        "tracepoints available"
    }

    fn available(&self, _kernel: &KernelSupport) -> Result<(), Unavailable> {
        Ok(())
    }

    fn lacks(&self, feature: Feature) -> Option<&'static str> {
        match feature {
            Feature::Caller => Some("a tracepoint has no caller frame to read"),
            Feature::NonSkbFunctions | Feature::BpfHelpers => Some("it probes no function by name"),
            Feature::CloneFollowing => Some("skb_clone, skb_copy need kprobes"),
            Feature::FuncIp => Some("a raw tracepoint has no function ip"),
            Feature::ModuleFunctions => {
                Some("it probes tracepoints, not functions; module functions need kprobes")
            }
        }
    }

    fn targets(
        &self,
        btf: &KernelBtf,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Target>, AttachError> {
        let tps = btf.skb_tracepoints().map_err(|source| AttachError::Btf {
            what: "tracepoints",
            source,
        })?;
        Ok(super::targets::select_tracepoints(&tps, keep))
    }

    /// Events carry the tracepoint's index as probe id; the programs read drop reasons
    /// themselves.
    fn target_names(&self, targets: &[Target]) -> TargetNames {
        TargetNames {
            probe_names: targets
                .iter()
                .enumerate()
                .map(|(i, t)| (i as u64, t.name.clone()))
                .collect(),
            ..TargetNames::default()
        }
    }

    fn names_by_address(&self) -> bool {
        false
    }

    /// How many tracepoints of each kind, and that they are not every function.
    fn coverage(&self, targets: &[Target]) -> Option<String> {
        Some(coverage_line(targets))
    }

    /// Every skb ends in one of these two.
    fn untrack_points(&self) -> &'static [UntrackPoint] {
        &[
            UntrackPoint::RawTracepoint("kfree_skb"),
            UntrackPoint::RawTracepoint("consume_skb"),
        ]
    }

    fn programs(
        &self,
        targets: &[Target],
        build: &mut BuildFn<'_>,
    ) -> Result<Vec<ProgramSpec>, AttachError> {
        targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let program = build(&Attachment::Tracepoint {
                    id: i as u32,
                    skb_arg: t.skb_arg,
                    nargs: t.nargs,
                    drop_reason_arg: t.drop_reason_arg,
                })?;
                Ok(ProgramSpec {
                    name: tracepoint_program_name(i),
                    kind: ProgKind::RawTracepoint(t.name.clone()),
                    program,
                })
            })
            .collect()
    }

    fn attach(
        &mut self,
        obj: &mut LoadedObject,
        targets: &[Target],
        progress: &dyn Progress,
        stop: &AtomicBool,
    ) -> Result<AttachSummary, AttachError> {
        let mut summary = AttachSummary::default();
        for i in 0..targets.len() {
            check_stop(stop)?;
            let program = tracepoint_program_name(i);
            match obj.attach_raw_tp(&program) {
                Ok(id) => {
                    self.links.push((program, id));
                    summary.attached += 1;
                }
                Err(_) => summary.ignored += 1,
            }
            progress.inc(1);
        }
        Ok(summary)
    }

    fn detach(&mut self, obj: &mut LoadedObject, progress: &dyn Progress) {
        progress.set_length(self.links.len() as u64);
        for (program, id) in self.links.drain(..) {
            let _ = obj.detach_raw_tp(&program, id);
            progress.inc(1);
        }
    }
}

/// The kinds of skb tracepoints, in the order the coverage line gives them.
const TRACEPOINT_KINDS: [&str; 4] = ["device", "queueing", "drop", "socket and protocol"];

/// The kind (an entry of [`TRACEPOINT_KINDS`]) of the tracepoint `name`.
fn tracepoint_kind(name: &str) -> &'static str {
    let device = ["net_dev_", "netif_", "napi_"];
    let drop = ["fail", "bad_", "_full", "mismatch"];
    if device.iter().any(|p| name.starts_with(p)) {
        "device"
    } else if name.starts_with("qdisc_") {
        "queueing"
    } else if matches!(name, "kfree_skb" | "consume_skb") || drop.iter().any(|d| name.contains(d)) {
        "drop"
    } else {
        "socket and protocol"
    }
}

/// "30 tracepoints: 9 device, 2 queueing, 5 drop, 14 socket and protocol events; a packet
/// shows where it passes one of them, not in every kernel function (that needs kprobes)".
fn coverage_line(targets: &[Target]) -> String {
    let kinds: Vec<String> = TRACEPOINT_KINDS
        .iter()
        .map(|kind| {
            let n = targets
                .iter()
                .filter(|t| tracepoint_kind(&t.name) == *kind)
                .count();
            (kind, n)
        })
        .filter(|(_, n)| *n > 0)
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    format!(
        "{} tracepoint{}: {} events; a packet shows where it passes one of them, not in every kernel function (that needs kprobes)",
        targets.len(),
        if targets.len() == 1 { "" } else { "s" },
        kinds.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::Program;
    use crate::attach::tests::target;

    #[test]
    fn one_tracepoint_program_per_tracepoint() {
        let targets = [target("kfree_skb", 0), target("consume_skb", 0)];
        let specs = TracepointBackend::default()
            .programs(&targets, &mut |_: &Attachment| Ok(Program::default()))
            .unwrap();
        assert_eq!(specs[1].name, "tp_skb_1");
        assert_eq!(specs[1].kind, ProgKind::RawTracepoint("consume_skb".into()));
    }

    #[test]
    fn the_coverage_line_counts_each_kind() {
        let names = [
            "net_dev_queue",
            "netif_receive_skb",
            "napi_gro_receive_entry",
            "qdisc_enqueue",
            "kfree_skb",
            "consume_skb",
            "udp_fail_queue_rcv_skb",
            "tcp_bad_csum",
            "sock_rcvqueue_full",
            "tcp_hash_md5_mismatch",
            "tcp_probe",
            "skb_copy_datagram_iovec",
        ];
        let targets: Vec<Target> = names.iter().map(|n| target(n, 0)).collect();
        assert_eq!(
            TracepointBackend::default().coverage(&targets).unwrap(),
            "12 tracepoints: 3 device, 1 queueing, 6 drop, 2 socket and protocol events; a packet shows where it passes one of them, not in every kernel function (that needs kprobes)"
        );
        assert!(coverage_line(&[target("kfree_skb", 0)]).starts_with("1 tracepoint: 1 drop events"));
    }

    #[test]
    fn events_name_their_tracepoint_by_index() {
        let names = TracepointBackend::default()
            .target_names(&[target("kfree_skb", 0), target("consume_skb", 0)]);
        assert_eq!(names.probe_names[&1], "consume_skb");
        assert!(names.drop_reason_args.is_empty());
    }
}
