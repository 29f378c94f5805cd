#!/usr/bin/env bash
# scripts/book-output-vmm.sh -- record, for the book's chapter "How real VMMs use TAP",
# the system calls QEMU makes on its tap next to the ones 01_open_clone makes.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: sudo $TB_PROG [OPTIONS]

Record what a real VMM does to its tap, for book/src/real-vmms.md. Inside a
network namespace created for the purpose (and removed again afterwards):
  1. a persistent tap 'tapq0'; qemu-system-x86_64 started on it with
     -netdev tap,ifname=tapq0,script=no,downscript=no -device virtio-net-pci,
     under strace -f -y -e trace=openat,ioctl, with no guest at all (the firmware
     boots, finds no disk and waits); stopped by its PID after a few seconds;
  2. the same with two queues on a multi_queue tap 'tapq1';
  3. 01_open_clone on a persistent tap4 under the same strace;
  4. what TUNGETFEATURES says on this kernel (needs python3; skipped without).
Only the lines about /dev/net/tun are kept; each is prefixed with the name of the
thread that made it (QEMU runs with -name ...,debug-threads=on to name them).

Writes into book/src/output/ (or --out DIR):
  vmm-qemu-strace.txt     QEMU's opening sequence
  vmm-qemu-state.txt      what the kernel shows about tapq0 while QEMU holds it
  vmm-qemu-mq-strace.txt  the same with queues=2
  vmm-ours-strace.txt     01_open_clone's opening sequence
  vmm-features.txt        TUNGETFEATURES, decoded

Needs root (namespaces), qemu-system-x86_64 and strace:
  apt-get install qemu-system-x86 strace
Builds the chapter programs first (cargo build --release --bins, as the user
behind sudo when there is one; honours CARGO_TARGET_DIR).

Options:
  --netns NAME      the namespace to create and remove (default: tapbook-vmm-PID);
                    it must not exist yet
  --out DIR         where to write the files (default: book/src/output)
  --seconds N       how long QEMU runs before it is stopped (default: 2)
  --no-build        use the binaries already built
  -h, --help        this help
EOF
}

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
NS=tapbook-vmm-$$
OUT=$ROOT/book/src/output
SECONDS_TO_RUN=2
BUILD=1

tb_split_args "$@"; set -- "${TB_ARGS[@]}"
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --netns) need_value "$1" $#; NS=$2; shift 2 ;;
        --out) need_value "$1" $#; OUT=$2; shift 2 ;;
        --seconds) need_value "$1" $#; need_number "$1" "$2"; SECONDS_TO_RUN=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        *) unknown_option "$1" ;;
    esac
done
TB_NETNS=$NS
validate_common
need_root "$@"
for tool in ip strace qemu-system-x86_64 python3; do
    command -v "$tool" >/dev/null ||
        die "$tool is missing: apt-get install iproute2 strace qemu-system-x86 python3"
done
netns_exists && die "network namespace $NS exists already; choose another with --netns"
mkdir -p -- "$OUT"
OUT=$(cd -- "$OUT" && pwd)

