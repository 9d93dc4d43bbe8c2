#!/usr/bin/env bash
# fetch-kernels.sh - download and unpack the Debian cloud kernels that the
# pwru VM tests boot (tests/vm/run-in-vm.sh).
#
# Usage: fetch-kernels.sh [--update] [--force] [6.1|6.12|all|peer-pwru]...
#
#   6.1        bookworm linux-image-*-cloud-amd64: KPROBES=y, no FPROBE
#              (no BPF kprobe-multi: tracers use one kprobe per function)
#   6.12       trixie linux-image-*-cloud-amd64: KPROBES=y, FPROBE=y
#              (kprobe-multi works)
#   all        both kernels (the default)
#   peer-pwru  Debian's package of the original pwru, unpacked to
#              $CACHE/peer/pwru; only a comparison peer for bench/vm/vm-bench.sh
#   --update   refresh the private apt lists and re-resolve the newest package
#   --force    unpack again even if the kernel is already present
#
# Environment:
#   PWRU_VM_CACHE          cache directory (default ~/.cache/pwru-vm)
#   PWRU_VM_PKG_61         exact image package for 6.1 (e.g. linux-image-6.1.0-56-cloud-amd64)
#   PWRU_VM_PKG_612        exact image package for 6.12
#   PWRU_VM_DEBIAN_MIRROR  Debian archive URI; only needed when the host has no
#                          Debian apt sources to derive one from
#
# Packages come from `apt-get download` with a private apt configuration
# (sources, lists and cache under $CACHE/apt) whose archive URIs are derived
# from the host's own Debian sources: the host's apt state is not touched and
# no mirror host name is written in this file.
#
# Result per kernel series S (idempotent; a present kernel is reused offline):
#   $CACHE/kernels/S/{vmlinuz,config,kver,package}
#   $CACHE/kernels/S/lib/modules/<kver>/  modules decompressed to .ko + modules.dep

set -euo pipefail
export LC_ALL=C

readonly PROG=${0##*/}
readonly CACHE=${PWRU_VM_CACHE:-$HOME/.cache/pwru-vm}
readonly APT_DIR=$CACHE/apt
readonly DEB_DIR=$CACHE/debs
readonly KERNEL_DIR=$CACHE/kernels
readonly META_PKG=linux-image-cloud-amd64

die()  { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
info() { printf '%s: %s\n' "$PROG" "$*" >&2; }
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }

# Version of linux-image-cloud-amd64 that belongs to a series (backports
# "~bpo" versions do not match, so 6.12 is trixie's own kernel).
version_re() {
    case $1 in
        6.1)  echo '^6\.1\.[0-9]+-[0-9]+$' ;;
        6.12) echo '^6\.12\.[0-9]+-[0-9]+$' ;;
        *)    die "unknown kernel series '$1' (expected 6.1 or 6.12)" ;;
    esac
}

pinned_package() {
    case $1 in
        6.1)  echo "${PWRU_VM_PKG_61:-}" ;;
        6.12) echo "${PWRU_VM_PKG_612:-}" ;;
    esac
}

APT_OPTS=(
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$APT_DIR/sources"
    -o "Dir::Etc::Preferences=/dev/null"
    -o "Dir::Etc::PreferencesParts=/dev/null"
    -o "Dir::State::Lists=$APT_DIR/lists"
    -o "Dir::Cache=$APT_DIR/cache"
    -o "Debug::NoLocking=1"
    # Only Packages indices are needed, no AppStream/Contents metadata.
    -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false"
)
# As root, apt downloads as _apt, which cannot write into root's home.
if [[ $(id -u) -eq 0 ]]; then APT_OPTS+=(-o "APT::Sandbox::User=root"); fi

