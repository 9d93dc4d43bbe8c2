//! Architecture facts the probes need: where `struct pt_regs` keeps the argument, ip, sp and
//! return-value registers (read from BTF, so any architecture's BTF resolves), and the stack size.

use std::fmt;

use super::error::BtfError;
use super::funcs::MAX_PROBE_ARG;
use super::kconfig::{thread_size, KernelConfig};
use super::kernel::KernelBtf;
use super::layout::{Composite, Field};

/// Argument registers a [`PtRegsLayout`] records: x86-64 passes exactly six arguments in
/// registers, arm64 and riscv64 eight; the probes read at most [`MAX_PROBE_ARG`].
pub const ARG_REGS: usize = 6;
const _: () = assert!(ARG_REGS >= MAX_PROBE_ARG as usize);

/// Width of every register read: pwru traces 64-bit kernels only.
const REG_BYTES: u32 = 8;
/// The BTF struct a kprobe's context points to.
const PT_REGS: &str = "pt_regs";

/// The traced kernel's architecture, as told by the shape of its `struct pt_regs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelArch {
    X86_64,
    Arm64,
    Riscv64,
}

impl KernelArch {
    /// The name the kernel tree and distributions use (`x86-64`, `arm64`, `riscv64`).
    pub fn name(self) -> &'static str {
        match self {
            KernelArch::X86_64 => "x86-64",
            KernelArch::Arm64 => "arm64",
            KernelArch::Riscv64 => "riscv64",
        }
    }

    /// How many bytes past the probed address a kprobe's `pt_regs` ip points when its
    /// handler runs: x86-64 reports the address after the one-byte int3 (also when the
    /// kprobe sits on ftrace, which emulates it); arm64's `brk` and riscv64's `ebreak`
    /// (or ftrace call) leave pc at the probed instruction.
    pub fn kprobe_ip_bias(self) -> u8 {
        match self {
            KernelArch::X86_64 => 1,
            KernelArch::Arm64 | KernelArch::Riscv64 => 0,
        }
    }
}

impl fmt::Display for KernelArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Byte offsets in `struct pt_regs` (a kprobe's context) of the registers the probes read.
///
/// Offsets are `i16` because that is what a BPF load instruction takes; resolution checks
/// that every register lies in `0..=i16::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtRegsLayout {
    pub arch: KernelArch,
    /// Registers of arguments 1..=[`ARG_REGS`] (index 0 holds the first argument):
    /// x86-64 di, si, dx, cx, r8, r9; arm64 x0..x5; riscv64 a0..a5.
    pub args: [i16; ARG_REGS],
    /// The instruction pointer: x86-64 `ip`, arm64 `pc`, riscv64 `epc`.
    pub ip: i16,
    /// The stack pointer: `sp` on all three.
    pub sp: i16,
    /// The function's return value at a kretprobe: x86-64 `ax`, arm64 x0, riscv64 a0.
    pub return_value: i16,
    /// Where a kprobe on a function's first instruction finds its caller.
    pub return_address: ReturnAddress,
}

/// Where the return address of a just-entered function is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnAddress {
    /// In memory, at the address in `sp`: x86-64's `call` pushed it.
    AtStackPointer,
    /// In the link register at this `pt_regs` offset: arm64 x30, riscv64 `ra`.
    Register(i16),
}

/// How one architecture names its registers in `struct pt_regs`.
struct RegsShape {
    arch: KernelArch,
    args: ArgRegs,
    ip: &'static str,
    sp: &'static str,
}

