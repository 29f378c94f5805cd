#!/usr/bin/env python3
"""scripts/book-output-wrap.py -- fit recorded output to the book's text column.

Usage: scripts/book-output-wrap.py [--width N] [--check] FILE...

The VM lab's recording scripts (scripts/book-output-vmm.sh, scripts/vm/)
run this on every file they record, so that no line the book shows is wider
than its column (scripts/check-book-html.py checks the result in a browser).
cargo lab record does the same in lab/src/wrap.rs, and its test checks that
every recording in book/src/output is already fitted: keep the two alike
until the VM recordings join cargo lab record and this file goes. In each FILE, in place:
  * tabs become spaces (tab stops every 8 columns, as in a terminal), and
    trailing blanks go;
  * a command line ('$ ...') longer than N is continued on the next line with
    ' \\', breaking only between words outside quotes, so that it can still be
    copied and pasted into a shell;
  * a table of tab-separated rows (tshark -T fields) with a row longer than
    N has every row broken after the same field, the rest continued on the
    next line, indented one tab, so that the columns stay aligned;
  * any other line longer than N is broken at the last space that fits and
    continued, indented 4 columns deeper than the line itself (a word longer
    than the whole line, such as a hex string, is cut at N).
Lines of N characters or fewer are left as they are. N is 100 (the widest
line rustfmt writes; the column holds about 107 characters at a 1400 px
window).

--check   change nothing; list the lines that are too wide, exit 1 if any.
"""

import argparse
import sys

WIDTH = 100
INDENT = 4


def break_command(line, width):
    """'$ cmd arg ...' as shell lines joined by ' \\', each at most width long.
    A comment ('$ cmd  # why') goes on a line of its own, before the command."""
    words, word, quote, comment = [], "", None, None
    for i, ch in enumerate(line):
        if not quote and ch == "#" and not word and i > 2:
            comment = line[i:]
            break
        if quote:
            word += ch
            if ch == quote:
                quote = None
        elif ch in "'\"":
            word += ch
            quote = ch
        elif ch == " ":
            if word:
                words.append(word)
            word = ""
        else:
            word += ch
    if word:
        words.append(word)
    # An option stays on the line of its value: '-e frame.len', not '-e \\'.
    units = []
    for w in words:
        if units and units[-1].startswith("-") and " " not in units[-1] and not w.startswith("-"):
            units[-1] += " " + w
        else:
            units.append(w)
    out, current = [], ""
    for w in units:
        candidate = f"{current} {w}" if current else w
        if current and len(candidate) + 2 > width:
            out.append(current + " \\")
            current = " " * INDENT + w
        else:
            current = candidate
    out.append(current)
    if comment:
        out.insert(0, "$ " + comment)
    return out


def break_text(line, width):
    """A line broken at spaces, continuation lines indented INDENT deeper."""
    indent = len(line) - len(line.lstrip(" "))
    lead = " " * min(indent + INDENT, width // 2)
    if line.startswith("# "):
        lead = "#" + lead[1:]  # a comment goes on as a comment
    out, rest, first = [], line, True
    while len(rest) > width:
        floor = indent + 1 if first else len(lead) + 1
        cut = rest.rfind(" ", floor, width + 1)
        if cut < max(floor, width * 6 // 10):
            # No space, or only one far to the left, as before strace's long
            # strings: cut the word instead, before an escape such as \x00 if
            # there is one near the end.
            hard = rest.rfind("\\", width - 8, width + 1)
            hard = hard if hard > floor else width
            head, rest = rest[:hard], rest[hard:]
        else:
            head, rest = rest[:cut].rstrip(), rest[cut + 1 :].lstrip(" ")
        out.append(head)
        rest = lead + rest
        first = False
    out.append(rest)
    return out


def expand_fields(fields, indent=""):
    return (indent + "\t".join(fields)).expandtabs(8).rstrip()


def break_table(rows, width):
    """Tab-separated rows (tshark -T fields), some too wide: every row split
    after the same field, the rest of it on a second line indented one tab, so
    that both lines stay aligned from row to row."""
    split = [row.split("\t") for row in rows]
    k = 1
    while all(len(expand_fields(f[: k + 1])) <= width for f in split) and any(len(f) > k + 1 for f in split):
        k += 1
    out = []
    for fields in split:
        out.extend(break_text(expand_fields(fields[:k]), width))
        rest = fields[k:]
        if any(rest):
            out.extend(break_text(expand_fields(rest, " " * 8), width))
    return out


def fit(text, width):
    lines, table = [], []

    def flush():
        if any(len(row.expandtabs(8).rstrip()) > width for row in table):
            lines.extend(break_table(table, width))
        else:
            lines.extend(row.expandtabs(8).rstrip() for row in table)
        table.clear()

    for line in text.splitlines():
        line = line.rstrip()
        if "\t" in line.strip() and not line.startswith("$ "):
            table.append(line)
            continue
        flush()
        expanded = line.expandtabs(8)
        if len(expanded) <= width:
            lines.append(expanded)
        elif line.startswith("$ "):
            lines.extend(break_command(expanded, width))
        else:
            lines.extend(break_text(expanded, width))
    flush()
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def main():
    parser = argparse.ArgumentParser(
        prog="book-output-wrap.py",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--width", type=int, default=WIDTH, help="at most this many characters (%(default)s)")
    parser.add_argument("--check", action="store_true", help="report lines that are too wide, change nothing")
    parser.add_argument("files", nargs="+", metavar="FILE")
    args = parser.parse_args()
    wide = 0
    for name in args.files:
        with open(name, encoding="utf-8") as f:
            text = f.read()
        if args.check:
            for number, line in enumerate(text.splitlines(), 1):
                if len(line.expandtabs(8)) > args.width:
                    wide += 1
                    print(f"{name}:{number}: {len(line.expandtabs(8))} characters: {line[:60]}")
            continue
        new = fit(text, args.width)
        if new != text:
            with open(name, "w", encoding="utf-8") as f:
                f.write(new)
    return 1 if wide else 0


if __name__ == "__main__":
    sys.exit(main())
