//! `--output-skb` / `--output-skb-shared-info`: `bpf_snprintf_btf` renders `struct sk_buff`
//! and `struct skb_shared_info` (at `head + end`) as text straight into the ring-buffer
//! record, after the fixed event (see `event::FLAG_SKB_DUMP`, `event::FLAG_SHINFO_DUMP`).

use crate::asm::{AluOp, Asm, Cond, Helper, Label, Reg, Size};
use crate::btf::Field;

use super::event::{off, EVENT_SIZE, FLAG_SHINFO_DUMP, FLAG_SKB_DUMP};

use Reg::*;

/// Smallest and largest text area (`--set-percpu-buf`) a record may carry per dump.
pub const MIN_DUMP_BYTES: u32 = 64;
pub const MAX_DUMP_BYTES: u32 = 1 << 20;

/// What to dump: the vmlinux BTF ids of the structs to render and each text area's size.
/// The skb text (if any) starts at `EVENT_SIZE`; the shared-info text follows it, at the
/// offset the record stores in `off::SHINFO_TEXT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkbDump {
    /// BTF id of `struct sk_buff` (`--output-skb`).
    pub skb_btf_id: Option<u32>,
    /// BTF id of `struct skb_shared_info` (`--output-skb-shared-info`).
    pub shinfo_btf_id: Option<u32>,
    /// Bytes of each text area (a multiple of 8, NUL included).
    pub bytes: u32,
}

impl SkbDump {
    /// `bytes` rounded up to 8; `None` when no dump is asked for or `bytes` is outside
    /// [`MIN_DUMP_BYTES`]..=[`MAX_DUMP_BYTES`].
    pub fn new(skb_btf_id: Option<u32>, shinfo_btf_id: Option<u32>, bytes: u32) -> Option<Self> {
        ((skb_btf_id.is_some() || shinfo_btf_id.is_some())
            && (MIN_DUMP_BYTES..=MAX_DUMP_BYTES).contains(&bytes))
        .then_some(SkbDump {
            skb_btf_id,
            shinfo_btf_id,
            bytes: bytes.div_ceil(8) * 8,
        })
    }

    /// Record offset of the shared-info text.
    fn shinfo_text(&self) -> usize {
        EVENT_SIZE
            + if self.skb_btf_id.is_some() {
                self.bytes as usize
            } else {
                0
            }
    }

    /// Size of the ring-buffer record carrying an event and these dumps.
    pub fn record_bytes(&self) -> usize {
        let areas =
            usize::from(self.skb_btf_id.is_some()) + usize::from(self.shinfo_btf_id.is_some());
        EVENT_SIZE + areas * self.bytes as usize
    }
}

/// `sk_buff` fields the shared-info dump needs (`head`, `end`).
pub struct ShinfoFields<'a> {
    pub head: &'a Field,
    pub end: &'a Field,
}

/// Emits the dumps for the skb in `skb` into the record at r8, each setting its flag when
/// `bpf_snprintf_btf` succeeded. `ptr_slot` is a free 16-byte stack area (8-aligned) and
/// `scratch` a free 8-byte slot. Clobbers r0-r5 and r9.
pub fn emit_dump(
    a: &mut Asm,
    dump: &SkbDump,
    skb: Reg,
    fields: &ShinfoFields<'_>,
    ptr_slot: i16,
    scratch: i16,
) {
    if let Some(id) = dump.skb_btf_id {
        a.stx(Size::DW, R10, ptr_slot, skb);
        snprintf_btf(a, id, dump.bytes, EVENT_SIZE, ptr_slot, FLAG_SKB_DUMP);
    }
    if let Some(id) = dump.shinfo_btf_id {
        let done = a.label();
        let text = dump.shinfo_text();
        a.st(Size::W, R8, off::SHINFO_TEXT as i16, text as i32);
        // r9 = skb->end (an offset from head on 64-bit kernels), then head + end.
        let end_size = Size::from_bytes(fields.end.size_bytes as usize).unwrap_or(Size::W);
        read(
            a,
            skb,
            fields.end.offset_bytes(),
            fields.end.size_bytes,
            scratch,
            done,
        );
        a.ldx(end_size, R9, R10, scratch);
        read(a, skb, fields.head.offset_bytes(), 8, scratch, done);
        a.ldx(Size::DW, R1, R10, scratch);
        a.jmp(Cond::Eq, R1, 0, done);
        a.add64(R1, R9);
        a.stx(Size::DW, R10, ptr_slot, R1);
        snprintf_btf(a, id, dump.bytes, text, ptr_slot, FLAG_SHINFO_DUMP);
        a.bind(done);
    }
}

