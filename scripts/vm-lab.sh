#!/usr/bin/env bash
# scripts/vm-lab.sh -- a real virtual machine on the wire: boot a small Linux guest with
# QEMU on a TAP device, bridge it with our responder's tap4, and watch the guest ping
# 05_full_responder. Everything happens inside a network namespace made for the run.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: sudo $TB_PROG [OPTIONS]

Boot a small Linux guest with QEMU and let it ping our responder, all inside a
network namespace that is created for the run and removed afterwards (also on
failure or Ctrl-C):

    guest eth0 172.16.1.3 (virtio-net)          05_full_responder 172.16.1.2
        |                                            |
      vnet0 (TAP, QEMU's) ----- br0 172.16.1.1 ----- tap4 (TAP, ours)

  1. builds 05_full_responder (cargo build --release, as you, not as root);
  2. picks the guest kernel: this machine's /boot/vmlinuz-\$(uname -r) with its
     modules when readable and usable, else Debian's linux-image-cloud-amd64
     (apt-get download + dpkg -x, cached; nothing is installed);
  3. builds a busybox initramfs around scripts/vm/init.sh (cached);
  4. makes the lab: scripts/setup.sh for tap4, the bridge br0 with the host's
     address, a second TAP vnet0 for QEMU;
  5. runs 05_full_responder --pcap on tap4 as you, boots the guest with KVM when
     KVM works here, else with TCG (software emulation), and prints the guest's
     console, the bridge's forwarding table, the responder's counters and a
     tshark summary of the frames the responder saw.
Exits 0 when the guest's ping to $TB_RESPONDER_IP got replies from our responder.

Needs root (run it as yourself and it uses sudo after building), and the
Debian packages qemu-system-x86, busybox-static, cpio, iproute2 (and tshark or
tcpdump for the capture summary, strace for --strace).

Options:
  --keep            leave the lab running at the end (guest, responder,
                    namespace) and print how to reach and stop it
  --shell           after its pings, give the guest an interactive shell on
                    this terminal ('exit' powers it off; Ctrl-A x kills QEMU)
  --count N         pings from the guest to each address (default: 3)
  --kernel WHICH    auto, host or debian (default: auto)
  --accel WHICH     auto, kvm or tcg (default: auto: KVM if it boots the guest
                    within $KVM_WAIT s, else TCG)
  --pcap FILE       keep the responder's capture in FILE (written as the lab
                    user, so pick a place they can write to)
  --strace FILE     run QEMU under strace and save its system calls on the TAP
                    (opening /dev/net/tun, the ioctls, the first frames) to FILE;
                    the whole trace goes to FILE.all
  --bin PATH        use this 05_full_responder instead of building it
  --user NAME       run the responder as NAME (default: \$SUDO_USER, else you)
  --cache DIR       where the kernel and initramfs are cached
                    (default: \$TAPBOOK_CACHE, else ~/.cache/tapbook)
  --netns NAME      the namespace to create (default: tapbook-vm-PID); it must
                    not exist yet, since the script deletes it at the end
  -h, --help        this help
EOF
}

# ---- settings ---------------------------------------------------------------------
KVM_WAIT=10         # seconds KVM gets to reach the guest's init before we try TCG
BOOT_TIMEOUT=120    # seconds for a whole guest run under TCG on a slow machine
BRIDGE=br0
RESPONDER_TAP=$TB_DEFAULT_IFACE
VM_TAP=vnet0        # libvirt's name for the taps it makes for guests
HOST_ADDR=$TB_DEFAULT_ADDR
HOST_MAC=02:00:00:00:00:01
GUEST_IP=172.16.1.3
GUEST_MAC=52:54:00:12:34:56     # QEMU's own default; 52:54:00 is QEMU's prefix
# Load order for busybox insmod, which does not follow dependencies: each module
# after the ones it needs (measured on Debian's 6.1 kernel; built-in ones are skipped).
VIRTIO_MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
    failover net_failover virtio_net)
DEBIAN_KERNEL_META=linux-image-cloud-amd64

KEEP=0
SHELL_MODE=0
COUNT=3
KERNEL_CHOICE=auto
ACCEL_CHOICE=auto
PCAP=
STRACE_OUT=
BIN=
LAB_USER=
CACHE=${TAPBOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tapbook}
NETNS=

tb_split_args "$@"; set -- "${TB_ARGS[@]}"
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --keep) KEEP=1; shift ;;
        --shell) SHELL_MODE=1; shift ;;
        --count) need_value "$1" $#; need_number "$1" "$2"; COUNT=$2; shift 2 ;;
        --kernel) need_value "$1" $#; KERNEL_CHOICE=$2; shift 2 ;;
        --accel) need_value "$1" $#; ACCEL_CHOICE=$2; shift 2 ;;
        --pcap) need_value "$1" $#; PCAP=$2; shift 2 ;;
        --strace) need_value "$1" $#; STRACE_OUT=$2; shift 2 ;;
        --bin) need_value "$1" $#; BIN=$2; shift 2 ;;
        --user) need_value "$1" $#; LAB_USER=$2; shift 2 ;;
        --cache) need_value "$1" $#; CACHE=$2; shift 2 ;;
        --netns) need_value "$1" $#; NETNS=$2; shift 2 ;;
        *) unknown_option "$1" ;;
    esac
