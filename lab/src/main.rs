//! `cargo lab`: the lab in one command (the alias in .cargo/config.toml runs this).
//!
//!   cargo lab demo     build, make an isolated lab, run 05 as a user, ping it, clean up
//!   cargo lab shell    a shell (or a command) inside a lab namespace with tap4
//!   cargo lab test     every check the project has, as CI runs them
//!   cargo lab record   re-record every program output the book shows (src/record.rs)
//!   cargo lab bench    the flood-ping benchmark, and `bench offload` (src/bench.rs)
//!   cargo lab vm       a Linux guest in QEMU pings our responder across a bridge (vm.rs),
//!                      or with --network ours on our switch and DHCP server (ours.rs)
//!   cargo lab book     build the book and check its includes, anchors and pages (book.rs)
//!   cargo lab fuzz     fuzz the responder and the parsers with cargo fuzz (fuzz.rs)
//!
//! Not root, the lab is a user namespace of its own: no root and no sudo. As root it is a
//! named network namespace, and the programs still run as an unprivileged user.

mod bench;
mod book;
mod fuzz;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use tapbook_lab::{
    Lab, RESPONDER_IP, can_sudo, cargo, catch_stop_signals, ensure_clone_device, ensure_packages,
    is_root, lab_user, repo_root, say, stopped, target_dir, tell,
};

const USAGE: &str = "\
Usage: cargo lab COMMAND [OPTIONS]

Commands:
  demo    build, make an isolated lab (tap4 in a namespace of its own), run
          05_full_responder as an unprivileged user, talk to it with the kernel's
          arping and ping (a 1514-byte frame too), show its counters, clean up
  shell   a lab namespace with tap4 (172.16.1.1/24, up, owned by you) and your working
          directory; runs CMD (cargo lab shell -- CMD ARGS...) or your $SHELL in it.
          Inside: cargo run --bin 05_full_responder, ping 172.16.1.2, no sudo.
          The namespace is removed when the shell or CMD ends.
  test    every check the project has: fmt, clippy, shellcheck, the unit and
          end-to-end tests, the book check and the benchmark's short run
  record [NAME...]  re-record the program output the book shows (book/src/output/),
          from the one list in lab/src/record.rs (--list names them)
  bench   flood-ping the kernel, the bare loop and 05 (--short: the quick check);
          bench offload: the offloads' bulk UDP table (examples/offload_bench.rs)
  vm      boot a small Linux guest with QEMU on a second TAP, bridged with tap4,
          and let it ping 05_full_responder; --network ours: on our switch, with
          its lease from 10_dhcp_server (cargo lab vm --help)
  book    build the book (mdbook) and check every include, anchor and page, then
          the HTML in a headless Chromium (cargo lab book --help)
  fuzz    fuzz the responder and the parsers with libFuzzer for a while
          (--target respond|offloads|udp_dhcp, --seconds N; cargo lab fuzz --help)
  edition student|instructor OUT  the course for a class (cargo lab edition --help)
  check [CHAPTER] [--junit FILE]  grade this checkout, chapter by chapter
  install [GROUP...]  install what the groups of scripts/packages.txt need and is
          missing (lab, lint, test, book; default: all), as demo and test do first

Not root, the lab is a user namespace plus a network namespace (no root, no sudo
anywhere). As root, it is a named network namespace (ip netns), and the programs still
run as an unprivileged user. Run `cargo lab COMMAND --help` for a command's options.
";

const DEMO_USAGE: &str = "\
Usage: cargo lab demo [OPTIONS]

Install what the lab needs (the lab's packages from scripts/packages.txt, through
apt-get as root or sudo), build the chapter programs, then, inside a private lab
namespace (so nothing touches your real network):
  1. scripts/setup.sh makes a persistent tap4 with 172.16.1.1/24;
  2. 05_full_responder runs as an unprivileged user and answers for 172.16.1.2;
  3. the kernel's own arping and ping talk to it; its output and counters are shown;
  4. the namespace is removed again (also on Ctrl-C or failure).
