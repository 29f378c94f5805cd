#!/usr/bin/env bash
# scripts/book-output-dhcp.sh -- record, for the book's chapter 10 (UDP and DHCP), busybox
# udhcpc getting, renewing and releasing its lease from 10_dhcp_server, tshark's decode of
# the messages, a kernel UDP socket's echo, and hostile DHCP messages being counted.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: sudo $TB_PROG [OPTIONS]

In a network namespace created for the purpose (removed again afterwards), run
10_dhcp_server as an unprivileged user on tap4 and record into book/src/output/:
  10-udhcpc.txt         busybox udhcpc on the kernel's side of tap4 getting its lease
  10-renew-release.txt  udhcpc renewing (SIGUSR1) and releasing (SIGUSR2) it
  10-tshark.txt         tshark's one-line summary of the DHCP messages on tap4
  10-tshark-fields.txt  the fields of DISCOVER, OFFER, REQUEST and ACK that matter
  10-tshark-offer.txt   tshark's full decode of our OFFER
  10-udp-echo.txt       a kernel UDP socket (python3) echoed, and the kernel's UDP
                        checksum error counter afterwards
  10-hostile.txt        three malformed DHCP messages from a kernel UDP socket
  10-dhcp-server.txt    what 10_dhcp_server printed through all of it, and at exit

Needs root (namespaces), ip, busybox (busybox-static), tshark, setpriv and python3.
Builds the programs first (cargo build --release --bins, as the user behind sudo when
there is one).

Options:
  --netns NAME      the namespace to create and remove (default: tapbook-dhcp-PID);
                    it must not exist yet
  --user NAME       the unprivileged user who runs the server (default: \$SUDO_USER,
                    else nobody)
  --out DIR         where to write the files (default: book/src/output)
  --bin-dir DIR     use the binaries in DIR instead of building them
  -h, --help        this help
EOF
}

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
NS=tapbook-dhcp-$$
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
for tool in ip busybox tshark setpriv python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (scripts/doctor.sh says which package has it)"
done
netns_exists && die "network namespace $NS exists already; choose another with --netns"
if [[ -z $LAB_USER ]]; then
    LAB_USER=$(unprivileged_user)
fi
LAB_UID=$(id -u -- "$LAB_USER" 2>/dev/null) || die "no such user: '$LAB_USER' (use --user NAME)"
LAB_GID=$(id -g -- "$LAB_USER")
((LAB_UID != 0)) || die "--user must not be root: the server runs as a student would run it"
mkdir -p -- "$OUT"
OUT=$(cd -- "$OUT" && pwd)

