//! Tests on small BTF blobs built by `testenc`: anonymous members, bitfields,
//! typedef chains, skb parameter positions, tracepoints, modules, bad input.

use super::testenc::{BtfBuilder, M};
use super::*;

/// Ids in the synthetic kernel that tests refer to.
struct Fixture {
    base: BtfBuilder,
    skb_ptr: u32,
    int: u32,
    kfree_skb_reason: u32,
}

/// A tiny "kernel": sk_buff with an anonymous union holding an anonymous
/// struct, a bitfield, a typedef'd u16, `possible_net_t` (typedef of an anon
/// struct), net/ns_common, skb functions and tracepoints.
fn fixture() -> Fixture {
    let mut b = BtfBuilder::new();
    let u32_t = b.int("unsigned int", 4, false);
    let u8_t = b.int("unsigned char", 1, false);
    let u16_t = b.int("short unsigned int", 2, false);
    let int = b.int("int", 4, true);
    let char_t = b.int("char", 1, true);
    let u16_td = b.typedef("__u16", u16_t);
    let u16_td2 = b.typedef("u16", u16_td);
    let ns_common = b.structure(
        "ns_common",
        8,
        &[M("count", u32_t, 0, 0), M("inum", u32_t, 32, 0)],
    );
    let net = b.structure("net", 16, &[M("ns", ns_common, 64, 0)]);
    let net_ptr = b.ptr(net);
    let anon_net = b.structure("", 8, &[M("net", net_ptr, 0, 0)]);
    let possible_net_t = b.typedef("possible_net_t", anon_net);
    let len_pair = b.structure("", 8, &[M("len", u32_t, 0, 0), M("data_len", u32_t, 32, 0)]);
    let anon_union = b.union("", 8, &[M("", len_pair, 0, 0), M("whole", u32_t, 0, 0)]);
    let cb = b.array(char_t, u32_t, 48);
    let volatile_u32 = b.volatile(u32_t);
    let skb = b.structure(
        "sk_buff",
        72,
        &[
            M("", anon_union, 0, 0),
            M("mark", volatile_u32, 64, 0),
            M("pkt_type", u8_t, 100, 3),
            M("mac_header", u16_td2, 112, 0),
            M("ns", possible_net_t, 128, 0),
            M("cb", cb, 192, 0),
        ],
    );
    let skb_ptr = b.ptr(skb);
    let skb_ptr_ptr = b.ptr(skb_ptr);
    let reason = b.enumeration(
        "skb_drop_reason",
        false,
        &[
            ("SKB_NOT_DROPPED_YET", 0),
            ("SKB_CONSUMED", 1),
            ("SKB_DROP_REASON_NETFILTER_DROP", 5),
            ("SKB_DROP_REASON_ALIAS", 5),
        ],
    );
    b.enum64("big_flags", &[("BIG_BIT", 1 << 40)]);
    b.enumeration("signed_enum", true, &[("MINUS_ONE", -1), ("ONE", 1)]);
    // typedef chain: typedef struct sk_buff skb_alias; typedef skb_alias skb_alias2;
    let alias = b.typedef("skb_alias", skb);
    let alias2 = b.typedef("skb_alias2", alias);
    let const_alias2 = b.constant(alias2);
    let ptr_const_alias2 = b.ptr(const_alias2);

    let proto = b.func_proto(0, &[("skb", skb_ptr), ("reason", reason)]);
    let kfree_skb_reason = b.func("kfree_skb_reason", proto);
    let proto = b.func_proto(0, &[("x", int), ("a", skb_ptr), ("b", skb_ptr)]);
    b.func("two_skbs", proto);
    let proto = b.func_proto(
        0,
        &[
            ("a", int),
            ("b", int),
            ("c", int),
            ("d", int),
            ("e", int),
            ("skb", skb_ptr),
        ],
    );
    b.func("skb_sixth", proto);
    let proto = b.func_proto(0, &[("x", int), ("skb", ptr_const_alias2)]);
    b.func("via_typedef", proto);
    let proto = b.func_proto(0, &[("x", int)]);
    b.func("no_skb", proto);
    let proto = b.func_proto(0, &[("pskb", skb_ptr_ptr)]);
    b.func("skb_ptr_ptr", proto);
    let proto = b.func_proto(0, &[("skb", skb_ptr)]);
    b.func("dup", proto);
    let proto = b.func_proto(0, &[("x", int), ("skb", skb_ptr)]);
    b.func("dup", proto);

    let void_ptr = b.ptr(0);
    let proto = b.func_proto(
        0,
        &[
            ("__data", void_ptr),
            ("skb", skb_ptr),
            ("location", void_ptr),
            ("reason", reason),
        ],
    );
    let tp_ptr = b.ptr(proto);
    b.typedef("btf_trace_kfree_skb", tp_ptr);
    let proto = b.func_proto(0, &[("skb", skb_ptr)]);
    let tp_ptr = b.ptr(proto);
    b.typedef("btf_trace_no_ctx", tp_ptr);
    let proto = b.func_proto(0, &[("__data", void_ptr), ("x", int)]);
    let tp_ptr = b.ptr(proto);
    b.typedef("btf_trace_no_skb", tp_ptr);

    Fixture {
        base: b,
        skb_ptr,
        int,
        kfree_skb_reason,
    }
}

