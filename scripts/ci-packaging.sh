#!/usr/bin/env bash
# ci-packaging.sh - CI of the release packaging: the static tarball and .deb written by
# scripts/dist.sh, the OCI image of Containerfile run against an nftables drop on this
# host, and the Kubernetes manifests and kubectl plugin in deploy/.
#
# Usage: scripts/ci-packaging.sh [STEP...]    (default: every step, in this order)
#
#   tools       as root: the Debian packages below (apt-get only when one is missing)
#               and kubernetes-validate (PyPI) in a venv in the cargo target directory
#   lint        shellcheck on every shell script of the packaging
#   manifests   deploy/kubernetes/*.yaml and the plugin's --dry-run output (one node,
#               --all-nodes with a stub kubectl) pass kubernetes-validate --strict;
#               deploy/kubernetes/{namespace,pod}.yaml equal the plugin's output
#   dist        scripts/dist.sh: the three files, a static binary, the checksum, the
#               tarball's entries and owners; packaging again gives identical bytes
#   deb         dpkg-deb -x the .deb: `pwru --version` runs from it, man page and
#               completions are where Debian looks for them
#   container   as root: podman builds Containerfile and runs the image privileged with
#               host PID and network; it must trace a TCP packet dropped by nftables in
#               a test namespace (SKB_DROP_REASON_NETFILTER_DROP), exit 0 on SIGTERM
#               and leave no BPF object behind. The namespaces, rules (inside them),
#               container and image are removed on exit, also on failure.
#
# Prints "PASS/FAIL/SKIP step" lines and the time of each step; exit status 0 when no
# step failed. The network scenario (veth pair between two namespaces, nft rule,
# connection attempt, trace matching) is tests/e2e/scenarios.sh's, sourced.

# shellcheck disable=SC2317  # (whole file) the step_* functions are called as "step_$s"
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
cd "$ROOT"

readonly APT_PACKAGES=(podman runc shellcheck python3-venv nftables iproute2 busybox-static bpftool
                       file binutils dpkg tar gzip)
readonly SHELL_SCRIPTS=(scripts/dist.sh scripts/ci-packaging.sh deploy/kubectl-pwru)
readonly ALL_STEPS=(tools lint manifests dist deb container)

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }

