#!/usr/bin/env bash
# fresh-clone-check.sh - README.md's install command on a fresh clone: clones this
# checkout's HEAD into a temporary directory, runs the README's install command there into
# a temporary root (`cargo install --locked --path . --root TMP`), then runs the installed
# pwru with --version and --help. It shares this checkout's target directory
# (CARGO_TARGET_DIR), so only pwru itself is compiled again. Run by .ci/run.
#
# Usage: scripts/fresh-clone-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$PWD

# The commands this checks, as README.md writes them.
readonly INSTALL='cargo install --locked --path .'
for command in "$INSTALL" 'scripts/test.sh'; do
    if ! grep -qF -- "$command" README.md; then
        echo "FAIL fresh-clone: README.md no longer shows '$command'; update this check" >&2
        exit 1
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pwru-fresh-clone.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
git clone --quiet "$checkout" "$tmp/pwru"
started=$SECONDS
# shellcheck disable=SC2086  # INSTALL is the README's command, several words
(cd "$tmp/pwru" && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$checkout/target} $INSTALL --root "$tmp/root" --quiet)
pwru=$tmp/root/bin/pwru

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
if [[ $("$pwru" --version) != "pwru $version" ]]; then
    echo "FAIL fresh-clone: '$pwru --version' printed '$("$pwru" --version)', not 'pwru $version'" >&2
    exit 1
fi
if ! "$pwru" --help | grep -q '^Usage: pwru '; then
    echo "FAIL fresh-clone: '$pwru --help' shows no usage line" >&2
    exit 1
fi
echo "PASS fresh-clone: $INSTALL in a clone of $(git rev-parse --short HEAD), then --version and --help ($((SECONDS - started)) s)"