/// `bpf_probe_read_kernel(r10 + slot, size, base + offset)`; jumps to `fail` on error.
fn read(a: &mut Asm, base: Reg, offset: u32, size: u32, slot: i16, fail: Label) {
    a.mov64(R3, base).add64(R3, offset as i32);
    a.mov64(R1, R10)
        .add64(R1, slot as i32)
        .mov64(R2, size as i32);
    a.call(Helper::PROBE_READ_KERNEL);
    a.jmp(Cond::Ne, R0, 0, fail);
}

/// `bpf_snprintf_btf(r8 + text, bytes, &{[ptr_slot], btf_id, 0}, 16, 0)`, then `flag` on
/// success. The pointer must already be at `ptr_slot`.
fn snprintf_btf(a: &mut Asm, btf_id: u32, bytes: u32, text: usize, ptr_slot: i16, flag: u16) {
    let done = a.label();
    // struct btf_ptr { void *ptr; u32 type_id; u32 flags; }
    a.st(Size::W, R10, ptr_slot + 8, btf_id as i32);
    a.st(Size::W, R10, ptr_slot + 12, 0);
    a.mov64(R1, R8).add64(R1, text as i32);
    a.mov64(R2, bytes as i32);
    a.mov64(R3, R10).add64(R3, ptr_slot as i32);
    a.mov64(R4, 16).mov64(R5, 0);
    a.call(Helper::SNPRINTF_BTF);
    a.jmp(Cond::Slt, R0, 0, done);
    a.ldx(Size::H, R0, R8, off::FLAGS as i16);
    a.alu32(AluOp::Or, R0, flag as i32);
    a.stx(Size::H, R8, off::FLAGS as i16, R0);
    a.bind(done);
}

/// The text at `start` of a record, up to the first NUL; `None` when the record is shorter.
pub fn dump_text(record: &[u8], start: usize) -> Option<String> {
    let tail = record.get(start..)?;
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    Some(String::from_utf8_lossy(&tail[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_and_rounded() {
        let skb = SkbDump::new(Some(7), None, 4096).unwrap();
        assert_eq!((skb.bytes, skb.record_bytes()), (4096, EVENT_SIZE + 4096));
        let both = SkbDump::new(Some(7), Some(8), 100).unwrap();
        assert_eq!(both.bytes, 104);
        assert_eq!(both.record_bytes(), EVENT_SIZE + 208);
        assert_eq!(both.shinfo_text(), EVENT_SIZE + 104);
        let shinfo = SkbDump::new(None, Some(8), 4096).unwrap();
        assert_eq!(shinfo.shinfo_text(), EVENT_SIZE);
        assert_eq!(shinfo.record_bytes(), EVENT_SIZE + 4096);
        assert_eq!(SkbDump::new(Some(7), None, 8), None);
        assert_eq!(SkbDump::new(Some(7), None, MAX_DUMP_BYTES + 1), None);
        assert_eq!(SkbDump::new(None, None, 4096), None);
    }

    #[test]
    fn text_stops_at_the_first_nul() {
        let mut rec = vec![0u8; EVENT_SIZE];
        assert_eq!(dump_text(&rec, EVENT_SIZE).as_deref(), Some(""));
        rec.extend_from_slice(b"(struct sk_buff){\n .len = (unsigned int)60,\n}\0garbage");
        assert_eq!(
            dump_text(&rec, EVENT_SIZE).as_deref(),
            Some("(struct sk_buff){\n .len = (unsigned int)60,\n}")
        );
        assert_eq!(dump_text(&rec[..10], EVENT_SIZE), None);
    }
}
