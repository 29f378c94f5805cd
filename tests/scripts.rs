//! End to end with the lab scripts themselves: `scripts/setup.sh`, `ping.sh`, `doctor.sh`
//! run as separate processes, as root or as an unprivileged user,
//! in network namespaces of their own.
//!
//! Every run that could touch a network runs inside a namespace the test made (`ip netns
//! exec NS scripts/...`), so that even a script that wrongly took an empty `--netns` for
//! "the current namespace" only touches that throw-away namespace. Stand-ins on PATH
//! (`Fakes`) play the commands a test must not run for real.

use tapbook_lab as common;
use tapbook_lab::require_lab;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::SigHandler;

use common::{Lab, UNPRIVILEGED_USER, primary_group, repo_root, wait_until};

const BIN_05: &str = env!("CARGO_BIN_EXE_05_full_responder");
const BIN_03: &str = env!("CARGO_BIN_EXE_03_arp_reply");

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name no other test uses at the same time.
fn fresh_name(tag: &str) -> String {
    format!("tb-sc-{tag}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn netns_exists(name: &str) -> bool {
    Command::new("ip").args(["netns", "list"]).output().is_ok_and(|out| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|line| line.split_whitespace().next() == Some(name))
    })
}

/// Deletes a namespace that a script should not have made (or should have removed).
struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if netns_exists(&self.0) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        }
    }
}

/// The interfaces in a namespace, by name.
fn links(netns: &str) -> Vec<String> {
    let out = common::run_ok(Command::new("ip").args(["-n", netns, "-o", "link", "show"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect()
}

/// A script of the repository, with no namespace chosen through the environment.
fn script(name: &str) -> Command {
    let mut cmd = Command::new(repo_root().join("scripts").join(name));
    cmd.current_dir(repo_root()).env_remove("TAPBOOK_NETNS").stdin(Stdio::null());
    cmd
}

/// A script run inside namespace `netns` (`ip netns exec NS scripts/NAME ARGS`).
fn script_in(netns: &str, name: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns])
        .arg(repo_root().join("scripts").join(name))
        .args(args)
        .current_dir(repo_root())
        .env_remove("TAPBOOK_NETNS")
        .stdin(Stdio::null());
    cmd
}

fn output(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// A command line that a script printed for the user to type, run as they would, from
/// the repository's root. The tests run as root, where the leading `sudo` changes
/// nothing (and machines without sudo exist). A build directory other than
/// `target/debug` (CARGO_TARGET_DIR) is put in its place.
fn shell(line: &str) -> Command {
    let line = line.trim();
    let line = line.strip_prefix("sudo ").unwrap_or(line);
    let bin_dir = Path::new(BIN_05).parent().map(|dir| dir.display().to_string());
    let line = line.replace(" target/debug/", &format!(" {}/", bin_dir.unwrap_or_default()));
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &line]).current_dir(repo_root()).env_remove("TAPBOOK_NETNS");
    cmd
}

/// What follows `label` on the first line (trimmed) that starts with it.
fn after<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no line starting with {label:?} in:\n{text}"))
        .trim()
}

/// A program started from a printed command line, stopped when dropped.
struct Started(Child);

impl Started {
    fn new(line: &str, iface: &str, netns: &str) -> Started {
        let child = shell(line)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the printed command");
        let started = Started(child);
        let attached = wait_until(Duration::from_secs(10), || {
            Command::new("ip")
                .args(["-n", netns, "-o", "link", "show", iface])
                .output()
                .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("LOWER_UP"))
        });
        assert!(attached, "`{line}` did not attach to {iface}");
        started
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        // The process we started: bash exec()s ip netns exec, which exec()s runuser; runuser
        // passes SIGTERM on to the program.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

/// A directory of stand-ins for system commands, put first on PATH; removed when dropped.
struct Fakes {
    dir: PathBuf,
}

impl Fakes {
    fn new() -> Fakes {
        let dir = std::env::temp_dir().join(fresh_name("fakes"));
        std::fs::create_dir_all(&dir).expect("creating the stand-ins' directory");
        // The unprivileged user runs them and writes the log.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .expect("chmod of the stand-ins' directory");
        Fakes { dir }
    }

