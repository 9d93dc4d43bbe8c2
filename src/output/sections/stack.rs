//! `--output-stack`: the kernel stack of each hit, by id in the `stacks` map
//! (`bpf_get_stackid`); the reader looks the frames up and they print as one symbol a
//! line after the event (JSON `stack`).

use crate::bpf;
use crate::events::{Event, RecordPart};
use crate::output::json::JsonObject;
use crate::output::{push_nearest, OutputOptions};
use crate::probes::event::{off, EVENT_SIZE, FLAG_STACK};
use crate::probes::maps::{self, MapDef};
use crate::probes::{Attachment, ProbeError};

use super::{Cx, JsonAt, RecordSection, RecordStage, Section, TableAt};

/// The `bpf_get_stackid` result (negative: an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackId(pub i64);

impl RecordPart for StackId {
    const FLAG: u16 = FLAG_STACK;
    fn read(b: &[u8; EVENT_SIZE]) -> Self {
        StackId(i64::from_ne_bytes(
            b[off::STACK_ID..off::STACK_ID + 8]
                .try_into()
                .expect("8 bytes"),
        ))
    }
    fn write(&self, b: &mut [u8; EVENT_SIZE]) {
        b[off::STACK_ID..off::STACK_ID + 8].copy_from_slice(&self.0.to_ne_bytes());
    }
}

/// The section (on with `--output-stack`).
#[derive(Debug)]
pub struct StackSection;

impl RecordSection for StackSection {
    fn check(&self, at: &Attachment) -> Result<(), ProbeError> {
        if *at == Attachment::SkbContext {
            return Err(ProbeError::Unsupported(
                "--output-stack on a SCHED_CLS (skb context) program: bpf_get_stackid needs pt_regs",
            ));
        }
        Ok(())
    }
    fn maps(&self) -> Vec<&'static MapDef> {
        vec![maps::STACKS]
    }
    fn emit(&self, r: &mut RecordStage<'_>) -> Result<(), ProbeError> {
        r.set_flag(FLAG_STACK);
        bpf!(into r.a;
            r1 = r6;
            r2 = map[maps::STACKS];
            r3 = 0;
            call get_stackid;
            *(u64 *)(r8 + off::STACK_ID) = r0;
        );
        Ok(())
    }
}

/// Appends `\n<symbol>` for each frame.
fn push_frames(cx: &Cx<'_>, buf: &mut String) {
    for &frame in cx.frames.iter().filter(|f| **f != 0) {
        buf.push('\n');
        push_nearest(&cx.names.ksyms, frame, buf);
    }
}

impl Section for StackSection {
    fn from_options(opts: &OutputOptions) -> Option<Self> {
        opts.stack.then_some(StackSection)
    }
    fn table_at(&self) -> &'static [TableAt] {
        &[TableAt::Lines]
    }
    fn json_at(&self) -> &'static [JsonAt] {
        &[JsonAt::Text]
    }
    fn table(&self, _at: TableAt, cx: &mut Cx<'_>, _ev: &Event, line: &mut String) {
        push_frames(cx, line);
    }
    fn json(&self, _at: JsonAt, cx: &mut Cx<'_>, _ev: &Event, obj: &mut JsonObject<'_>) {
        let mut text = std::mem::take(cx.scratch);
        push_frames(cx, &mut text);
        obj.str("stack", &text);
        *cx.scratch = text;
    }
}
