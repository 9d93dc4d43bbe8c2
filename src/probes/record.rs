//! The event-record stage of a probe: reserve a record, write the header every event has,
//! let each active [`RecordSection`] add its part, then submit. The sections themselves
//! live with their output (`output::sections`); probes only know this trait.

use std::fmt;
use std::sync::Arc;

use crate::asm::dsl::Operand;
use crate::asm::{Asm, Label, Reg, Size};
use crate::bpf;
use crate::btf::{Field, PtRegsLayout, SkBuffLayout, SkbLayout};

use super::event::{
    bpf_prog_probe_addr, off, EventKind, COMM_LEN, EVENT_SIZE, FLAG_ARGS, FLAG_DROP_REASON,
    FLAG_VERDICT,
};
use super::maps::{self, MapDef};
use super::program::{Attachment, KprobeLink, ProbeError};

use Reg::*;

/// One optional part of the event record, as the probe sees it: what it needs from the
/// rest of the program and the code that fills it. Registers during [`RecordSection::emit`]:
/// r6 = the program's context, r7 = the skb, r8 = the record; r0-r5 and r9 are free.
pub trait RecordSection: fmt::Debug + Send + Sync {
    /// Refuses an attachment the section cannot record on.
    fn check(&self, _at: &Attachment) -> Result<(), ProbeError> {
        Ok(())
    }
    /// The maps its code references (their shapes give the loader's specs).
    fn maps(&self) -> Vec<&'static MapDef> {
        Vec::new()
    }
    /// `sk_buff` fields it reads from the program's copy of the skb ([`RecordStage::skb_field`]).
    fn skb_fields(&self, _skb: &SkBuffLayout) -> Vec<Field> {
        Vec::new()
    }
    /// Whether it reads the device facts ([`Frame::device`]) the filter chain computes.
    fn device_facts(&self) -> bool {
        false
    }
    /// Bytes it writes after the fixed record (at [`RecordStage::tail_at`]). The ring
    /// buffer does not zero them: the section writes what it reads back, or a marker first
    /// (the fixed record's flag bits all belong to today's sections, see `event`).
    fn tail_bytes(&self) -> usize {
        0
    }
    /// Bytes it may add after its [`RecordSection::tail_bytes`], at most (`--output-pcap`'s
    /// packet bytes): the record then ends with them and goes to the ring buffer at its
    /// used length. The first `u32` of the section's area holds how many it used. Only the
    /// last recording section may have them.
    fn variable_bytes(&self) -> usize {
        0
    }
    /// Emits the code that fills its part of the record at r8.
    fn emit(&self, r: &mut RecordStage<'_>) -> Result<(), ProbeError>;
}

/// The active sections of a probe, in the order they emit (see `output::sections`).
pub type RecordSections = Vec<Arc<dyn RecordSection>>;

/// The stack image of the part of `struct sk_buff` the program reads; each field lives at
/// its own offset, filled by the reads that need it.
#[derive(Clone, Copy, Debug)]
pub struct SkbWindow {
    /// First byte of `sk_buff` mirrored.
    pub lo: u32,
    /// Stack offset of the copy.
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
    /// Where a kprobe's context keeps its registers.
    pub regs: &'a PtRegsLayout,
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
    /// Where a kprobe's context (r6) keeps its registers.
    pub regs: &'a PtRegsLayout,
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
    /// Where `f` (one of the section's [`RecordSection::skb_fields`]) sits in the skb copy:
    /// its access type and stack offset, so that `r1 = *(ty *)(r10 + at)` loads it.
    pub fn skb_field(&self, f: &Field) -> Result<(Size, i16), ProbeError> {
        let size = Size::from_bytes(f.size_bytes as usize)
            .ok_or_else(|| ProbeError::Layout(format!("field of {} bytes", f.size_bytes)))?;
        Ok((size, self.window.at(f)))
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
}

/// `flags |= flag` in the record at r8, through `tmp`.
fn emit_or_flags(a: &mut Asm, tmp: Reg, flag: u16) {
    let tmp32 = Operand::R32(tmp);
    bpf!(into a;
        (tmp) = *(u16 *)(r8 + off::FLAGS);
        (tmp32) |= flag;
        *(u16 *)(r8 + off::FLAGS) = (tmp);
    );
}

/// Size of the records a probe with `sections` submits (without variable bytes).
pub fn record_bytes(sections: &[Arc<dyn RecordSection>]) -> usize {
    EVENT_SIZE + sections.iter().map(|s| s.tail_bytes()).sum::<usize>()
}

/// The variable part of the records, when the last section has one: where its count sits
/// (the last section's area) and its most bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Variable {
    count_at: usize,
    max: usize,
}

