#!/usr/bin/env bash
# test.sh - the test command of README.md, for a fresh machine: installs the Debian
# packages the tests need when run as root and one is missing, then runs every test suite,
# the end-to-end ones included:
#
#     PWRU_E2E=1 cargo test --release --all-features -- --show-output
#
# Usage: scripts/test.sh [CARGO-TEST-ARGS...]   (e.g. scripts/test.sh --test cli)
#
# Without root, a missing package is named instead: libpcap-dev stops the run (the tests
# do not link without it), the others only make the suites that need them skip.
set -euo pipefail
cd "$(dirname "$0")/.."

# libpcap-dev: the oracle our filter compiler is compared with (feature `oracle`);
# tcpdump nftables iproute2 iptables netcat-openbsd bpftool: the e2e scenarios;
# qemu-system-x86 busybox-static cpio xz-utils: the VM suites (Debian kernels in QEMU).
readonly PACKAGES=(libpcap-dev tcpdump tshark nftables iproute2 iptables netcat-openbsd bpftool
    qemu-system-x86 busybox-static cpio xz-utils)

missing=()
if command -v dpkg-query >/dev/null; then
    for package in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed'; then
            missing+=("$package")
        fi
    done
else
    echo "test.sh: not a Debian system: install libpcap's development files and" \
        "${PACKAGES[*]:1} (or your system's equivalents) yourself" >&2
fi
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
        echo "test.sh: installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "test.sh: missing Debian packages: ${missing[*]} (as root: apt-get install ${missing[*]})" >&2
        if [[ " ${missing[*]} " == *" libpcap-dev "* ]]; then
            echo "test.sh: the tests cannot link without libpcap-dev; run this script as root or install it" >&2
            exit 1
        fi
    fi
fi

export PWRU_E2E=1
exec cargo test --release --all-features "$@" -- --show-output
