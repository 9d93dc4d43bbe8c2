//! `--output-bpfmap`: on a probed map function (`*_lookup_elem`, `*_update_elem`,
//! `*_delete_elem`), the map's id and name, and the key and value bytes (at most 256 each);
//! pwru's extra lines after the event, and (unlike pwru) a JSON `bpfmap` object.
//!
//! The probe reads `struct bpf_map`'s `id`, `name`, `key_size` and `value_size` at their
//! BTF offsets from the function's first argument, the key from its second; the value is
//! an update's third argument or a lookup's return value (its program is a kretprobe that
//! finds the entry's arguments in `maps::BPFMAP_STASH`); a delete has none. Other probes
//! write an empty section.

use crate::bpf;
use crate::btf::{BtfError, KernelBtf};
use crate::events::Event;
use crate::output::json::JsonObject;
use crate::output::OutputOptions;
use crate::probes::maps::{self, MapDef};
use crate::probes::{Attachment, MapOp, ProbeError};

use super::{Cx, JsonAt, RecordSection, RecordStage, Section, TableAt};

/// Most key and value bytes recorded (pwru's limit).
pub const MAX_DUMP: usize = 256;
/// `BPF_OBJ_NAME_LEN`.
const NAME_LEN: usize = 16;

// The section's bytes: flags (u32), map id, key size, value size (u32 each), the name,
// then the key and value areas.
const FLAGS_AT: usize = 0;
const ID_AT: usize = 4;
const KEY_SIZE_AT: usize = 8;
const VALUE_SIZE_AT: usize = 12;
const NAME_AT: usize = 16;
const KEY_AT: usize = NAME_AT + NAME_LEN;
const VALUE_AT: usize = KEY_AT + MAX_DUMP;
/// Bytes of the section after the fixed record.
pub const BPFMAP_BYTES: usize = VALUE_AT + MAX_DUMP;

/// Flag: the record holds a map operation.
const FOUND: u32 = 1;
/// Flag: and its value.
const HAS_VALUE: u32 = 2;

/// Byte offsets of the `struct bpf_map` fields the probe reads (BTF).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BpfMapFields {
    pub id: u32,
    pub name: u32,
    pub key_size: u32,
    pub value_size: u32,
    /// `struct htab_elem`'s `key`, where the value of an element `__htab_map_lookup_elem`
    /// returns follows (after the key, rounded up to 8 bytes); `None` when BTF lacks it
    /// (that lookup's value is then not recorded).
    pub htab_elem_key: Option<u32>,
}

impl BpfMapFields {
    /// The offsets in this kernel's `struct bpf_map`.
    pub fn resolve(btf: &KernelBtf) -> Result<Self, BtfError> {
        let at = |field: &str| -> Result<u32, BtfError> {
            Ok(btf.member("bpf_map", field)?.offset_bytes())
        };
        Ok(BpfMapFields {
            id: at("id")?,
            name: at("name")?,
            key_size: at("key_size")?,
            value_size: at("value_size")?,
            htab_elem_key: btf
                .optional_member("htab_elem", "key")
                .ok()
                .flatten()
                .map(|f| f.offset_bytes()),
        })
    }
}

/// One map operation as the probe recorded it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapAccess {
    pub id: u32,
    pub name: String,
    /// The map's key and value sizes (the bytes below stop at [`MAX_DUMP`]).
    pub key_size: u32,
    pub value_size: u32,
    pub key: Vec<u8>,
    /// `None` for a delete, or a lookup that found nothing.
    pub value: Option<Vec<u8>>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The map operation of the record whose section bytes start at `tail_at`, if any.
pub fn map_access(ev: &Event, tail_at: usize) -> Option<MapAccess> {
    let b = ev.record.after(tail_at)?.get(..BPFMAP_BYTES)?;
    let flags = u32_at(b, FLAGS_AT);
    if flags & FOUND == 0 {
        return None;
    }
    let (key_size, value_size) = (u32_at(b, KEY_SIZE_AT), u32_at(b, VALUE_SIZE_AT));
    let bytes = |at: usize, size: u32| b[at..at + (size as usize).min(MAX_DUMP)].to_vec();
    let name = &b[NAME_AT..NAME_AT + NAME_LEN];
    let end = name.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
    Some(MapAccess {
        id: u32_at(b, ID_AT),
        name: String::from_utf8_lossy(&name[..end]).into_owned(),
        key_size,
        value_size,
        key: bytes(KEY_AT, key_size),
        value: (flags & HAS_VALUE != 0).then(|| bytes(VALUE_AT, value_size)),
    })
}