# Private deb822 sources for bookworm and trixie (+ -updates, -security),
# derived from the host's Debian sources.
write_sources() {
    local out=$APT_DIR/sources/pwru-vm.sources host822=/etc/apt/sources.list.d/debian.sources
    local uri keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    mkdir -p "$APT_DIR/sources"
    if [[ -r $host822 ]] && grep -q '^URIs:' "$host822"; then
        # Keep the host's stanzas (URIs, Signed-By, Components), rewrite
        # Types and Suites; the security archive gets the -security suites.
        sed -E \
            -e 's/^Types:.*/Types: deb/' \
            -e '/^Suites:/{/-security/{s/.*/Suites: bookworm-security trixie-security/;b};s/.*/Suites: bookworm bookworm-updates trixie trixie-updates/}' \
            "$host822" >"$out.tmp"
    else
        uri=${PWRU_VM_DEBIAN_MIRROR:-}
        if [[ -z $uri && -r /etc/apt/sources.list ]]; then
            uri=$(sed -nE 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+(bookworm|trixie)[[:space:]].*/\2/p' \
                      /etc/apt/sources.list | head -n1)
        fi
        [[ -n $uri ]] || die "cannot derive a Debian archive URI from the host's apt sources; set PWRU_VM_DEBIAN_MIRROR"
        [[ -r $keyring ]] || die "$keyring missing (apt-get install debian-archive-keyring)"
        printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates trixie trixie-updates\nComponents: main\nSigned-By: %s\n' \
            "$uri" "$keyring" >"$out.tmp"
    fi
    if cmp -s "$out.tmp" "$out" 2>/dev/null; then
        rm -f "$out.tmp"
    else
        mv "$out.tmp" "$out"
        rm -rf "$APT_DIR/lists"                 # sources changed: lists are stale
    fi
}

APT_READY=0
apt_prepare() {
    local update=$1
    (( APT_READY )) && return 0
    command -v apt-get >/dev/null || die "apt-get not found (a Debian/Ubuntu host is needed)"
    write_sources
    mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
    if (( update )) || [[ -z $(find "$APT_DIR/lists" -maxdepth 1 -name '*Packages*' -mtime -1 -print -quit) ]]; then
        info "updating the private apt lists in $APT_DIR/lists"
        apt-get "${APT_OPTS[@]}" -q update >&2 || die "apt-get update failed"
    fi
    APT_READY=1
}

# Binary package (linux-image-<abi>-cloud-amd64) of the newest kernel of a series.
resolve_package() {
    local series=$1 re ver pkg
    pkg=$(pinned_package "$series")
    if [[ -n $pkg ]]; then echo "$pkg"; return 0; fi
    re=$(version_re "$series")
    ver=$(apt-cache "${APT_OPTS[@]}" madison "$META_PKG" | awk -F'|' '{ gsub(/ /, "", $2); print $2 }' |
          grep -E "$re" | sort -V | tail -n1 || true)
    [[ -n $ver ]] || die "no $META_PKG version matching $re in the private sources"
    pkg=$(apt-cache "${APT_OPTS[@]}" depends "$META_PKG=$ver" |
          sed -nE 's/^[[:space:]]*Depends:[[:space:]]*(linux-image-[^[:space:]]+-cloud-amd64)$/\1/p' | head -n1)
    [[ -n $pkg ]] || die "cannot resolve the image package behind $META_PKG=$ver"
    echo "$pkg"
}

# Download package $1 into $DEB_DIR unless a .deb of it is there; print its path.
download_deb() {
    local pkg=$1 deb
    mkdir -p "$DEB_DIR"
    deb=$(find "$DEB_DIR" -maxdepth 1 -name "${pkg}_*_amd64.deb" -print | sort -V | tail -n1)
    if [[ -z $deb ]]; then
        info "downloading $pkg"
        (cd "$DEB_DIR" && apt-get "${APT_OPTS[@]}" -q download "$pkg" >&2) || die "apt-get download $pkg failed"
        deb=$(find "$DEB_DIR" -maxdepth 1 -name "${pkg}_*_amd64.deb" -print | sort -V | tail -n1)
        [[ -n $deb ]] || die "apt-get download $pkg left no .deb in $DEB_DIR"
    fi
    echo "$deb"
}

TMP_UNPACK=
cleanup() { if [[ -n $TMP_UNPACK ]]; then rm -rf "$TMP_UNPACK"; fi; }
trap cleanup EXIT

# Unpack kernel .deb $3 (package $2) into $KERNEL_DIR/$1, replacing it atomically.
unpack_kernel() {
    local series=$1 pkg=$2 deb=$3 dest=$KERNEL_DIR/$1 x moddir kver m f
    TMP_UNPACK=$(mktemp -d "$KERNEL_DIR/.$series.XXXXXX")
    x=$TMP_UNPACK/deb
    info "unpacking ${deb##*/}"
    dpkg-deb -x "$deb" "$x"
    # Modules are in lib/modules (bookworm) or usr/lib/modules (trixie).
    moddir=$(find "$x/lib/modules" "$x/usr/lib/modules" -mindepth 1 -maxdepth 1 -type d -print -quit 2>/dev/null || true)
    [[ -n $moddir ]] || die "no modules directory in $deb"
    kver=${moddir##*/}
    for f in vmlinuz config; do
        [[ -f $x/boot/$f-$kver ]] || die "$deb has no boot/$f-$kver"
        cp "$x/boot/$f-$kver" "$TMP_UNPACK/$f"
    done
    mkdir -p "$TMP_UNPACK/lib/modules"
    mv "$moddir" "$TMP_UNPACK/lib/modules/$kver"
    rm -rf "$x"

    # busybox insmod in the guest needs plain .ko files.
    m=$TMP_UNPACK/lib/modules/$kver
    find "$m" -name '*.ko.xz' -print0 | xargs -0 -r -n 64 -P "$(nproc)" xz -d -q
    find "$m" -name '*.ko.zst' -print0 | xargs -0 -r -n 64 -P "$(nproc)" zstd -d -q --rm
    find "$m" -name '*.ko.gz' -print0 | xargs -0 -r -n 64 -P "$(nproc)" gzip -d -q
    # The .deb has no modules.dep (Debian runs depmod at install time).
    # busybox depmod needs no distribution-specific module path.
    command -v busybox >/dev/null || die "busybox not found (apt-get install busybox-static)"
    busybox depmod -b "$TMP_UNPACK" "$kver"
    [[ -s $m/modules.dep ]] || die "depmod produced no modules.dep"

    echo "$kver" >"$TMP_UNPACK/kver"
    printf '%s %s\n' "$pkg" "${deb##*/}" >"$TMP_UNPACK/package"
    chmod 755 "$TMP_UNPACK"
    rm -rf "$dest"
    mv "$TMP_UNPACK" "$dest"
    TMP_UNPACK=
    info "kernel $series ready: $dest (uname -r: $kver)"
}

fetch_series() {
    local series=$1 update=$2 force=$3 dest=$KERNEL_DIR/$1 pkg deb
    version_re "$series" >/dev/null
    if [[ -f $dest/kver && $update -eq 0 && $force -eq 0 ]]; then
        info "kernel $series present: $(cut -d' ' -f1 "$dest/package")"
        return 0
    fi
    apt_prepare "$update"
    pkg=$(resolve_package "$series")
    if [[ -f $dest/package && $force -eq 0 && $(cut -d' ' -f1 "$dest/package") == "$pkg" ]]; then
        info "kernel $series up to date: $pkg"
        return 0
    fi
    deb=$(download_deb "$pkg")
    unpack_kernel "$series" "$pkg" "$deb"
}

# Debian's pwru package (the original tool), for side-by-side benchmarks only.
fetch_peer_pwru() {
    local dir=$CACHE/peer deb
    if [[ -x $dir/pwru ]]; then info "peer pwru present: $dir/pwru"; return 0; fi
    apt_prepare 0
    deb=$(download_deb pwru)
    rm -rf "$dir"
    mkdir -p "$dir"
    dpkg-deb -x "$deb" "$dir/x"
    ln -s x/usr/bin/pwru "$dir/pwru"
    info "peer pwru unpacked: $dir/pwru"
}

main() {
    local update=0 force=0 peer=0 series=() s tool
    while (( $# )); do
        case $1 in
            --update) update=1 ;;
            --force) force=1 ;;
            -h|--help) usage; exit 0 ;;
            all) series+=(6.1 6.12) ;;
            6.1|6.12) series+=("$1") ;;
            peer-pwru) peer=1 ;;
            *) usage >&2; die "unknown argument '$1'" ;;
        esac
        shift
    done
    if (( ${#series[@]} == 0 && peer == 0 )); then series=(6.1 6.12); fi
    for tool in dpkg-deb xz; do
        command -v "$tool" >/dev/null || die "$tool not found"
    done
    mkdir -p "$KERNEL_DIR"
    for s in "${series[@]}"; do fetch_series "$s" "$update" "$force"; done
    if (( peer )); then fetch_peer_pwru; fi
}

main "$@"
