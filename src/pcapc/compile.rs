//! The pcap-filter → eBPF compiler's entry points: check a filter, emit it into a caller's
//! program, or build a standalone program (lowering → `paths::plan` → `emit`).
//!
//! Register/stack contract of [`emit_filter`]: it clobbers R0–R5 and the
//! [`stack_bytes`] bytes just below `env.stack_top` (relative to R10); R6–R9 are
//! preserved. The packet source registers must be among R6–R9 (they survive the
//! `bpf_probe_read_kernel` calls of the kernel-memory back end). The stack layout is
//! described in `emit.rs`.
//!
//! Semantics are libpcap 1.10's unoptimized code: a load past the captured bytes or a
//! division by zero rejects the whole filter, `len` is the packet's length on the wire
//! ([`FilterEnv::wire_len`]; the captured length unless given). The empty expression
//! matches every packet. Where libpcap's optimizer changes the verdict on short
//! packets (it drops loads whose outcome it proves irrelevant) we keep the load, except
//! where its constant folding removes the load (`x * 0`, `0 * x`, `x & 0`, `0 / x`,
//! ...: we fold the same operations). We report "rejects all packets" with libpcap's
//! jump-threading rules, path-sensitively; we prove a few more filters unsatisfiable
//! than libpcap does (constant relations, contradictions its optimizer misses).
//!
//! Limits: loads must end within [`DIRECT_MAX_END`] bytes (direct back end); the
//! `protochain` walks of a filter share [`PROTOCHAIN_MAX_HEADERS`] steps (the verifier
//! follows every step); a program holds at most 1,000,000 instructions (the kernel's
//! limit; the error says so). Filters past 8192 instructions are laid out for the
//! verifier's 8192 pending branches, past 28671 with islands for far jumps. `vxlan` is
//! not in libpcap 1.10.

use super::ast::Expr;
use super::emit::{emit, FilterSpec};
use super::paths::plan;
use crate::asm::{Asm, Label, Program, Reg, Size};

// The shared types, also under their old `pcapc::compile::` paths.
pub use super::types::{
    stack_bytes, CompileError, FilterEnv, FilterStats, LinkType, MetaSource, PacketSource,
    ProgramKind, WireLength, DEFAULT_WINDOW, DIRECT_MAX_END, PROTOCHAIN_MAX_HEADERS,
    PROTOCHAIN_MIN_HEADERS, SPILL_SLOTS,
};

/// Check an expression the way `pcap_compile` does (errors only, no code).
pub fn check(expr: &Expr, link: LinkType, env: &FilterEnv) -> Result<(), CompileError> {
    plan(Some(expr), link, env, u32::MAX as u64 + 4).map(|_| ())
}

/// Emit the filter for `expr` into `asm`; control leaves through `on_match` or
/// `on_reject` (also taken for loads past the packet end and division by zero).
/// Clobbers R0–R5 and the [`stack_bytes`] bytes below `R10 + env.stack_top`.
pub fn emit_filter(
    asm: &mut Asm,
    expr: &Expr,
    link: LinkType,
    src: &PacketSource,
    env: &FilterEnv,
    on_match: Label,
    on_reject: Label,
) -> Result<(), CompileError> {
    emit_filter_with_stats(asm, expr, link, src, env, on_match, on_reject).map(|_| ())
}

/// [`emit_filter`], also saying how big the code is and which exits it uses.
pub fn emit_filter_with_stats(
    asm: &mut Asm,
    expr: &Expr,
    link: LinkType,
    src: &PacketSource,
    env: &FilterEnv,
    on_match: Label,
    on_reject: Label,
) -> Result<FilterStats, CompileError> {
    emit(
        asm,
        &FilterSpec {
            expr: Some(expr),
            link,
            src: *src,
            env: *env,
            on_match,
            on_reject,
            reject_follows: false,
        },
    )
}

/// A complete program returning 1 (match) or 0 (no match).
pub fn compile_program(
    expr: &Expr,
    link: LinkType,
    kind: ProgramKind,
) -> Result<Program, CompileError> {
    compile_program_env(expr, link, kind, &FilterEnv::default())
}

/// [`compile_program`] with an explicit environment.
pub fn compile_program_env(
    expr: &Expr,
    link: LinkType,
    kind: ProgramKind,
    env: &FilterEnv,
) -> Result<Program, CompileError> {
    compile_program_opt(Some(expr), link, kind, env)
}

