//! The minimal in-memory BPF ELF that hands assembled programs and their shared maps to aya:
//! one text section per program, a legacy `maps` section, `R_BPF_64_64` relocations, a license,
//! and `.BTF`/`.BTF.ext` naming each program's function (aya passes them as `func_info`).

use object::write::{Object, Relocation, StandardSegment, Symbol, SymbolSection};
use object::{
    Architecture, BinaryFormat, Endianness, RelocationFlags, SectionKind, SymbolFlags, SymbolKind,
    SymbolScope,
};

use super::func_btf::{btf_ext_func_info, func_name, Ctx, FuncBtf};
use super::{MapSpec, ProgKind, ProgramSpec};

/// Size of one legacy `struct bpf_map_def` as aya-obj reads it: type, key size, value size,
/// max entries, flags, id, pinning (seven `u32`s).
pub const MAP_DEF_SIZE: usize = 28;

/// Why an object spec cannot be turned into an ELF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    #[error("invalid {what} name `{name}`: use 1-15 ASCII letters, digits, `_` or `.`")]
    BadName { what: &'static str, name: String },
    #[error("{what} `{name}` defined twice")]
    Duplicate { what: &'static str, name: String },
    #[error("program `{0}` is empty")]
    EmptyProgram(String),
    #[error("program `{program}` references map `{map}`, which the object does not define")]
    UnknownMap { program: String, map: String },
    #[error("program `{program}`: map reference at instruction {insn} is not the first slot of an ld_imm64")]
    BadMapRef { program: String, insn: usize },
    #[error("map `{map}`: {reason}")]
    BadMap { map: String, reason: String },
    #[error("writing the ELF failed: {0}")]
    Write(String),
}

/// Names the kernel accepts for programs and maps (`bpf_obj_name_cpy`), short enough that
/// nothing gets truncated.
pub fn check_name(what: &'static str, name: &str) -> Result<(), ElfError> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(ElfError::BadName {
            what,
            name: name.to_string(),
        })
    }
}

/// The ELF section name aya reads the program type from. Only the part before the first
/// `/` selects the type (tracepoints are named at load or attach time); the rest is the
/// program, so that every program has a section of its own: `.BTF.ext` finds a program's
/// function record by its section's name.
pub fn section_name(kind: &ProgKind, program: &str) -> String {
    match kind {
        ProgKind::SocketFilter => format!("socket/{program}"),
        ProgKind::SchedCls => format!("classifier/{program}"),
        ProgKind::KProbe | ProgKind::KProbeMulti => format!("kprobe/{program}"),
        ProgKind::KRetProbe => format!("kretprobe/{program}"),
        ProgKind::RawTracepoint(_) => format!("raw_tp/{program}"),
        ProgKind::TpBtf(_) => format!("tp_btf/{program}"),
        ProgKind::Fentry => format!("fentry/{program}"),
    }
}

/// What the program's function takes, as its BTF prototype says: the context type the
/// verifier gives program type in R1.
pub fn ctx_type(kind: &ProgKind) -> Ctx<'static> {
    match kind {
        ProgKind::SocketFilter | ProgKind::SchedCls => Ctx::Struct("__sk_buff"),
        ProgKind::KProbe | ProgKind::KRetProbe | ProgKind::KProbeMulti => Ctx::Struct("pt_regs"),
        ProgKind::RawTracepoint(_) | ProgKind::TpBtf(_) | ProgKind::Fentry => Ctx::Void,
    }
}

/// Whether a program calls a function of its own (bpf-to-bpf call): its func info would
/// need a record per function, so it goes without.
pub fn has_subprograms(p: &ProgramSpec) -> bool {
    use crate::asm::insn::op;
    p.program
        .insns
        .iter()
        .any(|i| i.code == op::JMP | op::CALL && i.src == op::PSEUDO_CALL)
}

/// Whether [`build`] writes BTF for the programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FuncInfo {
    /// `.BTF` and `.BTF.ext` with each program's function.
    Emit,
    /// No BTF sections (aya then loads the programs without BTF).
    Omit,
}

/// Encode a legacy `bpf_map_def`.
pub fn map_def_bytes(m: &MapSpec) -> [u8; MAP_DEF_SIZE] {
    let fields = [
        m.kind.kernel_type(),
        m.key_size,
        m.value_size,
        m.max_entries,
        m.flags,
        0, // id
        0, // pinning: none
    ];
    let mut out = [0u8; MAP_DEF_SIZE];
    for (chunk, v) in out.chunks_exact_mut(4).zip(fields) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    out
}

