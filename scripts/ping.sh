#!/usr/bin/env bash
# scripts/ping.sh -- ping the lab responder through the TAP interface.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: $TB_PROG [OPTIONS] [-- EXTRA PING ARGS]

Ping the user-space responder (default $TB_RESPONDER_IP): a lab program that answers
ping ('cargo run --bin $TB_RESPONDER_BIN', or 04_icmp_reply) behind the TAP interface.
The ping is bound to the interface (ping -I), so it never leaves through another one.

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

setup_hint="sudo scripts/setup.sh$(lab_opts)"
iface_exists || die "$TB_IFACE does not exist in $(where). Create it once with:  $setup_hint"
iface_is_up || die "$TB_IFACE exists but is down. Bring it up with:  $setup_hint"
mapfile -t addrs < <(iface_ipv4_addrs)
((${#addrs[@]})) || die "$TB_IFACE has no IPv4 address. Add it with:  $setup_hint"

# Who may attach to the interface: the user the "start a responder" command runs as.
owner=$(iface_attr owner)
owner_name=root
if [[ -n $owner && $owner != -1 ]]; then owner_name=$(uid_name "$owner"); fi
start_05=$(responder_cmd "$TB_RESPONDER_BIN" "$owner_name")

carrier=$(carrier_state)
if [[ $carrier != on ]]; then
    say "Note: $TB_IFACE has NO-CARRIER: no program has it open, so nobody can answer."
    say "      Start a responder that answers ping first, in another terminal:  $start_05"
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
       if [[ $carrier == on ]]; then
           say "  A program has $TB_IFACE open, but it does not answer ping for $TARGET."
           say "  01_open_clone and 02_hexdump answer nothing, and $TB_ARP_BIN answers ARP only:"
           say "  ask it with arping:  $(arping_cmd "$TARGET")"
           say "  For ping, stop it and start one that answers ping:  $start_05"
       else
           say "  Start a responder that answers ping:  $start_05"
       fi
       doctor_user=
       if [[ $owner_name != "$(default_lab_user)" ]]; then doctor_user=" --user $owner_name"; fi
       say "  Check the lab with:  ${TB_NETNS:+sudo }scripts/doctor.sh$doctor_user$(lab_opts)"
       say "  Watch what is on the wire with:  sudo scripts/capture.sh$(lab_opts)" ;;
    *) say "ping failed with status $rc (an error, not just lost packets)." ;;
esac
exit "$rc"