done
case $KERNEL_CHOICE in auto | host | debian) ;; *) die "--kernel wants auto, host or debian (got '$KERNEL_CHOICE')" ;; esac
case $ACCEL_CHOICE in auto | kvm | tcg) ;; *) die "--accel wants auto, kvm or tcg (got '$ACCEL_CHOICE')" ;; esac
((KEEP && SHELL_MODE)) && die "--keep and --shell do not go together: the shell ends the guest"
((COUNT <= 100)) || die "--count: at most 100 pings, please"
[[ -n $NETNS ]] || NETNS=tapbook-vm-$$
TB_NETNS=$NETNS
validate_common

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
INIT_SCRIPT=$ROOT/scripts/vm/init.sh
START=$EPOCHREALTIME

# ---- small helpers ----------------------------------------------------------------
section() { say ""; say "== $*"; }
indent() { sed 's/^/    /'; }
# The guest's serial console, without carriage returns and the terminal control
# sequences with which SeaBIOS resets and clears the screen (the reset becomes a line
# break: SeaBIOS and the kernel do not end their last lines).
clean_console() {
    sed -e 's/\x1bc/\n/g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\r//g' "$@" | sed '1{/^$/d}'
}
# Seconds since $1 (an $EPOCHREALTIME), with one decimal.
elapsed() {
    local us=$((${EPOCHREALTIME/./} - ${1/./}))
    printf '%d.%d' $((us / 1000000)) $((us % 1000000 / 100000))
}
# A path inside the repository relative to it, for shorter messages.
repo_path() { if [[ $1 == "$ROOT"/* ]]; then printf '%s\n' "${1#"$ROOT"/}"; else printf '%s\n' "$1"; fi; }
home_of() { getent passwd "$1" | cut -d: -f6; }
# as_user USER CMD...: run CMD as USER (with USER's home and cargo on PATH).
as_user() {
    local user=$1
    shift
    if [[ $user == "$(id -un)" ]]; then
        "$@"
    else
        local home
        home=$(home_of "$user")
        setpriv --reuid "$user" --regid "$(id -g -- "$user")" --init-groups -- \
            env HOME="$home" USER="$user" LOGNAME="$user" PATH="$home/.cargo/bin:$PATH" "$@"
    fi
}
# in_ns CMD...: run CMD in the lab's namespace; shown: the same, printed first.
in_ns() { ip netns exec "$NETNS" "$@"; }
shown() {
    say "    \$ $(show_cmd "$@")"
    in_ns "$@" | sed 's/^/      /'
}

# ---- 1. the responder binary (built as a user, never as root) ---------------------
# Prints the path of the freshly built 05_full_responder.
build_responder() {
    local user=$1 cargo out exe
    cargo=$(as_user "$user" bash -c 'command -v cargo' 2>/dev/null) || true
    if [[ -z $cargo ]]; then
        exe=$ROOT/target/release/05_full_responder
        if [[ -x $exe ]]; then
            warn "cargo not found for $user; using the existing $exe"
            printf '%s\n' "$exe"
            return 0
        fi
        die "cargo not found for $user: build it first with 'cargo build --release --bin 05_full_responder' (no sudo), or pass --bin PATH"
    fi
    out=$(cd "$ROOT" && as_user "$user" "$cargo" build --release --bin 05_full_responder \
        --message-format=json-render-diagnostics) || die "cargo build failed (see above)"
    exe=$(sed -n 's/.*"executable":"\([^"]*\/05_full_responder\)".*/\1/p' <<<"$out" | tail -n 1)
    [[ -n $exe && -x $exe ]] || die "cargo build did not report where 05_full_responder is"
    printf '%s\n' "$exe"
}

say "tapbook VM lab: a Linux guest on a TAP pings our responder across a bridge"

if [[ -z $BIN ]]; then
    if ! is_root; then
        command -v sudo >/dev/null || die "this needs root, and sudo is not installed: run it as root"
        section "1. Building 05_full_responder as $(id -un)"
        BIN=$(build_responder "$(id -un)")
        say "    $(repo_path "$BIN")"
        say "    (the rest needs root: continuing through sudo)"
        exec sudo -- "$0" "${TB_ORIG_ARGS[@]}" --bin "$BIN"
    fi
    builder=$(default_lab_user)
    section "1. Building 05_full_responder as $builder"
    BIN=$(build_responder "$builder")
    say "    $(repo_path "$BIN")"
else
    section "1. The responder: $BIN"
fi
[[ -x $BIN ]] || die "--bin $BIN: no such executable"
BIN=$(realpath -- "$BIN")

need_root "$@"
[[ -n $LAB_USER ]] || LAB_USER=$(default_lab_user)
id -u -- "$LAB_USER" >/dev/null 2>&1 || die "no such user: '$LAB_USER'"

# ---- tools --------------------------------------------------------------------------
missing=()
need_tool() { command -v "$1" >/dev/null || missing+=("$2"); }
need_tool qemu-system-x86_64 qemu-system-x86
need_tool busybox busybox-static
need_tool cpio cpio
need_tool gzip gzip
need_tool bridge iproute2
need_tool setpriv util-linux
[[ -n $STRACE_OUT ]] && need_tool strace strace
((${#missing[@]} == 0)) ||
    die "missing tools; install them with:  sudo apt-get install ${missing[*]}"
BUSYBOX=$(command -v busybox)
if command -v ldd >/dev/null && [[ $(LC_ALL=C ldd "$BUSYBOX" 2>&1 || true) != *'not a dynamic executable'* ]]; then
    die "$BUSYBOX is linked dynamically; the guest has no libraries: sudo apt-get install busybox-static"
fi
[[ $(uname -m) == x86_64 ]] || die "this lab boots an x86-64 guest and needs an x86-64 host (this is $(uname -m))"
ip netns list | awk '{print $1}' | grep -qxF -- "$NETNS" &&
    die "network namespace $NETNS exists already; this script deletes its namespace at the end, so pick a new name with --netns (or remove it: sudo ip netns del $NETNS)"

# ---- cleanup (set up before anything is created) ---------------------------------------
LOG=$(mktemp -d "${TMPDIR:-/tmp}/tapbook-vm.XXXXXX")
chmod 711 "$LOG"
NS_CREATED=0
RESPONDER_PID=
QEMU_LAUNCH_PID=
WATCHER_PID=
CTL=
LEAVE_RUNNING=0

# stop_pid PID: SIGTERM, then SIGKILL if it is still there after 3 s. Only PIDs we started.
stop_pid() {
    local pid=$1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}
qemu_pid() { [[ -s $LOG/qemu.pid ]] && tr -dc '0-9' <"$LOG/qemu.pid"; }

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if ((LEAVE_RUNNING)); then
        exit "$status"
    fi
    [[ -n $CTL ]] && exec {CTL}>&-
    stop_pid "$WATCHER_PID"
    stop_pid "$(qemu_pid || true)"
    stop_pid "$QEMU_LAUNCH_PID"
    stop_pid "$RESPONDER_PID"
    if ((NS_CREATED)); then
        ip netns del "$NETNS" 2>/dev/null || true
    fi
    rm -rf -- "$LOG"
    if ((status != 0 && NS_CREATED)); then
        say "(namespace $NETNS and every process of the lab removed)" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 2. the guest kernel ------------------------------------------------------------

# find_module TREE NAME: the file of module NAME under TREE (.ko, or compressed).
find_module() {
    find "$1" \( -name "$2.ko" -o -name "$2.ko.*" \) -print -quit 2>/dev/null
}

# resolve_modules TREE BUILTIN_LIST: fills MODULE_FILES (in load order) from TREE,
# skipping modules the kernel has built in. Returns 1 (with WHY set) when a module,
# or a module it depends on, is neither there nor built in.
MODULE_FILES=()
resolve_modules() {
    local tree=$1 builtin=$2 name file dep
    local have=()
    MODULE_FILES=()
    for name in "${VIRTIO_MODULES[@]}"; do
        if [[ -r $builtin ]] && grep -qE "/${name}\.ko(\..*)?\$" "$builtin"; then
            have+=("$name")
            continue
        fi
        file=$(find_module "$tree" "$name")
        if [[ -z $file ]]; then
            # Older kernels have no virtio_pci_legacy_dev etc.; the dependency check
            # below tells whether anything needed it.
            continue
        fi
        if command -v modinfo >/dev/null; then
            for dep in $(modinfo -F depends "$file" 2>/dev/null | tr ',' ' '); do
                if ! printf '%s\n' "${have[@]}" | grep -qxF -- "$dep"; then
                    WHY="module $name needs $dep, which is not in the load order"
                    return 1
                fi
            done
        fi
        have+=("$name")
        MODULE_FILES+=("$file")
    done
    if ! printf '%s\n' "${have[@]}" | grep -qx virtio_net; then
        WHY="it has no virtio_net driver (neither built in nor as a module)"
        return 1
    fi
}

# The host's kernel, if usable: sets KERNEL_IMAGE, KERNEL_DESC, KERNEL_ID, MODULE_FILES.
use_host_kernel() {
    local kver image moddir
    kver=$(uname -r)
    image=/boot/vmlinuz-$kver
    moddir=/lib/modules/$kver
    if [[ ! -r $image ]]; then
        WHY="$image is missing or not readable"
        return 1
    fi
    if [[ ! -d $moddir ]]; then
        WHY="its modules ($moddir) are not installed"
        return 1
    fi
    resolve_modules "$moddir" "$moddir/modules.builtin" || return 1
    KERNEL_IMAGE=$image
    KERNEL_DESC="this machine's own kernel, $image"
    KERNEL_ID=host-$kver
}

# Debian's cloud kernel, downloaded once into the cache.
use_debian_kernel() {
    local pkg dir tmp deb kver
    if ! command -v apt-get >/dev/null; then
        WHY="apt-get is not available (not a Debian-based system)"
        return 1
    fi
    pkg=$(apt-cache depends "$DEBIAN_KERNEL_META" 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n 1) || true
    if [[ -z $pkg ]]; then
        dir=$(find "$CACHE/debian" -mindepth 2 -maxdepth 2 -name .complete -printf '%h\n' 2>/dev/null | sort -V | tail -n 1)
        if [[ -n $dir ]]; then
            pkg=$(basename -- "$dir")
            say "    apt does not know $DEBIAN_KERNEL_META; using the cached $pkg"
        else
            say "    apt does not know $DEBIAN_KERNEL_META yet: running apt-get update"
            apt-get update -q >"$LOG/apt-update.txt" 2>&1 ||
                { cat "$LOG/apt-update.txt" >&2; WHY="apt-get update failed"; return 1; }
            pkg=$(apt-cache depends "$DEBIAN_KERNEL_META" 2>/dev/null |
                sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n 1) || true
            [[ -n $pkg ]] || { WHY="apt knows no package $DEBIAN_KERNEL_META"; return 1; }
        fi
    fi
    dir=$CACHE/debian/$pkg
    if [[ ! -e $dir/.complete ]]; then
        say "    downloading $pkg (apt-get download; nothing is installed)"
        mkdir -p "$CACHE/debian"
        tmp=$(mktemp -d "$CACHE/debian/.download.XXXXXX")
        # apt downloads as its sandbox user _apt when it may write the directory.
        if getent passwd _apt >/dev/null; then chown _apt "$tmp"; fi
        (cd "$tmp" && apt-get download -q "$pkg") >"$LOG/apt-download.txt" 2>&1 ||
            { cat "$LOG/apt-download.txt" >&2; rm -rf -- "$tmp"; WHY="apt-get download $pkg failed"; return 1; }
        deb=$(find "$tmp" -maxdepth 1 -name '*.deb' -print -quit)
        dpkg -x "$deb" "$tmp/root"
        kver=$(find "$tmp/root/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n 1)
        resolve_modules "$tmp/root/lib/modules/$kver" "$tmp/root/lib/modules/$kver/modules.builtin" ||
            { rm -rf -- "$tmp"; return 1; }
        # Keep only what the guest needs: the kernel and the virtio-net modules. The
        # directory appears in the cache complete, by one rename, so that two runs at
        # the same time (two test processes, say) cannot see half of it.
        local keep=$tmp/keep
        mkdir -p "$keep/modules"
        cp "$tmp/root/boot/vmlinuz-$kver" "$keep/vmlinuz"
        cp "$tmp/root/lib/modules/$kver/modules.builtin" "$keep/"
        cp "${MODULE_FILES[@]}" "$keep/modules/"
        printf '%s\n' "$kver" >"$keep/kernel-release"
        basename -- "$deb" >"$keep/package"
        touch "$keep/.complete"
        chmod 755 "$keep"
        [[ -e $dir/.complete ]] || rm -rf -- "$dir"    # left over by an older version
        mv -T -- "$keep" "$dir" 2>/dev/null || true     # fails if another run was first
        rm -rf -- "$tmp"
        [[ -e $dir/.complete ]] || { WHY="could not store the kernel in $dir"; return 1; }
    fi
    resolve_modules "$dir/modules" "$dir/modules.builtin" || return 1
    KERNEL_IMAGE=$dir/vmlinuz
    KERNEL_DESC="Debian's $(cat "$dir/package"), cached in $dir"
    KERNEL_ID=$pkg
}

# ---- 3. the initramfs -----------------------------------------------------------------
# Builds (or finds in the cache) a gzipped newc cpio: busybox, /init, the modules.
build_initramfs() {
    local key stage name out f
    key=$( {
        cat "$INIT_SCRIPT" "$BUSYBOX"
        for f in "${MODULE_FILES[@]}"; do basename -- "$f"; cat "$f"; done
    } | sha256sum | cut -c1-12)
    out=$CACHE/initramfs/$KERNEL_ID-$key.cpio.gz
    INITRAMFS=$out
    if [[ -s $out ]]; then
        INITRAMFS_NOTE="cached"
        return 0
    fi
    stage=$LOG/initramfs
    rm -rf -- "$stage"
    mkdir -p "$stage"/{bin,dev,proc,sys,lib/modules/tapbook}
    cp "$BUSYBOX" "$stage/bin/busybox"
    cp "$INIT_SCRIPT" "$stage/init"
    chmod 755 "$stage/init"
    # The kernel opens /dev/console for init before anything could mount devtmpfs.
    mknod -m 600 "$stage/dev/console" c 5 1
    for f in "${MODULE_FILES[@]}"; do
        name=$(basename -- "$f")
        name=${name%%.ko*}
        # busybox insmod reads plain ELF only; distributions compress their modules.
        case $f in
            *.ko) cp "$f" "$stage/lib/modules/tapbook/$name.ko" ;;
            *.ko.xz) xz -dc "$f" >"$stage/lib/modules/tapbook/$name.ko" ;;
            *.ko.zst) zstd -qdc "$f" >"$stage/lib/modules/tapbook/$name.ko" ;;
            *.ko.gz) gzip -dc "$f" >"$stage/lib/modules/tapbook/$name.ko" ;;
            *) die "do not know how to unpack $f" ;;
        esac
        printf '%s\n' "$name" >>"$stage/lib/modules/tapbook/load-order"
    done
    touch "$stage/lib/modules/tapbook/load-order"
    mkdir -p "$CACHE/initramfs"
    # Written under a name of its own, then renamed: a run at the same time may do the
    # same, and either result is the same file.
    local part
    part=$(mktemp "$out.XXXXXX")
    (cd "$stage" && find . -print0 | LC_ALL=C sort -z |
        cpio --null --create --format=newc --owner=0:0 --quiet | gzip -9n) >"$part"
    chmod 644 "$part"
    mv -f -- "$part" "$out"
    INITRAMFS_NOTE="built"
}

# ---- 5. booting the guest -----------------------------------------------------------

# guest_state: what the guest's console says so far.
guest_state() {
    local log=$1
    if grep -q '\[guest\] no eth0' "$log"; then echo no-eth0
    elif grep -qE '\[guest\] (done|shell:|staying up)' "$log"; then echo finished
    elif grep -q '\[guest\] init started' "$log"; then echo init
    else echo starting
    fi
}

# watch_guest ACCEL LOG LAUNCH_PID: waits until the guest has finished its pings (or
# failed) and prints one of: finished, accel-failed, no-eth0, timeout, exited.
watch_guest() {
    local accel=$1 log=$2 launch=$3 state init_deadline deadline now
    now=${EPOCHREALTIME%.*}
    deadline=$((now + BOOT_TIMEOUT))
    init_deadline=$deadline
    if [[ $accel == kvm ]] && ((${#ACCELS[@]} > 1)); then
        init_deadline=$((now + KVM_WAIT))
    fi
    while :; do
        state=$(guest_state "$log")
        case $state in
            finished | no-eth0) echo "$state"; return 0 ;;
        esac
        if ! kill -0 "$launch" 2>/dev/null; then
            echo exited
            return 0
        fi
        now=${EPOCHREALTIME%.*}
        if [[ $state == starting ]] && ((now >= init_deadline)); then
            if [[ $accel == kvm ]]; then echo accel-failed; else echo timeout; fi
            return 0
        fi
        if ((now >= deadline)); then
            echo timeout
            return 0
        fi
        sleep 0.1
    done
}

# boot_guest ACCEL MODE: starts QEMU in the namespace and sets VERDICT.
boot_guest() {
    local accel=$1 mode=$2 serial=$LOG/serial-$1.txt
    local wrap=() serial_opt=stdio
    [[ $mode == shell ]] && serial_opt=mon:stdio
    # ANCHOR: qemu
    QEMU_CMD=(qemu-system-x86_64 -name tapbook-guest -machine pc -accel "$accel" -m 256 -smp 1
        -nodefaults -no-user-config -nographic -no-reboot -serial "$serial_opt"
        -kernel "$KERNEL_IMAGE" -initrd "$INITRAMFS"
        -append "console=ttyS0 loglevel=3 edd=off panic=-1 tapbook.mode=$mode tapbook.count=$COUNT"
        -netdev "tap,id=net0,ifname=$VM_TAP,script=no,downscript=no"
        -device "virtio-net-pci,netdev=net0,mac=$GUEST_MAC,romfile="
        -pidfile "$LOG/qemu.pid")
    # ANCHOR_END: qemu
    if [[ -n $STRACE_OUT ]]; then
        wrap=(strace -f -o "$LOG/strace.txt" -s 26 -x -e 'trace=openat,ioctl,read,writev,close')
    fi
    rm -f -- "$LOG/qemu.pid"
    : >"$serial"
    SERIAL=$serial
    BOOT_START=$EPOCHREALTIME
    if [[ $mode == shell ]]; then
        # The guest's console is this terminal; a watcher in the background stops
        # QEMU if the guest does not get going, and leaves its verdict in a file.
        (
            verdict=$(watch_guest "$accel" "$serial" $$)
            echo "$verdict" >"$LOG/verdict"
            case $verdict in
                accel-failed | timeout) stop_pid "$(qemu_pid || true)" ;;
            esac
        ) &
        WATCHER_PID=$!
        ip netns exec "$NETNS" "${wrap[@]}" "${QEMU_CMD[@]}" 2>&1 | tee "$serial" || true
        stop_pid "$WATCHER_PID"
        WATCHER_PID=
        VERDICT=$(cat "$LOG/verdict" 2>/dev/null || true)
        [[ -n $VERDICT ]] || VERDICT=finished
        BOOT_TIME=$(elapsed "$BOOT_START")
        return 0
    fi
    # Started directly (not through in_ns, a function, which would fork a subshell), so
    # that $! is QEMU itself, or strace wrapping it.
    ip netns exec "$NETNS" "${wrap[@]}" "${QEMU_CMD[@]}" <"$LOG/console-in" >"$serial" 2>&1 &
    QEMU_LAUNCH_PID=$!
    VERDICT=$(watch_guest "$accel" "$serial" "$QEMU_LAUNCH_PID")
    BOOT_TIME=$(elapsed "$BOOT_START")
    case $VERDICT in
        finished) ;;
        *)
            stop_pid "$(qemu_pid || true)"
            stop_pid "$QEMU_LAUNCH_PID"
            QEMU_LAUNCH_PID=
            ;;
    esac
}

