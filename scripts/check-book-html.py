#!/usr/bin/env python3
"""scripts/check-book-html.py -- check the book as a reader sees it: the HTML
that 'mdbook build book' wrote, and the same pages laid out by Chromium.

Called by cargo lab book (lab/src/book.rs) after the build; run it by hand with --help.
Python 3 standard library only; the layout check drives a headless Chromium
(Debian package 'chromium') over its DevTools pipe, so needs no npm either.
"""

import argparse
import fcntl
import html.parser
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

PROG = "check-book-html"

# Pages mdBook writes that are not chapters: print.html repeats every chapter
# (with its own ids), index.html is a copy of the first chapter, 404.html links
# from the site root, toc.html is the sidebar for readers without JavaScript.
NOT_CHAPTERS = {"print.html", "index.html", "404.html", "toc.html"}

# The narrowest a reader's window is assumed to be, and the smallest SVG label
# (in CSS pixels) that is still readable there.
WIDE = 1400
PHONE = 420
MIN_SVG_TEXT_PX = 10.0
# The widest line a listing or a recorded output may have: what rustfmt writes, and
# what cargo lab record (lab/src/wrap.rs) leaves. At WIDE px the column holds about 107.
MAX_PRE_CHARS = 100


# ---- the HTML as written ------------------------------------------------------


