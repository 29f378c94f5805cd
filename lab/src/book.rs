//! `cargo lab book`: build the book and check what mdBook itself lets pass (an include
//! of a file that is not there, a misspelled anchor), then the HTML as a reader gets it
//! (scripts/check-book-html.py, which drives a headless Chromium).

use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitCode};

use tapbook_lab::{repo_root, say};

use crate::Result;

const USAGE: &str = "\
Usage: cargo lab book [OPTIONS]

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
    up inside a <pre>; every chapter with exercises has id=\"exercises\"; no
    recorded output line is longer than 100 characters; one chapter numbering;
  * the pages laid out by a headless Chromium: at 1400 px no <pre>, table or
    figure needs horizontal scrolling; at 420 px no SVG label is smaller than
    10 px. Without chromium this part is skipped with a message, unless $CI is
    set: then it is a failure.
Exits 1 and lists every problem when there is any. Needs no root and no network
(the pages are served to the browser on 127.0.0.1).

Options:
  --no-build        check the sources only, do not run mdbook
  --no-browser      do not start Chromium (the HTML is still checked)
  -h, --help        this help
";

/// The directives mdBook knows; any other `{{#name` is a typo it would keep as text.
const DIRECTIVES: [&str; 4] = ["include", "rustdoc_include", "playground", "title"];

