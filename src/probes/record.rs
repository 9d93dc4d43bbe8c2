//! The event-record stage of a probe: reserve a record, write the header every event has,
//! let each active [`RecordSection`] add its part, then submit. The sections themselves
//! live with their output (`output::sections`); probes only know this trait.

use std::fmt;
use std::sync::Arc;

use crate::asm::{AluOp, Asm, Cond, Helper, Label, Reg, Size};
use crate::btf::{Field, SkBuffLayout, SkbLayout};
use crate::load::MapSpec;

use super::event::{off, EventKind, EVENT_SIZE, FLAG_ARGS, FLAG_DROP_REASON};
use super::maps;
use super::program::{Attachment, ProbeError, PT_REGS_ARGS, PT_REGS_IP};

use Reg::*;

/// One optional part of the event record, as the probe sees it: what it needs from the
/// rest of the program and the code that fills it. Registers during [`RecordSection::emit`]:
/// r6 = the program's context, r7 = the skb, r8 = the record; r0-r5 and r9 are free.
pub trait RecordSection: fmt::Debug + Send + Sync {
    /// Refuses an attachment the section cannot record on.
    fn check(&self, _at: &Attachment) -> Result<(), ProbeError> {
        Ok(())
    }
    /// The maps its code references, with their shapes for the loader.
    fn maps(&self) -> Vec<MapSpec> {
        Vec::new()
    }
    /// `sk_buff` fields it reads from the program's copy of the skb ([`RecordStage::load_skb`]).
    fn skb_fields(&self, _skb: &SkBuffLayout) -> Vec<Field> {
        Vec::new()
    }
    /// Whether it reads the device facts ([`Frame::device`]) the filter chain computes.
    fn device_facts(&self) -> bool {
        false
    }
    /// Bytes it writes after the fixed record (at [`RecordStage::tail_at`]).
    fn tail_bytes(&self) -> usize {
        0
    }
    /// Emits the code that fills its part of the record at r8.
    fn emit(&self, r: &mut RecordStage<'_>) -> Result<(), ProbeError>;
}

/// The active sections of a probe, in the order they emit (see `output::sections`).
pub type RecordSections = Vec<Arc<dyn RecordSection>>;

/// The probe's copy of part of `struct sk_buff` on its stack: byte `lo` of the skb is at
/// stack offset `stack`.
#[derive(Clone, Copy, Debug)]
pub struct SkbWindow {
    pub lo: u32,
    pub stack: i16,
}

impl SkbWindow {
    /// Stack offset of `f` inside the window.
    pub fn at(&self, f: &Field) -> i16 {
        self.stack + (f.offset_bytes() - self.lo) as i16
    }
}

/// The device facts the filter chain leaves in u32 stack slots (zero when unknown).
#[derive(Clone, Copy, Debug)]
pub struct DeviceSlots {
    /// netns inode.
    pub netns: i16,
    pub ifindex: i16,
    /// Route MTU, else the device's.
    pub mtu: i16,
}

/// The probe's stack as the record stage may use it.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    /// A free 8-byte slot.
    pub scratch: i16,
    /// The device facts; the 16 bytes from `device.mtu` up to `scratch` are free once the
    /// meta section (which emits before the others that use them) copied the facts.
    pub device: DeviceSlots,
    /// A free 4-byte slot.
    pub spare: i16,
    /// Everything below this offset (down to -512) is free.
    pub below: i16,
}

/// What the record stage needs from the probe generator.
pub struct RecordEnv<'a> {
    pub layout: &'a SkbLayout,
    pub attach: &'a Attachment,
    /// The kernel has `bpf_get_func_ip` for this program type.
    pub has_get_func_ip: bool,
    pub window: SkbWindow,
    pub frame: Frame,
    /// Where the program exits.
    pub out: Label,
}

/// The state one section emits into.
pub struct RecordStage<'a> {
    pub a: &'a mut Asm,
    pub layout: &'a SkbLayout,
    pub attach: &'a Attachment,
    pub frame: Frame,
    /// Where the program exits.
    pub out: Label,
    /// Record offset of this section's bytes after the fixed record.
    pub tail_at: usize,
    window: SkbWindow,
    /// Flag bits set for every record (ORed into `flags` before submit).
    flags: u16,
}

