#!/usr/bin/env bash
# scripts/book-output-ipv6.sh -- record the real output chapter 8 (IPv6) shows.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: sudo $TB_PROG [OPTIONS]

In a network namespace created for the purpose (removed again afterwards), run
08_ipv6_responder and 05_full_responder as --user against the kernel's own IPv6
tools, and record into book/src/output/:
  08-addresses.txt   tap4's IPv6 addresses and routes, as setup.sh leaves them
  08-responder.txt   08_ipv6_responder from the moment it attaches: what the kernel
                     sends on its own (MLDv2, duplicate address detection, router
                     solicitation), then the exchanges below, as 08 prints them
  08-ping6.txt       ping -6 to fd00:172:16:1::2 and to fe80::ff:fe00:2%tap4
  08-ping6-mtu.txt   ping -6 -s 1452 and -s 1453 with -M do (the MTU's limit)
  08-ndisc6.txt      ndisc6, then the kernel's neighbour cache: REACHABLE
  08-full-responder.txt  05_full_responder's counters after ping and ping -6
The kernel's side of tap4 gets the fixed MAC 02:00:00:00:00:01 (and so the
link-local address fe80::ff:fe00:1), so that the recordings do not change from
run to run but for times and identifiers. Needs root (namespaces), ip, ping,
ndisc6 and setpriv. Builds the chapter programs first (cargo build --release
--bins, as the user behind sudo when there is one).

Options:
  --netns NAME      the namespace to create and remove (default: tapbook-ipv6-PID);
                    it must not exist yet
  --user NAME       the unprivileged user who runs the programs (default: \$SUDO_USER,
                    else nobody)
  --out DIR         where to write the files (default: book/src/output)
  --bin-dir DIR     use the binaries in DIR instead of building them
  -h, --help        this help
EOF
}

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
NS=tapbook-ipv6-$$
OUT=$ROOT/book/src/output
LAB_USER=
BIN_DIR=

tb_split_args "$@"; set -- "${TB_ARGS[@]}"
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --netns) need_value "$1" $#; NS=$2; shift 2 ;;
        --user) need_value "$1" $#; LAB_USER=$2; shift 2 ;;
        --out) need_value "$1" $#; OUT=$2; shift 2 ;;
        --bin-dir) need_value "$1" $#; BIN_DIR=$2; shift 2 ;;
        *) unknown_option "$1" ;;
    esac
done
TB_NETNS=$NS
validate_common
need_root "$@"
for tool in ip ping ndisc6 setpriv; do
    command -v "$tool" >/dev/null || die "$tool is missing (scripts/doctor.sh says which package has it)"
done
netns_exists && die "network namespace $NS exists already; choose another with --netns"
if [[ -z $LAB_USER ]]; then
    LAB_USER=$(unprivileged_user)
fi
LAB_UID=$(id -u -- "$LAB_USER" 2>/dev/null) || die "no such user: '$LAB_USER' (use --user NAME)"
LAB_GID=$(id -g -- "$LAB_USER")
((LAB_UID != 0)) || die "--user must not be root, as in the lab"
mkdir -p -- "$OUT"
OUT=$(cd -- "$OUT" && pwd)