pub fn main(args: &[String]) -> Result<ExitCode> {
    let (mut build, mut browser) = (true, true);
    for arg in args {
        match arg.as_str() {
            "-h" | "--help" => {
                say(USAGE.trim_end());
                return Ok(ExitCode::SUCCESS);
            }
            "--no-build" => build = false,
            "--no-browser" => browser = false,
            _ => return Err(format!("unknown option '{arg}' (try: cargo lab book --help)")),
        }
    }
    let root = repo_root();
    if !root.join("book/book.toml").is_file() {
        return Err("book/book.toml is missing (run this from a tapbook checkout)".into());
    }
    let src = root.join("book/src");
    let mut pages = Vec::new();
    markdown_pages(&src, &mut pages)?;
    pages.sort();
    let mut problems = Vec::new();
    let mut includes = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).map_err(|e| format!("{}: {e}", page.display()))?;
        let shown = relative(&root, page);
        for (n, line) in text.lines().enumerate() {
            for (kind, arg) in directives(line) {
                let where_ = format!("{shown}:{} ({{{{#{kind} {arg}}}}})", n + 1);
                if kind == "include" || kind == "rustdoc_include" {
                    includes += 1;
                    let dir = page.parent().unwrap_or(&src);
                    check_include(&root, dir, arg, &where_, &mut problems);
                } else if !DIRECTIVES.contains(&kind) {
                    problems.push(format!("{shown}:{}: unknown directive {{{{#{kind}", n + 1));
                }
            }
        }
    }
    check_summary(&src, &pages, &mut problems)?;
    let mut html_summary = String::new();
    if build {
        let out = root.join("book/book");
        let log = Command::new("mdbook")
            .args(["build", "book"])
            .current_dir(&root)
            .output()
            .map_err(|e| {
                format!(
                    "running mdbook: {e} (install it: cargo install mdbook --locked --version '^0.5')"
                )
            })?;
        let log_text = format!(
            "{}{}",
            String::from_utf8_lossy(&log.stdout),
            String::from_utf8_lossy(&log.stderr)
        );
        let warned: Vec<&str> = log_text
            .lines()
            .filter(|l| {
                l.split(|c: char| !c.is_alphanumeric()).any(|w| w == "WARN" || w == "ERROR")
            })
            .collect();
        if !log.status.success() {
            problems.push(format!("mdbook build book failed:\n{}", indent(&log_text)));
        } else if !warned.is_empty() {
            problems.push(format!("mdbook build book warned:\n{}", indent(&warned.join("\n"))));
        }
        if out.is_dir() {
            raw_directives(&root, &out, &mut problems)?;
        } else {
            problems.push("mdbook built nothing: book/book is missing".into());
        }
        if out.join("index.html").is_file() {
            let mut check = Command::new("python3");
            check.args(["scripts/check-book-html.py", "--build", "book/book", "--src", "book/src"]);
            if !browser {
                check.arg("--no-browser");
            }
            match check.current_dir(&root).output() {
                Err(e) => problems.push(format!(
                    "python3 checks the HTML, and did not run: {e} (sudo apt-get install python3)"
                )),
                Ok(o) => {
                    let report = format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    );
                    if o.status.success() {
                        html_summary = report.trim_end().to_owned();
                    } else {
                        problems.push(format!(
                            "the built pages fail scripts/check-book-html.py:\n{}",
                            indent(&report)
                        ));
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        say(format_args!("cargo lab book: {} problem(s):", problems.len()));
        for problem in &problems {
            say(format_args!("  - {problem}"));
        }
        return Ok(ExitCode::FAILURE);
    }
    let built = if build { ", built book/book" } else { "" };
    say(format_args!(
        "cargo lab book: {} pages, {includes} includes, all found and non-empty{built}",
        pages.len()
    ));
    if !html_summary.is_empty() {
        say(html_summary);
    }
    Ok(ExitCode::SUCCESS)
}

fn indent(text: &str) -> String {
    text.trim_end().lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

/// Every `.md` file under `dir`.
fn markdown_pages(dir: &Path, pages: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.is_dir() {
            markdown_pages(&path, pages)?;
        } else if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    Ok(())
}

/// The `{{#KIND ARG}}` directives of a line, as (KIND, ARG); an escaped `\{{#` is text.
/// A directive without its closing `}}` on the line has an empty ARG.
fn directives(line: &str) -> Vec<(&str, &str)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = line[from..].find("{{#").map(|i| from + i) {
        from = at + 3;
        if line[..at].ends_with('\\') {
            continue;
        }
        let rest = &line[at + 3..];
        let kind_len =
            rest.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(rest.len());
        if kind_len == 0 {
            continue;
        }
        let kind = &rest[..kind_len];
        let arg = match rest[kind_len..].split_once("}}") {
            Some((arg, _)) if arg.starts_with(char::is_whitespace) => arg.trim(),
            _ => "",
        };
        found.push((kind, arg));
    }
    found
}

/// `dir/path`, with `.` and `..` resolved by the names alone.
fn normalize(dir: &Path, path: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for part in dir.join(path).components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn check_include(root: &Path, dir: &Path, arg: &str, where_: &str, problems: &mut Vec<String>) {
    let (path, rest) = arg.split_once(':').unwrap_or((arg, ""));
    let file = normalize(dir, path);
    let shown = relative(root, &file);
    let Ok(text) = std::fs::read_to_string(&file) else {
        problems.push(format!("{where_}: no such file {shown}"));
        return;
    };
    if text.is_empty() {
        problems.push(format!("{where_}: {shown} is empty"));
        return;
    }
    if rest.is_empty() {
        return;
    }
    let lines: Vec<&str> = text.lines().collect();
    let number = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let (first, second) = rest.split_once(':').map_or((rest, None), |(a, b)| (a, Some(b)));
    if number(first) && second.is_none_or(number) {
        let start: usize = first.parse().unwrap_or(1);
        // "FILE:N" alone means line N only; "FILE:N:" to the end.
        let end: usize = match second {
            None => start,
            Some("") => lines.len(),
            Some(end) => end.parse().unwrap_or(0),
        };
        if start < 1 || start > lines.len() || end < start {
            problems.push(format!(
                "{where_}: line range {rest} is outside {shown} ({} lines)",
                lines.len()
            ));
        } else if !has_text(&lines[start - 1..end.min(lines.len())]) {
            problems.push(format!("{where_}: lines {start}-{end} of {shown} are blank"));
        }
    } else if rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        check_anchor(&lines, rest, &shown, where_, problems);
    } else {
        problems.push(format!("{where_}: cannot read '{rest}' as an anchor or a line range"));
    }
}

/// Some line other than an ANCHOR line holds something other than white space.
fn has_text(lines: &[&str]) -> bool {
    lines
        .iter()
        .any(|l| !l.contains("ANCHOR:") && !l.contains("ANCHOR_END:") && !l.trim().is_empty())
}

/// The lines (0-based) that hold `MARKER name`, as mdBook matches them: the name after
/// optional blanks, followed by a character that cannot be part of a name.
fn marked(lines: &[&str], marker: &str, name: &str) -> Vec<usize> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    lines
        .iter()
        .enumerate()
        .filter(|(_, line)| {
            line.match_indices(marker).any(|(at, _)| {
                let after = line[at + marker.len()..].trim_start();
                after.strip_prefix(name).is_some_and(|rest| !rest.starts_with(word))
            })
        })
        .map(|(n, _)| n)
        .collect()
}

fn check_anchor(
    lines: &[&str],
    anchor: &str,
    file: &str,
    where_: &str,
    problems: &mut Vec<String>,
) {
    let starts = marked(lines, "ANCHOR:", anchor);
    let ends = marked(lines, "ANCHOR_END:", anchor);
    let problem = match (starts.as_slice(), ends.as_slice()) {
        ([], _) => format!("anchor '{anchor}' not found in {file} (mdBook would include nothing)"),
        (_, []) => format!("anchor '{anchor}' in {file} has no 'ANCHOR_END: {anchor}' line"),
        ([start], [end]) if end <= start => {
            format!("'ANCHOR_END: {anchor}' comes before 'ANCHOR: {anchor}' in {file}")
        }
        ([start], [end]) if !has_text(&lines[start + 1..*end]) => {
            format!("anchor '{anchor}' in {file} is empty")
        }
        ([_], [_]) => return,
        _ => format!("anchor '{anchor}' appears more than once in {file}"),
    };
    problems.push(format!("{where_}: {problem}"));
}

/// Every chapter SUMMARY.md links to exists, and every page is linked.
fn check_summary(src: &Path, pages: &[PathBuf], problems: &mut Vec<String>) -> Result<()> {
    let summary = std::fs::read_to_string(src.join("SUMMARY.md"))
        .map_err(|e| format!("book/src/SUMMARY.md: {e}"))?;
    let listed: Vec<&str> = summary
        .split("](")
        .skip(1)
        .filter_map(|link| link.split_once(')').map(|(target, _)| target))
        .filter(|target| target.ends_with(".md"))
        .collect();
    for chapter in &listed {
        if !src.join(chapter).is_file() {
            problems.push(format!("SUMMARY.md lists {chapter}, which does not exist"));
        }
    }
    for page in pages {
        let rel = relative(src, page);
        if rel != "SUMMARY.md" && !listed.contains(&rel.as_str()) {
            problems.push(format!(
                "book/src/{rel} is not listed in SUMMARY.md (mdBook would not build it)"
            ));
        }
    }
    Ok(())
}

/// A `{{#` left in a generated page: a directive mdBook did not understand.
fn raw_directives(root: &Path, dir: &Path, problems: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.is_dir() {
            raw_directives(root, &path, problems)?;
        } else if path.extension().is_some_and(|e| e == "html") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for (n, line) in text.lines().enumerate() {
                if let Some(at) = line.find("{{#") {
                    let boundary = |i: usize| (0..=i).rev().find(|&i| line.is_char_boundary(i));
                    let from = boundary(at.saturating_sub(40)).unwrap_or(0);
                    let to = boundary((at + 43).min(line.len())).unwrap_or(line.len());
                    problems.push(format!(
                        "raw '{{{{#' in the HTML: {}:{}:{}",
                        relative(root, &path),
                        n + 1,
                        &line[from..to]
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_found_and_an_escaped_one_is_text() {
        let line = r"see {{#include output/a.txt}} and \{{#include b}} {{#inclde c}}";
        assert_eq!(directives(line), vec![("include", "output/a.txt"), ("inclde", "c")]);
    }

    #[test]
    fn an_anchor_is_a_pair_around_text() {
        let lines = ["// ANCHOR: open", "let x = 1;", "// ANCHOR_END: open", "// ANCHOR: opener"];
        let mut problems = Vec::new();
        check_anchor(&lines, "open", "f.rs", "p", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        check_anchor(&lines, "opener", "f.rs", "p", &mut problems);
        assert!(problems[0].contains("no 'ANCHOR_END: opener'"), "{problems:?}");
        check_anchor(&lines, "ope", "f.rs", "p", &mut problems);
        assert!(problems[1].contains("not found"), "{problems:?}");
        let empty = ["// ANCHOR: e", "   ", "// ANCHOR_END: e"];
        check_anchor(&empty, "e", "f.rs", "p", &mut problems);
        assert!(problems[2].contains("is empty"), "{problems:?}");
    }

    #[test]
    fn paths_resolve_by_name() {
        assert_eq!(normalize(Path::new("/r/book/src"), "../../src/x.rs"), Path::new("/r/src/x.rs"));
    }
}