    fn add(&self, name: &str, body: &str) {
        let path = self.dir.join(name);
        std::fs::write(&path, format!("#!/bin/bash\n{body}\n")).expect("writing a stand-in");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod of a stand-in");
    }

    fn path(&self) -> String {
        format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            self.dir.display()
        )
    }
}

impl Drop for Fakes {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The real `ip`, for stand-ins that wrap it.
fn real_ip() -> PathBuf {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .expect("ip (iproute2) is installed")
}

/// A command run as the unprivileged user, with `path` as PATH.
fn as_user(path: &str, program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid",
        UNPRIVILEGED_USER,
        "--regid",
        &primary_group(UNPRIVILEGED_USER),
        "--clear-groups",
        "--",
        "env",
        &format!("PATH={path}"),
        "HOME=/nonexistent",
        program,
    ])
    .current_dir(repo_root())
    .env_remove("TAPBOOK_NETNS")
    .env_remove("SUDO_USER")
    .stdin(Stdio::null());
    cmd
}

// ---- issue 10: an empty value is an error, never "the current namespace" ---------------

/// Every script and each of its options that take a value, given an empty value (as
/// `--opt ''` and as `--opt=`). Each runs inside a throw-away namespace, and with
/// `--netns NEW` where the script takes it: whatever the script did wrongly would show
/// there, as an interface or as the namespace NEW.
#[test]
fn an_empty_option_value_is_an_error_in_every_script() {
    require_lab!("an_empty_option_value_is_an_error_in_every_script");
    let cases: &[(&str, &[&str])] = &[
        ("setup.sh", &["--netns", "--iface", "--user", "--addr"]),
        ("teardown.sh", &["--netns", "--iface"]),
        ("ping.sh", &["--netns", "--iface", "--count", "--size", "--to"]),
        (
            "capture.sh",
            &["--netns", "--iface", "--count", "--duration", "--write", "--filter", "--tool"],
        ),
        ("doctor.sh", &["--netns", "--iface", "--user", "--addr"]),
    ];
    let sandbox = Lab::empty("sc-empty");
    for (name, options) in cases {
        for option in *options {
            let new = fresh_name("new");
            let _guard = NetnsGuard(new.clone());
            let assign = format!("{option}=");
            for mut args in [vec![*option, ""], vec![assign.as_str()]] {
                if *option != "--netns" {
                    args.extend(["--netns", &new]);
                }
                let out = output(&mut script_in(&sandbox.netns, name, &args));
                let what = format!("{name} {args:?}:\n{}", text(&out));
                assert_eq!(out.status.code(), Some(1), "{what}");
                assert!(
                    stderr(&out)
                        .contains(&format!("option {option} needs a value, not an empty one")),
                    "{what}"
                );
                assert!(stdout(&out).is_empty(), "it did something first: {what}");
                assert_eq!(links(&sandbox.netns), ["lo"], "{what}");
                assert!(!netns_exists(&new), "it made namespace {new}: {what}");
            }
        }
    }
}

/// An empty TAPBOOK_NETNS is an error too, and an explicit empty --netns does not mean
/// "not the one in TAPBOOK_NETNS, the current one".
#[test]
fn an_empty_netns_from_the_environment_or_over_it_is_an_error() {
    require_lab!("an_empty_netns_from_the_environment_or_over_it_is_an_error");
    let sandbox = Lab::empty("sc-envns");
    let named = fresh_name("env");
    let _guard = NetnsGuard(named.clone());
    for (env, args) in [("", vec![]), (named.as_str(), vec!["--netns", ""])] {
        for name in ["setup.sh", "teardown.sh", "doctor.sh", "ping.sh", "capture.sh"] {
            let out = output(script_in(&sandbox.netns, name, &args).env("TAPBOOK_NETNS", env));
            let what = format!("TAPBOOK_NETNS='{env}' {name} {args:?}:\n{}", text(&out));
            assert_eq!(out.status.code(), Some(1), "{what}");
            assert!(stdout(&out).is_empty(), "{what}");
            assert_eq!(links(&sandbox.netns), ["lo"], "{what}");
            assert!(!netns_exists(&named), "{what}");
        }
    }
}

// ---- issue 10: setup.sh checks first, and undoes what it made when it fails -----------

