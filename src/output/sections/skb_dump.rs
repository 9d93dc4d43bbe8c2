//! `--output-skb` / `--output-skb-shared-info`: `bpf_snprintf_btf` renders `struct sk_buff`
//! and `struct skb_shared_info` (at `head + end`) as text straight into the ring-buffer
//! record, after the fixed part; each prints as lines after the event (JSON keys
//! `skb_metadata`, pwru's name, and `skb_shared_info`).

use std::borrow::Cow;

use crate::asm::{Asm, Label, Reg, Reg::*, Size};
use crate::bpf;
use crate::btf::Field;
use crate::events::Event;
use crate::output::json::JsonObject;
use crate::output::OutputOptions;
use crate::probes::event::{off, EVENT_SIZE, FLAG_SHINFO_DUMP, FLAG_SKB_DUMP};
use crate::probes::ProbeError;

use super::{Cx, JsonAt, RecordSection, RecordStage, Section, TableAt};

/// Smallest and largest text area (`--set-percpu-buf`) a record may carry per dump.
pub const MIN_DUMP_BYTES: u32 = 64;
pub const MAX_DUMP_BYTES: u32 = 1 << 20;

/// What to dump: the vmlinux BTF ids of the structs to render and each text area's size.
/// The skb text (if any) starts the section's area after the fixed record; the
/// shared-info text follows it, at the offset the record stores in `off::SHINFO_TEXT`.
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

    /// Bytes of the text areas (after the fixed record).
    fn area_bytes(&self) -> usize {
        let areas =
            usize::from(self.skb_btf_id.is_some()) + usize::from(self.shinfo_btf_id.is_some());
        areas * self.bytes as usize
    }

    /// Offset of the shared-info text from the start of the area.
    fn shinfo_text(&self) -> usize {
        if self.skb_btf_id.is_some() {
            self.bytes as usize
        } else {
            0
        }
    }

    /// Size of the ring-buffer record carrying an event and only these dumps.
    pub fn record_bytes(&self) -> usize {
        EVENT_SIZE + self.area_bytes()
    }
}

/// The text at `start` of a record, up to the first NUL; `None` when the record is shorter.
fn text_at(ev: &Event, start: usize) -> Option<Cow<'_, str>> {
    let tail = ev.record.after(start)?;
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    Some(String::from_utf8_lossy(&tail[..end]))
}

/// The `--output-skb` text, when the section's area starts at `area` (`Cx::tail_at`;
/// `EVENT_SIZE` when no other section adds bytes after the record, as today).
pub fn skb_text(ev: &Event, area: usize) -> Option<Cow<'_, str>> {
    if ev.record.flags() & FLAG_SKB_DUMP == 0 {
        return None;
    }
    text_at(ev, area)
}

/// The `--output-skb-shared-info` text (the record says where it is).
pub fn shinfo_text(ev: &Event) -> Option<Cow<'_, str>> {
    if ev.record.flags() & FLAG_SHINFO_DUMP == 0 {
        return None;
    }
    let at = off::SHINFO_TEXT;
    let start = u32::from_ne_bytes(ev.record.fixed()[at..at + 4].try_into().expect("4 bytes"));
    let start = start as usize;
    if start < EVENT_SIZE {
        return None;
    }
    text_at(ev, start)
}

/// Puts dump texts in `ev` as a probe would (tests, benches, replay): the skb text at
/// `EVENT_SIZE`, the shared-info text after it.
pub fn set_texts(ev: &mut Event, skb: Option<&str>, shinfo: Option<&str>) {
    let mut tail = Vec::new();
    if let Some(text) = skb {
        tail.extend_from_slice(text.as_bytes());
        tail.push(0);
    }
    ev.record.set_flag(FLAG_SKB_DUMP, skb.is_some());
    ev.record.set_flag(FLAG_SHINFO_DUMP, shinfo.is_some());
    let at = (EVENT_SIZE + tail.len()) as u32;
    if let Some(text) = shinfo {
        tail.extend_from_slice(text.as_bytes());
        tail.push(0);
    }
    ev.record.put(
        off::SHINFO_TEXT,
        &(if shinfo.is_some() { at } else { 0 }).to_ne_bytes(),
    );
    ev.record.set_tail(tail);
}

/// The section (on with either flag).
#[derive(Debug)]
pub struct SkbDumpSection {
    dump: SkbDump,
}

