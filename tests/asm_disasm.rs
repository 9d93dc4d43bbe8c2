//! Disassembly snapshots: a table of encodings and their kernel-syntax text, a whole program
//! listing, and (as root) the kernel verifier's own log compared line by line with ours.
#![recursion_limit = "256"]

use pwru::asm::{assemble, disassemble, disassemble_insn, disassemble_program, Insn};
use pwru::bpf;

fn i(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn::new(code, dst, src, off, imm)
}

#[test]
fn single_instruction_table() {
    let table: &[(Insn, &str)] = &[
        // ALU64 / ALU32, register and immediate
        (i(0xbf, 6, 1, 0, 0), "r6 = r1"),
        (i(0xb7, 0, 0, 0, 1), "r0 = 1"),
        (i(0xb7, 0, 0, 0, -1), "r0 = -1"),
        (i(0xb4, 0, 0, 0, 0), "w0 = 0"),
        (i(0x0c, 1, 2, 0, 0), "w1 += w2"),
        (i(0x07, 1, 0, 0, -8), "r1 += -8"),
        (i(0x1f, 1, 2, 0, 0), "r1 -= r2"),
        (i(0x27, 1, 0, 0, 3), "r1 *= 3"),
        (i(0x3f, 1, 2, 0, 0), "r1 /= r2"),
        (i(0x47, 1, 0, 0, 0x10), "r1 |= 16"),
        (i(0x54, 1, 0, 0, 255), "w1 &= 255"),
        (i(0x67, 1, 0, 0, 32), "r1 <<= 32"),
        (i(0x77, 1, 0, 0, 32), "r1 >>= 32"),
        (i(0x97, 1, 0, 0, 10), "r1 %= 10"),
        (i(0xaf, 1, 1, 0, 0), "r1 ^= r1"),
        (i(0xc7, 1, 0, 0, 63), "r1 s>>= 63"),
        (i(0xcc, 1, 2, 0, 0), "w1 s>>= w2"),
        (i(0x87, 3, 0, 0, 0), "r3 = -r3"),
        (i(0x84, 3, 0, 0, 0), "w3 = -w3"),
        // cpu v4 ALU
        (i(0x3f, 1, 2, 1, 0), "r1 s/= r2"),
        (i(0x34, 1, 0, 1, 3), "w1 s/= 3"),
        (i(0x97, 1, 0, 1, 7), "r1 s%= 7"),
        (i(0xbf, 1, 2, 8, 0), "r1 = (s8)r2"),
        (i(0xbf, 1, 2, 16, 0), "r1 = (s16)r2"),
        (i(0xbf, 1, 2, 32, 0), "r1 = (s32)r2"),
        (i(0xbc, 1, 2, 8, 0), "w1 = (s8)w2"),
        // byte order
        (i(0xdc, 1, 0, 0, 16), "r1 = be16 r1"),
        (i(0xdc, 1, 0, 0, 64), "r1 = be64 r1"),
        (i(0xd4, 2, 0, 0, 32), "r2 = le32 r2"),
        (i(0xd7, 2, 0, 0, 16), "r2 = bswap16 r2"),
        // memory
        (i(0x61, 1, 6, 128, 0), "r1 = *(u32 *)(r6 +128)"),
        (i(0x79, 1, 10, -8, 0), "r1 = *(u64 *)(r10 -8)"),
        (i(0x69, 1, 1, 0, 0), "r1 = *(u16 *)(r1 +0)"),
        (i(0x71, 0, 2, 3, 0), "r0 = *(u8 *)(r2 +3)"),
        (i(0x91, 0, 2, 3, 0), "r0 = *(s8 *)(r2 +3)"),
        (i(0x7b, 10, 1, -8, 0), "*(u64 *)(r10 -8) = r1"),
        (i(0x73, 10, 1, -1, 0), "*(u8 *)(r10 -1) = r1"),
        (i(0x62, 10, 0, -4, 7), "*(u32 *)(r10 -4) = 7"),
        (i(0x6a, 10, 0, -2, -1), "*(u16 *)(r10 -2) = -1"),
        (i(0x72, 1, 0, 0, 1), "*(u8 *)(r1 +0) = 1"),
        (i(0x7a, 10, 0, -16, 0), "*(u64 *)(r10 -16) = 0"),
        // atomics
        (i(0xdb, 1, 2, 0, 0x00), "lock *(u64 *)(r1 +0) += r2"),
        (i(0xc3, 1, 2, 8, 0x50), "lock *(u32 *)(r1 +8) &= r2"),
        (
            i(0xdb, 1, 2, 0, 0x01),
            "r2 = atomic64_fetch_add((u64 *)(r1 +0), r2)",
        ),
        (
            i(0xc3, 10, 3, -4, 0xa1),
            "r3 = atomic_fetch_xor((u32 *)(r10 -4), r3)",
        ),
        (
            i(0xdb, 1, 2, 0, 0xe1),
            "r2 = atomic64_xchg((u64 *)(r1 +0), r2)",
        ),
        (
            i(0xdb, 1, 2, 0, 0xf1),
            "r0 = atomic64_cmpxchg((u64 *)(r1 +0), r0, r2)",
        ),
        // legacy packet access
        (i(0x28, 0, 0, 0, 12), "r0 = *(u16 *)skb[12]"),
        (i(0x30, 0, 0, 0, 23), "r0 = *(u8 *)skb[23]"),
        (i(0x40, 0, 7, 0, 14), "r0 = *(u32 *)skb[r7 + 14]"),
        // jumps
        (i(0x25, 1, 0, 3, 5), "if r1 > 0x5 goto pc+3"),
        (i(0x15, 0, 0, -4, 0), "if r0 == 0x0 goto pc-4"),
        (i(0x55, 1, 0, 1, -1), "if r1 != 0xffffffff goto pc+1"),
        (i(0x2d, 1, 2, 0, 0), "if r1 > r2 goto pc+0"),
        (i(0x3d, 1, 2, 1, 0), "if r1 >= r2 goto pc+1"),
        (i(0xa5, 1, 0, 1, 9), "if r1 < 0x9 goto pc+1"),
        (i(0xbd, 1, 2, 1, 0), "if r1 <= r2 goto pc+1"),
        (i(0x65, 1, 0, 1, 9), "if r1 s> 0x9 goto pc+1"),
        (i(0x7d, 1, 2, 1, 0), "if r1 s>= r2 goto pc+1"),
        (i(0xc5, 1, 0, 1, 9), "if r1 s< 0x9 goto pc+1"),
        (i(0xdd, 1, 2, 1, 0), "if r1 s<= r2 goto pc+1"),
        (i(0x45, 1, 0, 1, 4), "if r1 & 0x4 goto pc+1"),
        (i(0x16, 1, 0, 2, 5), "if w1 == 0x5 goto pc+2"),
        (i(0x5e, 1, 2, 2, 0), "if w1 != w2 goto pc+2"),
        (i(0x05, 0, 0, 7, 0), "goto pc+7"),
        (i(0x05, 0, 0, -1, 0), "goto pc-1"),
        (i(0x06, 0, 0, 0, 70000), "gotol pc+70000"),
        (i(0x85, 0, 0, 0, 113), "call bpf_probe_read_kernel#113"),
        (i(0x85, 0, 0, 0, 5), "call bpf_ktime_get_ns#5"),
        (i(0x85, 0, 0, 0, 100000), "call unknown#100000"),
        (i(0x85, 0, 1, 0, 4), "call pc+4"),
        (i(0x85, 0, 2, 0, 1234), "call kernel-function#1234"),
        (i(0x95, 0, 0, 0, 0), "exit"),
        // invalid encodings
        (i(0xff, 0, 0, 0, 0), "invalid insn"),
        (i(0x0f, 11, 0, 0, 0), "invalid insn"),
        (i(0x07, 1, 2, 0, 5), "invalid insn"),
        (i(0x0f, 1, 2, 0, 5), "invalid insn"),
        (i(0xbf, 1, 2, 7, 0), "invalid insn"),
        (i(0xd7, 1, 0, 0, 8), "invalid insn"),
        (i(0x99, 1, 0, 0, 0), "invalid insn"),
        (i(0x95, 0, 0, 0, 1), "invalid insn"),
        (i(0x96, 0, 0, 0, 0), "invalid insn"),
        (i(0xdb, 1, 2, 0, 0x02), "invalid insn"),
        (i(0xd3, 1, 2, 0, 0x00), "invalid insn"),
        (i(0x99, 0, 0, 0, 0), "invalid insn"),
        (i(0x38, 0, 0, 0, 0), "invalid insn"),
        (i(0x00, 0, 0, 0, 0), "invalid insn"),
    ];
    for (insn, want) in table {
        assert_eq!(disassemble_insn(insn, None), *want, "{insn:?}");
        if *want != "invalid insn" {
            let back = assemble(want).unwrap_or_else(|e| panic!("{want}: {e}"));
            assert_eq!(back.insns, vec![*insn], "{want}");
        }
    }
}

