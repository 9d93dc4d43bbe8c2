//! Encoding of every instruction class checked against independent references: rbpf 0.4's
//! assembler and decoder for the v3 ISA, hand-checked bytes for the cpu-v4 forms it lacks.

use pwru::asm::builder::{AluOp, Asm, AtomicOp, Cond, Reg::*, Size};
use pwru::asm::{assemble, disassemble_insn, Helper, Insn};

/// Builder code and the same instruction(s) in rbpf's assembly syntax.
type Case = (fn(&mut Asm), &'static str);

/// Builder code, its expected bytes and its kernel-syntax text.
type HandCase = (fn(&mut Asm), [u8; 8], &'static str);

fn bytes_of(build: fn(&mut Asm)) -> Vec<u8> {
    let mut a = Asm::new();
    build(&mut a);
    a.finish().expect("valid case").bytecode()
}

const ALU_OPS: [(AluOp, &str); 12] = [
    (AluOp::Add, "add"),
    (AluOp::Sub, "sub"),
    (AluOp::Mul, "mul"),
    (AluOp::Div, "div"),
    (AluOp::Or, "or"),
    (AluOp::And, "and"),
    (AluOp::Lsh, "lsh"),
    (AluOp::Rsh, "rsh"),
    (AluOp::Mod, "mod"),
    (AluOp::Xor, "xor"),
    (AluOp::Mov, "mov"),
    (AluOp::Arsh, "arsh"),
];

const CONDS: [(Cond, &str); 11] = [
    (Cond::Eq, "jeq"),
    (Cond::Ne, "jne"),
    (Cond::Gt, "jgt"),
    (Cond::Ge, "jge"),
    (Cond::Lt, "jlt"),
    (Cond::Le, "jle"),
    (Cond::Sgt, "jsgt"),
    (Cond::Sge, "jsge"),
    (Cond::Slt, "jslt"),
    (Cond::Sle, "jsle"),
    (Cond::Set, "jset"),
];

const SIZES: [(Size, &str); 4] = [
    (Size::B, "b"),
    (Size::H, "h"),
    (Size::W, "w"),
    (Size::DW, "dw"),
];

#[test]
fn alu_matches_rbpf_assembler() {
    for (o, name) in ALU_OPS {
        let cases: [(Vec<u8>, String); 4] = [
            (
                {
                    let mut a = Asm::new();
                    a.alu64(o, R3, R7);
                    a.finish().unwrap().bytecode()
                },
                format!("{name}64 r3, r7"),
            ),
            (
                {
                    let mut a = Asm::new();
                    a.alu64(o, R3, -77);
                    a.finish().unwrap().bytecode()
                },
                format!("{name}64 r3, -77"),
            ),
            (
                {
                    let mut a = Asm::new();
                    a.alu32(o, R9, R0);
                    a.finish().unwrap().bytecode()
                },
                format!("{name}32 r9, r0"),
            ),
            (
                {
                    let mut a = Asm::new();
                    a.alu32(o, R1, 0x1234_5678);
                    a.finish().unwrap().bytecode()
                },
                format!("{name}32 r1, 0x12345678"),
            ),
        ];
        for (ours, text) in cases {
            let theirs = rbpf::assembler::assemble(&text).unwrap();
            assert_eq!(ours, theirs, "{text}");
        }
    }
}

#[test]
fn jumps_match_rbpf_assembler() {
    for (c, name) in CONDS {
        for (class32, suffix) in [(false, ""), (true, "32")] {
            let mut a = Asm::new();
            let l = a.label();
            let back = a.label();
            a.bind(back);
            if class32 {
                a.jmp32(c, R1, R2, l);
                a.jmp32(c, R4, -5, back);
            } else {
                a.jmp(c, R1, R2, l);
                a.jmp(c, R4, -5, back);
            }
            a.exit();
            a.bind(l);
            let ours = a.finish().unwrap().bytecode();
            let text = format!("{name}{suffix} r1, r2, +2\n{name}{suffix} r4, -5, -2\nexit");
            assert_eq!(ours, rbpf::assembler::assemble(&text).unwrap(), "{text}");
        }
    }
}

#[test]
fn memory_and_misc_match_rbpf_assembler() {
    for (size, s) in SIZES {
        let mut a = Asm::new();
        a.ldx(size, R1, R6, 128);
        a.stx(size, R10, -8, R1);
        a.st(size, R10, -16, 7);
        let ours = a.finish().unwrap().bytecode();
        let text = format!("ldx{s} r1, [r6+128]\nstx{s} [r10-8], r1\nst{s} [r10-16], 7");
        assert_eq!(ours, rbpf::assembler::assemble(&text).unwrap(), "{text}");
    }
    for (size, s) in &SIZES[..3] {
        let mut a = Asm::new();
        a.ld_abs(*size, 12);
        a.ld_ind(*size, R7, 14);
        let ours = a.finish().unwrap().bytecode();
        let text = format!("ldabs{s} 12\nldind{s} r7, 14");
        assert_eq!(ours, rbpf::assembler::assemble(&text).unwrap(), "{text}");
    }
    let cases: &[Case] = &[
        (
            |a| {
                a.neg64(R2);
            },
            "neg64 r2",
        ),
        (
            |a| {
                a.neg32(R2);
            },
            "neg32 r2",
        ),
        (
            |a| {
                a.to_be(R1, 16);
            },
            "be16 r1",
        ),
        (
            |a| {
                a.to_be(R1, 32);
            },
            "be32 r1",
        ),
        (
            |a| {
                a.to_be(R1, 64);
            },
            "be64 r1",
        ),
        (
            |a| {
                a.to_le(R1, 16);
            },
            "le16 r1",
        ),
        (
            |a| {
                a.to_le(R1, 64);
            },
            "le64 r1",
        ),
        (
            |a| {
                a.ld_imm64(R1, 0x1122_3344_5566_7788);
            },
            "lddw r1, 0x1122334455667788",
        ),
        (
            |a| {
                a.call(Helper::PROBE_READ_KERNEL);
            },
            "call 113",
        ),
        (
            |a| {
                a.exit();
            },
            "exit",
        ),
        (
            |a| {
                let l = a.label();
                a.ja(l);
                a.exit();
                a.bind(l);
            },
            "ja +1\nexit",
        ),
    ];
    for (build, text) in cases {
        assert_eq!(
            bytes_of(*build),
            rbpf::assembler::assemble(text).unwrap(),
            "{text}"
        );
    }
}

/// rbpf's decoder reads back what we encoded, field by field, with the mnemonic we expect.
#[test]
fn rbpf_decoder_reads_our_encoding() {
    let mut a = Asm::new();
    a.alu64(AluOp::Add, R1, 0x605)
        .mov64(R2, 0x32)
        .mov64(R1, R0)
        .to_be(R0, 16)
        .neg64(R2)
        .ldx(Size::W, R1, R6, 128)
        .stx(Size::DW, R10, -8, R1)
        .st(Size::H, R10, -2, 9)
        .ld_abs(Size::H, 12)
        .ld_imm64(R3, 0xdead_beef_0000_0001);
    let l = a.label();
    a.jmp32(Cond::Sle, R1, R2, l).call_id(6).bind(l).exit();
    let prog = a.finish().unwrap();
    let decoded = rbpf::disassembler::to_insn_vec(&prog.bytecode());
    let names: Vec<&str> = decoded.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "add64", "mov64", "mov64", "be", "neg64", "ldxw", "stxdw", "sth", "ldabsh", "lddw",
            "jsle32", "call", "exit"
        ]
    );
    let mut slot = 0;
    for h in &decoded {
        let ours = prog.insns[slot];
        assert_eq!(
            (h.opc, h.dst, h.src, h.off),
            (ours.code, ours.dst, ours.src, ours.off)
        );
        if ours.is_ld_imm64() {
            assert_eq!(h.imm as u64, 0xdead_beef_0000_0001);
            slot += 2;
        } else {
            assert_eq!(h.imm, ours.imm as i64);
            slot += 1;
        }
    }
}

