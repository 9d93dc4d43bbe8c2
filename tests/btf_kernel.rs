//! Kernel BTF facts checked against this machine's `/sys/kernel/btf/vmlinux`
//! (skipped with a reason when the kernel exposes no BTF).

use std::path::Path;

use pwru::btf::{Bitfield, Field, KernelBtf, Kmods, SkbLayout, SYS_VMLINUX_BTF};

fn system_btf() -> Option<KernelBtf> {
    if !Path::new(SYS_VMLINUX_BTF).exists() {
        eprintln!("skipped: {SYS_VMLINUX_BTF} is absent (kernel without CONFIG_DEBUG_INFO_BTF)");
        return None;
    }
    Some(KernelBtf::open_system(&Kmods::None).expect("system BTF opens"))
}

fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn skb_functions_on_this_kernel() {
    let Some(k) = system_btf() else { return };
    let scan = k.scan_skb_functions().unwrap();
    let funcs = &scan.probeable;
    assert!(funcs.len() > 1000, "only {} skb functions", funcs.len());
    assert!(
        funcs.windows(2).all(|w| w[0].name < w[1].name),
        "sorted and unique"
    );
    assert!(funcs.iter().all(|f| (1..=5).contains(&f.skb_arg)));
    assert!(scan.beyond_max_arg.iter().all(|f| f.skb_arg > 5));
    let find = |name: &str| funcs.iter().find(|f| f.name == name);
    let consume = find("consume_skb").expect("consume_skb");
    assert_eq!((consume.skb_arg, consume.drop_reason_arg), (1, None));
    let reason_funcs: Vec<_> = ["kfree_skb_reason", "sk_skb_reason_drop"]
        .into_iter()
        .filter_map(find)
        .collect();
    assert!(
        !reason_funcs.is_empty(),
        "neither kfree_skb_reason nor sk_skb_reason_drop"
    );
    for f in reason_funcs {
        match f.name.as_str() {
            "kfree_skb_reason" => assert_eq!((f.skb_arg, f.drop_reason_arg), (1, Some(2))),
            _ => assert_eq!((f.skb_arg, f.drop_reason_arg), (2, Some(3))),
        }
    }
    assert!(k.has_func("sk_skb_reason_drop") || k.has_func("kfree_skb_reason"));
    assert!(!k.has_func("sk_buff"));
}

#[test]
fn kfree_skb_tracepoint() {
    let Some(k) = system_btf() else { return };
    let tps = k.skb_tracepoints().unwrap();
    let tp = tps
        .iter()
        .find(|t| t.name == "kfree_skb")
        .expect("kfree_skb tracepoint");
    assert_eq!(tp.skb_arg, 0);
    assert!(tp.drop_reason_arg.is_some(), "{tp:?}");
    assert!(tp.nargs >= 3, "{tp:?}");
    assert!(tps.iter().any(|t| t.name == "netif_receive_skb"));
    assert!(tps.iter().all(|t| t.skb_arg < t.nargs));
}

#[test]
fn drop_reasons() {
    let Some(k) = system_btf() else { return };
    let reasons = k.enum_values("skb_drop_reason").unwrap();
    assert_eq!(
        reasons.get(&0).map(String::as_str),
        Some("SKB_NOT_DROPPED_YET")
    );
    assert!(reasons
        .values()
        .any(|n| n == "SKB_DROP_REASON_NETFILTER_DROP"));
    assert!(reasons.len() > 50, "{}", reasons.len());
}

#[test]
fn skb_layout_resolves_with_kernel_named_errors() {
    let Some(k) = system_btf() else { return };
    let layout = SkbLayout::resolve(&k).unwrap();
    let skb = &layout.sk_buff;
    assert_eq!(skb.mac_header.size_bytes, 2);
    assert_eq!(skb.network_header.size_bytes, 2);
    assert_eq!(skb.head.size_bytes, 8);
    assert_eq!(skb.len.size_bytes, 4);
    assert_eq!(skb.cb.size_bytes, 48);
    assert_eq!(skb.pkt_type.bitfield.map(|b| b.bit_size), Some(3));
    assert_eq!(layout.net_device.name.size_bytes, 16);
    assert!(layout.netns.is_some() && layout.dst_entry.is_some());
    let err = k
        .member("sk_buff", "no_such_field")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&release()) && err.contains("no_such_field"),
        "{err}"
    );
}

/// Offsets recorded for 6.18 in the project notes (checked with bpftool).
#[test]
fn known_offsets_on_6_18() {
    let Some(k) = system_btf() else { return };
    if !release().starts_with("6.18.") {
        eprintln!(
            "skipped: offsets were recorded on 6.18, this is {}",
            release()
        );
        return;
    }
    let byte = |st: &str, path: &str| {
        let f = k.member(st, path).unwrap();
        assert!(f.bitfield.is_none(), "{st}.{path}");
        f.offset_bytes()
    };
    let table = [
        ("sk_buff", "head", 192),
        ("sk_buff", "data", 200),
        ("sk_buff", "len", 112),
        ("sk_buff", "mark", 164),
        ("sk_buff", "dev", 16),
        ("sk_buff", "protocol", 176),
        ("sk_buff", "mac_header", 182),
        ("sk_buff", "network_header", 180),
        ("sk_buff", "transport_header", 178),
        ("sk_buff", "cb", 40),
        ("sk_buff", "skb_iif", 144),
        ("sk_buff", "hash", 148),
        ("sk_buff", "vlan_tci", 154),
        ("net_device", "ifindex", 224),
        ("net_device", "name", 280),
        ("net_device", "mtu", 56),
        ("net_device", "nd_net", 264),
        ("possible_net_t", "net", 0),
        ("net", "ns", 152),
        ("ns_common", "inum", 24),
    ];
    for (st, path, want) in table {
        assert_eq!(byte(st, path), want, "{st}.{path}");
    }
    assert_eq!(k.member("net", "ns.inum").unwrap().offset_bytes(), 152 + 24);
    assert_eq!(
        k.member("sk_buff", "pkt_type").unwrap(),
        Field {
            offset_bits: 128 * 8,
            size_bytes: 1,
            bitfield: Some(Bitfield {
                bit_offset: 0,
                bit_size: 3
            }),
        }
    );
}

#[test]
fn all_modules_mode_loads_every_module_entry() {
    let Some(_) = system_btf() else { return };
    let k = KernelBtf::open_system(&Kmods::All).unwrap();
    let expected = std::fs::read_dir("/sys/kernel/btf")
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != "vmlinux")
        .count();
    assert_eq!(k.module_names().count(), expected);
    if expected == 0 {
        eprintln!("note: this kernel has no module BTF; split BTF is covered by unit tests");
    }
}