# ---- 2. kernel --------------------------------------------------------------------
section "2. The guest's kernel and initramfs"
KERNELS=()
case $KERNEL_CHOICE in
    auto) KERNELS=(host debian) ;;
    *) KERNELS=("$KERNEL_CHOICE") ;;
esac
mkdir -p "$CACHE"

# The module names in MODULE_FILES, each followed by a space.
module_names() {
    local f n
    for f in "${MODULE_FILES[@]}"; do
        n=$(basename -- "$f")
        printf '%s ' "${n%%.ko*}"
    done
}

# pick_kernel: the first usable kernel from KERNELS (which it shortens), with its initramfs.
pick_kernel() {
    local which
    while ((${#KERNELS[@]})); do
        which=${KERNELS[0]}
        KERNELS=("${KERNELS[@]:1}")
        WHY=
        if "use_${which}_kernel"; then
            build_initramfs
            say "    kernel:    $KERNEL_DESC"
            say "    modules:   $(module_names)(insmod in this order; the rest is built in)"
            say "    initramfs: $INITRAMFS ($INITRAMFS_NOTE, $(du -k "$INITRAMFS" | cut -f1) KiB: busybox, scripts/vm/init.sh, the modules)"
            return 0
        fi
        case $which in
            host) say "    not this machine's kernel: $WHY" ;;
            debian) say "    not Debian's cloud kernel: $WHY" ;;
        esac
    done
    die "no usable guest kernel (see above)"
}
pick_kernel

# ---- 3. the lab ---------------------------------------------------------------------
section "3. The lab, in network namespace $NETNS"
NS_CREATED=1
if ! "$ROOT/scripts/setup.sh" --netns "$NETNS" --user "$LAB_USER" >"$LOG/setup.txt" 2>&1; then
    cat "$LOG/setup.txt" >&2
    die "scripts/setup.sh failed"
fi
say "    \$ scripts/setup.sh --netns $NETNS --user $LAB_USER"
say "      (tap4, persistent, owned by $LAB_USER, with $HOST_ADDR, up: the lab of the earlier chapters)"
# ANCHOR: lab
# On a bridge the ports are wires, and the host's address belongs to the bridge itself:
# with it on tap4, the host's route to 172.16.1.0/24 would send its replies to the guest
# out of tap4 straight to our responder, never across the bridge.
shown ip addr del "$HOST_ADDR" dev "$RESPONDER_TAP"
# A fixed MAC for the host's side, so that runs (and the book) agree; without one the
# bridge takes the lowest MAC of its ports, which are random.
shown ip link add "$BRIDGE" address "$HOST_MAC" type bridge
shown ip link set "$RESPONDER_TAP" master "$BRIDGE"
# A persistent TAP for QEMU made in advance (as libvirt does), so it is on the bridge
# before the guest boots; QEMU attaches to it by name and adds the flags it wants.
shown ip tuntap add dev "$VM_TAP" mode tap user root
shown ip link set "$VM_TAP" master "$BRIDGE" up
shown ip addr add "$HOST_ADDR" dev "$BRIDGE"
shown ip link set "$BRIDGE" up
# ANCHOR_END: lab
shown bridge link show

# ---- 4. the responder ---------------------------------------------------------------
section "4. 05_full_responder on $RESPONDER_TAP, as $LAB_USER"
if [[ -z $PCAP ]]; then
    PCAP=$LOG/responder.pcap
    install -m 644 -o "$LAB_USER" /dev/null "$PCAP"
fi
LAB_UID=$(id -u -- "$LAB_USER")
LAB_GID=$(id -g -- "$LAB_USER")
say "    \$ $(show_cmd "$(basename -- "$BIN")" --iface "$RESPONDER_TAP" --pcap "$PCAP")"
# Started directly, not through a function: ip netns exec and setpriv exec in turn, so
# $! is the responder itself and our SIGTERM reaches it.
ip netns exec "$NETNS" setpriv --reuid "$LAB_UID" --regid "$LAB_GID" --clear-groups -- \
    "$BIN" --iface "$RESPONDER_TAP" --pcap "$PCAP" >"$LOG/responder.txt" 2>&1 &
RESPONDER_PID=$!
for _ in $(seq 200); do
    in_ns ip -o link show "$RESPONDER_TAP" | grep -q LOWER_UP && break
    kill -0 "$RESPONDER_PID" 2>/dev/null || break
    sleep 0.05
done
in_ns ip -o link show "$RESPONDER_TAP" | grep -q LOWER_UP ||
    { cat "$LOG/responder.txt" >&2; die "the responder did not attach to $RESPONDER_TAP"; }
say "    attached (pid $RESPONDER_PID): $(head -n 1 "$LOG/responder.txt")"

# ---- 5. the guest -------------------------------------------------------------------
MODE="batch"
((SHELL_MODE)) && MODE=shell
((KEEP)) && MODE=keep
if ((SHELL_MODE)); then
    [[ -t 0 && -t 1 ]] || die "--shell needs a terminal"
    say ""
    say "The guest's console will be this terminal. While the guest runs, look at the host's"
    say "side from another terminal, e.g.:  sudo ip netns exec $NETNS bridge fdb show br $BRIDGE"
else
    mkfifo -m 600 "$LOG/console-in"
    # Read-write, so opening it does not wait for QEMU; QEMU reads the guest's console
    # input from it, and we write the "poweroff" line the guest waits for.
    exec {CTL}<>"$LOG/console-in"
fi

ACCELS=()
case $ACCEL_CHOICE in
    auto)
        if [[ -c /dev/kvm && -r /dev/kvm && -w /dev/kvm ]]; then ACCELS=(kvm tcg); else ACCELS=(tcg); fi ;;
    *) ACCELS=("$ACCEL_CHOICE") ;;
