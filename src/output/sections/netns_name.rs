//! `--output-netns-names`: the NETNS NAME column and JSON `netns_name`, the `/run/netns`
//! name of the meta section's netns inode (which the probe records for it).

use crate::events::Event;
use crate::output::json::JsonObject;
use crate::output::OutputOptions;
use crate::probes::ProbeError;

use super::meta::SkbMeta;
use super::{push_title, Cx, JsonAt, RecordSection, RecordStage, Section, TableAt};

/// The section; `width`: the column's width (`--netns-names-max-length`).
#[derive(Debug)]
pub struct NetnsNameSection {
    width: usize,
}

impl RecordSection for NetnsNameSection {
    /// Nothing of its own: the meta section records the netns inode.
    fn emit(&self, _r: &mut RecordStage<'_>) -> Result<(), ProbeError> {
        Ok(())
    }
}

fn netns(ev: &Event) -> u32 {
    ev.get::<SkbMeta>().unwrap_or_default().netns
}

impl Section for NetnsNameSection {
    fn from_options(opts: &OutputOptions) -> Option<Self> {
        opts.netns_names.map(|width| NetnsNameSection { width })
    }
    fn records(&self) -> bool {
        false
    }
    fn table_at(&self) -> &'static [TableAt] {
        &[TableAt::Columns]
    }
    fn json_at(&self) -> &'static [JsonAt] {
        &[JsonAt::Netns]
    }
    fn header(&self, _at: TableAt, h: &mut String) {
        push_title(h, "NETNS NAME", self.width);
    }
    fn table(&self, _at: TableAt, cx: &mut Cx<'_>, ev: &Event, line: &mut String) {
        line.push(' ');
        cx.names.netns.push_cell(line, netns(ev), self.width);
    }
    fn json(&self, _at: JsonAt, cx: &mut Cx<'_>, ev: &Event, obj: &mut JsonObject<'_>) {
        obj.str("netns_name", cx.names.netns.get(netns(ev)));
    }
}