/// Where the argument and return-value registers are.
enum ArgRegs {
    /// One named member per register.
    Named {
        args: [&'static str; ARG_REGS],
        return_value: &'static str,
        /// The link register; `None`: the call pushes the return address at `sp`.
        link: Option<&'static str>,
    },
    /// `u64 <field>[len]`, the general registers x0, x1, ...: arguments from x0 on, the
    /// return value in x0, the return address in x<link> (`link < len`).
    Array {
        field: &'static str,
        len: u32,
        link: u32,
    },
}

/// The `pt_regs` shapes pwru knows, with the kernel header each comes from.
const SHAPES: [RegsShape; 3] = [
    // arch/x86/include/asm/ptrace.h; System V AMD64 calling convention.
    RegsShape {
        arch: KernelArch::X86_64,
        args: ArgRegs::Named {
            args: ["di", "si", "dx", "cx", "r8", "r9"],
            return_value: "ax",
            link: None,
        },
        ip: "ip",
        sp: "sp",
    },
    // arch/arm64/include/asm/ptrace.h: an anonymous union of `struct user_pt_regs
    // user_regs` and an anonymous struct { u64 regs[31]; u64 sp; u64 pc; u64 pstate; };
    // AAPCS64 passes arguments in x0..x7, returns in x0, and `bl` leaves the return
    // address in x30.
    RegsShape {
        arch: KernelArch::Arm64,
        args: ArgRegs::Array {
            field: "regs",
            len: 31,
            link: 30,
        },
        ip: "pc",
        sp: "sp",
    },
    // arch/riscv/include/asm/ptrace.h; RISC-V psABI: arguments in a0..a7, return in a0,
    // return address in ra.
    RegsShape {
        arch: KernelArch::Riscv64,
        args: ArgRegs::Named {
            args: ["a0", "a1", "a2", "a3", "a4", "a5"],
            return_value: "a0",
            link: Some("ra"),
        },
        ip: "epc",
        sp: "sp",
    },
];

impl RegsShape {
    /// Every member this shape needs, each once.
    fn members(&self) -> Vec<&'static str> {
        let mut members = match &self.args {
            ArgRegs::Named {
                args,
                return_value,
                link,
            } => {
                let mut names = args.to_vec();
                names.push(return_value);
                names.extend(link);
                names
            }
            ArgRegs::Array { field, .. } => vec![*field],
        };
        members.extend([self.ip, self.sp]);
        let mut seen = Vec::new();
        members.retain(|m| {
            let first = !seen.contains(m);
            seen.push(*m);
            first
        });
        members
    }

    /// The layout, once every member is known to exist.
    fn layout(&self, pt_regs: &Composite<'_>, origin: &str) -> Result<PtRegsLayout, ArchError> {
        let scalar = |name: &str| register(pt_regs, origin, name, 1);
        let (args, return_value, return_address) = match &self.args {
            ArgRegs::Named {
                args,
                return_value,
                link,
            } => {
                let mut offsets = [0i16; ARG_REGS];
                for (offset, name) in offsets.iter_mut().zip(args) {
                    *offset = scalar(name)?;
                }
                let return_address = match link {
                    Some(link) => ReturnAddress::Register(scalar(link)?),
                    None => ReturnAddress::AtStackPointer,
                };
                (offsets, scalar(return_value)?, return_address)
            }
            ArgRegs::Array { field, len, link } => {
                let x0 = register(pt_regs, origin, field, *len)?;
                // In range: `register` checked the whole array ends below i16::MAX, and
                // the registers read (arguments, link) lie in it.
                let x = |n: u32| x0 + (n * REG_BYTES) as i16;
                let mut offsets = [0i16; ARG_REGS];
                for (n, offset) in offsets.iter_mut().enumerate() {
                    *offset = x(n as u32);
                }
                (offsets, x0, ReturnAddress::Register(x(*link)))
            }
        };
        Ok(PtRegsLayout {
            arch: self.arch,
            args,
            ip: scalar(self.ip)?,
            sp: scalar(self.sp)?,
            return_value,
            return_address,
        })
    }
}

/// Offset of `name`, which must be `count` whole 64-bit registers.
fn register(
    pt_regs: &Composite<'_>,
    origin: &str,
    name: &str,
    count: u32,
) -> Result<i16, ArchError> {
    let field: Field = pt_regs.member(name)?;
    let bad = |found: String| ArchError::BadRegister {
        origin: origin.to_string(),
        register: name.to_string(),
        found,
        expected: if count == 1 {
            format!("one {REG_BYTES}-byte register")
        } else {
            format!("{count} registers of {REG_BYTES} bytes")
        },
    };
    if field.bitfield.is_some() {
        return Err(bad("a bitfield".to_string()));
    }
    if !field.offset_bits.is_multiple_of(8) {
        return Err(bad(format!("at bit {}", field.offset_bits)));
    }
    if field.size_bytes != count * REG_BYTES {
        return Err(bad(format!("{} bytes", field.size_bytes)));
    }
    if field.offset_bytes().saturating_add(field.size_bytes) > i16::MAX as u32 {
        return Err(ArchError::RegisterOutOfReach {
            origin: origin.to_string(),
            register: name.to_string(),
            offset: field.offset_bytes(),
        });
    }
    Ok(field.offset_bytes() as i16)
}

