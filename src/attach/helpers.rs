//! The helper programs a run loads besides the backend's per-target ones: forgetting freed
//! skbs, following clones, probing the non-skb functions; the backend says which it can run.

use crate::btf::ArchFacts;
use crate::load::{LoadedObject, ObjectError, ProgKind, ProgramSpec};
use crate::probes::{self, Attachment, KprobeLink, MapOp, UntrackOptions, NON_SKB};

use super::{AttachError, Backend, BuildFn, Feature};

/// Functions whose return value is a clone or copy of their first argument.
pub const CLONE_FUNCS: [&str; 3] = ["skb_clone", "skb_copy", "__pskb_copy_fclone"];

/// Where a backend attaches the program that forgets freed skbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UntrackPoint {
    /// A kprobe on this function (its first argument is the skb).
    Kprobe(&'static str),
    /// This raw tracepoint (its first argument is the skb).
    RawTracepoint(&'static str),
}

/// What the run needs helper programs for.
#[derive(Clone, Debug)]
pub struct HelperNeeds<'a> {
    /// The kernel's `pt_regs` layout and stack size (`ProbeOptions::arch`).
    pub arch: &'a ArchFacts,
    /// The tracking maps to clean when an skb is freed (no program when nothing tracks).
    pub untrack: UntrackOptions,
    /// `--filter-non-skb-funcs` functions to probe (see `tracer`'s selection).
    pub non_skb: &'a [String],
    /// `--output-bpfmap`: the non-skb functions that are map operations, probed by the
    /// programs that record the map access instead (not in `non_skb`).
    pub map_funcs: &'a [(String, MapOp)],
}

/// What a helper program is for, which says how its attach failures are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Forgets freed skbs (`--filter-track-skb`, `--filter-track-skb-by-stackid`).
    Untrack,
    /// Clone following, entry or return half.
    Clone,
    /// `--filter-non-skb-funcs` (and the map functions' record programs).
    NonSkb,
    /// `--output-bpfmap`: the kprobe stashing a map lookup's arguments for its kretprobe.
    MapLookupEntry,
}

/// A program besides the backend's, and where it goes.
#[derive(Clone, Debug)]
pub struct HelperProgram {
    pub spec: ProgramSpec,
    pub role: Role,
    /// Kernel functions for a (ret)kprobe program; empty for a raw tracepoint.
    pub functions: Vec<String>,
}

/// The helper programs `backend` runs for `needs`; `build` makes the non-skb probe program
/// (the same generator as the per-target programs).
pub fn helper_programs(
    backend: &dyn Backend,
    needs: &HelperNeeds<'_>,
    build: &mut BuildFn<'_>,
) -> Result<Vec<HelperProgram>, AttachError> {
    let mut v = Vec::new();
    let untrack = needs.untrack;
    if untrack.track_skb || untrack.track_stackid.is_some() {
        let points = backend.untrack_points();
        for (i, point) in points.iter().enumerate() {
            let name = if points.len() == 1 {
                "untrack".to_string()
            } else {
                format!("untrack_{i}")
            };
            v.push(match *point {
                UntrackPoint::Kprobe(function) => HelperProgram {
                    spec: ProgramSpec {
                        name,
                        kind: ProgKind::KProbe,
                        program: probes::build_untrack_with(
                            &Attachment::Kprobe {
                                skb_arg: 1,
                                link: KprobeLink::Perf,
                                map_op: None,
                            },
                            needs.arch,
                            untrack,
                        )?,
                    },
                    role: Role::Untrack,
                    functions: vec![function.into()],
                },
                UntrackPoint::RawTracepoint(tracepoint) => HelperProgram {
                    spec: ProgramSpec {
                        name,
                        kind: ProgKind::RawTracepoint(tracepoint.into()),
                        program: probes::build_untrack_with(
                            &Attachment::Tracepoint {
                                id: 0,
                                skb_arg: 0,
                                nargs: 1,
                                drop_reason_arg: None,
                            },
                            needs.arch,
                            untrack,
                        )?,
                    },
                    role: Role::Untrack,
                    functions: Vec::new(),
                },
            });
        }
    }
    if untrack.track_skb && backend.supports(Feature::CloneFollowing) {
        let functions: Vec<String> = CLONE_FUNCS.iter().map(|f| f.to_string()).collect();
        v.push(HelperProgram {
            spec: ProgramSpec {
                name: "clone_entry".into(),
                kind: ProgKind::KProbe,
                program: probes::build_clone_entry(&needs.arch.regs)?,
            },
            role: Role::Clone,
            functions: functions.clone(),
        });
        v.push(HelperProgram {
            spec: ProgramSpec {
                name: "clone_return".into(),
                kind: ProgKind::KRetProbe,
                program: probes::build_clone_return(&needs.arch.regs, untrack.clone_parents)?,
            },
            role: Role::Clone,
            functions,
        });
    }
    if !needs.non_skb.is_empty() && backend.supports(Feature::NonSkbFunctions) {
        let program = build(&Attachment::Kprobe {
            skb_arg: NON_SKB,
            link: KprobeLink::Perf,
            map_op: None,
        })?;
        v.push(HelperProgram {
            spec: ProgramSpec {
                name: "non_skb".into(),
                kind: ProgKind::KProbe,
                program,
            },
            role: Role::NonSkb,
            functions: needs.non_skb.to_vec(),
        });
    }
    if backend.supports(Feature::NonSkbFunctions) {
        v.extend(map_programs(needs, build)?);
    }
    Ok(v)
}

