#!/usr/bin/env bash
# scripts/book-output-offloads.sh -- record, for the book's offloads chapter and the
# Performance appendix, what 09_offloads, the kernel's sockets, tshark and offload_bench
# print.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: sudo $TB_PROG [OPTIONS]

In a network namespace created for the purpose (removed again afterwards), with
a tap4 whose kernel side has a fixed MAC and no IPv6 (so that no multicast report
gets between the frames), record into book/src/output/:

  09-receive.txt      09_offloads reading a 300-byte datagram and an 8,000-byte
                      UDP_SEGMENT send (a partial checksum, then a superframe)
  09-tshark-raw.txt   tshark on the frames as read (--raw-pcap): checksums
                      "incorrect", and one 8,000-byte datagram
  09-tshark-wire.txt  tshark on the frames after finishing and cutting (--pcap)
  09-send.txt         09_offloads --send: superframes written, a kernel socket
                      receiving, nstat's UDP counters
  09-leftover.txt     the offloads left on the persistent tap4 after 09_offloads,
                      as 02_hexdump sees them; 05_full_responder still answering
                      ping; 09_offloads --plain putting them back
  09-queues.txt       a multi-queue tap4 read by 09_offloads --queues 2: which
                      flows come out of which queue
  09-bench.txt        offload_bench (it makes its own namespace, NS-bench-PID;
                      also shown in the Performance appendix)

Each recording shows the commands that ran, with NS for the namespace's name.
Needs root (namespaces), ip, tshark, nstat, python3. Builds the programs first
(cargo build --release --bins --example offload_bench, as the user behind sudo
when there is one). The programs run as root, as the book's commands show.

Options:
  --netns NAME        the namespace to create and remove (default: tb-offloads-PID);
                      it must not exist yet
  --out DIR           where to write the files (default: book/src/output)
  --bin-dir DIR       use the binaries in DIR (and DIR/examples/offload_bench)
                      instead of building them
  --bench-seconds N   seconds per row of the bench (default: 3)
  --no-bench          leave 09-bench.txt as it is
  -h, --help          this help
EOF
}

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
NS=tb-offloads-$$
OUT=$ROOT/book/src/output
BIN_DIR=
BENCH_SECONDS=3

tb_split_args "$@"; set -- "${TB_ARGS[@]}"
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --netns) need_value "$1" $#; NS=$2; shift 2 ;;
        --out) need_value "$1" $#; OUT=$2; shift 2 ;;
        --bin-dir) need_value "$1" $#; BIN_DIR=$2; shift 2 ;;
        --bench-seconds) need_value "$1" $#; BENCH_SECONDS=$2; shift 2 ;;
        --no-bench) BENCH_SECONDS=0; shift ;;
        *) unknown_option "$1" ;;
    esac
done
[[ $BENCH_SECONDS =~ ^[0-9]+$ ]] || die "--bench-seconds wants a whole number of seconds, not '$BENCH_SECONDS'"
TB_NETNS=$NS
validate_common
need_root "$@"
for tool in ip tshark nstat python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (scripts/doctor.sh says which package has it)"
done
netns_exists && die "network namespace $NS exists already; choose another with --netns"
mkdir -p -- "$OUT"
OUT=$(cd -- "$OUT" && pwd)

