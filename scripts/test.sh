#!/usr/bin/env bash
# scripts/test.sh -- every check the project has, as CI runs them.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: $TB_PROG [OPTIONS]

Run all of tapbook's checks, in order, and print one line per check:
  fmt        cargo fmt --check
  clippy     cargo clippy --all-targets -- -D warnings
  shellcheck every script under scripts/ and tests/
  tests      cargo test: unit tests on captured frames, then the end-to-end
             tests with the kernel's ping and arping in network namespaces
  book       mdbook build book, and the check that every listing it
             includes exists and is not empty (when book/ exists)
  bench      the benchmark script in its short mode (when it exists)

First it installs what is missing from scripts/packages.txt (the lab's packages, the
test tools, and for the book check mdbook and Chromium): one line says what and why,
then one apt-get install (as root, or through sudo) and cargo install for mdbook.
Without root or sudo it stops before anything else and says what to run.

The end-to-end tests need root. Run as a normal user, the test binaries are run
through sudo (cargo itself is not); without root or sudo they are skipped.

The last line counts the tests, each check other than cargo test as one more:
  tests: N passed, N failed, N skipped
A test that could not run (no root, a tool missing) counts as skipped, never as
passed, and the line before says why; under CI (CI set) it fails instead.

Options:
  --quick       fmt, clippy, shellcheck and unit tests only (no root needed)
  -h, --help    this help
EOF
}

QUICK=0
tb_split_args "$@"; set -- "${TB_ARGS[@]}"
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --quick) QUICK=1; shift ;;
        *) unknown_option "$1" ;;
    esac
done

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# cargo install puts mdbook there.
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

if ((QUICK)); then
    ensure_packages "scripts/test.sh --quick" lint
else
    ensure_packages "the tests" lab lint test book
fi
command -v cargo >/dev/null || die "cargo is not installed: install Rust (with rustup), then run this again"

# Tests that cannot run here (no root, a tool missing) write "name<TAB>reason" into
# this file (tests/common/mod.rs), so that they count as skipped, not passed.
TAPBOOK_SKIP_LOG=$(mktemp)
export TAPBOOK_SKIP_LOG
TEST_LOG=$(mktemp)
trap 'rm -f -- "$TAPBOOK_SKIP_LOG" "$TEST_LOG"' EXIT

AS_ROOT=true
if ! is_root && ((QUICK == 0)); then
    if can_sudo; then
        # Build as ourselves, run the test binaries as root.
        triple=$(rustc -vV | sed -n 's/^host: //p')
        runner_var="CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$triple")_RUNNER"
        export "$runner_var"="sudo --preserve-env=CI,TAPBOOK_SKIP_LOG"
        say "Not root: the test binaries will run through sudo ($runner_var)."
    else
        AS_ROOT=false
        say "Not root and no sudo: the end-to-end tests will be skipped."
    fi
fi

PASSED=()
FAILED=()
SKIPPED=()
check() {
    local name=$1
    shift
    say ""
    say "== $name: $*"
    local start=$SECONDS
    if "$@"; then
        PASSED+=("$name")
        say "== $name: ok ($((SECONDS - start)) s)"
    else
        FAILED+=("$name")
        say "== $name: FAILED ($((SECONDS - start)) s)"
    fi
}
cargo_test() { cargo test "$@" 2>&1 | tee "$TEST_LOG"; }

check fmt cargo fmt --check
check clippy cargo clippy --all-targets --quiet -- -D warnings
mapfile -t shell_scripts < <(git ls-files -co --exclude-standard -- '*.sh')
check shellcheck shellcheck -x "${shell_scripts[@]}"
if ((QUICK)); then
    check tests cargo_test --lib --bins
else
    check tests cargo_test --all-targets
fi
if ((QUICK == 0)) && [[ -f book/book.toml ]]; then
    check book scripts/check-book.sh
fi
if ((QUICK == 0)) && [[ -x scripts/bench.sh ]]; then
    if $AS_ROOT; then
        check bench scripts/bench.sh --short
    else
        SKIPPED+=("bench")
        printf 'bench\tneeds root\n' >>"$TAPBOOK_SKIP_LOG"
    fi
fi

# ---- the count ------------------------------------------------------------------
# cargo prints "test result: ok. 12 passed; 0 failed; 1 ignored; ..." per test binary.
read -r passed failed ignored < <(awk '/^test result:/ {p += $4; f += $6; i += $8}
    END {print p + 0, f + 0, i + 0}' "$TEST_LOG")
# A test that skipped itself returned early, and cargo counted it as passed.
skipped_tests=$(grep -c . "$TAPBOOK_SKIP_LOG" || true)
skipped_tests=$((skipped_tests - ${#SKIPPED[@]}))
passed=$((passed - skipped_tests))
# Each other check counts as one test; a cargo test run that failed without a failed
# test (it did not compile) as one failure.
for name in "${PASSED[@]}"; do [[ $name == tests ]] || passed=$((passed + 1)); done
for name in "${FAILED[@]}"; do
    if [[ $name != tests ]] || ((failed == 0)); then failed=$((failed + 1)); fi
done
skipped=$((skipped_tests + ${#SKIPPED[@]} + ignored))

say ""
if ((${#FAILED[@]})); then
    say "failed: ${FAILED[*]}"
fi
if [[ -s $TAPBOOK_SKIP_LOG ]]; then
    say "skipped:"
    sort "$TAPBOOK_SKIP_LOG" | sed 's/\t/: /; s/^/  /'
    # One reason each: "missing: TOOL, TOOL" merged into one list, the others as they are.
    missing=$(cut -f2 "$TAPBOOK_SKIP_LOG" | sed -n 's/^missing: //p' | tr ',' '\n' | xargs -n1 | sort -u | paste -sd, -)
    reasons=$( (if [[ -n $missing ]]; then echo "missing: ${missing//,/, }"; fi
        cut -f2 "$TAPBOOK_SKIP_LOG" | grep -v '^missing: ' | sort -u) | paste -sd ';' - | sed 's/;/; /g')
    say "skipped because: $reasons"
fi
if ((ignored)); then say "($ignored test(s) marked #[ignore] did not run)"; fi
say "tests: $passed passed, $failed failed, $skipped skipped"
((${#FAILED[@]} == 0))