#[test]
fn wide_loads_table() {
    let table: &[([Insn; 2], &str)] = &[
        (
            [i(0x18, 1, 0, 0, 0x1234), i(0, 0, 0, 0, 0)],
            "r1 = 0x1234 ll",
        ),
        (
            [i(0x18, 2, 0, 0, -1), i(0, 0, 0, 0, -1)],
            "r2 = 0xffffffffffffffff ll",
        ),
        ([i(0x18, 1, 1, 0, 5), i(0, 0, 0, 0, 0)], "r1 = map[fd:5]"),
        (
            [i(0x18, 1, 2, 0, 5), i(0, 0, 0, 0, 16)],
            "r1 = map[fd:5][0]+16",
        ),
        ([i(0x18, 1, 5, 0, 0), i(0, 0, 0, 0, 0)], "r1 = map[idx:0]"),
        ([i(0x18, 1, 6, 0, 2), i(0, 0, 0, 0, 8)], "r1 = map[idx:2]+8"),
        ([i(0x18, 3, 3, 0, 77), i(0, 0, 0, 0, 0)], "r3 = btf_id[77]"),
        ([i(0x18, 3, 4, 0, -3), i(0, 0, 0, 0, 0)], "r3 = subprog[-3]"),
        // bad second slot, unknown pseudo source
        ([i(0x18, 1, 0, 0, 1), i(0x07, 0, 0, 0, 0)], "invalid insn"),
        ([i(0x18, 1, 9, 0, 1), i(0, 0, 0, 0, 0)], "invalid insn"),
    ];
    for (pair, want) in table {
        assert_eq!(disassemble_insn(&pair[0], Some(&pair[1])), *want);
        if *want != "invalid insn" {
            assert_eq!(assemble(want).unwrap().insns, pair.to_vec(), "{want}");
        }
    }
}

