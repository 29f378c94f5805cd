//! `cargo lab edition student|instructor OUT`: the course as a class gets it, written from
//! this checkout (its `git ls-files`) into a new repository OUT.
//!
//! The student edition is the reference with the code each chapter teaches left to write.
//! The regions are marked once, in the reference source, with a pair of comments that
//! mdBook takes for an anchor, so the book's listings never show them:
//!
//! ```text
//! // ANCHOR: student_ch3_reply "chapter 3: the ARP reply decision"
//! /// Answers "who has `host.ip`?" ...
//! pub fn arp_reply(host: &Host, eth: &EthernetFrame<&[u8]>, out: &mut [u8]) -> Outcome {
//!     ...
//! }
//! // ANCHOR_END: student_ch3_reply
//! ```
//!
//! In the student edition, the body of every function inside such a region becomes
//! `todo!("chapter 3: the ARP reply decision")`; its doc comment, attributes and
//! signature stay, and so does everything else in the region (a struct, an `impl` line).
//! The book loses its solutions (the pages, their sidebar entries, the links to them,
//! hence the search index too) and the instructor guide; the bug patches that prove the
//! checker (coursework/bugs/) and their test go too, since their context lines are the
//! reference. The instructor edition is the checkout as it is.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{repo_root, say};

/// The start of a region marker; the end is `// ANCHOR_END: student_ch...`.
const BEGIN: &str = "// ANCHOR: student_ch";
const END: &str = "// ANCHOR_END: student_ch";

/// Files and directories the student edition leaves out.
const NOT_FOR_STUDENTS: [&str; 5] = [
    "book/src/solutions/",
    "book/src/solutions.md",
    "book/src/instructor-guide.md",
    "coursework/bugs/",
    "lab/tests/coursework_bugs.rs",
];

pub const USAGE: &str = "\
Usage: cargo lab edition student|instructor OUT

Write the course as a class gets it into OUT (a new directory), from this
checkout's files (git ls-files), as a git repository with one commit:
  student     the code each chapter teaches is todo!(\"chapter N: ...\"), with
              its doc comment and signature kept; the book has no solutions
              and no instructor guide. It builds; `cargo lab check` grades it.
  instructor  everything: the reference, the solutions, the instructor guide
              (book/src/instructor-guide.md) and the bug patches.
";

/// Which edition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    Student,
    Instructor,
}

pub fn command(args: &[String]) -> Result<std::process::ExitCode, String> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        say(USAGE.trim_end());
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let [kind, out] = args else {
        return Err(format!("which edition, and where?\n\n{USAGE}"));
    };
    let edition = match kind.as_str() {
        "student" => Edition::Student,
        "instructor" => Edition::Instructor,
        other => return Err(format!("no edition '{other}': student or instructor")),
    };
    let out = PathBuf::from(out);
    let stats = write(&repo_root(), edition, &out)?;
    say(format_args!(
        "{} edition written to {}: {} files, {} functions left to write",
        kind,
        out.display(),
        stats.files,
        stats.todos
    ));
    Ok(std::process::ExitCode::SUCCESS)
}

/// What [`write`] did.
#[derive(Debug, Default)]
pub struct Stats {
    pub files: usize,
    pub todos: usize,
}

/// Writes `edition` of the checkout at `root` into `out`, which must not exist or be empty.
pub fn write(root: &Path, edition: Edition, out: &Path) -> Result<Stats, String> {
    if out.exists() && out.read_dir().map_err(|e| format!("{}: {e}", out.display()))?.count() > 0 {
        return Err(format!("{} exists and is not empty", out.display()));
    }
    let listed = Command::new("git")
        .args(["ls-files", "-z", "--cached"])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running git ls-files: {e}"))?;
    if !listed.status.success() {
        return Err(format!("git ls-files failed in {}", root.display()));
    }
    let mut stats = Stats::default();
    for name in listed.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let from = root.join(&name);
        // A file deleted but not yet staged.
        if !from.exists() {
            continue;
        }
        if edition == Edition::Student && NOT_FOR_STUDENTS.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let to = out.join(&name);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let transformed = match edition {
            Edition::Instructor => None,
            Edition::Student => student_file(&name, &from, &mut stats)?,
        };
        match transformed {
            Some(text) => std::fs::write(&to, text),
            None => std::fs::copy(&from, &to).map(|_| ()),
        }
        .map_err(|e| format!("writing {}: {e}", to.display()))?;
        // Keep the mode (the scripts are executable).
        let mode = std::fs::metadata(&from).map_err(|e| format!("{name}: {e}"))?.permissions();
        std::fs::set_permissions(&to, mode).map_err(|e| format!("{}: {e}", to.display()))?;
        stats.files += 1;
    }
    if edition == Edition::Student && stats.todos == 0 {
        return Err("no region marked for students in this checkout".into());
    }
    commit(out, edition)?;
    Ok(stats)
}

