#!/usr/bin/env bash
# scripts/fuzz.sh -- fuzz the responder and the parsers with libFuzzer (cargo fuzz) for a
# given time, and say how many inputs ran without a finding.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

DEFAULT_SECONDS=60
DEFAULT_MAX_LEN=9100

usage() {
    cat <<EOF
Usage: $TB_PROG [OPTIONS]

Run a fuzz target for a while. The default, fuzz/fuzz_targets/respond.rs: libFuzzer feeds
respond() and every parser (and what 02 and 05 print) with inputs it mutates
towards new code paths, and the oracle of the property tests (tests/oracle/)
judges every outcome. A finding is a panic (an out-of-bounds access, an integer
overflow: the target is built with overflow checks) or a reply that is wrong,
longer than its request, to a group address or to a frame that deserves none,
or a missing reply to a frame that deserves one.

The other, fuzz/fuzz_targets/offloads.rs (--target offloads, chapter 9): a
virtio-net header and a frame for the header parser, the checksum completion and
the superframe cutter; a finding is a panic, or a segment longer than its
gso_size or with a checksum that does not verify.

The corpus (fuzz/corpus/TARGET/, not in git) is seeded with the kernel's frames
from tests/fixtures/ (for offloads: behind the virtio-net header they were read
with, and behind an empty one) and grows from run to run. At the end the script
prints the number of executions and the time, and exits 0 if there was no
finding; a finding is saved under fuzz/artifacts/TARGET/ with the command to
replay it.

Needs cargo-fuzz (cargo install cargo-fuzz --locked) and xxd. Works with the
stable toolchain: no sanitizer is used by default (the code under test has no
unsafe block, so every memory error would already be a bounds-check panic).
No network, no root: it runs anywhere, a network namespace included.

Options:
  --target T        respond (default) or offloads
  --seconds N       how long to fuzz (default: $DEFAULT_SECONDS)
  --max-len N       the longest input in bytes (default: $DEFAULT_MAX_LEN: a frame
                    for MTU 9000, plus the control byte)
  --jobs N          run N fuzzing processes in parallel (default: 1)
  --sanitizer S     none (default) or address (needs nightly, or RUSTC_BOOTSTRAP=1
                    with a toolchain that ships the ASan runtime)
  -h, --help        this help

Example (the figure in the closing note of issue 4):  $TB_PROG --seconds 600
Chapter 9's target:                                  $TB_PROG --target offloads
EOF
}

SECONDS_TO_RUN=$DEFAULT_SECONDS
MAX_LEN=$DEFAULT_MAX_LEN
JOBS=1
SANITIZER=none
TARGET=respond

tb_split_args "$@"; set -- "${TB_ARGS[@]}"
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --seconds) need_value "$1" $#; need_number "$1" "$2"; SECONDS_TO_RUN=$2; shift 2 ;;
        --max-len) need_value "$1" $#; need_number "$1" "$2"; MAX_LEN=$2; shift 2 ;;
        --target)
            need_value "$1" $#
            case $2 in respond | offloads) TARGET=$2 ;; *) die "--target: respond or offloads, not '$2'" ;; esac
            shift 2 ;;
        --jobs) need_value "$1" $#; need_number "$1" "$2"; JOBS=$2; shift 2 ;;
        --sanitizer)
            need_value "$1" $#
            case $2 in none | address) SANITIZER=$2 ;; *) die "--sanitizer: none or address, not '$2'" ;; esac
            shift 2 ;;
        *) unknown_option "$1" ;;
    esac
done

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

command -v cargo-fuzz >/dev/null || [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo-fuzz ]] ||
    die "cargo-fuzz is not installed. Fix: cargo install cargo-fuzz --locked"
command -v xxd >/dev/null || die "xxd is missing (it turns the fixtures into seeds). Fix: sudo apt-get install xxd"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

CORPUS=fuzz/corpus/$TARGET
ARTIFACTS=fuzz/artifacts/$TARGET
mkdir -p "$CORPUS" "$ARTIFACTS"

