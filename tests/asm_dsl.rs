//! The `bpf!` macro: every statement form against the builder call it stands for, Rust
//! expressions interpolated, the `into` form, and errors surfacing from `finish`.

use pwru::asm::builder::{AluOp, Asm, AtomicOp, Cond, Reg, Reg::*, Size};
use pwru::asm::dsl::{MemType, Operand};
use pwru::asm::{assemble, disassemble_program, AsmError, Helper, Program};
use pwru::bpf;
use pwru::probes::maps;

fn built(f: impl FnOnce(&mut Asm)) -> Vec<pwru::asm::Insn> {
    let mut a = Asm::new();
    f(&mut a);
    a.finish().unwrap().insns
}

#[test]
fn alu_forms() {
    let p = bpf! {
        r0 = 1; r6 = r1; w0 = w1; r0 = -1; w2 = -7;
        r1 += r2; r1 -= 3; r1 *= r2; r1 /= 3; r1 %= r2; r1 |= 0x10; r1 &= r2; r1 ^= -1;
        r1 <<= 3; r1 >>= r2; r1 s>>= 3; r1 s/= r2; r1 s%= -3;
        w1 += w2; w1 s>>= w2; w1 s/= 3;
        r1 = -r1; w1 = -w1;
        r1 = (s8)r2; r1 = (s16)r2; r1 = (s32)r2; w1 = (s8)w2; w1 = (s16)w2;
        r1 = be16 r1; r1 = be32 r1; r1 = le64 r1; r1 = bswap32 r1;
    }
    .unwrap();
    let want = built(|a| {
        a.mov64(R0, 1)
            .mov64(R6, R1)
            .mov32(R0, R1)
            .mov64(R0, -1)
            .mov32(R2, -7);
        a.alu64(AluOp::Add, R1, R2)
            .alu64(AluOp::Sub, R1, 3)
            .alu64(AluOp::Mul, R1, R2)
            .alu64(AluOp::Div, R1, 3)
            .alu64(AluOp::Mod, R1, R2)
            .alu64(AluOp::Or, R1, 0x10)
            .alu64(AluOp::And, R1, R2)
            .alu64(AluOp::Xor, R1, -1);
        a.alu64(AluOp::Lsh, R1, 3)
            .alu64(AluOp::Rsh, R1, R2)
            .alu64(AluOp::Arsh, R1, 3)
            .alu64(AluOp::Sdiv, R1, R2)
            .alu64(AluOp::Smod, R1, -3);
        a.alu32(AluOp::Add, R1, R2)
            .alu32(AluOp::Arsh, R1, R2)
            .alu32(AluOp::Sdiv, R1, 3);
        a.neg64(R1).neg32(R1);
        a.alu64(AluOp::Movsx8, R1, R2)
            .alu64(AluOp::Movsx16, R1, R2)
            .alu64(AluOp::Movsx32, R1, R2)
            .alu32(AluOp::Movsx8, R1, R2)
            .alu32(AluOp::Movsx16, R1, R2);
        a.to_be(R1, 16).to_be(R1, 32).to_le(R1, 64).bswap(R1, 32);
    });
    assert_eq!(p.insns, want);
}

