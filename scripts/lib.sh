# shellcheck shell=bash
# The variables below are used by the scripts that source this file:
# shellcheck disable=SC2034
# scripts/lib.sh -- helpers shared by the tapbook lab scripts.
#
# Sourced, never executed:   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Provides plain (colour-free) messages, option-parsing helpers, `run`
# (which prefixes `ip netns exec NAME` when a namespace was chosen) and
# small queries about the lab's TAP interface.

# ip, modprobe and arping live in /usr/sbin on Debian, which a normal
# user's PATH often lacks.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin" ;; esac
case ":$PATH:" in *:/sbin:*) ;; *) PATH="$PATH:/sbin" ;; esac
export PATH

# ---- lab defaults (one place to change them) -------------------------------
TB_DEFAULT_IFACE=tap4
TB_DEFAULT_ADDR=172.16.1.1/24     # the host side of the lab link
TB_RESPONDER_IP=172.16.1.2        # the address the Rust program answers for
TB_DEFAULT_ADDR6=fd00:172:16:1::1/64 # the host side of the lab link in IPv6 (chapter 8)
TB_RESPONDER_IP6=fd00:172:16:1::2 # the IPv6 address the Rust program answers for
TB_RESPONDER_BIN=05_full_responder # the program the scripts' next steps start: it answers ping
TB_ARP_BIN=03_arp_reply            # answers ARP only: the scripts pair it with arping

# tun_flags bits (include/uapi/linux/if_tun.h)
TB_IFF_TUN=0x0001
TB_IFF_TAP=0x0002
TB_IFF_MULTI_QUEUE=0x0100
TB_IFF_PERSIST=0x0800
TB_IFF_NO_PI=0x1000
TB_IFF_VNET_HDR=0x4000

# Settings common to every script; the scripts' option parsers overwrite them.
TB_IFACE=$TB_DEFAULT_IFACE
TB_NETNS=${TAPBOOK_NETNS:-}

TB_PROG=$(basename -- "$0")
TB_LIB_DIR=$(dirname -- "${BASH_SOURCE[0]}")
# The script's own arguments (a sourced file sees its caller's "$@"), for
# messages such as "run it again with sudo".
TB_ORIG_ARGS=("$@")