impl RecordStage<'_> {
    /// Loads `f` (one of the section's [`RecordSection::skb_fields`]) from the skb copy.
    pub fn load_skb(&mut self, dst: Reg, f: &Field) -> Result<(), ProbeError> {
        let size = Size::from_bytes(f.size_bytes as usize)
            .ok_or_else(|| ProbeError::Layout(format!("field of {} bytes", f.size_bytes)))?;
        self.a.ldx(size, dst, R10, self.window.at(f));
        Ok(())
    }

    /// Every record of this probe gets `flag` (the section always fills its part).
    pub fn set_flag(&mut self, flag: u16) {
        self.flags |= flag;
    }

    /// Emits code setting `flag` in this record (a part filled only on some paths);
    /// clobbers r0.
    pub fn emit_set_flag(&mut self, flag: u16) {
        emit_or_flags(self.a, R0, flag);
    }

    /// `bpf_probe_read_kernel(r8 + at, size, r3)`: the source address must be in r3.
    pub fn read_to_record(&mut self, at: usize, size: i32) {
        self.a.mov64(R1, R8).add64(R1, at as i32).mov64(R2, size);
        self.a.call(Helper::PROBE_READ_KERNEL);
    }

    /// `bpf_probe_read_kernel(r10 + at, size, r3)`: the source address must be in r3.
    pub fn read_to_stack(&mut self, at: i16, size: i32) {
        self.a.mov64(R1, R10).add64(R1, at as i32).mov64(R2, size);
        self.a.call(Helper::PROBE_READ_KERNEL);
    }
}

/// `flags |= flag` in the record at r8, through `tmp`.
fn emit_or_flags(a: &mut Asm, tmp: Reg, flag: u16) {
    a.ldx(Size::H, tmp, R8, off::FLAGS as i16);
    a.alu32(AluOp::Or, tmp, flag as i32);
    a.stx(Size::H, R8, off::FLAGS as i16, tmp);
}

/// Size of the records a probe with `sections` submits.
pub fn record_bytes(sections: &[Arc<dyn RecordSection>]) -> usize {
    EVENT_SIZE + sections.iter().map(|s| s.tail_bytes()).sum::<usize>()
}

/// Emits the record stage: reserve (count a loss and exit when the ring buffer is full),
/// zero, header, each section, flags, submit; then jumps to `env.out`.
pub fn emit(
    a: &mut Asm,
    env: &RecordEnv<'_>,
    sections: &[Arc<dyn RecordSection>],
) -> Result<(), ProbeError> {
    let out = env.out;
    a.ld_map(R1, maps::EVENTS);
    a.mov64(R2, record_bytes(sections) as i32).mov64(R3, 0);
    a.call(Helper::RINGBUF_RESERVE);
    let reserved = a.label();
    a.jmp(Cond::Ne, R0, 0, reserved);
    count_lost(a, env.frame.scratch);
    a.ja(out);
    a.bind(reserved);
    a.mov64(R8, R0);
    for i in (0..EVENT_SIZE).step_by(8) {
        a.st(Size::DW, R8, i as i16, 0);
    }
    let flags = header(a, env);
    let mut stage = RecordStage {
        a,
        layout: env.layout,
        attach: env.attach,
        frame: env.frame,
        out,
        tail_at: EVENT_SIZE,
        window: env.window,
        flags,
    };
    for section in sections {
        section.emit(&mut stage)?;
        stage.tail_at += section.tail_bytes();
    }
    let flags = stage.flags;
    // Sections that fill their part on some paths only set their bit themselves.
    emit_or_flags(a, R1, flags);
    submit_batched(a);
    a.ja(out);
    Ok(())
}

