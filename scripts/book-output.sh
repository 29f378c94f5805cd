#!/usr/bin/env bash
# scripts/book-output.sh -- record the real output the book shows, by running
# the chapter binaries against the kernel's own tools in a network namespace.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

DEFAULT_NETNS=tapbook-book
DEFAULT_OUT=book/src/output
# The recordings give the kernel's side of tap4 a fixed MAC address, so that
# the frames (and the IPv6 link-local address derived from the MAC) are the
# same from one recording to the next. A student's tap4 has a random one.
KERNEL_MAC=02:00:00:00:00:01

usage() {
    cat <<EOF
Usage: sudo $TB_PROG [OPTIONS]

Run every chapter binary (release build) the way the book tells a student to,
and save what they and the kernel's tools print into $DEFAULT_OUT/*.txt,
which the chapters include. Nothing shown in the book is typed by hand.

What it does:
  1. builds the binaries (cargo build --release --bins, as the user behind
     sudo when there is one) and copies them where --user can run them;
  2. creates the network namespace --netns and runs 'scripts/setup.sh' inside
     it, so tap4 belongs to --user, as after a student's 'sudo scripts/setup.sh';
  3. runs 01_open_clone ... 05_full_responder inside it as --user (no root),
     and drives them with ping, arping, tshark and scripts/capture.sh;
  4. checks that each run did what the book says (the replies came back),
     and only then replaces its files in the output directory (it leaves
     the files of other scripts there alone);
  5. deletes the namespace again, also on failure or Ctrl-C.
Every output file starts with the command a student would type ('\$ ...').
Times, ping identifiers and the like are left as they were measured.
Lines wider than the book's column are wrapped by book-output-wrap.py.
Takes about a minute. Needs root (network namespaces), ip, ping, arping,
tshark, strace, setpriv and python3.

Options:
  --netns NAME      namespace to create and delete (default: $DEFAULT_NETNS;
                    it must not exist yet)
  --user NAME       the unprivileged user who runs the binaries (default:
                    \$SUDO_USER, else nobody)
  --out DIR         where to write the files (default: $DEFAULT_OUT)
  --bin-dir DIR     use the binaries in DIR instead of building them
  -h, --help        this help
EOF
}

NETNS=$DEFAULT_NETNS
LAB_USER=
OUT=
BIN_DIR=
tb_split_args "$@"; set -- "${TB_ARGS[@]}"
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --netns) need_value "$1" $#; NETNS=$2; shift 2 ;;
        --user) need_value "$1" $#; LAB_USER=$2; shift 2 ;;
        --out) need_value "$1" $#; OUT=$2; shift 2 ;;
        --bin-dir) need_value "$1" $#; BIN_DIR=$2; shift 2 ;;
        --) shift; (($# == 0)) || die "unexpected arguments: $*" ;;
        *) unknown_option "$1" ;;
    esac
done
TB_NETNS=$NETNS
validate_common
need_root "$@"

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/$DEFAULT_OUT}
mkdir -p -- "$OUT"
OUT=$(cd -- "$OUT" && pwd)

for tool in ip ping arping tshark setpriv strace python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed (scripts/doctor.sh says which package has it)"
done
if [[ -z $LAB_USER ]]; then
    LAB_USER=$(unprivileged_user)
fi
LAB_UID=$(id -u -- "$LAB_USER" 2>/dev/null) || die "no such user: '$LAB_USER' (use --user NAME)"
LAB_GID=$(id -g -- "$LAB_USER")
((LAB_UID != 0)) || die "--user must not be root: the point is to run the binaries without privileges"
netns_exists && die "network namespace $NETNS already exists; pick another with --netns, or delete it: sudo ip netns del $NETNS"

# ---- cleanup, whatever happens ---------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tapbook-book.XXXXXX")
PIDS=()
NETNS_MADE=0
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    if ((NETNS_MADE)); then
        ip netns del "$NETNS" 2>/dev/null || true
    fi
    [[ -n ${KEEP_WORK:-} ]] || rm -rf -- "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. binaries -----------------------------------------------------------------