# ---- seeds: every captured frame, as is and with its checksums repaired ------------
# The first byte of an input is the target's control byte (see respond.rs): 00 takes
# the frame as it is, 03 repairs both checksums after the fuzzer's mutations, 04
# answers ARP only.
# For offloads, the first 12 bytes are the virtio-net header: the one a superframe's
# fixture names in its comment ("virtio-net header 01 05 2a 00 ..."), and all zeroes
# (a frame with nothing to do) for every fixture.
seeded=0
for fixture in tests/fixtures/*.hex; do
    name=$(basename -- "$fixture" .hex)
    if [[ $TARGET == respond ]]; then
        prefixes=(00 03 04)
    else
        prefixes=(000000000000000000000000)
        header=$(sed -n 's/.*virtio-net header \(\([0-9a-f][0-9a-f] \)\{11\}[0-9a-f][0-9a-f]\).*/\1/p' -- "$fixture" | head -n 1)
        [[ -n $header ]] && prefixes+=("${header// /}")
    fi
    for prefix in "${prefixes[@]}"; do
        seed=$CORPUS/seed-$name-${prefix:0:6}
        { printf '%s' "$prefix"; grep -v '^#' -- "$fixture"; } | xxd -r -p >"$seed"
        seeded=$((seeded + 1))
    done
done
say "Seeded $CORPUS with $seeded inputs from tests/fixtures/ ($(find "$CORPUS" -type f | wc -l) in the corpus)."

# ---- build, then run -------------------------------------------------------------
fuzz_args=(--sanitizer "$SANITIZER" --debug-assertions --release)
say "Building the fuzz target (cargo fuzz build ${fuzz_args[*]} $TARGET)..."
cargo fuzz build "${fuzz_args[@]}" "$TARGET"

log=$(mktemp)
started=$(mktemp)   # artifacts newer than this one are this run's findings
trap 'rm -f -- "$log" "$started"' EXIT
libfuzzer_args=(-max_total_time="$SECONDS_TO_RUN" -max_len="$MAX_LEN" -print_final_stats=1
    -artifact_prefix="$ARTIFACTS/")
if ((JOBS > 1)); then
    # Fork mode: N worker processes that share the corpus; the stats add up.
    libfuzzer_args+=(-fork="$JOBS")
fi
say "Fuzzing for $SECONDS_TO_RUN s with $JOBS process(es)..."
start=$SECONDS
status=0
cargo fuzz run "${fuzz_args[@]}" "$TARGET" "$CORPUS" -- "${libfuzzer_args[@]}" >"$log" 2>&1 || status=$?
elapsed=$((SECONDS - start))

# libFuzzer's own summary: "stat::number_of_executed_units: N" (single process), or the
# last "#N ... exec/s" status line (fork mode prints no final stats).
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
if [[ -z $execs ]]; then
    execs=$(sed -n 's/^#\([0-9][0-9]*\)[[:space:]].*/\1/p' "$log" | tail -n 1)
fi
coverage=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1 || true)

say ""
if ((status == 0)); then
    say "No finding: ${execs:-?} executions in ${elapsed} s (${coverage:-coverage not reported}; corpus: $(find "$CORPUS" -type f | wc -l) inputs)."
else
    sed -n '/==[0-9]*== ERROR\|panicked at\|^thread\|SUMMARY\|Test unit written\|outcome /p' "$log" | head -n 40 >&2
    mapfile -t found < <(find "$ARTIFACTS" -type f -newer "$started" 2>/dev/null)
    say "FINDING after ${execs:-?} executions in ${elapsed} s (exit status $status)." >&2
    for f in "${found[@]}"; do
        say "  saved: $f" >&2
        say "  replay: cargo fuzz run ${fuzz_args[*]} $TARGET $f" >&2
    done
    ((${#found[@]})) || tail -n 30 "$log" >&2
    exit 1
fi