/// `--output-bpfmap`: one record program per map operation probed (a lookup's is a
/// kretprobe, with a kprobe stashing its arguments).
fn map_programs(
    needs: &HelperNeeds<'_>,
    build: &mut BuildFn<'_>,
) -> Result<Vec<HelperProgram>, AttachError> {
    let mut v = Vec::new();
    for (op, name, entry, kind) in [
        (MapOp::Update, "bpfmap_update", "", ProgKind::KProbe),
        (MapOp::Delete, "bpfmap_delete", "", ProgKind::KProbe),
        (
            MapOp::Lookup,
            "bpfmap_lookup",
            "bpfmap_lk_in",
            ProgKind::KRetProbe,
        ),
        (
            MapOp::LookupElem,
            "bpfmap_lookup_e",
            "bpfmap_lke_in",
            ProgKind::KRetProbe,
        ),
    ] {
        let functions: Vec<String> = needs
            .map_funcs
            .iter()
            .filter(|(_, o)| *o == op)
            .map(|(f, _)| f.clone())
            .collect();
        if functions.is_empty() {
            continue;
        }
        if op.on_return() {
            v.push(HelperProgram {
                spec: ProgramSpec {
                    name: entry.into(),
                    kind: ProgKind::KProbe,
                    program: probes::build_map_lookup_entry(&needs.arch.regs)?,
                },
                role: Role::MapLookupEntry,
                functions: functions.clone(),
            });
        }
        let program = build(&Attachment::Kprobe {
            skb_arg: NON_SKB,
            link: KprobeLink::Perf,
            map_op: Some(op),
        })?;
        v.push(HelperProgram {
            spec: ProgramSpec {
                name: name.into(),
                kind,
                program,
            },
            role: Role::NonSkb,
            functions,
        });
    }
    Ok(v)
}

/// A helper program that could not be attached everywhere; the run goes on without it.
#[derive(Debug, thiserror::Error)]
pub enum HelperWarning {
    #[error("tracked skbs cannot be forgotten when freed: {0}")]
    Untrack(ObjectError),
    #[error("--filter-track-skb cannot follow clones and copies: {0}")]
    Clone(ObjectError),
    #[error("--filter-non-skb-funcs: cannot probe {function}: {error}")]
    NonSkb {
        function: String,
        error: ObjectError,
    },
}

/// What attaching the helper programs did.
#[derive(Debug, Default)]
pub struct HelperAttach {
    /// Non-skb functions attached.
    pub attached: usize,
    /// Non-skb functions the kernel refused.
    pub ignored: usize,
    /// In the order they happened (a clone warning, only when no clone probe attached, last).
    pub warnings: Vec<HelperWarning>,
}

