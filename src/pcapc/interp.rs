//! A small eBPF interpreter for running compiled filters in userspace (`--filter-check`
//! and the tests), with the kernel's semantics for the instructions filters use.
//!
//! Memory is three regions at made-up addresses, so no host pointer is ever
//! dereferenced: the 512-byte stack (R10 is its top), the context block R1 points to,
//! and the packet. Any other address is an error, not undefined behaviour. The only
//! helper is `bpf_probe_read_kernel`, which copies from the packet and fails
//! (-EFAULT, zeroed destination) outside it, like the kernel's. Unlike rbpf 0.4, whose
//! jumps wrap past instruction 32767, programs of any length run.

use crate::asm::insn::op;
use crate::asm::{Helper, Insn};

/// Why a run stopped without a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpError {
    #[error("instruction {pc}: memory access of {size} bytes at {addr:#x} is outside the stack, context and packet")]
    BadAccess { pc: usize, addr: u64, size: usize },
    #[error("instruction {pc}: unsupported opcode {code:#04x}")]
    BadOpcode { pc: usize, code: u8 },
    #[error("instruction {pc}: call to unsupported helper {id}")]
    BadHelper { pc: usize, id: i32 },
    #[error("jump from instruction {pc} leaves the program")]
    BadJump { pc: usize },
    #[error("the program ran more than {0} instructions")]
    TooLong(u64),
}

/// Bytes of stack a program may use below R10.
pub const STACK_BYTES: usize = 512;
/// Instructions a run may execute before it is stopped.
pub const MAX_STEPS: u64 = 50_000_000;
/// Where the regions appear to the program.
pub const STACK_TOP: u64 = 0x1000_0000_0000;
pub const CONTEXT_BASE: u64 = 0x2000_0000_0000;
pub const PACKET_BASE: u64 = 0x3000_0000_0000;

const EFAULT: u64 = (-14i64) as u64;

struct Memory<'a> {
    stack: [u8; STACK_BYTES],
    context: &'a [u8],
    packet: &'a [u8],
}

/// Which region (0 stack, 1 context, 2 packet) and offset an access falls in.
fn locate(addr: u64, size: usize, lens: [usize; 3]) -> Option<(usize, usize)> {
    let bases = [STACK_TOP - STACK_BYTES as u64, CONTEXT_BASE, PACKET_BASE];
    bases
        .iter()
        .zip(lens)
        .enumerate()
        .find_map(|(region, (base, len))| {
            let off = addr.checked_sub(*base)?;
            (off.checked_add(size as u64)? <= len as u64).then_some((region, off as usize))
        })
}

impl Memory<'_> {
    fn lens(&self) -> [usize; 3] {
        [STACK_BYTES, self.context.len(), self.packet.len()]
    }

    fn read(&self, pc: usize, addr: u64, size: usize) -> Result<u64, InterpError> {
        let (region, off) =
            locate(addr, size, self.lens()).ok_or(InterpError::BadAccess { pc, addr, size })?;
        let bytes = match region {
            0 => &self.stack[off..off + size],
            1 => &self.context[off..off + size],
            _ => &self.packet[off..off + size],
        };
        let mut v = [0u8; 8];
        v[..size].copy_from_slice(bytes);
        Ok(u64::from_le_bytes(v))
    }

    /// Only the stack is writable.
    fn write(&mut self, pc: usize, addr: u64, size: usize, value: u64) -> Result<(), InterpError> {
        match locate(addr, size, self.lens()) {
            Some((0, off)) => {
                self.stack[off..off + size].copy_from_slice(&value.to_le_bytes()[..size]);
                Ok(())
            }
            _ => Err(InterpError::BadAccess { pc, addr, size }),
        }
    }

    /// `bpf_probe_read_kernel(dst, size, src)`: from the packet into the stack.
    fn probe_read(&mut self, pc: usize, dst: u64, size: u64, src: u64) -> Result<u64, InterpError> {
        let size = size as usize;
        let Some((0, at)) = locate(dst, size, self.lens()) else {
            return Err(InterpError::BadAccess {
                pc,
                addr: dst,
                size,
            });
        };
        match locate(src, size, self.lens()) {
            Some((2, from)) => {
                self.stack[at..at + size].copy_from_slice(&self.packet[from..from + size]);
                Ok(0)
            }
            _ => {
                self.stack[at..at + size].fill(0);
                Ok(EFAULT)
            }
        }
    }
}