#[test]
fn program_listing_snapshot() {
    let prog = bpf! {
        r6 = r1;
        r1 = map[events];
        r2 = r10;
        r2 += -8;
        *(u64 *)(r10 - 8) = 0;
      again:
        r3 = *(u32 *)(r6 + 128);
        if w3 s> 0x10 goto again;
        r4 = 0xdeadbeef00 ll;
        call map_lookup_elem;
        if r0 == 0 goto out;
        lock *(u64 *)(r0 + 0) += r4;
      out:
        r0 = 0;
        exit;
    }
    .unwrap();
    let want = "   0: (bf) r6 = r1
   1: (18) r1 = map[events]
   3: (bf) r2 = r10
   4: (07) r2 += -8
   5: (7a) *(u64 *)(r10 -8) = 0
   6: (61) r3 = *(u32 *)(r6 +128)
   7: (66) if w3 s> 0x10 goto pc-2
   8: (18) r4 = 0xdeadbeef00 ll
  10: (85) call bpf_map_lookup_elem#1
  11: (15) if r0 == 0x0 goto pc+1
  12: (db) lock *(u64 *)(r0 +0) += r4
  13: (b7) r0 = 0
  14: (95) exit
";
    assert_eq!(disassemble_program(&prog), want);
    // Without names the map shows its (not yet assigned) fd.
    assert!(disassemble(&prog.insns).contains("   1: (18) r1 = map[fd:0]\n"));
    // The listing is itself valid assembler input.
    assert_eq!(assemble(want).unwrap(), prog);
}

/// Minimal `bpf(BPF_PROG_LOAD)` for a socket filter, returning (result, verifier log).
fn load_with_log(insns: &[Insn]) -> (i64, String) {
    #[repr(C)]
    #[derive(Default)]
    struct ProgLoadAttr {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        rest: [u64; 16],
    }
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
    let bytes = pwru::asm::insn::to_bytecode(insns);
    let license = b"GPL\0";
    let mut log = vec![0u8; 1 << 20];
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: insns.len() as u32,
        insns: bytes.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 2,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: attr points to valid memory of the declared size; the kernel writes only into
    // `log` (within log_size).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd >= 0 {
        // SAFETY: fd is a descriptor we own.
        unsafe { libc::close(fd as i32) };
    }
    let result = if fd < 0 {
        -(std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64)
    } else {
        0
    };
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    (result, String::from_utf8_lossy(&log[..end]).into_owned())
}