/// Attaches the helper programs.
pub fn attach_helpers(obj: &mut LoadedObject, helpers: &[HelperProgram]) -> HelperAttach {
    let mut report = HelperAttach::default();
    let mut clone_errors = Vec::new();
    let mut clone_ok = 0;
    for x in helpers {
        let name = &x.spec.name;
        if x.functions.is_empty() {
            if let Err(e) = obj.attach_raw_tp(name) {
                report.warnings.push(HelperWarning::Untrack(e));
            }
            continue;
        }
        for f in &x.functions {
            match (obj.attach_kprobe(name, f), x.role) {
                (Ok(_), Role::NonSkb) => report.attached += 1,
                (Ok(_), Role::Clone) => clone_ok += 1,
                (Ok(_), Role::Untrack | Role::MapLookupEntry) => {}
                (Err(e), Role::Untrack) => report.warnings.push(HelperWarning::Untrack(e)),
                (Err(e), Role::Clone) => clone_errors.push(e),
                (Err(e), Role::NonSkb | Role::MapLookupEntry) => {
                    report.ignored += 1;
                    report.warnings.push(HelperWarning::NonSkb {
                        function: f.clone(),
                        error: e,
                    });
                }
            }
        }
    }
    if clone_ok == 0 {
        if let Some(e) = clone_errors.into_iter().next() {
            report.warnings.push(HelperWarning::Clone(e));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach::{backend, BackendKind};
    use crate::btf::{test_facts, KernelArch};
    use crate::probes::StackTracking;

    fn helpers(
        kind: BackendKind,
        untrack: UntrackOptions,
        non_skb: &[String],
    ) -> Vec<HelperProgram> {
        let mut build = |_: &Attachment| Ok(crate::asm::Program::default());
        let arch = test_facts(KernelArch::X86_64);
        helper_programs(
            backend(kind).as_ref(),
            &HelperNeeds {
                arch: &arch,
                untrack,
                non_skb,
                map_funcs: &[],
            },
            &mut build,
        )
        .unwrap()
    }

    fn names(h: &[HelperProgram]) -> Vec<&str> {
        h.iter().map(|x| x.spec.name.as_str()).collect()
    }

    #[test]
    fn helper_programs_per_backend_and_options() {
        let track = UntrackOptions {
            track_skb: true,
            track_stackid: None,
            clone_parents: false,
        };
        let kprobe = helpers(BackendKind::Kprobe, track, &[]);
        assert_eq!(names(&kprobe), ["untrack", "clone_entry", "clone_return"]);
        assert_eq!(kprobe[0].functions, ["kfree_skbmem"]);
        assert_eq!(kprobe[1].functions, CLONE_FUNCS);
        assert_eq!(kprobe[2].spec.kind, ProgKind::KRetProbe);
        // Tracepoints: the two free tracepoints, no clone following.
        let tp = helpers(BackendKind::Tracepoint, track, &[]);
        assert_eq!(names(&tp), ["untrack_0", "untrack_1"]);
        assert_eq!(
            tp[1].spec.kind,
            ProgKind::RawTracepoint("consume_skb".into())
        );
        assert!(tp.iter().all(|x| x.functions.is_empty()));
        // By-stackid alone still needs the untrack program, but no clone following.
        let stackid = UntrackOptions {
            track_skb: false,
            track_stackid: Some(StackTracking::default()),
            clone_parents: false,
        };
        let multi = helpers(BackendKind::KprobeMulti, stackid, &[]);
        assert_eq!(multi.len(), 1);
        assert_eq!(multi[0].role, Role::Untrack);
        assert!(helpers(BackendKind::Kprobe, UntrackOptions::default(), &[]).is_empty());
        // Non-skb functions: one kprobe program on every function.
        let funcs = vec!["a".to_string(), "b".to_string()];
        let non_skb = helpers(BackendKind::Kprobe, stackid, &funcs);
        assert_eq!(names(&non_skb), ["untrack", "non_skb"]);
        assert_eq!(non_skb[1].functions, funcs);
    }

    #[test]
    fn map_functions_get_their_record_programs() {
        let mut build = |_: &Attachment| Ok(crate::asm::Program::default());
        let arch = test_facts(KernelArch::X86_64);
        let stackid = UntrackOptions {
            track_skb: false,
            track_stackid: Some(StackTracking::default()),
            clone_parents: false,
        };
        let map_funcs = [
            ("htab_map_update_elem".to_string(), MapOp::Update),
            ("__htab_map_lookup_elem".to_string(), MapOp::LookupElem),
            ("array_map_lookup_elem".to_string(), MapOp::Lookup),
            ("array_map_update_elem".to_string(), MapOp::Update),
        ];
        let needs = HelperNeeds {
            arch: &arch,
            untrack: stackid,
            non_skb: &[],
            map_funcs: &map_funcs,
        };
        let kprobe =
            helper_programs(backend(BackendKind::Kprobe).as_ref(), &needs, &mut build).unwrap();
        assert_eq!(
            names(&kprobe),
            [
                "untrack",
                "bpfmap_update",
                "bpfmap_lk_in",
                "bpfmap_lookup",
                "bpfmap_lke_in",
                "bpfmap_lookup_e"
            ]
        );
        assert_eq!(
            kprobe[1].functions,
            ["htab_map_update_elem", "array_map_update_elem"]
        );
        assert_eq!(kprobe[2].role, Role::MapLookupEntry);
        assert_eq!(kprobe[3].spec.kind, ProgKind::KRetProbe);
        assert_eq!(kprobe[3].functions, ["array_map_lookup_elem"]);
        assert_eq!(kprobe[5].functions, ["__htab_map_lookup_elem"]);
    }
}