/// Puts `access` in `ev` as the probe would, at `tail_at` (tests, replay).
pub fn set_map_access(ev: &mut Event, tail_at: usize, access: Option<&MapAccess>) {
    let mut mine = vec![0u8; BPFMAP_BYTES];
    if let Some(m) = access {
        let flags = FOUND | if m.value.is_some() { HAS_VALUE } else { 0 };
        for (at, v) in [
            (FLAGS_AT, flags),
            (ID_AT, m.id),
            (KEY_SIZE_AT, m.key_size),
            (VALUE_SIZE_AT, m.value_size),
        ] {
            mine[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        }
        let name = &m.name.as_bytes()[..m.name.len().min(NAME_LEN - 1)];
        mine[NAME_AT..NAME_AT + name.len()].copy_from_slice(name);
        let key = &m.key[..m.key.len().min(MAX_DUMP)];
        mine[KEY_AT..KEY_AT + key.len()].copy_from_slice(key);
        if let Some(value) = &m.value {
            let value = &value[..value.len().min(MAX_DUMP)];
            mine[VALUE_AT..VALUE_AT + value.len()].copy_from_slice(value);
        }
    }
    ev.record.set_section_bytes(tail_at, &mine);
}

/// Go's `hex.Dump` (pwru prints keys and values with it): 16 bytes a line, offset, hex
/// in two groups of 8, and the printable ASCII between bars.
pub fn hex_dump(bytes: &[u8], out: &mut String) {
    use std::fmt::Write;
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x} ", i * 16);
        for j in 0..16 {
            if j == 8 {
                out.push(' ');
            }
            match chunk.get(j) {
                Some(b) => {
                    let _ = write!(out, " {b:02x}");
                }
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        out.extend(chunk.iter().map(|&b| {
            if (32..=126).contains(&b) {
                b as char
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
}

/// Lowercase hex of `bytes`, no separators (JSON).
fn hex(bytes: &[u8], out: &mut String) {
    use std::fmt::Write;
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// The section, with the `struct bpf_map` offsets.
#[derive(Debug)]
pub struct BpfMapSection {
    fields: BpfMapFields,
}

/// Stack slots (below the probe's frame) holding the map, key and value pointers.
const SLOTS: usize = 3;

impl RecordSection for BpfMapSection {
    fn maps(&self) -> Vec<&'static MapDef> {
        vec![maps::BPFMAP_STASH]
    }

    fn tail_bytes(&self) -> usize {
        BPFMAP_BYTES
    }

    fn emit(&self, r: &mut RecordStage<'_>) -> Result<(), ProbeError> {
        let at = r.tail_at as i16;
        bpf!(into r.a; *(u32 *)(r8 + (at + FLAGS_AT as i16)) = 0;);
        let Attachment::Kprobe {
            map_op: Some(op), ..
        } = *r.attach
        else {
            return Ok(());
        };
        let below = r.frame.below;
        let [map, key, value] = [0, 1, 2].map(|i| below - 8 * (i + 1) as i16);
        debug_assert_eq!(SLOTS, 3);
        let regs = r.regs;
        let done = r.a.label();
        match op {
            MapOp::Update | MapOp::Delete => {
                bpf!(into r.a;
                    r1 = *(u64 *)(r6 + (regs.args[0]));
                    *(u64 *)(r10 + map) = r1;
                    r1 = *(u64 *)(r6 + (regs.args[1]));
                    *(u64 *)(r10 + key) = r1;
                );
                if op == MapOp::Update {
                    bpf!(into r.a; r1 = *(u64 *)(r6 + (regs.args[2])););
                } else {
                    bpf!(into r.a; r1 = 0;);
                }
                bpf!(into r.a; *(u64 *)(r10 + value) = r1;);
            }
            MapOp::Lookup | MapOp::LookupElem => {
                // A kretprobe: the entry's arguments are in the stash, the value is
                // what the function returns.
                bpf!(into r.a;
                    *(u32 *)(r10 + map) = 0;
                    r1 = map[maps::BPFMAP_STASH];
                    r2 = r10;
                    r2 += map;
                    call map_lookup_elem;
                    if r0 == 0 goto (done);
                    r1 = *(u64 *)(r0 + 0);
                    *(u64 *)(r10 + map) = r1;
                    r1 = *(u64 *)(r0 + 8);
                    *(u64 *)(r10 + key) = r1;
                    r1 = *(u64 *)(r6 + (regs.return_value));
                    *(u64 *)(r10 + value) = r1;
                );
            }
        }
        bpf!(into r.a;
            r3 = *(u64 *)(r10 + map);
            if r3 == 0 goto (done);
        );
        let f = self.fields;
        for (dst, size, field) in [
            (ID_AT, 4, f.id),
            (KEY_SIZE_AT, 4, f.key_size),
            (VALUE_SIZE_AT, 4, f.value_size),
            (NAME_AT, NAME_LEN as i32, f.name),
        ] {
            bpf!(into r.a;
                r1 = r8;
                r1 += (i32::from(at) + dst as i32);
                r2 = size;
                r3 = *(u64 *)(r10 + map);
                r3 += (field as i32);
                call probe_read_kernel;
            );
        }
        // The key and value, at most MAX_DUMP bytes each.
        let max = MAX_DUMP as i32;
        for (size_at, dst, ptr) in [(KEY_SIZE_AT, KEY_AT, key), (VALUE_SIZE_AT, VALUE_AT, value)] {
            let clamped = r.a.label();
            let flags = if dst == KEY_AT {
                FOUND
            } else {
                FOUND | HAS_VALUE
            } as i32;
            bpf!(into r.a;
                r3 = *(u64 *)(r10 + ptr);
                if r3 == 0 goto (done);
            );
            if dst == VALUE_AT && op == MapOp::LookupElem {
                // The element: its value follows the key, 8-byte aligned.
                let Some(key_at) = f.htab_elem_key else {
                    break;
                };
                bpf!(into r.a;
                    r2 = *(u32 *)(r8 + (at + KEY_SIZE_AT as i16));
                    r2 += 7;
                    r2 &= -8;
                    r3 += r2;
                    r3 += (key_at as i32);
                );
            }
            bpf!(into r.a;
                r2 = *(u32 *)(r8 + (at + size_at as i16));
                if r2 <= max goto (clamped);
                r2 = max;
              (clamped):
                r1 = r8;
                r1 += (i32::from(at) + dst as i32);
                call probe_read_kernel;
                *(u32 *)(r8 + (at + FLAGS_AT as i16)) = flags;
            );
        }
        bpf!(into r.a; (done):);
        Ok(())
    }
}

impl Section for BpfMapSection {
    fn from_options(opts: &OutputOptions) -> Option<Self> {
        opts.bpfmap.map(|fields| BpfMapSection { fields })
    }
    fn table_at(&self) -> &'static [TableAt] {
        &[TableAt::Lines]
    }
    fn json_at(&self) -> &'static [JsonAt] {
        &[JsonAt::Text]
    }
    /// pwru's lines: `map_id: N`, `map_name: NAME`, `key(N):` and `value(N):` each
    /// followed by its hex dump (a delete's value is empty).
    fn table(&self, _at: TableAt, cx: &mut Cx<'_>, ev: &Event, line: &mut String) {
        use std::fmt::Write;
        let Some(m) = map_access(ev, cx.tail_at) else {
            return;
        };
        let _ = write!(
            line,
            "\nmap_id: {}\nmap_name: {}\nkey({}):\n",
            m.id, m.name, m.key_size
        );
        hex_dump(&m.key, line);
        let value = m.value.as_deref().unwrap_or_default();
        let _ = writeln!(line, "value({}):", m.value_size);
        hex_dump(value, line);
        // The event's line ends with its own newline.
        if line.ends_with('\n') {
            line.pop();
        }
    }
    /// `"bpfmap":{"id":N,"name":"…","key_size":N,"key":"hex","value_size":N,"value":"hex"}`
    /// (`value` only when the operation has one).
    fn json(&self, _at: JsonAt, cx: &mut Cx<'_>, ev: &Event, obj: &mut JsonObject<'_>) {
        let Some(m) = map_access(ev, cx.tail_at) else {
            return;
        };
        let mut o = obj.object("bpfmap");
        o.always_num("id", m.id);
        o.str("name", &m.name);
        o.always_num("key_size", m.key_size);
        cx.scratch.clear();
        hex(&m.key, cx.scratch);
        o.str("key", cx.scratch);
        o.always_num("value_size", m.value_size);
        if let Some(value) = &m.value {
            cx.scratch.clear();
            hex(value, cx.scratch);
            o.str("value", cx.scratch);
        }
        o.end();
        cx.scratch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;
    use crate::output::sections::Sections;
    use crate::output::{Names, Output, OutputTarget};
    use crate::probes::event::EVENT_SIZE;

    const FIELDS: BpfMapFields = BpfMapFields {
        id: 48,
        name: 96,
        key_size: 28,
        value_size: 32,
        htab_elem_key: Some(48),
    };

    fn opts(json: bool) -> OutputOptions {
        OutputOptions {
            json,
            bpfmap: Some(FIELDS),
            ..OutputOptions::default()
        }
    }

    fn update() -> MapAccess {
        MapAccess {
            id: 17,
            name: "e2e_tc_drops".into(),
            key_size: 4,
            value_size: 8,
            key: 8091u32.to_le_bytes().to_vec(),
            value: Some(3u64.to_le_bytes().to_vec()),
        }
    }

    fn event(access: Option<&MapAccess>) -> Event {
        let mut ev = Event {
            kind: EventKind::Kprobe,
            probe_addr: 0xffffffff81536480,
            skb_addr: 0xffff8881052b6ee8,
            ..Event::default()
        };
        set_map_access(&mut ev, EVENT_SIZE, access);
        ev
    }

    fn text(o: OutputOptions, ev: &Event) -> String {
        let mut names = Names::default();
        names
            .probe_names
            .insert(0xffffffff81536480, "htab_map_update_elem".into());
        let sink = OutputTarget::Writer(Box::new(std::io::sink()));
        let mut out = Output::new(o, names, sink).unwrap();
        out.format_event(ev, &[]).unwrap()
    }

    #[test]
    fn bytes_follow_the_fixed_record_and_round_trip() {
        let sections = Sections::new(&opts(false));
        assert_eq!(sections.tail_at_of::<BpfMapSection>(), Some(EVENT_SIZE));
        assert_eq!(BPFMAP_BYTES % 8, 0);
        let lookup_miss = MapAccess {
            value: None,
            ..update()
        };
        let big = MapAccess {
            key_size: 300,
            key: vec![7; 256],
            value_size: u32::MAX,
            value: Some(vec![9; 256]),
            ..update()
        };
        for m in [update(), lookup_miss, big] {
            assert_eq!(map_access(&event(Some(&m)), EVENT_SIZE), Some(m));
        }
        // Another probe's record: an empty section, or none at all.
        assert_eq!(map_access(&event(None), EVENT_SIZE), None);
        assert_eq!(map_access(&Event::default(), EVENT_SIZE), None);
    }

    #[test]
    fn hex_dump_is_gos() {
        let table: &[(&[u8], &str)] = &[
            (b"", ""),
            (
                &[0x9b, 0x1f, 0, 0],
                "00000000  9b 1f 00 00                                       |....|\n",
            ),
            (
                b"0123456789abcdefXY",
                "00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|\n\
                 00000010  58 59                                             |XY|\n",
            ),
        ];
        for (bytes, want) in table {
            let mut out = String::new();
            hex_dump(bytes, &mut out);
            assert_eq!(&out, want);
        }
    }

    #[test]
    fn table_prints_pwrus_lines_after_the_event() {
        let line = text(opts(false), &event(Some(&update())));
        assert!(
            line.ends_with(
                " htab_map_update_elem\n\
                 map_id: 17\n\
                 map_name: e2e_tc_drops\n\
                 key(4):\n\
                 00000000  9b 1f 00 00                                       |....|\n\
                 value(8):\n\
                 00000000  03 00 00 00 00 00 00 00                           |........|\n"
            ),
            "{line}"
        );
        // A delete has no value; other probes print nothing more.
        let delete = MapAccess {
            value: None,
            ..update()
        };
        let line = text(opts(false), &event(Some(&delete)));
        assert!(line.ends_with("|....|\nvalue(8):\n"), "{line}");
        let line = text(opts(false), &event(None));
        assert!(line.ends_with(" htab_map_update_elem\n"), "{line}");
    }

    #[test]
    fn json_has_a_bpfmap_object() {
        let line = text(opts(true), &event(Some(&update())));
        assert!(
            line.ends_with(
                ",\"bpfmap\":{\"id\":17,\"name\":\"e2e_tc_drops\",\"key_size\":4,\"key\":\"9b1f0000\",\"value_size\":8,\"value\":\"0300000000000000\"}}\n"
            ),
            "{line}"
        );
        let line = text(opts(true), &event(None));
        assert!(!line.contains("bpfmap"), "{line}");
    }
}
