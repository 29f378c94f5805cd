#!/usr/bin/env bash
# scripts/teardown.sh -- remove the lab's TAP interface (and namespace).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: sudo $TB_PROG [OPTIONS]

Undo scripts/setup.sh: delete the persistent TAP interface (default $TB_DEFAULT_IFACE).
Safe to run again: an absent interface is fine. /dev/net/tun is left as it is.

With --netns NAME, the namespace NAME is deleted too once it holds no
interface other than lo and no process runs inside it.

Options:
  --keep-netns      with --netns: never delete the namespace
$(common_help)
EOF
}

KEEP_NETNS=false
tb_split_args "$@"; set -- "${TB_ARGS[@]}"
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --keep-netns) KEEP_NETNS=true; shift ;;
        --iface) need_value "$1" $#; TB_IFACE=$2; shift 2 ;;
        --netns) need_value "$1" $#; TB_NETNS=$2; shift 2 ;;
        --) shift; (($# == 0)) || die "unexpected arguments: $*" ;;
        *) unknown_option "$1" ;;
    esac
done
validate_common
need_root "$@"

if [[ -n $TB_NETNS ]] && ! netns_exists; then
    say "Network namespace $TB_NETNS does not exist: nothing to remove."
    exit 0
fi

if iface_exists; then
    iface_is_tuntap || die "$TB_IFACE in $(where) is not a tun/tap device; refusing to delete it"
    if [[ $(carrier_state) == on ]]; then
        warn "a program still has $TB_IFACE open; its reads will now fail (EBADFD, 'File descriptor in bad state')"
    fi
    # `ip link delete` works even while a program holds the device open
    # (`ip tuntap del` would fail with "Device or resource busy" then).
    run ip link delete dev "$TB_IFACE"
    step "deleted $TB_IFACE from $(where)"
else
    step "$TB_IFACE is not present in $(where): nothing to delete"
fi

if [[ -n $TB_NETNS ]]; then
    others=$(run ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | grep -vx lo || true)
    pids=$(ip netns pids "$TB_NETNS" 2>/dev/null | xargs || true)
    if $KEEP_NETNS; then
        step "kept network namespace $TB_NETNS (--keep-netns)"
    elif [[ -n $others ]]; then
        step "kept network namespace $TB_NETNS: it still has interface(s) $(echo "$others" | xargs)"
    elif [[ -n $pids ]]; then
        step "kept network namespace $TB_NETNS: processes still run in it (pids: $pids)"
        say "    stop them, then run this again to delete the namespace"
    else
        ip netns delete "$TB_NETNS"
        step "deleted network namespace $TB_NETNS (it held only lo)"
    fi
fi

say "Teardown finished. To set the lab up again: sudo scripts/setup.sh$(lab_opts)"