Not root: a user namespace of your own, no sudo; the responder runs as you, with no
capabilities. As root: a named network namespace; the responder runs as the user
behind sudo, or else nobody.

Options:
  --netns NAME    (root) the namespace to create and remove (default: tapbook-demo-PID);
                  it must not exist yet
  --count N       how many pings (default: 4)
  --keep          (root) leave the namespace (and tap4) in place afterwards
  --bin-dir DIR   use the 05_full_responder in DIR instead of building it
  -h, --help      this help
";

const SHELL_USAGE: &str = "\
Usage: cargo lab shell [-- CMD [ARGS...]]

A lab namespace with tap4 (172.16.1.1/24, up, owned by you) and your working directory:
runs CMD in it, or else an interactive $SHELL. Inside, with no sudo:
  cargo run --bin 03_arp_reply        then, in the same shell:  arping -I tap4 172.16.1.2
  cargo run --bin 05_full_responder & ping 172.16.1.2
The namespace, tap4 and whatever still runs in it are gone when the shell or CMD ends;
the exit status is CMD's. Not root: a user namespace of your own (you are \"root\" in
it, and only there). As root: a named network namespace tapbook-shell-PID.
";

const RECORD_USAGE: &str = "\
Usage: cargo lab record [OPTIONS] [NAME...]

Re-record the program output the book shows, into book/src/output/: every recording of
the list in lab/src/record.rs, or those named. Each runs in a fresh lab (a network
namespace with tap4, removed afterwards) the commands the book shows, as the book shows
them: `sudo ...` as the lab's root, anything else as an unprivileged user (the student),
`cargo run --bin NAME` as target/release/NAME. A recording's files are replaced only when
its checks pass (the replies came back, the counters are there). Builds the programs
first (cargo build --release --bins, and two examples). Needs root (a second user,
device nodes): run as a user, it goes through sudo after the build. About 5 minutes.
The VM chapters' and chapters 11-12's (vm-lab, vmm, switch) boot QEMU guests and need
qemu-system-x86 and strace; vm-lab runs `cargo lab vm` as the user behind sudo.

Options:
  --list          name the recordings and what they record, and stop
  --user NAME     the student (default: $SUDO_USER, else nobody; never root)
  --out DIR       where to write (default: book/src/output)
  --bin-dir DIR   use the programs in DIR (and DIR/examples) instead of building them
  -h, --help      this help
";

const TEST_USAGE: &str = "\
Usage: cargo lab test [OPTIONS]