impl PtRegsLayout {
    /// Finds the architecture from the members `struct pt_regs` has (not from the build
    /// target, so a `--kernel-btf` of another architecture resolves too) and reads the
    /// register offsets. A `pt_regs` of no known shape is an error naming, for each
    /// architecture, the members it lacks.
    pub fn resolve(btf: &KernelBtf) -> Result<Self, ArchError> {
        let pt_regs = btf.find_composite(PT_REGS)?;
        let mut lacking = Vec::new();
        for shape in &SHAPES {
            let mut missing = Vec::new();
            for member in shape.members() {
                if pt_regs.optional_member(member)?.is_none() {
                    missing.push(member);
                }
            }
            if missing.is_empty() {
                return shape.layout(&pt_regs, btf.origin());
            }
            lacking.push((shape.arch, missing));
        }
        Err(ArchError::UnknownPtRegs {
            origin: btf.origin().to_string(),
            lacking,
        })
    }
}

/// Everything architecture-specific the probe generator needs, resolved once per run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchFacts {
    pub regs: PtRegsLayout,
    /// `THREAD_SIZE`: bytes of a task's kernel stack, which is aligned to at least this.
    pub thread_size: u32,
    /// Where the kernel configuration behind `thread_size` came from; `None` when none was
    /// readable and the defaults were assumed (see [`thread_size`]).
    pub config_origin: Option<String>,
}

impl ArchFacts {
    /// Facts for the running system: `pt_regs` from `btf`, the page size from `sysconf`,
    /// the configuration from `/proc/config.gz` or `/boot/config-<release>` when readable.
    /// With a `--kernel-btf` of another machine, `regs` describes that BTF while the page
    /// size and configuration still come from this one.
    pub fn resolve(btf: &KernelBtf) -> Result<Self, ArchError> {
        Self::resolve_with(
            btf,
            system_page_size(),
            KernelConfig::read_running().as_ref(),
        )
    }

    /// Facts from explicit inputs (tests, other machines).
    pub fn resolve_with(
        btf: &KernelBtf,
        page_size: u64,
        config: Option<&KernelConfig>,
    ) -> Result<Self, ArchError> {
        let regs = PtRegsLayout::resolve(btf)?;
        Ok(ArchFacts {
            regs,
            thread_size: thread_size(regs.arch, page_size, config)?,
            config_origin: config.map(|c| c.origin().to_string()),
        })
    }

    /// `-thread_size`: the `and` immediate that rounds a stack address down to the base
    /// of a task stack. (`thread_size` is at most 32 MiB, so this never overflows.)
    pub fn stack_base_mask(&self) -> i32 {
        -(self.thread_size as i32)
    }
}

/// The page size of the running kernel (0 if `sysconf` fails, which [`thread_size`] rejects).
fn system_page_size() -> u64 {
    // SAFETY: sysconf reads a configuration value and has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(0)
}

