//! The verdict of a traced BPF program (`--filter-trace-tc`): what the program returned,
//! recorded by its fexit probe, printed after FUNC as `prog(tc)=TC_ACT_SHOT` and as JSON `verdict`.

use crate::events::{Event, RecordPart};
use crate::output::json::JsonObject;
use crate::output::text::push_dec;
use crate::output::{Names, OutputOptions};
use crate::probes::event::{off, EventKind, EVENT_SIZE, FLAG_VERDICT};
use crate::probes::ProbeError;

use super::{Cx, JsonAt, RecordSection, RecordStage, Section, TableAt};

/// The traced program's return value (the probe header records it, see `probes::record`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict(pub u64);

impl RecordPart for Verdict {
    const FLAG: u16 = FLAG_VERDICT;
    fn read(fixed: &[u8; EVENT_SIZE]) -> Self {
        Verdict(u64::from_ne_bytes(
            fixed[off::DROP_REASON..off::DROP_REASON + 8]
                .try_into()
                .expect("8 bytes"),
        ))
    }
    fn write(&self, fixed: &mut [u8; EVENT_SIZE]) {
        fixed[off::DROP_REASON..off::DROP_REASON + 8].copy_from_slice(&self.0.to_ne_bytes());
    }
}

/// The `TC_ACT_*` names of `include/uapi/linux/pkt_cls.h` (defines, not in BTF).
const TC_ACTIONS: [&str; 9] = [
    "TC_ACT_OK",
    "TC_ACT_RECLASSIFY",
    "TC_ACT_SHOT",
    "TC_ACT_PIPE",
    "TC_ACT_STOLEN",
    "TC_ACT_QUEUED",
    "TC_ACT_REPEAT",
    "TC_ACT_REDIRECT",
    "TC_ACT_TRAP",
];

/// The `enum xdp_action` names.
const XDP_ACTIONS: [&str; 5] = [
    "XDP_ABORTED",
    "XDP_DROP",
    "XDP_PASS",
    "XDP_TX",
    "XDP_REDIRECT",
];

/// Appends the name of verdict `raw` of an event of `kind` (the program returns an `int`:
/// the low 32 bits), or its number when it has none.
pub fn push_verdict(kind: EventKind, raw: u64, out: &mut String) {
    let v = raw as u32 as i32;
    let names: &[&str] = match kind {
        EventKind::Tc => &TC_ACTIONS,
        EventKind::Xdp => &XDP_ACTIONS,
        EventKind::Kprobe | EventKind::KprobeMulti | EventKind::Tracepoint | EventKind::Fentry => {
            &[]
        }
    };
    match usize::try_from(v).ok().and_then(|i| names.get(i)) {
        Some(name) => out.push_str(name),
        None if kind == EventKind::Tc && v == -1 => out.push_str("TC_ACT_UNSPEC"),
        None if v < 0 => {
            out.push('-');
            push_dec(out, u64::from(v.unsigned_abs()));
        }
        None => push_dec(out, v as u64),
    }
}

/// The section (always on; only fexit events have a verdict).
#[derive(Debug)]
pub struct VerdictSection;

impl RecordSection for VerdictSection {
    /// Nothing: the header has it (`probes::record`).
    fn emit(&self, _r: &mut RecordStage<'_>) -> Result<(), ProbeError> {
        Ok(())
    }
}

impl Section for VerdictSection {
    fn from_options(_opts: &OutputOptions) -> Option<Self> {
        Some(VerdictSection)
    }
    fn records(&self) -> bool {
        false
    }
    fn table_at(&self) -> &'static [TableAt] {
        &[TableAt::Func]
    }
    fn json_at(&self) -> &'static [JsonAt] {
        &[JsonAt::Func]
    }
    fn func(&self, _names: &Names, ev: &Event, _name: &str, func: &mut String) {
        if let Some(Verdict(v)) = ev.get::<Verdict>() {
            func.push('=');
            push_verdict(ev.kind, v, func);
        }
    }
    fn json(&self, _at: JsonAt, cx: &mut Cx<'_>, ev: &Event, obj: &mut JsonObject<'_>) {
        let Some(Verdict(v)) = ev.get::<Verdict>() else {
            return;
        };
        let mut value = std::mem::take(cx.scratch);
        push_verdict(ev.kind, v, &mut value);
        obj.str("verdict", &value);
        *cx.scratch = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_named_by_the_program_kind() {
        let table = [
            (EventKind::Tc, 0, "TC_ACT_OK"),
            (EventKind::Tc, 2, "TC_ACT_SHOT"),
            (EventKind::Tc, 7, "TC_ACT_REDIRECT"),
            (EventKind::Tc, 0xffff_ffff, "TC_ACT_UNSPEC"),
            (EventKind::Tc, 0xffff_ffff_ffff_ffff, "TC_ACT_UNSPEC"),
            (EventKind::Tc, 99, "99"),
            (EventKind::Tc, 0xffff_fffe, "-2"),
            (EventKind::Xdp, 1, "XDP_DROP"),
            (EventKind::Xdp, 2, "XDP_PASS"),
            (EventKind::Xdp, 4, "XDP_REDIRECT"),
            (EventKind::Xdp, 5, "5"),
        ];
        for (kind, raw, want) in table {
            let mut got = String::new();
            push_verdict(kind, raw, &mut got);
            assert_eq!(got, want, "{kind:?} {raw:#x}");
        }
    }
}