/// Bytes before the record in the scratch area: the busy flag (u64).
const SCRATCH_BUSY: usize = 8;
/// Largest per-CPU map value the kernel allocates (`PCPU_MIN_UNIT_SIZE`).
pub const MAX_SCRATCH_BYTES: usize = 32 << 10;

fn variable(sections: &[Arc<dyn RecordSection>]) -> Result<Option<Variable>, ProbeError> {
    let Some((last, before)) = sections.split_last() else {
        return Ok(None);
    };
    if before.iter().any(|s| s.variable_bytes() != 0) {
        return Err(ProbeError::Layout(
            "only the last record section may have variable bytes".into(),
        ));
    }
    let max = last.variable_bytes();
    if max == 0 {
        return Ok(None);
    }
    let most = SCRATCH_BUSY + record_bytes(sections) + max;
    if most > MAX_SCRATCH_BYTES {
        return Err(ProbeError::RecordTooLarge {
            bytes: most,
            max: MAX_SCRATCH_BYTES,
        });
    }
    Ok(Some(Variable {
        count_at: record_bytes(before),
        max,
    }))
}

/// The per-CPU scratch map a probe with variable-length records builds them in (`None`
/// for fixed-size records): a busy flag, then the largest record.
pub fn scratch_map(sections: &[Arc<dyn RecordSection>]) -> Option<MapDef> {
    let var = variable(sections).ok()??;
    let bytes = SCRATCH_BUSY + record_bytes(sections) + var.max;
    Some(maps::RECORD_SCRATCH.with_value_size(bytes.div_ceil(8) as u32 * 8))
}