#[test]
fn setup_rejects_bad_addresses_before_changing_anything() {
    require_lab!("setup_rejects_bad_addresses_before_changing_anything");
    for addr in ["999.1.1.1/99", "172.16.1.1/33", "172.16.1.1/0", "224.0.0.1/24", "172.16.1.2/24"] {
        let netns = fresh_name("addr");
        let _guard = NetnsGuard(netns.clone());
        let out =
            output(script("setup.sh").args(["--netns", &netns, "--user", "root", "--addr", addr]));
        let what = format!("--addr {addr}:\n{}", text(&out));
        assert_eq!(out.status.code(), Some(1), "{what}");
        assert!(stderr(&out).contains("--addr"), "{what}");
        assert!(stdout(&out).is_empty(), "it started anyway: {what}");
        assert!(!netns_exists(&netns), "it left namespace {netns} behind: {what}");
    }
    // What the book's VM chapter uses for a second responder is still fine.
    let lab = Lab::empty("sc-addr32");
    let out = output(script("setup.sh").args([
        "--netns",
        &lab.netns,
        "--iface",
        "tap5",
        "--addr",
        "10.9.9.9/32",
    ]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(lab.ip(&["-o", "-4", "addr", "show", "dev", "tap5"]).contains("10.9.9.9/32"));
}

/// A stand-in for `ip` that runs the real one, except for `ip addr add`, which does
/// `action` instead: the step after the namespace and the interface were made.
fn ip_failing_at_addr_add(fakes: &Fakes, action: &str) {
    fakes.add(
        "ip",
        &format!(
            "if [[ $1 == addr && $2 == add ]]; then {action}; fi\nexec {} \"$@\"",
            real_ip().display()
        ),
    );
}

#[test]
fn setup_undoes_what_this_run_made_when_a_step_fails() {
    require_lab!("setup_undoes_what_this_run_made_when_a_step_fails");
    let fakes = Fakes::new();
    ip_failing_at_addr_add(&fakes, "echo 'RTNETLINK answers: stand-in refuses' >&2; exit 2");
    let setup = |netns: &str| {
        output(
            script("setup.sh").args(["--netns", netns, "--user", "root"]).env("PATH", fakes.path()),
        )
    };

    // Nothing was there: the namespace this run made goes again.
    let netns = fresh_name("fail");
    let _guard = NetnsGuard(netns.clone());
    let out = setup(&netns);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("created network namespace"), "{}", text(&out));
    assert!(!netns_exists(&netns), "namespace {netns} left behind:\n{}", text(&out));

    // The namespace was there: it stays, the tap4 this run made goes.
    let lab = Lab::empty("sc-fail-ns");
    let out = setup(&lab.netns);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("created persistent TAP tap4"), "{}", text(&out));
    assert!(netns_exists(&lab.netns), "the namespace that was there is gone:\n{}", text(&out));
    assert_eq!(links(&lab.netns), ["lo"], "{}", text(&out));

    // tap4 was there (without its address): it stays.
    let lab = Lab::empty("sc-fail-tap");
    lab.ip(&["tuntap", "add", "dev", "tap4", "mode", "tap", "user", "root"]);
    let out = setup(&lab.netns);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(links(&lab.netns), ["lo", "tap4"], "{}", text(&out));
}

#[test]
fn setup_interrupted_with_ctrl_c_removes_what_this_run_made() {
    require_lab!("setup_interrupted_with_ctrl_c_removes_what_this_run_made");
    let fakes = Fakes::new();
    let reached = fakes.dir.join("reached");
    // At `ip addr add` the namespace and tap4 exist; wait there for the Ctrl-C.
    ip_failing_at_addr_add(&fakes, &format!("touch {}; sleep 20", reached.display()));
    let netns = fresh_name("intr");
    let _guard = NetnsGuard(netns.clone());
    let mut child = script("setup.sh");
    child
        .args(["--netns", &netns, "--user", "root"])
        .env("PATH", fakes.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, like a job in a terminal, which Ctrl-C signals as a whole.
        .process_group(0);
    // And SIGINT at its default, as in a terminal: a test run started in the background
    // of a non-interactive shell inherits it ignored, and bash cannot trap a signal that
    // was ignored when it started.
    // SAFETY: between fork and exec, only signal(2), which is async-signal-safe.
    let child = unsafe {
        child.pre_exec(|| {
            nix::sys::signal::signal(nix::sys::signal::Signal::SIGINT, SigHandler::SigDfl)
                .map(drop)
                .map_err(std::io::Error::from)
        })
    }
    .spawn()
    .expect("starting setup.sh");
    assert!(
        wait_until(Duration::from_secs(10), || reached.exists()),
        "setup.sh never got to ip addr add"
    );
    assert!(netns_exists(&netns), "the namespace should exist at this point");
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGINT).expect("sending SIGINT");
    let out = child.wait_with_output().expect("waiting for setup.sh");
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(!netns_exists(&netns), "namespace {netns} left behind:\n{}", text(&out));
}