/// `git init` and one commit, so that OUT can be pushed as a classroom's template.
fn commit(out: &Path, edition: Edition) -> Result<(), String> {
    let message = match edition {
        Edition::Student => "tapbook, student edition",
        Edition::Instructor => "tapbook, instructor edition",
    };
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=tapbook",
            "-c",
            "user.email=tapbook@localhost",
            "commit",
            "-q",
            "--no-verify",
            "-m",
            message,
        ],
    ] {
        let status = Command::new("git")
            .args(args)
            .current_dir(out)
            .status()
            .map_err(|e| format!("running git {}: {e}", args.join(" ")))?;
        if !status.success() {
            return Err(format!("git {} failed in {}", args.join(" "), out.display()));
        }
    }
    Ok(())
}

/// The student's version of one file, or `None` to copy it as it is.
fn student_file(name: &str, from: &Path, stats: &mut Stats) -> Result<Option<String>, String> {
    let text_of = || std::fs::read_to_string(from).map_err(|e| format!("reading {name}: {e}"));
    if name == "src/lib.rs" {
        return Ok(Some(allow_unused(&text_of()?)));
    }
    if name.ends_with(".rs") {
        let text = text_of()?;
        if !text.contains(BEGIN) {
            return Ok(None);
        }
        let (student, todos) = student_source(&text).map_err(|e| format!("{name}: {e}"))?;
        stats.todos += todos;
        return Ok(Some(student));
    }
    if name == "book/src/SUMMARY.md" {
        let text = text_of()?;
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !(l.contains("](solutions") || l.contains("](instructor-guide.md)")))
            .collect();
        return Ok(Some(kept.join("\n") + "\n"));
    }
    if name.starts_with("book/src/") && name.ends_with(".md") {
        let text = text_of()?;
        if !text.contains("solutions") {
            return Ok(None);
        }
        let kept: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with("Solutions: ["))
            .map(|l| l.replace("; solutions are in the appendix;", ";"))
            .collect();
        return Ok(Some(kept.join("\n") + "\n"));
    }
    Ok(None)
}

/// The student's version of a Rust source: every function in a marked region gets
/// `todo!("chapter N: ...")` for a body. Returns the text and how many functions.
pub fn student_source(text: &str) -> Result<(String, usize), String> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut todos = 0;
    let mut region: Option<(usize, String, usize)> = None; // (start line, message, fns)
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if trimmed.starts_with(BEGIN) {
            if let Some((start, ..)) = region {
                return Err(format!("line {}: a region inside the region of line {start}", i + 1));
            }
            let message = trimmed
                .split_once('"')
                .and_then(|(_, rest)| rest.rsplit_once('"'))
                .map(|(message, _)| message.to_owned())
                .filter(|m| m.starts_with("chapter "))
                .ok_or(format!("line {}: no \"chapter N: what\" after the marker", i + 1))?;
            region = Some((i + 1, message, 0));
            out.push(line.to_owned());
            i += 1;
            continue;
        }
        if trimmed.starts_with(END) {
            match region.take() {
                Some((start, _, 0)) => {
                    return Err(format!("the region of line {start} holds no function"));
                }
                Some(_) => {}
                None => return Err(format!("line {}: the end of no region", i + 1)),
            }
            out.push(line.to_owned());
            i += 1;
            continue;
        }
        let Some((_, message, fns)) = region.as_mut() else {
            out.push(line.to_owned());
            i += 1;
            continue;
        };
        if !is_fn_start(trimmed) {
            out.push(line.to_owned());
            i += 1;
            continue;
        }
        // The signature, up to the line that opens the body (rustfmt's layout).
        let indent = &line[..line.len() - trimmed.len()];
        let open = (i..lines.len())
            .find(|&j| lines[j].trim_end().ends_with('{'))
            .ok_or(format!("line {}: a function without a body", i + 1))?;
        let close = (open + 1..lines.len())
            .find(|&j| lines[j].trim_end() == format!("{indent}}}"))
            .ok_or(format!("line {}: no closing brace at the function's indentation", i + 1))?;
        out.extend(lines[i..=open].iter().map(|l| (*l).to_owned()));
        out.push(format!("{indent}    todo!(\"{message}\")"));
        out.push(lines[close].to_owned());
        *fns += 1;
        todos += 1;
        i = close + 1;
    }
    if let Some((start, ..)) = region {
        return Err(format!("the region of line {start} has no end"));
    }
    Ok((out.join("\n"), todos))
}

