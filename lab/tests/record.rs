//! `cargo lab record`'s executor (tapbook_lab::record), end to end in labs of its own:
//! the command a recording shows is the command that runs, as the student, or with
//! `sudo` as root (with SUDO_USER set, as sudo sets it); `$?` is the file's previous
//! command's status; `cargo run --bin` runs the program built for the recording; a
//! background program writes into its file as it runs and stops with the signal given;
//! `pgrep` sees only the lab's own processes; and a recording whose checks fail leaves
//! the book's files alone.

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal::SIGTERM;
use tapbook_lab::record::{EXAMPLES, PROGRAMS, Recorder, Recording, Setup, Step::*};
use tapbook_lab::{UNPRIVILEGED_USER, repo_root, require_lab};

static SESSION: Recording = Recording {
    name: "test-session",
    about: "the executor's meaning of a shown command",
    setup: Setup::Tap4,
    steps: &[
        Run("who.txt", "id -un"),
        Run("who.txt", "sudo id -u"),
        Run("who.txt", "sudo sh -c 'echo $SUDO_USER'"),
        Run("status.txt", "false"),
        Then("status.txt", "echo $?"),
        Run("program.txt", "cargo run -q --bin 05_full_responder -- --quiet"),
        Start("job.txt", "sleep 30", "# a note, before what the job prints"),
        Run("pgrep.txt", "pgrep -c -u \"$USER\" -x sleep"),
        Stop("job.txt", SIGTERM),
        Then("job.txt", "echo $?"),
        Expect("who.txt", "nobody"),
    ],
};

static FAILING: Recording = Recording {
    name: "test-failing",
    about: "a check that cannot pass",
    setup: Setup::Bare,
    steps: &[Run("failing.txt", "echo hello"), Expect("failing.txt", "goodbye")],
};

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Stand-ins for the programs the recorder copies: each says its name and arguments.
fn fake_programs(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir.join("examples")).expect("creating the programs' directory");
    let names = PROGRAMS.iter().map(PathBuf::from);
    let examples = EXAMPLES.iter().map(|e| Path::new("examples").join(e));
    for name in names.chain(examples) {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\necho \"fake $(basename \"$0\") $*\"\n").expect("writing");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

fn recorder(tag: &str) -> (Recorder, Scratch) {
    let scratch =
        Scratch(std::env::temp_dir().join(format!("tb-record-test-{tag}-{}", std::process::id())));
    let bin = scratch.0.join("bin");
    let out = scratch.0.join("out");
    fake_programs(&bin);
    std::fs::create_dir_all(&out).expect("creating the output directory");
    let recorder = Recorder::new(&repo_root(), &bin, &out, UNPRIVILEGED_USER).expect("a recorder");
    (recorder, scratch)
}

#[test]
fn a_shown_command_runs_as_shown() {
    require_lab!("a_shown_command_runs_as_shown");
    let (recorder, scratch) = recorder("session");
    let written = recorder.record(&SESSION).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(written.len(), 5, "{written:?}");
    let read = |f: &str| std::fs::read_to_string(scratch.0.join("out").join(f)).expect(f);
    assert_eq!(
        read("who.txt"),
        format!(
            "$ id -un\n{UNPRIVILEGED_USER}\n\n$ sudo id -u\n0\n\n$ sudo sh -c 'echo $SUDO_USER'\n\
             {UNPRIVILEGED_USER}\n"
        )
    );
    assert_eq!(read("status.txt"), "$ false\n$ echo $?\n1\n");
    assert_eq!(
        read("program.txt"),
        "$ cargo run -q --bin 05_full_responder -- --quiet\nfake 05_full_responder --quiet\n"
    );
    // One sleep of the student's in this lab, whatever other sleeps run elsewhere.
    assert_eq!(read("pgrep.txt"), "$ pgrep -c -u \"$USER\" -x sleep\n1\n");
    assert_eq!(
        read("job.txt"),
        "$ sleep 30\n# a note, before what the job prints\n$ echo $?\n143\n"
    );
}

#[test]
fn a_failed_check_leaves_the_books_files_alone() {
    require_lab!("a_failed_check_leaves_the_books_files_alone");
    let (recorder, scratch) = recorder("failing");
    let e = recorder.record(&FAILING).expect_err("the check cannot pass");
    assert!(e.contains("failing.txt does not contain 'goodbye'") && e.contains("hello"), "{e}");
    assert!(!scratch.0.join("out/failing.txt").exists(), "a failed recording was published");
}