#[test]
fn memory_forms() {
    let p = bpf! {
        r1 = *(u32 *)(r6 + 128);
        r1 = *(u64 *)(r10 - 8);
        r1 = *(u8 *)(r2);
        r1 = *(s16 *)(r2 + 2);
        *(u64 *)(r10 - 8) = r1;
        *(u16 *)(r10 - 2) = 0x1234;
        *(u32 *)(r10 - 4) = -1;
        *(u8 *)(r1) = r2;
        lock *(u64 *)(r1 + 0) += r2;
        lock *(u32 *)(r1 + 4) |= r2;
        lock *(u64 *)(r1) &= r2;
        lock *(u64 *)(r1) ^= r2;
        r2 = atomic64_fetch_add((u64 *)(r1 + 0), r2);
        r2 = atomic_fetch_or((u32 *)(r1 + 0), r2);
        r2 = atomic64_fetch_and((u64 *)(r1 + 0), r2);
        r2 = atomic64_fetch_xor((u64 *)(r1 + 0), r2);
        r3 = atomic64_xchg((u64 *)(r1 - 8), r3);
        r0 = atomic_cmpxchg((u32 *)(r1 + 0), r0, r2);
        r0 = *(u16 *)skb[12];
        r0 = *(u32 *)skb[r7 + 14];
        r1 = 0x1122334455667788 ll;
        r1 = -2 ll;
        r1 = map[events];
    }
    .unwrap();
    let want = built(|a| {
        a.ldx(Size::W, R1, R6, 128)
            .ldx(Size::DW, R1, R10, -8)
            .ldx(Size::B, R1, R2, 0)
            .ldxs(Size::H, R1, R2, 2);
        a.stx(Size::DW, R10, -8, R1)
            .st(Size::H, R10, -2, 0x1234)
            .st(Size::W, R10, -4, -1)
            .stx(Size::B, R1, 0, R2);
        a.atomic(AtomicOp::Add, Size::DW, R1, 0, R2)
            .atomic(AtomicOp::Or, Size::W, R1, 4, R2)
            .atomic(AtomicOp::And, Size::DW, R1, 0, R2)
            .atomic(AtomicOp::Xor, Size::DW, R1, 0, R2)
            .atomic(AtomicOp::FetchAdd, Size::DW, R1, 0, R2)
            .atomic(AtomicOp::FetchOr, Size::W, R1, 0, R2)
            .atomic(AtomicOp::FetchAnd, Size::DW, R1, 0, R2)
            .atomic(AtomicOp::FetchXor, Size::DW, R1, 0, R2)
            .atomic(AtomicOp::Xchg, Size::DW, R1, -8, R3)
            .atomic(AtomicOp::Cmpxchg, Size::W, R1, 0, R2);
        a.ld_abs(Size::H, 12).ld_ind(Size::W, R7, 14);
        a.ld_imm64(R1, 0x1122_3344_5566_7788)
            .ld_imm64(R1, -2i64 as u64)
            .ld_map(R1, "events");
    });
    assert_eq!(p.insns, want);
    assert_eq!(p.map_refs[0].map, "events");
    assert_eq!(p.map_refs[0].insn_index, p.len() - 2);
}

#[test]
fn jumps_calls_and_labels() {
    let p = bpf! {
      top:
        if r1 == 0 goto out;
        if r1 != r2 goto top;
        if w1 > 0xffffffff goto out;
        if r1 >= 1 goto out;
        if r1 < r3 goto out;
        if r1 <= 2 goto out;
        if r1 s> -1 goto out;
        if w1 s>= w2 goto out;
        if r1 s< 4 goto out;
        if r1 s<= r2 goto top;
        if r1 & 0x8 goto out;
        goto top;
        gotol out;
        call probe_read_kernel;
        call bpf_ktime_get_ns;
        call (Helper::RINGBUF_OUTPUT);
        call 6;
      out:
        exit;
    }
    .unwrap();
    let want = built(|a| {
        let top = a.label();
        let out = a.label();
        a.bind(top);
        a.jmp(Cond::Eq, R1, 0, out).jmp(Cond::Ne, R1, R2, top);
        a.jmp32(Cond::Gt, R1, -1, out).jmp(Cond::Ge, R1, 1, out);
        a.jmp(Cond::Lt, R1, R3, out).jmp(Cond::Le, R1, 2, out);
        a.jmp(Cond::Sgt, R1, -1, out).jmp32(Cond::Sge, R1, R2, out);
        a.jmp(Cond::Slt, R1, 4, out).jmp(Cond::Sle, R1, R2, top);
        a.jmp(Cond::Set, R1, 8, out).ja(top).ja_long(out);
        a.call(Helper::PROBE_READ_KERNEL)
            .call(Helper::KTIME_GET_NS)
            .call(Helper::RINGBUF_OUTPUT)
            .call_id(6);
        a.bind(out).exit();
    });
    assert_eq!(p.insns, want);
}