impl RecordSection for SkbDumpSection {
    fn tail_bytes(&self) -> usize {
        self.dump.area_bytes()
    }

    /// Each dump sets its flag when `bpf_snprintf_btf` succeeded. The 16 bytes of the
    /// device-facts slots (copied out by the meta section) hold the `btf_ptr`.
    /// Nothing on XDP programs (no skb; the flags stay clear, as pwru prints no dump).
    fn emit(&self, r: &mut RecordStage<'_>) -> Result<(), ProbeError> {
        if r.attach.is_xdp() {
            return Ok(());
        }
        let s = &r.layout.sk_buff;
        let fields = ShinfoFields {
            head: &s.head,
            end: &s.end,
        };
        let (ptr_slot, scratch) = (r.frame.device.mtu, r.frame.scratch);
        emit_dump(r.a, &self.dump, r.tail_at, R7, &fields, ptr_slot, scratch);
        Ok(())
    }
}

impl Section for SkbDumpSection {
    fn from_options(opts: &OutputOptions) -> Option<Self> {
        opts.skb_dump.map(|dump| SkbDumpSection { dump })
    }
    fn table_at(&self) -> &'static [TableAt] {
        &[TableAt::Lines]
    }
    fn json_at(&self) -> &'static [JsonAt] {
        &[JsonAt::Head, JsonAt::Text]
    }
    /// The kernel's text ends with a newline; the line's own ends it instead.
    fn table(&self, _at: TableAt, cx: &mut Cx<'_>, ev: &Event, line: &mut String) {
        for text in [skb_text(ev, cx.tail_at), shinfo_text(ev)]
            .into_iter()
            .flatten()
        {
            line.push('\n');
            line.push_str(text.trim_end_matches('\n'));
        }
    }
    fn json(&self, at: JsonAt, cx: &mut Cx<'_>, ev: &Event, obj: &mut JsonObject<'_>) {
        match at {
            JsonAt::Head => obj.str("skb_shared_info", &shinfo_text(ev).unwrap_or_default()),
            _ => obj.str(
                "skb_metadata",
                &skb_text(ev, cx.tail_at).unwrap_or_default(),
            ),
        }
    }
}

/// `sk_buff` fields the shared-info dump needs (`head`, `end`).
struct ShinfoFields<'a> {
    head: &'a Field,
    end: &'a Field,
}

/// Emits the dumps for the skb in `skb` into the record at r8 (texts from record offset
/// `area`), each setting its flag when `bpf_snprintf_btf` succeeded. `ptr_slot` is a free
/// 16-byte stack area (8-aligned) and `scratch` a free 8-byte slot. Clobbers r0-r5 and r9.
fn emit_dump(
    a: &mut Asm,
    dump: &SkbDump,
    area: usize,
    skb: Reg,
    fields: &ShinfoFields<'_>,
    ptr_slot: i16,
    scratch: i16,
) {
    if let Some(id) = dump.skb_btf_id {
        bpf!(into a; *(u64 *)(r10 + ptr_slot) = (skb););
        snprintf_btf(a, id, dump.bytes, area, ptr_slot, FLAG_SKB_DUMP);
    }
    if let Some(id) = dump.shinfo_btf_id {
        let done = a.label();
        let text = area + dump.shinfo_text();
        let end_size = Size::from_bytes(fields.end.size_bytes as usize).unwrap_or(Size::W);
        // r9 = skb->end (an offset from head on 64-bit kernels), then head + end.
        bpf!(into a; *(u32 *)(r8 + off::SHINFO_TEXT) = text;);
        read(
            a,
            skb,
            fields.end.offset_bytes(),
            fields.end.size_bytes,
            scratch,
            done,
        );
        bpf!(into a; r9 = *(end_size *)(r10 + scratch););
        read(a, skb, fields.head.offset_bytes(), 8, scratch, done);
        bpf!(into a;
            r1 = *(u64 *)(r10 + scratch);
            if r1 == 0 goto (done);
            r1 += r9;
            *(u64 *)(r10 + ptr_slot) = r1;
        );
        snprintf_btf(a, id, dump.bytes, text, ptr_slot, FLAG_SHINFO_DUMP);
        bpf!(into a; (done):);
    }
}

