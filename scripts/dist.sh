#!/usr/bin/env bash
# dist.sh - builds the release (--locked) as a fully static x86-64 binary and writes
# the three release files into dist/ (emptied first):
#
#   pwru-VERSION-x86_64-linux.tar.gz         pwru-VERSION-x86_64-linux/{pwru, LICENSE,
#                                            README.md, pwru.8, completions/{pwru.bash,
#                                            _pwru, pwru.fish}}
#   pwru-VERSION-x86_64-linux.tar.gz.sha256  its checksum, in sha256sum format
#   pwru_VERSION_amd64.deb                   /usr/bin/pwru, the man page, the completions
#
# Usage: scripts/dist.sh            (no arguments)
#
# The binary is built with -C target-feature=+crt-static for x86_64-unknown-linux-gnu
# (a static-pie binary: glibc linked in, no run-time dependency at all). Because the
# target is named, it lives in TARGET_DIR/x86_64-unknown-linux-gnu/release and does not
# invalidate the ordinary (test) build in TARGET_DIR/release; CARGO_TARGET_DIR is
# honoured. The man page and the completions are generated from the clap definition by
# examples/man_and_completions.rs.
#
# Reproducible: SOURCE_DATE_EPOCH (default: the time of the last git commit) sets every
# mtime and the man page date; archive entries are sorted, owned by root (0:0) with
# normalised modes, gzip stores no name or time, build paths are remapped in the binary.
# Building twice from the same tree gives byte-identical files.
#
# Environment: SOURCE_DATE_EPOCH, CARGO_TARGET_DIR, RUSTFLAGS (added to ours),
# PWRU_DEB_MAINTAINER (the .deb's Maintainer field).

set -euo pipefail

readonly TARGET=x86_64-unknown-linux-gnu
readonly DEB_ARCH=amd64

die() { echo "dist.sh: error: $*" >&2; exit 1; }

[[ $# -eq 0 ]] || { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
cd "$ROOT"

for tool in cargo tar gzip sha256sum dpkg-deb file; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install dpkg file)"
done
[[ -f LICENSE ]] || die "LICENSE is missing"

if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
    SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null) ||
        die "not a git checkout: set SOURCE_DATE_EPOCH (seconds since 1970)"
fi
[[ $SOURCE_DATE_EPOCH =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH is not a number of seconds"
export SOURCE_DATE_EPOCH
man_date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%F)

pkgid=$(cargo pkgid --quiet)               # path+file:///...#pwru@0.1.0 (or #0.1.0)
version=${pkgid##*[#@]}
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || die "cannot read the version from cargo pkgid: $pkgid"
summary=$(sed -n 's/^description = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[[ -n $summary ]] || die "Cargo.toml has no description"
target_dir=$(cargo metadata --format-version 1 --no-deps --quiet |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[[ -n $target_dir ]] || die "cannot read the target directory from cargo metadata"

# --- build -----------------------------------------------------------------------------
# Only artifacts of the named target get these flags (not build scripts, proc macros).
cargo_home=${CARGO_HOME:-$HOME/.cargo}
rustflags=()
read -r -a rustflags <<<"${RUSTFLAGS:-}"
rustflags+=(-C target-feature=+crt-static
            "--remap-path-prefix=$ROOT=/build/pwru"
            "--remap-path-prefix=$cargo_home=/build/cargo")
CARGO_ENCODED_RUSTFLAGS=$(IFS=$'\x1f'; echo "${rustflags[*]}")
export CARGO_ENCODED_RUSTFLAGS
unset RUSTFLAGS

echo "dist.sh: building pwru $version for $TARGET (static) in $target_dir" >&2
cargo build --release --locked --target "$TARGET" --bin pwru
# A second invocation: the example's dev-dependencies must not change the features the
# shipped binary is built with.
cargo build --release --locked --target "$TARGET" --example man_and_completions
out=$target_dir/$TARGET/release
binary=$out/pwru

file_says=$(file -b "$binary")
case $file_says in
    *"statically linked"*|*"static-pie linked"*) ;;
    *) die "$binary is not statically linked: $file_says" ;;
esac

# --- stage -----------------------------------------------------------------------------
stage=$(mktemp -d "${TMPDIR:-/tmp}/pwru-dist.XXXXXX")
trap 'rm -rf "$stage"' EXIT
umask 022

name=pwru-$version-x86_64-linux
tree=$stage/$name
mkdir -p "$tree"
"$out/examples/man_and_completions" "$tree" --date "$man_date"
install -m 0755 "$binary" "$tree/pwru"
install -m 0644 LICENSE README.md "$tree/"

# Every staged file gets the same mtime; archives record no owner but root.
stamp() { find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +; }

# --- tarball ---------------------------------------------------------------------------
rm -rf dist
mkdir dist
tarball=$name.tar.gz
stamp "$tree"
tar -C "$stage" --sort=name --format=gnu --owner=0 --group=0 --numeric-owner \
    --mode='u+rwX,go+rX,go-w' --mtime="@$SOURCE_DATE_EPOCH" -cf - "$name" |
    gzip -9 -n >"dist/$tarball"
(cd dist && sha256sum "$tarball" >"$tarball.sha256")

# --- .deb ------------------------------------------------------------------------------
deb=$stage/deb
install -D -m 0755 "$binary" "$deb/usr/bin/pwru"
install -D -m 0644 "$tree/pwru.8" "$deb/usr/share/man/man8/pwru.8"
gzip -9 -n "$deb/usr/share/man/man8/pwru.8"
install -D -m 0644 "$tree/completions/pwru.bash" "$deb/usr/share/bash-completion/completions/pwru"
install -D -m 0644 "$tree/completions/_pwru" "$deb/usr/share/zsh/vendor-completions/_pwru"
install -D -m 0644 "$tree/completions/pwru.fish" "$deb/usr/share/fish/vendor_completions.d/pwru.fish"
install -d -m 0755 "$deb/usr/share/doc/pwru"
cat >"$deb/usr/share/doc/pwru/copyright" <<'EOF'
pwru-rs, a Rust rewrite of cilium/pwru.

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0; it is also the file LICENSE of the source.
EOF
chmod 0644 "$deb/usr/share/doc/pwru/copyright"
# Installed-Size in KiB from file sizes (directory sizes differ between filesystems).
installed_kib=$(find "$deb/usr" -type f -printf '%s\n' | awk '{ k += int(($1 + 1023) / 1024) } END { print k }')
install -d -m 0755 "$deb/DEBIAN"
cat >"$deb/DEBIAN/control" <<EOF
Package: pwru
Version: $version
Architecture: $DEB_ARCH
Maintainer: ${PWRU_DEB_MAINTAINER:-pwru-rs developers <pwru-rs@users.noreply.github.com>}
Installed-Size: $installed_kib
Section: net
Priority: optional
Description: $summary
 pwru shows every Linux kernel function a packet (struct sk_buff) passes
 through, filtered with tcpdump's pcap-filter syntax, and says where and why
 the kernel dropped it. The binary is static: it needs kernel BTF and root,
 and no library, compiler or libpcap.
EOF
chmod 0644 "$deb/DEBIAN/control"
stamp "$deb"
debfile=pwru_${version}_$DEB_ARCH.deb
dpkg-deb --root-owner-group -Zxz -z9 --threads-max=1 --build "$deb" "dist/$debfile" >/dev/null

echo "dist.sh: wrote (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH):" >&2
(cd dist && sha256sum "$tarball" "$tarball.sha256" "$debfile") >&2
echo "dist.sh: binary: $file_says" >&2
