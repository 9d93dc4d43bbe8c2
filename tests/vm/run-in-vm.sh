#!/usr/bin/env bash
# run-in-vm.sh - run a script as root inside a throw-away QEMU VM booting a
# Debian cloud kernel (6.1 or 6.12) from a generated busybox initramfs.
#
# Usage: run-in-vm.sh KERNEL SCRIPT [FILE | SRC:DEST]...
#
#   KERNEL  6.1 or 6.12 (fetched with fetch-kernels.sh when missing), or a
#           directory laid out like $CACHE/kernels/S (vmlinuz, kver, lib/modules)
#   SCRIPT  guest script, stored as /vm/script/<name> and run as root in /files:
#           directly when it starts with "#!" (/bin/bash exists), else by /bin/sh
#           (the host's dash); "-" reads it from stdin
#   FILE    copied to /files/<basename> (/files is first in PATH); SRC:DEST
#           copies to the absolute guest path DEST. Directories are copied
#           recursively; dynamically linked ELF files get their ldd libraries.
#
# Output: the script's stdout+stderr, streamed between the lines
#   "===== pwru-vm: BEGIN <script> on <kernel> (<uname -r>) ====="
#   "===== pwru-vm: END rc=N | kernel K | build Bs | boot Ts (guest uptime Us) | script Ss | total Xs ====="
# Harness messages go to stderr.
# Exit status: the script's; 124 on timeout; 125 when the VM died before the
#   script finished (panic, ...) or on a harness error.
#
# Guest: busybox applets, dash as /bin/sh, bash, the host programs in
#   PWRU_VM_TOOLS with their libraries, modules for veth, nftables (incl. NAT),
#   iptables-nft and tc loaded at boot; proc, sys, devtmpfs, debugfs, tracefs,
#   bpffs, cgroup2 and tmpfs /tmp /run mounted. No network device: all traffic
#   stays in network namespaces inside the VM. Variables PWRU_VM_KERNEL (6.1,
#   6.12) and PWRU_VM_KVER are exported to the script.
#
# Environment:
#   PWRU_VM_CACHE    kernel cache (~/.cache/pwru-vm), see fetch-kernels.sh
#   PWRU_VM_TIMEOUT  wall-clock limit of the whole VM run in seconds (900)
#   PWRU_VM_MEM      guest memory in MiB (1024)
#   PWRU_VM_SMP      guest CPUs (1)
#   PWRU_VM_ACCEL    tcg (default) or kvm (needs a usable /dev/kvm)
#   PWRU_VM_MODULES  extra kernel modules to load
#   PWRU_VM_TOOLS    host programs to copy (default "ip tc nft iptables-nft bpftool env";
#                    coreutils env replaces busybox env: --default-signal)
#   PWRU_VM_ENV      names of host variables to export into the guest script
#   PWRU_VM_CONSOLE  file that receives the kernel console log
#   PWRU_VM_VERBOSE=1  also copy the kernel console to stderr
#   PWRU_VM_KEEP=1     keep the work directory

set -euo pipefail
shopt -s lastpipe
export LC_ALL=C