fn size_of(code: u8) -> usize {
    match code & 0x18 {
        op::B => 1,
        op::H => 2,
        op::W => 4,
        _ => 8,
    }
}

/// One ALU operation with eBPF semantics (division by zero gives 0, modulo by zero
/// leaves the dividend; shift counts are taken modulo the width).
fn alu(code: u8, a: u64, b: u64, wide: bool) -> Option<u64> {
    let bits = if wide { 64 } else { 32 };
    let mask = if wide { u64::MAX } else { u32::MAX as u64 };
    let (a, b) = (a & mask, b & mask);
    let r = match code & 0xf0 {
        op::ADD => a.wrapping_add(b),
        op::SUB => a.wrapping_sub(b),
        op::MUL => a.wrapping_mul(b),
        op::DIV => a.checked_div(b).unwrap_or(0),
        op::MOD => a.checked_rem(b).unwrap_or(a),
        op::OR => a | b,
        op::AND => a & b,
        op::XOR => a ^ b,
        op::LSH => a << (b % bits),
        op::RSH => a >> (b % bits),
        op::ARSH if wide => ((a as i64) >> (b % 64)) as u64,
        op::ARSH => ((a as u32 as i32) >> (b % 32)) as u32 as u64,
        op::NEG => a.wrapping_neg(),
        op::MOV => b,
        _ => return None,
    };
    Some(r & mask)
}

fn jump_taken(code: u8, a: u64, b: u64, wide: bool) -> Option<bool> {
    let (a, b, sa, sb) = if wide {
        (a, b, a as i64, b as i64)
    } else {
        let (a, b) = (a as u32, b as u32);
        (a as u64, b as u64, a as i32 as i64, b as i32 as i64)
    };
    Some(match code & 0xf0 {
        op::JEQ => a == b,
        op::JNE => a != b,
        op::JGT => a > b,
        op::JGE => a >= b,
        op::JLT => a < b,
        op::JLE => a <= b,
        op::JSET => a & b != 0,
        op::JSGT => sa > sb,
        op::JSGE => sa >= sb,
        op::JSLT => sa < sb,
        op::JSLE => sa <= sb,
        _ => return None,
    })
}