/// [`compile_program_env`] for a filter that may be the empty expression (`None`),
/// which matches every packet (what [`crate::pcapc::parse`] returns for blank text).
/// The userspace kinds take the wire length from the third word of their mbuff, the
/// direct SCHED_CLS kind from `__sk_buff->len`; `env.wire_len` is set accordingly.
pub fn compile_program_opt(
    expr: Option<&Expr>,
    link: LinkType,
    kind: ProgramKind,
    env: &FilterEnv,
) -> Result<Program, CompileError> {
    let mut a = Asm::new();
    let mut env = *env;
    // raw IP programs on a test frame start after its 14-byte Ethernet header
    let skip = if link == LinkType::RawIp { 14 } else { 0 };
    let src = match kind {
        ProgramKind::SchedClsDirect => {
            ctx_packet_type(&mut a, expr, &mut env, 4);
            ctx_ifindex(&mut a, expr, &mut env, 40);
            a.ldx(Size::W, Reg::R6, Reg::R1, 76);
            a.ldx(Size::W, Reg::R7, Reg::R1, 80);
            a.ldx(Size::W, Reg::R8, Reg::R1, 0);
            if skip > 0 {
                a.add64(Reg::R6, skip);
                a.add64(Reg::R8, -skip);
            }
            env.wire_len = WireLength::Reg(Reg::R8);
            PacketSource::Direct {
                start: Reg::R6,
                end: Reg::R7,
            }
        }
        ProgramKind::SchedClsKernelMemory => {
            ctx_packet_type(&mut a, expr, &mut env, 4);
            ctx_ifindex(&mut a, expr, &mut env, 40);
            a.ldx(Size::W, Reg::R6, Reg::R1, 76);
            a.ldx(Size::W, Reg::R7, Reg::R1, 0);
            if link == LinkType::RawIp {
                a.add64(Reg::R6, 14);
                a.add64(Reg::R7, -14);
            }
            PacketSource::KernelMemory {
                base: Reg::R6,
                len: Reg::R7,
                window: DEFAULT_WINDOW,
            }
        }
        ProgramKind::UserDirect => {
            a.ldx(Size::DW, Reg::R6, Reg::R1, 0);
            a.ldx(Size::DW, Reg::R7, Reg::R1, 8);
            a.ldx(Size::W, Reg::R8, Reg::R1, 16);
            env.wire_len = WireLength::Reg(Reg::R8);
            ctx_packet_type(&mut a, expr, &mut env, 20);
            ctx_ifindex(&mut a, expr, &mut env, 24);
            PacketSource::Direct {
                start: Reg::R6,
                end: Reg::R7,
            }
        }
        ProgramKind::UserKernelMemory => {
            a.ldx(Size::DW, Reg::R6, Reg::R1, 0);
            a.ldx(Size::DW, Reg::R7, Reg::R1, 8);
            a.ldx(Size::W, Reg::R8, Reg::R1, 16);
            env.wire_len = WireLength::Reg(Reg::R8);
            ctx_packet_type(&mut a, expr, &mut env, 20);
            ctx_ifindex(&mut a, expr, &mut env, 24);
            a.alu64(crate::asm::AluOp::Sub, Reg::R7, Reg::R6);
            PacketSource::KernelMemory {
                base: Reg::R6,
                len: Reg::R7,
                window: DEFAULT_WINDOW,
            }
        }
    };
    let m = a.label();
    let r = a.label();
    let st = emit(
        &mut a,
        &FilterSpec {
            expr,
            link,
            src,
            env,
            on_match: m,
            on_reject: r,
            reject_follows: true,
        },
    )?;
    if st.uses_reject {
        a.bind(r);
        a.mov64(Reg::R0, 0);
        a.exit();
    }
    if st.uses_match {
        a.bind(m);
        a.mov64(Reg::R0, 1);
        a.exit();
    }
    Ok(a.finish()?)
}

/// With [`MetaSource::Mbuff`], the program reads the packet's direction from its context
/// into R9 (the u32 at byte `at`: 20 in the userspace kinds' mbuff, `__sk_buff->pkt_type`
/// at 4 in the SCHED_CLS kinds), for the filters that test it (`inbound`, `outbound`);
/// the others stay as they were.
fn ctx_packet_type(a: &mut Asm, expr: Option<&Expr>, env: &mut FilterEnv, at: i16) {
    if env.pkt_type == MetaSource::Mbuff {
        if expr.is_some_and(Expr::reads_direction) {
            a.ldx(Size::W, Reg::R9, Reg::R1, at);
            env.pkt_type = MetaSource::Reg(Reg::R9);
        } else {
            env.pkt_type = MetaSource::Unknown;
        }
    }
}

/// With [`MetaSource::Mbuff`], the program copies the packet's interface from its
/// context (the u32 at byte `at`: 24 in the userspace kinds' mbuff,
/// `__sk_buff->ifindex` at 40 in the SCHED_CLS kinds) to the 8 bytes on top of the
/// filter's stack area, which moves down, for the filters that test it (`ifindex N`).
fn ctx_ifindex(a: &mut Asm, expr: Option<&Expr>, env: &mut FilterEnv, at: i16) {
    if env.ifindex == MetaSource::Mbuff {
        if expr.is_some_and(Expr::reads_ifindex) {
            let slot = (env.stack_top & !7) - 8;
            a.ldx(Size::W, Reg::R2, Reg::R1, at);
            a.stx(Size::W, Reg::R10, slot, Reg::R2);
            env.stack_top = slot;
            env.ifindex = MetaSource::Stack {
                offset: slot,
                size: 4,
                shift: 0,
                bits: 32,
            };
        } else {
            env.ifindex = MetaSource::Unknown;
        }
    }
}
