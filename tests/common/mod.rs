//! The end-to-end lab: each test gets a network namespace of its own holding a persistent
//! `tap4` (made by `scripts/setup.sh --netns`, as a student would), runs the chapter
//! binaries inside it as separate processes, and talks to them with the kernel's own
//! `ping` and `arping`. No traffic leaves the namespace; the namespace and every process
//! the test started are removed when the `Lab` is dropped, even if the test fails.
//!
//! Without root (or a tool) the tests print that they were skipped and return, and
//! `scripts/test.sh` counts them as skipped, not passed; under CI (`CI` set) a skip is a
//! failure, so CI runs them all.

#![allow(dead_code)] // each test file uses part of the harness
#![allow(clippy::print_stderr)] // it says which tests were skipped, and why

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const KERNEL_IP: &str = "172.16.1.1";
pub const RESPONDER_IP: &str = "172.16.1.2";
pub const RESPONDER_MAC: &str = "02:00:00:00:00:02";
/// An unprivileged user that exists on every Debian system.
pub const UNPRIVILEGED_USER: &str = "nobody";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The one list of the packages tapbook uses (`scripts/test.sh` and `scripts/demo.sh`
/// install from it): lines of `package command for why...`, `#` starts a comment.
const PACKAGE_LIST: &str = include_str!("../../scripts/packages.txt");

/// The list's lines as (package, command, for).
fn packages() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    PACKAGE_LIST.lines().filter(|line| !line.starts_with('#')).filter_map(|line| {
        let mut words = line.split_whitespace();
        Some((words.next()?, words.next()?, words.next()?))
    })
}

/// Whether the end-to-end tests can run here, with the lab's tools and `extra_tools`;
/// prints why not otherwise, and writes "test<TAB>reason" into the file that
/// `TAPBOOK_SKIP_LOG` names (`scripts/test.sh` sets it), so that the test counts as
/// skipped, not passed. Under CI, not being able to run fails the test instead.
pub fn can_run(test: &str, extra_tools: &[&str]) -> bool {
    let lab_tools = packages().filter(|(_, _, group)| *group == "lab").map(|(_, tool, _)| tool);
    let missing: Vec<&str> =
        lab_tools.chain(extra_tools.iter().copied()).filter(|tool| !tool_exists(tool)).collect();
    let why = if !nix::unistd::geteuid().is_root() {
        Some("needs root (network namespaces and a TAP device)".to_owned())
    } else if !missing.is_empty() {
        Some(format!("missing: {}", missing.join(", ")))
    } else if !Path::new("/dev/net/tun").exists() {
        Some("/dev/net/tun is missing".to_owned())
    } else {
        None
    };
    let Some(why) = why else { return true };
    if std::env::var_os("CI").is_some() {
        panic!("{test}: cannot run under CI: {why}");
    }
    let packages: Vec<&str> = missing
        .iter()
        .map(|tool| packages().find(|(_, t, _)| t == tool).map_or(*tool, |(package, _, _)| package))
        .collect();
    let fix = if packages.is_empty() {
        "run the tests as root (scripts/test.sh does, through sudo)".to_owned()
    } else {
        format!("scripts/test.sh installs {}", packages.join(" "))
    };
    eprintln!("SKIPPED {test}: {why}; {fix}");
    if let Some(log) = std::env::var_os("TAPBOOK_SKIP_LOG") {
        use std::io::Write;
        // One write of one short line to a file opened for appending: the lines of tests
        // that run in parallel do not interleave.
        let line = format!("{test}\t{why}\n");
        let written = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log)
            .and_then(|mut file| file.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!("{test}: cannot record the skip in {}: {e}", Path::new(&log).display());
        }
    }
    false
}

/// Skips the test (returning early) when the lab, or one of the extra tools named after
/// the test's name, is not available here: `require_lab!("pcap_test", "tshark")`.
#[macro_export]
macro_rules! require_lab {
    ($name:expr $(, $tool:expr)* $(,)?) => {
        if !common::can_run($name, &[$($tool),*]) {
            return;
        }
    };
}

pub fn tool_exists(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .any(|dir| dir.join(tool).is_file())
    })
}