/// The library's root with the warnings of unwritten code allowed, after its `//!` docs.
fn allow_unused(lib: &str) -> String {
    let docs = lib.lines().take_while(|l| l.starts_with("//!") || l.is_empty()).count();
    let mut lines: Vec<&str> = lib.lines().collect();
    lines.insert(
        docs,
        "// Student edition: until they are written, the todo!() bodies leave parameters,\n\
         // imports and helpers unused. Delete this line when `cargo lab check` passes.\n\
         #![allow(unused_variables, unused_imports, dead_code)]\n",
    );
    lines.join("\n") + "\n"
}

/// Whether a (trimmed) line starts a function item: `fn`, after `pub`, `pub(crate)`,
/// `const` and the like.
fn is_fn_start(trimmed: &str) -> bool {
    let mut rest = trimmed;
    loop {
        let before = rest;
        for prefix in ["pub(crate) ", "pub(super) ", "pub ", "const ", "unsafe ", "async "] {
            rest = rest.strip_prefix(prefix).unwrap_or(rest);
        }
        if rest == before {
            break;
        }
    }
    rest.starts_with("fn ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = r#"use x;
// ANCHOR: student_ch4_sum "chapter 4: the internet checksum"
/// Sums.
#[inline]
pub fn sum(
    data: &[u8],
) -> u32 {
    let s = format!("{}", 1);
    if true {
        return 1;
    }
    0
}
// ANCHOR_END: student_ch4_sum

impl X {
    // ANCHOR: student_ch4_view "chapter 4: the view"
    pub(crate) const fn new(a: u8) -> X {
        X { a }
    }
    // ANCHOR_END: student_ch4_view
}
"#;

    #[test]
    fn bodies_become_todo_and_the_rest_stays() {
        let (student, todos) = student_source(REFERENCE).unwrap();
        assert_eq!(todos, 2);
        assert_eq!(
            student,
            r#"use x;
// ANCHOR: student_ch4_sum "chapter 4: the internet checksum"
/// Sums.
#[inline]
pub fn sum(
    data: &[u8],
) -> u32 {
    todo!("chapter 4: the internet checksum")
}
// ANCHOR_END: student_ch4_sum

impl X {
    // ANCHOR: student_ch4_view "chapter 4: the view"
    pub(crate) const fn new(a: u8) -> X {
        todo!("chapter 4: the view")
    }
    // ANCHOR_END: student_ch4_view
}
"#
        );
    }

    #[test]
    fn broken_markers_are_errors() {
        let unterminated = "// ANCHOR: student_ch1_a \"chapter 1: a\"\nfn a() {\n}\n";
        assert!(student_source(unterminated).unwrap_err().contains("has no end"));
        let empty = "// ANCHOR: student_ch1_a \"chapter 1: a\"\n// ANCHOR_END: student_ch1_a\n";
        assert!(student_source(empty).unwrap_err().contains("no function"));
        let untitled = "// ANCHOR: student_ch1_a\nfn a() {\n}\n// ANCHOR_END: student_ch1_a\n";
        assert!(student_source(untitled).unwrap_err().contains("chapter N"));
    }

    #[test]
    fn every_region_of_the_reference_transforms() {
        // The regions of the reference itself: each file parses, and the chapters the
        // issue names are all there.
        let root = repo_root();
        let mut chapters = std::collections::BTreeSet::new();
        for file in [
            "src/tap.rs",
            "src/show.rs",
            "src/wire/arp.rs",
            "src/respond/arp.rs",
            "src/wire/checksum.rs",
            "src/wire/ipv4.rs",
            "src/wire/icmpv4.rs",
            "src/respond/echo.rs",
            "src/respond/ipv4.rs",
        ] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            let (student, todos) = student_source(&text).unwrap();
            assert!(todos > 0, "{file} has no region");
            for line in student.lines().filter(|l| l.contains("todo!(\"chapter ")) {
                let after = line.split_once("chapter ").unwrap().1;
                chapters.insert(after.split_once(':').unwrap().0.to_owned());
            }
        }
        assert_eq!(chapters.into_iter().collect::<Vec<_>>(), ["1", "2", "3", "4", "5"]);
    }
}
