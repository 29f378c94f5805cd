#!/usr/bin/env bash
# scripts/setup.sh -- prepare the TAP lab once, as root.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: sudo $TB_PROG [OPTIONS]

Prepare the tapbook lab (run once, as root; safe to run again):
  1. make sure /dev/net/tun exists (modprobe tun) and that ordinary users
     may open it (mode 0666, the usual distribution default);
  2. create the persistent TAP interface $TB_DEFAULT_IFACE, owned by the user who will
     run the lab programs, so that 'cargo run' needs no sudo;
     (an existing one with another owner, or a TUN, is deleted and recreated)
  3. give it the addresses $TB_DEFAULT_ADDR and $TB_DEFAULT_ADDR6 (without
     duplicate address detection) and bring it up.

Afterwards, without sudo:  cargo run --bin $TB_RESPONDER_BIN
and in another terminal:   scripts/ping.sh   (ping $TB_RESPONDER_IP through $TB_DEFAULT_IFACE)

Options:
  --user NAME       owner of the interface: the user who will run cargo
                    (default: \$SUDO_USER, else the current user)
  --addr CIDR       host address on the interface (default: $TB_DEFAULT_ADDR)
$(common_help)
With --netns, the namespace is created if it does not exist yet.
Every value is checked before anything changes. On failure or Ctrl-C, what this run
made (the namespace, the interface, the address) is removed again; what was there
before the run stays.

Undo with: sudo scripts/teardown.sh   Check with: scripts/doctor.sh
EOF
}

LAB_USER=
ADDR=$TB_DEFAULT_ADDR

