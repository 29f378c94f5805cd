#!/usr/bin/env bash
# scripts/bench.sh -- how fast is the full responder? Flood it with the kernel's own ping
# and compare it with the kernel itself and with the crudest possible user-space loop.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: sudo $TB_PROG [OPTIONS]

Flood-ping four responders with the kernel's own 'ping -f -l PRELOAD -q', at each
payload size, and print a table of replies per second and loss:
  kernel    the kernel answering itself over a veth pair between two network
            namespaces (no TAP, no user space: the in-kernel reference);
  bare      examples/bare_loop.rs: blocking read, swap the addresses, patch the
            ICMP checksum, write (the user-space bound);
  quiet     05_full_responder --quiet (every check, counters, no output);
  output    05_full_responder with its per-frame lines going to a file.
Each figure is the best of several rounds, run interleaved (one of each in turn),
because a shared machine is noisy; loss counts every round. The ratios are to the
bare loop at the same size.

Builds the release binaries first (as the user running the script), then needs root
for the namespaces: run as a user, it goes through sudo for that part. Everything
happens in namespaces it creates ($TB_PROG never touches the current one) and removes
again, also on failure or Ctrl-C. The table goes to stdout (markdown); progress to
stderr.

Options:
  --short             a quick check that everything works (CI): $SHORT_COUNT requests,
                      1 round; fails if a responder does not answer, never on
                      figures
  --count N           requests per figure (default: $DEFAULT_COUNT)
  --rounds N          rounds (default: $DEFAULT_ROUNDS)
  --sizes "A B"       ICMP payload sizes in bytes (default: "$DEFAULT_SIZES"; at most
                      1472, so that a frame fits the 1500-byte MTU)
  --preload N         requests in flight, ping's -l (default: $DEFAULT_PRELOAD)
  --cpus P,R          run ping on CPU P and the responders on CPU R (default: the
                      first and the last CPU). Left to the scheduler, the two share
                      a CPU in some runs and not in others, which halves or doubles
                      the figure; pinned, every run measures the same thing.
  --no-pin            leave the placement to the scheduler
  --no-realtime       run ping and the responders as ordinary processes. By
                      default they run with real-time priority (chrt --fifo 1), so
                      that whatever else the machine is doing (builds, fuzzers)
                      waits while they run, instead of deciding the figures. Both
                      sleep whenever they have nothing to do, so they never keep
                      the CPU from others for long.
  --save FILE         also write the table to FILE (e.g. book/src/output/bench.txt)
  --bin-dir DIR       use the binaries in DIR (05_full_responder and
                      examples/bare_loop) instead of building them
  --netns-prefix P    name the namespaces P-PID-... (default: $DEFAULT_PREFIX)
  -h, --help          this help

Reproduce the book's table:  scripts/bench.sh --save book/src/output/bench.txt
EOF
}

DEFAULT_COUNT=100000
DEFAULT_ROUNDS=5
DEFAULT_SIZES="56 1472"
DEFAULT_PRELOAD=64
DEFAULT_PREFIX=tb-bench
SHORT_COUNT=3000

COUNT=$DEFAULT_COUNT
ROUNDS=$DEFAULT_ROUNDS
SIZES=$DEFAULT_SIZES
PRELOAD=$DEFAULT_PRELOAD
PREFIX=$DEFAULT_PREFIX
SAVE=
BIN_DIR=
SHORT=0
CPUS=
PIN=1
REALTIME=1
tb_split_args "$@"; set -- "${TB_ARGS[@]}"
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --short) SHORT=1; COUNT=$SHORT_COUNT; ROUNDS=1; shift ;;
        --count) need_value "$1" $#; need_number "$1" "$2"; COUNT=$2; shift 2 ;;
        --rounds) need_value "$1" $#; need_number "$1" "$2"; ROUNDS=$2; shift 2 ;;
        --sizes) need_value "$1" $#; SIZES=$2; shift 2 ;;
        --preload) need_value "$1" $#; need_number "$1" "$2"; PRELOAD=$2; shift 2 ;;
        --cpus) need_value "$1" $#; CPUS=$2; shift 2 ;;
        --no-pin) PIN=0; shift ;;
        --no-realtime) REALTIME=0; shift ;;
        --save) need_value "$1" $#; SAVE=$2; shift 2 ;;
        --bin-dir) need_value "$1" $#; BIN_DIR=$2; shift 2 ;;
        --netns-prefix) need_value "$1" $#; PREFIX=$2; shift 2 ;;
        *) unknown_option "$1" ;;
    esac