esac
case $ACCEL_CHOICE in
    auto) ACCEL_NOTE="TCG (software emulation): /dev/kvm is not there or not usable" ;;
    *) ACCEL_NOTE="${ACCEL_CHOICE^^}, as --accel $ACCEL_CHOICE asked" ;;
esac

section "5. Booting the guest (QEMU ${QEMU_VERSION:=$(qemu-system-x86_64 --version | sed -n '1s/.*version \([^ ]*\).*/\1/p')}) on $VM_TAP"
while :; do
    accel=${ACCELS[0]}
    boot_guest "$accel" "$MODE"
    case $VERDICT in
        finished) break ;;
        accel-failed)
            say "    KVM did not get the guest to its init within $KVM_WAIT s; the last console line:"
            clean_console "$SERIAL" | grep -v -e '^\s*$' -e 'terminating on signal' | tail -n 1 | indent
            say "    (KVM inside a virtual machine often fails like this) -> falling back to TCG"
            ACCEL_NOTE="TCG (software emulation): /dev/kvm is there but KVM did not boot the guest"
            ACCELS=("${ACCELS[@]:1}")
            ;;
        no-eth0)
            say "    $KERNEL_DESC booted, but brought up no virtio-net NIC; trying the next kernel"
            pick_kernel
            ;;
        *)
            clean_console "$SERIAL" | tail -n 30 | indent >&2
            die "the guest did not finish its pings ($VERDICT after $(elapsed "$BOOT_START") s; console above)"
            ;;
    esac
    ((${#ACCELS[@]})) || die "no accelerator left to try"
done
if [[ $accel == kvm ]]; then ACCEL_NOTE="KVM (hardware virtualization)"; fi

if ((SHELL_MODE)); then
    section "6. The guest has powered off (its console was this terminal)"
    section "7. The bridge forgot the guest's MAC when QEMU closed $VM_TAP (no carrier: port disabled)"
    in_ns bridge fdb show br "$BRIDGE" | grep -v ' self' | indent
else
    # Taken while the guest is still up: when QEMU closes its TAP the port loses its
    # carrier and the bridge forgets the MACs it learnt there.
    {
        say "    \$ bridge fdb show br $BRIDGE | grep -v self      (without the ports' multicast entries)"
        in_ns bridge fdb show br "$BRIDGE" | grep -v ' self' | indent
        say ""
        say "    TAP flags (/sys/class/net/IFACE/tun_flags) while both programs are attached:"
        for dev in "$RESPONDER_TAP" "$VM_TAP"; do
            flags=$(in_ns cat "/sys/class/net/$dev/tun_flags")
            say "      $dev: $(describe_tun_flags "$flags")"
        done
        # What each program told the kernel it can take (TUNSETOFFLOAD): frames with the
        # checksum left to finish, and TCP segments larger than the MTU.
        say ""
        if command -v ethtool >/dev/null; then
            say "    Offloads the kernel may use towards each program (ethtool -k IFACE):"
            for dev in "$RESPONDER_TAP" "$VM_TAP"; do
                say "      $dev: $(in_ns ethtool -k "$dev" |
                    awk -F': ' '/^(tx-checksumming|tcp-segmentation-offload):/ { printf "%s%s %s", sep, $1, $2; sep = ", " }')"
            done
        else
            say "    (install ethtool to see the offloads each program accepted)"
        fi
    } >"$LOG/snapshot.txt"
    if ((KEEP)); then
        LEAVE_RUNNING=1
    else
        printf 'poweroff\n' >&"$CTL"
        for _ in $(seq 200); do
            kill -0 "$QEMU_LAUNCH_PID" 2>/dev/null || break
            sleep 0.05
        done
    fi
    section "6. The guest's console (QEMU's -serial stdio), booted with $ACCEL_NOTE"
    clean_console "$SERIAL" | indent
    say "    (the guest reached its results $BOOT_TIME s after QEMU started)"
    section "7. The host's view while the guest was up"
    cat "$LOG/snapshot.txt"
fi

# ---- 8. the responder's side --------------------------------------------------------
if ((KEEP)); then
    section "8. The responder so far (it keeps running)"
    indent <"$LOG/responder.txt"
else
    section "8. The responder's output, stopped with SIGTERM (it prints its counters)"
    kill -TERM "$RESPONDER_PID"
    status=0
    wait "$RESPONDER_PID" || status=$?
    RESPONDER_PID=
    indent <"$LOG/responder.txt"
    ((status == 0)) || die "the responder exited with status $status"
fi

section "9. The frames on $RESPONDER_TAP, from the responder's --pcap file"
if command -v tshark >/dev/null; then
    say "    \$ tshark -r $(basename -- "$PCAP") -n"
    tshark -r "$PCAP" -n 2>&1 | grep -v '^Running as user "root"' | indent || true
elif command -v tcpdump >/dev/null; then
    say "    \$ tcpdump -r $(basename -- "$PCAP") -n -e"
    tcpdump -r "$PCAP" -n -e 2>/dev/null | indent || true
else
    say "    (install tshark or tcpdump to see a summary; the file is $PCAP)"
fi

if [[ -n $STRACE_OUT ]]; then
    section "10. QEMU's system calls on its TAP (strace; the whole trace: $STRACE_OUT.all)"
    cp -- "$LOG/strace.txt" "$STRACE_OUT.all"
    # The descriptor QEMU got for /dev/net/tun: every ioctl on it, and its first frames
    # read and written until it is closed. After the first two frames, multicast ones
    # (the IPv6 and IGMP chatter of the host's side) are left out, and reads that found
    # nothing (EAGAIN).
    awk '
        # Is the frame in this read/writev line multicast? Its buffer starts with the
        # virtio-net header (10 or 12 zero bytes here), then the destination MAC.
        function multicast(line,   i, s) {
            i = index(line, "\"")
            if (!i) return 0
            s = substr(line, i + 1)
            while (substr(s, 1, 4) == "\\x00") s = substr(s, 5)
            return substr(s, 1, 8) == "\\x33\\x33" || substr(s, 1, 12) == "\\x01\\x00\\x5e"
        }
        # strace -f splits a call that another thread interrupted into "<unfinished ...>"
        # and "<... NAME resumed>" lines; put them back together.
        / <unfinished \.\.\.>$/ { sub(/ <unfinished \.\.\.>$/, ""); pending[$1] = $0; next }
        /<\.\.\. [a-z0-9_]+ resumed>/ {
            if (!($1 in pending)) next
            rest = $0
            sub(/^[0-9]+ +<\.\.\. [a-z0-9_]+ resumed> ?/, "", rest)
            $0 = pending[$1] rest
            delete pending[$1]
        }
        !fd && /openat\(AT_FDCWD, "\/dev\/net\/tun"/ { fd = $NF; print; next }
        !fd { next }
        $0 ~ ("ioctl\\(" fd ",") { print; next }
        $0 ~ ("(read|writev)\\(" fd ",") && !/EAGAIN/ {
            frames++
            if (frames <= 2 || (shown < 12 && !multicast($0))) { print; shown++ }
            else left_out++
            next
        }
        $0 ~ ("close\\(" fd "\\)") {
            printf "   ... %d more frames left out (multicast, or after the first 12)\n", left_out
            print
            exit
        }' "$LOG/strace.txt" >"$STRACE_OUT"
    indent <"$STRACE_OUT"
fi

# ---- result ---------------------------------------------------------------------------
section "Result"
if ((SHELL_MODE)); then
    say "    the guest ran with $ACCEL_NOTE; its console was this terminal."
    say "    took $(elapsed "$START") s in all"
    exit 0
fi
summary=$(clean_console "$SERIAL" | grep -A1 -F -- "--- $TB_RESPONDER_IP ping statistics ---" | tail -n 1)
received=$(sed -n 's/.* \([0-9][0-9]*\) packets received.*/\1/p' <<<"$summary")
say "    guest's ping of our responder ($TB_RESPONDER_IP): ${summary:-no summary}"
say "    kernel: $KERNEL_DESC"
say "    accelerator: $ACCEL_NOTE"
say "    the guest reached its results $BOOT_TIME s after QEMU started"
say "    took $(elapsed "$START") s in all"
if ((KEEP)); then
    qpid=$(qemu_pid || true)
    say ""
    say "The lab is still running in network namespace $NETNS:"
    say "  guest $GUEST_IP: QEMU pid $qpid, console log $SERIAL"
    say "  responder $TB_RESPONDER_IP: pid $RESPONDER_PID, output $LOG/responder.txt, capture $PCAP"
    say "Try:   sudo ip netns exec $NETNS ping -c 3 $GUEST_IP"
    say "       sudo ip netns exec $NETNS bridge fdb show br $BRIDGE"
    say "Stop:  sudo kill $qpid $RESPONDER_PID; sudo ip netns del $NETNS; sudo rm -r $LOG"
fi
[[ ${received:-0} -gt 0 ]] || die "the guest's pings to $TB_RESPONDER_IP got no replies"
