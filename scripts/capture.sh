#!/usr/bin/env bash
# scripts/capture.sh -- watch the frames on the lab's TAP interface.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: sudo $TB_PROG [OPTIONS]

Live capture on the TAP interface (default $TB_DEFAULT_IFACE), one line per frame:
  frame number, time, source MAC, destination MAC, source IP, destination IP,
  protocol, summary (e.g. "Who has $TB_RESPONDER_IP? Tell ${TB_DEFAULT_ADDR%/*}").
Uses tshark, or 'tcpdump -e -n' when tshark is not installed.
Stop with Ctrl-C (or use --count / --duration).

Capturing needs root (or membership of the 'wireshark' group for tshark).
Frames appear only while a program has the interface open (carrier on):
with NO-CARRIER the kernel drops outgoing frames before they are seen.

Options:
  --count N         stop after N frames
  --duration SECS   stop after SECS seconds
  --write FILE      also save the frames to FILE (pcap), for Wireshark later
  --filter EXPR     capture filter (pcap syntax), e.g. 'arp or icmp' to hide
                    the IPv6 router-solicitation/MLD frames the kernel sends
  --tool NAME       tshark or tcpdump (default: tshark if installed)
$(common_help)
EOF
}

COUNT=
DURATION=
WRITE=
TOOL=
FILTER=
tb_split_args "$@"; set -- "${TB_ARGS[@]}"
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --count) need_value "$1" $#; need_number "$1" "$2"; COUNT=$2; shift 2 ;;
        --duration) need_value "$1" $#; need_number "$1" "$2"; DURATION=$2; shift 2 ;;
        --write) need_value "$1" $#; WRITE=$2; shift 2 ;;
        --tool) need_value "$1" $#; TOOL=$2; shift 2 ;;
        --filter) need_value "$1" $#; FILTER=$2; shift 2 ;;
        --iface) need_value "$1" $#; TB_IFACE=$2; shift 2 ;;
        --netns) need_value "$1" $#; TB_NETNS=$2; shift 2 ;;
        --) shift; (($# == 0)) || die "unexpected arguments: $*" ;;
        *) unknown_option "$1" ;;
    esac
done
validate_common
need_netns_if_any "$@"

case $TOOL in
    '') if command -v tshark >/dev/null; then TOOL=tshark
        elif command -v tcpdump >/dev/null; then TOOL=tcpdump
        else die "neither tshark nor tcpdump is installed: sudo apt-get install tshark   (or: tcpdump)"
        fi ;;
    tshark | tcpdump) command -v "$TOOL" >/dev/null || die "$TOOL is not installed: sudo apt-get install $TOOL" ;;
    *) die "--tool wants tshark or tcpdump, not '$TOOL'" ;;
esac

iface_exists || die "$TB_IFACE does not exist in $(where). Create it once with:  sudo scripts/setup.sh$(lab_opts)"
if [[ -n $WRITE ]]; then
    wdir=$(dirname -- "$WRITE")
    [[ -d $wdir && -w $wdir ]] || die "cannot write $WRITE: directory $wdir is missing or not writable"
fi

if [[ $(carrier_state) != on ]]; then
    say "Note: $TB_IFACE has NO-CARRIER (no program has it open): nothing will show up"
    owner=$(iface_attr owner)
    owner_name=root
    if [[ -n $owner && $owner != -1 ]]; then owner_name=$(uid_name "$owner"); fi
    say "      until a responder attaches, e.g.  $(responder_cmd "$TB_RESPONDER_BIN" "$owner_name")"
fi
if ! is_root; then
    say "Note: not root; if the capture is refused, run:  sudo$(printf ' %q' "$0" "${TB_ORIG_ARGS[@]}")"
fi

if [[ $TOOL == tshark ]]; then
    cmd=(tshark -i "$TB_IFACE" -l -n -Q
        -T fields -E header=y -E occurrence=f
        -e frame.number -e frame.time_relative
        -e eth.src -e eth.dst -e ip.src -e ip.dst
        -e _ws.col.Protocol -e _ws.col.Info)
    [[ -z $COUNT ]] || cmd+=(-c "$COUNT")
    [[ -z $DURATION ]] || cmd+=(-a "duration:$DURATION")
    # -P: keep printing the lines while also writing the file
    [[ -z $WRITE ]] || cmd+=(-P -w "$WRITE" -F pcap)
    [[ -z $FILTER ]] || cmd+=(-f "$FILTER")
else
    cmd=(tcpdump -i "$TB_IFACE" -e -n -l)
    [[ -z $COUNT ]] || cmd+=(-c "$COUNT")
    [[ -z $WRITE ]] || cmd+=(--print -w "$WRITE")
    [[ -z $FILTER ]] || cmd+=("$FILTER")
    if [[ -n $DURATION ]]; then
        command -v timeout >/dev/null || die "--duration with tcpdump needs 'timeout' (coreutils)"
        cmd=(timeout --foreground -s INT "$DURATION" "${cmd[@]}")
    fi
fi

say "Capturing on $TB_IFACE in $(where) with $TOOL${WRITE:+, saving to $WRITE} (Ctrl-C to stop)"
say "Running: $(show_cmd "${cmd[@]}")"
rc=0
if [[ $TOOL == tshark ]]; then
    # tshark 4.x ends with a bare "tshark: " line on stderr; drop that noise.
    run "${cmd[@]}" 2> >(grep -vx 'tshark: ' >&2) || rc=$?
else
    run "${cmd[@]}" || rc=$?
fi
# timeout exits 124 when the time is up: that is a normal end here.
[[ $TOOL == tcpdump && -n $DURATION && $rc -eq 124 ]] && rc=0
if [[ -n $WRITE && -e $WRITE ]]; then
    # Written by root under sudo: hand the file to the invoking user.
    if is_root && [[ -n ${SUDO_UID:-} ]]; then
        chown "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" -- "$WRITE" || true
    fi
    say "Saved frames to $WRITE (open it with: wireshark $WRITE, or tshark -r $WRITE)"
fi
if ((rc != 0 && rc != 130)); then
    say "$TOOL stopped with status $rc."
fi
exit "$rc"
