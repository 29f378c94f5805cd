#!/usr/bin/env bash
# scripts/ping.sh -- ping the lab responder through the TAP interface.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: $TB_PROG [OPTIONS] [-- EXTRA PING ARGS]

Ping the user-space responder (default $TB_RESPONDER_IP) that a lab program such as
'cargo run --bin $TB_RESPONDER_BIN' runs behind the TAP interface. The ping is
bound to the interface (ping -I), so it never leaves through another one.

Checks first that the interface exists and has an address, and tells you
when no program has it open (no carrier: start a responder first).

Options:
  --count N         number of echo requests (default: 4)
  --size N          ICMP payload bytes (ping -s; default: ping's own, 56)
  --to ADDR         address to ping (default: $TB_RESPONDER_IP)
$(common_help)
Anything after -- goes to ping unchanged, e.g.:  $TB_PROG -- -i 0.2 -W 1

Exit status: ping's (0 = replies received, 1 = no reply, 2 = error).
EOF
}

COUNT=4
SIZE=
TARGET=$TB_RESPONDER_IP
EXTRA=()
tb_split_args "$@"; set -- "${TB_ARGS[@]}"
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --count) need_value "$1" $#; need_number "$1" "$2"; COUNT=$2; shift 2 ;;
        --size) need_value "$1" $#; [[ $2 =~ ^[0-9]+$ ]] || die "--size wants a number of bytes, not '$2'"; SIZE=$2; shift 2 ;;
        --to) need_value "$1" $#; TARGET=$2; shift 2 ;;
        --iface) need_value "$1" $#; TB_IFACE=$2; shift 2 ;;
        --netns) need_value "$1" $#; TB_NETNS=$2; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        *) unknown_option "$1" ;;
    esac
done
validate_common
need_netns_if_any "$@"
command -v ping >/dev/null || die "ping is not installed: sudo apt-get install iputils-ping"

setup_hint="sudo scripts/setup.sh$(netns_opt)"
iface_exists || die "$TB_IFACE does not exist in $(where). Create it once with:  $setup_hint"
iface_is_up || die "$TB_IFACE exists but is down. Bring it up with:  $setup_hint"
mapfile -t addrs < <(iface_ipv4_addrs)
((${#addrs[@]})) || die "$TB_IFACE has no IPv4 address. Add it with:  $setup_hint"

if [[ $(carrier_state) != on ]]; then
    say "Note: $TB_IFACE has NO-CARRIER: no program has it open, so nobody can answer."
    if [[ -z $TB_NETNS ]]; then
        say "      Start a responder first, in another terminal:  cargo run --bin $TB_RESPONDER_BIN"
    else
        say "      Start a responder first:  sudo ip netns exec $TB_NETNS sudo -u YOUR_LOGIN target/debug/$TB_RESPONDER_BIN"
    fi
    say "      (pinging anyway; expect 100% packet loss)"
fi

cmd=(ping -I "$TB_IFACE" -c "$COUNT")
[[ -z $SIZE ]] || cmd+=(-s "$SIZE")
cmd+=("${EXTRA[@]}" "$TARGET")
say "Running in $(where): $(show_cmd "${cmd[@]}")"
rc=0
run "${cmd[@]}" || rc=$?

case $rc in
    0) say "OK: $TARGET answered through $TB_IFACE." ;;
    1) say "NO REPLY: $TARGET did not answer (see the loss figure above)."
       say "  Is the responder running and attached to $TB_IFACE?  Check with: scripts/doctor.sh$(netns_opt)"
       say "  Watch what is on the wire with:  sudo scripts/capture.sh$(netns_opt)" ;;
    *) say "ping failed with status $rc (an error, not just lost packets)." ;;
esac
exit "$rc"
