//! Oracle test: our compiled eBPF (run in rbpf, both back ends) against libpcap's
//! `pcap_compile` + `pcap_offline_filter`, on generated expressions and packets.
#![cfg(feature = "oracle")]

use proptest::prelude::*;

mod pcapc_gen;
use pcapc_gen::{expr, packet, Rng};
use proptest::test_runner::{Config, TestRunner};
use pwru::pcapc::compile::{check, CompileError, FilterEnv, LinkType, ProgramKind};

const PACKETS: usize = 40;
use pwru::pcapc::run::UserspaceFilter;

fn libpcap(link: LinkType) -> pcap::Capture<pcap::Dead> {
    let lt = match link {
        LinkType::Ethernet => pcap::Linktype::ETHERNET,
        LinkType::RawIp => pcap::Linktype(12),
        LinkType::LinuxSll => pcap::Linktype(113),
        LinkType::LinuxSll2 => pcap::Linktype(276),
    };
    pcap::Capture::dead(lt).unwrap()
}

#[test]
fn ours_agree_with_libpcap() {
    let links = [LinkType::Ethernet, LinkType::RawIp];
    let caps: Vec<_> = links.iter().map(|l| libpcap(*l)).collect();
    let env = FilterEnv::default();
    let cases = std::cell::Cell::new(0u64);
    let compiled = std::cell::Cell::new(0u64);
    let opt_dependent = std::cell::Cell::new(0u64);
    let stricter = std::cell::Cell::new(0u64);
    let accept_mismatch = std::cell::RefCell::new(Vec::<String>::new());
    let config = Config {
        cases: 2500,
        failure_persistence: None,
        ..Config::default()
    };
    // CI explores a fixed, reproducible sample; PCAPC_ORACLE_RANDOM=1 explores new ones.
    let mut runner = if std::env::var_os("PCAPC_ORACLE_RANDOM").is_some() {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(
            config,
            proptest::test_runner::TestRng::deterministic_rng(
                proptest::test_runner::RngAlgorithm::ChaCha,
            ),
        )
    };
    let res = runner.run(&(expr(), any::<u64>()), |(e, seed)| {
        let text = e.to_string();
        for (li, link) in links.iter().enumerate() {
            let theirs = caps[li].compile(&text, true);
            let ours = check(&e, *link, &env);
            match (&theirs, &ours) {
                (Ok(bpf), Err(CompileError::RejectsAll)) => {
                    // We prove more filters unsatisfiable than libpcap's optimizer
                    // does; its program must then match nothing either.
                    let mut r = Rng(seed | 1);
                    for _ in 0..PACKETS {
                        let pkt = packet(&mut r, *link);
                        prop_assert!(
                            !bpf.filter(&pkt),
                            "{:?} `{}` claimed unsatisfiable, libpcap matches {:02x?}",
                            link,
                            text,
                            pkt
                        );
                    }
                    stricter.set(stricter.get() + 1);
                }
                (Ok(_), Err(_)) | (Err(_), Ok(())) => {
                    accept_mismatch.borrow_mut().push(format!(
                        "{link:?} `{text}`: libpcap {:?} / ours {:?}",
                        theirs.as_ref().err(),
                        ours.as_ref().err()
                    ));
                }
                _ => {}
            }
            let (Ok(bpf), Ok(())) = (theirs, ours) else {
                continue;
            };
            let unopt = caps[li].compile(&text, false).unwrap();
            compiled.set(compiled.get() + 1);
            let direct = UserspaceFilter::new(&e, *link, ProgramKind::UserDirect, &env).unwrap();
            let kmem =
                UserspaceFilter::new(&e, *link, ProgramKind::UserKernelMemory, &env).unwrap();
            let mut r = Rng(seed | 1);
            for _ in 0..PACKETS {
                let pkt = packet(&mut r, *link);
                let want = bpf.filter(&pkt);
                let got = direct.matches(&pkt).unwrap();
                let got_k = kmem.matches(&pkt).unwrap();
                cases.set(cases.get() + 1);
                prop_assert_eq!(
                    got,
                    got_k,
                    "{:?} `{}` back ends differ on {:02x?}",
                    link,
                    text,
                    pkt
                );
                if got != want {
                    // libpcap's optimizer drops some loads whose outcome it proves
                    // irrelevant, so on short packets its optimized and unoptimized
                    // programs can differ; there we must equal one of libpcap's answers.
                    let want_unopt = unopt.filter(&pkt);
                    prop_assert!(
                        want_unopt != want && got == want_unopt,
                        "{:?} `{}`: ours {} libpcap {} (unoptimized {}) on {:02x?}",
                        link,
                        text,
                        got,
                        want,
                        want_unopt,
                        pkt
                    );
                    opt_dependent.set(opt_dependent.get() + 1);
                }
            }
        }
        Ok(())
    });
    let (cases, compiled, accept_mismatch) =
        (cases.get(), compiled.get(), accept_mismatch.into_inner());
    eprintln!(
        "oracle: {cases} (expr, packet) cases, {compiled} compiled (expr, link) pairs, {} equal to libpcap's unoptimized verdict only, {} proven unsatisfiable by us only, {} acceptance differences",
        opt_dependent.get(),
        stricter.get(),
        accept_mismatch.len()
    );
    for m in accept_mismatch.iter().take(20) {
        eprintln!("  acceptance: {m}");
    }
    if let Err(e) = res {
        panic!("{e}");
    }
    assert!(
        accept_mismatch.is_empty(),
        "acceptance differs from libpcap"
    );
    assert!(cases >= 100_000, "only {cases} cases");
}