fn kernel() -> KernelBtf {
    KernelBtf::from_bytes(&fixture().base.bytes(), "test kernel").expect("fixture parses")
}

#[test]
fn skb_functions_positions_sorted_and_deduplicated() {
    let scan = kernel().scan_skb_functions().unwrap();
    let got: Vec<(&str, u16, Option<u16>)> = scan
        .probeable
        .iter()
        .map(|f| (f.name.as_str(), f.skb_arg, f.drop_reason_arg))
        .collect();
    assert_eq!(
        got,
        [
            ("dup", 1, None),
            ("kfree_skb_reason", 1, Some(2)),
            // Two skb params: the first one's position.
            ("two_skbs", 2, None),
            ("via_typedef", 2, None),
        ]
    );
    let beyond: Vec<(&str, u16)> = scan
        .beyond_max_arg
        .iter()
        .map(|f| (f.name.as_str(), f.skb_arg))
        .collect();
    assert_eq!(beyond, [("skb_sixth", 6)]);
    assert!(scan.probeable.iter().all(|f| f.module.is_none()));
}

#[test]
fn skb_function_records_its_btf_id() {
    let f = fixture();
    let funcs = kernel().skb_functions().unwrap();
    let k = funcs.iter().find(|f| f.name == "kfree_skb_reason").unwrap();
    assert_eq!(k.btf_id, f.kfree_skb_reason);
}

#[test]
fn tracepoints_need_leading_void_ptr_and_an_skb() {
    let tps = kernel().skb_tracepoints().unwrap();
    assert_eq!(tps.len(), 1, "{tps:?}");
    let tp = &tps[0];
    assert_eq!(tp.name, "kfree_skb");
    assert_eq!((tp.nargs, tp.skb_arg, tp.drop_reason_arg), (3, 0, Some(2)));
    assert_eq!(tp.module, None);
}

#[test]
fn member_layouts() {
    let k = kernel();
    let plain = |offset_bits, size_bytes| Field {
        offset_bits,
        size_bytes,
        bitfield: None,
    };
    let cases: &[(&str, &str, Field)] = &[
        // Inside an anonymous struct inside an anonymous union.
        ("sk_buff", "len", plain(0, 4)),
        ("sk_buff", "data_len", plain(32, 4)),
        ("sk_buff", "whole", plain(0, 4)),
        // volatile u32
        ("sk_buff", "mark", plain(64, 4)),
        // typedef chain u16 -> __u16 -> unsigned short
        ("sk_buff", "mac_header", plain(112, 2)),
        // typedef of an anonymous struct
        ("sk_buff", "ns", plain(128, 8)),
        ("sk_buff", "ns.net", plain(128, 8)),
        ("possible_net_t", "net", plain(0, 8)),
        ("net", "ns.inum", plain(96, 4)),
        ("sk_buff", "cb", plain(192, 48)),
        (
            "sk_buff",
            "pkt_type",
            Field {
                offset_bits: 96,
                size_bytes: 1,
                bitfield: Some(Bitfield {
                    bit_offset: 4,
                    bit_size: 3,
                }),
            },
        ),
    ];
    for (st, path, want) in cases {
        assert_eq!(k.member(st, path).unwrap(), *want, "{st}.{path}");
    }
    assert_eq!(k.member("sk_buff", "pkt_type").unwrap().offset_bytes(), 12);
    assert_eq!(k.struct_size("possible_net_t").unwrap(), 8);
}