/// `bpf_probe_read_kernel(r10 + slot, size, base + offset)`; jumps to `fail` on error.
fn read(a: &mut Asm, base: Reg, offset: u32, size: u32, slot: i16, fail: Label) {
    bpf!(into a;
        r3 = (base);
        r3 += offset;
        r1 = r10;
        r1 += slot;
        r2 = size;
        call probe_read_kernel;
        if r0 != 0 goto (fail);
    );
}

/// `bpf_snprintf_btf(r8 + text, bytes, &{[ptr_slot], btf_id, 0}, 16, 0)`, then `flag` on
/// success. The pointer must already be at `ptr_slot`.
fn snprintf_btf(a: &mut Asm, btf_id: u32, bytes: u32, text: usize, ptr_slot: i16, flag: u16) {
    let done = a.label();
    // struct btf_ptr { void *ptr; u32 type_id; u32 flags; }
    bpf!(into a;
        *(u32 *)(r10 + ptr_slot + 8) = (btf_id as i32);
        *(u32 *)(r10 + ptr_slot + 12) = 0;
        r1 = r8;
        r1 += text;
        r2 = bytes;
        r3 = r10;
        r3 += ptr_slot;
        r4 = 16;
        r5 = 0;
        call snprintf_btf;
        if r0 s< 0 goto (done);
        r0 = *(u16 *)(r8 + off::FLAGS);
        w0 |= flag;
        *(u16 *)(r8 + off::FLAGS) = r0;
      (done):
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::decode;

    #[test]
    fn sizes_are_checked_and_rounded() {
        let skb = SkbDump::new(Some(7), None, 4096).unwrap();
        assert_eq!((skb.bytes, skb.record_bytes()), (4096, EVENT_SIZE + 4096));
        let both = SkbDump::new(Some(7), Some(8), 100).unwrap();
        assert_eq!(both.bytes, 104);
        assert_eq!(both.record_bytes(), EVENT_SIZE + 208);
        assert_eq!(EVENT_SIZE + both.shinfo_text(), EVENT_SIZE + 104);
        let shinfo = SkbDump::new(None, Some(8), 4096).unwrap();
        assert_eq!(EVENT_SIZE + shinfo.shinfo_text(), EVENT_SIZE);
        assert_eq!(shinfo.record_bytes(), EVENT_SIZE + 4096);
        assert_eq!(SkbDump::new(Some(7), None, 8), None);
        assert_eq!(SkbDump::new(Some(7), None, MAX_DUMP_BYTES + 1), None);
        assert_eq!(SkbDump::new(None, None, 4096), None);
    }

    #[test]
    fn text_stops_at_the_first_nul() {
        let mut ev = Event::default();
        ev.record.set_flag(FLAG_SKB_DUMP, true);
        assert_eq!(skb_text(&ev, EVENT_SIZE).as_deref(), Some(""));
        ev.record
            .set_tail(b"(struct sk_buff){\n .len = (unsigned int)60,\n}\0garbage".to_vec());
        assert_eq!(
            skb_text(&ev, EVENT_SIZE).as_deref(),
            Some("(struct sk_buff){\n .len = (unsigned int)60,\n}")
        );
        assert_eq!(skb_text(&ev, EVENT_SIZE + 100), None, "beyond the record");
    }

    #[test]
    fn skb_dump_text_follows_the_record() {
        let mut ev = Event::default();
        set_texts(&mut ev, Some(""), None);
        let back = decode(&ev.encode()).unwrap();
        assert_eq!(
            skb_text(&back, EVENT_SIZE).as_deref(),
            Some(""),
            "flag set, no text"
        );
        assert_eq!(back, ev);
        set_texts(&mut ev, Some("skb"), Some("shinfo\n"));
        let back = decode(&ev.encode()).unwrap();
        assert_eq!(skb_text(&back, EVENT_SIZE).as_deref(), Some("skb"));
        assert_eq!(shinfo_text(&back).as_deref(), Some("shinfo\n"));
        // A shared-info offset inside the fixed record is not trusted.
        let mut bad = back.clone();
        bad.record.put(off::SHINFO_TEXT, &12u32.to_ne_bytes());
        assert_eq!(shinfo_text(&bad), None);
        // Without the flags the bytes after the record are ignored.
        let mut plain = back;
        plain.record.set_flag(FLAG_SKB_DUMP, false);
        plain.record.set_flag(FLAG_SHINFO_DUMP, false);
        assert_eq!(skb_text(&plain, EVENT_SIZE), None);
        assert_eq!(shinfo_text(&plain), None);
    }
}
