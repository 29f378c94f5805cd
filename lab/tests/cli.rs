//! `cargo lab` itself, run as a separate process (the binary cargo built for these tests),
//! as root and as an unprivileged user: the README's two commands stop first and say what
//! to run when packages are missing and cannot be installed; `cargo lab demo` works in a
//! named namespace as root and in a user namespace of its own as a user; `cargo lab shell`
//! runs a command in a lab and leaves nothing running; where user namespaces are blocked
//! it says so, with the fix and the sudo fallback.
//!
//! Installing is tested with stand-ins on PATH for `dpkg-query` (which says what is
//! missing), `apt-get` and `sudo` (which log what they were asked to do), so nothing is
//! installed or removed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tapbook_lab::{
    UNPRIVILEGED_USER, can_run_rootless, missing_packages, primary_group, repo_root, require_lab,
    run_ok,
};

const CARGO_LAB: &str = env!("CARGO_BIN_EXE_cargo-lab");

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn output(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn netns_exists(name: &str) -> bool {
    Command::new("ip").args(["netns", "list"]).output().is_ok_and(|out| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|line| line.split_whitespace().next() == Some(name))
    })
}

/// A directory of stand-ins for system commands, put first on PATH; removed when dropped.
struct Fakes {
    dir: PathBuf,
}