# ---- the chapter program -----------------------------------------------------------
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET == /* ]] || TARGET=$ROOT/$TARGET
if ((BUILD)); then
    step "building the chapter programs (cargo build --release --bins)"
    (cd "$ROOT" && as_invoking_user cargo build --release --bins --quiet)
fi
OPEN_CLONE=$TARGET/release/01_open_clone
[[ -x $OPEN_CLONE ]] || die "$OPEN_CLONE is missing: run without --no-build"

# ---- the namespace, removed whatever happens ----------------------------------------
WORK=$(mktemp -d)
TRACER_PID=
QEMU_PID=
cleanup() {
    if [[ -n $QEMU_PID ]] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill -KILL "$QEMU_PID" 2>/dev/null || true
    fi
    if [[ -n $TRACER_PID ]]; then
        wait "$TRACER_PID" 2>/dev/null || true
    fi
    ip netns del "$NS" 2>/dev/null || true
    rm -rf -- "$WORK"
}
trap cleanup EXIT
# Run from / so that the traces do not show where the script was started.
cd /
ip netns add "$NS"
ip -n "$NS" link set lo up
step "network namespace $NS created"

# The kernel's names for the tun_flags bits (include/uapi/linux/if_tun.h).
decode_tun_flags() {
    local flags=$(($1)) names=() bit name
    for bit in 0x0001:tun 0x0002:tap 0x0010:napi 0x0020:napi_frags 0x0040:no_carrier \
        0x0100:multi_queue 0x0800:persist 0x1000:no_pi 0x2000:one_queue 0x4000:vnet_hdr; do
        name=${bit#*:}
        ((flags & ${bit%%:*})) && names+=("$name")
    done
    printf '%s\n' "${names[*]}"
}

# trace_qemu TAG TAP QEMU-ARGS...: run QEMU on TAP under strace for SECONDS_TO_RUN
# seconds; leaves the raw trace in $WORK/TAG.strace and the thread names (tid name
# per line) in $WORK/TAG.threads.
trace_qemu() {
    local tag=$1 tap=$2
    shift 2
    ip netns exec "$NS" strace -f -y -e trace=openat,ioctl -o "$WORK/$tag.strace" \
        qemu-system-x86_64 -name "tapbook,debug-threads=on" "$@" -nographic \
        </dev/null >"$WORK/$tag.console" 2>&1 &
    TRACER_PID=$!
    QEMU_PID=
    local _
    for _ in $(seq 100); do
        QEMU_PID=$(pgrep -P "$TRACER_PID" | head -n 1 || true)
        [[ -n $QEMU_PID ]] && ip -n "$NS" -o link show "$tap" | grep -q LOWER_UP && break
        kill -0 "$TRACER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z $QEMU_PID ]] || ! kill -0 "$QEMU_PID" 2>/dev/null; then
        cat "$WORK/$tag.console" >&2
        die "QEMU did not start (its output is above)"
    fi
    sleep "$SECONDS_TO_RUN"
    : >"$WORK/$tag.threads"
    local task
    for task in /proc/"$QEMU_PID"/task/"$QEMU_PID" /proc/"$QEMU_PID"/task/*; do
        printf '%s %s\n' "${task##*/}" "$(cat "$task/comm")" >>"$WORK/$tag.threads"
    done
    if [[ $tag == qemu ]]; then
        record_state "$tap"
    fi
    kill -TERM "$QEMU_PID"
    wait "$TRACER_PID" || true
    TRACER_PID=
    QEMU_PID=
}

# keep_tun_lines TAG: the lines of the trace about /dev/net/tun, each prefixed with the
# name of the thread that made the call instead of its number.
keep_tun_lines() {
    awk -v threads="$WORK/$1.threads" '
        BEGIN {
            # The first thread listed is the main one (its id is the process id).
            while ((getline line < threads) > 0) {
                tid = line; sub(/ .*/, "", tid)
                comm = line; sub(/^[0-9]+ /, "", comm)
                if (!(tid in name)) name[tid] = (++n == 1) ? "main" : comm
            }
        }
        /\/dev\/net\/tun/ {
            tid = $1
            sub(/^[0-9]+ +/, "")
            who = (tid in name) ? name[tid] : "pid " tid
            printf "%-12s %s\n", "[" who "]", $0
        }' "$WORK/$1.strace"
}

record_state() {
    local tap=$1 flags fd
    flags=$(ip netns exec "$NS" cat "/sys/class/net/$tap/tun_flags")
    {
        printf '$ cat /sys/class/net/%s/tun_flags\n%s   (%s)\n\n' "$tap" "$flags" \
            "$(decode_tun_flags "$flags")"
        printf '$ ip -d link show %s\n' "$tap"
        ip -n "$NS" -d link show "$tap"
        printf '\n$ grep iff /proc/QEMU/fdinfo/*     (QEMU'"'"'s descriptors attached to a tap)\n'
        for fd in /proc/"$QEMU_PID"/fdinfo/*; do
            if grep -q '^iff:' "$fd" 2>/dev/null; then
                printf 'fdinfo/%s: %s\n' "${fd##*/}" "$(grep '^iff:' "$fd" | tr -s '\t' ' ')"
            fi
        done
    } >"$OUT/vmm-qemu-state.txt"
}