class Page(html.parser.HTMLParser):
    """What the checks need from one HTML file: ids, links, headings, <pre> text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids = set()
        self.links = []  # (tag, attribute, value, line)
        self.headings = []  # (level, id, line) inside <main>
        self.pres = []  # (text, line, class of its <code>)
        self._main = 0
        self._pre = 0
        self._pre_text = []
        self._pre_line = 0
        self._pre_class = ""
        self.anchor_texts = []  # (href, text, line)
        self.rows = []  # [cell text, ...] of every table row
        self.text = []  # text outside <pre> in <main>, for "chapter N"
        self._a = None
        self._row = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        line = self.getpos()[0]
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        for attr in ("href", "src"):
            if a.get(attr) is not None and tag in ("a", "link", "script", "img", "iframe"):
                self.links.append((tag, attr, a[attr], line))
        if tag == "a" and a.get("href") is not None:
            self._a = [a["href"], "", line]
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._row.append("")
        if tag == "main":
            self._main += 1
        elif tag == "pre":
            if self._pre == 0:
                self._pre_text = []
                self._pre_line = line
                self._pre_class = ""
            self._pre += 1
        elif tag == "code" and self._pre and not self._pre_text:
            self._pre_class = a.get("class") or ""
        elif self._main and re.fullmatch(r"h[1-6]", tag):
            self.headings.append((int(tag[1]), a.get("id"), line))

    def handle_endtag(self, tag):
        if tag == "a" and self._a:
            self.anchor_texts.append(tuple(self._a))
            self._a = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        if tag == "main" and self._main:
            self._main -= 1
        elif tag == "pre" and self._pre:
            self._pre -= 1
            if self._pre == 0:
                self.pres.append(("".join(self._pre_text), self._pre_line, self._pre_class))

    def handle_data(self, data):
        if self._pre:
            self._pre_text.append(data)
        elif self._main:
            self.text.append(data)
        if self._a:
            self._a[1] += data
        if self._row:
            self._row[-1] += data


def parse_page(path):
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


FENCE = re.compile(r"^ {0,12}(`{3,}|~{3,})")
HEADING = re.compile(r"^(#{1,6})[ \t]+\S")
LIST_ITEM = re.compile(r"^ {0,12}(?:[-*+]|\d{1,3}[.)])[ \t]+\S")


def source_markup(md_path):
    """Heading and list-item lines of a Markdown page that lie outside any fenced
    block, as (kind, level, stripped line, line number). Fences are matched the
    way CommonMark does (same character, at least as long), ignoring indentation,
    which is enough for this book's sources."""
    found = []
    fence = None
    for number, line in enumerate(md_path.read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence = m.group(1)
                continue
        else:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line[m.end():].strip():
                fence = None
            continue
        h = HEADING.match(line)
        if h:
            found.append(("heading", len(h.group(1)), line.strip(), number))
        elif LIST_ITEM.match(line) and len(line.strip()) >= 6:
            found.append(("list item", 0, line.strip(), number))
    return found


SIDEBAR_ENTRY = re.compile(r'<a href="([^"#]+)"[^>]*><strong aria-hidden="true">(\d+)\.</strong>')
WHOLE_PROGRAM = re.compile(r"\{\{#(?:rustdoc_)?include\s+\.\./\.\./src/bin/(\w+)\.rs\s*\}\}")
ANCHORED_PART = re.compile(r"\{\{#(?:rustdoc_)?include\s+\.\./\.\./src/bin/(\w+)\.rs:\w+\s*\}\}")
HEADER = re.compile(r"^//! Chapter (\d+):", re.M)
MENTION = re.compile(r"\b[Cc]hapters?\s+(\d+)((?:(?:,\s*|\s+(?:and|to|or)\s+)\d+)*)")
README_ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*`(\d\d_\w+)`", re.M)


def check_numbering(build, src, pages, root):
    """One numbering everywhere, the sidebar's: a program's header ('//! Chapter N:')
    names the sidebar number of the page that lists the program in full; so do the
    tables that pair a number with a program (in the book and in README.md); a link
    whose text is 'chapter N' goes to page N; and no 'chapter N' in the text names a
    number beyond the last numbered chapter before the appendices."""
    problems = []
    number = {}  # page -> its top-level number in the sidebar
    for href, n in SIDEBAR_ENTRY.findall((build / "toc.html").read_text(encoding="utf-8")):
        number.setdefault(href, int(n))
    if not number:
        return ["toc.html: found no numbered chapter in the sidebar"]
    program_page = {}
    for md in sorted(src.glob("*.md")):
        for program in WHOLE_PROGRAM.findall(md.read_text(encoding="utf-8")):
            program_page.setdefault(program, md.with_suffix(".html").name)
    # A program no page lists in full belongs to the page that shows most of its parts
    # (`{{#include ../../src/bin/NN_name.rs:anchor}}`), the earlier chapter on a tie.
    parts = {}  # program -> {page: how many of its parts the page shows}
    for md in sorted(src.glob("*.md")):
        for program in ANCHORED_PART.findall(md.read_text(encoding="utf-8")):
            page = md.with_suffix(".html").name
            parts.setdefault(program, {}).setdefault(page, 0)
            parts[program][page] += 1
    for program, shown in parts.items():
        if program not in program_page:
            program_page[program] = max(shown, key=lambda page: (shown[page], -number.get(page, 999)))
    # The chapters proper end where the appendices begin: at the first numbered page
    # without an Exercises section (Troubleshooting).
    last = 0
    for href, n in sorted(number.items(), key=lambda item: item[1]):
        md = src / href.replace(".html", ".md")
        if "/" in href or not md.is_file() or "\n## Exercises\n" not in md.read_text(encoding="utf-8"):
            break
        last = n
    for program, page in sorted(program_page.items()):
        rs = root / "src" / "bin" / f"{program}.rs"
        header = HEADER.search(rs.read_text(encoding="utf-8")) if rs.is_file() else None
        if page not in number:
            problems.append(f"{page}: shows src/bin/{program}.rs but has no number in the sidebar")
        elif header is None:
            problems.append(f"src/bin/{program}.rs: no '//! Chapter N:' header line")
        elif int(header.group(1)) != number[page]:
            problems.append(
                f"src/bin/{program}.rs says 'Chapter {header.group(1)}', but its page {page} is "
                f"chapter {number[page]} in the sidebar"
            )
    want = {program: number.get(page) for program, page in program_page.items()}
    for rel, page in pages.items():
        for row in page.rows:
            cells = [c.strip() for c in row]
            if len(cells) >= 2 and cells[0].isdigit() and cells[1] in want and int(cells[0]) != want[cells[1]]:
                problems.append(
                    f"{rel}: a table pairs chapter {cells[0]} with {cells[1]}, which is chapter {want[cells[1]]}"
                )
        for href, text, line in page.anchor_texts:
            m = re.fullmatch(r"\s*[Cc]hapter\s+(\d+)\s*", text)
            if not m:
                continue
            target = os.path.normpath(os.path.join(os.path.dirname(rel), href.split("#")[0]))
            if target in number and int(m.group(1)) != number[target]:
                problems.append(f"{rel}:{line}: the link '{text.strip()}' goes to {target}, chapter {number[target]}")
        if rel in ("print.html", "toc.html"):
            continue
        for m in MENTION.finditer(" ".join(" ".join(page.text).split())):
            if any(not 1 <= int(n) <= last for n in re.findall(r"\d+", m.group(0))):
                problems.append(f"{rel}: '{m.group(0)}' names a chapter the sidebar does not have (1-{last})")
    readme = root / "README.md"
    if readme.is_file():
        for n, program in README_ROW.findall(readme.read_text(encoding="utf-8")):
            if program in want and int(n) != want[program]:
                problems.append(
                    f"README.md: its table pairs chapter {n} with {program}, which is chapter {want[program]}"
                )
    return problems


def check_static(build, src):
    """Links and fragments, source markup inside <pre>, headings, exercises ids."""
    problems = []
    html_files = sorted(p for p in build.rglob("*.html") if p.name != "print.html")
    pages = {p.relative_to(build).as_posix(): parse_page(p) for p in html_files}

    # 1. Every internal link names a file that exists and, with a #fragment,
    #    an id on that page.
    links = 0
    for rel, page in pages.items():
        if rel == "404.html":
            continue  # its links start at the site's root, wherever that is
        for tag, attr, value, line in page.links:
            url = urllib.parse.urlsplit(value)
            if url.scheme or url.netloc or value.startswith("//"):
                continue  # another site (or mailto:, javascript:)
            links += 1
            target = urllib.parse.unquote(url.path)
            if target:
                resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
                if target.endswith("/"):
                    resolved = os.path.join(resolved, "index.html")
            else:
                resolved = rel
            where = f"{rel}:{line}: <{tag} {attr}=\"{value}\">"
            if resolved.startswith(".."):
                problems.append(f"{where}: points outside the book")
                continue
            if not (build / resolved).is_file():
                problems.append(f"{where}: no such file {resolved}")
                continue
            if url.fragment and tag == "a":
                fragment = urllib.parse.unquote(url.fragment)
                target_page = pages.get(resolved)
                if target_page is not None and fragment not in target_page.ids:
                    problems.append(f"{where}: {resolved} has no id=\"{fragment}\"")

    # 2. No line of recorded output or other text is wider than MAX_PRE_CHARS (the
    #    layout check measures the real thing, listings included; this needs no
    #    browser).
    for rel, page in pages.items():
        for text, pre_line, cls in page.pres:
            if "language-" in cls and "language-text" not in cls:
                continue
            for line in text.splitlines():
                width = len(line.expandtabs(8))
                if width > MAX_PRE_CHARS:
                    problems.append(
                        f"{rel}:{pre_line}: a <pre> has a line of {width} characters (at most "
                        f"{MAX_PRE_CHARS}; cargo lab record fits recorded output): '{line.strip()[:60]}'"
                    )
                    break

    # 3. The source's own headings and list items must not end up as text in a
    #    <pre>: that happens when an {{#include}} inside an indented block (a
    #    list item) pulls in lines that are not indented, which ends the block
    #    and leaves a fence open that swallows the rest of the page.
    # 4. Every heading of the source is a heading of the page.
    # 5. A chapter with an Exercises section has id="exercises" on it, the
    #    anchor that the solutions link to.
    chapters = 0
    for md in sorted(src.rglob("*.md")):
        rel_md = md.relative_to(src).as_posix()
        if rel_md == "SUMMARY.md":
            continue
        rel = rel_md[: -len(".md")] + ".html"
        page = pages.get(rel)
        if page is None:
            problems.append(f"{rel_md}: mdbook wrote no {rel}")
            continue
        chapters += 1
        markup = source_markup(md)
        lines = {}
        for kind, _level, text, number in markup:
            lines.setdefault(text, (kind, number))
        for text, pre_line, _cls in page.pres:
            for pre_text_line in text.splitlines():
                hit = lines.get(pre_text_line.strip())
                if hit:
                    kind, number = hit
                    problems.append(
                        f"{rel}:{pre_line}: a <pre> holds the {kind} '{pre_text_line.strip()[:60]}' "
                        f"of {rel_md}:{number}: Markdown left unrendered (an {{{{#include}}}} "
                        "of unindented text inside an indented block, such as a list item, "
                        "ends that block early)"
                    )
                    break
        for level in range(1, 7):
            want = sum(1 for kind, lv, _t, _n in markup if kind == "heading" and lv == level)
            have = sum(1 for lv, _id, _line in page.headings if lv == level)
            if want != have:
                problems.append(
                    f"{rel}: {have} <h{level}> heading(s), but {rel_md} has {want} level-{level} heading(s)"
                )
        if any(kind == "heading" and text == "## Exercises" for kind, _l, text, _n in markup):
            if not any(lv == 2 and hid == "exercises" for lv, hid, _line in page.headings):
                problems.append(f"{rel}: {rel_md} has '## Exercises', but the page has no <h2 id=\"exercises\">")
    # Every chapter that has solutions must have the exercises they solve.
    for solution in sorted((src / "solutions").glob("*.md")):
        chapter = src / solution.name
        if chapter.is_file() and not any(
            kind == "heading" and text == "## Exercises" for kind, _l, text, _n in source_markup(chapter)
        ):
            problems.append(f"{chapter.relative_to(src)}: has solutions/{solution.name} but no '## Exercises'")

    problems += check_numbering(build, src, pages, src.resolve().parent.parent)

    summary = f"{len(pages)} HTML files, {links} internal links, {chapters} chapters' markup and numbers"
    return problems, summary


# ---- the pages as laid out by Chromium ---------------------------------------------

MEASURE = r"""
(async (phone, minPx) => {
  // What a reader may open must fit too.
  for (const d of document.querySelectorAll('details')) d.open = true;
  await document.fonts.ready;
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const main = document.querySelector('main');
  const column = main.getBoundingClientRect();
  const first = el => (el.textContent || '').trim().split('\n')[0].slice(0, 70);
  // How many characters of a listing fit on one line of the column.
  const probe = document.createElement('pre');
  probe.innerHTML = '<code class="hljs">' + 'x'.repeat(100) + '</code>';
  main.appendChild(probe);
  const code = probe.firstChild, cs = getComputedStyle(code);
  const inner = code.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
  const fit = Math.floor(inner / (code.scrollWidth > code.clientWidth
    ? (code.scrollWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight)) / 100
    : code.firstChild.length && (() => { const g = document.createRange(); g.selectNodeContents(code);
        return g.getBoundingClientRect().width / 100; })()));
  probe.remove();
  const out = { column: Math.round(column.width), fit, wide: [], small: [] };
  if (!phone) {
    const seen = new Set();
    for (const el of main.querySelectorAll('pre, pre > code, table, .table-wrapper, figure, svg, img')) {
      const box = el.closest('pre') || el.closest('.table-wrapper') || el.closest('figure') || el;
      if (seen.has(box)) continue;
      const r = el.getBoundingClientRect();
      const scrolls = el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0;
      const sticksOut = r.right > column.right + 1 || r.left < column.left - 1;
      if (scrolls || sticksOut) {
        seen.add(box);
        const lines = (box.textContent || '').split('\n');
        const longest = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
        const lang = box.querySelector('code[class*="language-"]');
        out.wide.push({
          kind: box.tagName.toLowerCase() +
            (lang ? ' (' + lang.className.match(/language-[\w-]+/)[0] + ')' : ''),
          need: Math.max(el.scrollWidth, Math.round(r.width)),
          have: scrolls ? el.clientWidth : Math.round(column.width),
          chars: box.tagName === 'PRE' ? longest.length : 0,
          text: box.tagName === 'PRE' ? longest.trim().slice(0, 60) : first(box),
        });
      }
    }
  } else {
    for (const t of document.querySelectorAll('svg text')) {
      const m = t.getScreenCTM();
      if (!m) continue;
      const px = parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.a, m.b);
      if (px < minPx) out.small.push({ px: Math.round(px * 10) / 10, text: first(t) });
    }
  }
  return JSON.stringify(out);
})
"""


class Chromium:
    """A headless Chromium driven over --remote-debugging-pipe (the DevTools
    protocol: JSON messages separated by NUL bytes, commands on the child's
    fd 3, answers and events on its fd 4)."""

    def __init__(self, binary, timeout):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="tapbook-chromium.")
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        # The child's ends, moved above 3 and 4 first so that dup2 cannot clobber one
        # with the other.
        child_in = fcntl.fcntl(cmd_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(res_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(cmd_r)
        os.close(res_w)

        def plumb():
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        args = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--disable-default-apps", "--no-first-run", "--mute-audio",
            "--no-default-browser-check", "--force-device-scale-factor=1",
            "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
            f"--window-size={WIDE},900", "about:blank",
        ]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # Not close_fds: it would close 3 and 4 after plumb() made them. Every other
            # descriptor Python opened is close-on-exec anyway.
            preexec_fn=plumb, close_fds=False,
        )
        os.close(child_in)
        os.close(child_out)
        self.wr = os.fdopen(cmd_w, "wb", buffering=0)
        self.rd = os.fdopen(res_r, "rb", buffering=0)
        self.buf = b""
        self.next_id = 0
        self.events = []
        self.session = None

    def _read_message(self, deadline):
        while b"\0" not in self.buf:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = self.rd.read(65536)
            if not chunk:
                raise RuntimeError("Chromium exited")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method, params=None, session=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        self.wr.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, method):
        deadline = time.monotonic() + self.timeout
        while True:
            for i, event in enumerate(self.events):
                if event["method"] == method:
                    del self.events[i]
                    return event
            self.events.append(self._read_message(deadline))

    def open_page(self):
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, session=False
        )
        self.session = attached["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")

    def load(self, url, width):
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )
        self.events.clear()
        self.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression):
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True}
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"]["value"]

    def close(self):
        try:
            self.send("Browser.close", session=False)
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 -- whatever went wrong, do not leave it running
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def check_layout(build, chromium_binary, timeout):
    """Every <pre>, table and figure fits the text column at WIDE px; every SVG
    label is at least MIN_SVG_TEXT_PX tall at PHONE px."""
    problems = []
    handler = lambda *a, **kw: QuietHandler(*a, directory=str(build), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    chapters = sorted(
        p.relative_to(build).as_posix() for p in build.rglob("*.html") if p.name not in NOT_CHAPTERS
    )
    browser = Chromium(chromium_binary, timeout)
    columns = set()
    fits = set()
    try:
        browser.open_page()
        for width, phone in ((WIDE, False), (PHONE, True)):
            for rel in chapters:
                browser.load(base + rel, width)
                found = json.loads(
                    browser.evaluate(f"({MEASURE})({'true' if phone else 'false'}, {MIN_SVG_TEXT_PX})")
                )
                if not phone:
                    columns.add(found["column"])
                    fits.add(found["fit"])
                for w in found["wide"]:
                    line = f", its longest line has {w['chars']} characters" if w["chars"] else ""
                    problems.append(
                        f"{rel} at {width} px: {w['kind']} needs {w['need']} px, has {w['have']}{line}: "
                        f"'{w['text']}'"
                    )
                if found["small"]:
                    sizes = sorted({s["px"] for s in found["small"]})
                    labels = ", ".join(f"'{s['text']}' {s['px']} px" for s in found["small"][:4])
                    more = f" and {len(found['small']) - 4} more" if len(found["small"]) > 4 else ""
                    problems.append(
                        f"{rel} at {width} px: {len(found['small'])} SVG label(s) smaller than "
                        f"{MIN_SVG_TEXT_PX:g} px ({sizes[0]}-{sizes[-1]} px): {labels}{more}"
                    )
    finally:
        browser.close()
        server.shutdown()
    summary = (
        f"{len(chapters)} pages in Chromium at {WIDE} px (text column "
        f"{'/'.join(str(c) for c in sorted(columns))} px, "
        f"{'/'.join(str(f) for f in sorted(fits))} characters of a listing) and {PHONE} px"
    )
    return problems, summary


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def main():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Check the built book as a reader sees it. Static checks on the HTML: "
        "every internal link and #fragment resolves; no line of recorded output is longer "
        f"than {MAX_PRE_CHARS} characters; no heading or list item of the "
        "Markdown source ends up as text inside a <pre>; every heading of the source is a "
        "heading of the page; every chapter with an Exercises section has id=\"exercises\". "
        f"Layout checks in headless Chromium: at a {WIDE} px window no <pre>, table or "
        f"figure is wider than the text column (nothing needs horizontal scrolling); at "
        f"{PHONE} px no SVG label is smaller than {MIN_SVG_TEXT_PX:g} px.",
        epilog="Without Chromium the layout check is skipped, with a message; when the "
        "environment variable CI is set, a missing Chromium is an error. Exit status: 0 "
        "when every check that ran passed, 1 when a check failed.",
    )
    parser.add_argument("--build", default="book/book", help="mdBook's output (default: %(default)s)")
    parser.add_argument("--src", default="book/src", help="the Markdown sources (default: %(default)s)")
    parser.add_argument("--no-browser", action="store_true", help="only the static checks")
    parser.add_argument("--chromium", help="the browser binary (default: chromium on PATH)")
    parser.add_argument("--timeout", type=float, default=30, help="seconds per browser step")
    args = parser.parse_args()

    build, src = Path(args.build), Path(args.src)
    if not (build / "index.html").is_file():
        print(f"{PROG}: {build} holds no built book (run: mdbook build book)", file=sys.stderr)
        return 1

    problems, summary = check_static(build, src)
    summaries = [summary]
    skipped = None
    if not args.no_browser:
        chromium = args.chromium or find_chromium()
        if chromium is None:
            if os.environ.get("CI"):
                problems.append("chromium is not installed, and CI needs the layout check: apt-get install chromium")
            else:
                skipped = "layout check SKIPPED: chromium is not installed (Debian: sudo apt-get install chromium)"
        else:
            started = time.monotonic()
            try:
                layout_problems, summary = check_layout(build, chromium, args.timeout)
            except (RuntimeError, TimeoutError, OSError) as err:
                layout_problems, summary = [f"the layout check could not run: {err}"], "layout check failed"
            problems += layout_problems
            summaries.append(f"{summary}, {time.monotonic() - started:.0f} s")

    if problems:
        print(f"{PROG}: {len(problems)} problem(s):")
        for p in problems:
            print(f"  - {p}")
    print(f"{PROG}: {'checked' if problems else 'ok'}: {'; '.join(summaries)}")
    if skipped:
        print(f"{PROG}: {skipped}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