/// A name no other test (or test run) uses at the same time: tag, our PID, a counter.
fn unique_name(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("tb-{tag}-{}-{n}", std::process::id())
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A namespace with a persistent tap4 in it.
pub struct Lab {
    pub netns: String,
    pub iface: String,
    children: Vec<u32>,
}

impl Lab {
    /// A lab whose tap4 belongs to root.
    pub fn new(tag: &str) -> Lab {
        Lab::with_owner(tag, "root")
    }

    /// A lab whose tap4 belongs to `user` (who can then attach without privileges).
    pub fn with_owner(tag: &str, user: &str) -> Lab {
        let lab = Lab { netns: unique_name(tag), iface: "tap4".to_owned(), children: Vec::new() };
        let out = Command::new(repo_root().join("scripts/setup.sh"))
            .args(["--netns", &lab.netns, "--user", user])
            .env_remove("TAPBOOK_NETNS")
            .output()
            .expect("running scripts/setup.sh");
        assert!(
            out.status.success(),
            "scripts/setup.sh failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    /// A lab namespace without any TAP in it (for the "no tap prepared" tests).
    pub fn empty(tag: &str) -> Lab {
        let lab = Lab { netns: unique_name(tag), iface: "tap4".to_owned(), children: Vec::new() };
        run_ok(Command::new("ip").args(["netns", "add", &lab.netns]));
        lab.ip(&["link", "set", "lo", "up"]);
        lab
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns, program]);
        cmd
    }

    /// Runs `ip ARGS` in the namespace and insists that it succeeds.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = run_ok(self.command("ip").args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a chapter binary (by Cargo's path to it) inside the namespace, as `user` if
    /// given, with stdout and stderr going to files, and waits until it has attached to
    /// the TAP (the interface's carrier comes on).
    pub fn start(&mut self, bin: &str, args: &[&str], user: Option<&str>) -> Responder {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        self.start_os(bin, &args, user)
    }

    /// [`Lab::start`] with arguments that need not be UTF-8 (file names are bytes).
    pub fn start_os(
        &mut self,
        bin: &str,
        args: &[&std::ffi::OsStr],
        user: Option<&str>,
    ) -> Responder {
        let responder = self.spawn_os(bin, args, user);
        let attached = wait_until(Duration::from_secs(10), || {
            self.ip(&["-o", "link", "show", &self.iface]).contains("LOWER_UP")
        });
        if !attached {
            panic!("{bin} did not attach to {}:\n{}", self.iface, responder.output());
        }
        responder
    }

    /// Starts a binary without waiting for anything.
    pub fn spawn(&mut self, bin: &str, args: &[&str], user: Option<&str>) -> Responder {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        self.spawn_os(bin, &args, user)
    }

    /// [`Lab::spawn`] with arguments that need not be UTF-8.
    pub fn spawn_os(
        &mut self,
        bin: &str,
        args: &[&std::ffi::OsStr],
        user: Option<&str>,
    ) -> Responder {
        let dir = std::env::temp_dir().join(format!(
            "{}-{}",
            self.netns,
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("creating a log directory");
        let stdout = dir.join("stdout");
        let stderr = dir.join("stderr");
        let mut cmd = self.command("setpriv");
        match user {
            Some(user) => {
                cmd.args([
                    "--reuid",
                    user,
                    "--regid",
                    &primary_group(user),
                    "--clear-groups",
                    "--",
                ]);
            }
            None => {
                cmd.arg("--");
            }
        }
        let child = cmd
            .arg(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("log file"))
            .stderr(std::fs::File::create(&stderr).expect("log file"))
            .spawn()
            .expect("starting the binary");
        self.children.push(child.id());
        Responder { child: Some(child), stdout, stderr }
    }

    /// `ping` from the kernel's side of the namespace.
    pub fn ping(&self, args: &[&str]) -> Output {
        self.command("ping").args(args).output().expect("running ping")
    }

    pub fn arping(&self, args: &[&str]) -> Output {
        self.command("arping").args(args).output().expect("running arping")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for pid in &self.children {
            // Only our own children: `ip netns exec` is the process we started, and it
            // exec()s into setpriv and then the binary, so the PID stays the same.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).output();
    }
}

/// A chapter binary running in a lab.
pub struct Responder {
    child: Option<Child>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Responder {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends a signal (e.g. SIGTERM) to the binary.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal);
    }

    /// Waits for the binary to exit by itself, up to `timeout`; `None` if it did not.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the binary with SIGTERM and returns its exit status and output.
    pub fn stop(&mut self) -> (Option<std::process::ExitStatus>, String) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = self.wait_exit(Duration::from_secs(5));
        (status, self.output())
    }

    /// What the binary printed so far (stdout, then stderr).
    pub fn output(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!("{}{}", read(&self.stdout), read(&self.stderr))
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `check` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn primary_group(user: &str) -> String {
    let out = run_ok(Command::new("id").args(["-gn", user]));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// "N packets transmitted, M received" from ping's summary: (transmitted, received).
pub fn ping_counts(output: &Output) -> (u32, u32) {
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|l| l.contains("packets transmitted")).unwrap_or("");
    let numbers: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    (numbers.first().copied().unwrap_or(0), numbers.get(1).copied().unwrap_or(0))
}
