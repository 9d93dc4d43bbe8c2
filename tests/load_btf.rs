//! Our own programs carry BTF: every program kind loaded through `load::load` has a BTF
//! object and one function record naming it, as `bpftool prog` and fentry read them.
//! Needs root and bpf(); prints `skipped: <reason>` and returns otherwise.

use pwru::asm::{Asm, Helper, Program, Reg::*};
use pwru::load::{self, LoadError, LoadOptions, LoadedObject, MapSpec, ObjectSpec, ProgKind};

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !std::path::Path::new(pwru::btf::SYS_VMLINUX_BTF).exists() {
        return Some("no /sys/kernel/btf/vmlinux (tp_btf needs it)".into());
    }
    None
}

/// Looks up `config[0]` and returns 0: a program with a map reference.
fn body() -> Program {
    let mut a = Asm::new();
    a.st(pwru::asm::Size::W, R10, -4, 0);
    a.ld_map(R1, "config");
    a.mov64(R2, R10);
    a.add64(R2, -4);
    a.call(Helper::MAP_LOOKUP_ELEM);
    a.mov64(R0, 0);
    a.exit();
    a.finish().unwrap()
}

/// One program of every kind the loader knows (names as the kernel keeps them).
fn every_kind() -> ObjectSpec {
    let programs = [
        ("sock_filt", ProgKind::SocketFilter),
        ("tc_cls", ProgKind::SchedCls),
        ("kp", ProgKind::KProbe),
        ("kretp", ProgKind::KRetProbe),
        ("kp_multi", ProgKind::KProbeMulti),
        ("raw_drops", ProgKind::RawTracepoint("kfree_skb".into())),
        ("raw_drops2", ProgKind::RawTracepoint("kfree_skb".into())),
        ("btf_drops", ProgKind::TpBtf("kfree_skb".into())),
        ("name.with_dot", ProgKind::KProbe),
    ];
    ObjectSpec {
        maps: vec![MapSpec::new("config", load::MapKind::Array, 4, 8, 1)],
        programs: programs
            .into_iter()
            .map(|(name, kind)| load::ProgramSpec {
                name: name.into(),
                kind,
                program: body(),
            })
            .collect(),
    }
}

/// (btf_id set, function records, function name) of each program of `spec` in `obj`.
fn btf_facts(spec: &ObjectSpec, obj: &LoadedObject) -> Vec<(String, bool, u32, Option<String>)> {
    spec.programs
        .iter()
        .map(|p| {
            let info = obj.info(&p.name).unwrap();
            let fd = obj.program_fd(&p.name).unwrap();
            let func = load::prog_func_name(fd).unwrap();
            (p.name.clone(), info.btf_id != 0, info.nr_func_info, func)
        })
        .collect()
}

#[test]
fn every_program_kind_loads_with_its_function_in_btf() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let spec = every_kind();
    let obj = match load::load(&spec, &LoadOptions::default()) {
        Ok(obj) => obj,
        Err(LoadError::Rejected { errno, .. }) if errno.raw_os_error() == Some(libc::EPERM) => {
            eprintln!("skipped: bpf() refused: {errno}");
            return;
        }
        Err(e) => panic!("loading every kind: {e}"),
    };
    assert_eq!(obj.btf_fallback(), None, "loaded with BTF");
    let want: Vec<_> = spec
        .programs
        .iter()
        .map(|p| {
            let func = p.name.replace('.', "_");
            (p.name.clone(), true, 1, Some(func))
        })
        .collect();
    assert_eq!(btf_facts(&spec, &obj), want);
    // The map still works (a legacy definition, not described in BTF).
    let info = obj.info("kp").unwrap();
    assert_eq!(info.map_ids.len(), 1);
}

#[test]
fn without_func_info_programs_have_no_btf() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let spec = every_kind();
    let opts = LoadOptions {
        without_func_info: true,
        ..LoadOptions::default()
    };
    let obj = match load::load(&spec, &opts) {
        Ok(obj) => obj,
        Err(LoadError::Rejected { errno, .. }) if errno.raw_os_error() == Some(libc::EPERM) => {
            eprintln!("skipped: bpf() refused: {errno}");
            return;
        }
        Err(e) => panic!("loading every kind: {e}"),
    };
    assert_eq!(
        obj.btf_fallback(),
        None,
        "nothing fell back: BTF was not asked for"
    );
    for (name, has_btf, records, func) in btf_facts(&spec, &obj) {
        assert_eq!((has_btf, records, func), (false, 0, None), "{name}");
    }
}
