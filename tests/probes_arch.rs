//! The probe generators read `struct pt_regs` and the stack size only through `ArchFacts`:
//! programs built for x86-64, arm64 and riscv64 layouts load exactly those offsets.
//!
//! The skb layout is the fixture BTF's (`tests/data/vmlinux-6.18.btf.gz`, x86-64); the
//! x86-64 registers are resolved from it, the arm64 and riscv64 ones are the layouts of
//! `btf::arch`'s table test (their kernels' `struct pt_regs`), with stack sizes from
//! `btf::thread_size` for configurations whose stacks differ from x86-64's 16 KiB.

use std::io::Read;
use std::path::Path;

use pwru::asm::{disassemble_program, Program};
use pwru::btf::{
    thread_size, ArchFacts, KernelArch, KernelBtf, KernelConfig, PtRegsLayout, ReturnAddress,
    SkbLayout,
};
use pwru::output::OutputOptions;
use pwru::probes::{self, Attachment, KprobeLink, ProbeOptions, StackTracking, UntrackOptions};

fn fixture_btf() -> KernelBtf {
    let gz = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vmlinux-6.18.btf.gz");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&gz).expect("fixture BTF present"))
        .read_to_end(&mut raw)
        .expect("fixture BTF decompresses");
    KernelBtf::from_bytes(&raw, "vmlinux-6.18").expect("fixture BTF parses")
}

/// x86-64 from the fixture (16 KiB stacks); arm64 with 64 KiB pages (64 KiB stacks);
/// riscv64 with `CONFIG_THREAD_SIZE_ORDER=3` (32 KiB stacks).
fn architectures(btf: &KernelBtf) -> Vec<ArchFacts> {
    let x86_64 = ArchFacts::resolve_with(btf, 4096, None).expect("fixture pt_regs resolves");
    // arm64: `u64 regs[31]` at 0, then sp, pc; the return address in x30.
    let arm64 = ArchFacts {
        regs: PtRegsLayout {
            arch: KernelArch::Arm64,
            args: [0, 8, 16, 24, 32, 40],
            ip: 256,
            sp: 248,
            return_value: 0,
            return_address: ReturnAddress::Register(240),
        },
        thread_size: thread_size(KernelArch::Arm64, 64 << 10, None).expect("arm64 64K pages"),
        config_origin: None,
    };
    // riscv64: epc, ra, sp, gp, tp, t0-t2, s0, s1, a0-a7, ...; each 8 bytes.
    let config = KernelConfig::parse("CONFIG_THREAD_SIZE_ORDER=3\n", "riscv64 config");
    let riscv64 = ArchFacts {
        regs: PtRegsLayout {
            arch: KernelArch::Riscv64,
            args: [80, 88, 96, 104, 112, 120],
            ip: 0,
            sp: 16,
            return_value: 80,
            return_address: ReturnAddress::Register(8),
        },
        thread_size: thread_size(KernelArch::Riscv64, 4096, Some(&config)).expect("order 3"),
        config_origin: Some(config.origin().to_string()),
    };
    let facts = vec![x86_64, arm64, riscv64];
    let sizes: Vec<u32> = facts.iter().map(|f| f.thread_size).collect();
    assert_eq!(
        sizes,
        [16 << 10, 64 << 10, 32 << 10],
        "three distinct stack sizes"
    );
    facts
}

/// The 64-bit loads based on register `base`, as (destination, offset), in program order.
fn loads_from(program: &Program, base: &str) -> Vec<(String, i16)> {
    let from = format!(" = *(u64 *)({base} +");
    disassemble_program(program)
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(&from)?;
            let dst = left.rsplit(' ').next()?.to_string();
            let offset = right.strip_suffix(')')?.parse().ok()?;
            Some((dst, offset))
        })
        .collect()
}

/// How many times the program rounds r1 down to a multiple of `thread_size`.
fn stack_base_masks(program: &Program, thread_size: u32) -> usize {
    let mask = format!("r1 &= -{thread_size}");
    disassemble_program(program)
        .lines()
        .filter(|line| line.ends_with(&mask))
        .count()
}

/// What the program subtracts from the kprobe's ip: the instruction right after loading it.
fn ip_adjustment(program: &Program, ip: i16) -> Option<String> {
    let listing = disassemble_program(program);
    let load = format!("r0 = *(u64 *)(r6 +{ip})");
    let mut lines = listing.lines().skip_while(|line| !line.ends_with(&load));
    lines.next().expect("the ip is read");
    let next = lines.next()?.split_once(") ")?.1;
    next.starts_with("r0 +=").then(|| next.to_string())
}

