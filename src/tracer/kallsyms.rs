//! When a run reads /proc/kallsyms (10 MB, a good part of a second on a small machine):
//! only when something must name a kernel address. The reading runs on another thread.

use std::thread::JoinHandle;

use anyhow::{anyhow, Context, Result};

use crate::output::{Ksyms, KsymsError};
use crate::settings::{FilterSettings, OutputSettings};

/// What decides whether a run needs kallsyms.
#[derive(Clone, Copy, Debug, Default)]
pub struct KallsymsUse {
    /// The backend names its probes by address ([`crate::attach::Backend::names_by_address`]);
    /// `false` while `auto` has not chosen yet.
    pub by_address: bool,
    /// `--kernel-btf`: the BTF may be another kernel's, so fprobe is looked up in the
    /// running kernel's symbols.
    pub other_btf: bool,
}

/// Why this run reads kallsyms, or `None` when nothing in it names a kernel address.
pub fn kallsyms_need(
    u: KallsymsUse,
    filter: &FilterSettings,
    output: &OutputSettings,
) -> Option<&'static str> {
    [
        (
            u.by_address,
            "the backend's events carry function addresses",
        ),
        (u.other_btf, "--kernel-btf: fprobe is looked up in kallsyms"),
        (output.stack, "--output-stack names stack frames"),
        (output.caller, "--output-caller names the caller"),
        (
            filter.track_bpf_helpers,
            "--filter-track-bpf-helpers reads helper addresses",
        ),
        (
            !filter.non_skb_funcs.is_empty(),
            "--filter-non-skb-funcs events carry function addresses",
        ),
        (
            output.bpfmap,
            "--output-bpfmap events carry function addresses",
        ),
    ]
    .into_iter()
    .find_map(|(needed, why)| needed.then_some(why))
}

/// kallsyms, read on another thread once [`KallsymsReader::start`]ed.
#[derive(Default)]
pub struct KallsymsReader {
    reading: Option<JoinHandle<Result<Ksyms, KsymsError>>>,
    read: Option<Ksyms>,
}

impl KallsymsReader {
    /// Starts reading (once).
    pub fn start(&mut self) {
        if self.reading.is_none() && self.read.is_none() {
            self.reading = Some(std::thread::spawn(Ksyms::load));
        }
    }

    /// Whether reading was started.
    pub fn started(&self) -> bool {
        self.reading.is_some() || self.read.is_some()
    }

    /// The symbols, waiting for the reading (started now if it was not).
    pub fn get(&mut self) -> Result<&Ksyms> {
        self.start();
        if let Some(reading) = self.reading.take() {
            let ksyms = reading
                .join()
                .map_err(|_| anyhow!("reading /proc/kallsyms: the reading thread failed"))?
                .context("reading /proc/kallsyms")?;
            self.read = Some(ksyms);
        }
        Ok(self.read.get_or_insert_with(Ksyms::default))
    }

    /// The symbols when reading was started, else none (nothing names an address).
    pub fn take(&mut self) -> Result<Ksyms> {
        if !self.started() {
            return Ok(Ksyms::default());
        }
        self.get()?;
        Ok(self.read.take().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kallsyms_is_read_only_when_an_address_is_named() {
        type Tweak = fn(&mut KallsymsUse, &mut FilterSettings, &mut OutputSettings);
        let cases: &[(&str, Tweak, Option<&str>)] = &[
            ("kprobe-multi, default output", |_, _, _| {}, None),
            (
                "backend by address (kprobe, fentry)",
                |u, _, _| u.by_address = true,
                Some("the backend's events carry function addresses"),
            ),
            (
                "--kernel-btf",
                |u, _, _| u.other_btf = true,
                Some("--kernel-btf: fprobe is looked up in kallsyms"),
            ),
            (
                "--output-stack",
                |_, _, o| o.stack = true,
                Some("--output-stack names stack frames"),
            ),
            (
                "--output-caller",
                |_, _, o| o.caller = true,
                Some("--output-caller names the caller"),
            ),
            (
                "--filter-track-bpf-helpers",
                |_, f, _| f.track_bpf_helpers = true,
                Some("--filter-track-bpf-helpers reads helper addresses"),
            ),
            (
                "--filter-non-skb-funcs",
                |_, f, _| f.non_skb_funcs = vec!["f".into()],
                Some("--filter-non-skb-funcs events carry function addresses"),
            ),
            (
                "--output-bpfmap",
                |_, _, o| o.bpfmap = true,
                Some("--output-bpfmap events carry function addresses"),
            ),
            (
                "columns that name no address",
                |_, f, o| {
                    f.track_skb = true;
                    f.trace_tc = true;
                    f.trace_xdp = true;
                    o.meta = true;
                    o.tuple = true;
                    o.json = true;
                    o.summary = true;
                    o.journey = true;
                },
                None,
            ),
        ];
        for (what, tweak, want) in cases {
            let (mut u, mut f, mut o) = Default::default();
            tweak(&mut u, &mut f, &mut o);
            assert_eq!(kallsyms_need(u, &f, &o), *want, "{what}");
        }
    }

    #[test]
    fn a_reader_never_started_gives_no_symbols() {
        let mut reader = KallsymsReader::default();
        assert!(!reader.started());
        assert!(reader.take().unwrap().addresses_of("ip_rcv").is_empty());
    }
}