#[test]
fn member_errors_name_the_kernel_and_the_field() {
    let k = kernel();
    let err = k.member("sk_buff", "ns.nope").unwrap_err();
    assert!(matches!(&err, BtfError::NoSuchField { missing, .. } if missing == "ns.nope"));
    let text = err.to_string();
    assert!(
        text.contains("test kernel") && text.contains("ns.nope"),
        "{text}"
    );
    assert!(matches!(
        k.member("sk_buff", "mark.x").unwrap_err(),
        BtfError::NotComposite { segment, .. } if segment == "mark"
    ));
    assert!(matches!(
        k.member("no_such_struct", "x").unwrap_err(),
        BtfError::NoSuchStruct { .. }
    ));
    assert_eq!(k.optional_member("sk_buff", "nope").unwrap(), None);
}

#[test]
fn bitfield_straddling_a_byte_uses_a_wider_unit() {
    let mut b = BtfBuilder::new();
    let u8_t = b.int("unsigned char", 1, false);
    b.structure(
        "s",
        4,
        &[M("a", u8_t, 0, 6), M("b", u8_t, 6, 4), M("c", u8_t, 15, 2)],
    );
    let k = KernelBtf::from_bytes(&b.bytes(), "t").unwrap();
    let bf = |bit_offset, bit_size| {
        Some(Bitfield {
            bit_offset,
            bit_size,
        })
    };
    assert_eq!(
        k.member("s", "b").unwrap(),
        Field {
            offset_bits: 0,
            size_bytes: 2,
            bitfield: bf(6, 4)
        }
    );
    assert_eq!(
        k.member("s", "c").unwrap(),
        Field {
            offset_bits: 0,
            size_bytes: 4,
            bitfield: bf(15, 2)
        }
    );
}

#[test]
fn enums_and_has_func() {
    let k = kernel();
    let reasons = k.enum_values("skb_drop_reason").unwrap();
    assert_eq!(
        reasons.get(&0).map(String::as_str),
        Some("SKB_NOT_DROPPED_YET")
    );
    // Aliased values keep the first name.
    assert_eq!(
        reasons.get(&5).map(String::as_str),
        Some("SKB_DROP_REASON_NETFILTER_DROP")
    );
    assert_eq!(reasons.len(), 3);
    assert_eq!(
        k.enum_values("big_flags")
            .unwrap()
            .get(&(1 << 40))
            .map(String::as_str),
        Some("BIG_BIT")
    );
    assert_eq!(
        k.enum_values("signed_enum")
            .unwrap()
            .get(&-1)
            .map(String::as_str),
        Some("MINUS_ONE")
    );
    assert!(matches!(
        k.enum_values("sk_buff").unwrap_err(),
        BtfError::NoSuchEnum { .. }
    ));
    assert!(k.has_func("kfree_skb_reason"));
    assert!(!k.has_func("sk_buff"));
    assert!(!k.has_func("missing"));
}

#[test]
fn module_split_btf_over_cached_and_mapped_base() {
    let f = fixture();
    let mut m = BtfBuilder::split_over(&f.base);
    let proto = m.func_proto(0, &[("x", f.int), ("y", f.int), ("skb", f.skb_ptr)]);
    let mod_rcv = m.func("mod_rcv", proto);
    let proto = m.func_proto(0, &[("skb", f.skb_ptr)]);
    // Same name as a vmlinux function: the vmlinux entry wins.
    m.func("kfree_skb_reason", proto);
    m.structure("mod_priv", 8, &[M("a", f.int, 0, 0), M("b", f.int, 32, 0)]);
    let module = m.bytes();

    let bases = [
        ("cached", kernel()),
        (
            "mapped",
            KernelBtf::from_btf(
                super::kernel::mmap_copy(&f.base.bytes()).unwrap(),
                "test kernel",
            ),
        ),
    ];
    for (backend, mut k) in bases {
        k.add_module_bytes("modx", &module).unwrap();
        let funcs = k.skb_functions().unwrap();
        let rcv = funcs.iter().find(|f| f.name == "mod_rcv").unwrap();
        assert_eq!(
            (rcv.skb_arg, rcv.module.as_deref(), rcv.btf_id),
            (3, Some("modx"), mod_rcv),
            "{backend}"
        );
        let kfree: Vec<_> = funcs
            .iter()
            .filter(|f| f.name == "kfree_skb_reason")
            .collect();
        assert_eq!(kfree.len(), 1, "{backend}");
        assert_eq!(kfree[0].module, None, "{backend}");
        assert_eq!(funcs.len(), 5, "{backend}");
        assert!(k.has_func("mod_rcv"), "{backend}");
        assert_eq!(
            k.member("mod_priv", "b").unwrap().offset_bits,
            32,
            "{backend}"
        );
        assert_eq!(k.module_names().collect::<Vec<_>>(), ["modx"], "{backend}");
    }
}