/// Check names, map references and map shapes before anything touches the kernel.
pub fn validate(maps: &[MapSpec], programs: &[&ProgramSpec]) -> Result<(), ElfError> {
    let mut seen = std::collections::HashSet::new();
    for m in maps {
        check_name("map", &m.name)?;
        if !seen.insert(m.name.as_str()) {
            return Err(ElfError::Duplicate {
                what: "map",
                name: m.name.clone(),
            });
        }
        m.kind.check_shape(m).map_err(|reason| ElfError::BadMap {
            map: m.name.clone(),
            reason,
        })?;
    }
    let mut seen = std::collections::HashSet::new();
    for p in programs {
        check_name("program", &p.name)?;
        if !seen.insert(p.name.as_str()) {
            return Err(ElfError::Duplicate {
                what: "program",
                name: p.name.clone(),
            });
        }
        if p.program.insns.is_empty() {
            return Err(ElfError::EmptyProgram(p.name.clone()));
        }
        for r in &p.program.map_refs {
            if !maps.iter().any(|m| m.name == r.map) {
                return Err(ElfError::UnknownMap {
                    program: p.name.clone(),
                    map: r.map.clone(),
                });
            }
            let first = p.program.insns.get(r.insn_index);
            if !first.is_some_and(|i| i.is_ld_imm64()) || r.insn_index + 1 >= p.program.len() {
                return Err(ElfError::BadMapRef {
                    program: p.name.clone(),
                    insn: r.insn_index,
                });
            }
        }
    }
    Ok(())
}

