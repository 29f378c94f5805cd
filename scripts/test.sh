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

The end-to-end tests need root. Run as a normal user, the test binaries are run
through sudo (cargo itself is not); without root or sudo they say they were skipped.

Options:
  --quick       fmt, clippy, shellcheck and unit tests only (no root needed)
  -h, --help    this help
EOF
}

QUICK=0
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --quick) QUICK=1; shift ;;
        *) unknown_option "$1" ;;
    esac
done

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PASSED=()
FAILED=()
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

if [[ $EUID -ne 0 ]] && ((QUICK == 0)) && command -v sudo >/dev/null; then
    # Build as ourselves, run the test binaries as root.
    triple=$(rustc -vV | sed -n 's/^host: //p')
    runner_var="CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$triple")_RUNNER"
    export "$runner_var"="sudo --preserve-env=CI"
    say "Not root: the test binaries will run through sudo ($runner_var)."
fi

check fmt cargo fmt --check
check clippy cargo clippy --all-targets --quiet -- -D warnings
mapfile -t shell_scripts < <(git ls-files -co --exclude-standard -- '*.sh')
check shellcheck shellcheck -x "${shell_scripts[@]}"
if ((QUICK)); then
    check tests cargo test --lib --bins
else
    check tests cargo test --all-targets
fi
if ((QUICK == 0)) && [[ -f book/book.toml ]]; then
    check book scripts/check-book.sh
fi
if ((QUICK == 0)) && [[ -x scripts/bench.sh ]]; then
    check bench scripts/bench.sh --short
fi

say ""
if ((${#FAILED[@]})); then
    say "failed: ${FAILED[*]}"
fi
say "checks: ${#PASSED[@]} passed, ${#FAILED[@]} failed"
((${#FAILED[@]} == 0))