#[test]
fn elf_with_btf_section_is_accepted() {
    use object::write::Object;
    let blob = fixture().base.bytes();
    let mut obj = Object::new(
        object::BinaryFormat::Elf,
        object::Architecture::X86_64,
        object::Endianness::Little,
    );
    let sec = obj.add_section(Vec::new(), b".BTF".to_vec(), object::SectionKind::Other);
    obj.append_section_data(sec, &blob, 4);
    let elf = obj.write().unwrap();
    let k = KernelBtf::from_bytes(&elf, "vmlinux ELF").unwrap();
    assert!(k.has_func("kfree_skb_reason"));

    let empty = Object::new(
        object::BinaryFormat::Elf,
        object::Architecture::X86_64,
        object::Endianness::Little,
    );
    let err = KernelBtf::from_bytes(&empty.write().unwrap(), "plain ELF").unwrap_err();
    assert!(err.to_string().contains("no .BTF section"), "{err}");
}

#[test]
fn bad_input_gives_errors_not_panics() {
    let good = fixture().base.bytes();
    let mut bad_version = good.clone();
    bad_version[2] = 2;
    let mut bad_hdr_len = good.clone();
    bad_hdr_len[4] = 4;
    let mut bad_kind = good.clone();
    // First type's info word: kind 31 does not exist.
    bad_kind[24 + 7] = 31;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "not a BTF file"),
        ("text", b"hello world, not btf".to_vec(), "not a BTF file"),
        ("header only", good[..10].to_vec(), "shorter than"),
        (
            "truncated types",
            good[..good.len() / 2].to_vec(),
            "truncated",
        ),
        (
            "truncated strings",
            good[..good.len() - 3].to_vec(),
            "truncated",
        ),
        ("version", bad_version, "version"),
        ("header length", bad_hdr_len, "header length"),
        ("unknown kind", bad_kind, "unknown BTF kind"),
    ];
    for (what, bytes, needle) in cases {
        let err = KernelBtf::from_bytes(&bytes, "garbage.btf").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("garbage.btf") && text.contains(needle),
            "{what}: {text}"
        );
    }
}