/// Runs `prog` with R1 = the context block and the packet readable; returns R0.
pub fn run(prog: &[Insn], context: &[u8], packet: &[u8]) -> Result<u64, InterpError> {
    let mut mem = Memory {
        stack: [0; STACK_BYTES],
        context,
        packet,
    };
    let mut reg = [0u64; 11];
    reg[1] = CONTEXT_BASE;
    reg[10] = STACK_TOP;
    let mut pc = 0usize;
    let mut steps = 0u64;
    loop {
        steps += 1;
        if steps > MAX_STEPS {
            return Err(InterpError::TooLong(MAX_STEPS));
        }
        let insn = *prog.get(pc).ok_or(InterpError::BadJump {
            pc: pc.saturating_sub(1),
        })?;
        let (dst, src) = (insn.dst as usize & 0x0f, insn.src as usize & 0x0f);
        if dst > 10 || src > 10 {
            return Err(InterpError::BadOpcode {
                pc,
                code: insn.code,
            });
        }
        let imm = insn.imm as i64 as u64;
        let mut next = pc + 1;
        match insn.class() {
            op::ALU | op::ALU64 => {
                let wide = insn.class() == op::ALU64;
                if insn.code & 0xf0 == op::END {
                    let v = reg[dst];
                    let to_be = insn.code & op::X == op::TO_BE;
                    reg[dst] = match (insn.imm, to_be) {
                        (16, true) => (v as u16).swap_bytes() as u64,
                        (32, true) => (v as u32).swap_bytes() as u64,
                        (64, true) => v.swap_bytes(),
                        (16, false) => v as u16 as u64,
                        (32, false) => v as u32 as u64,
                        (64, false) => v,
                        _ => {
                            return Err(InterpError::BadOpcode {
                                pc,
                                code: insn.code,
                            })
                        }
                    };
                } else {
                    let b = if insn.code & op::X != 0 {
                        reg[src]
                    } else {
                        imm
                    };
                    reg[dst] = alu(insn.code, reg[dst], b, wide).ok_or(InterpError::BadOpcode {
                        pc,
                        code: insn.code,
                    })?;
                }
            }
            op::JMP | op::JMP32 => {
                let wide = insn.class() == op::JMP;
                match insn.code & 0xf0 {
                    op::EXIT => return Ok(reg[0]),
                    op::CALL => {
                        if insn.imm != Helper::PROBE_READ_KERNEL.id() || insn.src != 0 {
                            return Err(InterpError::BadHelper { pc, id: insn.imm });
                        }
                        reg[0] = mem.probe_read(pc, reg[1], reg[2], reg[3])?;
                    }
                    op::JA => {
                        let off = if wide {
                            insn.off as i64
                        } else {
                            insn.imm as i64
                        };
                        next = target(pc, off, prog.len())?;
                    }
                    _ => {
                        let b = if insn.code & op::X != 0 {
                            reg[src]
                        } else {
                            imm
                        };
                        let taken = jump_taken(insn.code, reg[dst], b, wide).ok_or(
                            InterpError::BadOpcode {
                                pc,
                                code: insn.code,
                            },
                        )?;
                        if taken {
                            next = target(pc, insn.off as i64, prog.len())?;
                        }
                    }
                }
            }
            op::LDX => {
                let size = size_of(insn.code);
                let addr = reg[src].wrapping_add(insn.off as i64 as u64);
                reg[dst] = mem.read(pc, addr, size)?;
            }
            op::STX | op::ST => {
                if insn.code & 0xe0 != op::MEM {
                    return Err(InterpError::BadOpcode {
                        pc,
                        code: insn.code,
                    });
                }
                let size = size_of(insn.code);
                let addr = reg[dst].wrapping_add(insn.off as i64 as u64);
                let v = if insn.class() == op::STX {
                    reg[src]
                } else {
                    imm
                };
                mem.write(pc, addr, size, v)?;
            }
            op::LD if insn.is_ld_imm64() && insn.src == 0 => {
                let hi = prog.get(pc + 1).ok_or(InterpError::BadJump { pc })?;
                reg[dst] = (insn.imm as u32 as u64) | ((hi.imm as u32 as u64) << 32);
                next = pc + 2;
            }
            _ => {
                return Err(InterpError::BadOpcode {
                    pc,
                    code: insn.code,
                })
            }
        }
        pc = next;
    }
}