fn name(facts: &ArchFacts) -> &'static str {
    facts.regs.arch.name()
}

/// Every `pt_regs` read of a kprobe program: the stack identity's sp, the skb argument,
/// the header's ip (less the int3 on x86-64) and arguments 2 and 3, the caller section's
/// return address.
#[test]
fn kprobe_programs_read_the_layouts_registers() {
    let btf = fixture_btf();
    let layout = SkbLayout::resolve(&btf).expect("layout");
    for facts in architectures(&btf) {
        let regs = facts.regs;
        let opts = ProbeOptions {
            track_stackid: Some(StackTracking {
                task_stack_offset: Some(32),
            }),
            has_get_func_ip: false,
            sections: pwru::output::sections::record_sections(&OutputOptions {
                caller: true,
                ..OutputOptions::default()
            }),
            ..ProbeOptions::new(facts.clone())
        };
        for skb_arg in 1..=5u8 {
            for link in [
                KprobeLink::Perf,
                KprobeLink::MultiByCookie,
                KprobeLink::MultiByAddress,
            ] {
                let at = Attachment::Kprobe {
                    skb_arg,
                    link,
                    map_op: None,
                };
                let program = probes::build(&layout, &opts, &at).expect("probe builds");
                // kprobe-multi names the function by its attach cookie or by
                // bpf_get_func_ip, not by the ip register.
                let mut want = vec![
                    ("r1".to_string(), regs.sp),
                    ("r7".to_string(), regs.args[usize::from(skb_arg) - 1]),
                ];
                if link == KprobeLink::Perf {
                    want.push(("r0".to_string(), regs.ip));
                }
                want.extend([
                    ("r1".to_string(), regs.args[1]),
                    ("r1".to_string(), regs.args[2]),
                ]);
                want.push(match regs.return_address {
                    ReturnAddress::AtStackPointer => ("r3".to_string(), regs.sp),
                    ReturnAddress::Register(link) => ("r1".to_string(), link),
                });
                assert_eq!(
                    loads_from(&program, "r6"),
                    want,
                    "{} kprobe argument {skb_arg}",
                    name(&facts)
                );
                assert_eq!(
                    stack_base_masks(&program, facts.thread_size),
                    1,
                    "{}",
                    name(&facts)
                );
                if link == KprobeLink::Perf {
                    let int3 = (regs.arch == KernelArch::X86_64).then(|| "r0 += -1".to_string());
                    assert_eq!(ip_adjustment(&program, regs.ip), int3, "{}", name(&facts));
                }
            }
        }
    }
}

/// The untrack program reads the freed skb (argument 1) and names the stack from sp; the
/// clone programs read the source skb (argument 1) and the returned clone.
#[test]
fn untrack_and_clone_programs_read_the_layouts_registers() {
    let btf = fixture_btf();
    for facts in architectures(&btf) {
        let regs = facts.regs;
        let kprobe = Attachment::Kprobe {
            skb_arg: 1,
            link: KprobeLink::Perf,
            map_op: None,
        };
        let untrack = probes::build_untrack_with(
            &kprobe,
            &facts,
            UntrackOptions {
                track_skb: true,
                track_stackid: Some(StackTracking::default()),
                clone_parents: true,
            },
        )
        .expect("untrack builds");
        assert_eq!(
            loads_from(&untrack, "r1"),
            [("r1".to_string(), regs.args[0])],
            "{} untrack skb",
            name(&facts)
        );
        assert_eq!(
            loads_from(&untrack, "r6"),
            [("r1".to_string(), regs.sp)],
            "{} untrack stack",
            name(&facts)
        );
        assert_eq!(stack_base_masks(&untrack, facts.thread_size), 1);

        let entry = probes::build_clone_entry(&regs).expect("clone entry builds");
        assert_eq!(
            loads_from(&entry, "r1"),
            [("r1".to_string(), regs.args[0])],
            "{} clone entry",
            name(&facts)
        );
        let ret = probes::build_clone_return(&regs, true).expect("clone return builds");
        assert_eq!(
            loads_from(&ret, "r6"),
            [("r1".to_string(), regs.return_value)],
            "{} clone return",
            name(&facts)
        );
    }
}