# ---- binaries, copied where --user can run them ----------------------------------------
if [[ -z $BIN_DIR ]]; then
    build=(cargo build --release --bins --quiet)
    step "building: $(show_cmd "${build[@]}")"
    (cd "$ROOT" && as_invoking_user "${build[@]}")
    TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
    [[ $TARGET == /* ]] || TARGET=$ROOT/$TARGET
    BIN_DIR=$TARGET/release
fi
BIN_DIR=$(cd -- "$BIN_DIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tapbook-ipv6.XXXXXX")
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
BIN=$WORK/bin
mkdir -p -- "$BIN"
for b in 05_full_responder 08_ipv6_responder; do
    [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b is missing (build with: cargo build --release --bins)"
    install -m 0755 -- "$BIN_DIR/$b" "$BIN/$b"
done
chmod 0755 -- "$WORK" "$BIN"
REC=$WORK/out
mkdir -p -- "$REC"
cd /

# ---- helpers ----------------------------------------------------------------------------
NSX=(ip netns exec "$NS")
AS_USER=("${NSX[@]}" setpriv --reuid "$LAB_UID" --regid "$LAB_GID" --clear-groups --)
ns() { "${NSX[@]}" "$@"; }

# record FILE SHOWN CMD...: append "$ SHOWN" and the output of CMD to FILE.
record() {
    local file=$REC/$1 shown=$2
    shift 2
    [[ -e $file ]] && printf '\n' >>"$file"
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

wait_for() {
    local what=$1 tenths=$(($2 * 10))
    shift 2
    until "$@"; do
        ((tenths-- > 0)) || die "timed out waiting for $what"
        sleep 0.1
    done
}
carrier_on() { ns ip -o link show dev tap4 2>/dev/null | grep -q LOWER_UP; }
# The kernel has sent its router solicitation: the last of what it sends on its own.
solicited_routers() { grep -q "router solicitation" "$WORK/08.log"; }

expect() {
    grep -qF -- "$2" "$REC/$1" || die "$1 does not contain '$2': the run did not go as the book says. It reads:
$(sed 's/^/    /' "$REC/$1")"
}

# ---- the lab ------------------------------------------------------------------------------
say "Recording in network namespace $NS as user $LAB_USER."
ip netns add "$NS"
ns ip link set lo up
"$ROOT/scripts/setup.sh" --netns "$NS" --user "$LAB_USER" >/dev/null
ns ip link set dev tap4 address 02:00:00:00:00:01
step "lab ready: tap4 owned by $LAB_USER"

F=08-addresses.txt
record $F "ip -6 addr show dev tap4" ns ip -6 addr show dev tap4
record $F "ip -6 route show dev tap4" ns ip -6 route show dev tap4
expect $F "fd00:172:16:1::1/64"

# ---- chapter 8's program ------------------------------------------------------------------
step "08_ipv6_responder"
start 08.log "${AS_USER[@]}" "$BIN/08_ipv6_responder"
pid=$STARTED
wait_for "08_ipv6_responder to attach" 10 carrier_on
# Duplicate address detection of the link-local address takes a second; the router
# solicitation follows it.
wait_for "the kernel's router solicitation" 10 solicited_routers
F=08-ping6.txt
record $F "ping -6 -c 2 fd00:172:16:1::2" ns ping -6 -c 2 -W 2 fd00:172:16:1::2
record $F "ping -6 -c 2 fe80::ff:fe00:2%tap4" ns ping -6 -c 2 -W 2 fe80::ff:fe00:2%tap4
[[ $(grep -c ' 2 received' "$REC/$F") -eq 2 ]] || die "$F: not every ping was answered: $(cat "$REC/$F")"
F=08-ping6-mtu.txt
record $F "ping -6 -c 1 -M do -s 1452 fd00:172:16:1::2" ns ping -6 -c 1 -W 2 -M "do" -s 1452 fd00:172:16:1::2
record $F "ping -6 -c 1 -M do -s 1453 fd00:172:16:1::2" ns ping -6 -c 1 -W 2 -M "do" -s 1453 fd00:172:16:1::2
expect $F "1460 bytes from fd00:172:16:1::2"
expect $F "message too long, mtu: 1500"
F=08-ndisc6.txt
record $F "ndisc6 fd00:172:16:1::2 tap4" ns ndisc6 fd00:172:16:1::2 tap4
record $F "ip -6 neigh show dev tap4" ns ip -6 neigh show dev tap4
expect $F "Target link-layer address: 02:00:00:00:00:02"
expect $F "fd00:172:16:1::2 lladdr 02:00:00:00:00:02 REACHABLE"
kill -TERM "$pid"
wait "$pid" || true
{
    printf '$ cargo run -q --bin 08_ipv6_responder\n'
    cat "$WORK/08.log"
} >"$REC/08-responder.txt"
expect 08-responder.txt "MLDv2 report"
expect 08-responder.txt "router solicitation"
expect 08-responder.txt "neighbor advertisement fd00:172:16:1::2 is-at 02:00:00:00:00:02 solicited override"

# ---- the full responder answers both ----------------------------------------------------------
step "05_full_responder, IPv4 and IPv6"
ns ip -6 neigh flush dev tap4
ns ip neigh flush dev tap4
start 05.log "${AS_USER[@]}" "$BIN/05_full_responder" --quiet
pid=$STARTED
wait_for "05_full_responder to attach" 10 carrier_on
sleep 2
ns ping -c 2 -W 2 172.16.1.2 >/dev/null || die "ping got no answer"
ns ping -6 -c 2 -W 2 fd00:172:16:1::2 >/dev/null || die "ping -6 got no answer"
ns ping -6 -c 2 -W 2 fe80::ff:fe00:2%tap4 >/dev/null || die "ping -6 (link-local) got no answer"
kill -TERM "$pid"
wait "$pid" || die "05_full_responder did not exit 0 on SIGTERM: $(cat "$WORK/05.log")"
{
    printf '$ cargo run -q --bin 05_full_responder -- --quiet\n'
    printf '# meanwhile: ping -c 2 172.16.1.2; ping -6 -c 2 fd00:172:16:1::2;\n'
    printf '#            ping -6 -c 2 fe80::ff:fe00:2%%tap4; then Ctrl-C\n'
    cat "$WORK/05.log"
} >"$REC/08-full-responder.txt"
expect 08-full-responder.txt "ICMPv6 echo replies sent"

# ---- publish --------------------------------------------------------------------------------------
"$ROOT/scripts/book-output-wrap.py" "$REC"/*.txt
cp -- "$REC"/*.txt "$OUT"/
if [[ -n ${SUDO_UID:-} ]]; then
    chown -- "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$OUT"/08-*.txt
fi
say ""
say "Wrote $(find "$REC" -name '*.txt' | wc -l) files to $OUT: $(cd -- "$REC" && echo *.txt)"
say "Namespace $NS removed."