done
for size in $SIZES; do
    if ! [[ $size =~ ^[0-9]+$ ]] || ((10#$size > 1472)); then
        die "--sizes wants payload sizes from 0 to 1472, not '$size'"
    fi
done
[[ -n ${SIZES// /} ]] || die "--sizes is empty"
[[ $PREFIX =~ ^[A-Za-z0-9_.-]{1,20}$ ]] || die "bad --netns-prefix '$PREFIX'"
if [[ -z $CPUS ]]; then
    CPUS=0,$(($(nproc) - 1))
fi
[[ $CPUS =~ ^([0-9]+),([0-9]+)$ ]] || die "--cpus wants two CPU numbers like 0,1, not '$CPUS'"
PING_CPU=${BASH_REMATCH[1]}
RESPONDER_CPU=${BASH_REMATCH[2]}

progress() { printf '%s\n' "$*" >&2; }

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)

# ---- 1. build, as the user who runs the script ---------------------------------------
if [[ -z $BIN_DIR ]]; then
    progress "Building 05_full_responder and examples/bare_loop (cargo build --release)"
    (cd "$ROOT" && cargo build --release --quiet --bin 05_full_responder --example bare_loop)
    target=$(cd "$ROOT" && cargo metadata --no-deps --format-version 1 |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    [[ -n $target ]] || die "cannot find cargo's target directory (cargo metadata)"
    BIN_DIR=$target/release
fi
RESPONDER=$BIN_DIR/05_full_responder
BARE=$BIN_DIR/examples/bare_loop
[[ -x $RESPONDER ]] || die "no $RESPONDER (build with: cargo build --release)"
[[ -x $BARE ]] || die "no $BARE (build with: cargo build --release --example bare_loop)"

# ---- 2. root, for the namespaces ---------------------------------------------------
if ! is_root; then
    forward=(--bin-dir "$BIN_DIR" --count "$COUNT" --rounds "$ROUNDS" --sizes "$SIZES"
        --preload "$PRELOAD" --netns-prefix "$PREFIX" --cpus "$CPUS")
    ((PIN)) || forward+=(--no-pin)
    ((REALTIME)) || forward+=(--no-realtime)
    [[ -n $SAVE ]] && forward+=(--save "$(realpath -m -- "$SAVE")")
    ((SHORT)) && forward+=(--short --count "$COUNT" --rounds "$ROUNDS")
    if command -v sudo >/dev/null; then
        progress "Not root: running the measurements through sudo."
        exec sudo --preserve-env=CI "$0" "${forward[@]}"
    fi
    if [[ -n ${CI:-} ]]; then
        die "needs root (network namespaces and a TAP device), and there is no sudo"
    fi
    say "SKIPPED $TB_PROG: needs root (network namespaces and a TAP device); run it with sudo"
    exit 0
fi
for tool in ip ping; do
    command -v "$tool" >/dev/null || die "'$tool' is missing (Debian: apt-get install iproute2 iputils-ping)"
done
[[ -e /dev/net/tun ]] || modprobe tun 2>/dev/null || true
[[ -e /dev/net/tun ]] || die "/dev/net/tun is missing (modprobe tun)"
PIN_PING=()
PIN_RESPONDER=()
# Pinning and real-time priority make the figures repeatable, but a container may not
# allow them: then say so and measure without.
if ((PIN)); then
    if ! taskset -c "$PING_CPU" true 2>/dev/null || ! taskset -c "$RESPONDER_CPU" true 2>/dev/null; then
        warn "cannot pin to CPUs $CPUS (taskset failed): leaving placement to the scheduler"
        PIN=0
    fi
fi
if ((REALTIME)) && ! chrt --fifo 1 true 2>/dev/null; then
    warn "cannot use real-time priority (chrt --fifo 1 failed): measuring without it"
    REALTIME=0
fi
if ((PIN)); then
    PIN_PING=(taskset -c "$PING_CPU")
    PIN_RESPONDER=(taskset -c "$RESPONDER_CPU")
fi
if ((REALTIME)); then
    PIN_PING=(chrt --fifo 1 "${PIN_PING[@]}")
    PIN_RESPONDER=(chrt --fifo 1 "${PIN_RESPONDER[@]}")
fi

# ---- 3. the namespaces ---------------------------------------------------------------
TAP_NS=$PREFIX-$$-tap      # tap4 at 172.16.1.1, the responders behind it at .2
KA_NS=$PREFIX-$$-ka        # veth: ping runs here, at 172.16.1.1 ...
KB_NS=$PREFIX-$$-kb        # ... and the kernel answers here, at 172.16.1.2
MAC=02:00:00:00:00:02
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tapbook-bench.XXXXXX")
CHILD=
CPU_START=

cleanup() {
    local status=$?
    if [[ -n $CHILD ]] && kill -0 "$CHILD" 2>/dev/null; then
        kill -KILL "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
    for ns in "$TAP_NS" "$KA_NS" "$KB_NS"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf -- "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

progress "Setting up namespaces $TAP_NS (tap4) and $KA_NS / $KB_NS (veth pair)"
"$ROOT/scripts/setup.sh" --netns "$TAP_NS" --user root >"$WORK/setup.log" 2>&1 ||
    { cat "$WORK/setup.log" >&2; die "scripts/setup.sh failed"; }
# The bare loop answers no ARP: the kernel gets our MAC once and for all, for every run.
ip -n "$TAP_NS" neigh replace "$TB_RESPONDER_IP" lladdr "$MAC" dev tap4 nud permanent

ip netns add "$KA_NS"
ip netns add "$KB_NS"
ip -n "$KA_NS" link add veth0 type veth peer name veth1 netns "$KB_NS"
ip -n "$KB_NS" link set veth1 address "$MAC"
ip -n "$KA_NS" addr add 172.16.1.1/24 dev veth0
ip -n "$KB_NS" addr add "$TB_RESPONDER_IP/24" dev veth1
for ns in "$KA_NS" "$KB_NS"; do
    ip -n "$ns" link set lo up
done
ip -n "$KA_NS" link set veth0 up
ip -n "$KB_NS" link set veth1 up
ip -n "$KA_NS" neigh replace "$TB_RESPONDER_IP" lladdr "$MAC" dev veth0 nud permanent

# ---- 4. one measurement ----------------------------------------------------------------
# The kernel's flood ping: -f sends the next request as soon as a reply comes back (or
# every 10 ms), -l keeps PRELOAD in flight. A responder that dies would leave ping
# sending 100 requests a second: timeout interrupts it as Ctrl-C would, and ping still
# prints its summary. (ping's own -w would stop at COUNT replies and call the requests
# still in flight lost.)
DEADLINE=$((5 + COUNT / 2000))
flood() { # NS SIZE -> ping's output
    timeout -s INT "$DEADLINE" ip netns exec "$1" "${PIN_PING[@]}" \
        ping -f -q -l "$PRELOAD" -c "$COUNT" -s "$2" "$TB_RESPONDER_IP" 2>&1 || true
}

carrier_on() {
    [[ $(ip netns exec "$TAP_NS" cat /sys/class/net/tap4/carrier 2>/dev/null) == 1 ]]
}

# start_responder PROGRAM ARGS... (stdout to $WORK/stdout): start it in the tap namespace
# and wait until it holds tap4 (the carrier comes on). ip netns exec and taskset exec
# in turn, so $! is the responder itself.
start_responder() {
    ip netns exec "$TAP_NS" "${PIN_RESPONDER[@]}" "$@" >"$WORK/stdout" 2>"$WORK/stderr" &
    CHILD=$!
    local _
    for _ in $(seq 200); do
        if carrier_on; then
            CPU_START=$(cpu_ns)
            return 0
        fi
        kill -0 "$CHILD" 2>/dev/null || break
        sleep 0.025
    done
    cat "$WORK/stderr" >&2
    die "$(basename -- "$1") did not attach to tap4"
}

# The CPU time the responder has used so far, in nanoseconds: the first field of
# /proc/PID/schedstat, user and kernel time together. The kernel's work to take in each
# reply and deliver it to ping's socket is done in the responder's write(2), so it
# counts as the responder's.
cpu_ns() {
    awk '{print $1}' "/proc/$CHILD/schedstat" 2>/dev/null || true
}

# stop_responder: SIGTERM, then wait; sets STATUS to its exit status and CPU_NS to the
# CPU time it used since it attached (so start-up is not counted).
stop_responder() {
    local end
    end=$(cpu_ns)
    CPU_NS=
    [[ -n $end && -n $CPU_START ]] && CPU_NS=$((end - CPU_START))
    STATUS=0
    kill -TERM "$CHILD" 2>/dev/null || true
    wait "$CHILD" 2>/dev/null || STATUS=$?
    CHILD=
}

# measure CONFIG SIZE: sets SENT, RECEIVED, RATE (replies per second, by ping's clock).
measure() {
    local config=$1 size=$2 out
    CPU_NS=
    case $config in
        kernel) out=$(flood "$KA_NS" "$size") ;;
        bare)
            start_responder "$BARE" tap4
            out=$(flood "$TAP_NS" "$size")
            stop_responder
            ;;
        quiet | output)
            if [[ $config == quiet ]]; then
                start_responder "$RESPONDER" --quiet
            else
                start_responder "$RESPONDER"
            fi
            out=$(flood "$TAP_NS" "$size")
            stop_responder
            if ((STATUS != 0)); then
                cat "$WORK/stderr" >&2
                die "05_full_responder ($config) exited with status $STATUS"
            fi
            ;;
    esac
    local summary
    summary=$(grep -E 'packets transmitted' <<<"$out" || true)
    if [[ ! $summary =~ ^([0-9]+)\ packets\ transmitted,\ ([0-9]+)\ received.*time\ ([0-9]+)ms ]]; then
        printf '%s\n' "$out" >&2
        die "$config, $size bytes: cannot read ping's summary"
    fi
    SENT=${BASH_REMATCH[1]}
    RECEIVED=${BASH_REMATCH[2]}
    local ms=${BASH_REMATCH[3]}
    ((RECEIVED > 0)) || die "$config, $size bytes: no reply at all ($summary)"
    ((ms > 0)) || ms=1
    RATE=$((RECEIVED * 1000 / ms))
    case $config in quiet | output) check_responder "$config" ;; esac
}

# check_responder CONFIG: the counters 05 printed on SIGTERM must account for the replies
# ping received, and with output on, there must be one "->" line per reply.
check_responder() {
    local sent
    sent=$(awk '/ICMP echo replies sent/ {print $1}' "$WORK/stdout")
    [[ -n $sent ]] || { cat "$WORK/stdout" "$WORK/stderr" >&2; die "05_full_responder printed no counters"; }
    LAST_COUNTED=$sent
    if [[ $1 == output ]]; then
        LAST_LINES=$(grep -c '^-> ' "$WORK/stdout" || true)
    fi
}

# ---- 5. the rounds, interleaved ----------------------------------------------------------
CONFIGS=(kernel bare quiet output)
declare -A BEST=() TX=() RX=() ALL=() CPU=()
for size in $SIZES; do
    for config in "${CONFIGS[@]}"; do
        BEST[$config/$size]=0 TX[$config/$size]=0 RX[$config/$size]=0
        ALL[$config/$size]='' CPU[$config/$size]=''
    done
done

progress "Flooding: $COUNT requests per figure, $ROUNDS round(s), payloads: $SIZES"
for ((round = 1; round <= ROUNDS; round++)); do
    for size in $SIZES; do
        # Rotate the order every round, so no configuration always runs first.
        for ((i = 0; i < ${#CONFIGS[@]}; i++)); do
            config=${CONFIGS[(i + round - 1) % ${#CONFIGS[@]}]}
            LAST_COUNTED='' LAST_LINES=''
            measure "$config" "$size"
            key=$config/$size
            TX[$key]=$((TX[$key] + SENT))
            RX[$key]=$((RX[$key] + RECEIVED))
            ALL[$key]+="${ALL[$key]:+ }$RATE"
            ((RATE > BEST[$key])) && BEST[$key]=$RATE
            per_reply=
            if [[ -n $CPU_NS ]]; then
                per_reply=$((CPU_NS / RECEIVED))
                if [[ -z ${CPU[$key]} ]] || ((per_reply < CPU[$key])); then
                    CPU[$key]=$per_reply
                fi
            fi
            progress "  round $round/$ROUNDS  $(printf '%4s bytes  %-6s  %7s replies/s  %s/%s answered  %s' \
                "$size" "$config" "$RATE" "$RECEIVED" "$SENT" "${per_reply:+$per_reply ns CPU/reply}")"
            if [[ -n $LAST_COUNTED ]] && ((LAST_COUNTED < RECEIVED)); then
                die "$config: ping got $RECEIVED replies but 05_full_responder counted $LAST_COUNTED"
            fi
            if [[ $config == output ]] && ((LAST_LINES < RECEIVED)); then
                die "output: $RECEIVED replies but only $LAST_LINES '->' lines in the output file"
            fi
        done
    done
done

# ---- 6. the table ----------------------------------------------------------------------
# The table is markdown (the book includes it): the backquotes are code spans, not
# command substitutions.
# shellcheck disable=SC2016
describe() {
    case $1 in
        kernel) echo 'the kernel itself, over veth' ;;
        bare) echo 'bare Rust loop (`examples/bare_loop.rs`)' ;;
        quiet) echo '`05_full_responder --quiet`' ;;
        output) echo '`05_full_responder > file`' ;;
    esac
}
# shellcheck disable=SC2016
report() {
    local cpu
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    printf 'Flood ping (`ping -f -q -l %s -c %s`), best of %s interleaved round(s) per figure;\n' \
        "$PRELOAD" "$COUNT" "$ROUNDS"
    local placement='ping and the responders placed by the scheduler'
    if ((PIN)); then
        placement="ping on CPU $PING_CPU, the responders on CPU $RESPONDER_CPU"
    fi
    if ((REALTIME)); then
        placement+=', both at real-time priority'
    fi
    printf 'loss over all rounds; %s. Linux %s, %s x %s, %s.\n\n' \
        "$placement" "$(uname -r)" "$(nproc)" "${cpu:-unknown CPU}" "$(date -u +%Y-%m-%d)"
    printf '| payload | responder | replies/s | loss | vs bare loop | CPU per reply | every round |\n'
    printf '|--------:|-----------|----------:|-----:|-------------:|--------------:|-------------|\n'
    local size config key bare loss ratio cpu
    for size in $SIZES; do
        bare=${BEST[bare/$size]}
        for config in "${CONFIGS[@]}"; do
            key=$config/$size
            loss=$(awk -v t="${TX[$key]}" -v r="${RX[$key]}" \
                'BEGIN { printf "%.2f%%", t ? 100 * (t - r) / t : 0 }')
            ratio=$(awk -v b="$bare" -v x="${BEST[$key]}" 'BEGIN { printf "%.2f", b ? x / b : 0 }')
            cpu=-
            [[ -n ${CPU[$key]} ]] && cpu=$(awk -v n="${CPU[$key]}" 'BEGIN { printf "%.2f µs", n / 1000 }')
            printf '| %s B | %s | %s | %s | %sx | %s | %s |\n' "$size" "$(describe "$config")" \
                "${BEST[$key]}" "$loss" "$ratio" "$cpu" "${ALL[$key]}"
        done
    done
}
TABLE=$(report)
printf '%s\n' "$TABLE"
if [[ -n $SAVE ]]; then
    printf '%s\n' "$TABLE" >"$SAVE"
    # Run through sudo, give the file to the user who asked for it.
    if [[ -n ${SUDO_UID:-} && -n ${SUDO_GID:-} ]]; then
        chown "$SUDO_UID:$SUDO_GID" -- "$SAVE"
    fi
    progress "Saved the table to $SAVE"
fi
