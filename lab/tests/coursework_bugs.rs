//! A checker with teeth: `cargo lab check` passes the reference in full, fails the
//! chapter of each plausible student bug in coursework/bugs/, and finds every chapter of
//! the untouched student edition "not implemented yet", with no other failure.
//!
//! Each bug is a patch with a header (`bug:`, `chapter:`, `tier:`), applied to a copy of
//! this checkout; the fastest tier that catches it is run: most need no namespace. The
//! copies and their builds live in target/coursework/ (a target directory of their own,
//! since this test's cargo holds the lock on ours), so a second run only recompiles what
//! a patch touched.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use tapbook_lab::check::{self, Outcome, Results};
use tapbook_lab::edition::{self, Edition};
use tapbook_lab::{can_run, repo_root, target_dir};

struct Bug {
    file: String,
    what: String,
    chapter: u8,
    tier: char,
}

fn bugs() -> Vec<Bug> {
    let dir = repo_root().join("coursework/bugs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("coursework/bugs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let field = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .unwrap_or_else(|| panic!("{}: no '{key}' line", path.display()))
                    .trim()
                    .to_owned()
            };
            Bug {
                file: path.to_string_lossy().into_owned(),
                what: field("bug:"),
                chapter: field("chapter:").parse().expect("chapter: N"),
                tier: field("tier:").chars().next().expect("tier: a or b"),
            }
        })
        .collect()
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git").args(args).current_dir(dir).status().unwrap();
    assert!(status.success(), "git {} in {}", args.join(" "), dir.display());
}

/// A fresh edition of this checkout at `dir`.
fn fresh(edition: Edition, dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    edition::write(&repo_root(), edition, dir).unwrap();
}

fn failures(results: &Results) -> Vec<String> {
    results
        .iter()
        .filter(|(_, o)| !matches!(o, Outcome::Pass))
        .map(|(c, o)| format!("{}: {o:?}", c.id))
        .collect()
}

#[test]
fn the_checker_passes_the_reference_fails_each_bug_and_finds_the_student_edition_todo() {
    let started = Instant::now();
    // Through `cargo lab test` as a user with sudo, this binary runs as root with sudo's
    // environment: no $CARGO, and files made here would belong to root. Then the cargo
    // that built this test, and a work directory outside the user's tree.
    let via_sudo = tapbook_lab::is_root() && std::env::var_os("SUDO_USER").is_some();
    let work = if via_sudo {
        std::env::temp_dir().join(format!("tapbook-coursework-{}", std::process::id()))
    } else {
        target_dir().unwrap().join("coursework")
    };
    // SAFETY: the only test of this binary; no other thread reads the environment.
    unsafe {
        std::env::set_var("CARGO_TARGET_DIR", work.join("target"));
        if std::env::var_os("CARGO").is_none() {
            std::env::set_var("CARGO", env!("CARGO"));
            // That cargo is the toolchain's own (not rustup's proxy): it needs rustc
            // beside it on PATH, which sudo's PATH lacks.
            if let Some(bin) = std::path::Path::new(env!("CARGO")).parent() {
                let path = std::env::var_os("PATH").unwrap_or_default();
                let paths = std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&path));
                std::env::set_var("PATH", std::env::join_paths(paths).expect("a PATH"));
            }
        }
    }
    let lab = can_run("the_checker_has_teeth (tier b)", &[]);
    let tiers = (true, lab);

    // The reference passes every check.
    let reference = work.join("reference");
    fresh(Edition::Instructor, &reference);
    let results = check::run(&reference, None, tiers);
    assert!(failures(&results).is_empty(), "the reference: {:#?}", failures(&results));
    assert_eq!(
        results.len(),
        check::CHECKS.iter().filter(|c| lab || !c.id.starts_with("lab::")).count()
    );
    eprintln!("reference: {} checks pass ({:.0?})", results.len(), started.elapsed());

    // Each bug fails its chapter with a failure (not a todo, not a skip).
    let bugs = bugs();
    assert!(bugs.len() >= 15, "only {} bugs", bugs.len());
    for bug in &bugs {
        if bug.tier == 'b' && !lab {
            continue;
        }
        let at = Instant::now();
        git(&reference, &["checkout", "-q", "--", "."]);
        git(&reference, &["apply", &bug.file]);
        let results = check::run(&reference, Some(bug.chapter), (bug.tier == 'a', bug.tier == 'b'));
        let caught: Vec<&str> = results
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Fail(_)))
            .map(|(c, _)| c.id)
            .collect();
        let name = Path::new(&bug.file).file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !caught.is_empty(),
            "{name} ({}) passes chapter {}: {results:#?}",
            bug.what,
            bug.chapter
        );
        eprintln!("{name}: chapter {} fails {caught:?} ({:.0?})", bug.chapter, at.elapsed());
    }
    git(&reference, &["checkout", "-q", "--", "."]);

    // The student edition: every chapter has checks not implemented yet, and nothing
    // else goes wrong (no panic trace, no failure that is not a todo).
    let student = work.join("student");
    fresh(Edition::Student, &student);
    let results = check::run(&student, None, tiers);
    for (chapter, _) in check::CHAPTERS {
        let of: Vec<&Outcome> =
            results.iter().filter(|(c, _)| c.chapter == chapter).map(|(_, o)| o).collect();
        assert!(
            of.iter().any(|o| matches!(o, Outcome::Todo(_))),
            "chapter {chapter} of the student edition: {of:?}"
        );
        assert!(
            of.iter().all(|o| matches!(o, Outcome::Todo(_) | Outcome::Pass)),
            "chapter {chapter} of the student edition: {of:?}"
        );
    }
    let report = check::report(&results);
    assert!(!report.contains("panicked"), "{report}");
    assert!(report.lines().all(|l| l.chars().count() <= 78), "{report}");
    eprintln!("all done in {:.0?}", started.elapsed());
    if via_sudo {
        let _ = std::fs::remove_dir_all(&work);
    }
}