/// cpu-v4 and atomic forms rbpf 0.4 doesn't know: bytes checked by hand against the kernel's
/// `Documentation/bpf/standardization/instruction-set.rst`.
#[test]
fn cpu_v4_and_atomics_hand_checked() {
    let cases: &[HandCase] = &[
        (
            |a| {
                a.alu64(AluOp::Sdiv, R1, 3);
            },
            [0x37, 0x01, 0x01, 0x00, 0x03, 0, 0, 0],
            "r1 s/= 3",
        ),
        (
            |a| {
                a.alu32(AluOp::Sdiv, R1, R2);
            },
            [0x3c, 0x21, 0x01, 0x00, 0, 0, 0, 0],
            "w1 s/= w2",
        ),
        (
            |a| {
                a.alu64(AluOp::Smod, R1, R2);
            },
            [0x9f, 0x21, 0x01, 0x00, 0, 0, 0, 0],
            "r1 s%= r2",
        ),
        (
            |a| {
                a.alu64(AluOp::Movsx8, R1, R2);
            },
            [0xbf, 0x21, 0x08, 0x00, 0, 0, 0, 0],
            "r1 = (s8)r2",
        ),
        (
            |a| {
                a.alu64(AluOp::Movsx32, R1, R2);
            },
            [0xbf, 0x21, 0x20, 0x00, 0, 0, 0, 0],
            "r1 = (s32)r2",
        ),
        (
            |a| {
                a.alu32(AluOp::Movsx16, R1, R2);
            },
            [0xbc, 0x21, 0x10, 0x00, 0, 0, 0, 0],
            "w1 = (s16)w2",
        ),
        (
            |a| {
                a.ldxs(Size::W, R1, R6, 8);
            },
            [0x81, 0x61, 0x08, 0x00, 0, 0, 0, 0],
            "r1 = *(s32 *)(r6 +8)",
        ),
        (
            |a| {
                a.ldxs(Size::B, R2, R10, -1);
            },
            [0x91, 0xa2, 0xff, 0xff, 0, 0, 0, 0],
            "r2 = *(s8 *)(r10 -1)",
        ),
        (
            |a| {
                a.ldxs(Size::H, R0, R1, 2);
            },
            [0x89, 0x10, 0x02, 0x00, 0, 0, 0, 0],
            "r0 = *(s16 *)(r1 +2)",
        ),
        (
            |a| {
                a.bswap(R1, 16);
            },
            [0xd7, 0x01, 0, 0, 0x10, 0, 0, 0],
            "r1 = bswap16 r1",
        ),
        (
            |a| {
                a.bswap(R3, 64);
            },
            [0xd7, 0x03, 0, 0, 0x40, 0, 0, 0],
            "r3 = bswap64 r3",
        ),
        (
            |a| {
                a.atomic(AtomicOp::Add, Size::DW, R1, 0, R2);
            },
            [0xdb, 0x21, 0, 0, 0, 0, 0, 0],
            "lock *(u64 *)(r1 +0) += r2",
        ),
        (
            |a| {
                a.atomic(AtomicOp::Or, Size::W, R1, 4, R2);
            },
            [0xc3, 0x21, 0x04, 0, 0x40, 0, 0, 0],
            "lock *(u32 *)(r1 +4) |= r2",
        ),
        (
            |a| {
                a.atomic(AtomicOp::And, Size::DW, R10, -8, R3);
            },
            [0xdb, 0x3a, 0xf8, 0xff, 0x50, 0, 0, 0],
            "lock *(u64 *)(r10 -8) &= r3",
        ),
        (
            |a| {
                a.atomic(AtomicOp::Xor, Size::W, R1, 0, R2);
            },
            [0xc3, 0x21, 0, 0, 0xa0, 0, 0, 0],
            "lock *(u32 *)(r1 +0) ^= r2",
        ),
        (
            |a| {
                a.atomic(AtomicOp::FetchAdd, Size::DW, R1, 0, R2);
            },
            [0xdb, 0x21, 0, 0, 0x01, 0, 0, 0],
            "r2 = atomic64_fetch_add((u64 *)(r1 +0), r2)",
        ),
        (
            |a| {
                a.atomic(AtomicOp::FetchOr, Size::W, R1, 0, R2);
            },
            [0xc3, 0x21, 0, 0, 0x41, 0, 0, 0],
            "r2 = atomic_fetch_or((u32 *)(r1 +0), r2)",
        ),
        (
            |a| {
                a.atomic(AtomicOp::FetchAnd, Size::DW, R1, 0, R2);
            },
            [0xdb, 0x21, 0, 0, 0x51, 0, 0, 0],
            "r2 = atomic64_fetch_and((u64 *)(r1 +0), r2)",
        ),
        (
            |a| {
                a.atomic(AtomicOp::FetchXor, Size::DW, R1, 0, R2);
            },
            [0xdb, 0x21, 0, 0, 0xa1, 0, 0, 0],
            "r2 = atomic64_fetch_xor((u64 *)(r1 +0), r2)",
        ),
        (
            |a| {
                a.atomic(AtomicOp::Xchg, Size::DW, R1, 8, R2);
            },
            [0xdb, 0x21, 0x08, 0, 0xe1, 0, 0, 0],
            "r2 = atomic64_xchg((u64 *)(r1 +8), r2)",
        ),
        (
            |a| {
                a.atomic(AtomicOp::Cmpxchg, Size::W, R1, 0, R2);
            },
            [0xc3, 0x21, 0, 0, 0xf1, 0, 0, 0],
            "r0 = atomic_cmpxchg((u32 *)(r1 +0), r0, r2)",
        ),
    ];
    for (build, want, text) in cases {
        let bytes = bytes_of(*build);
        assert_eq!(bytes, want, "{text}");
        let insn = Insn::from_bytes(*want);
        assert_eq!(disassemble_insn(&insn, None), *text);
        assert_eq!(assemble(text).unwrap().bytecode(), want, "{text}");
    }
}

#[test]
fn long_jump_hand_checked() {
    let mut a = Asm::new();
    let l = a.label();
    a.ja_long(l);
    for _ in 0..5 {
        a.exit();
    }
    a.bind(l);
    let p = a.finish().unwrap();
    assert_eq!(p.insns[0].to_bytes(), [0x06, 0, 0, 0, 5, 0, 0, 0]);
    assert_eq!(disassemble_insn(&p.insns[0], None), "gotol pc+5");
}
