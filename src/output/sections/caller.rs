//! `--output-caller`: the return address at the probed function's entry (kprobes only),
//! printed as the CALLER column after FUNC and the JSON `caller_func`.

use crate::bpf;
use crate::btf::ReturnAddress;
use crate::events::{Event, RecordPart};
use crate::output::json::JsonObject;
use crate::output::text::pad_ascii_from;
use crate::output::{push_nearest, OutputOptions};
use crate::probes::event::{off, EVENT_SIZE, FLAG_CALLER};
use crate::probes::{Attachment, ProbeError};

use super::{Cx, JsonAt, RecordSection, RecordStage, Section, TableAt};

/// The return address of the probed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerAddr(pub u64);

impl RecordPart for CallerAddr {
    const FLAG: u16 = FLAG_CALLER;
    fn read(fixed: &[u8; EVENT_SIZE]) -> Self {
        CallerAddr(u64::from_ne_bytes(
            fixed[off::CALLER_ADDR..off::CALLER_ADDR + 8]
                .try_into()
                .expect("8 bytes"),
        ))
    }
    fn write(&self, fixed: &mut [u8; EVENT_SIZE]) {
        fixed[off::CALLER_ADDR..off::CALLER_ADDR + 8].copy_from_slice(&self.0.to_ne_bytes());
    }
}

/// The section (on with `--output-caller`).
#[derive(Debug)]
pub struct CallerSection;

impl RecordSection for CallerSection {
    /// At a kprobe the return address is the word at `pt_regs->sp` (x86-64) or the link
    /// register (arm64, riscv64; see `btf::ReturnAddress`); other attachments have no
    /// caller frame to read (the tracepoint backend refuses the flag).
    fn emit(&self, r: &mut RecordStage<'_>) -> Result<(), ProbeError> {
        if let Attachment::Kprobe { .. } = r.attach {
            match r.regs.return_address {
                ReturnAddress::AtStackPointer => {
                    let sp = r.regs.sp;
                    bpf!(into r.a;
                        r3 = *(u64 *)(r6 + sp);
                        r1 = r8;
                        r1 += (off::CALLER_ADDR);
                        r2 = 8;
                        call probe_read_kernel;
                    );
                }
                ReturnAddress::Register(link) => bpf!(into r.a;
                    r1 = *(u64 *)(r6 + link);
                    *(u64 *)(r8 + off::CALLER_ADDR) = r1;
                ),
            }
            r.set_flag(FLAG_CALLER);
        }
        Ok(())
    }
}

impl Section for CallerSection {
    fn from_options(opts: &OutputOptions) -> Option<Self> {
        opts.caller.then_some(CallerSection)
    }
    fn table_at(&self) -> &'static [TableAt] {
        &[TableAt::AfterFunc]
    }
    fn json_at(&self) -> &'static [JsonAt] {
        &[JsonAt::Func]
    }
    fn header(&self, _at: TableAt, h: &mut String) {
        h.push_str(" CALLER");
    }
    /// FUNC becomes a column as wide as the widest seen, then the caller's symbol.
    fn table(&self, _at: TableAt, cx: &mut Cx<'_>, ev: &Event, line: &mut String) {
        *cx.width = (*cx.width).max(line.len() - cx.func_start);
        pad_ascii_from(line, cx.func_start, *cx.width);
        line.push(' ');
        push_nearest(&cx.names.ksyms, caller(ev), line);
    }
    fn json(&self, _at: JsonAt, cx: &mut Cx<'_>, ev: &Event, obj: &mut JsonObject<'_>) {
        push_nearest(&cx.names.ksyms, caller(ev), cx.scratch);
        obj.str("caller_func", cx.scratch);
    }
}

/// The caller address, 0 when not recorded.
fn caller(ev: &Event) -> u64 {
    ev.get::<CallerAddr>().map_or(0, |c| c.0)
}