#[test]
fn rust_expressions_are_interpolated() {
    struct Layout {
        len: u16,
    }
    let layout = Layout { len: 112 };
    let key = -16i64;
    let mask = 0xff_u32;
    let map = String::from("skb_addrs");
    let p = bpf! {
        r1 = *(u32 *)(r6 + (layout.len));
        *(u64 *)(r10 + key) = r1;
        r1 &= mask;
        r2 = {layout.len as i32 * 2};
        if r1 == (mask - 1) goto l;
        r3 = map[(map)];
      l:
        r0 = ({ 1 + 1 }) ll;
        exit;
    }
    .unwrap();
    let want = built(|a| {
        let l = a.label();
        a.ldx(Size::W, R1, R6, 112).stx(Size::DW, R10, -16, R1);
        a.alu64(AluOp::And, R1, 0xff).mov64(R2, 224);
        a.jmp(Cond::Eq, R1, 0xfe, l).ld_map(R3, "skb_addrs");
        a.bind(l).ld_imm64(R0, 2).exit();
    });
    assert_eq!(p.insns, want);
    assert_eq!(p.map_refs[0].map, "skb_addrs");
}

#[test]
fn into_appends_and_shares_labels() {
    let mut a = Asm::new();
    a.mov64(R6, R1);
    bpf!(into &mut a; if r6 == 0 goto done;);
    for off in [8i16, 16] {
        bpf!(into &mut a; r1 = *(u64 *)(r6 + off););
    }
    let tail = a.label();
    a.ja(tail);
    bpf!(into &mut a; done: r0 = 0;);
    a.bind(tail);
    a.exit();
    let p = a.finish().unwrap();
    assert_eq!(
        disassemble_program(&p),
        "   0: (bf) r6 = r1
   1: (15) if r6 == 0x0 goto pc+3
   2: (79) r1 = *(u64 *)(r6 +8)
   3: (79) r1 = *(u64 *)(r6 +16)
   4: (05) goto pc+1
   5: (b7) r0 = 0
   6: (95) exit
"
    );
}

#[test]
fn errors_come_back_from_finish() {
    assert_eq!(
        bpf! { goto nowhere; exit; }.unwrap_err(),
        AsmError::UnknownLabel("nowhere".into())
    );
    assert_eq!(
        bpf! { l: r0 = 0; l: exit; }.unwrap_err(),
        AsmError::LabelRebound("l".into())
    );
    let far = 40_000;
    let mut a = Asm::new();
    bpf!(into &mut a; goto end;);
    for _ in 0..far {
        a.mov64(R0, 0);
    }
    bpf!(into &mut a; end: exit;);
    assert!(matches!(
        a.finish(),
        Err(AsmError::JumpOutOfRange { at: 0, .. })
    ));
    let big = 1i64 << 40;
    let bad: Vec<Result<_, AsmError>> = vec![
        bpf! { r1 += w2; },
        bpf! { w1 = r2; },
        bpf! { r1 = (big); },
        bpf! { r1 = *(u32 *)(r6 + 40000); },
        bpf! { *(u32 *)(r6 + 0) = w1; },
        // `call no_such_helper;` does not compile (see the `bpf!` docs); a name given as a
        // run-time string is looked up when the program is built.
        bpf! { call ("no_such_helper"); },
        bpf! { r1 = -r2; },
        bpf! { r1 = be16 r2; },
        bpf! { r1 = be8 r1; },
        bpf! { w1 = (s32)w2; },
        bpf! { r3 = atomic64_fetch_add((u64 *)(r1 + 0), r2); },
        bpf! { r2 = atomic_fetch_add((u64 *)(r1 + 0), r2); },
        bpf! { r1 = atomic64_cmpxchg((u64 *)(r1 + 0), r0, r2); },
        bpf! { r1 = *(u16 *)skb[12]; },
        bpf! { r10 = 0; },
        bpf! { if r1 == w2 goto x; x: exit; },
        bpf! { if r1 == (big) goto x; x: exit; },
        bpf! { *(s32 *)(r10 - 4) = 1; },
        bpf! { lock *(u8 *)(r10 - 4) += r1; },
        bpf! { r1 = (1i128 << 64) ll; },
    ];
    for (n, r) in bad.into_iter().enumerate() {
        assert!(matches!(r, Err(AsmError::BadOperand(_))), "case {n}: {r:?}");
    }
}

