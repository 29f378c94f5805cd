#!/usr/bin/env bash
# scripts/doctor.sh -- check that the TAP lab is ready; say how to fix what is not.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: $TB_PROG [OPTIONS]

Check everything the tapbook lab needs and print one line per check:
  OK       fine
  PROBLEM  needs fixing; the line after it says how
  INFO     for your information only
Checks: /dev/net/tun (exists, char 10:200, usable by the user), the tun
driver, the TAP interface (exists, is a TAP with no_pi, owned by the user,
has the address, is up), its carrier, and the tools the lab uses.
Needs no root, except with --netns. Changes nothing.

Options:
  --user NAME       the user who will run cargo (default: \$SUDO_USER, else
                    the current user)
  --addr CIDR       expected host address (default: $TB_DEFAULT_ADDR)
$(common_help)
Exit status: 0 when there is no PROBLEM, 1 otherwise.
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
if [[ -n $TB_NETNS ]]; then need_root "$@"; fi

[[ -n $LAB_USER ]] || LAB_USER=$(default_lab_user)
LAB_UID=$(id -u -- "$LAB_USER" 2>/dev/null) || die "no such user: '$LAB_USER' (use --user NAME)"
read -r -a LAB_GIDS <<<"$(id -G -- "$LAB_USER")"

PROBLEMS=0
ok()      { printf 'OK       %s\n' "$1"; }
info()    { printf 'INFO     %s\n' "$1"; }
problem() {
    printf 'PROBLEM  %s\n' "$1"
    printf '         fix: %s\n' "$2"
    PROBLEMS=$((PROBLEMS + 1))
}
in_lab_groups() {
    local g
    for g in "${LAB_GIDS[@]}"; do [[ $g == "$1" ]] && return 0; done
    return 1
}

OPTS=$(lab_opts)
SETUP="sudo scripts/setup.sh --user $LAB_USER"
if [[ $ADDR != "$TB_DEFAULT_ADDR" ]]; then SETUP+=" --addr $ADDR"; fi
SETUP+=$OPTS
PFX=$(netns_prefix)
[[ -n $PFX ]] || PFX='sudo '

say "tapbook doctor: checking $(where) for user $LAB_USER (uid $LAB_UID)"
say ""

# ---- /dev/net/tun -------------------------------------------------------------
TUN=/dev/net/tun
if [[ ! -e $TUN ]]; then
    problem "$TUN does not exist" "sudo modprobe tun   (or: $SETUP)"
elif [[ ! -c $TUN ]]; then
    problem "$TUN exists but is not a character device" "sudo rm $TUN && $SETUP"