# ---- binaries -------------------------------------------------------------------------------
if [[ -z $BIN_DIR ]]; then
    build=(cargo build --release --bins --example offload_bench --quiet)
    step "building: $(show_cmd "${build[@]}")"
    (cd "$ROOT" && as_invoking_user "${build[@]}")
    TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
    [[ $TARGET == /* ]] || TARGET=$ROOT/$TARGET
    BIN_DIR=$TARGET/release
fi
for b in 02_hexdump 05_full_responder 09_offloads examples/offload_bench; do
    [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b is missing (build with: cargo build --release --bins --example offload_bench)"
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tapbook-offloads.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf -- "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
REC=$WORK/out
RUN=$WORK/run                 # the programs' working directory (the pcaps go there)
mkdir -p -- "$REC" "$RUN"

# ---- helpers ----------------------------------------------------------------------------------
NSX=(ip netns exec "$NS")
ns() { "${NSX[@]}" "$@"; }
P9=$BIN_DIR/09_offloads
FLOWS=(python3 "$ROOT/scripts/udp-flows.py")
# How the book shows the commands: from the top of the repository, NS for the namespace.
SHOW_NS="sudo ip netns exec NS"

# record FILE SHOWN CMD...: append "$ SHOWN" and the output of CMD (stdout and stderr).
record() {
    local file=$REC/$1 shown=$2
    shift 2
    printf '$ %s\n' "$shown" >>"$file"
    "$@" </dev/null >>"$file" 2>&1 || true
}

# start LOG CMD...: run CMD in the background (its output into $WORK/LOG); sets STARTED.
STARTED=
start() {
    local log=$WORK/$1
    shift
    "$@" </dev/null >"$log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
}

# stop PID: SIGTERM (what Ctrl-C does to our programs), and insist on a clean exit.
stop() {
    kill -TERM "$1"
    wait "$1" || die "the program (PID $1) did not exit 0 on SIGTERM"
}

wait_for() {
    local what=$1 tenths=$(($2 * 10))
    shift 2
    until "$@"; do
        ((tenths-- > 0)) || die "timed out waiting for $what"
        sleep 0.1
    done
}
carrier_on() { ns ip -o link show dev tap4 2>/dev/null | grep -q LOWER_UP; }
carrier_off() { ! carrier_on; }

expect() {
    grep -qF -- "$2" "$REC/$1" || die "$1 does not contain '$2': the run did not go as the book says. It reads:
$(sed 's/^/    /' "$REC/$1")"
}

# flows ARGS...: scripts/udp-flows.py send ARGS in the namespace.
flows() { ns "${FLOWS[@]}" send "$@"; }

# The kernel's side of tap4: a fixed MAC (the same bytes from one recording to the next),
# 172.16.1.1/24, a static neighbour for 172.16.1.2 (nobody behind tap4 answers ARP for
# 09_offloads) and no IPv6. MULTI_QUEUE=yes makes it multi-queue, with the commands shown
# into the file named by SHOW_INTO.
MULTI_QUEUE=no
SHOW_INTO=
lab() {
    local add=(ip tuntap add dev tap4 mode tap)
    [[ $MULTI_QUEUE == yes ]] && add+=(multi_queue)
    local steps=(
        "ip link del tap4"
        "${add[*]}"
        "ip link set tap4 address 02:00:00:00:00:01"
        "ip addr add 172.16.1.1/24 dev tap4"
        "ip link set tap4 up"
        "ip neigh replace 172.16.1.2 lladdr 02:00:00:00:00:02 dev tap4 nud permanent"
    )
    local s
    for s in "${steps[@]}"; do
        if [[ $s == "ip link del tap4" ]]; then
            ns ip link show dev tap4 >/dev/null 2>&1 || continue
        fi
        # shellcheck disable=SC2086 # each step is a list of words
        ns $s
        [[ -n $SHOW_INTO ]] && printf '$ sudo ip -n NS %s\n' "${s#ip }" >>"$REC/$SHOW_INTO"
    done
    return 0
}

# ---- the lab ---------------------------------------------------------------------------------
say "Recording in network namespace $NS."
ip netns add "$NS"
ns ip link set lo up
# No IPv6 on interfaces made from now on: no router solicitation, no multicast report.
ns sysctl -qw net.ipv6.conf.default.disable_ipv6=1
lab
step "lab ready: tap4, 172.16.1.1/24, IPv6 off"

# ---- receive: a partial checksum and a superframe ----------------------------------------------
step "receive"
F=09-receive.txt
shown="$SHOW_NS target/release/09_offloads --raw-pcap raw.pcap --pcap wire.pcap"
start receive.log "${NSX[@]}" env -C "$RUN" "$P9" --raw-pcap raw.pcap --pcap wire.pcap
pid=$STARTED
wait_for "09_offloads to attach" 10 carrier_on
flows --size 300
flows --size 8000 --segment 1000
sleep 0.5
stop "$pid"
{
    printf '$ %s\n' "$shown"
    printf '# meanwhile, in a second terminal, then Ctrl-C in the first:\n'
    printf '#   %s python3 scripts/udp-flows.py send --size 300\n' "$SHOW_NS"
    printf '#   %s python3 scripts/udp-flows.py send --size 8000 --segment 1000\n' "$SHOW_NS"
    cat "$WORK/receive.log"
} >"$REC/$F"
expect $F "gso_type=5 (UDP_L4) gso_size=1000"
expect $F "-> 8 frames of [1042, 1042, 1042, 1042, 1042, 1042, 1042, 1042] bytes"
expect $F "0 bad checksums, 0 errors"

tshark_run() { tshark -r "$RUN/$1" -o udp.check_checksum:TRUE "${@:2}" 2>/dev/null; }
F=09-tshark-raw.txt
record $F "tshark -r raw.pcap -o udp.check_checksum:TRUE -Y udp" tshark_run raw.pcap -Y udp
printf '\n' >>"$REC/$F"
# shellcheck disable=SC2016 # expanded by the inner bash
record $F "tshark -r raw.pcap -o udp.check_checksum:TRUE -Y 'frame.number == 1' -O udp | grep -m1 -A2 Checksum:" \
    bash -c 'tshark -r "$1" -o udp.check_checksum:TRUE -Y "frame.number == 1" -O udp 2>/dev/null | grep -m1 -A2 Checksum:' \
    sh "$RUN/raw.pcap"
expect $F "Len=8000 [UDP CHECKSUM INCORRECT]"
expect $F "Checksum: 0x5b69 incorrect"
F=09-tshark-wire.txt
record $F "tshark -r wire.pcap -o udp.check_checksum:TRUE -Y udp" tshark_run wire.pcap -Y udp
expect $F "UDP 1042 40000 → 9000 Len=1000"
if grep -q INCORRECT "$REC/$F"; then die "$F: a checksum is still wrong after 09_offloads finished it"; fi

# ---- send: superframes for the kernel to cut ----------------------------------------------------
step "send"
F=09-send.txt
ns nstat -n
start receiver.log "${NSX[@]}" "${FLOWS[@]}" receive --at 172.16.1.1:9001 --bytes 300000
receiver=$STARTED
wait_for "the receiving socket" 10 grep -q waiting "$WORK/receiver.log"
ns "$P9" --send 172.16.1.1:9001 --bytes 300000 >"$WORK/send.log" 2>&1 ||
    die "09_offloads --send failed: $(cat "$WORK/send.log")"
wait "$receiver" || die "the socket did not receive every byte: $(cat "$WORK/receiver.log")"
{
    printf '$ %s nstat -n      # counters to zero\n' "$SHOW_NS"
    printf '$ %s python3 scripts/udp-flows.py receive --at 172.16.1.1:9001 --bytes 300000 &\n' "$SHOW_NS"
    head -n 2 "$WORK/receiver.log"
    printf '$ %s target/release/09_offloads --send 172.16.1.1:9001 --bytes 300000\n' "$SHOW_NS"
    cat "$WORK/send.log"
    tail -n +2 "$WORK/receiver.log"
} >"$REC/$F"
record $F "$SHOW_NS nstat -z UdpInDatagrams UdpInErrors UdpInCsumErrors" \
    ns nstat -z UdpInDatagrams UdpInErrors UdpInCsumErrors
expect $F "the socket received 300000 bytes in 300 datagrams"
expect $F "in 5 writes of up to 65 datagrams"
grep -Eq '^UdpInCsumErrors +0 ' "$REC/$F" || die "$F: checksum errors counted"

# ---- what 09_offloads leaves on a persistent tap4 ------------------------------------------------
step "leftover offloads"
F=09-leftover.txt
start leftover.log "${NSX[@]}" "$P9"
pid=$STARTED
wait_for "09_offloads to attach" 10 carrier_on
stop "$pid"
printf '$ %s target/release/09_offloads      # then Ctrl-C\n' "$SHOW_NS" >"$REC/$F"
head -n 2 "$WORK/leftover.log" >>"$REC/$F"
# hexdump FILE: 02_hexdump while the two flows of 09-receive.txt go by; its frame lines.
hexdump() {
    start hexdump.log "${NSX[@]}" "$BIN_DIR/02_hexdump"
    local p=$STARTED
    wait_for "02_hexdump to attach" 10 carrier_on
    flows --size 300
    flows --size 8000 --segment 1000
    sleep 0.5
    stop "$p"
    {
        printf '$ %s target/release/02_hexdump > hexdump.txt\n' "$SHOW_NS"
        printf '# meanwhile, in a second terminal, then Ctrl-C in the first:\n'
        printf '#   %s python3 scripts/udp-flows.py send --size 300\n' "$SHOW_NS"
        printf '#   %s python3 scripts/udp-flows.py send --size 8000 --segment 1000\n' "$SHOW_NS"
        printf '$ grep "^#" hexdump.txt\n'
        grep '^#' "$WORK/hexdump.log"
    } >>"$REC/$F"
}
hexdump
expect $F "8042 bytes: IPv4 172.16.1.1 > 172.16.1.2 UDP"
# The responder of chapter 5, on the same tap4 with the offloads still on: ICMP is not
# offloaded, so ping is answered as before.
start responder.log "${NSX[@]}" "$BIN_DIR/05_full_responder" --quiet
pid=$STARTED
wait_for "05_full_responder to attach" 10 carrier_on
printf '$ %s target/release/05_full_responder --quiet &\n' "$SHOW_NS" >>"$REC/$F"
# shellcheck disable=SC2016 # expanded by the inner bash
record $F "$SHOW_NS ping -c 1 -s 1472 172.16.1.2 | grep received" \
    bash -c 'ip netns exec "$1" ping -c 1 -W 2 -s 1472 172.16.1.2 | grep received' sh "$NS"
stop "$pid"
expect $F "1 received"
# 09_offloads --plain sets the offloads back to none (open_with always sets them).
start plain.log "${NSX[@]}" "$P9" --plain
pid=$STARTED
wait_for "09_offloads --plain to attach" 10 carrier_on
stop "$pid"
printf '$ %s target/release/09_offloads --plain      # then Ctrl-C\n' "$SHOW_NS" >>"$REC/$F"
head -n 2 "$WORK/plain.log" >>"$REC/$F"
hexdump
expect $F "offloads none"
[[ $(grep -c '1042 bytes: IPv4' "$REC/$F") -eq 8 ]] ||
    die "$F: after --plain, 02_hexdump did not get eight 1042-byte datagrams"

# ---- two queues ---------------------------------------------------------------------------------
step "multiqueue"
F=09-queues.txt
printf '# tap4 remade as a multi-queue TAP (a TAP is one kind or the other, for good):\n' >"$REC/$F"
MULTI_QUEUE=yes SHOW_INTO=$F lab
start queues.log "${NSX[@]}" "$P9" --queues 2
pid=$STARTED
wait_for "09_offloads --queues 2 to attach" 10 carrier_on
flows --flows 8 --datagrams 5 --size 100
sleep 0.5
stop "$pid"
{
    printf '$ %s target/release/09_offloads --queues 2\n' "$SHOW_NS"
    printf '# meanwhile, in a second terminal, then Ctrl-C in the first:\n'
    printf '#   %s python3 scripts/udp-flows.py send --flows 8 --datagrams 5 --size 100\n' "$SHOW_NS"
    cat "$WORK/queues.log"
} >>"$REC/$F"
expect $F "every flow came out of one queue only"
for q in 0 1; do
    grep -q "^queue $q: .*, [1-9][0-9]* flows" "$REC/$F" || die "$F: queue $q received no flow"
done

# ---- the bench ----------------------------------------------------------------------------------
if ((BENCH_SECONDS > 0)); then
    step "offload_bench, $BENCH_SECONDS s per row"
    F=09-bench.txt
    bench=("$BIN_DIR/examples/offload_bench" --seconds "$BENCH_SECONDS" --netns-prefix "$NS-bench")
    shown="sudo target/release/examples/offload_bench --netns-prefix NS"
    ((BENCH_SECONDS == 3)) || shown+=" --seconds $BENCH_SECONDS"
    record $F "$shown" "${bench[@]}"
    expect $F "offload-summary rx_ratio="
    expect $F " csum_errors=0 mq_ratio="
fi

# ---- publish ------------------------------------------------------------------------------------
# Our own lines fit the column; a command line longer than it is continued with ' \'.
"$ROOT/scripts/book-output-wrap.py" "$REC"/*.txt
cp -- "$REC"/*.txt "$OUT"/
if [[ -n ${SUDO_UID:-} ]]; then
    chown -- "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$OUT"/09-*.txt
fi
say ""
say "Wrote $(find "$REC" -name '*.txt' | wc -l) files to $OUT: $(cd -- "$REC" && echo *.txt)"
say "Namespace $NS removed."