/// The kernel's verifier prints every instruction it checks; ours must print the same text.
#[test]
fn matches_the_kernel_verifier_log() {
    let prog = bpf! {
        r6 = r1;
        r7 = 0;
        r0 = *(u16 *)skb[12];
        r0 = *(u8 *)skb[r7 + 14];
        r0 = *(u32 *)skb[0];
        r2 = 5;
        w3 = 7;
        r2 += r3; r2 -= 1; r2 *= r3; r2 /= 3; r2 |= r3; r2 &= 255; r2 <<= 2; r2 >>= r3;
        r2 %= 7; r2 ^= r3; r2 s>>= 1; r2 = -r2;
        w2 += w3; w2 -= 1; w2 *= w3; w2 /= 3; w2 |= w3; w2 &= -1; w2 <<= 2; w2 >>= w3;
        w2 %= 7; w2 ^= w3; w2 s>>= 1; w2 = -w2; w2 = w3;
        r2 s/= 3; r2 s%= r3; w2 s/= w3; w2 s%= 5;
        r4 = (s8)r2; r4 = (s16)r2; r4 = (s32)r2; w4 = (s8)w2; w4 = (s16)w2;
        r2 = be16 r2; r2 = be32 r2; r2 = be64 r2; r2 = le16 r2; r2 = le32 r2; r2 = le64 r2;
        r2 = bswap16 r2; r2 = bswap32 r2; r2 = bswap64 r2;
        r5 = 0x1122334455667788 ll;
        *(u64 *)(r10 - 8) = r2;
        *(u32 *)(r10 - 16) = 7;
        *(u16 *)(r10 - 18) = 1;
        *(u8 *)(r10 - 19) = 1;
        *(u64 *)(r10 - 32) = 0;
        r3 = *(u32 *)(r10 - 16);
        r3 = *(u16 *)(r10 - 18);
        r3 = *(u8 *)(r10 - 19);
        r3 = *(u64 *)(r10 - 8);
        r3 = *(s8 *)(r10 - 8);
        r3 = *(s16 *)(r10 - 8);
        r3 = *(s32 *)(r10 - 8);
        lock *(u64 *)(r10 - 8) += r2;
        lock *(u64 *)(r10 - 8) |= r2;
        lock *(u64 *)(r10 - 8) &= r2;
        lock *(u64 *)(r10 - 8) ^= r2;
        lock *(u32 *)(r10 - 16) += r2;
        r2 = atomic64_fetch_add((u64 *)(r10 - 8), r2);
        r2 = atomic64_fetch_or((u64 *)(r10 - 8), r2);
        r2 = atomic64_fetch_and((u64 *)(r10 - 8), r2);
        r2 = atomic64_fetch_xor((u64 *)(r10 - 8), r2);
        r2 = atomic_fetch_add((u32 *)(r10 - 16), r2);
        r2 = atomic64_xchg((u64 *)(r10 - 8), r2);
        r0 = 0;
        r0 = atomic64_cmpxchg((u64 *)(r10 - 8), r0, r2);
        r0 = atomic_cmpxchg((u32 *)(r10 - 16), r0, r2);
        call ktime_get_ns;
        r8 = r0;
        call get_prandom_u32;
        r9 = r0;
        if r8 > 5 goto a; r4 = 0;
      a:
        if r8 == r9 goto b; r4 = 0;
      b:
        if w8 s< -1 goto c; r4 = 0;
      c:
        if r8 & 4 goto d; r4 = 0;
      d:
        if w8 <= w9 goto e; r4 = 0;
      e:
        if r8 s>= r9 goto f; r4 = 0;
      f:
        gotol g;
      g:
        goto h;
      h:
        r0 = 0;
        exit;
    }
    .unwrap();
    let (res, log) = load_with_log(&prog.insns);
    if res == -(libc::EPERM as i64) {
        eprintln!("skipped: BPF_PROG_LOAD not permitted ({res}); needs root");
        return;
    }
    assert_eq!(res, 0, "kernel rejected the program:\n{log}");
    // Our text per instruction index; the kernel omits ` ll` on 64-bit immediates.
    let ours: std::collections::HashMap<usize, String> = disassemble(&prog.insns)
        .lines()
        .map(|l| {
            let (idx, text) = l.trim_start().split_once(": ").unwrap();
            let text = text.trim_end_matches(" ll").to_string();
            (idx.parse().unwrap(), text)
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for line in log.lines() {
        // "12: (bf) r6 = r1    ; R1=ctx() R6_w=ctx()"
        let Some((idx, rest)) = line.split_once(": (") else {
            continue;
        };
        let Ok(idx) = idx.parse::<usize>() else {
            continue;
        };
        let kernel = format!("({}", rest.split(';').next().unwrap().trim_end());
        assert_eq!(ours[&idx], kernel, "instruction {idx}");
        seen.insert(idx);
    }
    let mut missing: Vec<_> = ours.keys().filter(|k| !seen.contains(k)).collect();
    missing.sort();
    assert!(missing.is_empty(), "not in the log: {missing:?}\n{log}");
}