fn target(pc: usize, off: i64, len: usize) -> Result<usize, InterpError> {
    let t = pc as i64 + 1 + off;
    if t < 0 || t as usize >= len {
        return Err(InterpError::BadJump { pc });
    }
    Ok(t as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::{AluOp, Asm, Cond, Reg, Size};

    fn run_asm(build: impl FnOnce(&mut Asm), packet: &[u8]) -> Result<u64, InterpError> {
        let mut a = Asm::new();
        build(&mut a);
        let p = a.finish().unwrap();
        run(&p.insns, &[0; 8], packet)
    }

    #[test]
    fn alu_and_jumps_follow_the_kernel() {
        // 32-bit results are zero-extended; division by zero gives 0, modulo keeps
        let r = run_asm(
            |a| {
                a.mov64(Reg::R0, -1);
                a.alu32(AluOp::Add, Reg::R0, 2);
                a.mov64(Reg::R1, 0);
                a.mov64(Reg::R2, 7);
                a.alu64(AluOp::Div, Reg::R2, Reg::R1);
                a.alu64(AluOp::Add, Reg::R0, Reg::R2);
                a.mov64(Reg::R3, 9);
                a.alu32(AluOp::Mod, Reg::R3, Reg::R1);
                a.alu64(AluOp::Add, Reg::R0, Reg::R3);
                a.exit();
            },
            &[],
        );
        assert_eq!(r, Ok(1 + 9));
        // byte swaps and a backward loop
        let r = run_asm(
            |a| {
                let top = a.label();
                let done = a.label();
                a.mov64(Reg::R0, 0x1234);
                a.to_be(Reg::R0, 16);
                a.mov64(Reg::R1, 3);
                a.bind(top);
                a.jmp(Cond::Eq, Reg::R1, 0, done);
                a.alu64(AluOp::Add, Reg::R0, 1);
                a.alu64(AluOp::Sub, Reg::R1, 1);
                a.ja(top);
                a.bind(done);
                a.exit();
            },
            &[],
        );
        assert_eq!(r, Ok(0x3412 + 3));
    }

    #[test]
    fn memory_is_the_stack_context_and_packet_only() {
        let load_packet = |off: i16| {
            move |a: &mut Asm| {
                a.ldx(Size::DW, Reg::R2, Reg::R1, 0);
                a.mov64(Reg::R2, 0);
                a.ld_imm64(Reg::R2, PACKET_BASE);
                a.ldx(Size::H, Reg::R0, Reg::R2, off);
                a.stx(Size::H, Reg::R10, -2, Reg::R0);
                a.ldx(Size::H, Reg::R0, Reg::R10, -2);
                a.exit();
            }
        };
        assert_eq!(run_asm(load_packet(1), &[1, 2, 3]), Ok(0x0302));
        assert!(matches!(
            run_asm(load_packet(2), &[1, 2, 3]),
            Err(InterpError::BadAccess { size: 2, .. })
        ));
        // the packet is read-only
        let r = run_asm(
            |a| {
                a.ld_imm64(Reg::R2, PACKET_BASE);
                a.st(Size::B, Reg::R2, 0, 1);
                a.exit();
            },
            &[0],
        );
        assert!(matches!(r, Err(InterpError::BadAccess { .. })));
    }

    #[test]
    fn probe_read_copies_from_the_packet_or_fails() {
        let read = |src: u64, size: i32| {
            move |a: &mut Asm| {
                a.mov64(Reg::R1, Reg::R10);
                a.add64(Reg::R1, -8);
                a.mov64(Reg::R2, size);
                a.ld_imm64(Reg::R3, src);
                a.call(Helper::PROBE_READ_KERNEL);
                a.ldx(Size::B, Reg::R1, Reg::R10, -8);
                a.alu64(AluOp::Lsh, Reg::R0, 8);
                a.alu64(AluOp::Or, Reg::R0, Reg::R1);
                a.exit();
            }
        };
        assert_eq!(run_asm(read(PACKET_BASE + 1, 2), &[5, 6, 7]), Ok(6));
        assert_eq!(
            run_asm(read(PACKET_BASE + 2, 2), &[5, 6, 7]),
            Ok(EFAULT << 8)
        );
    }

    #[test]
    fn long_programs_jump_past_32767() {
        let r = run_asm(
            |a| {
                let (top, done) = (a.label(), a.label());
                a.mov64(Reg::R0, 0);
                for _ in 0..40_000 {
                    a.alu64(AluOp::Add, Reg::R0, 1);
                }
                a.mov64(Reg::R1, 3);
                a.bind(top);
                a.jmp(Cond::Eq, Reg::R1, 0, done);
                a.alu64(AluOp::Add, Reg::R0, 1);
                a.alu64(AluOp::Sub, Reg::R1, 1);
                a.ja(top);
                a.bind(done);
                a.exit();
            },
            &[],
        );
        assert_eq!(r, Ok(40_003));
    }
}
