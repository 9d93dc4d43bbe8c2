#!/usr/bin/env bash
# run-all.sh - builds every cargo-fuzz target and runs each for a bounded time; fails on
# the first crash (libFuzzer leaves the reproducer in fuzz/artifacts/TARGET/).
#
# Usage: fuzz/run-all.sh [SECONDS_PER_TARGET]   (default 25)
# Needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz --locked).
# FUZZ_FLAGS adds libFuzzer flags to every run, e.g. FUZZ_FLAGS='-fork=2'.
# The corpus grows in fuzz/corpus/TARGET (ignored by git); the committed seeds are
# read-only inputs: fuzz/seeds/compile_run/ and, built here, one file per filter of
# tests/data/pcap_filter_corpus.txt and the capture files of tests/data/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=${1:-25}

# fuzz/Cargo.lock must match fuzz/Cargo.toml (cargo fuzz itself would rewrite it).
cargo +nightly metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null
cargo +nightly fuzz build

generated=$root/fuzz/target/seeds
rm -rf "$generated"
mkdir -p "$generated/filters" "$generated/captures"
grep -v '^#' tests/data/pcap_filter_corpus.txt | grep . |
    split -l 1 -a 3 - "$generated/filters/line-"
cp tests/data/*.pcap "$generated/captures/"

# The seeds are short; -max_len lets inputs grow past them (long filters, packets with
# extension headers and payload).
dict=(-dict="$root/fuzz/pcap-filter.dict")
for target in $(cargo +nightly fuzz list); do
    case $target in
        parse | compile) seeds=("$generated/filters") flags=("${dict[@]}" -max_len=1024) ;;
        compile_run) seeds=("$root/fuzz/seeds/compile_run") flags=("${dict[@]}" -max_len=2048) ;;
        capture) seeds=("$generated/captures") flags=(-max_len=4096) ;;
        *) seeds=() flags=() ;;
    esac
    echo "fuzz: $target for ${seconds}s"
    mkdir -p "fuzz/corpus/$target"
    # shellcheck disable=SC2086 # FUZZ_FLAGS is a list of flags
    cargo +nightly fuzz run "$target" "$root/fuzz/corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -print_final_stats=1 "${flags[@]}" ${FUZZ_FLAGS:-}
done