/// Errors resolving [`ArchFacts`].
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    #[error(transparent)]
    Btf(#[from] BtfError),
    /// `struct pt_regs` has none of the known register sets.
    #[error("{origin}: `struct pt_regs` matches no architecture pwru supports ({})", describe_lacking(.lacking))]
    UnknownPtRegs {
        origin: String,
        /// For each known architecture, the `pt_regs` members it needs that are absent.
        lacking: Vec<(KernelArch, Vec<&'static str>)>,
    },
    /// A register member has an unexpected size or position.
    #[error("{origin}: `pt_regs.{register}` is {found}, expected {expected}")]
    BadRegister {
        origin: String,
        register: String,
        found: String,
        expected: String,
    },
    /// A register lies further into `pt_regs` than a BPF load's 16-bit offset reaches.
    #[error("{origin}: `pt_regs.{register}` is at byte {offset}, beyond the {} bytes a BPF load reaches", i16::MAX)]
    RegisterOutOfReach {
        origin: String,
        register: String,
        offset: u32,
    },
    /// The page size is not one a kernel uses.
    #[error("page size {page_size} is not a power of two between 4 KiB and 1 MiB")]
    PageSize { page_size: u64 },
    /// A kernel configuration option the stack size depends on has an impossible value.
    #[error("kernel configuration {config}: {option}={value} ({expected})")]
    ConfigValue {
        config: String,
        option: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Facts resolved from a synthetic `struct pt_regs` of `arch` (the table tests' layouts),
/// with 4 KiB pages and no configuration: for tests of the code that uses them.
#[cfg(test)]
pub(crate) fn test_facts(arch: KernelArch) -> ArchFacts {
    let btf = match arch {
        KernelArch::X86_64 => tests::x86_64_kernel(),
        KernelArch::Arm64 => tests::arm64_kernel(),
        KernelArch::Riscv64 => tests::riscv64_kernel(),
    };
    ArchFacts::resolve_with(&btf, 4096, None).expect("synthetic pt_regs resolves")
}

fn describe_lacking(lacking: &[(KernelArch, Vec<&'static str>)]) -> String {
    lacking
        .iter()
        .map(|(arch, missing)| {
            let names: Vec<String> = missing.iter().map(|m| format!("`{m}`")).collect();
            format!("{arch} needs {}", names.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::path::Path;

    use super::super::testenc::{BtfBuilder, M};
    use super::*;

    /// A BTF blob holding only `struct pt_regs` (built by `members`, bit offsets per member).
    fn kernel(build: impl FnOnce(&mut BtfBuilder, u32)) -> KernelBtf {
        let mut b = BtfBuilder::new();
        let ulong = b.int("long unsigned int", 8, false);
        build(&mut b, ulong);
        KernelBtf::from_bytes(&b.bytes(), "test kernel").expect("synthetic BTF parses")
    }

    /// Members laid out one after the other, 8 bytes each.
    fn consecutive<'a>(names: &[&'a str], ty: u32) -> Vec<M<'a>> {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| M(name, ty, i as u32 * 64, 0))
            .collect()
    }

    /// x86-64 `pt_regs` as in 6.x: `cs` and `ss` sit in anonymous unions (FRED).
    pub(super) fn x86_64_kernel() -> KernelBtf {
        kernel(|b, ulong| {
            let u16_t = b.int("short unsigned int", 2, false);
            let cs = b.union("", 8, &[M("cs", u16_t, 0, 0), M("csx", ulong, 0, 0)]);
            let ss = b.union("", 8, &[M("ss", u16_t, 0, 0), M("ssx", ulong, 0, 0)]);
            let names = [
                "r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx",
                "si", "di", "orig_ax", "ip",
            ];
            let mut members = consecutive(&names, ulong);
            members.extend([
                M("", cs, 17 * 64, 0),
                M("flags", ulong, 18 * 64, 0),
                M("sp", ulong, 19 * 64, 0),
                M("", ss, 20 * 64, 0),
            ]);
            b.structure("pt_regs", 168, &members);
        })
    }

    /// arm64 `pt_regs`: the registers behind an anonymous union and an anonymous struct,
    /// next to the named `user_regs` view of the same bytes.
    pub(super) fn arm64_kernel() -> KernelBtf {
        kernel(|b, ulong| {
            let u64_t = b.typedef("u64", ulong);
            let int = b.int("int", 4, true);
            let u32_t = b.int("unsigned int", 4, false);
            let regs = b.array(u64_t, u32_t, 31);
            let gprs = [
                M("regs", regs, 0, 0),
                M("sp", u64_t, 248 * 8, 0),
                M("pc", u64_t, 256 * 8, 0),
                M("pstate", u64_t, 264 * 8, 0),
            ];
            let user_pt_regs = b.structure(
                "user_pt_regs",
                272,
                &[
                    M("regs", regs, 0, 0),
                    M("sp", u64_t, 248 * 8, 0),
                    M("pc", u64_t, 256 * 8, 0),
                    M("pstate", u64_t, 264 * 8, 0),
                ],
            );
            let anon_struct = b.structure("", 272, &gprs);
            let anon_union = b.union(
                "",
                272,
                &[M("user_regs", user_pt_regs, 0, 0), M("", anon_struct, 0, 0)],
            );
            b.structure(
                "pt_regs",
                336,
                &[
                    M("", anon_union, 0, 0),
                    M("orig_x0", u64_t, 272 * 8, 0),
                    M("syscallno", int, 280 * 8, 0),
                    M("pmr", u32_t, 284 * 8, 0),
                    M("sdei_ttbr1", u64_t, 288 * 8, 0),
                ],
            );
        })
    }

    /// riscv64 `pt_regs`: 36 named `unsigned long`s.
    pub(super) fn riscv64_kernel() -> KernelBtf {
        kernel(|b, ulong| {
            let names = [
                "epc", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2",
                "a3", "a4", "a5", "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9",
                "s10", "s11", "t3", "t4", "t5", "t6", "status", "badaddr", "cause", "orig_a0",
            ];
            b.structure("pt_regs", 288, &consecutive(&names, ulong));
        })
    }

    #[test]
    fn each_architecture_resolves_every_register() {
        let table = [
            (
                x86_64_kernel(),
                PtRegsLayout {
                    arch: KernelArch::X86_64,
                    args: [112, 104, 96, 88, 72, 64],
                    ip: 128,
                    sp: 152,
                    return_value: 80,
                    return_address: ReturnAddress::AtStackPointer,
                },
            ),
            (
                arm64_kernel(),
                PtRegsLayout {
                    arch: KernelArch::Arm64,
                    args: [0, 8, 16, 24, 32, 40],
                    ip: 256,
                    sp: 248,
                    return_value: 0,
                    return_address: ReturnAddress::Register(240),
                },
            ),
            (
                riscv64_kernel(),
                PtRegsLayout {
                    arch: KernelArch::Riscv64,
                    args: [80, 88, 96, 104, 112, 120],
                    ip: 0,
                    sp: 16,
                    return_value: 80,
                    return_address: ReturnAddress::Register(8),
                },
            ),
        ];
        for (btf, expected) in table {
            let layout = PtRegsLayout::resolve(&btf).expect("known pt_regs resolves");
            assert_eq!(layout, expected, "{}", expected.arch);
        }
    }

    /// The x86-64 BTF of a Debian 6.18 kernel gives exactly the offsets the probes were
    /// written with, so switching them to `ArchFacts` changes no instruction.
    #[test]
    fn real_x86_64_btf_gives_the_historical_constants() {
        let gz = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vmlinux-6.18.btf.gz");
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&gz).expect("fixture BTF present"))
            .read_to_end(&mut raw)
            .expect("fixture BTF decompresses");
        let btf = KernelBtf::from_bytes(&raw, "vmlinux-6.18").expect("fixture BTF parses");
        let facts = ArchFacts::resolve_with(&btf, 4096, None).expect("x86-64 facts");
        assert_eq!(facts.regs.arch, KernelArch::X86_64);
        assert_eq!(facts.regs.args[..5], [112, 104, 96, 88, 72]);
        assert_eq!(facts.regs.args[5], 64, "r9");
        assert_eq!(facts.regs.ip, 128);
        assert_eq!(facts.regs.sp, 152);
        assert_eq!(facts.regs.return_value, 80);
        assert_eq!(facts.regs.return_address, ReturnAddress::AtStackPointer);
        assert_eq!(facts.thread_size, 16 << 10);
        assert_eq!(facts.stack_base_mask(), -(16 << 10));
        assert_eq!(facts.config_origin, None);
    }

    #[test]
    fn every_register_file_holds_the_registers_read_from_it() {
        for shape in &SHAPES {
            if let ArgRegs::Array { len, link, .. } = shape.args {
                assert!(ARG_REGS as u32 <= len && link < len, "{}", shape.arch);
            }
        }
    }

    #[test]
    fn the_running_kernel_is_the_build_target_architecture() {
        if !Path::new(super::super::SYS_VMLINUX_BTF).exists() {
            eprintln!("no {}: skipped", super::super::SYS_VMLINUX_BTF);
            return;
        }
        let btf = KernelBtf::open_system(&super::super::Kmods::None).expect("system BTF opens");
        let facts = ArchFacts::resolve(&btf).expect("running kernel's facts resolve");
        let native = if cfg!(target_arch = "x86_64") {
            KernelArch::X86_64
        } else if cfg!(target_arch = "aarch64") {
            KernelArch::Arm64
        } else {
            KernelArch::Riscv64
        };
        assert_eq!(facts.regs.arch, native);
        assert!(facts.thread_size.is_power_of_two() && facts.thread_size >= 8 << 10);
    }

    #[test]
    fn unknown_pt_regs_names_what_each_architecture_lacks() {
        // i386: named registers, but no r8/r9 and 4-byte longs.
        let btf = kernel(|b, _| {
            let ulong = b.int("long unsigned int", 4, false);
            let names = [
                "bx", "cx", "dx", "si", "di", "bp", "ax", "ds", "es", "fs", "gs", "orig_ax", "ip",
                "cs", "flags", "sp", "ss",
            ];
            let members: Vec<M<'_>> = names
                .iter()
                .enumerate()
                .map(|(i, name)| M(name, ulong, i as u32 * 32, 0))
                .collect();
            b.structure("pt_regs", 68, &members);
        });
        let err = PtRegsLayout::resolve(&btf).expect_err("i386 is not supported");
        match &err {
            ArchError::UnknownPtRegs { lacking, .. } => {
                assert_eq!(lacking[0], (KernelArch::X86_64, vec!["r8", "r9"]));
                assert_eq!(lacking[1], (KernelArch::Arm64, vec!["regs", "pc"]));
                assert_eq!(lacking[2].0, KernelArch::Riscv64);
                assert!(lacking[2].1.contains(&"epc") && lacking[2].1.contains(&"a0"));
            }
            other => panic!("unexpected error {other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.starts_with("test kernel: `struct pt_regs` matches no architecture"),
            "{msg}"
        );
        assert!(
            msg.contains("x86-64 needs `r8`, `r9`; arm64 needs `regs`, `pc`"),
            "{msg}"
        );
    }

    #[test]
    fn missing_pt_regs_is_a_btf_error() {
        let btf = kernel(|_, _| {});
        let err = PtRegsLayout::resolve(&btf).expect_err("no pt_regs");
        assert!(
            matches!(err, ArchError::Btf(BtfError::NoSuchStruct { ref name, .. }) if name == "pt_regs"),
            "{err}"
        );
    }

    #[test]
    fn registers_of_the_wrong_size_are_refused() {
        // riscv64 shape with a 4-byte `sp`.
        let btf = kernel(|b, ulong| {
            let u32_t = b.int("unsigned int", 4, false);
            let names = ["epc", "ra", "a0", "a1", "a2", "a3", "a4", "a5"];
            let mut members = consecutive(&names, ulong);
            members.push(M("sp", u32_t, 8 * 64, 0));
            b.structure("pt_regs", 72, &members);
        });
        let msg = PtRegsLayout::resolve(&btf)
            .expect_err("short sp")
            .to_string();
        assert_eq!(
            msg,
            "test kernel: `pt_regs.sp` is 4 bytes, expected one 8-byte register"
        );
        // riscv64 shape with `sp` a bitfield.
        let btf = kernel(|b, ulong| {
            let names = ["epc", "ra", "a0", "a1", "a2", "a3", "a4", "a5"];
            let mut members = consecutive(&names, ulong);
            members.push(M("sp", ulong, 8 * 64, 48));
            b.structure("pt_regs", 72, &members);
        });
        let msg = PtRegsLayout::resolve(&btf)
            .expect_err("bitfield sp")
            .to_string();
        assert_eq!(
            msg,
            "test kernel: `pt_regs.sp` is a bitfield, expected one 8-byte register"
        );
        // arm64 shape whose register file is not 31 registers.
        let btf = kernel(|b, ulong| {
            let u32_t = b.int("unsigned int", 4, false);
            let regs = b.array(ulong, u32_t, 8);
            b.structure(
                "pt_regs",
                80,
                &[
                    M("regs", regs, 0, 0),
                    M("sp", ulong, 64 * 8, 0),
                    M("pc", ulong, 72 * 8, 0),
                ],
            );
        });
        let msg = PtRegsLayout::resolve(&btf)
            .expect_err("short regs")
            .to_string();
        assert_eq!(
            msg,
            "test kernel: `pt_regs.regs` is 64 bytes, expected 31 registers of 8 bytes"
        );
    }

    #[test]
    fn registers_beyond_a_load_offset_are_refused() {
        let btf = kernel(|b, ulong| {
            let u32_t = b.int("unsigned int", 4, false);
            let pad = b.array(ulong, u32_t, 4096);
            let names = ["epc", "sp", "a0", "a1", "a2", "a3", "a4", "a5", "ra"];
            let mut members = vec![M("pad", pad, 0, 0)];
            members.extend(
                names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| M(name, ulong, (4096 + i as u32) * 64, 0)),
            );
            b.structure("pt_regs", 4105 * 8, &members);
        });
        let msg = PtRegsLayout::resolve(&btf)
            .expect_err("too far")
            .to_string();
        assert_eq!(
            msg,
            "test kernel: `pt_regs.a0` is at byte 32784, beyond the 32767 bytes a BPF load reaches"
        );
    }
}