// ---- issue 9: the scripts' next steps and fixes are commands that work as printed ------

/// setup.sh's next steps, followed as printed for a lab on tap7 in a namespace: the
/// program they start answers the ping they then ask for, and the ARP-only program
/// answers the arping they pair it with.
#[test]
fn setup_next_steps_work_as_printed() {
    require_lab!("setup_next_steps_work_as_printed");
    let lab = Lab::empty("sc-next");
    let out = output(script("setup.sh").args([
        "--netns",
        &lab.netns,
        "--iface",
        "tap7",
        "--user",
        UNPRIVILEGED_USER,
    ]));
    assert!(out.status.success(), "{}", text(&out));
    let steps = stdout(&out);

    let responder = Started::new(after(&steps, "run it in the namespace:"), "tap7", &lab.netns);
    let ping = output(&mut shell(after(&steps, "2. in another terminal:")));
    assert!(ping.status.success(), "the printed ping got no answer:\n{steps}\n{}", text(&ping));
    drop(responder);

    let arp_only = after(&steps, "or chapter 3, ARP only:");
    let (start, arping) = arp_only.split_once(", then ").expect("a program, then an arping");
    assert!(start.contains("03_arp_reply"), "{steps}");
    let _responder = Started::new(start, "tap7", &lab.netns);
    let arping = output(&mut shell(arping));
    assert!(
        arping.status.success(),
        "the printed arping got no answer:\n{steps}\n{}",
        text(&arping)
    );
}

/// With 03 (ARP only) attached, ping.sh does not ask whether a responder runs: it names
/// the arping that 03 answers and the command that starts one that answers ping.
#[test]
fn ping_sh_after_no_reply_names_commands_that_work() {
    require_lab!("ping_sh_after_no_reply_names_commands_that_work");
    let lab = Lab::empty("sc-ping");
    let out = output(script("setup.sh").args([
        "--netns",
        &lab.netns,
        "--iface",
        "tap7",
        "--user",
        UNPRIVILEGED_USER,
    ]));
    assert!(out.status.success(), "{}", text(&out));
    let group = primary_group(UNPRIVILEGED_USER);
    let start_03 = format!(
        "ip netns exec {} setpriv --reuid {UNPRIVILEGED_USER} --regid {group} --clear-groups -- {BIN_03} --iface tap7",
        lab.netns
    );
    let arp_only = Started::new(&start_03, "tap7", &lab.netns);
    let ping_sh = ["--netns", &lab.netns, "--iface", "tap7", "--count", "1", "--", "-W", "1"];
    let out = output(script("ping.sh").args(ping_sh));
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!said.contains("Is the responder running"), "{said}");

    let arping = output(&mut shell(after(&said, "ask it with arping:")));
    assert!(arping.status.success(), "the suggested arping failed:\n{said}\n{}", text(&arping));
    drop(arp_only);

    let _responder = Started::new(
        after(&said, "For ping, stop it and start one that answers ping:"),
        "tap7",
        &lab.netns,
    );
    let out = output(script("ping.sh").args(ping_sh));
    assert!(out.status.success(), "{}", text(&out));
}