/// Emits the record stage: reserve (count a loss and exit when the ring buffer is full),
/// zero, header, each section, flags, submit; then jumps to `env.out`. With variable bytes
/// (see [`RecordSection::variable_bytes`]) the record is built in the per-CPU
/// [`maps::RECORD_SCRATCH`] instead and copied out at its used length by
/// `bpf_ringbuf_output` (a reservation's size must be a constant).
pub fn emit(
    a: &mut Asm,
    env: &RecordEnv<'_>,
    sections: &[Arc<dyn RecordSection>],
) -> Result<(), ProbeError> {
    let out = env.out;
    let bytes = record_bytes(sections);
    let var = variable(sections)?;
    match var {
        None => {
            let reserved = a.label();
            bpf!(into a;
                r1 = map[maps::EVENTS];
                r2 = bytes;
                r3 = 0;
                call ringbuf_reserve;
                if r0 != 0 goto (reserved);
            );
            count_lost(a, env.frame.scratch);
            bpf!(into a;
                goto (out);
              (reserved):
                r8 = r0;
            );
        }
        Some(_) => scratch_record(a, env),
    }
    // bpf_get_current_comm writes (and NUL-pads) `comm` itself.
    let zeroed = if reads_comm(env.attach) {
        off::COMM
    } else {
        EVENT_SIZE
    };
    for at in (0..zeroed).step_by(8) {
        bpf!(into a; *(u64 *)(r8 + at) = 0;);
    }
    let flags = header(a, env);
    let mut stage = RecordStage {
        a,
        layout: env.layout,
        attach: env.attach,
        regs: env.regs,
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
    match var {
        None => submit_adaptive(a),
        Some(var) => output_adaptive(a, env, bytes, var),
    }
    bpf!(into a; goto (out););
    Ok(())
}

/// r8 = this CPU's scratch record, after its busy flag. A program that interrupts another
/// one building its record on the same CPU (raw tracepoints only guard against their own
/// recursion) finds the flag set: its event is counted as lost instead of mixing the two.
fn scratch_record(a: &mut Asm, env: &RecordEnv<'_>) {
    let out = env.out;
    let key = env.frame.scratch;
    let free = a.label();
    bpf!(into a;
        *(u32 *)(r10 + key) = 0;
        r1 = map[maps::RECORD_SCRATCH];
        r2 = r10;
        r2 += key;
        call map_lookup_elem;
        if r0 == 0 goto (out);
        r1 = *(u64 *)(r0 + 0);
        if r1 == 0 goto (free);
    );
    count_lost(a, key);
    bpf!(into a;
        goto (out);
      (free):
        *(u64 *)(r0 + 0) = 1;
        r8 = r0;
        r8 += (SCRATCH_BUSY as i32);
    );
}

/// `bpf_ringbuf_output(r8, bytes + used variable bytes, 0)` (the kernel's adaptive
/// wakeup, as in [`submit_adaptive`]), clears the busy flag, and counts a loss when the
/// ring buffer is full. The count is clamped for the verifier.
fn output_adaptive(a: &mut Asm, env: &RecordEnv<'_>, bytes: usize, var: Variable) {
    let out = env.out;
    let (count_at, max) = (var.count_at as i32, var.max as i32);
    let busy = -(SCRATCH_BUSY as i16);
    let clamped = a.label();
    bpf!(into a;
        r3 = r8;
        r3 += count_at;
        r3 = *(u32 *)(r3 + 0);
        if r3 <= max goto (clamped);
        r3 = max;
      (clamped):
        r3 += (bytes as i32);
        r1 = map[maps::EVENTS];
        r2 = r8;
        r4 = 0;
        call ringbuf_output;
        *(u64 *)(r8 + busy) = 0;
        if r0 == 0 goto (out);
    );
    count_lost(a, env.frame.scratch);
}

/// Kind, skb, CPU, task (pid and name), time, probe address, the next two arguments and a tracepoint's
/// drop reason; returns the flag bits every record of this probe has.
fn header(a: &mut Asm, env: &RecordEnv<'_>) -> u16 {
    let (kind, flags) = match env.attach {
        Attachment::Kprobe { link, .. } if link.is_multi() => (EventKind::KprobeMulti, FLAG_ARGS),
        Attachment::Kprobe { .. } => (EventKind::Kprobe, FLAG_ARGS),
        Attachment::Tracepoint { .. } => (EventKind::Tracepoint, FLAG_ARGS),
        Attachment::SkbContext => (EventKind::Tracepoint, 0),
        Attachment::TcProgram { .. } => (EventKind::Tc, 0),
        Attachment::XdpProgram { .. } => (EventKind::Xdp, 0),
        Attachment::Fentry { .. } => (EventKind::Fentry, FLAG_ARGS),
    };
    let kind = kind as u16;
    bpf!(into a;
        *(u16 *)(r8 + off::KIND) = kind;
        *(u64 *)(r8 + off::SKB_ADDR) = r7;
        call get_smp_processor_id;
        *(u32 *)(r8 + off::CPU) = r0;
        call get_current_pid_tgid;
        *(u64 *)(r8 + off::PID_TGID) = r0;
        call ktime_get_ns;
        *(u64 *)(r8 + off::KTIME_NS) = r0;
    );
    // The task's name, so PROCESS names it even after it exited.
    if reads_comm(env.attach) {
        bpf!(into a;
            r1 = r8;
            r1 += (off::COMM);
            r2 = (COMM_LEN);
            call get_current_comm;
        );
    }
    match env.attach {
        Attachment::Kprobe { link, .. } => {
            let regs = env.regs;
            if *link == KprobeLink::MultiByCookie {
                // A kprobe-multi link gives each function a cookie that names it
                // (`attach::kprobe_multi`): no kallsyms needed to read the event.
                bpf!(into a;
                    r1 = r6;
                    call get_attach_cookie;
                );
            } else if *link == KprobeLink::MultiByAddress || env.has_get_func_ip {
                bpf!(into a;
                    r1 = r6;
                    call get_func_ip;
                );
            } else {
                // The kprobe's ip, less what the breakpoint added (x86-64's int3: 1 byte).
                bpf!(into a; r0 = *(u64 *)(r6 + (regs.ip)););
                let bias = i32::from(regs.arch.kprobe_ip_bias());
                if bias != 0 {
                    bpf!(into a; r0 += -bias;);
                }
            }
            bpf!(into a;
                *(u64 *)(r8 + off::PROBE_ADDR) = r0;
                r1 = *(u64 *)(r6 + (regs.args[1]));
                *(u64 *)(r8 + off::PARAM_SECOND) = r1;
                r1 = *(u64 *)(r6 + (regs.args[2]));
                *(u64 *)(r8 + off::PARAM_THIRD) = r1;
            );
        }
        Attachment::Tracepoint {
            id,
            nargs,
            drop_reason_arg,
            ..
        } => {
            bpf!(into a; *(u64 *)(r8 + off::PROBE_ADDR) = (*id as i32););
            for (arg, field) in [(1u16, off::PARAM_SECOND), (2, off::PARAM_THIRD)] {
                if arg < *nargs {
                    bpf!(into a;
                        r1 = *(u64 *)(r6 + arg as i16 * 8);
                        *(u64 *)(r8 + field) = r1;
                    );
                }
            }
            // Part of the header: every event of a tracepoint with a reason has it
            // (`output::sections::drop_reason` prints it).
            if let Some(r) = drop_reason_arg {
                bpf!(into a;
                    r1 = *(u64 *)(r6 + *r as i16 * 8);
                    *(u64 *)(r8 + off::DROP_REASON) = r1;
                );
                return flags | FLAG_DROP_REASON;
            }
        }
        // The function's address from the trampoline; only the arguments it has are read
        // (the others stay zero).
        Attachment::Fentry { .. } => {
            let slot = env.frame.scratch;
            bpf!(into a;
                r1 = r6;
                call get_func_ip;
                *(u64 *)(r8 + off::PROBE_ADDR) = r0;
            );
            for (arg, field) in [(1, off::PARAM_SECOND), (2, off::PARAM_THIRD)] {
                bpf!(into a;
                    *(u64 *)(r10 + slot) = 0;
                    r1 = r6;
                    r2 = arg;
                    r3 = r10;
                    r3 += slot;
                    call get_func_arg;
                    r1 = *(u64 *)(r10 + slot);
                    *(u64 *)(r8 + field) = r1;
                );
            }
        }
        // probe_addr stays 0: the record was zeroed.
        Attachment::SkbContext => {}
        Attachment::TcProgram { prog_id, exit } | Attachment::XdpProgram { prog_id, exit } => {
            let addr = i128::from(bpf_prog_probe_addr(*prog_id));
            bpf!(into a;
                r1 = addr ll;
                *(u64 *)(r8 + off::PROBE_ADDR) = r1;
            );
            // fexit: the program's return value follows its one argument.
            if *exit {
                bpf!(into a;
                    r1 = *(u64 *)(r6 + 8);
                    *(u64 *)(r8 + off::DROP_REASON) = r1;
                );
                return flags | FLAG_VERDICT;
            }
        }
    }
    flags
}

/// Whether the program records the task's name: SCHED_CLS programs have no
/// `bpf_get_current_comm` (their `comm` is zeroed instead).
fn reads_comm(at: &Attachment) -> bool {
    *at != Attachment::SkbContext
}

/// `bpf_ringbuf_submit(r8, 0)`: the kernel's adaptive wakeup. The reader is woken when
/// this record is the first it has not read (the ring was empty to it), decided at commit,
/// so a record is never left unannounced; while the reader is behind, records go in
/// without a wakeup. The reader batches by reading at most once per
/// `events::ring::BATCH_WINDOW` under a flood.
fn submit_adaptive(a: &mut Asm) {
    bpf!(into a;
        r1 = r8;
        r2 = 0;
        call ringbuf_submit;
    );
}

/// `lost[0] += 1` (per-CPU), using the 8-byte stack slot `key`.
fn count_lost(a: &mut Asm, key: i16) {
    let done = a.label();
    bpf!(into a;
        *(u32 *)(r10 + key) = 0;
        r1 = map[maps::LOST];
        r2 = r10;
        r2 += key;
        call map_lookup_elem;
        if r0 == 0 goto (done);
        r1 = *(u64 *)(r0 + 0);
        r1 += 1;
        *(u64 *)(r0 + 0) = r1;
      (done):
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A section with `tail` fixed and `var` variable bytes.
    #[derive(Debug)]
    struct Part {
        tail: usize,
        var: usize,
    }
    impl RecordSection for Part {
        fn tail_bytes(&self) -> usize {
            self.tail
        }
        fn variable_bytes(&self) -> usize {
            self.var
        }
        fn emit(&self, _r: &mut RecordStage<'_>) -> Result<(), ProbeError> {
            Ok(())
        }
    }

    fn parts(list: &[(usize, usize)]) -> RecordSections {
        list.iter()
            .map(|&(tail, var)| Arc::new(Part { tail, var }) as Arc<dyn RecordSection>)
            .collect()
    }

    #[test]
    fn only_variable_records_get_a_scratch_area() {
        assert_eq!(scratch_map(&parts(&[])), None);
        assert_eq!(scratch_map(&parts(&[(48, 0)])), None);
        let map = scratch_map(&parts(&[(48, 0), (16, 256)])).unwrap();
        assert_eq!(map.name, maps::RECORD_SCRATCH.name);
        assert_eq!(map.value_size as usize, 8 + EVENT_SIZE + 48 + 16 + 256);
        let v = variable(&parts(&[(48, 0), (16, 256)])).unwrap().unwrap();
        assert_eq!(v.count_at, EVENT_SIZE + 48, "the last section's area");
    }

    #[test]
    fn variable_bytes_must_end_the_record_and_fit_the_area() {
        let e = variable(&parts(&[(16, 64), (8, 0)])).unwrap_err();
        assert!(
            e.to_string().contains("only the last record section"),
            "{e}"
        );
        let e = variable(&parts(&[(8192, 0), (16, MAX_SCRATCH_BYTES)])).unwrap_err();
        assert!(e.to_string().contains("lower --output-pcap-snaplen"), "{e}");
        assert_eq!(scratch_map(&parts(&[(16, MAX_SCRATCH_BYTES)])), None);
    }
}
