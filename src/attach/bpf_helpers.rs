//! `--filter-track-bpf-helpers`: the kernel functions that loaded BPF programs call, read
//! from their translated instructions with our decoder and probed as non-skb functions.
//!
//! In a translated (`xlated`) dump a helper call is `call` with `src_reg` 0 and `imm` = the
//! function's address less `__bpf_call_base`; the kernel zeroes `imm` when the reader may
//! not see kernel addresses. The verifier has already rewritten map helpers into direct
//! calls of the map's operations (`htab_map_update_elem`, `__htab_map_lookup_elem`) and
//! inlined others, so the names are the functions that really run. BPF-to-BPF calls
//! (`src_reg` 1) are not kernel functions, kfunc calls (`src_reg` 2) are skipped. Unlike
//! the original (x86-64 machine code from `/proc/kcore`), this reads no machine code and
//! works on every architecture.

use std::collections::{BTreeMap, BTreeSet};

use crate::asm::insn::{op, Insn};
use crate::load::XlatedProgram;

/// The kallsyms symbol helper-call immediates are relative to.
pub const CALL_BASE_SYMBOL: &str = "__bpf_call_base";

/// What the calls of one program's translated instructions are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Calls {
    /// Helper calls' `imm` (address less `__bpf_call_base`), each once, in program order.
    pub helpers: Vec<i32>,
    /// Helper calls whose `imm` the kernel zeroed (kernel addresses hidden from us).
    pub hidden: usize,
    /// BPF-to-BPF and kfunc calls, not followed.
    pub skipped: usize,
}

/// The calls in `insns` (a 16-byte `ld_imm64` is stepped over whole).
pub fn calls(insns: &[Insn]) -> Calls {
    let mut c = Calls::default();
    let mut i = 0;
    while i < insns.len() {
        let insn = insns[i];
        i += if insn.is_ld_imm64() { 2 } else { 1 };
        if insn.code != op::JMP | op::CALL {
            continue;
        }
        match insn.src {
            0 if insn.imm == 0 => c.hidden += 1,
            0 if !c.helpers.contains(&insn.imm) => c.helpers.push(insn.imm),
            0 => {}
            _ => c.skipped += 1,
        }
    }
    c
}

/// The address a helper call with `imm` goes to.
pub fn call_target(call_base: u64, imm: i32) -> u64 {
    call_base.wrapping_add_signed(i64::from(imm))
}

/// Program types whose programs run on a packet's path: every type but the tracing ones
/// (kprobe, tracepoint, perf event, raw tracepoint, fentry/fexit, LSM, syscall), whose
/// helpers run for tracers such as pwru itself.
pub fn on_packet_path(prog_type: u32) -> bool {
    // BPF_PROG_TYPE_KPROBE, TRACEPOINT, PERF_EVENT, RAW_TRACEPOINT,
    // RAW_TRACEPOINT_WRITABLE, TRACING, LSM, SYSCALL.
    !matches!(prog_type, 2 | 5 | 7 | 17 | 24 | 26 | 29 | 31)
}

/// The helpers a set of programs calls, by kernel function name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BpfHelpers {
    /// Function name -> the names of the programs calling it.
    pub functions: BTreeMap<String, BTreeSet<String>>,
    /// Programs read.
    pub programs: usize,
    /// Programs whose helper addresses the kernel hid.
    pub hidden: usize,
    /// Helper calls whose address is no kernel function's start (e.g. a tail call).
    pub unresolved: usize,
}

impl BpfHelpers {
    /// The function names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.functions.keys().cloned().collect()
    }
}

/// The helpers `programs` call: each call's target resolved by `name_at` (the kernel
/// function starting exactly there; `None` for anything else, BPF programs included).
pub fn collect(
    programs: &[XlatedProgram],
    call_base: u64,
    name_at: impl Fn(u64) -> Option<String>,
) -> BpfHelpers {
    let mut found = BpfHelpers {
        programs: programs.len(),
        ..BpfHelpers::default()
    };
    for p in programs {
        let c = calls(&p.insns);
        if c.hidden > 0 {
            found.hidden += 1;
        }
        for imm in c.helpers {
            match name_at(call_target(call_base, imm)) {
                Some(name) => {
                    found
                        .functions
                        .entry(name)
                        .or_default()
                        .insert(p.name.clone());
                }
                None => found.unresolved += 1,
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf;

    fn program(name: &str, insns: Vec<Insn>) -> XlatedProgram {
        XlatedProgram {
            id: 1,
            prog_type: 3,
            name: name.into(),
            insns,
        }
    }

    fn call(src: u8, imm: i32) -> Insn {
        Insn::new(op::JMP | op::CALL, 0, src, 0, imm)
    }

    #[test]
    fn calls_by_kind() {
        let mov = Insn::new(op::ALU64 | op::MOV | op::K, 0, 0, 0, 0);
        // An ld_imm64 whose second slot looks like a call is stepped over whole.
        let ld = Insn::new(op::LD | op::IMM | op::DW, 1, 0, 0, 7);
        let table: &[(&[Insn], Calls)] = &[
            (&[mov], Calls::default()),
            (
                &[call(0, 0x100), call(0, -0x40), call(0, 0x100)],
                Calls {
                    helpers: vec![0x100, -0x40],
                    ..Calls::default()
                },
            ),
            (
                &[call(0, 0), call(0, 0)],
                Calls {
                    hidden: 2,
                    ..Calls::default()
                },
            ),
            (
                &[call(1, 5), call(2, 77), call(0, 9)],
                Calls {
                    helpers: vec![9],
                    skipped: 2,
                    ..Calls::default()
                },
            ),
            (&[ld, call(0, 0x55)], Calls::default()),
        ];
        for (insns, want) in table {
            assert_eq!(&calls(insns), want, "{insns:?}");
        }
    }

    #[test]
    fn call_targets_are_relative_to_the_call_base() {
        let base = 0xffff_ffff_8120_0000;
        assert_eq!(call_target(base, 0x10), 0xffff_ffff_8120_0010);
        assert_eq!(call_target(base, -0x10), 0xffff_ffff_811f_fff0);
    }

    #[test]
    fn collect_names_each_function_with_its_callers() {
        let base = 0xffff_ffff_8100_0000u64;
        let name_at = |addr: u64| match addr - base {
            0x100 => Some("htab_map_update_elem".to_string()),
            0x200 => Some("bpf_ktime_get_ns".to_string()),
            _ => None,
        };
        // Assembled like the kernel's dump: imm is the offset from the call base.
        let a = bpf! {
            call 0x100;
            call 0x200;
            call 0x300;
            exit;
        }
        .unwrap();
        let b = bpf! {
            call 0x100;
            exit;
        }
        .unwrap();
        let hidden = program("hidden", vec![call(0, 0)]);
        let found = collect(
            &[program("a", a.insns), program("b", b.insns), hidden],
            base,
            name_at,
        );
        assert_eq!(found.names(), ["bpf_ktime_get_ns", "htab_map_update_elem"]);
        assert_eq!(
            found.functions["htab_map_update_elem"],
            BTreeSet::from(["a".to_string(), "b".to_string()])
        );
        assert_eq!((found.programs, found.hidden, found.unresolved), (3, 1, 1));
    }

    #[test]
    fn tracing_programs_are_not_on_the_packet_path() {
        // SCHED_CLS, XDP, CGROUP_SKB, SK_SKB; KPROBE, TRACING.
        for (t, want) in [
            (3, true),
            (6, true),
            (8, true),
            (14, true),
            (2, false),
            (26, false),
        ] {
            assert_eq!(on_packet_path(t), want, "type {t}");
        }
    }
}