tb_split_args "$@"; set -- "${TB_ARGS[@]}"
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --user) need_value "$1" $#; LAB_USER=$2; shift 2 ;;
        --addr) need_value "$1" $#; ADDR=$2; shift 2 ;;
        --iface) need_value "$1" $#; TB_IFACE=$2; shift 2 ;;
        --netns) need_value "$1" $#; TB_NETNS=$2; shift 2 ;;
        --) shift; (($# == 0)) || die "unexpected arguments: $*" ;;
        *) unknown_option "$1" ;;
    esac
done
validate_common

# Everything is checked before anything changes: a bad value must not leave a half-made lab.
octet='(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
if ! [[ $ADDR =~ ^$octet\.$octet\.$octet\.$octet/([1-9][0-9]?)$ ]] || ((BASH_REMATCH[5] > 32)); then
    die "--addr wants an IPv4 address with a prefix length from 1 to 32, like $TB_DEFAULT_ADDR (got '$ADDR')"
fi
first=${BASH_REMATCH[1]}
((first != 0 && first != 127 && first < 224)) ||
    die "--addr $ADDR is not a unicast address for an interface (0.x, 127.x loopback, 224.x and above multicast or reserved)"
[[ ${ADDR%/*} != "$TB_RESPONDER_IP" ]] ||
    die "--addr $ADDR is the responder's own address: the kernel would answer for it instead of the lab program; use e.g. $TB_DEFAULT_ADDR"

need_root "$@"

[[ -n $LAB_USER ]] || LAB_USER=$(default_lab_user)
LAB_UID=$(id -u -- "$LAB_USER" 2>/dev/null) || die "no such user: '$LAB_USER' (use --user NAME)"
LAB_GROUP=$(id -gn -- "$LAB_USER")
LAB_GID=$(id -g -- "$LAB_USER")
if [[ $LAB_UID -eq 0 ]]; then
    warn "the interface will belong to root, so only root can attach to it."
    warn "to run the lab without sudo, use:  sudo $TB_PROG --user YOUR_LOGIN   (or run this script via sudo from your login)"
fi

DONE=()   # what this run changed, for the summary
did() { step "$*"; DONE+=("$*"); }

# On failure or interrupt, undo what this run made, and only that: a namespace or an
# interface that was there before the run stays.
MADE_NETNS=false MADE_IFACE=false MADE_ADDR=false MADE_ADDR6=false FINISHED=false
undo() {
    $FINISHED && return 0
    FINISHED=true
    if $MADE_NETNS || $MADE_IFACE || $MADE_ADDR || $MADE_ADDR6; then say "Stopped before the end: undoing what this run made."; fi
    # Never fail here: the exit status must stay the one that brought us here.
    if $MADE_NETNS; then
        if ip netns delete "$TB_NETNS"; then step "deleted network namespace $TB_NETNS"; fi
    elif $MADE_IFACE; then
        if run ip link delete dev "$TB_IFACE"; then step "deleted $TB_IFACE"; fi
    else
        if $MADE_ADDR && run ip addr del "$ADDR" dev "$TB_IFACE"; then step "removed address $ADDR from $TB_IFACE"; fi
        if $MADE_ADDR6 && run ip addr del "$TB_DEFAULT_ADDR6" dev "$TB_IFACE"; then step "removed address $TB_DEFAULT_ADDR6 from $TB_IFACE"; fi
    fi
    return 0
}
trap undo EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "Setting up the tapbook lab in $(where) for user $LAB_USER (group $LAB_GROUP)."

# ---- 1. /dev/net/tun --------------------------------------------------------
TUN=/dev/net/tun
if [[ ! -e $TUN ]]; then
    if modprobe tun 2>/dev/null; then
        did "loaded the tun kernel module (modprobe tun)"
    fi
    if [[ ! -e $TUN && -e /sys/class/misc/tun ]]; then
        # The driver is there but nothing created the device node.
        mkdir -p /dev/net
        mknod -m 0666 "$TUN" c 10 200
        did "created the device node $TUN (char 10:200)"
    fi
    [[ -e $TUN ]] || die "$TUN is still missing: this kernel has no tun driver (CONFIG_TUN). Install/boot a kernel with it, then re-run."
fi
[[ -c $TUN ]] || die "$TUN exists but is not a character device; remove it and re-run (it should be char 10:200)"
majmin=$(stat -c '%t:%T' "$TUN")   # hex
[[ $majmin == a:c8 ]] || die "$TUN has device number $((16#${majmin%:*})):$((16#${majmin#*:})), expected 10:200; remove it and re-run"

mode=$(stat -c '%a' "$TUN")
if [[ $mode != 666 ]]; then
    chmod 0666 "$TUN"
    did "changed $TUN mode from $mode to 0666"
    cat <<EOF
    Why this is harmless: opening $TUN by itself grants nothing. Creating a
    new interface still needs CAP_NET_ADMIN, and attaching to an existing
    persistent one is allowed only for its owner/group (or CAP_NET_ADMIN).
    0666 is the default on Debian, Ubuntu, Fedora and Arch; your system had $mode.
    (Device permissions under /dev reset at reboot; re-run this script then.)
EOF
else
    step "$TUN is present and usable by users (mode 0666)"
fi

# ---- 2. namespace -----------------------------------------------------------
if [[ -n $TB_NETNS ]]; then
    if netns_exists; then
        step "network namespace $TB_NETNS already exists"
    else
        ip netns add "$TB_NETNS"
        MADE_NETNS=true
        did "created network namespace $TB_NETNS"
    fi
    run ip link set lo up
fi

# ---- 3. the TAP interface ---------------------------------------------------
create_tap() {
    run ip tuntap add dev "$TB_IFACE" mode tap user "$LAB_USER" group "$LAB_GROUP"
}

if iface_exists; then
    iface_is_tuntap || die "an interface named $TB_IFACE exists in $(where) but it is not a tun/tap device; pick another name with --iface, or remove it yourself"
    flags=$(iface_attr tun_flags)
    owner=$(iface_attr owner)
    group=$(iface_attr group)
    why=()
    has_flag "$flags" "$TB_IFF_TAP" || why+=("it is a TUN (layer 3), the lab needs a TAP (layer 2 Ethernet frames)")
    has_flag "$flags" "$TB_IFF_MULTI_QUEUE" && why+=("it is multi-queue; the lab program opens it single-queue")
    has_flag "$flags" "$TB_IFF_NO_PI" || why+=("it was created with packet info headers (pi)")
    [[ $owner == "$LAB_UID" ]] || why+=("its owner is $(uid_name "$owner"), not $LAB_USER")
    [[ $group == "$LAB_GID" ]] || why+=("its group is $(gid_name "$group"), not $LAB_GROUP")
    if ((${#why[@]} == 0)); then
        step "$TB_IFACE already exists as a persistent TAP owned by $LAB_USER:$LAB_GROUP"
    else
        if [[ $(carrier_state) == on ]]; then
            die "$TB_IFACE must be recreated ($(join_by '; ' "${why[@]}")), but a program has it open right now (carrier is on). Stop that program and run this again."
        fi
        # `ip tuntap add` on an existing device always fails with
        # "ioctl(TUNSETIFF): Device or resource busy", so delete first.
        # (Not undone on failure: a $TB_IFACE was there before the run, so one stays.)
        run ip link delete dev "$TB_IFACE"
        create_tap
        did "deleted and recreated $TB_IFACE because $(join_by '; ' "${why[@]}")"
    fi
else
    create_tap
    MADE_IFACE=true
    did "created persistent TAP $TB_IFACE (owner $LAB_USER, group $LAB_GROUP)"
fi

# ---- 4. address -------------------------------------------------------------
mapfile -t addrs < <(iface_ipv4_addrs)
have_addr=false
for a in "${addrs[@]}"; do
    if [[ $a == "$ADDR" ]]; then
        have_addr=true
    else
        warn "$TB_IFACE also has address $a (left alone; remove it with: $(netns_prefix)ip addr del $a dev $TB_IFACE)"
    fi
done
if $have_addr; then
    step "$TB_IFACE already has address $ADDR"
else
    run ip addr add "$ADDR" dev "$TB_IFACE"
    MADE_ADDR=true
    did "added address $ADDR to $TB_IFACE"
fi
# Chapter 8's IPv6 address. `nodad`: usable at once, without the second of duplicate
# address detection (the kernel still probes for its link-local address, which the
# chapter shows).
if run ip -o -6 addr show dev "$TB_IFACE" 2>/dev/null | awk '{print $4}' | grep -qxF "$TB_DEFAULT_ADDR6"; then
    step "$TB_IFACE already has address $TB_DEFAULT_ADDR6"
elif run ip addr add "$TB_DEFAULT_ADDR6" dev "$TB_IFACE" nodad 2>/dev/null; then
    MADE_ADDR6=true
    did "added address $TB_DEFAULT_ADDR6 to $TB_IFACE (nodad)"
else
    warn "could not add $TB_DEFAULT_ADDR6 to $TB_IFACE: IPv6 is disabled here? (chapter 8 needs it; see net.ipv6.conf.all.disable_ipv6)"
fi
# The same subnet on another interface would send the pings elsewhere.
net_conflicts=$(run ip -o -4 addr show to "$ADDR" 2>/dev/null | awk -v me="$TB_IFACE" '$2 != me {print $2 " (" $4 ")"}' || true)
if [[ -n $net_conflicts ]]; then
    warn "other interfaces in $(where) overlap $ADDR: $(echo "$net_conflicts" | tr '\n' ' ')"
    warn "the lab traffic may be routed there instead; consider --addr with another subnet or --netns"
fi

# ---- 5. link up -------------------------------------------------------------
if iface_is_up; then
    step "$TB_IFACE is already up"
else
    run ip link set dev "$TB_IFACE" up
    did "brought $TB_IFACE up"
fi

# ---- summary ------------------------------------------------------------------
FINISHED=true
say ""
if ((${#DONE[@]} == 0)); then
    say "Nothing to change: the lab was already set up."
else
    say "Done (${#DONE[@]} change(s) made)."
fi
say ""
run ip -d addr show dev "$TB_IFACE" | sed 's/^/    /'
say ""
if [[ $(carrier_state) == on ]]; then
    say "Carrier is ON: a program already has $TB_IFACE open."
else
    say "NO-CARRIER / state DOWN above is expected: a TAP has carrier only while a"
    say "program has it open. It turns on when the lab program attaches."
fi

opts=$(lab_opts)
next() { printf '  %-28s%s\n' "$1" "$2"; }
say ""
say "Next steps:"
if [[ -z $TB_NETNS ]]; then
    next "1. as $LAB_USER, no sudo:" "$(responder_cmd "$TB_RESPONDER_BIN" "$LAB_USER")"
else
    next "1. as $LAB_USER, build:" "cargo build --bin $TB_RESPONDER_BIN"
    next "   run it in the namespace:" "$(responder_cmd "$TB_RESPONDER_BIN" "$LAB_USER")"
fi
if [[ -z $TB_NETNS ]]; then
    next "2. in another terminal:" "ping $TB_RESPONDER_IP   (or: scripts/ping.sh$opts)"
else
    next "2. in another terminal:" "sudo scripts/ping.sh$opts"
fi
next "or chapter 3, ARP only:" "$(responder_cmd "$TB_ARP_BIN" "$LAB_USER"), then $(arping_cmd "$TB_RESPONDER_IP")"
next "optional, watch frames:" "sudo scripts/capture.sh$opts"
next "check everything:" "${TB_NETNS:+sudo }scripts/doctor.sh${TB_NETNS:+ --user $LAB_USER}$opts"
next "undo:" "sudo scripts/teardown.sh$opts"
