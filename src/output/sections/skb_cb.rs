//! `--output-skb-cb` (and `--filter-trace-tc`): the five `qdisc_skb_cb->data` words a tc
//! program sees as `__sk_buff->cb[]`. Printed inside the meta block, as pwru does: the
//! column after LEN and the JSON `cb` after `len`, both only with `--output-meta`.

use crate::bpf;
use crate::events::{Event, RecordPart};
use crate::output::json::JsonObject;
use crate::output::text::push_hex_digits;
use crate::output::OutputOptions;
use crate::probes::event::{off, EVENT_SIZE, FLAG_CB};
use crate::probes::ProbeError;

use super::{push_title, Cx, JsonAt, RecordSection, RecordStage, Section, TableAt};

/// `struct qdisc_skb_cb.data` sits after an 8-byte header inside `skb->cb`.
const QDISC_CB_DATA: i32 = 8;

/// The five cb words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SkbCb(pub [u32; 5]);

impl RecordPart for SkbCb {
    const FLAG: u16 = FLAG_CB;
    fn read(b: &[u8; EVENT_SIZE]) -> Self {
        SkbCb(std::array::from_fn(|i| {
            let o = off::CB + 4 * i;
            u32::from_ne_bytes(b[o..o + 4].try_into().expect("4 bytes"))
        }))
    }
    fn write(&self, b: &mut [u8; EVENT_SIZE]) {
        for (i, v) in self.0.iter().enumerate() {
            let o = off::CB + 4 * i;
            b[o..o + 4].copy_from_slice(&v.to_ne_bytes());
        }
    }
}

/// The section; `in_meta`: `--output-meta` is on, so the words print.
#[derive(Debug)]
pub struct SkbCbSection {
    in_meta: bool,
}

impl RecordSection for SkbCbSection {
    /// Nothing on XDP programs: an `xdp_buff` has no cb[].
    fn emit(&self, r: &mut RecordStage<'_>) -> Result<(), ProbeError> {
        if r.attach.is_xdp() {
            return Ok(());
        }
        let cb = r.layout.sk_buff.cb.offset_bytes() as i32;
        r.set_flag(FLAG_CB);
        bpf!(into r.a;
            r3 = r7;
            r3 += (cb + QDISC_CB_DATA);
            r1 = r8;
            r1 += (off::CB);
            r2 = 20;
            call probe_read_kernel;
        );
        Ok(())
    }
}

impl Section for SkbCbSection {
    fn from_options(opts: &OutputOptions) -> Option<Self> {
        opts.cb.then_some(SkbCbSection { in_meta: opts.meta })
    }
    fn table_at(&self) -> &'static [TableAt] {
        if self.in_meta {
            &[TableAt::Columns]
        } else {
            &[]
        }
    }
    fn json_at(&self) -> &'static [JsonAt] {
        if self.in_meta {
            &[JsonAt::Packet]
        } else {
            &[]
        }
    }
    fn header(&self, _at: TableAt, h: &mut String) {
        push_title(h, "__sk_buff->cb[]", 56);
    }
    /// `[0x%08X,...]`.
    fn table(&self, _at: TableAt, _cx: &mut Cx<'_>, ev: &Event, line: &mut String) {
        line.push_str(" [");
        for (i, v) in ev.get::<SkbCb>().unwrap_or_default().0.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str("0x");
            push_hex_digits(line, u64::from(*v), 8, true);
        }
        line.push(']');
    }
    fn json(&self, _at: JsonAt, _cx: &mut Cx<'_>, ev: &Event, obj: &mut JsonObject<'_>) {
        obj.nums("cb", &ev.get::<SkbCb>().unwrap_or_default().0);
    }
}