# ---- messages ---------------------------------------------------------------
say()  { printf '%s\n' "$*"; }
step() { printf '  * %s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$TB_PROG" "$*" >&2; }
die()  { printf '%s: error: %s\n' "$TB_PROG" "$*" >&2; exit 1; }

# ---- option parsing helpers -------------------------------------------------

# tb_split_args ARGS...: rewrite "--opt=value" as "--opt" "value" into the
# array TB_ARGS, stopping at "--" (everything after it is copied verbatim).
# An empty value is an error, never "the default": `--netns "$NS"` with NS unset
# must not mean the current namespace (`ip netns exec ''` refuses too).
# Use:  tb_split_args "$@"; set -- "${TB_ARGS[@]}"
TB_ARGS=()
tb_split_args() {
    TB_ARGS=()
    while (($#)); do
        case $1 in
            --) TB_ARGS+=("$@"); return 0 ;;
            --*=*) TB_ARGS+=("${1%%=*}" "${1#*=}") ;;
            *) TB_ARGS+=("$1") ;;
        esac
        shift
    done
    local i
    for ((i = 0; i < ${#TB_ARGS[@]}; i++)); do
        [[ ${TB_ARGS[i]} == -- ]] && break
        if [[ -z ${TB_ARGS[i]} ]]; then
            ((i > 0)) && [[ ${TB_ARGS[i - 1]} == -* ]] &&
                die "option ${TB_ARGS[i - 1]} needs a value, not an empty one (see --help)"
            die "unexpected empty argument (see --help)"
        fi
    done
}

# need_value OPTION NEXT_ARG_COUNT: die unless OPTION has an argument.
# Call as `need_value "$1" $#` before reading "$2".
need_value() {
    (($2 >= 2)) || die "option $1 needs a value (see --help)"
}

# need_number OPTION VALUE: die unless VALUE is a positive integer.
need_number() {
    if ! [[ $2 =~ ^[0-9]+$ ]] || ((10#$2 == 0)); then
        die "option $1 wants a positive whole number, not '$2'"
    fi
}

unknown_option() {
    case $1 in
        -*) die "unknown option '$1' (try: $TB_PROG --help)" ;;
        *) die "unexpected argument '$1' (try: $TB_PROG --help)" ;;
    esac
}

# validate_common: check --iface / --netns values once parsing is done.
validate_common() {
    if [[ -z $TB_NETNS && -v TAPBOOK_NETNS ]]; then
        die "TAPBOOK_NETNS is set but empty; set it to a namespace name, or unset it (unset TAPBOOK_NETNS) to work in the current network namespace"
    fi
    [[ $TB_IFACE =~ ^[A-Za-z0-9_.-]{1,15}$ ]] ||
        die "bad interface name '$TB_IFACE' (1-15 characters: letters, digits, . _ -)"
    if [[ -n $TB_NETNS ]]; then
        [[ $TB_NETNS =~ ^[A-Za-z0-9_.-]+$ && $TB_NETNS != . && $TB_NETNS != .. ]] ||
            die "bad network namespace name '$TB_NETNS' (letters, digits, . _ -)"
    fi
}

# Text describing the options every script shares, for --help.
common_help() {
    cat <<EOF
  --iface NAME      the TAP interface (default: $TB_DEFAULT_IFACE)
  --netns NAME      work inside network namespace NAME: every ip/ping/tshark
                    command runs under 'ip netns exec NAME' (needs root).
                    Default: \$TAPBOOK_NETNS if set, else the current one.
  -h, --help        show this help
EOF
}

# ---- privileges and users ----------------------------------------------------
is_root() { [[ $(id -u) -eq 0 ]]; }

need_root() {
    is_root && return 0
    local cmd
    cmd=$(printf ' %q' "$0" "${TB_ORIG_ARGS[@]}")
    die "this needs root: run it again with sudo:  sudo${cmd}"
}

# The user who will run `cargo run`: --user, else the user behind sudo,
# else whoever runs this script.
default_lab_user() {
    if [[ -n ${SUDO_USER:-} && ${SUDO_USER} != root ]]; then
        printf '%s\n' "$SUDO_USER"
    else
        id -un
    fi
}

# ---- packages (the one list: scripts/packages.txt; cargo lab installs them) -----

# list_packages GROUP...: "package<TAB>command<TAB>why" for each package of GROUPs.
list_packages() {
    local package command group why g
    while read -r package command group why; do
        [[ -z $package || $package == '#'* ]] && continue
        for g; do
            if [[ $g == "$group" ]]; then printf '%s\t%s\t%s\n' "$package" "$command" "$why"; fi
        done
    done <"$TB_LIB_DIR/packages.txt"
}

# ---- namespaces --------------------------------------------------------------
netns_exists() {
    [[ -n $TB_NETNS ]] && ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF -- "$TB_NETNS"
}

# Where we are working, for messages.
where() {
    if [[ -n $TB_NETNS ]]; then printf 'network namespace %s' "$TB_NETNS"; else printf 'the current network namespace'; fi
}

# For commands printed in "next steps": the prefix a user has to type.
netns_prefix() {
    if [[ -n $TB_NETNS ]]; then printf 'sudo ip netns exec %s ' "$TB_NETNS"; fi
}

# The options that say where the lab is (--iface, --netns), as this script was given
# them: the other scripts' commands in "next steps" and "fix" lines end with these.
lab_opts() {
    if [[ $TB_IFACE != "$TB_DEFAULT_IFACE" ]]; then printf ' --iface %s' "$TB_IFACE"; fi
    if [[ -n $TB_NETNS ]]; then printf ' --netns %s' "$TB_NETNS"; fi
}

# responder_cmd PROGRAM USER: the command that runs chapter PROGRAM on the lab's
# interface as USER: `cargo run` here, or the built binary inside the namespace (ip netns
# exec needs root; runuser then drops to USER, who owns the interface).
responder_cmd() {
    local args=
    if [[ $TB_IFACE != "$TB_DEFAULT_IFACE" ]]; then args=" --iface $TB_IFACE"; fi
    if [[ -z $TB_NETNS ]]; then
        printf 'cargo run --bin %s%s\n' "$1" "${args:+ --$args}"
    elif [[ $2 == root ]]; then
        printf 'sudo ip netns exec %s target/debug/%s%s\n' "$TB_NETNS" "$1" "$args"
    else
        printf 'sudo ip netns exec %s runuser -u %s -- target/debug/%s%s\n' "$TB_NETNS" "$2" "$1" "$args"
    fi
}

# arping_cmd ADDR: the command that asks for ADDR with the kernel's arping on our interface.
arping_cmd() {
    printf 'sudo %sarping -c 3 -I %s %s\n' "${TB_NETNS:+ip netns exec $TB_NETNS }" "$TB_IFACE" "$1"
}

# For ping.sh, capture.sh, teardown.sh, doctor.sh: with --netns we must be
# root, and the namespace must already exist.
need_netns_if_any() {
    [[ -z $TB_NETNS ]] && return 0
    need_root "$@"
    netns_exists || die "network namespace '$TB_NETNS' does not exist; create the lab with:  sudo scripts/setup.sh$(lab_opts)"
}

# run CMD...: run CMD in the chosen namespace (or here when none was chosen).
run() {
    if [[ -n $TB_NETNS ]]; then
        ip netns exec "$TB_NETNS" "$@"
    else
        "$@"
    fi
}

# ---- interface queries (all inside the chosen namespace) ---------------------
# /sys/class/net is per namespace: `ip netns exec` remounts /sys, so read it
# through `run`.
iface_exists() { run ip link show dev "$TB_IFACE" >/dev/null 2>&1; }

# sysfs attribute of the interface, empty if unreadable.
iface_attr() { run cat "/sys/class/net/$TB_IFACE/$1" 2>/dev/null || true; }

# Is it a tun/tap device at all? (only those have tun_flags)
iface_is_tuntap() { [[ -n $(iface_attr tun_flags) ]]; }

# has_flag FLAGS BIT: test a bit of a tun_flags value like 0x1802.
has_flag() { (($1 & $2)); }

# carrier_state: prints on / off / unknown (interface down or absent).
# A tun/tap has carrier exactly while some program holds it open.
carrier_state() {
    case $(iface_attr carrier) in
        1) echo on ;;
        0) echo off ;;
        *) echo unknown ;;
    esac
}