/// DSL and text assembler agree: the DSL program's listing assembles to the same program.
#[test]
fn dsl_listing_round_trips_through_text() {
    let p = bpf! {
        r6 = r1;
        r7 = *(u64 *)(r6 + 16);
        if r7 == 0 goto drop;
        r1 = r10;
        r1 += -16;
        r2 = 16;
        r3 = r7;
        call probe_read_kernel;
        r1 = map[events];
        r2 = r10;
        r2 += -16;
        r3 = 16;
        r4 = 0;
        call ringbuf_output;
      drop:
        w0 = 0;
        exit;
    }
    .unwrap();
    assert_eq!(assemble(&disassemble_program(&p)).unwrap(), p);
}

fn finished(f: impl FnOnce(&mut Asm)) -> Program {
    let mut a = Asm::new();
    f(&mut a);
    a.finish().unwrap()
}

/// Each form that takes a Rust value, next to the builder calls it stands for.
#[test]
fn rust_value_forms_match_the_builder() {
    type Emit = fn(&mut Asm);
    let table: &[(&str, Emit, Emit)] = &[
        (
            "label value: bind and goto",
            |a| {
                let l = a.label();
                bpf!(into a; goto (l); r0 = 0; (l): exit;);
            },
            |a| {
                let l = a.label();
                a.ja(l).mov64(R0, 0).bind(l).exit();
            },
        ),
        (
            "label value: conditional jump with an expression immediate, gotol",
            |a| {
                let (l, k) = (a.label(), 7u32);
                bpf!(into a; (l): if r1 == (k) goto (l); if w1 s< (k + 1) goto (l); gotol (l););
            },
            |a| {
                let l = a.label();
                a.bind(l).jmp(Cond::Eq, R1, 7, l);
                a.jmp32(Cond::Slt, R1, 8, l).ja_long(l);
            },
        ),
        (
            "comparison as a value",
            |a| {
                let l = a.label();
                for c in [Cond::Eq, Cond::Sgt, Cond::Set] {
                    bpf!(into a; if r1 (c) r2 goto (l); if w1 (c) -3 goto (l););
                }
                bpf!(into a; (l): exit;);
            },
            |a| {
                let l = a.label();
                for c in [Cond::Eq, Cond::Sgt, Cond::Set] {
                    a.jmp(c, R1, R2, l).jmp32(c, R1, -3, l);
                }
                a.bind(l).exit();
            },
        ),
        (
            "fresh labels per loop iteration",
            |a| {
                for k in 0..3 {
                    let skip = a.label();
                    bpf!(into a; if r1 != (k) goto (skip); r0 += 1; (skip):);
                }
                bpf!(into a; exit;);
            },
            |a| {
                for k in 0..3 {
                    let skip = a.label();
                    a.jmp(Cond::Ne, R1, k, skip).add64(R0, 1).bind(skip);
                }
                a.exit();
            },
        ),
        (
            "expression offsets: parenthesized, bare variable, everything after +",
            |a| {
                let slot = -16i16;
                mod off {
                    pub const KIND: usize = 4;
                }
                bpf!(into a;
                    *(u64 *)(r10 + (slot)) = r1;
                    r2 = *(u64 *)(r10 + slot);
                    *(u16 *)(r8 + off::KIND) = 3;
                    r3 = *(u8 *)(r10 + slot + 9);
                    r4 = *(u32 *)(r10 - (slot + 20));
                );
            },
            |a| {
                a.stx(Size::DW, R10, -16, R1).ldx(Size::DW, R2, R10, -16);
                a.st(Size::H, R8, 4, 3).ldx(Size::B, R3, R10, -7);
                a.ldx(Size::W, R4, R10, -4);
            },
        ),
        (
            "expression immediates in ALU and stores",
            |a| {
                let (off, mask) = (24i32, 0xff00_0000u32);
                bpf!(into a;
                    r1 += (off);
                    r1 -= off;
                    w2 &= (mask);
                    r3 = {off * 2};
                    *(u32 *)(r10 - 4) = (mask);
                );
            },
            |a| {
                a.add64(R1, 24).alu64(AluOp::Sub, R1, 24);
                a.alu32(AluOp::And, R2, 0xff00_0000u32 as i32).mov64(R3, 48);
                a.st(Size::W, R10, -4, 0xff00_0000u32 as i32);
            },
        ),
        (
            "register values as destination, source, base and comparison operand",
            |a| {
                let (dst, base, key): (Reg, Reg, Reg) = (R7, R6, R0);
                bpf!(into a;
                    (dst) = *(u64 *)((base) + 8);
                    *(u32 *)((base) - 4) = (dst);
                    r9 = (key);
                    (dst) += 1;
                    if (dst) == (key) goto out;
                    (dst) = -(dst);
                    w1 = (Operand::R32(R2));
                  out:
                );
            },
            |a| {
                let out = a.label();
                a.ldx(Size::DW, R7, R6, 8).stx(Size::W, R6, -4, R7);
                a.mov64(R9, R0).add64(R7, 1).jmp(Cond::Eq, R7, R0, out);
                a.neg64(R7).mov32(R1, R2).bind(out);
            },
        ),
        (
            "access type as a value: MemType, Size, expression",
            |a| {
                struct Win {
                    ty: Size,
                    at: i16,
                }
                let (ty, w) = (
                    MemType::U16,
                    Win {
                        ty: Size::W,
                        at: -40,
                    },
                );
                let sty = MemType::S8;
                bpf!(into a;
                    r1 = *(ty *)(r10 - 2);
                    r2 = *((w.ty) *)(r10 + (w.at));
                    *((w.ty) *)(r10 + (w.at)) = r2;
                    r3 = *(sty *)(r1 + 0);
                    lock *((Size::DW) *)(r1 + 0) += r2;
                );
            },
            |a| {
                a.ldx(Size::H, R1, R10, -2).ldx(Size::W, R2, R10, -40);
                a.stx(Size::W, R10, -40, R2).ldxs(Size::B, R3, R1, 0);
                a.atomic(AtomicOp::Add, Size::DW, R1, 0, R2);
            },
        ),
        (
            "typed maps by path and by expression",
            |a| {
                let def = maps::TRACKED_SKBS;
                bpf!(into a; r1 = map[maps::EVENTS]; r2 = map[(def)]; r3 = map[def.name];);
            },
            |a| {
                a.ld_map(R1, "events")
                    .ld_map(R2, "tracked_skbs")
                    .ld_map(R3, "tracked_skbs");
            },
        ),
        (
            "helpers: compile-time names, Helper values, ids, run-time names",
            |a| {
                let name = "get_current_pid_tgid";
                bpf!(into a;
                    call map_lookup_elem;
                    call bpf_get_smp_processor_id;
                    call (Helper::RINGBUF_RESERVE);
                    call (Helper::PROBE_READ_KERNEL.id());
                    call (name);
                );
            },
            |a| {
                a.call(Helper::MAP_LOOKUP_ELEM)
                    .call(Helper::GET_SMP_PROCESSOR_ID)
                    .call(Helper::RINGBUF_RESERVE)
                    .call(Helper::PROBE_READ_KERNEL)
                    .call(Helper::GET_CURRENT_PID_TGID);
            },
        ),
    ];
    for (name, dsl, builder) in table {
        assert_eq!(finished(*dsl), finished(*builder), "{name}");
    }
}

#[test]
fn named_labels_in_a_loop_bind_twice_label_values_do_not() {
    let mut a = Asm::new();
    for _ in 0..2 {
        bpf!(into &mut a; if r1 == 0 goto skip; r0 = 1; skip:);
    }
    bpf!(into &mut a; exit;);
    assert_eq!(a.finish(), Err(AsmError::LabelRebound("skip".into())));
    let mut a = Asm::new();
    let l = a.label();
    bpf!(into &mut a; (l): (l): exit;);
    assert!(matches!(a.finish(), Err(AsmError::LabelRebound(_))));
}

#[test]
fn typed_values_report_bad_operands() {
    let base = R10;
    let bad: Vec<Result<_, AsmError>> = vec![
        bpf! { (base) = 1; },
        bpf! { r1 = *(u64 *)((Operand::R32(R1)) + 0); },
        bpf! { w1 = (R2); },
    ];
    for (n, r) in bad.into_iter().enumerate() {
        assert!(matches!(r, Err(AsmError::BadOperand(_))), "case {n}: {r:?}");
    }
}
