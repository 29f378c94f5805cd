#!/usr/bin/env bash
# scripts/check-book.sh -- build the book and check every listing it includes.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
Usage: $TB_PROG [OPTIONS]

Build the book (mdbook build book) and check what mdBook itself lets pass:
  * every {{#include FILE}} and {{#rustdoc_include FILE}} in book/src names a
    file that exists and is not empty;
  * every FILE:ANCHOR names an anchor that exists in FILE, as a pair of
    'ANCHOR: name' and 'ANCHOR_END: name' lines, with at least one non-blank
    line between them (mdBook silently includes nothing for a misspelled
    anchor, and everything up to the end of the file for a missing end);
  * every FILE:START:END line range lies inside FILE and is not blank;
  * every chapter SUMMARY.md lists exists, and every page in book/src is listed;
  * mdbook prints no warning or error;
  * no raw '{{#' survives into the generated HTML (book/book/*.html);
  * the HTML as a reader gets it (scripts/check-book-html.py): every internal
    link and #fragment resolves; no heading or list item of the Markdown ends
    up inside a <pre> (an include that broke the page's structure); every
    chapter with exercises has id="exercises"; no recorded output line is
    longer than 100 characters; one chapter numbering, the sidebar's (each
    program's '//! Chapter N:' header, the tables pairing numbers with
    programs in the book and README.md, links reading 'chapter N');
  * the pages laid out by a headless Chromium: at a 1400 px window no <pre>,
    table or figure needs horizontal scrolling; at 420 px (a phone) no label
    of an SVG figure is smaller than 10 px. Without chromium this part is
    skipped with a message, unless \$CI is set: then it is a failure.
Exits 1 and lists every problem when there is any. Needs no root and no network
(the pages are served to the browser on 127.0.0.1).

Options:
  --no-build        check the sources only, do not run mdbook
  --no-browser      do not start Chromium (the HTML is still checked)
  -h, --help        this help
EOF
}

BUILD=1
BROWSER=1
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --no-build) BUILD=0; shift ;;
        --no-browser) BROWSER=0; shift ;;
        *) unknown_option "$1" ;;
    esac
done

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SRC=book/src
OUT=book/book
[[ -f book/book.toml ]] || die "book/book.toml is missing (run this from a tapbook checkout)"

PROBLEMS=()
HTML_SUMMARY=
problem() { PROBLEMS+=("$*"); }

# ---- 1. includes ---------------------------------------------------------------

# check_region FILE LABEL FIRST LAST: lines FIRST..LAST of FILE (1-based,
# inclusive), without ANCHOR lines, must hold something other than white space.
region_has_text() {
    awk -v first="$1" -v last="$2" '
        NR >= first && NR <= last && !/ANCHOR(_END)?:/ && /[^[:space:]]/ { found = 1 }
        END { exit !found }' "$3"
}

# check_anchor FILE ANCHOR WHERE
check_anchor() {
    local file=$1 anchor=$2 where=$3 starts ends start end
    # The same matching as mdBook: "ANCHOR: name" followed by a non-word character.
    starts=$(grep -nE "ANCHOR:[[:space:]]*${anchor}([^[:alnum:]_]|\$)" -- "$file" | cut -d: -f1 || true)
    ends=$(grep -nE "ANCHOR_END:[[:space:]]*${anchor}([^[:alnum:]_]|\$)" -- "$file" | cut -d: -f1 || true)
    if [[ -z $starts ]]; then
        problem "$where: anchor '$anchor' not found in $file (mdBook would include nothing)"
        return
    fi
    if [[ -z $ends ]]; then
        problem "$where: anchor '$anchor' in $file has no 'ANCHOR_END: $anchor' line"
        return
    fi
    if [[ $(wc -l <<<"$starts") -gt 1 || $(wc -l <<<"$ends") -gt 1 ]]; then
        problem "$where: anchor '$anchor' appears more than once in $file"
        return
    fi
    start=$starts end=$ends
    if ((end <= start)); then
        problem "$where: 'ANCHOR_END: $anchor' comes before 'ANCHOR: $anchor' in $file"
    elif ! region_has_text "$((start + 1))" "$((end - 1))" "$file"; then
        problem "$where: anchor '$anchor' in $file is empty"
    fi
}

# check_range FILE START END WHERE (START or END may be empty, as in mdBook)
check_range() {
    local file=$1 start=${2:-1} end=$3 where=$4 lines
    lines=$(wc -l <"$file")
    [[ -n $end ]] || end=$lines
    if ((start < 1 || start > lines || end < start)); then
        problem "$where: line range $2:$3 is outside $file ($lines lines)"
    elif ! region_has_text "$start" "$end" "$file"; then
        problem "$where: lines $start-$end of $file are blank"
    fi
}

INCLUDES=0
mapfile -t pages < <(find "$SRC" -name '*.md' | sort)
for page in "${pages[@]}"; do
    dir=$(dirname -- "$page")
    # Every {{#include ...}} / {{#rustdoc_include ...}} with its line number; an
    # escaped \{{#include}} is text, not an include, and is left to step 4.
    while IFS= read -r hit; do
        lineno=${hit%%:*}
        body=${hit#*:}
        body=${body#\{\{\#}
        body=${body%\}\}}
        kind=${body%%[[:space:]]*}
        arg=$(sed -E 's/^[a-z_]+[[:space:]]+//; s/[[:space:]]+$//' <<<"$body")
        where="$page:$lineno ({{#$kind $arg}})"
        INCLUDES=$((INCLUDES + 1))
        path=${arg%%:*}
        rest=
        [[ $arg == *:* ]] && rest=${arg#*:}
        file=$(realpath -m --relative-to=. -- "$dir/$path")
        if [[ ! -f $file ]]; then
            problem "$where: no such file $file"
            continue
        fi
        if [[ ! -s $file ]]; then
            problem "$where: $file is empty"
            continue
        fi
        if [[ -z $rest ]]; then
            continue
        elif [[ $rest =~ ^([0-9]*)(:([0-9]*))?$ ]]; then
            start=${BASH_REMATCH[1]}
            end=${BASH_REMATCH[3]}
            # "FILE:N" alone means line N only.
            [[ -n ${BASH_REMATCH[2]} ]] || end=$start
            check_range "$file" "$start" "$end" "$where"
        elif [[ $rest =~ ^[A-Za-z0-9_-]+$ ]]; then
            check_anchor "$file" "$rest" "$where"
        else
            problem "$where: cannot read '$rest' as an anchor or a line range"
        fi
    done < <(grep -noE '(^|[^\\])\{\{#(include|rustdoc_include)[[:space:]][^}]*\}\}' -- "$page" |
        sed -E 's/^([0-9]+):[^{]?\{/\1:{/')
    # Any other {{# directive that is not one we know is a typo mdBook keeps.
    while IFS= read -r hit; do
        problem "$page:${hit%%:*}: unknown directive ${hit#*:}"
    done < <(grep -noE '(^|[^\\])\{\{#[a-z_]+' -- "$page" | sed -E 's/^([0-9]+):[^{]?\{/\1:{/' |
        grep -vE ':\{\{#(include|rustdoc_include|playground|title)$' || true)
done

# ---- 2. SUMMARY.md -----------------------------------------------------------------
mapfile -t listed < <(grep -oE '\]\([^)]+\.md\)' "$SRC/SUMMARY.md" | sed -E 's/^\]\((.*)\)$/\1/' | sort -u)
for chapter in "${listed[@]}"; do
    [[ -f $SRC/$chapter ]] || problem "SUMMARY.md lists $chapter, which does not exist"
done
for page in "${pages[@]}"; do
    rel=${page#"$SRC"/}
    [[ $rel == SUMMARY.md ]] && continue
    printf '%s\n' "${listed[@]}" | grep -qxF -- "$rel" ||
        problem "$page is not listed in SUMMARY.md (mdBook would not build it)"
done

# ---- 3. build ------------------------------------------------------------------------
if ((BUILD)); then
    command -v mdbook >/dev/null ||
        die "mdbook is not installed: cargo install mdbook --locked --version '^0.5'"
    log=$(mktemp)
    trap 'rm -f -- "$log"' EXIT
    if ! mdbook build book >"$log" 2>&1; then
        problem "mdbook build book failed:"$'\n'"$(sed 's/^/    /' "$log")"
    elif grep -qE '\b(WARN|ERROR)\b' "$log"; then
        problem "mdbook build book warned:"$'\n'"$(grep -E '\b(WARN|ERROR)\b' "$log" | sed 's/^/    /')"
    fi

    # ---- 4. raw directives in the HTML ---------------------------------------------
    if [[ -d $OUT ]]; then
        while IFS= read -r hit; do
            problem "raw '{{#' in the HTML: $hit"
        done < <(grep -rnoE '.{0,40}\{\{#.{0,40}' --include='*.html' -- "$OUT" || true)
    else
        problem "mdbook built nothing: $OUT is missing"
    fi

    # ---- 5. the HTML and the layout, as a reader sees them --------------------------
    if [[ -f $OUT/index.html ]]; then
        html_check=(python3 scripts/check-book-html.py --build "$OUT" --src "$SRC")
        ((BROWSER)) || html_check+=(--no-browser)
        if ! command -v python3 >/dev/null; then
            problem "python3 is not installed: it checks the HTML (sudo apt-get install python3)"
        elif ! html_report=$("${html_check[@]}" 2>&1); then
            problem "the built pages fail scripts/check-book-html.py:"$'\n'"    ${html_report//$'\n'/$'\n'    }"
        else
            HTML_SUMMARY=$html_report
        fi
    fi
fi

# ---- report ----------------------------------------------------------------------------
if ((${#PROBLEMS[@]})); then
    say "check-book: ${#PROBLEMS[@]} problem(s):"
    printf '  - %s\n' "${PROBLEMS[@]}"
    exit 1
fi
built=
((BUILD)) && built=", built $OUT"
say "check-book: ${#pages[@]} pages, $INCLUDES includes, all found and non-empty$built"
[[ -z ${HTML_SUMMARY:-} ]] || say "$HTML_SUMMARY"