BINS=(01_open_clone 02_hexdump 03_arp_reply 04_icmp_reply 05_full_responder)
if [[ -z $BIN_DIR ]]; then
    build=(cargo build --release --bins --quiet)
    step "building: $(show_cmd "${build[@]}")"
    as_invoking_user "${build[@]}"
    target=$(cargo metadata --format-version 1 --no-deps |
        grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
    BIN_DIR=$target/release
fi
# A copy the unprivileged user can surely reach (the target directory may sit
# under a home directory it cannot enter). Runs in the work directory, so
# that '--pcap tapbook.pcap' is written there.
BIN=$WORK/bin
mkdir -p -- "$BIN"
for b in "${BINS[@]}"; do
    [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b is missing (build with: cargo build --release --bins)"
    install -m 0755 -- "$BIN_DIR/$b" "$BIN/$b"
done
chmod 0755 -- "$WORK" "$BIN"
RUN=$WORK/run                  # the working directory of the binaries
install -d -m 0755 -o "$LAB_UID" -g "$LAB_GID" -- "$RUN"
REC=$WORK/out                  # the new output files, moved to $OUT at the end
mkdir -p -- "$REC"

# ---- helpers ------------------------------------------------------------------------
# As arrays too, for `start`, which must exec the program itself so that its
# PID is the program's ('ip netns exec' and setpriv exec in turn).
NS=(ip netns exec "$NETNS")
# The programs name the network namespace they run in, in their Fix: lines (they find
# it in /run/netns). The book shows the commands a student types in a namespace of their
# own, unnamed, so the programs run with /run/netns hidden, as it is for the student.
HIDE_NETNS=(unshare --mount --propagation private sh -c 'mount -t tmpfs tapbook-hide /run/netns && exec "$@"' sh)
AS_USER=("${NS[@]}" "${HIDE_NETNS[@]}" setpriv --reuid "$LAB_UID" --regid "$LAB_GID" --clear-groups --)
ns() { "${NS[@]}" "$@"; }
as_user() { "${AS_USER[@]}" "$@"; }

# record FILE SHOWN CMD...: run CMD, save "$ SHOWN" and its output (stdout and
# stderr, as a terminal shows them) as FILE. Appends when FILE exists, so that
# one file can hold a short session of several commands.
record() {
    local file=$REC/$1 shown=$2
    shift 2
    [[ -e $file ]] && printf '\n' >>"$file"
    printf '$ %s\n' "$shown" >>"$file"
    (cd -- "$RUN" && "$@") </dev/null >>"$file" 2>&1 || true
}

# start NAME SHOWN CMD...: start CMD in the background, its output going to
# $WORK/NAME.log (headed by "$ SHOWN") and its input coming from $START_STDIN
# (opened in the background, as a FIFO blocks until it has a writer); sets
# STARTED to its PID.
STARTED=
START_STDIN=/dev/null
start() {
    local log=$WORK/$1.log shown=$2
    shift 2
    printf '$ %s\n' "$shown" >"$log"
    (cd -- "$RUN" && exec "$@" <"$START_STDIN") >>"$log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
}

# wait_for WHAT SECONDS TEST...: poll TEST every 0.1 s.
wait_for() {
    local what=$1 tenths=$(($2 * 10))
    shift 2
    until "$@"; do
        ((tenths-- > 0)) || die "timed out waiting for $what"
        sleep 0.1
    done
}
carrier_on() { ns ip -o link show dev tap4 | grep -q LOWER_UP; }
carrier_off() { ! carrier_on; }
# tshark (dumpcap) has opened its packet socket in the namespace.
capturing() { (($(ns cat /proc/net/packet | wc -l) > 1)); }

# stop PID SIGNAL NAME: deliver SIGNAL (INT is Ctrl-C) and wait for the exit;
# copy the program's log to the output file NAME.
stop() {
    local pid=$1 sig=$2 name=$3 rc=0
    kill "-$sig" "$pid" 2>/dev/null || true
    wait "$pid" || rc=$?
    cp -- "$WORK/$name.log" "$REC/$name.txt"
    return "$rc"
}

# expect FILE TEXT: the recording must contain TEXT, or the run went wrong.
expect() {
    grep -qF -- "$2" "$REC/$1" || die "$1 does not contain '$2': the run did not go as the book says. It reads:
$(sed 's/^/    /' "$REC/$1")"
}

# ---- 2. the lab ---------------------------------------------------------------------
say "Recording the book's output in network namespace $NETNS as user $LAB_USER."
ip netns add "$NETNS"
NETNS_MADE=1
ns ip link set lo up
# Inside the namespace, setup.sh prints exactly what 'sudo scripts/setup.sh'
# prints to a student.
record lab-setup.txt "sudo scripts/setup.sh" ns "$ROOT/scripts/setup.sh" --user "$LAB_USER"
expect lab-setup.txt "created persistent TAP tap4"
record lab-doctor.txt "scripts/doctor.sh" ns "$ROOT/scripts/doctor.sh" --user "$LAB_USER"
expect lab-doctor.txt "All checks passed"
# The whole course in one command (it makes and removes a namespace of its own).
record demo.txt "cargo lab demo" env -C "$ROOT" cargo lab demo
expect demo.txt "ICMP echo replies sent"
ns ip link set dev tap4 address "$KERNEL_MAC"
step "lab ready: tap4 owned by $LAB_USER, 172.16.1.1/24, MAC $KERNEL_MAC"

record tun-device.txt "stat -c '%n: %F %Hr:%Lr, mode %A' /dev/net/tun" \
    stat -c '%n: %F %Hr:%Lr, mode %A' /dev/net/tun
record tun-device.txt "grep -w tun /proc/misc" grep -w tun /proc/misc
record tun-device.txt "cat /sys/class/misc/tun/dev" cat /sys/class/misc/tun/dev
expect tun-device.txt "10:200"

# ---- chapter 1: 01_open_clone ---------------------------------------------------------
step "01_open_clone"
mkfifo -m 0644 -- "$WORK/enter"
START_STDIN=$WORK/enter
start 01-persistent "cargo run -q --bin 01_open_clone" "${AS_USER[@]}" "$BIN/01_open_clone"
START_STDIN=/dev/null
pid=$STARTED
exec 4>"$WORK/enter"         # the "terminal" the program waits on for Enter
wait_for "01_open_clone to attach" 10 carrier_on
wait_for "01_open_clone to print its report" 10 grep -q 'Press Enter' "$WORK/01-persistent.log"
record 01-while-open.txt "ip -d link show tap4" ns ip -d link show dev tap4
# Shown as a student finds their own process (pidof would list everyone's); the
# recording knows the PID.
record 01-while-open.txt "cat /proc/\$(pgrep -u \"\$USER\" -x 01_open_clone)/fdinfo/3" cat "/proc/$pid/fdinfo/3"
record 01-ebusy.txt "cargo run -q --bin 01_open_clone" as_user "$BIN/01_open_clone"
expect 01-ebusy.txt "EBUSY"
printf '\n' >&4              # press Enter
exec 4>&-
stop "$pid" INT 01-persistent
expect 01-persistent.txt "still exists: it is persistent"
expect 01-while-open.txt "LOWER_UP"
record 01-after-close.txt "ip link show tap4" ns ip link show dev tap4
expect 01-after-close.txt "NO-CARRIER"

# The system calls behind it: only those on the clone device (-P), the
# program's own output thrown away so that strace's (on stderr) remains.
strace_01() { as_user strace -P /dev/net/tun -e trace=openat,ioctl,fcntl,close "$BIN/01_open_clone" >/dev/null; }
record 01-strace.txt "strace -P /dev/net/tun -e trace=openat,ioctl,fcntl,close target/release/01_open_clone >/dev/null" \
    strace_01
expect 01-strace.txt "TUNSETIFF"

record 01-eperm.txt "cargo run -q --bin 01_open_clone -- --iface tap9" \
    as_user "$BIN/01_open_clone" --iface tap9
expect 01-eperm.txt "EPERM"
# As root, with CAP_NET_ADMIN: a transient interface that lives as long as the fd.
record 01-transient.txt "sudo target/release/01_open_clone --iface tap9" \
    ns "$BIN/01_open_clone" --iface tap9
expect 01-transient.txt "vanished with its last descriptor"
# For the exercises: a name pattern the kernel completes, and a multi-queue
# interface that a single-queue request may not attach to.
record 01-pattern.txt "sudo target/release/01_open_clone --iface 'tap%d'" \
    ns "$BIN/01_open_clone" --iface 'tap%d'
expect 01-pattern.txt "attached it to tap0"
ns ip tuntap add dev tap6 mode tap multi_queue user "$LAB_USER"
record 01-einval.txt "cargo run -q --bin 01_open_clone -- --iface tap6" \
    as_user "$BIN/01_open_clone" --iface tap6
expect 01-einval.txt "EINVAL"
ns ip link del dev tap6

# ---- chapter 2: 02_hexdump -------------------------------------------------------------
step "02_hexdump (about 10 s: waits for what a fresh interface sends by itself)"
# IPv6 configures tap4 once, at its first carrier after 'ip link set up': the
# 01_open_clone runs above used that up. Down and up again, as chapter 2 tells
# the student, so that 02_hexdump sees the whole start (MLD, DAD, RS).
ns ip link set dev tap4 down
ns ip link set dev tap4 up
start 02-capture "sudo scripts/capture.sh --duration 12" \
    "${NS[@]}" "$ROOT/scripts/capture.sh" --duration 12
capture_pid=$STARTED
wait_for "tshark to start capturing" 20 capturing
start 02-hexdump "cargo run -q --bin 02_hexdump" "${AS_USER[@]}" "$BIN/02_hexdump"
pid=$STARTED
wait_for "02_hexdump to attach" 10 carrier_on
sleep 6                        # IPv6: MLD reports, DAD, two router solicitations
record 02-ping.txt "ping -c 1 -W 2 172.16.1.2" ns ping -c 1 -W 2 172.16.1.2
record 02-neigh.txt "ip neigh show dev tap4" ns ip neigh show dev tap4
stop "$pid" INT 02-hexdump
wait "$capture_pid" || true   # it stops by itself after --duration
cp -- "$WORK/02-capture.log" "$REC/02-capture.txt"
expect 02-hexdump.txt "router solicitation"
expect 02-hexdump.txt "ARP who-has 172.16.1.2 tell 172.16.1.1"
expect 02-hexdump.txt "frames read."
expect 02-capture.txt "Who has 172.16.1.2? Tell 172.16.1.1"
# Single frames out of that run, for the chapters that read them byte by byte.
extract_frame() {
    awk -v pat="$1" '
        !on && /^#[0-9]+: / && index($0, pat) { on = 1 }
        on && /^$/ { exit }
        on' "$REC/02-hexdump.txt" >"$REC/$2"
    [[ -s $REC/$2 ]] || die "02-hexdump.txt holds no frame matching '$1'"
}
extract_frame "router solicitation" 02-frame-rs.txt
extract_frame "ARP who-has" 02-frame-arp.txt

# Chapters 3 to 5 start each responder, let the burst of IPv6 frames a freshly
# attached interface sends go by (they show up as ignored or dropped), then
# drive it: the same order of events in every recording.
settle() { wait_for "$1 to attach" 10 carrier_on; sleep 6; }

# ---- chapter 3: 03_arp_reply -------------------------------------------------------------
step "03_arp_reply"
start 03-arp-reply "cargo run -q --bin 03_arp_reply" "${AS_USER[@]}" "$BIN/03_arp_reply"
pid=$STARTED
settle 03_arp_reply
record 03-arping.txt "sudo arping -c 3 -I tap4 172.16.1.2" ns arping -c 3 -w 5 -I tap4 172.16.1.2
record 03-arping-other.txt "sudo arping -c 2 -I tap4 172.16.1.3" ns arping -c 2 -w 3 -I tap4 172.16.1.3
record 03-ping.txt "ping -c 2 -W 1 172.16.1.2" ns ping -c 2 -W 1 172.16.1.2
record 03-neigh.txt "ip neigh show dev tap4" ns ip neigh show dev tap4
record 03-route.txt "ip route show dev tap4" ns ip route show dev tap4
stop "$pid" INT 03-arp-reply
expect 03-arping.txt "3 packets received"
expect 03-arping-other.txt "0 packets received"

# For the exercises, in a second run: an address probe (RFC 5227, sender
# 0.0.0.0), a unicast request (as the kernel sends to re-check a neighbour),
# and a sender that claims our own address.
start 03-arp-reply-variants "cargo run -q --bin 03_arp_reply" "${AS_USER[@]}" "$BIN/03_arp_reply"
pid=$STARTED
settle 03_arp_reply
record 03-arping-variants.txt "sudo arping -c 1 -I tap4 -S 0.0.0.0 172.16.1.2" \
    ns arping -c 1 -w 2 -I tap4 -S 0.0.0.0 172.16.1.2
record 03-arping-variants.txt "sudo arping -c 1 -I tap4 -t 02:00:00:00:00:02 172.16.1.2" \
    ns arping -c 1 -w 2 -I tap4 -t 02:00:00:00:00:02 172.16.1.2
record 03-arping-variants.txt "sudo arping -c 1 -I tap4 -S 172.16.1.2 172.16.1.2" \
    ns arping -c 1 -w 2 -I tap4 -S 172.16.1.2 172.16.1.2
stop "$pid" INT 03-arp-reply-variants
expect 03-arp-reply-variants.txt "who-has 172.16.1.2 tell 0.0.0.0"
expect 03-arp-reply-variants.txt "(ignored: ARP bad sender)"
expect 03-neigh.txt "172.16.1.2 lladdr 02:00:00:00:00:02"
expect 03-arp-reply.txt "-> ARP reply 172.16.1.2 is-at 02:00:00:00:00:02"

# ---- chapter 4: 04_icmp_reply -------------------------------------------------------------
step "04_icmp_reply"
ns ip neigh flush dev tap4     # so that the kernel asks for our MAC again
start 04-icmp-reply "cargo run -q --bin 04_icmp_reply" "${AS_USER[@]}" "$BIN/04_icmp_reply"
pid=$STARTED
settle 04_icmp_reply
record 04-ping-56.txt "ping -c 2 172.16.1.2" ns ping -c 2 -W 2 172.16.1.2
record 04-ping-1472.txt "ping -c 2 -s 1472 -M do 172.16.1.2" ns ping -c 2 -W 2 -s 1472 -M "do" 172.16.1.2
stop "$pid" INT 04-icmp-reply
expect 04-ping-56.txt "2 received"
expect 04-ping-1472.txt "2 received"
expect 04-icmp-reply.txt "computed: IPv4 header checksum"

# ---- chapter 5: 05_full_responder ----------------------------------------------------------
step "05_full_responder"
ns ip neigh flush dev tap4
start 05-full-responder "cargo run -q --bin 05_full_responder -- --pcap tapbook.pcap" \
    "${AS_USER[@]}" "$BIN/05_full_responder" --pcap tapbook.pcap
pid=$STARTED
settle 05_full_responder
start 05-capture "sudo scripts/capture.sh --filter 'arp or icmp' --duration 10" \
    "${NS[@]}" "$ROOT/scripts/capture.sh" --filter 'arp or icmp' --duration 10
capture_pid=$STARTED
wait_for "tshark to start capturing" 20 capturing
record 05-ping.txt "ping -c 3 172.16.1.2" ns ping -c 3 -W 2 172.16.1.2
record 05-arping.txt "sudo arping -c 2 -I tap4 172.16.1.2" ns arping -c 2 -w 3 -I tap4 172.16.1.2
record 05-arping-other.txt "sudo arping -c 1 -I tap4 172.16.1.3" ns arping -c 1 -w 2 -I tap4 172.16.1.3
record 05-ping-broadcast.txt "ping -b -c 1 -W 1 172.16.1.255" ns ping -b -c 1 -W 1 172.16.1.255
# The book's command signals only the student's own responder (pkill -u). The
# recording signals the one it started, by PID: a pattern could also match a
# responder that someone else runs as the same user at the same time.
record 05-stop.txt "pkill -TERM -u \"\$USER\" -f 'target/.*/05_full_responder'" kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
cp -- "$WORK/05-full-responder.log" "$REC/05-full-responder.txt"
((rc == 0)) || die "05_full_responder exited with status $rc after SIGTERM (expected 0)"
wait "$capture_pid" || true
cp -- "$WORK/05-capture.log" "$REC/05-capture.txt"
# Reading a file needs no privileges: as the student, whose home is the
# working directory here (tshark looks for its settings there).
tshark_user() { as_user env HOME="$RUN" tshark "$@"; }
record 05-tshark-r.txt "tshark -r tapbook.pcap" tshark_user -r tapbook.pcap
record 05-tshark-r.txt "tshark -r tapbook.pcap -Y icmp -T fields -e frame.len -e ip.checksum -e icmp.checksum -e icmp.checksum.status" \
    tshark_user -r tapbook.pcap -Y icmp -T fields -e frame.len -e ip.checksum -e icmp.checksum -e icmp.checksum.status
arp_reply_hex() { tshark_user -r tapbook.pcap -x -Y 'arp.opcode == 2' | head -n 4; }
record 05-arp-reply-hex.txt "tshark -r tapbook.pcap -x -Y 'arp.opcode == 2' | head -n 4" arp_reply_hex
expect 05-ping.txt "3 received"
expect 05-arping.txt "2 packets received"
expect 05-full-responder.txt "frames dropped"
expect 05-tshark-r.txt "Echo (ping) reply"

# ---- 3. publish ----------------------------------------------------------------------------
# The terminal noise of tshark 4.x (a bare "tshark: " line) is not output.
sed -i '/^tshark: $/d' "$REC"/*.txt
# Lines wider than the book's column are continued on the next line, indented
# (commands with ' \'), so that the page shows them whole.
"$ROOT/scripts/book-output-wrap.py" "$REC"/*.txt
# Only the files this script writes are replaced: other scripts
# (book-output-*.sh) record into the same directory.
cp -- "$REC"/*.txt "$OUT"/
if [[ -n ${SUDO_UID:-} ]]; then
    (cd -- "$REC" && for f in *.txt; do chown -- "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$OUT/$f"; done)
fi
say ""
say "Wrote $(find "$REC" -name '*.txt' | wc -l) files to ${OUT#"$ROOT"/}/:"
(cd -- "$REC" && printf '%s  ' *.txt) | fold -s -w 96 | sed 's/^/  /'
say ""
say "Review the changes with:  git diff --stat -- ${OUT#"$ROOT"/}"