/// Kind, skb, CPU, task, time, probe address, the next two arguments and a tracepoint's
/// drop reason; returns the flag bits every record of this probe has.
fn header(a: &mut Asm, env: &RecordEnv<'_>) -> u16 {
    let (kind, flags) = match env.attach {
        Attachment::Kprobe { multi: true, .. } => (EventKind::KprobeMulti, FLAG_ARGS),
        Attachment::Kprobe { .. } => (EventKind::Kprobe, FLAG_ARGS),
        Attachment::Tracepoint { .. } => (EventKind::Tracepoint, FLAG_ARGS),
        Attachment::SkbContext => (EventKind::Tracepoint, 0),
    };
    a.st(Size::H, R8, off::KIND as i16, kind as i32);
    a.stx(Size::DW, R8, off::SKB_ADDR as i16, R7);
    a.call(Helper::GET_SMP_PROCESSOR_ID);
    a.stx(Size::W, R8, off::CPU as i16, R0);
    a.call(Helper::GET_CURRENT_PID_TGID);
    a.stx(Size::DW, R8, off::PID_TGID as i16, R0);
    a.call(Helper::KTIME_GET_NS);
    a.stx(Size::DW, R8, off::KTIME_NS as i16, R0);
    match env.attach {
        Attachment::Kprobe { .. } => {
            if env.has_get_func_ip {
                a.mov64(R1, R6).call(Helper::GET_FUNC_IP);
            } else {
                // After the int3 of a kprobe, ip points one byte past the function start.
                a.ldx(Size::DW, R0, R6, PT_REGS_IP);
                a.add64(R0, -1);
            }
            a.stx(Size::DW, R8, off::PROBE_ADDR as i16, R0);
            a.ldx(Size::DW, R1, R6, PT_REGS_ARGS[1]);
            a.stx(Size::DW, R8, off::PARAM_SECOND as i16, R1);
            a.ldx(Size::DW, R1, R6, PT_REGS_ARGS[2]);
            a.stx(Size::DW, R8, off::PARAM_THIRD as i16, R1);
        }
        Attachment::Tracepoint {
            id,
            nargs,
            drop_reason_arg,
            ..
        } => {
            a.st(Size::DW, R8, off::PROBE_ADDR as i16, *id as i32);
            for (arg, field) in [(1u16, off::PARAM_SECOND), (2, off::PARAM_THIRD)] {
                if arg < *nargs {
                    a.ldx(Size::DW, R1, R6, arg as i16 * 8);
                    a.stx(Size::DW, R8, field as i16, R1);
                }
            }
            // Part of the header: every event of a tracepoint with a reason has it
            // (`output::sections::drop_reason` prints it).
            if let Some(r) = drop_reason_arg {
                a.ldx(Size::DW, R1, R6, *r as i16 * 8);
                a.stx(Size::DW, R8, off::DROP_REASON as i16, R1);
                return flags | FLAG_DROP_REASON;
            }
        }
        // probe_addr stays 0: the record was zeroed.
        Attachment::SkbContext => {}
    }
    flags
}

/// `bpf_ringbuf_submit(r8, flags)`: no wakeup unless `EVENTS_WAKEUP_BYTES` are waiting
/// (`bpf_ringbuf_query(BPF_RB_AVAIL_DATA)`), then a forced one.
fn submit_batched(a: &mut Asm) {
    const BPF_RB_NO_WAKEUP: i32 = 1;
    const BPF_RB_FORCE_WAKEUP: i32 = 2;
    const BPF_RB_AVAIL_DATA: i32 = 0;
    let submit = a.label();
    a.ld_map(R1, maps::EVENTS);
    a.mov64(R2, BPF_RB_AVAIL_DATA);
    a.call(Helper::RINGBUF_QUERY);
    a.mov64(R2, BPF_RB_NO_WAKEUP);
    a.jmp(Cond::Lt, R0, maps::EVENTS_WAKEUP_BYTES as i32, submit);
    a.mov64(R2, BPF_RB_FORCE_WAKEUP);
    a.bind(submit);
    a.mov64(R1, R8);
    a.call(Helper::RINGBUF_SUBMIT);
}

/// `lost[0] += 1` (per-CPU), using the 8-byte stack slot `key`.
fn count_lost(a: &mut Asm, key: i16) {
    let done = a.label();
    a.st(Size::W, R10, key, 0);
    a.ld_map(R1, maps::LOST);
    a.mov64(R2, R10).add64(R2, key as i32);
    a.call(Helper::MAP_LOOKUP_ELEM);
    a.jmp(Cond::Eq, R0, 0, done);
    a.ldx(Size::DW, R1, R0, 0);
    a.add64(R1, 1);
    a.stx(Size::DW, R0, 0, R1);
    a.bind(done);
}