/// doctor.sh's fix lines for a lab on tap7 in a namespace, run as printed, fix it.
#[test]
fn doctor_fixes_work_as_printed() {
    require_lab!("doctor_fixes_work_as_printed");
    let lab = Lab::empty("sc-doctor");
    // doctor.sh also looks for cargo, which sudo's PATH may lack: the one that built us.
    let cargo_dir = Path::new(env!("CARGO")).parent().expect("cargo's directory").to_owned();
    let path = format!("{}:{}", cargo_dir.display(), std::env::var("PATH").unwrap_or_default());
    let doctor = || {
        output(
            script("doctor.sh")
                .args(["--netns", &lab.netns, "--iface", "tap7", "--user", UNPRIVILEGED_USER])
                .env("PATH", &path),
        )
    };
    let fix_for = |report: &str, problem: &str| -> String {
        let mut lines = report
            .lines()
            .skip_while(|line| !(line.starts_with("PROBLEM") && line.contains(problem)));
        assert!(lines.next().is_some(), "no PROBLEM about {problem:?}:\n{report}");
        let fix = lines.next().and_then(|line| line.trim().strip_prefix("fix: ")).unwrap_or("");
        fix.split("   (or:").next().unwrap_or("").to_owned()
    };

    let out = doctor();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let fix = fix_for(&stdout(&out), "tap7 does not exist");
    let done = output(&mut shell(&fix));
    assert!(done.status.success(), "{fix}:\n{}", text(&done));
    let out = doctor();
    assert!(out.status.success(), "still not fixed after `{fix}`:\n{}", text(&out));

    // Both addresses gone, IPv4's and chapter 8's IPv6 one: two problems, two fixes.
    lab.ip(&["addr", "flush", "dev", "tap7"]);
    for _ in 0..2 {
        let out = doctor();
        let fix = fix_for(&stdout(&out), "lacks address");
        let done = output(&mut shell(&fix));
        assert!(done.status.success(), "{fix}:\n{}", text(&done));
    }
    let out = doctor();
    assert!(out.status.success(), "still not fixed after `{fix}`:\n{}", text(&out));

    // capture.sh's and ping.sh's hints name the interface too.
    for name in ["capture.sh", "ping.sh"] {
        let out = output(script(name).args(["--netns", &lab.netns, "--iface", "tap9"]));
        let hint = format!("sudo scripts/setup.sh --iface tap9 --netns {}", lab.netns);
        assert!(stderr(&out).contains(&hint), "{name}:\n{}", text(&out));
    }
}

// `cargo lab demo`, `cargo lab test` (the README's commands) and the installing they do
// first: lab/tests/cli.rs.

// ---- issue 9: a test that could not run is counted as skipped, not passed ---------------

/// The probe: a real check of setup.sh as root; what the skip test below runs without root.
#[test]
fn probe_setup_makes_a_tap_owned_by_the_user() {
    require_lab!("probe_setup_makes_a_tap_owned_by_the_user");
    let lab = Lab::with_owner("sc-probe", UNPRIVILEGED_USER);
    let details = lab.ip(&["-d", "link", "show", "tap4"]);
    assert!(details.contains(&format!("user {UNPRIVILEGED_USER}")), "{details}");
}

/// This test binary, run without root for the probe: outside CI the probe writes itself
/// into TAPBOOK_SKIP_LOG (which cargo lab test counts as skipped); under CI it fails.
#[test]
fn a_test_that_cannot_run_is_logged_as_skipped_and_fails_under_ci() {
    require_lab!("a_test_that_cannot_run_is_logged_as_skipped_and_fails_under_ci");
    let me = std::env::current_exe().expect("the test binary's path");
    let fakes = Fakes::new();
    let skip_log = fakes.dir.join("skipped");
    std::fs::write(&skip_log, "").expect("creating the skip log");
    std::fs::set_permissions(&skip_log, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let probe = |ci: bool| {
        let mut cmd = as_user("/usr/sbin:/usr/bin:/sbin:/bin", me.to_str().expect("a UTF-8 path"));
        cmd.args(["--exact", "probe_setup_makes_a_tap_owned_by_the_user", "--test-threads", "1"])
            .env("TAPBOOK_SKIP_LOG", &skip_log)
            .env_remove("CI");
        if ci {
            cmd.env("CI", "true");
        }
        output(&mut cmd)
    };
    let out = probe(false);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&skip_log).expect("reading the skip log"),
        "probe_setup_makes_a_tap_owned_by_the_user\tneeds root (network namespaces and a TAP device)\n"
    );
    let out = probe(true);
    assert!(!out.status.success(), "under CI a skip must fail:\n{}", text(&out));
    assert!(stdout(&out).contains("cannot run under CI"), "{}", text(&out));
}
