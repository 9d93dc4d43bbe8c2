//! `--output-skb`: `bpf_snprintf_btf` renders the whole `struct sk_buff` as text straight
//! into the ring-buffer record, after the fixed event (see `event::FLAG_SKB_DUMP`).

use crate::asm::{AluOp, Asm, Cond, Helper, Label, Reg, Size};

use super::event::{off, EVENT_SIZE, FLAG_SKB_DUMP};

use Reg::*;

/// Smallest and largest text area (`--set-percpu-buf`) a record may carry.
pub const MIN_DUMP_BYTES: u32 = 64;
pub const MAX_DUMP_BYTES: u32 = 1 << 20;

/// What to dump: the vmlinux BTF id of `struct sk_buff` and the text area's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkbDump {
    pub btf_id: u32,
    /// Bytes of text after the event (a multiple of 8, NUL included).
    pub bytes: u32,
}

impl SkbDump {
    /// `bytes` rounded up to 8; `None` when outside [`MIN_DUMP_BYTES`]..=[`MAX_DUMP_BYTES`].
    pub fn new(btf_id: u32, bytes: u32) -> Option<Self> {
        (MIN_DUMP_BYTES..=MAX_DUMP_BYTES)
            .contains(&bytes)
            .then_some(SkbDump {
                btf_id,
                bytes: bytes.div_ceil(8) * 8,
            })
    }

    /// Size of the ring-buffer record carrying an event and this dump.
    pub fn record_bytes(&self) -> usize {
        EVENT_SIZE + self.bytes as usize
    }
}

/// Emits `bpf_snprintf_btf(r8 + EVENT_SIZE, bytes, &{skb, btf_id, 0}, 16, 0)` and sets
/// `FLAG_SKB_DUMP` in the record at r8 when it succeeded. `ptr_slot` is a free 16-byte
/// stack area (8-aligned). Clobbers r0-r5.
pub fn emit_dump(a: &mut Asm, dump: &SkbDump, skb: Reg, ptr_slot: i16) {
    let done: Label = a.label();
    // struct btf_ptr { void *ptr; u32 type_id; u32 flags; }
    a.stx(Size::DW, R10, ptr_slot, skb);
    a.st(Size::W, R10, ptr_slot + 8, dump.btf_id as i32);
    a.st(Size::W, R10, ptr_slot + 12, 0);
    a.mov64(R1, R8).add64(R1, EVENT_SIZE as i32);
    a.mov64(R2, dump.bytes as i32);
    a.mov64(R3, R10).add64(R3, ptr_slot as i32);
    a.mov64(R4, 16).mov64(R5, 0);
    a.call(Helper::SNPRINTF_BTF);
    a.jmp(Cond::Slt, R0, 0, done);
    a.ldx(Size::H, R0, R8, off::FLAGS as i16);
    a.alu32(AluOp::Or, R0, FLAG_SKB_DUMP as i32);
    a.stx(Size::H, R8, off::FLAGS as i16, R0);
    a.bind(done);
}

/// The dump text of a record: the bytes after the event up to the first NUL.
pub fn dump_text(record: &[u8]) -> Option<String> {
    let tail = record.get(EVENT_SIZE..)?;
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    Some(String::from_utf8_lossy(&tail[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_and_rounded() {
        assert_eq!(SkbDump::new(7, 4096).map(|d| d.bytes), Some(4096));
        assert_eq!(SkbDump::new(7, 100).map(|d| d.bytes), Some(104));
        assert_eq!(SkbDump::new(7, 8), None);
        assert_eq!(SkbDump::new(7, MAX_DUMP_BYTES + 1), None);
        assert_eq!(
            SkbDump::new(7, 4096).unwrap().record_bytes(),
            EVENT_SIZE + 4096
        );
    }

    #[test]
    fn text_stops_at_the_first_nul() {
        let mut rec = vec![0u8; EVENT_SIZE];
        assert_eq!(dump_text(&rec).as_deref(), Some(""));
        rec.extend_from_slice(b"(struct sk_buff){\n .len = (unsigned int)60,\n}\0garbage");
        assert_eq!(
            dump_text(&rec).as_deref(),
            Some("(struct sk_buff){\n .len = (unsigned int)60,\n}")
        );
        assert_eq!(dump_text(&rec[..10]), None);
    }
}
