#!/usr/bin/env bash
# scripts/vm/book-output.sh -- record, for the book's chapter "Meet a real VM", what
# scripts/vm-lab.sh prints, by running it.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/../lib.sh"

DEFAULT_OUT=book/src/output

usage() {
    cat <<EOF
Usage: sudo $TB_PROG [OPTIONS]

Run scripts/vm-lab.sh twice, the way the chapter tells a student to, and save
what it prints for book/src/meet-a-real-vm.md. Nothing shown there is typed.
The responder runs as the user behind sudo, as for a student, or as nobody
(--user nobody, shown in the recording) when there is none.
  1. sudo scripts/vm-lab.sh
       -> vm-lab.txt (the whole run), and the same run cut at its "== N."
          headings: vm-lab-prepare.txt (1-5), vm-lab-guest.txt (6),
          vm-lab-host.txt (7), vm-lab-responder.txt (8), vm-lab-capture.txt (9),
          vm-lab-result.txt (the result)
  2. sudo scripts/vm-lab.sh --strace FILE
       -> vm-strace.txt (QEMU's system calls on its TAP)
Both runs must succeed (the guest's pings answered by our responder) before any
file is replaced. Takes 10 to 40 seconds with the kernel cached.

Options:
  --out DIR     where to write (default: $DEFAULT_OUT)
  --bin PATH    passed on to vm-lab.sh (default: it builds 05_full_responder)
  -h, --help    this help
EOF
}

OUT=
BIN=
tb_split_args "$@"; set -- "${TB_ARGS[@]}"
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --out) need_value "$1" $#; OUT=$2; shift 2 ;;
        --bin) need_value "$1" $#; BIN=$2; shift 2 ;;
        *) unknown_option "$1" ;;
    esac
done
need_root "$@"
command -v python3 >/dev/null || die "python3 is missing (it fits the output to the book's column): apt-get install python3"

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/$DEFAULT_OUT}
mkdir -p -- "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf -- "$TMP"' EXIT

# The responder runs as the user behind sudo, as for a student; without one, as nobody
# rather than root (the chapter's point is that it needs no privileges).
lab_user=$(unprivileged_user)
extra=(--user "$lab_user")
[[ -n $BIN ]] && extra+=(--bin "$BIN")

# The command line as the recording shows it: what was run, without --bin.
shown_args=
if [[ $lab_user != "${SUDO_USER:-}" ]]; then shown_args=" --user $lab_user"; fi

say "1. sudo scripts/vm-lab.sh$shown_args"
{
    say "\$ sudo scripts/vm-lab.sh$shown_args"
    scripts/vm-lab.sh "${extra[@]}" 2>&1
} >"$TMP/vm-lab.txt" || { cat "$TMP/vm-lab.txt" >&2; die "scripts/vm-lab.sh failed (output above)"; }

say "2. sudo scripts/vm-lab.sh$shown_args --strace qemu-tap.strace"
(cd "$TMP" && "$ROOT/scripts/vm-lab.sh" "${extra[@]}" --strace qemu-tap.strace >run2.txt 2>&1) ||
    { cat "$TMP/run2.txt" >&2; die "scripts/vm-lab.sh --strace failed (output above)"; }
{
    say "\$ sudo scripts/vm-lab.sh$shown_args --strace qemu-tap.strace"
    say "\$ cat qemu-tap.strace"
    cat "$TMP/qemu-tap.strace"
} >"$TMP/vm-strace.txt"

# The parts of run 1, cut where a heading "== N." or "== Result" starts.
part_of() {
    case $1 in
        1 | 2 | 3 | 4 | 5) echo prepare ;;
        6) echo guest ;;
        7) echo host ;;
        8) echo responder ;;
        9) echo capture ;;
        Result) echo result ;;
        *) echo other ;;
    esac
}
part=prepare
: >"$TMP/vm-lab-prepare.txt"
while IFS= read -r line; do
    if [[ $line =~ ^==\ ([0-9]+|Result)[.]?\  || $line == "== Result" ]]; then
        part=$(part_of "${BASH_REMATCH[1]:-Result}")
    fi
    printf '%s\n' "$line" >>"$TMP/vm-lab-$part.txt"
done <"$TMP/vm-lab.txt"
for part in prepare guest host responder capture result; do
    [[ -s $TMP/vm-lab-$part.txt ]] || die "the run printed no section for '$part'; has vm-lab.sh changed its headings?"
    # No blank line at the start or the end of a part.
    sed -i -e '/./,$!d' -e ':a' -e '/^\n*$/{$d;N;ba' -e '}' "$TMP/vm-lab-$part.txt"
done
[[ ! -e $TMP/vm-lab-other.txt ]] || die "unexpected headings in the run: $(grep '^==' "$TMP/vm-lab-other.txt")"

for f in vm-lab.txt vm-lab-prepare.txt vm-lab-guest.txt vm-lab-host.txt vm-lab-responder.txt \
    vm-lab-capture.txt vm-lab-result.txt vm-strace.txt; do
    # Lines wider than the book's column, continued on the next line.
    "$ROOT/scripts/book-output-wrap.py" "$TMP/$f"
    cp -- "$TMP/$f" "$OUT/$f"
    step "$OUT/$f ($(wc -l <"$OUT/$f") lines)"
done