else
    majmin=$(stat -c '%t:%T' "$TUN")
    maj=$((16#${majmin%:*})) min=$((16#${majmin#*:}))
    if [[ $maj:$min == 10:200 ]]; then
        ok "$TUN is a character device 10:200"
    else
        problem "$TUN is character device $maj:$min, expected 10:200" "sudo rm $TUN && $SETUP"
    fi
    read -r mode fuid fgid <<<"$(stat -c '%a %u %g' "$TUN")"
    # Which permission digit applies to the lab user?
    if [[ $LAB_UID -eq 0 ]]; then bits=6
    elif [[ $fuid == "$LAB_UID" ]]; then bits=$(((8#$mode >> 6) & 7))
    elif in_lab_groups "$fgid"; then bits=$(((8#$mode >> 3) & 7))
    else bits=$((8#$mode & 7)); fi
    if (((bits & 6) == 6)); then
        ok "$TUN mode $mode: $LAB_USER can open it read-write"
    else
        problem "$TUN mode $mode: $LAB_USER cannot open it read-write (0666 is the usual default)" \
            "sudo chmod 0666 $TUN   (or: $SETUP)"
    fi
fi

# ---- the tun driver -------------------------------------------------------------
if [[ -d /sys/module/tun ]]; then
    ok "tun driver present (/sys/module/tun)"
elif [[ -r /proc/modules ]] && grep -q '^tun ' /proc/modules; then
    ok "tun module loaded (/proc/modules)"
elif [[ -e /sys/class/misc/tun ]]; then
    ok "tun driver present (built into the kernel: /sys/class/misc/tun)"
else
    problem "tun driver not loaded" "sudo modprobe tun   (or: $SETUP)"
fi

# ---- namespace --------------------------------------------------------------------
if [[ -n $TB_NETNS ]]; then
    if netns_exists; then
        ok "network namespace $TB_NETNS exists"
    else
        problem "network namespace $TB_NETNS does not exist" "$SETUP"
    fi
fi

# ---- user namespaces: the lab without root (cargo lab shell, cargo lab demo) ----------
if ! is_root; then
    if err=$(unshare --user --map-root-user --net true 2>&1); then
        ok "user namespaces allowed: cargo lab shell and cargo lab demo need no root"
    else
        if [[ $(cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns 2>/dev/null) == 1 ]]; then
            fix="sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
        else
            fix="sudo sysctl -w user.max_user_namespaces=15000 (or allow them in the container)"
        fi
        info "user namespaces are blocked ($err): cargo lab shell and demo need root here"
        info "  fix: $fix; or use root: sudo cargo lab demo, or once $SETUP"
    fi
fi

# ---- the TAP interface -------------------------------------------------------------
if [[ -n $TB_NETNS ]] && ! netns_exists; then
    info "skipping the $TB_IFACE checks (no namespace)"
elif ! iface_exists; then
    problem "$TB_IFACE does not exist in $(where)" "$SETUP"
elif ! iface_is_tuntap; then
    problem "$TB_IFACE exists but is not a tun/tap device" \
        "remove it (${PFX}ip link del $TB_IFACE) or choose another name with --iface, then: $SETUP"
else
    ok "$TB_IFACE exists"
    flags=$(iface_attr tun_flags)
    desc=$(describe_tun_flags "$flags")
    if has_flag "$flags" "$TB_IFF_TAP"; then
        ok "$TB_IFACE is a TAP (Ethernet frames): $desc"
    else
        problem "$TB_IFACE is not a TAP: $desc; the lab needs IFF_TAP (0x0002)" "$SETUP   (recreates it)"
    fi
    if has_flag "$flags" "$TB_IFF_NO_PI"; then
        ok "$TB_IFACE has IFF_NO_PI (0x1000): frames come without the 4-byte packet-info header"
    else
        problem "$TB_IFACE lacks IFF_NO_PI (0x1000) (created with 'pi')" "$SETUP   (recreates it)"
    fi
    if has_flag "$flags" "$TB_IFF_MULTI_QUEUE"; then
        problem "$TB_IFACE is multi-queue; the lab program attaches single-queue and would get EINVAL" "$SETUP   (recreates it)"
    fi
    if ! has_flag "$flags" "$TB_IFF_PERSIST"; then
        info "$TB_IFACE is not persistent: it disappears when the program holding it exits"
    fi

    owner=$(iface_attr owner) group=$(iface_attr group)
    oname=$(uid_name "$owner") gname=$(gid_name "$group")
    if [[ $owner == "$LAB_UID" ]]; then
        ok "$TB_IFACE owner is $oname: $LAB_USER may attach without sudo"
    elif [[ $owner == -1 && $group != -1 ]] && in_lab_groups "$group"; then
        ok "$TB_IFACE has no owner but group $gname, which $LAB_USER is in: attaching works"
    elif [[ $LAB_UID -eq 0 ]]; then
        ok "$TB_IFACE owner is $oname, group $gname; root may attach anyway (CAP_NET_ADMIN)"
    else
        if [[ $owner == -1 && $group == -1 ]]; then
            what="$TB_IFACE has no owner and no group: only root (CAP_NET_ADMIN) may attach"
        else
            what="$TB_IFACE belongs to user $oname, group $gname, not to $LAB_USER: TUNSETIFF would fail with EPERM"
        fi
        problem "$what" "$SETUP   (recreates it for $LAB_USER)"
    fi

    mapfile -t addrs < <(iface_ipv4_addrs)
    have=false
    for a in "${addrs[@]}"; do [[ $a == "$ADDR" ]] && have=true; done
    if $have; then
        ok "$TB_IFACE has address $ADDR"
    else
        problem "$TB_IFACE lacks address $ADDR (has: ${addrs[*]:-none})" "${PFX}ip addr add $ADDR dev $TB_IFACE   (or: $SETUP)"
    fi
    others=()
    for a in "${addrs[@]}"; do [[ $a == "$ADDR" ]] || others+=("$a"); done
    ((${#others[@]} == 0)) || info "$TB_IFACE also has: ${others[*]}"
    # Chapter 8's IPv6 address.
    if run ip -o -6 addr show dev "$TB_IFACE" 2>/dev/null | awk '{print $4}' | grep -qxF "$TB_DEFAULT_ADDR6"; then
        ok "$TB_IFACE has address $TB_DEFAULT_ADDR6 (chapter 8)"
    else
        problem "$TB_IFACE lacks address $TB_DEFAULT_ADDR6 (chapter 8's IPv6)" "${PFX}ip addr add $TB_DEFAULT_ADDR6 dev $TB_IFACE nodad   (or: $SETUP)"
    fi

    if iface_is_up; then
        ok "$TB_IFACE is up (administratively)"
    else
        problem "$TB_IFACE is down" "${PFX}ip link set $TB_IFACE up   (or: $SETUP)"
    fi

    case $(carrier_state) in
        on) info "carrier ON: a program has $TB_IFACE open right now" ;;
        off) info "NO-CARRIER: no program has $TB_IFACE open (expected until you run $(responder_cmd "$TB_RESPONDER_BIN" "$LAB_USER"))" ;;
        *) info "carrier unknown (interface down)" ;;
    esac
fi

# Things in the namespace that would spoil the experiment.
if [[ -z $TB_NETNS ]] || netns_exists; then
    if run ip -o -4 addr show 2>/dev/null | awk '{print $4}' | grep -q "^${TB_RESPONDER_IP//./\\.}/"; then
        problem "$TB_RESPONDER_IP is assigned to a local interface: the kernel, not your program, would answer the pings" \
            "${PFX}ip addr del $TB_RESPONDER_IP/<prefix> dev <that interface>"
    fi
    clash=$(run ip -o -4 addr show to "$ADDR" 2>/dev/null | awk -v me="$TB_IFACE" '$2 != me {printf "%s (%s) ", $2, $4}' || true)
    [[ -z $clash ]] || problem "other interfaces share the lab subnet: $clash" \
        "remove the overlap, or use another namespace: $SETUP   (with --netns NAME)"
fi

# ---- tools -----------------------------------------------------------------------
tool_check() { # NAME PACKAGE PURPOSE
    local path
    if path=$(command -v "$1"); then
        ok "$1 found ($path)"
    else
        problem "$1 not found (needed for: $3)" "sudo apt-get install $2"
    fi
}
# cargo usually lives in ~/.cargo/bin, which root's PATH under sudo lacks.
user_home=$(getent passwd "$LAB_USER" | cut -d: -f6 || true)
if path=$(command -v cargo); then
    ok "cargo found ($path)"
elif [[ -n $user_home && -x $user_home/.cargo/bin/cargo ]]; then
    ok "cargo found ($user_home/.cargo/bin/cargo)"
else
    problem "cargo not found (needed to build and run the lab programs)" \
        "install Rust with rustup, or: sudo apt-get install cargo"
fi
# The lab's tools, from the one list of packages (scripts/packages.txt).
while IFS=$'\t' read -r package command why; do
    tool_check "$command" "$package" "$why"
done < <(list_packages lab)
if path=$(command -v tshark); then
    ok "tshark found ($path)"
elif path=$(command -v tcpdump); then
    ok "tcpdump found ($path) (tshark is nicer: sudo apt-get install tshark)"
else
    problem "neither tshark nor tcpdump found (needed by scripts/capture.sh)" "sudo apt-get install tshark   (or: tcpdump)"
fi

say ""
if ((PROBLEMS == 0)); then
    say "All checks passed. Next: $(responder_cmd "$TB_RESPONDER_BIN" "$LAB_USER")"
    say "                   then in another terminal: ${TB_NETNS:+sudo }scripts/ping.sh$OPTS"
    exit 0
fi
say "$PROBLEMS problem(s) found; apply the fixes above (usually: $SETUP), then run this again."
exit 1