iface_is_up() { run ip -o link show dev "$TB_IFACE" 2>/dev/null | grep -q '[<,]UP[,>]'; }

# IPv4 addresses (CIDR) on the interface, one per line.
iface_ipv4_addrs() {
    run ip -o -4 addr show dev "$TB_IFACE" 2>/dev/null | awk '{print $4}'
}

# Name for a numeric uid/gid from the owner/group files (-1 means "none").
uid_name() { if [[ $1 == -1 ]]; then echo '(none)'; else getent passwd "$1" | cut -d: -f1 | grep . || echo "uid $1"; fi; }
gid_name() { if [[ $1 == -1 ]]; then echo '(none)'; else getent group "$1" | cut -d: -f1 | grep . || echo "gid $1"; fi; }

# Describe tun_flags in words.
describe_tun_flags() {
    local f=$1 out
    if has_flag "$f" "$TB_IFF_TAP"; then out=tap; elif has_flag "$f" "$TB_IFF_TUN"; then out=tun; else out='neither tun nor tap'; fi
    has_flag "$f" "$TB_IFF_NO_PI" && out+=" no_pi" || out+=" pi"
    has_flag "$f" "$TB_IFF_PERSIST" && out+=" persist"
    has_flag "$f" "$TB_IFF_MULTI_QUEUE" && out+=" multi_queue"
    has_flag "$f" "$TB_IFF_VNET_HDR" && out+=" vnet_hdr"
    printf '%s (tun_flags %s)\n' "$out" "$f"
}

# show_cmd CMD...: the command as one shell-quoted line, for messages.
show_cmd() {
    local a out=
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then out+=" $a"
        elif [[ $a != *"'"* ]]; then out+=" '$a'"
        else out+=" $(printf '%q' "$a")"; fi
    done
    printf '%s\n' "${out# }"
}

# join_by SEP WORDS...: print WORDS separated by SEP.
join_by() {
    local sep=$1 out=
    shift
    while (($#)); do out+=${out:+$sep}$1; shift; done
    printf '%s\n' "$out"
}