# ---- 1. QEMU on a persistent tap -----------------------------------------------------
ip -n "$NS" tuntap add dev tapq0 mode tap
ip -n "$NS" link set tapq0 up
step "QEMU on tapq0 for ${SECONDS_TO_RUN} s under strace"
trace_qemu qemu tapq0 -netdev tap,id=n0,ifname=tapq0,script=no,downscript=no \
    -device virtio-net-pci,netdev=n0
{
    printf '$ strace -f -y -e trace=openat,ioctl qemu-system-x86_64 -netdev tap,id=n0,ifname=tapq0,script=no,downscript=no -device virtio-net-pci,netdev=n0 -nographic\n'
    printf '  (only the lines about /dev/net/tun; [thread] is the QEMU thread that made the call)\n\n'
    keep_tun_lines qemu
} >"$OUT/vmm-qemu-strace.txt"

# ---- 2. two queues -------------------------------------------------------------------
ip -n "$NS" tuntap add dev tapq1 mode tap multi_queue
ip -n "$NS" link set tapq1 up
step "QEMU with queues=2 on tapq1 for ${SECONDS_TO_RUN} s under strace"
trace_qemu qemu-mq tapq1 -netdev tap,id=n1,ifname=tapq1,script=no,downscript=no,queues=2 \
    -device virtio-net-pci,netdev=n1,mq=on,vectors=6
{
    printf '$ strace -f -y -e trace=openat,ioctl qemu-system-x86_64 -netdev tap,id=n1,ifname=tapq1,script=no,downscript=no,queues=2 -device virtio-net-pci,netdev=n1,mq=on,vectors=6 -nographic\n'
    printf '  (tapq1 was made with: ip tuntap add dev tapq1 mode tap multi_queue)\n\n'
    keep_tun_lines qemu-mq
} >"$OUT/vmm-qemu-mq-strace.txt"

# ---- 3. ours ---------------------------------------------------------------------------
ip -n "$NS" tuntap add dev tap4 mode tap
ip -n "$NS" link set tap4 up
step "01_open_clone on tap4 under strace"
ip netns exec "$NS" strace -f -y -e trace=openat,ioctl -o "$WORK/ours.strace" \
    "$OPEN_CLONE" </dev/null >"$WORK/ours.out" 2>&1 ||
    { cat "$WORK/ours.out" >&2; die "01_open_clone failed (its output is above)"; }
printf '%s main\n' "$(awk 'NR == 1 { print $1 }' "$WORK/ours.strace")" >"$WORK/ours.threads"
{
    printf '$ strace -f -y -e trace=openat,ioctl target/release/01_open_clone </dev/null\n'
    printf '  (only the lines about /dev/net/tun)\n\n'
    keep_tun_lines ours
} >"$OUT/vmm-ours-strace.txt"

# ---- 4. TUNGETFEATURES -----------------------------------------------------------------
if command -v python3 >/dev/null; then
    step "TUNGETFEATURES"
    # TUNGETFEATURES is _IOR('T', 207, unsigned int) = 0x800454cf; it works on a
    # descriptor that is not attached to any interface yet.
    features=$(python3 -c '
import fcntl, os, struct
fd = os.open("/dev/net/tun", os.O_RDWR)
print(hex(struct.unpack("I", fcntl.ioctl(fd, 0x800454CF, bytes(4)))[0]))')
    {
        printf 'TUNGETFEATURES on a fresh /dev/net/tun descriptor (kernel %s):\n' "$(uname -r)"
        printf '%s   (%s)\n' "$features" "$(decode_tun_flags "$features")"
    } >"$OUT/vmm-features.txt"
else
    warn "python3 is missing: $OUT/vmm-features.txt left as it was"
fi

# Lines wider than the book's column, continued on the next line (see book-output-wrap.py).
for f in vmm-qemu-strace vmm-qemu-state vmm-qemu-mq-strace vmm-ours-strace vmm-features; do
    [[ ! -f $OUT/$f.txt ]] || "$ROOT/scripts/book-output-wrap.py" "$OUT/$f.txt"
done

say ""
say "Wrote, in $OUT:"
for f in vmm-qemu-strace vmm-qemu-state vmm-qemu-mq-strace vmm-ours-strace vmm-features; do
    [[ -f $OUT/$f.txt ]] && say "  $f.txt ($(wc -l <"$OUT/$f.txt") lines)"
done
say "Namespace $NS removed."
