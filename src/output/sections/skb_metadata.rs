//! `--output-skb-metadata` / `--output-xdp-metadata`: up to four `skb->...` (on XDP
//! programs `xdp->...`) scalars resolved through BTF, read by the probe into the record and
//! printed as ` name=value` after FUNC (table only, as pwru).

use crate::asm::Reg::*;
use crate::btf::{FieldPath, ScalarKind};
use crate::events::{Event, RecordPart};
use crate::output::OutputOptions;
use crate::probes::event::{off, EventKind, EVENT_SIZE, FLAG_SKB_METADATA};
use crate::probes::{skb_expr, ProbeError};

use super::{Cx, RecordSection, RecordStage, Section, TableAt};

/// The values in the order of the flag's fields, zero- or sign-extended (unused slots 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SkbMetadata(pub [u64; 4]);

impl RecordPart for SkbMetadata {
    const FLAG: u16 = FLAG_SKB_METADATA;
    fn read(b: &[u8; EVENT_SIZE]) -> Self {
        SkbMetadata(std::array::from_fn(|i| {
            let o = off::SKB_METADATA + 8 * i;
            u64::from_ne_bytes(b[o..o + 8].try_into().expect("8 bytes"))
        }))
    }
    fn write(&self, b: &mut [u8; EVENT_SIZE]) {
        for (i, v) in self.0.iter().enumerate() {
            let o = off::SKB_METADATA + 8 * i;
            b[o..o + 8].copy_from_slice(&v.to_ne_bytes());
        }
    }
}

/// The section: the resolved fields, of skbs and of XDP buffers.
#[derive(Debug)]
pub struct SkbMetadataSection {
    skb: Vec<FieldPath>,
    xdp: Vec<FieldPath>,
}

impl SkbMetadataSection {
    /// The fields of the subject of an event of `kind`.
    fn fields(&self, xdp: bool) -> &[FieldPath] {
        match xdp {
            true => &self.xdp,
            false => &self.skb,
        }
    }
}

impl RecordSection for SkbMetadataSection {
    fn emit(&self, r: &mut RecordStage<'_>) -> Result<(), ProbeError> {
        let fields = self.fields(r.attach.is_xdp());
        if fields.is_empty() {
            return Ok(());
        }
        r.set_flag(FLAG_SKB_METADATA);
        let slot = r.frame.scratch;
        skb_expr::emit_metadata(r.a, fields, R7, slot, off::SKB_METADATA);
        Ok(())
    }
}

impl Section for SkbMetadataSection {
    fn from_options(opts: &OutputOptions) -> Option<Self> {
        (!opts.skb_metadata.is_empty() || !opts.xdp_metadata.is_empty()).then(|| {
            SkbMetadataSection {
                skb: opts.skb_metadata.clone(),
                xdp: opts.xdp_metadata.clone(),
            }
        })
    }
    fn table_at(&self) -> &'static [TableAt] {
        &[TableAt::AfterFunc]
    }
    /// ` name=value` for each field: decimal (signed when the BTF type is), pointers in hex.
    fn table(&self, _at: TableAt, _cx: &mut Cx<'_>, ev: &Event, line: &mut String) {
        use std::fmt::Write as _;
        let values = ev.get::<SkbMetadata>().unwrap_or_default().0;
        for (f, &raw) in self
            .fields(ev.kind == EventKind::Xdp)
            .iter()
            .zip(values.iter())
        {
            let _ = match f.kind {
                ScalarKind::Pointer => write!(line, " {}={raw:#x}", f.text),
                ScalarKind::Signed => write!(line, " {}={}", f.text, raw as i64),
                ScalarKind::Unsigned => write!(line, " {}={raw}", f.text),
            };
        }
    }
}