if [[ -z $BIN_DIR ]]; then
    build=(cargo build --release --bins --quiet)
    step "building: $(show_cmd "${build[@]}")"
    (cd "$ROOT" && as_invoking_user "${build[@]}")
    TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
    [[ $TARGET == /* ]] || TARGET=$ROOT/$TARGET
    BIN_DIR=$TARGET/release
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tapbook-dhcp.XXXXXX")
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
[[ -x $BIN_DIR/10_dhcp_server ]] || die "$BIN_DIR/10_dhcp_server is missing (build with: cargo build --release --bins)"
install -m 0755 -- "$BIN_DIR/10_dhcp_server" "$BIN/10_dhcp_server"
chmod 0755 -- "$WORK" "$BIN"
REC=$WORK/out
mkdir -p -- "$REC"
cd /

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
expect() {
    grep -qF -- "$2" "$REC/$1" || die "$1 does not contain '$2': the run did not go as the book says. It reads:
$(sed 's/^/    /' "$REC/$1")"
}
in_log() { grep -qF -- "$2" "$WORK/$1"; }

SCRIPT=$ROOT/scripts/dhcp/udhcpc.sh

# ---- the lab: tap4 with a fixed MAC on the kernel's side, as in the other recordings ----
say "Recording in network namespace $NS as user $LAB_USER."
ip netns add "$NS"
ns ip link set lo up
"$ROOT/scripts/setup.sh" --netns "$NS" --user "$LAB_USER" >/dev/null
ns ip link set dev tap4 address 02:00:00:00:00:01
# No IPv6 on tap4: its router solicitations and MLD reports would fill the server's log.
ns sysctl -qw net.ipv6.conf.tap4.disable_ipv6=1

start capture.log "${NSX[@]}" tshark -i tap4 -w "$WORK/dhcp.pcap" -f "udp"
capture=$STARTED
start server.log "${AS_USER[@]}" "$BIN/10_dhcp_server"
server=$STARTED
wait_for "10_dhcp_server to attach" 10 carrier_on
sleep 2 # tshark's capture starts

# ---- a lease, as udhcpc gets it -----------------------------------------------------------
step "udhcpc gets a lease"
record 10-udhcpc.txt "sudo busybox udhcpc -i tap4 -f -q -n -s scripts/dhcp/udhcpc.sh" \
    ns busybox udhcpc -i tap4 -f -q -n -s "$SCRIPT"
expect 10-udhcpc.txt "lease of 172.16.1.100 obtained from 172.16.1.2, lease time 3600"
record 10-udhcpc.txt "ip -4 addr show dev tap4" ns ip -4 addr show dev tap4
expect 10-udhcpc.txt "inet 172.16.1.100/24"
# udhcpc -q leaves the address; the next client starts from scratch, as after a reboot.
record 10-udhcpc.txt "sudo ip addr del 172.16.1.100/24 dev tap4" ns ip addr del 172.16.1.100/24 dev tap4

# ---- renew and release ------------------------------------------------------------------
step "udhcpc renews and releases it"
start client.log "${NSX[@]}" busybox udhcpc -i tap4 -f -s "$SCRIPT"
client=$STARTED
wait_for "udhcpc's lease" 10 in_log client.log "script: bound"
kill -USR1 "$client"
wait_for "udhcpc's renewal" 10 in_log client.log "script: renew"
kill -USR2 "$client"
wait_for "udhcpc's release" 10 in_log client.log "script: deconfig"
kill -TERM "$client"
wait "$client" || true
{
    printf '$ sudo busybox udhcpc -i tap4 -f -s scripts/dhcp/udhcpc.sh &\n'
    printf '$ kill -USR1 %%1; sleep 1; kill -USR2 %%1; sleep 1; kill %%1\n'
    cat -- "$WORK/client.log"
} >"$REC/10-renew-release.txt"
expect 10-renew-release.txt "sending renew to server 172.16.1.2"
expect 10-renew-release.txt "unicasting a release of 172.16.1.100 to 172.16.1.2"

# ---- UDP echo -------------------------------------------------------------------------------
step "UDP echo from a kernel socket"
record 10-udp-echo.txt "python3 scripts/dhcp/udp_echo.py" ns python3 "$ROOT/scripts/dhcp/udp_echo.py"
expect 10-udp-echo.txt "1472 bytes sent, 1472 back from ('172.16.1.2', 7) same: True"
record 10-udp-echo.txt "grep Udp: /proc/net/snmp" ns grep Udp: /proc/net/snmp

# ---- hostile DHCP -------------------------------------------------------------------------
step "hostile DHCP messages"
record 10-hostile.txt "sudo python3 scripts/dhcp/hostile_dhcp.py" ns python3 "$ROOT/scripts/dhcp/hostile_dhcp.py"
sleep 1

# ---- the server's side, and its counts at exit ------------------------------------------------
kill -INT "$server"
wait "$server" || die "10_dhcp_server did not exit 0 on Ctrl-C: $(cat "$WORK/server.log")"
{
    printf '$ 10_dhcp_server\n'
    cat -- "$WORK/server.log"
} >"$REC/10-dhcp-server.txt"
expect 10-dhcp-server.txt "DHCP: OFFER 172.16.1.100"
expect 10-dhcp-server.txt "DHCP: RELEASE of 172.16.1.100"
expect 10-dhcp-server.txt "(ignored: DHCP malformed)"
expect 10-dhcp-server.txt "(ignored: DHCP through a relay)"
expect 10-dhcp-server.txt "UDP echo replies sent"
grep -A1 -e '<- IPv4 172.16.1.1 > 172.16.1.2 UDP, 2[0-9][0-9] bytes' -- "$REC/10-dhcp-server.txt" |
    grep -v -e '^--$' >>"$REC/10-hostile.txt" || true
expect 10-hostile.txt "(ignored: DHCP malformed)"

sleep 1
kill -INT "$capture"
wait "$capture" || true
tshark_r() { tshark -r "$WORK/dhcp.pcap" "$@" 2>/dev/null; }
record 10-tshark.txt "tshark -r dhcp.pcap -Y 'dhcp.option.dhcp in {1,2,3,5}' -c 4" \
    tshark_r -Y 'dhcp.option.dhcp in {1,2,3,5}' -c 4
expect 10-tshark.txt "DHCP ACK"
FIELDS=(-e dhcp.option.dhcp -e ip.dst -e dhcp.flags.bc -e dhcp.ip.client -e dhcp.ip.your
    -e dhcp.option.dhcp_server_id -e dhcp.option.ip_address_lease_time
    -e dhcp.option.subnet_mask -e dhcp.option.router)
record 10-tshark-fields.txt "tshark -r dhcp.pcap -Y 'dhcp.option.dhcp in {1,2,3,5}' -c 4 -T fields -E header=y ${FIELDS[*]}" \
    tshark_r -Y 'dhcp.option.dhcp in {1,2,3,5}' -c 4 -T fields -E header=y "${FIELDS[@]}"
offer_decode() {
    tshark_r -Y 'dhcp.option.dhcp == 2' -O dhcp | awk '/^Frame /{n++} n==1' | sed -n '/^Dynamic Host/,$p'
}
record 10-tshark-offer.txt "tshark -r dhcp.pcap -Y 'dhcp.option.dhcp == 2' -O dhcp   # the first OFFER, its DHCP part" \
    offer_decode
expect 10-tshark-offer.txt "DHCP: Offer (2)"

# ---- publish ----------------------------------------------------------------------------
"$ROOT/scripts/book-output-wrap.py" "$REC"/*.txt
cp -- "$REC"/*.txt "$OUT"/
if [[ -n ${SUDO_UID:-} ]]; then
    chown -- "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$OUT"/10-*.txt
fi
say ""
say "Wrote $(find "$REC" -name '*.txt' | wc -l) files to $OUT: $(cd -- "$REC" && echo *.txt)"
say "Namespace $NS removed."