Run all of tapbook's checks, in order, and print one line per check:
  fmt        cargo fmt --all --check
  clippy     cargo clippy --workspace --all-targets -- -D warnings
  shellcheck every script under scripts/ and tests/
  tests      cargo test --workspace: unit tests on captured frames, then the
             end-to-end tests with the kernel's ping and arping in network namespaces
  book       cargo lab book: build the book and check it (when book/ exists)
  bench      cargo lab bench --short: the flood-ping benchmark's quick check

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
";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // Installed as cargo-lab, `cargo lab ...` passes "lab" first.
    if args.first().is_some_and(|a| a == "lab") {
        args.remove(0);
    }
    // ip, arping and setpriv live in /usr/sbin on Debian, which a user's PATH often lacks;
    // cargo install puts mdbook into cargo's own directory.
    let mut path: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|c| c.join("bin"));
    for dir in cargo_bin.into_iter().chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")]) {
        if !path.contains(&dir) {
            path.push(dir);
        }
    }
    if let Ok(joined) = std::env::join_paths(path) {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("PATH", joined) };
    }
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => ("", &[][..]),
    };
    let result = match command {
        "demo" => demo(rest),
        "shell" => shell(rest),
        "test" => test(rest),
        "install" => install(rest),
        "record" => record(rest),
        "bench" => bench::main(rest),
        "vm" if rest.first().is_some_and(|a| a == "record") => {
            Err("the VM chapters' recordings are entries of the one list now: cargo lab record \
             vm-lab vmm"
                .into())
        }
        "vm" => tapbook_lab::vm::command(rest),
        "book" => book::main(rest),
        "fuzz" => fuzz::main(rest),
        "edition" => tapbook_lab::edition::command(rest),
        "check" => tapbook_lab::check::command(rest),
        "-h" | "--help" | "help" => {
            say(USAGE.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        "" => Err(format!(
            "which command? demo, shell, test, record, bench, vm, book, fuzz, edition, check \
             or install\n\n{USAGE}"
        )),
        other => Err(format!(
            "unknown command '{other}'; one of demo, shell, test, record, bench, vm, book, \
             fuzz, edition, check, install (cargo lab --help)"
        )),
    };
    result.unwrap_or_else(|e| {
        tell(format_args!("cargo lab: error: {}", e.trim_end()));
        ExitCode::FAILURE
    })
}

type Result<T> = std::result::Result<T, String>;

/// The value of `--opt VALUE` or `--opt=VALUE`; an empty one is an error, never the default.
fn value(
    option: &str,
    inline: Option<&str>,
    rest: &mut std::slice::Iter<'_, String>,
) -> Result<String> {
    let value = match inline {
        Some(v) => v.to_owned(),
        None => rest.next().ok_or(format!("option {option} needs a value (see --help)"))?.clone(),
    };
    if value.is_empty() {
        return Err(format!("option {option} needs a value, not an empty one (see --help)"));
    }
    Ok(value)
}

/// `--opt=VALUE` as ("--opt", Some("VALUE")); anything else as (it, None).
fn split_option(arg: &str) -> (&str, Option<&str>) {
    match arg.split_once('=') {
        Some((option, v)) if option.starts_with("--") => (option, Some(v)),
        _ => (arg, None),
    }
}

/// The value of a numeric option: a whole number above zero.
fn number(option: &str, v: &str) -> Result<u32> {
    v.parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or(format!("option {option} wants a positive whole number, not '{v}'"))
}

fn install(args: &[String]) -> Result<ExitCode> {
    const GROUPS: [&str; 4] = ["lab", "lint", "test", "book"];
    if args.iter().any(|a| a == "-h" || a == "--help") {
        say(
            "Usage: cargo lab install [GROUP...]   (groups of scripts/packages.txt: lab lint test book)",
        );
        return Ok(ExitCode::SUCCESS);
    }
    let groups: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Some(bad) = groups.iter().find(|g| !GROUPS.contains(g)) {
        return Err(format!("no group '{bad}' in scripts/packages.txt (lab, lint, test, book)"));
    }
    ensure_packages("cargo lab install", if groups.is_empty() { &GROUPS } else { &groups })?;
    Ok(ExitCode::SUCCESS)
}

fn record(args: &[String]) -> Result<ExitCode> {
    let mut names = Vec::new();
    let mut user = None;
    let mut out = repo_root().join("book/src/output");
    let mut bin_dir = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (option, inline) = split_option(arg);
        match option {
            "-h" | "--help" => {
                say(RECORD_USAGE.trim_end());
                return Ok(ExitCode::SUCCESS);
            }
            "--list" => {
                tapbook_lab::record::list();
                return Ok(ExitCode::SUCCESS);
            }
            "--user" => user = Some(value(option, inline, &mut rest)?),
            "--out" => out = PathBuf::from(value(option, inline, &mut rest)?),
            "--bin-dir" => bin_dir = Some(PathBuf::from(value(option, inline, &mut rest)?)),
            _ if arg.starts_with('-') => {
                return Err(format!("unknown option '{arg}' (try: cargo lab record --help)"));
            }
            _ => names.push(arg.clone()),
        }
    }
    let recordings = tapbook_lab::record::select(&names)?;
    let bin_dir = match bin_dir {
        Some(dir) => dir,
        None => {
            say(
                "Building the programs (cargo build --release --bins --examples offload_bench, read_one_frame)",
            );
            build(&["--bins", "--example", "offload_bench", "--example", "read_one_frame"])?;
            target_dir()?.join("release")
        }
    };
    let bin_dir =
        std::fs::canonicalize(&bin_dir).map_err(|e| format!("{}: {e}", bin_dir.display()))?;
    if !is_root() {
        let mut forward = vec!["record".to_owned(), "--bin-dir".to_owned()];
        forward.push(bin_dir.to_string_lossy().into_owned());
        forward.extend(["--out".to_owned(), absolute(&out)?.to_string_lossy().into_owned()]);
        forward.extend(user.map(|u| format!("--user={u}")));
        forward.extend(names);
        return through_sudo("the recordings need root (a second user, device nodes)", &forward);
    }
    let student = match user {
        Some(user) => user,
        None => match std::env::var("SUDO_USER") {
            Ok(u) if !u.is_empty() && u != "root" => u,
            _ => tapbook_lab::UNPRIVILEGED_USER.to_owned(),
        },
    };
    if student == "root" {
        return Err(
            "--user must not be root: the student runs the programs without privileges".into()
        );
    }
    std::fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let out = absolute(&out)?;
    catch_stop_signals();
    let recorder = tapbook_lab::record::Recorder::new(&repo_root(), &bin_dir, &out, &student)?;
    let mut total = 0;
    for recording in recordings {
        let start = std::time::Instant::now();
        say(format_args!("== {}: {}", recording.name, recording.about));
        let written = recorder.record(recording).map_err(|e| format!("{}: {e}", recording.name))?;
        check_stop()?;
        total += written.len();
        say(format_args!(
            "   {} files in {} s: {}",
            written.len(),
            start.elapsed().as_secs(),
            written.join(" ")
        ));
    }
    say(format_args!(
        "Wrote {total} files to {}. Review: git diff --stat -- book/src/output",
        out.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// `path`, from the current directory when it is relative.
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `cargo build --release -q -p tapbook ARGS`.
fn build(args: &[&str]) -> Result<()> {
    let status = cargo()
        .args(["build", "--release", "--quiet", "-p", "tapbook"])
        .args(args)
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if status.success() { Ok(()) } else { Err("cargo build failed".into()) }
}

/// Runs this program again as root, through sudo, with `args`: for `why`.
fn through_sudo(why: &str, args: &[String]) -> Result<ExitCode> {
    if !can_sudo() {
        return Err(format!("{why}: run it as root, or allow this user sudo"));
    }
    say(format_args!("Not root: {why}; going through sudo."));
    let me = std::env::current_exe().map_err(|e| format!("finding cargo-lab: {e}"))?;
    let status = Command::new("sudo")
        // CARGO: the demo's recording runs `cargo lab demo`, with the caller's cargo.
        .args(["--preserve-env=CI,PATH,CARGO"])
        .arg(me)
        .args(args)
        .status()
        .map_err(|e| format!("running sudo: {e}"))?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

fn check_stop() -> Result<()> {
    if stopped() { Err("stopped (signal); the lab is removed".into()) } else { Ok(()) }
}

/// Runs CMD in the lab with its output shown; an error if it fails.
fn show(lab: &Lab, program: &str, args: &[&str]) -> Result<String> {
    let out = lab
        .command(program)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {program}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    check_stop()?;
    if !out.status.success() {
        say(text.trim_end());
        return Err(format!("{program} {} failed ({})", args.join(" "), out.status));
    }
    Ok(text)
}

fn demo(args: &[String]) -> Result<ExitCode> {
    let mut count = 4u32;
    let mut keep = false;
    let mut bin_dir = None;
    let mut netns = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (option, inline) = split_option(arg);
        match option {
            "-h" | "--help" => {
                say(DEMO_USAGE.trim_end());
                return Ok(ExitCode::SUCCESS);
            }
            "--netns" => netns = Some(value(option, inline, &mut rest)?),
            "--count" => {
                let v = value(option, inline, &mut rest)?;
                count =
                    v.parse().ok().filter(|n| *n > 0).ok_or(format!(
                        "option --count wants a positive whole number, not '{v}'"
                    ))?;
            }
            "--keep" => keep = true,
            "--bin-dir" => bin_dir = Some(PathBuf::from(value(option, inline, &mut rest)?)),
            _ => return Err(format!("unknown option '{arg}' (try: cargo lab demo --help)")),
        }
    }
    let root = is_root();
    if !root && (netns.is_some() || keep) {
        return Err("--netns and --keep need root (a named network namespace); not root, the \
                    demo uses a user namespace of its own, which ends with it"
            .into());
    }
    if let Some(name) = &netns {
        let ok = name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok || name == "." || name == ".." {
            return Err(format!("bad network namespace name '{name}' (letters, digits, . _ -)"));
        }
        let list =
            Command::new("ip").args(["netns", "list"]).output().map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&list.stdout)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
        {
            return Err(format!(
                "network namespace {name} exists already; the demo makes its own and removes \
                 it: choose another name with --netns"
            ));
        }
    }
    if !root && let Some(why) = tapbook_lab::userns_blocked() {
        return Err(why);
    }
    ensure_packages("the demo", &["lab"])?;
    if !root {
        ensure_clone_device("the demo")?;
    }
    catch_stop_signals();
    // The responder never runs as root: as root, it runs as the user behind sudo, or else
    // as the system user nobody; not root, as the caller, without capabilities.
    let run_as = lab_user();

    let bin_dir = match bin_dir {
        Some(dir) => {
            say(format_args!("== 1. Using the programs in {}", dir.display()));
            dir
        }
        None => {
            say("== 1. Building the chapter programs (cargo build --release --bins)");
            let status = cargo()
                .args(["build", "--release", "--bins", "--quiet", "-p", "tapbook"])
                .status()
                .map_err(|e| format!("running cargo: {e}"))?;
            if !status.success() {
                return Err("cargo build failed".into());
            }
            target_dir()?.join("release")
        }
    };
    let bin = bin_dir.join("05_full_responder");
    let bin = std::fs::canonicalize(&bin).map_err(|e| {
        format!(
            "no {} ({e}); build it with: cargo build --release --bin 05_full_responder",
            bin.display()
        )
    })?;
    check_stop()?;

    say("");
    let name =
        root.then(|| netns.unwrap_or_else(|| format!("tapbook-demo-{}", std::process::id())));
    match &name {
        Some(name) => say(format_args!("== 2. Setting up the lab in network namespace {name}")),
        None => say("== 2. Setting up the lab in a user namespace of its own (no root, no sudo)"),
    }
    let owner = if root { run_as.as_str() } else { "root" };
    let mut lab = Lab::create(name, owner)?;
    lab.keep = keep;
    say(show(&lab, "ip", &["-br", "addr", "show", "tap4"])?.trim_end());

    say("");
    let how = if lab.is_rootless() { " (you, with no capabilities)" } else { " (not root)" };
    say(format_args!("== 3. Starting 05_full_responder as {run_as}{how} on tap4"));
    let mut responder = lab.spawn(&bin.to_string_lossy(), &[], Some(&run_as));
    lab.wait_attached(&mut responder)?;
    check_stop()?;

    say("");
    say(format_args!("== 4. The kernel's arping and ping, from 172.16.1.1 to {RESPONDER_IP}"));
    say(show(&lab, "arping", &["-c", "2", "-I", "tap4", RESPONDER_IP])?.trim_end());
    say("");
    let count = count.to_string();
    say(show(&lab, "ping", &["-c", &count, "-i", "0.2", RESPONDER_IP])?.trim_end());
    say("");
    say("A full-size frame (1472 bytes of data, 1514 on the wire):");
    let full = show(&lab, "ping", &["-c", "2", "-i", "0.2", "-s", "1472", RESPONDER_IP])?;
    let lines: Vec<&str> = full.trim_end().lines().collect();
    say(lines[lines.len().saturating_sub(2)..].join("\n"));
    say("");
    say("The kernel's neighbour table learnt our MAC:");
    say(show(&lab, "ip", &["neigh", "show", RESPONDER_IP])?.trim_end());

    say("");
    say("== 5. What the responder saw (stopped with SIGTERM, it prints its counters)");
    let (status, output) = responder.stop();
    say(output.trim_end());
    match status {
        Some(status) if status.success() => {}
        Some(status) => return Err(format!("the responder exited with {status}")),
        None => return Err("the responder did not stop within 5 s of SIGTERM".into()),
    }

    say("");
    if keep {
        say(format_args!(
            "The lab is still there: ip netns exec {0} bash   (remove it: ip netns del {0})",
            lab.netns
        ));
    } else if lab.is_rootless() {
        say("Done; the lab's namespace is gone.");
        say("To run the lab by hand: cargo lab shell, then cargo run --bin 05_full_responder");
    } else {
        say(format_args!("Done; namespace {} removed.", lab.netns));
        say("To run the lab by hand: cargo lab shell, then cargo run --bin 05_full_responder");
    }
    Ok(ExitCode::SUCCESS)
}

fn shell(args: &[String]) -> Result<ExitCode> {
    let command: Vec<String> = match args.split_first() {
        None => Vec::new(),
        Some((first, rest)) if first == "--" => rest.to_vec(),
        Some((first, _)) if first == "-h" || first == "--help" => {
            say(SHELL_USAGE.trim_end());
            return Ok(ExitCode::SUCCESS);
        }
        Some((first, _)) => {
            return Err(format!(
                "unexpected '{first}': the command goes after --: cargo lab shell -- CMD ARGS..."
            ));
        }
    };
    let root = is_root();
    if !root {
        ensure_clone_device("the lab shell")?;
    }
    let name = root.then(|| format!("tapbook-shell-{}", std::process::id()));
    let lab = Lab::create(name, "root")?;
    let interactive = command.is_empty();
    let mut cmd = if interactive {
        let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into());
        say(format_args!(
            "Lab: tap4 (172.16.1.1/24, up, yours) in {}. Try: cargo run --bin 05_full_responder & \
             ping -c 3 {RESPONDER_IP}. Leave with exit (the namespace goes with it).",
            lab.netns
        ));
        lab.command(&shell)
    } else {
        let mut cmd = lab.command(&command[0]);
        cmd.args(&command[1..]);
        cmd
    };
    catch_stop_signals();
    let status =
        cmd.env("TAPBOOK_LAB", &lab.netns).status().map_err(|e| format!("running {cmd:?}: {e}"))?;
    drop(lab);
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

fn test(args: &[String]) -> Result<ExitCode> {
    let mut quick = false;
    for arg in args {
        match arg.as_str() {
            "-h" | "--help" => {
                say(TEST_USAGE.trim_end());
                return Ok(ExitCode::SUCCESS);
            }
            "--quick" => quick = true,
            _ => return Err(format!("unknown option '{arg}' (try: cargo lab test --help)")),
        }
    }
    if quick {
        ensure_packages("cargo lab test --quick", &["lint"])?;
    } else {
        ensure_packages("the tests", &["lab", "lint", "test", "book"])?;
    }
    let root = repo_root();
    // Tests that cannot run here (no root, a tool missing) write "name<TAB>reason" into
    // this file (tapbook_lab::can_run), so that they count as skipped, not passed.
    let skip_log = std::env::temp_dir().join(format!("tapbook-skipped-{}", std::process::id()));
    std::fs::write(&skip_log, "").map_err(|e| format!("creating {}: {e}", skip_log.display()))?;
    let _remove = RemoveOnDrop(skip_log.clone());
    // SAFETY: no other thread exists.
    unsafe { std::env::set_var("TAPBOOK_SKIP_LOG", &skip_log) };

    let mut as_root = true;
    if !is_root() && !quick {
        if can_sudo() {
            // Build as ourselves, run the test binaries as root.
            let out = Command::new("rustc")
                .arg("-vV")
                .output()
                .map_err(|e| format!("running rustc: {e}"))?;
            let triple = String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
                .ok_or("rustc -vV named no host")?;
            let var = format!("CARGO_TARGET_{}_RUNNER", triple.to_uppercase().replace('-', "_"));
            // SAFETY: no other thread exists.
            unsafe { std::env::set_var(&var, "sudo --preserve-env=CI,TAPBOOK_SKIP_LOG") };
            say(format_args!("Not root: the test binaries will run through sudo ({var})."));
        } else {
            as_root = false;
            say("Not root and no sudo: the end-to-end tests will be skipped.");
        }
    }

    let mut passed: Vec<&str> = Vec::new();
    let mut failed: Vec<&str> = Vec::new();
    let mut skipped: Vec<&str> = Vec::new();
    let mut test_log = String::new();
    let mut check = |name: &'static str, cmd: &mut Command, log: Option<&mut String>| {
        // The program by its name (cargo, not $CARGO's path), then its arguments.
        let program = Path::new(cmd.get_program()).file_name().unwrap_or(cmd.get_program());
        let shown: Vec<String> = std::iter::once(program)
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        say("");
        say(format_args!("== {name}: {}", shown.join(" ")));
        let start = std::time::Instant::now();
        let ok = match log {
            // cargo test's output, shown and kept for the count.
            Some(log) => cmd.stdout(Stdio::piped()).spawn().is_ok_and(|mut child| {
                if let Some(out) = child.stdout.take() {
                    for line in BufReader::new(out).lines().map_while(std::result::Result::ok) {
                        say(&line);
                        log.push_str(&line);
                        log.push('\n');
                    }
                }
                child.wait().is_ok_and(|s| s.success())
            }),
            None => cmd.status().is_ok_and(|s| s.success()),
        };
        let took = start.elapsed().as_secs();
        if ok {
            passed.push(name);
            say(format_args!("== {name}: ok ({took} s)"));
        } else {
            failed.push(name);
            say(format_args!("== {name}: FAILED ({took} s)"));
        }
    };
    check("fmt", cargo().args(["fmt", "--all", "--check"]), None);
    check(
        "clippy",
        cargo().args(["clippy", "--workspace", "--all-targets", "--quiet", "--", "-D", "warnings"]),
        None,
    );
    let listed = Command::new("git")
        .args(["ls-files", "-co", "--exclude-standard", "--", "*.sh"])
        .current_dir(&root)
        .output()
        .map_err(|e| format!("running git: {e}"))?;
    let scripts: Vec<String> =
        String::from_utf8_lossy(&listed.stdout).lines().map(str::to_owned).collect();
    check(
        "shellcheck",
        Command::new("shellcheck").arg("-x").args(&scripts).current_dir(&root),
        None,
    );
    // The examples the tests run, built as the caller: through sudo, root has no cargo.
    if !quick {
        check("examples", cargo().args(["build", "--examples", "--quiet"]), None);
    }
    let mut tests = cargo();
    // Every test binary runs even when one fails, so the summary counts them all.
    tests.arg("test").arg("--workspace").arg("--no-fail-fast");
    if quick {
        tests.args(["--lib", "--bins"]);
    } else {
        tests.arg("--all-targets");
    }
    check("tests", tests.stderr(Stdio::inherit()), Some(&mut test_log));
    if !is_root() && as_root && !quick {
        // Run as root through sudo, tests that build (the demo's release build, say) left
        // files of root's in our target directory: give them back, or our next build
        // (the bench's, below) cannot take cargo's lock.
        if let Ok(dir) = target_dir() {
            let me = format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid());
            let _ = Command::new("sudo").args(["-n", "chown", "-R", &me]).arg(&dir).status();
        }
    }
    if !quick && root.join("book/book.toml").is_file() {
        let me = std::env::current_exe().map_err(|e| format!("finding cargo-lab: {e}"))?;
        check("book", Command::new(me).arg("book").current_dir(&root), None);
    }
    if !quick {
        if as_root {
            // The benchmark's quick check, as its own process (cargo lab bench --short):
            // it goes through sudo itself when not root.
            let me = std::env::current_exe().map_err(|e| format!("finding cargo-lab: {e}"))?;
            check("bench", Command::new(me).args(["bench", "--short"]).current_dir(&root), None);
        } else {
            skipped.push("bench");
            let mut log = std::fs::OpenOptions::new()
                .append(true)
                .open(&skip_log)
                .map_err(|e| e.to_string())?;
            let _ = log.write_all(b"bench\tneeds root\n");
        }
    }

    // ---- the count --------------------------------------------------------------
    // cargo prints "test result: ok. 12 passed; 0 failed; 1 ignored; ..." per test binary.
    let (mut n_passed, mut n_failed, mut ignored) = (0usize, 0usize, 0usize);
    for line in test_log.lines().filter(|l| l.starts_with("test result:")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| words.get(i).and_then(|w| w.parse::<usize>().ok()).unwrap_or(0);
        n_passed += number(3);
        n_failed += number(5);
        ignored += number(7);
    }
    let skip_text = std::fs::read_to_string(&skip_log).unwrap_or_default();
    let skip_lines: Vec<&str> = skip_text.lines().filter(|l| !l.is_empty()).collect();
    // A test that skipped itself returned early, and cargo counted it as passed.
    let skipped_tests = skip_lines.len() - skipped.len();
    n_passed = n_passed.saturating_sub(skipped_tests);
    // Each other check counts as one test; a cargo test run that failed without a failed
    // test (it did not compile) as one failure.
    n_passed += passed.iter().filter(|n| **n != "tests").count();
    for name in &failed {
        if *name != "tests" || n_failed == 0 {
            n_failed += 1;
        }
    }
    let n_skipped = skipped_tests + skipped.len() + ignored;

    say("");
    if !failed.is_empty() {
        say(format_args!("failed: {}", failed.join(" ")));
    }
    if !skip_lines.is_empty() {
        say("skipped:");
        let mut sorted = skip_lines.clone();
        sorted.sort_unstable();
        for line in &sorted {
            say(format_args!("  {}", line.replacen('\t', ": ", 1)));
        }
        // One reason each: "missing: TOOL, TOOL" merged into one list, the others as they are.
        let reasons: Vec<&str> =
            skip_lines.iter().filter_map(|l| l.split_once('\t').map(|(_, r)| r)).collect();
        let mut missing: Vec<&str> = reasons
            .iter()
            .filter_map(|r| r.strip_prefix("missing: "))
            .flat_map(|r| r.split(',').map(str::trim))
            .filter(|t| !t.is_empty())
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let mut other: Vec<&str> =
            reasons.iter().copied().filter(|r| !r.starts_with("missing: ")).collect();
        other.sort_unstable();
        other.dedup();
        let mut all = Vec::new();
        if !missing.is_empty() {
            all.push(format!("missing: {}", missing.join(", ")));
        }
        all.extend(other.iter().map(|r| (*r).to_owned()));
        say(format_args!("skipped because: {}", all.join("; ")));
    }
    if ignored > 0 {
        say(format_args!("({ignored} test(s) marked #[ignore] did not run)"));
    }
    say(format_args!("tests: {n_passed} passed, {n_failed} failed, {n_skipped} skipped"));
    Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