readonly PROG=${0##*/}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly CACHE=${PWRU_VM_CACHE:-$HOME/.cache/pwru-vm}
readonly TIMEOUT=${PWRU_VM_TIMEOUT:-900}
readonly MEM=${PWRU_VM_MEM:-1024}
readonly SMP=${PWRU_VM_SMP:-1}
readonly ACCEL=${PWRU_VM_ACCEL:-tcg}
readonly TOOLS=${PWRU_VM_TOOLS-ip tc nft iptables-nft bpftool env}

# Loaded at boot when present as modules (built-ins are skipped), with their
# dependencies: virtual links, nftables with reject/conntrack/NAT, iptables-nft
# (compat + xt matches), tc clsact and BPF classifier/actions, the VXLAN and Geneve
# overlays of the tunnel scenarios.
readonly BASE_MODULES="veth dummy nf_tables nft_reject_inet nft_ct nf_conntrack
    nft_chain_nat nft_nat nf_nat nft_compat x_tables xt_tcpudp xt_conntrack
    ip_tables iptable_filter ipt_REJECT sch_ingress cls_bpf act_bpf act_gact
    vxlan geneve"

die()  { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 125; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
info() { printf '%s: %s\n' "$PROG" "$*" >&2; }
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }

ROOT=        # initramfs staging directory
WORK=        # work directory (initramfs, serial logs)
KVER=        # uname -r of the guest kernel
KERNEL_NAME= # 6.1, 6.12 or the kernel directory's name
SCRIPT_NAME=

# --- files and their libraries -----------------------------------------------
is_dynamic_elf() {
    [[ -f $1 && $(head -c 4 "$1" | tr -d '\0') == $'\x7fELF' ]] && ldd "$1" >/dev/null 2>&1
}

# Copy the shared libraries of ELF $1 to the same paths under $ROOT.
# (ldd may run the ELF interpreter: pass only trusted binaries.)
copy_libs() {
    local line lib
    ldd "$1" | while IFS= read -r line; do
        case $line in
            *"not found"*) die "$1: shared library not found: ${line#"${line%%[![:space:]]*}"}" ;;
            *"=> /"*) lib=${line#*=> }; lib=${lib%% (*} ;;
            *[[:space:]]/*" (0x"*) lib=${line#"${line%%[![:space:]]*}"}; lib=${lib%% (*} ;;
            *) continue ;;
        esac
        if [[ ! -e $ROOT$lib ]]; then
            mkdir -p "$ROOT${lib%/*}"
            cp -L "$lib" "$ROOT$lib"
        fi
    done
}

# add_path SRC DEST: copy a file or directory to guest path DEST (+ libraries).
add_path() {
    local src=$1 dest=$2 f
    [[ -e $src ]] || die "no such file: $src"
    [[ $dest == /* ]] || die "guest path must be absolute: $dest"
    mkdir -p "$ROOT${dest%/*}"
    cp -rL --remove-destination "$src" "$ROOT$dest"
    if [[ -d $src ]]; then
        while IFS= read -r -d '' f; do
            if is_dynamic_elf "$f"; then copy_libs "$f"; fi
        done < <(find "$src" -type f -perm -u+x -print0)
    elif is_dynamic_elf "$src"; then
        copy_libs "$src"
    fi
}

# add_tool NAME: copy host program NAME to the same path in the guest; a
# symlink to a multi-call binary in the same directory stays a symlink.
add_tool() {
    local name=$1 path target xt
    path=$(PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin command -v "$name" || true)
    if [[ -z $path ]]; then
        warn "host program '$name' not found, not available in the guest"
        return 0
    fi
    target=$(readlink -f "$path")
    if [[ $target != "$path" && ${target%/*} == "${path%/*}" ]]; then
        add_path "$target" "$target"
        ln -sf "${target##*/}" "$ROOT$path"
    else
        add_path "$path" "$path"
    fi
    if [[ $name == *tables* ]]; then               # dlopen()ed extensions
        for xt in /usr/lib/*/xtables /usr/lib/xtables; do
            if [[ -d $xt && ! -e $ROOT$xt ]]; then add_path "$xt" "$xt"; fi
        done
    fi
}

# --- kernel modules -------------------------------------------------------------
# Copy the named modules and their dependencies into $ROOT and print their
# paths (relative to the module directory) in load order.
select_modules() {
    local moddir=$1; shift
    local -A path_of=() deps_of=() chosen=()
    local line path name m d
    while IFS= read -r line; do
        path=${line%%:*}
        name=${path##*/}; name=${name%.ko}; name=${name//-/_}
        path_of[$name]=$path
        deps_of[$path]=${line#*:}
    done <"$moddir/modules.dep"
    for m in "$@"; do
        m=${m//-/_}
        if [[ -z ${path_of[$m]:-} ]]; then
            if ! tr '-' '_' <"$moddir/modules.builtin" 2>/dev/null | grep -q "/$m\.ko$"; then
                warn "module '$m' not found for $KVER, skipped"
            fi
            continue
        fi
        chosen[${path_of[$m]}]=1
        for d in ${deps_of[${path_of[$m]}]}; do chosen[$d]=1; done
    done
    # modules.dep lists transitive dependencies, so a module has strictly more
    # of them than any of its dependencies: sorting by that count is a valid
    # load order.
    for path in "${!chosen[@]}"; do
        # shellcheck disable=SC2086  # count the words of the dependency list
        set -- ${deps_of[$path]}
        printf '%d %s\n' "$#" "$path"
        mkdir -p "$ROOT/lib/modules/$KVER/${path%/*}"
        cp "$moddir/$path" "$ROOT/lib/modules/$KVER/$path"
    done | sort -n -k1,1 -k2,2 | cut -d' ' -f2
}

# --- guest /init ----------------------------------------------------------------
write_init() {
    cat >"$ROOT/init" <<'EOF'
#!/bin/sh
# /init of the pwru-vm initramfs (generated by tests/vm/run-in-vm.sh).
# ttyS0: kernel console; ttyS1: the script's output and the BEGIN/END markers.
export PATH=/files:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
hostname pwru-vm
ip link set lo up
. /vm/config
while read -r mod; do
    insmod "/lib/modules/$PWRU_VM_KVER/$mod" || echo "pwru-vm: insmod $mod failed"
done <"/lib/modules/$PWRU_VM_KVER/vm.load"
OUT=/dev/ttyS1
echo "@@PWRU-VM-BEGIN uptime=$(cut -d' ' -f1 /proc/uptime)@@" >$OUT
(cd /files && . /vm/env && exec $PWRU_VM_RUN) >$OUT 2>&1 </dev/null
rc=$?
echo "@@PWRU-VM-END rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)@@" >$OUT
sync
poweroff -f
EOF
    chmod 755 "$ROOT/init"
}

# Single-quote $1 for a POSIX shell.
shquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

build_initramfs() {
    local kdir=$1 script=$2; shift 2
    local bb applet arg src dest moddir v sh run t f gscript
    mkdir -p "$ROOT"/{bin,boot,dev,etc,files,lib,lib64,proc,root,run,sbin,sys,tmp,var,usr/bin,usr/sbin,vm/script}
    ln -s ../run "$ROOT/var/run"

    # /bin/sh is dash: Debian's busybox-static sh prefers its own applets to
    # PATH, so "ip netns" would run busybox ip instead of iproute2.
    for sh in dash bash; do
        src=$(command -v "$sh") || continue
        add_path "$src" "/bin/$sh"
        ln -s "/bin/$sh" "$ROOT/usr/bin/$sh"
        if [[ ! -e $ROOT/bin/sh ]]; then ln -s "$sh" "$ROOT/bin/sh"; fi
    done
    [[ -e $ROOT/bin/sh ]] || die "neither dash nor bash found on the host"

    bb=$(command -v busybox) || die "busybox not found (apt-get install busybox-static)"
    if is_dynamic_elf "$bb"; then die "$bb is dynamically linked (apt-get install busybox-static)"; fi
    cp -L "$bb" "$ROOT/bin/busybox"
    "$bb" --list | while read -r applet; do
        if [[ ! -e $ROOT/bin/$applet ]]; then ln -s busybox "$ROOT/bin/$applet"; fi
    done
    ln -s /bin/busybox "$ROOT/usr/bin/env"
    ln -s /bin/busybox "$ROOT/sbin/modprobe"

    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
    printf 'root:x:0:\n' >"$ROOT/etc/group"
    printf '127.0.0.1 localhost pwru-vm\n::1 localhost\n' >"$ROOT/etc/hosts"
    for f in /etc/protocols /etc/services /etc/ethertypes; do
        if [[ -r $f ]]; then cp "$f" "$ROOT$f"; fi
    done

    for t in $TOOLS; do add_tool "$t"; done
    for arg in "$@"; do
        if [[ -e $arg || $arg != *:* ]]; then
            src=$arg dest=/files/${arg##*/}
        else
            src=${arg%%:*} dest=${arg#*:}
        fi
        add_path "$src" "$dest"
    done

    gscript=/vm/script/$SCRIPT_NAME
    if [[ $script == - ]]; then cat >"$ROOT$gscript"; else cp "$script" "$ROOT$gscript"; fi
    chmod 755 "$ROOT$gscript"
    if [[ $(head -c 2 "$ROOT$gscript") == '#!' ]]; then run=$gscript; else run="sh $gscript"; fi

    moddir=$kdir/lib/modules/$KVER
    mkdir -p "$ROOT/lib/modules/$KVER"
    # shellcheck disable=SC2086  # module lists are whitespace separated
    select_modules "$moddir" $BASE_MODULES ${PWRU_VM_MODULES:-} >"$ROOT/lib/modules/$KVER/vm.load"
    cp "$moddir"/modules.{dep,builtin,order} "$ROOT/lib/modules/$KVER/" 2>/dev/null || true
    if [[ -f $kdir/config ]]; then cp "$kdir/config" "$ROOT/boot/config-$KVER"; fi

    {
        echo "PWRU_VM_KVER=$(shquote "$KVER")"
        echo "PWRU_VM_RUN=$(shquote "$run")"
    } >"$ROOT/vm/config"
    {
        echo "export PWRU_VM_KERNEL=$(shquote "$KERNEL_NAME") PWRU_VM_KVER=$(shquote "$KVER")"
        for v in ${PWRU_VM_ENV:-}; do
            [[ $v =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "PWRU_VM_ENV: invalid variable name '$v'"
            if [[ -n ${!v+set} ]]; then
                echo "export $v=$(shquote "${!v}")"
            else
                warn "PWRU_VM_ENV: $v is not set on the host"
            fi
        done
    } >"$ROOT/vm/env"

    write_init
    (cd "$ROOT" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) >"$WORK/initrd.cpio" ||
        die "cpio failed"
}

# --- running ----------------------------------------------------------------------
# Follow ttyS1 while QEMU (pid $1) runs: print the script's lines, parse the
# markers into T_BEGIN, UP_BEGIN, UP_END and GUEST_RC.
stream_output() {
    local line
    tail -n +1 -s 0.2 -f --pid="$1" "$WORK/ttyS1.log" 2>/dev/null |
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        case $line in
            "@@PWRU-VM-BEGIN uptime="*"@@")
                T_BEGIN=$EPOCHREALTIME
                UP_BEGIN=${line#*uptime=}; UP_BEGIN=${UP_BEGIN%@@}
                printf '===== pwru-vm: BEGIN %s on %s (%s) =====\n' "$SCRIPT_NAME" "$KERNEL_NAME" "$KVER" ;;
            "@@PWRU-VM-END rc="*"@@")
                GUEST_RC=${line#*rc=}; GUEST_RC=${GUEST_RC%% *}
                UP_END=${line#*uptime=}; UP_END=${UP_END%@@} ;;
            *) printf '%s\n' "$line" ;;
        esac
    done
}

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

main() {
    case ${1:-} in -h|--help) usage; exit 0 ;; esac
    if (( $# < 2 )); then usage >&2; exit 125; fi
    local kernel=$1 script=$2 kdir cpu qpid qrc t0 t_built t_exit tool
    shift 2
    local -a qemu_cmd

    if [[ -d $kernel ]]; then
        kdir=$(cd "$kernel" && pwd)
    else
        kdir=$CACHE/kernels/$kernel
        if [[ ! -f $kdir/kver ]]; then
            case $kernel in
                6.1|6.12) info "kernel $kernel not in $CACHE, fetching it"
                          "$HERE/fetch-kernels.sh" "$kernel" >&2 || die "fetch-kernels.sh $kernel failed" ;;
                *) die "unknown kernel '$kernel' (6.1, 6.12 or a kernel directory)" ;;
            esac
        fi
    fi
    [[ -f $kdir/vmlinuz && -f $kdir/kver ]] || die "$kdir is not a kernel directory"
    KVER=$(<"$kdir/kver")
    KERNEL_NAME=${kernel%/}; KERNEL_NAME=${KERNEL_NAME##*/}
    [[ $script == - || -f $script ]] || die "no such script: $script"
    SCRIPT_NAME=${script##*/}
    if [[ $script == - ]]; then SCRIPT_NAME=stdin.sh; fi
    [[ $TIMEOUT =~ ^[0-9]+$ ]] || die "PWRU_VM_TIMEOUT must be a number of seconds"
    for tool in qemu-system-x86_64 cpio timeout tail ldd; do
        command -v "$tool" >/dev/null || die "$tool not found"
    done
    case $ACCEL in
        tcg) cpu=max ;;
        kvm) cpu=host; [[ -w /dev/kvm ]] || die "PWRU_VM_ACCEL=kvm but /dev/kvm is not writable" ;;
        *) die "PWRU_VM_ACCEL must be tcg or kvm" ;;
    esac

    WORK=$(mktemp -d "${TMPDIR:-/tmp}/pwru-vm.XXXXXX")
    ROOT=$WORK/root
    if [[ ${PWRU_VM_KEEP:-0} == 1 ]]; then
        info "keeping work directory $WORK"
    else
        trap 'rm -rf "$WORK"' EXIT
    fi

    t0=$EPOCHREALTIME
    build_initramfs "$kdir" "$script" "$@"
    t_built=$EPOCHREALTIME

    : >"$WORK/ttyS1.log"
    : >"$WORK/console.log"
    qemu_cmd=(
        qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot
        -machine "pc,accel=$ACCEL" -cpu "$cpu" -m "$MEM" -smp "$SMP"
        -kernel "$kdir/vmlinuz" -initrd "$WORK/initrd.cpio"
        -append "console=ttyS0 quiet panic=-1 rdinit=/init"
        -serial "file:$WORK/console.log"
        -serial "file:$WORK/ttyS1.log"
    )
    timeout --kill-after=10 "$TIMEOUT" "${qemu_cmd[@]}" </dev/null >"$WORK/qemu.log" 2>&1 &
    qpid=$!
    trap 'kill "$qpid" 2>/dev/null; exit 130' INT TERM
    if [[ ${PWRU_VM_VERBOSE:-0} == 1 ]]; then
        tail -n +1 -f --pid="$qpid" "$WORK/console.log" | tr -d '\r' >&2 &
    fi

    T_BEGIN='' UP_BEGIN='' UP_END='' GUEST_RC=''
    stream_output "$qpid"
    qrc=0
    wait "$qpid" || qrc=$?
    t_exit=$EPOCHREALTIME
    trap - INT TERM
    if [[ -n ${PWRU_VM_CONSOLE:-} ]]; then tr -d '\r' <"$WORK/console.log" >"$PWRU_VM_CONSOLE"; fi

    if [[ -n $GUEST_RC ]]; then
        printf '===== pwru-vm: END rc=%s | kernel %s | build %ss | boot %ss (guest uptime %ss) | script %ss | total %ss =====\n' \
            "$GUEST_RC" "$KERNEL_NAME" "$(secs "$t0" "$t_built")" "$(secs "$t_built" "$T_BEGIN")" \
            "$UP_BEGIN" "$(secs "$UP_BEGIN" "$UP_END")" "$(secs "$t0" "$t_exit")"
        exit "$GUEST_RC"
    fi
    if (( qrc == 124 || qrc == 137 )); then
        warn "timeout: VM killed after ${TIMEOUT}s (PWRU_VM_TIMEOUT)"
        qrc=124
    else
        warn "the VM stopped before the script finished (qemu exit status $qrc)"
        if [[ -s $WORK/qemu.log ]]; then sed 's/^/qemu: /' "$WORK/qemu.log" >&2; fi
        qrc=125
    fi
    if [[ -n $T_BEGIN ]]; then
        printf '===== pwru-vm: END (incomplete: %s) =====\n' "$( ((qrc == 124)) && echo timeout || echo 'VM died')"
    fi
    echo "--- last lines of the kernel console ---" >&2
    tail -n 40 "$WORK/console.log" | tr -d '\r' >&2
    exit "$qrc"
}

main "$@"