steps=("$@")
if (( ${#steps[@]} == 0 )); then steps=("${ALL_STEPS[@]}"); fi
for s in "${steps[@]}"; do
    case " ${ALL_STEPS[*]} " in
        *" $s "*) ;;
        *) usage >&2; echo "ci-packaging.sh: unknown step '$s'" >&2; exit 2 ;;
    esac
done

is_root() { [[ $(id -u) -eq 0 ]]; }
target_dir=$(cargo metadata --format-version 1 --no-deps --quiet |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
venv=$target_dir/ci-packaging-venv
pkgid=$(cargo pkgid --quiet)
version=${pkgid##*[#@]}
tarball=dist/pwru-$version-x86_64-linux.tar.gz
debfile=dist/pwru_${version}_amd64.deb

work=$(mktemp -d "${TMPDIR:-/tmp}/pwru-ci-packaging.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# Each step runs in a subshell with -e in force; what it sets up it undoes through
# cleanups (run last-first when the step ends, passed or not).
cleanups=()
run_cleanups() {
    local i
    for (( i = ${#cleanups[@]} - 1; i >= 0; i-- )); do eval "${cleanups[i]}" || true; done
}

fail() { echo "error: $*" >&2; return 1; }

# --- steps -------------------------------------------------------------------------------
step_tools() {
    if ! is_root; then
        echo "not root: using the tools installed (${APT_PACKAGES[*]})"
    else
        local missing=() p
        for p in "${APT_PACKAGES[@]}"; do
            dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
                missing+=("$p")
        done
        if (( ${#missing[@]} > 0 )); then
            echo "apt-get install ${missing[*]}"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq
            apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        fi
    fi
    if [[ ! -x $venv/bin/kubernetes-validate ]]; then
        echo "kubernetes-validate into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check 'kubernetes-validate>=1.37'
    fi
    "$venv/bin/kubernetes-validate" --version
}

step_lint() {
    shellcheck --version | sed -n 's/^version: /shellcheck /p'
    shellcheck -x "${SHELL_SCRIPTS[@]}"
}

step_manifests() {
    local validate=("$venv/bin/kubernetes-validate" --strict --quiet)
    "${validate[@]}" deploy/kubernetes/*.yaml

    # One node, with arguments that need quoting in YAML.
    deploy/kubectl-pwru --dry-run --node node-1 -- --output-tuple \
        'tcp and dst port 8080' 'skb->len > 100' 'a "quoted" \ word' >"$work/one-node.yaml"
    "${validate[@]}" "$work/one-node.yaml"
    grep -qF -- '- "a \"quoted\" \\ word"' "$work/one-node.yaml" ||
        fail "the plugin did not quote an argument as YAML"

    # --all-nodes asks kubectl for the nodes: a stub answers for two.
    mkdir -p "$work/stub"
    cat >"$work/stub/kubectl" <<'EOF'
#!/bin/sh
case "$*" in
    "get nodes -l kubernetes.io/os=linux,kubernetes.io/arch=amd64 -o jsonpath="*)
        printf 'worker-1\nworker-2.example\n' ;;
    *) echo "stub kubectl: unexpected call: $*" >&2; exit 1 ;;
esac
EOF
    chmod +x "$work/stub/kubectl"
    PATH=$work/stub:$PATH deploy/kubectl-pwru --dry-run --all-nodes --session ci -- icmp \
        >"$work/all-nodes.yaml"
    "${validate[@]}" "$work/all-nodes.yaml"
    local pods
    pods=$(grep -c '^kind: Pod$' "$work/all-nodes.yaml")
    [[ $pods == 2 ]] || fail "--all-nodes with two nodes gave $pods pods"
    grep -q '^  nodeName: worker-2.example$' "$work/all-nodes.yaml" ||
        fail "--all-nodes did not pin a pod to worker-2.example"

    # The committed one-shot pod is the plugin's output (top-level comments aside).
    deploy/kubectl-pwru --dry-run --session oneshot --node node-1 -- \
        --output-tuple 'tcp and dst port 8080' >"$work/oneshot.yaml"
    cat deploy/kubernetes/namespace.yaml deploy/kubernetes/pod.yaml | grep -v '^#' |
        diff -u "$work/oneshot.yaml" - ||
        fail "deploy/kubernetes/{namespace,pod}.yaml differ from the plugin's --dry-run output"

    # Bad input is refused with a message, not a manifest.
    if deploy/kubectl-pwru --dry-run --node 'Bad_Node' -- icmp >/dev/null 2>"$work/err"; then
        fail "the plugin accepted the node name Bad_Node"
    fi
    grep -q 'not a Kubernetes node name' "$work/err" || fail "unclear error: $(cat "$work/err")"
}

step_dist() {
    scripts/dist.sh
    local f
    for f in "$tarball" "$tarball.sha256" "$debfile"; do
        [[ -s $f ]] || fail "scripts/dist.sh did not write $f"
    done
    (cd dist && sha256sum --check --strict "${tarball#dist/}.sha256")

    tar -tzf "$tarball" >"$work/entries"
    local top=pwru-$version-x86_64-linux
    printf '%s\n' "$top/" "$top/LICENSE" "$top/README.md" "$top/completions/" \
        "$top/completions/_pwru" "$top/completions/pwru.bash" "$top/completions/pwru.fish" \
        "$top/pwru" "$top/pwru.8" | diff -u - "$work/entries" ||
        fail "unexpected tarball entries (or order)"
    if tar --numeric-owner -tvzf "$tarball" | awk '$2 != "0/0"' | grep .; then
        fail "tarball entries not owned by 0/0"
    fi

    mkdir -p "$work/tar"
    tar -xzf "$tarball" -C "$work/tar"
    local bin=$work/tar/$top/pwru says
    says=$(file -b "$bin")
    echo "file: $says"
    # file 5.44 says "static-pie linked" for a static PIE (ET_DYN without an interpreter);
    # either way: no program interpreter and no shared library needed.
    [[ $says == *"statically linked"* || $says == *"static-pie linked"* ]] ||
        fail "file does not call the binary statically linked"
    if readelf -lW "$bin" | grep -q 'INTERP'; then fail "the binary has a program interpreter"; fi
    if readelf -dW "$bin" | grep -q '(NEEDED)'; then fail "the binary needs shared libraries"; fi
    [[ $("$bin" --version) == "pwru $version" ]] || fail "pwru --version from the tarball: $("$bin" --version)"
    grep -q '^\.TH pwru 8 ' "$work/tar/$top/pwru.8" || fail "pwru.8 has no .TH pwru 8 title"
    grep -q 'output\\-json' "$work/tar/$top/pwru.8" || fail "pwru.8 does not document --output-json"
    bash -n "$work/tar/$top/completions/pwru.bash"

    # README.md's install commands name the files of this version.
    local named
    for named in "${tarball#dist/}" "$debfile"; do
        grep -qF "$named" README.md || fail "README.md's install commands do not name $named"
    done

    # Reproducible: packaging the same build again gives the same bytes.
    sha256sum "$tarball" "$debfile" >"$work/first"
    scripts/dist.sh 2>/dev/null
    sha256sum --check --quiet "$work/first" || fail "a second scripts/dist.sh run wrote different files"
}

step_deb() {
    [[ -s $debfile ]] || fail "$debfile missing: run the dist step first"
    dpkg-deb --field "$debfile" Package Version Architecture
    local root=$work/deb
    dpkg-deb -x "$debfile" "$root"
    local out
    out=$("$root/usr/bin/pwru" --version)
    echo "unpacked /usr/bin/pwru --version: $out"
    [[ $out == "pwru $version" ]] || fail "expected 'pwru $version'"
    local f
    for f in usr/share/man/man8/pwru.8.gz usr/share/bash-completion/completions/pwru \
             usr/share/zsh/vendor-completions/_pwru usr/share/fish/vendor_completions.d/pwru.fish \
             usr/share/doc/pwru/copyright; do
        [[ -s $root/$f ]] || fail "the .deb has no /$f"
    done
    zcat "$root/usr/share/man/man8/pwru.8.gz" | grep -q '^\.TH pwru 8 ' || fail "bad man page"
    if dpkg-deb --contents "$debfile" | awk '$2 != "root/root"' | grep .; then
        fail ".deb entries not owned by root/root"
    fi
}

step_container() {
    is_root || { echo "SKIP container: needs root"; return 77; }
    [[ -s $tarball ]] || fail "$tarball missing: run the dist step first"
    local podman=(podman --runtime runc)
    local image=localhost/pwru-ci:$$ ctr=pwru-ci-$$

    "${podman[@]}" build --quiet --layers=false -t "$image" -f Containerfile . >/dev/null
    cleanups+=("${podman[*]} rmi -f $image >/dev/null 2>&1")
    [[ $("${podman[@]}" run --rm --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$image" --version) == "pwru $version" ]] ||
        fail "pwru --version in the image"

    # The scenario of the host e2e suite: ns1 -> ns2 over veth, an nft rule in ns1's
    # output hook dropping TCP to 10.0.0.2:8080, one busybox nc connection attempt.
    # Its functions are plain sh, written for a shell without -e: each call here is
    # tested (||), which suspends -e inside it.
    # shellcheck source=tests/e2e/scenarios.sh
    . tests/e2e/scenarios.sh
    E2E_NS1=pwru-pkg-$$-a E2E_NS2=pwru-pkg-$$-b
    mkdir -p "$work/bin" "$work/ready"
    local applet
    for applet in nc timeout ping; do ln -s "$(command -v busybox)" "$work/bin/$applet"; done
    PATH=$work/bin:$PATH
    cleanups+=("e2e_net_down")
    e2e_net_up || fail "network scenario setup"
    e2e_fw_drop "ip daddr 10.0.0.2 tcp dport 8080" || fail "cannot install the nft rule"

    local mounts=(-v /sys/kernel/btf:/sys/kernel/btf:ro -v "$work/ready:/run/pwru")
    local fs
    for fs in /sys/kernel/tracing /sys/kernel/debug; do
        if [[ -d $fs ]]; then mounts+=(-v "$fs:$fs"); fi
    done
    cleanups+=("${podman[*]} rm -f -t 0 $ctr >/dev/null 2>&1")
    "${podman[@]}" run -d --name "$ctr" --privileged --pid host --network host \
        --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "${mounts[@]}" \
        "$image" --output-tuple --ready-file /run/pwru/ready 'tcp and dst port 8080' >/dev/null

    local t0=$SECONDS
    until [[ -e $work/ready/ready ]]; do
        if [[ $("${podman[@]}" inspect -f '{{.State.Running}}' "$ctr") != true ]]; then
            "${podman[@]}" logs "$ctr" >&2 || true
            fail "pwru exited in the container before it was ready"
        fi
        (( SECONDS - t0 < 120 )) || fail "pwru not ready in the container after 120 s"
        sleep 0.2
    done
    echo "ready after $((SECONDS - t0)) s"
    local pid owned
    pid=$("${podman[@]}" inspect -f '{{.State.Pid}}' "$ctr")
    owned=$(e2e_owned_ids "$pid")

    e2e_connect 10.0.0.2 8080 || true
    sleep 1                                             # let the events drain
    local dropped
    dropped=$(e2e_fw_count)
    (( dropped >= 1 )) || fail "scenario broken: the nft rule counted no packet"

    "${podman[@]}" stop -t 60 "$ctr" >/dev/null         # SIGTERM, as Kubernetes sends
    local rc
    rc=$("${podman[@]}" inspect -f '{{.State.ExitCode}}' "$ctr")
    E2E_LOG=$work/trace.log
    "${podman[@]}" logs "$ctr" >"$E2E_LOG" 2>"$work/stderr.log"
    sed 's/^/  stderr: /' "$work/stderr.log"
    grep -E "$E2E_DROP_RE" "$E2E_LOG" | sed 's/^/  trace: /' | head -n 5
    [[ $rc == 0 ]] || fail "pwru in the container exited with status $rc after SIGTERM"
    e2e_match "$E2E_DROP_RE" NETFILTER_DROP '10\.0\.0\.2:8080([^0-9]|$)' ||
        fail "no drop line with 10.0.0.2:8080 and SKB_DROP_REASON_NETFILTER_DROP in the container's output"

    # Every BPF object pwru held is gone once it has exited (released after an RCU grace).
    if [[ -n $owned ]] && command -v bpftool >/dev/null; then
        local left tries=0
        while left=$(e2e_live_ids | grep -Fx -e "$owned" | tr '\n' ' '); [[ -n $left ]]; do
            (( ++tries <= 20 )) || fail "BPF objects of pwru still exist after its exit: $left"
            sleep 0.5
        done
        echo "the $(grep -c . <<<"$owned") BPF objects pwru held are gone"
    fi
}

# --- driver ------------------------------------------------------------------------------
failed=0
summary=()
for s in "${steps[@]}"; do
    echo "=== $s"
    t0=$SECONDS
    rc=0
    set +e
    (
        set -e
        trap run_cleanups EXIT
        trap 'exit 130' INT TERM
        "step_$s"
    )
    rc=$?
    set -e
    took=$((SECONDS - t0))
    case $rc in
        0) verdict=PASS ;;
        77) verdict=SKIP ;;
        *) verdict=FAIL; failed=1 ;;
    esac
    summary+=("$(printf '%s %-10s %4d s' "$verdict" "$s" "$took")")
done
echo "=== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