/// Build the ELF: every map in `maps` and every program in `programs`, map references
/// turned into relocations, with or without the programs' BTF. Validates first (see
/// [`validate`]).
pub fn build(
    maps: &[MapSpec],
    programs: &[&ProgramSpec],
    func_info: FuncInfo,
) -> Result<Vec<u8>, ElfError> {
    validate(maps, programs)?;
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::Bpf, Endianness::Little);

    let license = obj.add_section(Vec::new(), b"license".to_vec(), SectionKind::Data);
    obj.append_section_data(license, b"GPL\0", 1);

    let mut map_symbols = std::collections::HashMap::new();
    if !maps.is_empty() {
        let section = obj.add_section(Vec::new(), b"maps".to_vec(), SectionKind::Data);
        for m in maps {
            let offset = obj.append_section_data(section, &map_def_bytes(m), 4);
            let sym = obj.add_symbol(Symbol {
                name: m.name.as_bytes().to_vec(),
                value: offset,
                size: MAP_DEF_SIZE as u64,
                kind: SymbolKind::Data,
                scope: SymbolScope::Linkage,
                weak: false,
                section: SymbolSection::Section(section),
                flags: SymbolFlags::None,
            });
            map_symbols.insert(m.name.as_str(), sym);
        }
    }

    let mut btf = FuncBtf::new();
    let mut func_records = Vec::new();
    for p in programs {
        let name = section_name(&p.kind, &p.name);
        if func_info == FuncInfo::Emit && !has_subprograms(p) {
            let func = btf.add_func(&func_name(&p.name), ctx_type(&p.kind));
            func_records.push((btf.string(&name), func));
        }
        let segment = obj.segment_name(StandardSegment::Text).to_vec();
        let section = obj.add_section(segment, name.into_bytes(), SectionKind::Text);
        let code = p.program.bytecode();
        let offset = obj.append_section_data(section, &code, 8);
        obj.add_symbol(Symbol {
            name: p.name.as_bytes().to_vec(),
            value: offset,
            size: code.len() as u64,
            kind: SymbolKind::Text,
            scope: SymbolScope::Linkage,
            weak: false,
            section: SymbolSection::Section(section),
            flags: SymbolFlags::None,
        });
        for r in &p.program.map_refs {
            let symbol = map_symbols[r.map.as_str()];
            obj.add_relocation(
                section,
                Relocation {
                    offset: offset + (r.insn_index * 8) as u64,
                    symbol,
                    addend: 0,
                    flags: RelocationFlags::Elf {
                        r_type: object::elf::R_BPF_64_64,
                    },
                },
            )
            .map_err(|e| ElfError::Write(e.to_string()))?;
        }
    }
    if !func_records.is_empty() {
        let section = obj.add_section(Vec::new(), b".BTF".to_vec(), SectionKind::Metadata);
        obj.append_section_data(section, &btf.to_le_bytes(), 4);
        let section = obj.add_section(Vec::new(), b".BTF.ext".to_vec(), SectionKind::Metadata);
        obj.append_section_data(section, &btf_ext_func_info(&func_records), 4);
    }
    obj.write().map_err(|e| ElfError::Write(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::{Asm, Helper, Reg::*};
    use crate::load::MapKind;
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

    fn map(name: &str, kind: MapKind, key: u32, value: u32, max: u32) -> MapSpec {
        MapSpec {
            name: name.into(),
            kind,
            key_size: key,
            value_size: value,
            max_entries: max,
            flags: 0,
        }
    }

    fn prog(name: &str, kind: ProgKind, maps: &[&str]) -> ProgramSpec {
        let mut a = Asm::new();
        for m in maps {
            a.ld_map(R1, m);
            a.mov64(R2, 0);
            a.call(Helper::MAP_LOOKUP_ELEM);
        }
        a.mov64(R0, 0);
        a.exit();
        ProgramSpec {
            name: name.into(),
            kind,
            program: a.finish().unwrap(),
        }
    }

    fn fixture() -> (Vec<MapSpec>, Vec<ProgramSpec>) {
        (
            vec![
                map("events", MapKind::RingBuf, 0, 0, 1 << 16),
                map("config", MapKind::Array, 4, 16, 1),
            ],
            vec![
                prog("filt", ProgKind::SocketFilter, &["config"]),
                prog("kp", ProgKind::KProbe, &["events", "config"]),
                prog("drops", ProgKind::RawTracepoint("kfree_skb".into()), &[]),
                prog("drops2", ProgKind::RawTracepoint("kfree_skb".into()), &[]),
                prog("btfp", ProgKind::TpBtf("kfree_skb".into()), &["events"]),
            ],
        )
    }

    #[test]
    fn elf_reads_back_with_sections_symbols_and_relocations() {
        let (maps, progs) = fixture();
        let refs: Vec<&ProgramSpec> = progs.iter().collect();
        let bytes = build(&maps, &refs, FuncInfo::Emit).unwrap();
        let file = object::File::parse(&*bytes).unwrap();
        assert_eq!(file.architecture(), Architecture::Bpf);
        assert!(file.is_little_endian());

        let license = file.section_by_name("license").unwrap();
        assert_eq!(license.data().unwrap(), b"GPL\0");

        let maps_sec = file.section_by_name("maps").unwrap();
        assert_eq!(maps_sec.data().unwrap().len(), 2 * MAP_DEF_SIZE);

        let kp = file.section_by_name("kprobe/kp").unwrap();
        assert_eq!(kp.kind(), SectionKind::Text);
        let relocs: Vec<_> = kp.relocations().collect();
        assert_eq!(relocs.len(), 2);
        for (i, (offset, r)) in relocs.iter().enumerate() {
            assert_eq!(
                *offset,
                (i * 4 * 8) as u64,
                "ld_imm64 (2 slots) + mov + call per map"
            );
            assert_eq!(
                r.flags(),
                RelocationFlags::Elf {
                    r_type: object::elf::R_BPF_64_64
                }
            );
            let object::RelocationTarget::Symbol(idx) = r.target() else {
                panic!("relocation against a non-symbol");
            };
            let sym = file.symbol_by_index(idx).unwrap();
            assert_eq!(sym.name().unwrap(), ["events", "config"][i]);
        }

        let kp_sym = file.symbols().find(|s| s.name() == Ok("kp")).unwrap();
        assert_eq!(kp_sym.kind(), SymbolKind::Text);
        assert_eq!(kp_sym.size(), progs[1].program.len() as u64 * 8);
    }

    #[test]
    fn aya_obj_parses_programs_types_and_maps() {
        use aya_obj::{maps::Map, ProgramSection};
        let (maps, progs) = fixture();
        let refs: Vec<&ProgramSpec> = progs.iter().collect();
        let bytes = build(&maps, &refs, FuncInfo::Emit).unwrap();
        let obj = aya_obj::Object::parse(&bytes).unwrap();

        let mut names: Vec<_> = obj.programs.keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["btfp", "drops", "drops2", "filt", "kp"]);
        let section = |n: &str| obj.programs[n].section.clone();
        assert!(matches!(section("filt"), ProgramSection::SocketFilter));
        assert!(matches!(section("kp"), ProgramSection::KProbe));
        assert!(matches!(section("drops"), ProgramSection::RawTracePoint));
        assert!(matches!(section("btfp"), ProgramSection::BtfTracePoint));

        let events = &obj.maps["events"];
        assert!(matches!(events, Map::Legacy(_)));
        assert_eq!(events.map_type(), 27);
        assert_eq!(events.max_entries(), 1 << 16);
        let config = &obj.maps["config"];
        assert_eq!(
            (config.map_type(), config.key_size(), config.value_size()),
            (2, 4, 16)
        );
        let kp = obj
            .functions
            .values()
            .find(|f| f.name == "kp")
            .expect("kp function");
        assert_eq!(kp.instructions.len(), progs[1].program.len());
    }

    #[test]
    fn aya_obj_reads_each_programs_function_from_btf_ext() {
        use aya_obj::btf::BtfKind;
        let (maps, progs) = fixture();
        let refs: Vec<&ProgramSpec> = progs.iter().collect();
        let obj = aya_obj::Object::parse(&build(&maps, &refs, FuncInfo::Emit).unwrap()).unwrap();
        let btf = obj.btf.as_ref().expect("the object has BTF");
        for p in &progs {
            let f = &obj.functions[&obj.programs[&p.name].function_key()];
            assert_eq!(f.func_info_rec_size, 8, "{}", p.name);
            let records = &f.func_info.func_info;
            assert_eq!(records.len(), 1, "{}: one function", p.name);
            assert_eq!(records[0].insn_off, 0);
            let id = btf.id_by_type_name_kind(&p.name, BtfKind::Func).unwrap();
            assert_eq!(records[0].type_id, id, "{}: its own FUNC", p.name);
            assert!(f.line_info.line_info.is_empty());
        }

        let plain = aya_obj::Object::parse(&build(&maps, &refs, FuncInfo::Omit).unwrap()).unwrap();
        assert!(plain.btf.is_none() && plain.btf_ext.is_none());
        assert_eq!(plain.programs.len(), progs.len());
    }

    #[test]
    fn programs_with_subprograms_get_no_func_info() {
        use crate::asm::insn::{op, Insn};
        let mut p = prog("sub", ProgKind::KProbe, &[]);
        assert!(!has_subprograms(&p));
        p.program
            .insns
            .insert(0, Insn::new(op::JMP | op::CALL, 0, op::PSEUDO_CALL, 0, 1));
        assert!(has_subprograms(&p));
        let bytes = build(&[], &[&p], FuncInfo::Emit).unwrap();
        let file = object::File::parse(&*bytes).unwrap();
        assert!(file.section_by_name(".BTF").is_none());
    }

    #[test]
    fn bad_specs_are_rejected_with_a_reason() {
        let ok_map = map("m", MapKind::Array, 4, 8, 1);
        let cases: Vec<(Vec<MapSpec>, Vec<ProgramSpec>, ElfError)> = vec![
            (
                vec![],
                vec![prog("p", ProgKind::KProbe, &["nope"])],
                ElfError::UnknownMap {
                    program: "p".into(),
                    map: "nope".into(),
                },
            ),
            (
                vec![ok_map.clone(), ok_map.clone()],
                vec![],
                ElfError::Duplicate {
                    what: "map",
                    name: "m".into(),
                },
            ),
            (
                vec![],
                vec![prog("a-b", ProgKind::KProbe, &[])],
                ElfError::BadName {
                    what: "program",
                    name: "a-b".into(),
                },
            ),
            (
                vec![],
                vec![prog("much_too_long_name", ProgKind::KProbe, &[])],
                ElfError::BadName {
                    what: "program",
                    name: "much_too_long_name".into(),
                },
            ),
            (
                vec![],
                vec![ProgramSpec {
                    name: "e".into(),
                    kind: ProgKind::KProbe,
                    program: Default::default(),
                }],
                ElfError::EmptyProgram("e".into()),
            ),
            (
                vec![map("a", MapKind::Array, 8, 8, 1)],
                vec![],
                ElfError::BadMap {
                    map: "a".into(),
                    reason: "array keys must be 4 bytes, not 8".into(),
                },
            ),
        ];
        for (maps, progs, want) in cases {
            let refs: Vec<&ProgramSpec> = progs.iter().collect();
            assert_eq!(build(&maps, &refs, FuncInfo::Emit).unwrap_err(), want);
        }
    }

    #[test]
    fn map_ref_must_point_at_ld_imm64() {
        let mut p = prog("p", ProgKind::KProbe, &["m"]);
        p.program.map_refs[0].insn_index = 2; // the call
        let maps = [map("m", MapKind::Array, 4, 8, 1)];
        assert_eq!(
            build(&maps, &[&p], FuncInfo::Emit).unwrap_err(),
            ElfError::BadMapRef {
                program: "p".into(),
                insn: 2
            }
        );
    }

    #[test]
    fn map_def_layout_is_little_endian_u32s() {
        let b = map_def_bytes(&MapSpec {
            name: "x".into(),
            kind: MapKind::Hash,
            key_size: 8,
            value_size: 16,
            max_entries: 1024,
            flags: 1,
        });
        assert_eq!(&b[0..4], &1u32.to_le_bytes());
        assert_eq!(&b[4..8], &8u32.to_le_bytes());
        assert_eq!(&b[8..12], &16u32.to_le_bytes());
        assert_eq!(&b[12..16], &1024u32.to_le_bytes());
        assert_eq!(&b[16..20], &1u32.to_le_bytes());
        assert_eq!(&b[20..], &[0u8; 8]);
    }
}