impl Fakes {
    fn new(tag: &str) -> Fakes {
        let dir = std::env::temp_dir().join(format!("tb-cli-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the stand-ins' directory");
        // The unprivileged user runs them and writes the log.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let fakes = Fakes { dir };
        // dpkg-query that says every package is installed except those in FAKE_MISSING.
        fakes.add(
            "dpkg-query",
            "for p in $FAKE_MISSING; do [[ $p == \"${!#}\" ]] && exit 1; done\n\
             printf 'install ok installed'",
        );
        fakes.add("apt-get", &format!("echo \"apt-get $*\" >>{}", fakes.log().display()));
        fakes
    }

    fn add(&self, name: &str, body: &str) {
        let path = self.dir.join(name);
        std::fs::write(&path, format!("#!/bin/bash\n{body}\n")).expect("writing a stand-in");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn log(&self) -> PathBuf {
        self.dir.join("log")
    }

    fn logged(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    fn path(&self) -> String {
        format!("{}:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", self.dir.display())
    }
}

impl Drop for Fakes {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `cargo-lab ARGS` run as the unprivileged user, with `path` as PATH.
fn as_user(path: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", UNPRIVILEGED_USER, "--regid", &primary_group(UNPRIVILEGED_USER)])
        .args(["--clear-groups", "--", "env", &format!("PATH={path}"), "HOME=/nonexistent"])
        .arg(CARGO_LAB)
        .args(args)
        .current_dir(repo_root())
        .env_remove("SUDO_USER")
        .stdin(Stdio::null());
    cmd
}

/// The list of what is missing comes from scripts/packages.txt, per group: dpkg-query
/// says for Debian packages, the command on PATH for what cargo installs.
#[test]
fn missing_packages_come_from_the_one_list() {
    let fakes = Fakes::new("list");
    // The stand-ins' directory is the whole PATH, so that no mdbook of this machine counts.
    fakes.add(
        "dpkg-query",
        "for p in arping tshark chromium; do [[ $p == \"${!#}\" ]] && exit 1; done\n\
         printf 'install ok installed'",
    );
    let missing = |groups: &[&str]| -> Vec<&str> {
        missing_packages(groups, fakes.dir.as_os_str()).into_iter().map(|p| p.package).collect()
    };
    assert_eq!(missing(&["lab"]), ["arping"]);
    // mdbook comes from cargo: missing while there is no mdbook command.
    assert_eq!(
        missing(&["lab", "lint", "test", "book"]),
        ["arping", "tshark", "cargo:mdbook@^0.5", "chromium"]
    );
    fakes.add("mdbook", "exit 0");
    assert_eq!(missing(&["lab", "lint", "test", "book"]), ["arping", "tshark", "chromium"]);
    let arping = &missing_packages(&["lab"], fakes.dir.as_os_str())[0];
    assert_eq!(
        (arping.command, arping.why.as_str()),
        ("arping", "the kernel's ARP requests to the responder")
    );
}

/// As root: one line says what and why, then apt-get update and one apt-get install of
/// exactly the missing packages. As a user with sudo: the same through sudo.
#[test]
fn missing_packages_are_installed_with_apt_get_as_root_or_through_sudo() {
    require_lab!("missing_packages_are_installed_with_apt_get_as_root_or_through_sudo");
    let fakes = Fakes::new("install");
    let out = output(
        Command::new(CARGO_LAB)
            .args(["install", "lab"])
            .env("PATH", fakes.path())
            .env("FAKE_MISSING", "arping iputils-ping tshark")
            .stdin(Stdio::null()),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Installing what is missing for cargo lab install: iputils-ping (the kernel's echo \
         requests to the responder); arping (the kernel's ARP requests to the responder).\n"
    );
    assert_eq!(
        fakes.logged(),
        "apt-get update -qq\napt-get install -y -q --no-install-recommends -o \
         DPkg::Lock::Timeout=300 iputils-ping arping\n"
    );

    // A user whose sudo needs no password: a stand-in sudo that logs, then runs the command.
    std::fs::remove_file(fakes.log()).expect("emptying the log");
    fakes.add(
        "sudo",
        &format!(
            "[[ $* == '-n true' ]] && exit 0\necho \"sudo $*\" >>{}\nexec \"$@\"",
            fakes.log().display()
        ),
    );
    let out = output(as_user(&fakes.path(), &["install", "lab"]).env("FAKE_MISSING", "arping"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        fakes.logged(),
        "sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq\napt-get update -qq\n\
         sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
         -o DPkg::Lock::Timeout=300 arping\napt-get install -y -q --no-install-recommends \
         -o DPkg::Lock::Timeout=300 arping\n"
    );
}

/// Without root and without sudo, and with packages missing, both README commands stop
/// before doing anything, with one message that names the exact command to run.
#[test]
fn without_root_or_sudo_the_readme_commands_stop_first_and_say_what_to_run() {
    require_lab!("without_root_or_sudo_the_readme_commands_stop_first_and_say_what_to_run");
    let fakes = Fakes::new("nosudo");
    // A sudo that this user may not use (as where sudo exists but the user is no sudoer).
    fakes.add("sudo", "echo 'sudo: a password is required' >&2; exit 1");
    let why = "not root, and sudo is not allowed here without a password (and there is no \
               terminal to ask for one), so nothing was installed. Install them, then run this \
               again:  sudo apt-get install --no-install-recommends";
    let out = output(as_user(&fakes.path(), &["demo"]).env("FAKE_MISSING", "arping"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("cargo lab: error: Debian packages missing for the demo: arping; {why} arping\n")
    );
    let out = output(as_user(&fakes.path(), &["test"]).env("FAKE_MISSING", "arping shellcheck"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "cargo lab: error: Debian packages missing for the tests: arping shellcheck; {why} \
             arping shellcheck\n"
        )
    );
    assert_eq!(fakes.logged(), "", "nothing may be installed");
}

/// As root, `cargo lab demo --netns NAME` installs what is missing, builds, works in the
/// namespace NAME and removes it; as a user, with no sudo, it works in a user namespace of
/// its own; `cargo lab shell -- CMD` runs CMD in a lab and leaves nothing behind.
#[test]
fn demo_as_root_and_as_a_user_and_a_shell_command_as_a_user() {
    require_lab!("demo_as_root_and_as_a_user_and_a_shell_command_as_a_user");
    let fakes = Fakes::new("demo");
    let netns = format!("tb-cli-demo-{}", std::process::id());
    let out = output(
        Command::new(CARGO_LAB)
            .args(["demo", "--netns", &netns, "--count", "2"])
            .env("PATH", format!("{}:{}", fakes.dir.display(), std::env::var("PATH").unwrap()))
            .env("FAKE_MISSING", "arping")
            // Run through sudo (cargo lab test as a user), the demo would run the
            // responder as that user; this test checks the default, nobody.
            .env_remove("SUDO_USER")
            .stdin(Stdio::null()),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        said.starts_with(
            "Installing what is missing for the demo: arping (the kernel's ARP requests to \
             the responder).\n== 1. Building"
        ),
        "{said}"
    );
    assert!(fakes.logged().contains(
        "apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 arping\n"
    ));
    assert!(said.contains(&format!("Setting up the lab in network namespace {netns}")), "{said}");
    assert!(said.contains("as nobody (not root)"), "{said}");
    assert!(said.contains("2 packets transmitted, 2 packets received"), "arping:\n{said}");
    assert!(said.contains("2 packets transmitted, 2 received, 0% packet loss"), "ping:\n{said}");
    assert!(said.contains(&format!("Done; namespace {netns} removed.")), "{said}");
    assert!(!netns_exists(&netns), "{said}");

    // The release build the demo made, run by a user who has no cargo. (Checked only now:
    // scripts/setup.sh, which the demo ran, makes /dev/net/tun usable by users.)
    if !can_run_rootless("demo_as_root_and_as_a_user_and_a_shell_command_as_a_user") {
        return;
    }
    let bin_dir = release_dir();
    let bin_dir = bin_dir.to_str().expect("a UTF-8 path");
    let out = output(&mut as_user(&fakes.path(), &["demo", "--count", "2", "--bin-dir", bin_dir]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(said.contains("in a user namespace of its own (no root, no sudo)"), "{said}");
    assert!(said.contains("as nobody (you, with no capabilities)"), "{said}");
    assert!(said.contains("2 packets transmitted, 2 received, 0% packet loss"), "ping:\n{said}");
    assert!(said.contains("2 received, 0% packet loss"), "1514-byte frame:\n{said}");
    assert!(said.contains("Done; the lab's namespace is gone."), "{said}");

    // A command in the lab, and a program it left running in the background: gone after.
    let responder = Path::new(bin_dir).join("05_full_responder");
    let script = format!("{} --quiet & sleep 1; ping -c 2 -i 0.2 172.16.1.2", responder.display());
    let out = output(&mut as_user(&fakes.path(), &["shell", "--", "sh", "-c", &script]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(said.contains("2 packets transmitted, 2 received, 0% packet loss"), "{said}");
    let left = run_ok(Command::new("ps").args(["-u", UNPRIVILEGED_USER, "-o", "stat=,args="]));
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(
        !left.lines().any(|l| l.contains(&*responder.to_string_lossy()) && !l.starts_with('Z')),
        "still running after the shell ended:\n{left}"
    );
}

/// target/release, beside the target/debug of this test's cargo-lab.
fn release_dir() -> PathBuf {
    let debug = Path::new(CARGO_LAB).parent().expect("the binary's directory");
    debug.parent().expect("the target directory").join("release")
}

/// Where user namespaces are blocked, `cargo lab` says so, with the fix and the sudo
/// fallback. Blocked here inside a user namespace of the test's own, whose limit of
/// nested user namespaces it sets to 0 (the machine's setting is not touched): as the
/// unprivileged user in there, making one fails as under a seccomp filter or AppArmor.
#[test]
fn blocked_user_namespaces_are_reported_with_the_fix_and_the_sudo_fallback() {
    require_lab!("blocked_user_namespaces_are_reported_with_the_fix_and_the_sudo_fallback");
    // A user namespace holding uid/gid 0 and the unprivileged user's, mapped to themselves.
    let mut holder = Command::new("unshare")
        .args(["--user", "--", "sleep", "60"])
        .spawn()
        .expect("running unshare");
    let pid = holder.id();
    let ready = tapbook_lab::wait_until(std::time::Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
    });
    assert!(ready, "unshare --user did not start");
    let uid = run_ok(Command::new("id").args(["-u", UNPRIVILEGED_USER]));
    let uid = String::from_utf8_lossy(&uid.stdout).trim().to_owned();
    let gid = run_ok(Command::new("id").args(["-g", UNPRIVILEGED_USER]));
    let gid = String::from_utf8_lossy(&gid.stdout).trim().to_owned();
    std::fs::write(format!("/proc/{pid}/uid_map"), format!("0 0 1\n{uid} {uid} 1\n"))
        .expect("writing uid_map");
    std::fs::write(format!("/proc/{pid}/gid_map"), format!("0 0 1\n{gid} {gid} 1\n"))
        .expect("writing gid_map");
    let inside = format!(
        "echo 0 >/proc/sys/user/max_user_namespaces && exec setpriv --reuid {uid} --regid {gid} \
         --clear-groups -- env PATH=/usr/sbin:/usr/bin:/sbin:/bin {CARGO_LAB} shell -- true"
    );
    let out = output(
        Command::new("nsenter")
            .args(["--target", &pid.to_string(), "--user", "--", "sh", "-c", &inside])
            .current_dir(repo_root()),
    );
    let _ = holder.kill();
    let _ = holder.wait();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(said.starts_with("cargo lab: error: this user cannot make a user namespace"), "{said}");
    assert!(said.contains("Fix, as root: sysctl -w user.max_user_namespaces="), "{said}");
    assert!(said.contains("Or use root: sudo cargo lab demo"), "{said}");
}

/// `cargo lab record --list` names every recording of the list; an unknown name is an
/// error that names the known ones, before anything is built.
#[test]
fn record_lists_its_recordings_and_refuses_unknown_ones() {
    let out = output(Command::new(CARGO_LAB).args(["record", "--list"]));
    assert!(out.status.success(), "{}", text(&out));
    let listed = String::from_utf8_lossy(&out.stdout);
    for recording in tapbook_lab::record::RECORDINGS {
        assert!(listed.contains(recording.name), "{} not listed: {}", recording.name, text(&out));
    }
    let out = output(Command::new(CARGO_LAB).args(["record", "nosuch"]));
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no recording 'nosuch'") && err.contains("chapters"), "{}", text(&out));
    assert!(!err.contains("Building"), "built before refusing: {}", text(&out));
}

/// `cargo lab bench` checks its options before building or measuring anything.
#[test]
fn bench_refuses_bad_options_first() {
    for (args, says) in [
        (&["bench", "--sizes", "2000"][..], "--sizes wants payload sizes from 0 to 1472"),
        (&["bench", "--count", "0"][..], "--count wants a positive whole number"),
        (&["bench", "--cpus", "x"][..], "--cpus wants two CPU numbers"),
        (&["bench", "offload", "--seconds", "soon"][..], "--seconds wants a number"),
        (&["bench", "--frobnicate"][..], "unknown option '--frobnicate'"),
    ] {
        let out = output(Command::new(CARGO_LAB).args(args));
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{args:?}: {}", text(&out));
    }
    let out = output(Command::new(CARGO_LAB).args(["bench", "--help"]));
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--short"));
}

/// Not root, where /dev/net/tun is closed to users (mode 0600, as on some images): without
/// sudo, `cargo lab shell` and `cargo lab demo` stop before doing anything and name the
/// fix; with sudo, they say why and run `sudo chmod 0666 /dev/net/tun`. The closed node is
/// a stand-in, bound over /dev/net/tun in a private mount namespace: the machine's own
/// node is not touched.
#[test]
fn a_clone_device_closed_to_users_is_opened_through_sudo_or_named_with_its_fix() {
    require_lab!("a_clone_device_closed_to_users_is_opened_through_sudo_or_named_with_its_fix");
    let fakes = Fakes::new("closedtun");
    let node_dir = std::env::temp_dir().join(format!("tb-cli-node-{}", std::process::id()));
    std::fs::create_dir_all(&node_dir).expect("creating the node's directory");
    let node = node_dir.display();
    let closed = |args: &[&str], sudo: &str| -> Output {
        fakes.add("sudo", sudo);
        let user = as_user(&fakes.path(), args);
        let argv: Vec<String> = std::iter::once(user.get_program())
            .chain(user.get_args())
            .map(|a| format!("'{}'", a.to_string_lossy()))
            .collect();
        let script = format!(
            "mount -t tmpfs tb-closed {node} && mknod -m 0600 {node}/tun c 10 200 && \
             mount --bind {node}/tun /dev/net/tun && exec {}",
            argv.join(" ")
        );
        output(
            Command::new("unshare")
                .args(["-m", "--propagation", "private", "bash", "-c", &script])
                .current_dir(repo_root())
                .stdin(Stdio::null()),
        )
    };
    let fix = "cannot open /dev/net/tun (Permission denied (os error 13)): users may not open \
               it here.\nFix, as root: chmod 0666 /dev/net/tun (the usual default; sudo \
               scripts/setup.sh does it)\n";
    // No sudo for this user: the fix, and nothing done.
    for args in [&["shell", "--", "true"][..], &["demo"][..]] {
        let out = closed(args, "echo 'sudo: a password is required' >&2; exit 1");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stderr), format!("cargo lab: error: {fix}"));
    }
    assert_eq!(fakes.logged(), "", "nothing may be run through sudo");
    // With sudo: it says why, and asks sudo. (The stand-in only logs, so the node stays
    // closed and the fix follows.)
    let out = closed(
        &["shell", "--", "true"],
        &format!("[[ $* == '-n true' ]] && exit 0\necho \"sudo $*\" >>{}", fakes.log().display()),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("Opening /dev/net/tun to users for the lab shell"), "{}", text(&out));
    assert!(said.contains("Running: sudo chmod 0666 /dev/net/tun"), "{}", text(&out));
    assert_eq!(fakes.logged(), "sudo chmod 0666 /dev/net/tun\n");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let _ = std::fs::remove_dir(&node_dir);
}
