#!/usr/bin/env bash
# scripts/demo.sh -- the whole course in one command: build, make an isolated lab in a
# network namespace, run the full responder as an unprivileged user, ping it, clean up.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: $TB_PROG [OPTIONS]

Install what the lab needs, build the chapter programs, then, inside a private network
namespace (so nothing touches your real network):
  1. scripts/setup.sh makes a persistent tap4 owned by you, with 172.16.1.1/24;
  2. 05_full_responder runs as you (never as root: under sudo or as root, as the
     user behind sudo or else nobody) and answers for $TB_RESPONDER_IP;
  3. the kernel's own arping and ping talk to it; its output and counters are shown;
  4. the namespace is removed again (also on Ctrl-C or failure).
Needs root for the namespace (it uses sudo when run as a user). Missing Debian packages
of the lab ($(list_packages lab | cut -f1 | xargs), from scripts/packages.txt) are
installed first, with one apt-get install; without root or sudo it stops before doing
anything and says what to run.

Options:
  --netns NAME    the namespace to create and remove (default: tapbook-demo-PID);
                  it must not exist yet
  --count N       how many pings (default: 4)
  --keep          leave the namespace (and tap4) in place afterwards
  --bin-dir DIR   use the 05_full_responder in DIR instead of building it
  -h, --help      this help
EOF
}

COUNT=4
KEEP=0
BIN_DIR=
NS=tapbook-demo-$$
tb_split_args "$@"; set -- "${TB_ARGS[@]}"
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --netns) need_value "$1" $#; NS=$2; shift 2 ;;
        --count) need_value "$1" $#; need_number "$1" "$2"; COUNT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --bin-dir) need_value "$1" $#; BIN_DIR=$2; shift 2 ;;
        *) unknown_option "$1" ;;
    esac
done
# The demo always works in a namespace of its own, never in the current one.
TB_NETNS=$NS
validate_common

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
SUDO=()
if ! is_root; then
    can_sudo || die "the demo needs root for its network namespace; not root, and $(no_sudo_why). Run it as root:  $(show_cmd su -c "$(show_cmd "$0" "${TB_ORIG_ARGS[@]}")")"
    SUDO=(sudo)
fi
if "${SUDO[@]}" ip netns list | awk '{print $1}' | grep -qxF -- "$NS"; then
    die "network namespace $NS exists already; the demo makes its own and removes it: choose another name with --netns"
fi
ensure_packages "the demo" lab
ME=$(id -un)
# The responder never runs as root: as root (CI, or sudo), it runs as the user behind
# sudo, or else as the system user nobody.
RUN_AS=$(unprivileged_user)

if [[ -z $BIN_DIR ]]; then
    say "== 1. Building the chapter programs (cargo build --release, as $ME)"
    (cd "$ROOT" && cargo build --release --bins --quiet)
    BIN_DIR=$ROOT/target/release
else
    say "== 1. Using the programs in $BIN_DIR"
fi
BIN=$(realpath -- "$BIN_DIR/05_full_responder")
[[ -x $BIN ]] || die "no $BIN (build it with: cargo build --release --bin 05_full_responder)"

LOG=$(mktemp -d)
RESPONDER_PID=
cleanup() {
    if [[ -n $RESPONDER_PID ]] && kill -0 "$RESPONDER_PID" 2>/dev/null; then
        "${SUDO[@]}" kill -TERM "$RESPONDER_PID" 2>/dev/null || true
    fi
    if ((KEEP == 0)); then
        "${SUDO[@]}" ip netns del "$NS" 2>/dev/null || true
    fi
    rm -rf -- "$LOG"
}
trap cleanup EXIT

in_ns() { "${SUDO[@]}" ip netns exec "$NS" "$@"; }

say ""
say "== 2. Setting up the lab in network namespace $NS"
"${SUDO[@]}" "$ROOT/scripts/setup.sh" --netns "$NS" --user "$RUN_AS" >"$LOG/setup" 2>&1 ||
    { cat "$LOG/setup"; die "setup failed"; }
in_ns ip -br addr show tap4

say ""
say "== 3. Starting 05_full_responder as $RUN_AS (not root) on tap4"
# ip netns exec needs root; setpriv drops to that user and group before the responder starts.
# Started directly (not through a shell function, which would fork a subshell): ip netns
# exec and setpriv exec in turn, so $! is the responder itself (or sudo, which relays
# our SIGTERM to it).
"${SUDO[@]}" ip netns exec "$NS" setpriv --reuid "$(id -u "$RUN_AS")" --regid "$(id -g "$RUN_AS")" --clear-groups -- \
    "$BIN" >"$LOG/responder" 2>&1 &
RESPONDER_PID=$!
for _ in $(seq 100); do
    in_ns ip -o link show tap4 | grep -q LOWER_UP && break
    sleep 0.05
done
in_ns ip -o link show tap4 | grep -q LOWER_UP ||
    { cat "$LOG/responder"; die "the responder did not attach to tap4"; }

say ""
say "== 4. The kernel's arping and ping, from 172.16.1.1 to $TB_RESPONDER_IP"
in_ns arping -c 2 -I tap4 "$TB_RESPONDER_IP"
say ""
in_ns ping -c "$COUNT" -i 0.2 "$TB_RESPONDER_IP"
say ""
say "A full-size frame (1472 bytes of data, 1514 on the wire):"
in_ns ping -c 2 -i 0.2 -s 1472 "$TB_RESPONDER_IP" | tail -n 2
say ""
say "The kernel's neighbour table learnt our MAC:"
in_ns ip neigh show "$TB_RESPONDER_IP"

say ""
say "== 5. What the responder saw (stopped with SIGTERM, it prints its counters)"
"${SUDO[@]}" kill -TERM "$RESPONDER_PID"
status=0
wait "$RESPONDER_PID" || status=$?
RESPONDER_PID=
cat "$LOG/responder"
((status == 0)) || die "the responder exited with status $status"

say ""
if ((KEEP)); then
    say "The lab is still there: sudo ip netns exec $NS bash   (remove it: sudo ip netns del $NS)"
else
    say "Done; namespace $NS removed."
    say "To run the lab by hand: sudo scripts/setup.sh, then cargo run --bin $TB_RESPONDER_BIN"
fi