/// An empty directory of this test process's own under the temporary directory.
fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pwru-btf-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn truncated_file_on_disk_is_a_clear_error() {
    let good = fixture().base.bytes();
    let dir = scratch_dir("test");
    let path = dir.join("cut.btf");
    std::fs::write(&path, &good[..good.len() - 20]).unwrap();
    let err = KernelBtf::open(&path, &dir, &Kmods::None).unwrap_err();
    assert!(matches!(err, BtfError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("cut.btf"));
    let full = dir.join("full.btf");
    std::fs::write(&full, &good).unwrap();
    let k = KernelBtf::open(&full, &dir, &Kmods::None).unwrap();
    assert_eq!(k.skb_functions().unwrap().len(), 4);
    let err = KernelBtf::open(&full, &dir, &Kmods::Named(vec!["nomod".into()])).unwrap_err();
    assert!(matches!(err, BtfError::NoModuleBtf { .. }), "{err}");
    let missing = KernelBtf::open(&dir.join("absent"), &dir, &Kmods::None).unwrap_err();
    assert!(matches!(missing, BtfError::Io { .. }), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn raw_btf_is_mapped_from_the_file_or_through_a_memfd_never_the_heap() {
    use btf_rs::Btf;
    use std::fs::File;
    use std::io::Read;
    let bytes = fixture().base.bytes();
    let dir = scratch_dir("map");
    let path = dir.join("vmlinux");
    std::fs::write(&path, &bytes).unwrap();
    let len = bytes.len() as u64;
    let scan = |btf: Btf| {
        KernelBtf::from_btf(btf, "mapped")
            .scan_skb_functions()
            .unwrap()
    };
    let cached = kernel().scan_skb_functions().unwrap();

    // A regular file maps as it is.
    let mut file = File::open(&path).unwrap();
    let mapped = super::kernel::map_raw(&path, &mut file, len).unwrap();
    assert_eq!(&mapped.bytes[..], &bytes[..]);
    assert_eq!(scan(mapped.btf), cached);
    // Where the file cannot be mapped (sysfs before 6.16), its reads fill a memfd.
    let mut file = File::open(&path).unwrap();
    let filled = super::kernel::memfd_btf(bytes.len(), |buf| file.read_exact(buf)).unwrap();
    assert_eq!(&filled.bytes[..], &bytes[..]);
    assert_eq!(scan(filled.btf), cached);
    // A file shorter than its metadata says is not mapped: the caller reads it whole.
    let mut file = File::open(&path).unwrap();
    assert!(super::kernel::map_raw(&path, &mut file, len + 16).is_none());
    // Opened from the path, the index comes from the same mapping.
    let k = KernelBtf::open(&path, &dir, &Kmods::None).unwrap();
    assert_eq!(k.scan_skb_functions().unwrap(), cached);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn in_memory_mmap_copy_matches_cached_backend() {
    let bytes = fixture().base.bytes();
    let btf = super::kernel::mmap_copy(&bytes).expect("memfd mapping works on Linux");
    let mapped = KernelBtf::from_btf(btf, "mapped");
    let cached = kernel();
    assert_eq!(
        mapped.scan_skb_functions().unwrap(),
        cached.scan_skb_functions().unwrap()
    );
    assert_eq!(
        mapped.skb_tracepoints().unwrap(),
        cached.skb_tracepoints().unwrap()
    );
    assert_eq!(
        mapped.member("sk_buff", "pkt_type").unwrap(),
        cached.member("sk_buff", "pkt_type").unwrap()
    );
}

#[test]
fn typedef_cycle_is_an_error() {
    let mut b = BtfBuilder::new();
    // ids: 1 = typedef a -> 2, 2 = typedef b -> 1
    b.typedef("loop_a", 2);
    b.typedef("loop_b", 1);
    b.structure("s", 4, &[M("x", 1, 0, 0)]);
    let k = KernelBtf::from_bytes(&b.bytes(), "t").unwrap();
    assert!(matches!(
        k.member("s", "x").unwrap_err(),
        BtfError::TypeChain { .. }
    ));
    assert!(matches!(
        k.member("loop_a", "x").unwrap_err(),
        BtfError::TypeChain { .. }
    ));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
    /// Corrupting bytes anywhere never panics or hangs: open, scans and
    /// lookups return values or errors.
    #[test]
    fn corrupted_blobs_never_panic(flips in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..8)) {
        let mut bytes = fixture().base.bytes();
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        // In memory (cached backend) and from a file (memory-mapped backend,
        // which parses types lazily, so garbage surfaces in the lookups).
        let path = std::env::temp_dir().join(format!("pwru-btf-fuzz-{}.btf", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let from_file = KernelBtf::open(&path, std::path::Path::new("/nonexistent"), &Kmods::None);
        std::fs::remove_file(&path).unwrap();
        for k in [KernelBtf::from_bytes(&bytes, "fuzz"), from_file].into_iter().flatten() {
            exercise(&k);
        }
    }
}

fn exercise(k: &KernelBtf) {
    let _ = k.scan_skb_functions();
    let _ = k.skb_tracepoints();
    let _ = k.member("sk_buff", "pkt_type");
    let _ = k.member("net", "ns.inum");
    let _ = k.enum_values("skb_drop_reason");
    let _ = k.has_func("dup");
    let _ = SkbLayout::resolve(k);
}

/// The running kernel's BTF through the type index and through btf-rs alone give the same
/// functions, tracepoints, name lookups and layout (skipped without /sys/kernel/btf/vmlinux).
#[test]
fn type_index_answers_as_btf_rs_does_on_the_running_kernel() {
    let Ok(bytes) = std::fs::read(super::SYS_VMLINUX_BTF) else {
        eprintln!("skipped: no {}", super::SYS_VMLINUX_BTF);
        return;
    };
    let indexed = KernelBtf::open_system(&Kmods::None).unwrap();
    let plain = KernelBtf::from_btf(super::kernel::mmap_copy(&bytes).unwrap(), indexed.origin());
    assert_eq!(
        indexed.scan_skb_functions().unwrap(),
        plain.scan_skb_functions().unwrap()
    );
    assert_eq!(
        indexed.skb_tracepoints().unwrap(),
        plain.skb_tracepoints().unwrap()
    );
    for name in [
        "sk_buff",
        "net_device",
        "skb_drop_reason",
        "kfree_skb_reason",
        "int",
        "nf_conn",
    ] {
        for src in indexed.sources() {
            assert_eq!(
                indexed.ids_by_name(src.btf, name).unwrap(),
                src.btf.resolve_ids_by_name(name).unwrap(),
                "{name}"
            );
        }
    }
    assert_eq!(
        indexed.enum_values("skb_drop_reason").unwrap(),
        plain.enum_values("skb_drop_reason").unwrap()
    );
    assert_eq!(
        SkbLayout::resolve(&indexed).unwrap(),
        SkbLayout::resolve(&plain).unwrap()
    );
    assert!(indexed.has_func("register_fprobe") == plain.has_func("register_fprobe"));
}
