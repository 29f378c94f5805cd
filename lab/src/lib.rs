//! The lab, written once: a network namespace holding a persistent `tap4` (made by
//! `scripts/setup.sh`, as a student would), the chapter programs started inside it as
//! separate processes, the kernel's own `ping` and `arping` talking to them, and one
//! cleanup (`Drop`). `cargo lab` (src/main.rs) and the end-to-end tests both use it.
//!
//! Two kinds of namespace, one protocol:
//! - as root, a named namespace (`ip netns add`), the programs run as an unprivileged user;
//! - as anyone else, a user namespace with a network and a mount namespace of its own
//!   (`unshare --user --map-root-user --net --mount`): no root and no sudo. Inside it the
//!   caller is "root" of that namespace only; `tap4` belongs to the caller, and the
//!   programs run with no capabilities at all, so they attach as the owner, as they would
//!   after `sudo scripts/setup.sh`.
//!
//! No traffic leaves the namespace; the namespace and every process started in it are
//! removed when the [`Lab`] is dropped, even if a test fails.
//!
//! The end-to-end tests need root (named namespaces, other users, scripts' `--netns`):
//! without it (or a tool) they report that they were skipped ([`can_run`]) and return,
//! and `cargo lab test` counts them as skipped, not passed; under CI (`CI` set) a skip is
//! a failure, so CI runs them all.

pub mod record;
pub mod wrap;

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction};
use nix::unistd::Pid;

pub mod check;
pub mod edition;
pub mod ours;
pub mod switch_lab;
pub mod vm;
pub mod vmm;

pub const KERNEL_IP: &str = "172.16.1.1";
pub const RESPONDER_IP: &str = "172.16.1.2";
pub const RESPONDER_MAC: &str = "02:00:00:00:00:02";
/// An unprivileged user that exists on every Debian system.
pub const UNPRIVILEGED_USER: &str = "nobody";
/// The lab's interface.
pub const IFACE: &str = "tap4";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The one list of the packages tapbook uses (`cargo lab demo` and `cargo lab test`
/// install from it): lines of `package command for why...`, `#` starts a comment.
const PACKAGE_LIST: &str = include_str!("../../scripts/packages.txt");

/// The list's lines as (package, command, for).
fn packages() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    PACKAGE_LIST.lines().filter(|line| !line.starts_with('#')).filter_map(|line| {
        let mut words = line.split_whitespace();
        Some((words.next()?, words.next()?, words.next()?))
    })
}

/// A line of the list: a Debian package, or `cargo:NAME@VERSION`, the command it
/// provides, and why the project uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub package: &'static str,
    pub command: &'static str,
    pub why: String,
}

/// The packages of the list's `groups` ("lab", "lint", "test", "book") that are not
/// installed, in the list's order. Debian's dpkg-query, found on `path` (a PATH), says;
/// without it (another distribution), or for `cargo:NAME`, whether the command is on
/// `path`.
pub fn missing_packages(groups: &[&str], path: &std::ffi::OsStr) -> Vec<Package> {
    let on_path = |command: &str| {
        std::env::split_paths(path).map(|dir| dir.join(command)).find(|p| p.is_file())
    };
    let dpkg_query = on_path("dpkg-query");
    PACKAGE_LIST
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (package, command, group) = (words.next()?, words.next()?, words.next()?);
            let why = words.collect::<Vec<_>>().join(" ");
            groups.contains(&group).then_some(Package { package, command, why })
        })
        .filter(|p| {
            let installed = match &dpkg_query {
                Some(dpkg) if !p.package.starts_with("cargo:") => Command::new(dpkg)
                    .args(["-W", "-f=${Status}", p.package])
                    .env("PATH", path)
                    .stderr(Stdio::null())
                    .output()
                    .is_ok_and(|out| out.stdout == b"install ok installed"),
                _ => on_path(p.command).is_some(),
            };
            !installed
        })
        .collect()
}

/// Installs what `groups` need and is missing, for `who` ("the demo"): one line says what
/// and why; then one `apt-get install` (as root, or through sudo) and a `cargo install`
/// for each `cargo:NAME@VERSION` (as ourselves). When the Debian packages cannot be
/// installed (not root, no sudo), an error before anything else, with the exact command
/// to run.
pub fn ensure_packages(who: &str, groups: &[&str]) -> Result<(), String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing = missing_packages(groups, &path);
    if missing.is_empty() {
        return Ok(());
    }
    let (crates, debs): (Vec<&Package>, Vec<&Package>) =
        missing.iter().partition(|p| p.package.starts_with("cargo:"));
    let debs: Vec<&str> = debs.iter().map(|p| p.package).collect();
    let mut as_root = Vec::new();
    if !debs.is_empty() && !is_root() {
        if !can_sudo() {
            let sudo = tool_exists("sudo");
            let why = if sudo {
                "sudo is not allowed here without a password (and there is no terminal to ask for one)"
            } else {
                "there is no sudo"
            };
            let install = format!("apt-get install --no-install-recommends {}", debs.join(" "));
            let run = if sudo { format!("sudo {install}") } else { format!("su -c '{install}'") };
            return Err(format!(
                "Debian packages missing for {who}: {}; not root, and {why}, so nothing was \
                 installed. Install them, then run this again:  {run}",
                debs.join(" ")
            ));
        }
        as_root.push("sudo");
    }
    let why: Vec<String> = missing
        .iter()
        .map(|p| match p.package.strip_prefix("cargo:") {
            Some(_) => format!("{} ({})", p.command, p.why),
            None => format!("{} ({})", p.package, p.why),
        })
        .collect();
    say(format_args!("Installing what is missing for {who}: {}.", why.join("; ")));
    let apt = |args: &[&str]| -> Result<(), String> {
        let mut cmd = Command::new(as_root.first().copied().unwrap_or("env"));
        if !as_root.is_empty() {
            cmd.arg("env");
        }
        cmd.args(["DEBIAN_FRONTEND=noninteractive", "apt-get"]).args(args);
        match cmd.status() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!("apt-get {} failed ({status})", args.join(" "))),
            Err(e) => Err(format!("running apt-get: {e}")),
        }
    };
    if !debs.is_empty() {
        apt(&["update", "-qq"])?;
        let install =
            ["install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300"];
        apt(&[&install[..], &debs].concat())?;
    }
    for krate in crates {
        let spec = krate.package.trim_start_matches("cargo:");
        let (name, version) = spec.split_once('@').unwrap_or((spec, "*"));
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["install", name, "--locked", "--version", version, "--quiet"])
            .status()
            .map_err(|e| format!("{who} needs cargo, to install {name}: {e}"))?;
        if !status.success() {
            return Err(format!("cargo install {name} failed ({status})"));
        }
    }
    Ok(())
}

/// Whether this user may run commands as root through sudo here: without a password, or
/// with one typed at this terminal.
pub fn can_sudo() -> bool {
    use std::io::IsTerminal;
    tool_exists("sudo")
        && (Command::new("sudo")
            .args(["-n", "true"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            || std::io::stdin().is_terminal())
}

fn open_clone_device() -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun")
}

fn clone_device_closed(e: &std::io::Error) -> String {
    format!(
        "cannot open /dev/net/tun ({e}): users may not open it here.\nFix, as root: \
         chmod 0666 /dev/net/tun (the usual default; sudo scripts/setup.sh does it)"
    )
}

/// Not root, a rootless lab needs to open the clone device. Where it is closed to users
/// (mode 0600, as some images ship it) and sudo is allowed, opens it as Debian does
/// (0666: a user may then attach only taps that user owns), saying so; without sudo,
/// stops with the fix. Does nothing as root.
pub fn ensure_clone_device(who: &str) -> Result<(), String> {
    let e = match open_clone_device() {
        Ok(_) => return Ok(()),
        Err(_) if is_root() => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => e,
        // Missing, or no driver: the lab's own message says what to do.
        Err(_) => return Ok(()),
    };
    if !can_sudo() {
        return Err(clone_device_closed(&e));
    }
    say(format_args!(
        "Opening /dev/net/tun to users for {who}: it is closed to them here; 0666 is the \
         usual default, and a user may attach only taps they own. Running: \
         sudo chmod 0666 /dev/net/tun"
    ));
    let _ = Command::new("sudo").args(["chmod", "0666", "/dev/net/tun"]).status();
    open_clone_device().map(drop).map_err(|e| clone_device_closed(&e))
}

/// Set by SIGINT, SIGTERM or SIGHUP once [`catch_stop_signals`] ran: the programs in the
/// lab get Ctrl-C themselves; we stay, to clean up.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: std::ffi::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// From now on SIGINT, SIGTERM and SIGHUP only set a flag ([`stopped`]), so that the lab
/// is removed (its `Drop`) rather than left behind.
pub fn catch_stop_signals() {
    let action =
        SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

/// Whether a stop signal came since [`catch_stop_signals`].
pub fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// `cargo` (the one that runs us, `$CARGO`), in the repository.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(repo_root());
    cmd
}

/// Cargo's target directory, as cargo itself says (CARGO_TARGET_DIR, config, default).
pub fn target_dir() -> Result<PathBuf, String> {
    let out = cargo()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running cargo metadata: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let key = "\"target_directory\":\"";
    let start = text.find(key).ok_or("cargo metadata named no target directory")? + key.len();
    let end = text[start..].find('"').ok_or("cargo metadata: bad target directory")? + start;
    Ok(PathBuf::from(&text[start..end]))
}

/// Who runs the chapter programs in a lab: never root. As root, the user behind sudo, or
/// else the system user nobody; not root, the caller (with no capabilities, in a rootless
/// lab).
pub fn lab_user() -> String {
    match std::env::var("SUDO_USER") {
        Ok(user) if is_root() && !user.is_empty() && user != "root" => user,
        _ if is_root() => UNPRIVILEGED_USER.to_owned(),
        _ => nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map_or_else(|| "you".to_owned(), |u| u.name),
    }
}

/// The example `name`, built next to the test binaries (`beside` is one of them:
/// target/debug/examples/NAME). `cargo test` builds no examples: it is built here with
/// the cargo that runs the tests (a no-op when up to date). Run through sudo (`cargo lab
/// test` as a user) there is no cargo for root; `cargo lab test` built them first.
pub fn example(name: &str, beside: &Path) -> PathBuf {
    let path = beside.with_file_name("examples").join(name);
    if let Some(cargo) = std::env::var_os("CARGO") {
        let built = Command::new(cargo)
            .args(["build", "--quiet", "--example", name])
            .current_dir(repo_root())
            .status()
            .expect("running cargo build");
        assert!(built.success(), "cargo build --example {name}");
    }
    assert!(path.exists(), "{} is not built: cargo build --example {name}", path.display());
    path
}

/// A test's scratch directory in the temporary directory (for sockets, logs, fake
/// device nodes), removed with what it holds when dropped.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(tag: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(unique_name(tag));
        std::fs::create_dir_all(&dir).expect("creating a scratch directory");
        ScratchDir(dir)
    }

    /// `name` inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a line to standard output; an output that fails is not worth a panic.
pub fn say(text: impl std::fmt::Display) {
    let _ = writeln!(std::io::stdout(), "{text}");
}

/// Writes a line to standard error.
pub fn tell(text: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Whether the end-to-end tests can run here, with the lab's tools and `extra_tools`;
/// prints why not otherwise, and writes "test<TAB>reason" into the file that
/// `TAPBOOK_SKIP_LOG` names (`cargo lab test` sets it), so that the test counts as
/// skipped, not passed. Under CI, not being able to run fails the test instead.
pub fn can_run(test: &str, extra_tools: &[&str]) -> bool {
    let lab_tools = packages().filter(|(_, _, group)| *group == "lab").map(|(_, tool, _)| tool);
    let missing: Vec<&str> =
        lab_tools.chain(extra_tools.iter().copied()).filter(|tool| !tool_exists(tool)).collect();
    let why = if !is_root() {
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
        "run the tests as root (cargo lab test does, through sudo)".to_owned()
    } else {
        format!("cargo lab test installs {}", packages.join(" "))
    };
    skip(test, &why, &fix)
}

/// Whether a test can run a rootless lab as an unprivileged user: [`can_run`] (the test
/// itself needs root, to become that user), and users may open /dev/net/tun.
pub fn can_run_rootless(test: &str) -> bool {
    if !can_run(test, &["unshare", "nsenter"]) {
        return false;
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata("/dev/net/tun").map_or(0, |m| m.permissions().mode());
    if mode & 0o006 == 0o006 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: cannot run under CI: /dev/net/tun has mode {:o}", mode & 0o777);
    }
    let why = format!("users cannot open /dev/net/tun (mode {:o})", mode & 0o777);
    skip(test, &why, "chmod 0666 /dev/net/tun, the usual default (sudo scripts/setup.sh does it)")
}

/// Reports that `test` cannot run here (`why`, and the `fix`), into `TAPBOOK_SKIP_LOG` too;
/// false, for `if !...`.
fn skip(test: &str, why: &str, fix: &str) -> bool {
    tell(format_args!("SKIPPED {test}: {why}; {fix}"));
    if let Some(log) = std::env::var_os("TAPBOOK_SKIP_LOG") {
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
        if !$crate::can_run($name, &[$($tool),*]) {
            return;
        }
    };
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn tool_exists(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .any(|dir| dir.join(tool).is_file())
    })
}

/// A name no other test (or test run) uses at the same time: tag, our PID, a counter.
/// Starts `cmd`, which holds namespaces open by ending in `sleep infinity` (unshare
/// execs it once the namespaces, and a uid map, are in place), and waits until it has;
/// an error naming `what`, with what it said, if it exited instead.
fn hold(cmd: &mut Command, what: &str) -> Result<std::process::Child, String> {
    let mut holder = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running unshare (util-linux): {e}"))?;
    let comm = format!("/proc/{}/comm", holder.id());
    let ready = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep")
            || holder.try_wait().is_ok_and(|s| s.is_some())
    });
    if !ready || holder.try_wait().is_ok_and(|s| s.is_some()) {
        let _ = holder.kill();
        let out = holder.wait_with_output().map(|o| o.stderr).unwrap_or_default();
        return Err(format!("could not make {what}: {}", String::from_utf8_lossy(&out).trim()));
    }
    Ok(holder)
}

fn unique_name(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("tb-{tag}-{}-{n}", std::process::id())
}

/// The repository: the directory above lab/.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("lab/ is inside the repository").into()
}

/// Why this user cannot make a user namespace here, with the fix and the fallback; `None`
/// when it can. Asks the kernel, by trying: `unshare --user --map-root-user --net true`.
pub fn userns_blocked() -> Option<String> {
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "--mount", "true"])
        .stdin(Stdio::null())
        .output();
    let error = match out {
        Ok(out) if out.status.success() => return None,
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        Err(e) => format!("cannot run unshare (util-linux): {e}"),
    };
    let apparmor = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";
    let restricted = std::fs::read_to_string(apparmor).is_ok_and(|v| v.trim() == "1");
    let cause = if restricted {
        format!(
            "{apparmor} is 1 (Ubuntu 23.10 and later). Fix, as root: \
             sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
        )
    } else {
        "user namespaces are disabled here (user.max_user_namespaces is 0, or a container's \
         seccomp filter forbids them). Fix, as root: sysctl -w user.max_user_namespaces=15000, \
         or run the container with user namespaces allowed"
            .to_owned()
    };
    Some(format!(
        "this user cannot make a user namespace ({error}): {cause}. Or use root: \
         sudo cargo lab demo, or once sudo scripts/setup.sh and then cargo run without sudo"
    ))
}

/// Where a lab's namespace lives.
enum Place {
    /// A named network namespace (`ip netns`): root only.
    Named,
    /// A user, network and mount namespace held open by `holder` (`unshare`, then
    /// `sleep`); commands enter it with `nsenter`.
    Rootless { holder: Child },
}

/// A namespace with (usually) a persistent tap4 in it.
pub struct Lab {
    /// The namespace's name (`ip netns`), or for a rootless lab a description of it.
    pub netns: String,
    pub iface: String,
    place: Place,
    children: Vec<u32>,
    /// The mount namespace every command enters, once [`Lab::private_mounts`] made it.
    mounts: Option<Child>,
    /// Leave a named namespace in place when the lab is dropped (`cargo lab demo --keep`).
    pub keep: bool,
    /// The directory commands run in (default: ours), kept also where entering the lab's
    /// mount namespace would move them to its root.
    pub workdir: Option<PathBuf>,
}

impl Lab {
    /// A lab whose tap4 belongs to root (in a rootless lab: to the caller).
    pub fn new(tag: &str) -> Lab {
        Lab::with_owner(tag, "root")
    }

    /// A lab whose tap4 belongs to `user` (who can then attach without privileges). As
    /// root a named namespace; otherwise a rootless one, where tap4 belongs to the caller.
    pub fn with_owner(tag: &str, user: &str) -> Lab {
        let name = is_root().then(|| unique_name(tag));
        Lab::create(name, user).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A lab namespace without any TAP in it (for the "no tap prepared" tests).
    pub fn empty(tag: &str) -> Lab {
        let name = is_root().then(|| unique_name(tag));
        Lab::namespace(name).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A lab in the named namespace `name` (root; it must not exist yet), or with `None` a
    /// rootless one; tap4 (172.16.1.1/24, up) belongs to `owner`, made by
    /// `scripts/setup.sh`.
    pub fn create(name: Option<String>, owner: &str) -> Result<Lab, String> {
        let lab = Lab::namespace(name)?;
        let mut setup = lab.command(&repo_root().join("scripts/setup.sh").to_string_lossy());
        match lab.place {
            Place::Named => setup.args(["--netns", &lab.netns, "--user", owner]),
            // The caller is root in its user namespace, and that root is the caller.
            Place::Rootless { .. } => setup.args(["--user", "root"]),
        };
        let out = setup
            .env_remove("TAPBOOK_NETNS")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running scripts/setup.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/setup.sh failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(lab)
    }

    /// The namespace alone (named as root, else rootless), with `lo` up and no TAP.
    pub fn namespace(name: Option<String>) -> Result<Lab, String> {
        let lab = match name {
            Some(name) => {
                let out = Command::new("ip")
                    .args(["netns", "add", &name])
                    .output()
                    .map_err(|e| format!("running ip netns add: {e}"))?;
                if !out.status.success() {
                    return Err(format!(
                        "ip netns add {name} failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                Lab::around(name, Place::Named)
            }
            None => Lab::rootless()?,
        };
        let out = lab.command("ip").args(["link", "set", "lo", "up"]).output();
        match out {
            Ok(out) if out.status.success() => Ok(lab),
            Ok(out) => Err(format!(
                "ip link set lo up in the lab failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Err(format!("running ip in the lab: {e}")),
        }
    }

    fn around(netns: String, place: Place) -> Lab {
        Lab {
            netns,
            iface: IFACE.to_owned(),
            place,
            children: Vec::new(),
            mounts: None,
            keep: false,
            workdir: None,
        }
    }

    /// A user namespace (we are its root), with a network namespace and a mount namespace
    /// (for a /sys that shows this network namespace's interfaces), held open by a `sleep`
    /// that dies with us (`setpriv --pdeathsig`).
    fn rootless() -> Result<Lab, String> {
        if let Some(why) = userns_blocked() {
            return Err(why);
        }
        if let Err(e) = open_clone_device() {
            return Err(clone_device_closed(&e));
        }
        let holder = hold(
            Command::new("setpriv")
                .args(["--pdeathsig", "KILL", "--", "unshare", "--user", "--map-root-user"])
                .args(["--net", "--mount", "--", "sleep", "infinity"]),
            "the lab's namespace with unshare",
        )?;
        let netns = format!("a user namespace of its own (unshare, pid {})", holder.id());
        let lab = Lab::around(netns, Place::Rootless { holder });
        let out = lab.command("mount").args(["-t", "sysfs", "sysfs", "/sys"]).output();
        match out {
            Ok(out) if out.status.success() => Ok(lab),
            Ok(out) => Err(format!(
                "mounting /sys in the lab failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Err(format!("running mount in the lab: {e}")),
        }
    }

    /// Whether this lab is rootless (a user namespace) rather than a named namespace.
    pub fn is_rootless(&self) -> bool {
        matches!(self.place, Place::Rootless { .. })
    }

    /// From now on, every command of this lab runs in one mount namespace of the lab's
    /// own, held open by a `sleep`: what one command mounts (a node bound over
    /// /dev/net/tun) stays for the next, and nobody else sees it. /run/netns is an empty
    /// tmpfs in it, so that a program finds no name for its namespace, as in a student's
    /// own (`ip netns exec` would show it).
    pub fn private_mounts(&mut self) -> Result<(), String> {
        let holder = hold(
            self.command("unshare")
                .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg("mount -t tmpfs tapbook-hide /run/netns 2>/dev/null; exec sleep infinity"),
            "the lab's mount namespace",
        )?;
        self.mounts = Some(holder);
        Ok(())
    }

    /// How to run a command in this lab from another terminal while it exists, e.g.
    /// `sudo ip netns exec tapbook-vm-42`, to be followed by the command.
    pub fn enter_command(&self) -> String {
        match &self.place {
            Place::Named => format!("sudo ip netns exec {}", self.netns),
            Place::Rootless { holder } => format!(
                "nsenter --target {} --user --net --mount --preserve-credentials",
                holder.id()
            ),
        }
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        if let Some(mounts) = &self.mounts {
            let mut cmd = Command::new("nsenter");
            // Entering the mount namespace moves to its root: keep our directory.
            if let Some(dir) = self.workdir.clone().or_else(|| std::env::current_dir().ok()) {
                cmd.arg(format!("--wd={}", dir.display()));
            }
            cmd.arg("--target").arg(mounts.id().to_string());
            if self.is_rootless() {
                cmd.args(["--user", "--preserve-credentials"]);
            }
            cmd.args(["--net", "--mount", "--"]).arg(program);
            return cmd;
        }
        match &self.place {
            Place::Named => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &self.netns, program]);
                if let Some(dir) = &self.workdir {
                    cmd.current_dir(dir);
                }
                cmd
            }
            Place::Rootless { holder } => {
                let mut cmd = Command::new("nsenter");
                // Entering the mount namespace moves to its root: keep our directory.
                if let Some(dir) = self.workdir.clone().or_else(|| std::env::current_dir().ok()) {
                    cmd.arg(format!("--wd={}", dir.display()));
                }
                cmd.arg("--target")
                    .arg(holder.id().to_string())
                    .args(["--user", "--net", "--mount", "--preserve-credentials", "--"])
                    .arg(program);
                cmd
            }
        }
    }

    /// Runs `ip ARGS` in the namespace and insists that it succeeds.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = run_ok(self.command("ip").args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A permanent neighbour entry for the responder (172.16.1.2 is 02:00:00:00:00:02)
    /// on `dev`: the kernel sends to it at once, with no ARP exchange first, answered or
    /// not.
    pub fn pin_responder(&self, dev: &str) {
        self.ip(&[
            "neigh",
            "replace",
            RESPONDER_IP,
            "lladdr",
            RESPONDER_MAC,
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
    }

    /// Whether a program holds the lab's interface: a TAP has carrier (LOWER_UP) exactly
    /// while a program has it open.
    pub fn attached(&self) -> bool {
        self.attached_iface(&self.iface)
    }

    /// Whether a program holds `iface`, another TAP in the lab.
    pub fn attached_iface(&self, iface: &str) -> bool {
        self.command("ip").args(["-o", "link", "show", iface]).output().is_ok_and(|out| {
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("LOWER_UP")
        })
    }

    /// Starts a chapter binary (by Cargo's path to it) inside the namespace, as `user` if
    /// given, with stdout and stderr going to files, and waits until it has attached to
    /// the TAP (the interface's carrier comes on).
    pub fn start(&mut self, bin: &str, args: &[&str], user: Option<&str>) -> Responder {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        self.start_os(bin, &args, user)
    }

    /// [`Lab::start`] with arguments that need not be UTF-8 (file names are bytes).
    pub fn start_os(&mut self, bin: &str, args: &[&OsStr], user: Option<&str>) -> Responder {
        let mut responder = self.spawn_os(bin, args, user);
        if let Err(e) = self.wait_attached(&mut responder) {
            panic!("{e}");
        }
        responder
    }

    /// Waits until `responder` holds the interface: an error with its output if it exited
    /// first, or did not within 10 s.
    pub fn wait_attached(&self, responder: &mut Responder) -> Result<(), String> {
        let mut exited = false;
        let attached = wait_until(Duration::from_secs(10), || {
            exited =
                responder.child.as_mut().is_some_and(|c| c.try_wait().is_ok_and(|s| s.is_some()));
            exited || self.attached()
        });
        if attached && !exited {
            return Ok(());
        }
        Err(format!(
            "{} did not attach to {}:\n{}",
            responder.program,
            self.iface,
            responder.output()
        ))
    }

    /// Starts a binary without waiting for anything. With a `user`: as that user in a named
    /// namespace; in a rootless one as the caller (the only user there), with no
    /// capabilities left, so that it attaches as tap4's owner and nothing more.
    pub fn spawn(&mut self, bin: &str, args: &[&str], user: Option<&str>) -> Responder {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        self.spawn_os(bin, &args, user)
    }

    /// [`Lab::spawn`] with arguments that need not be UTF-8.
    pub fn spawn_os(&mut self, bin: &str, args: &[&OsStr], user: Option<&str>) -> Responder {
        let mut cmd = self.command("setpriv");
        cmd.args(self.setpriv_args(user)).arg(bin).args(args).stdin(Stdio::null());
        let program: String =
            Path::new(bin).file_name().map_or(bin.into(), |n| n.to_string_lossy().into());
        self.spawn_command(cmd, &program, None)
    }

    /// What `setpriv` needs, before the program, to run it as `user` in this lab (ending
    /// in `--`): in a named namespace that user, with its primary group and no other; in
    /// a rootless one the caller (the only user there) with no capabilities left, so that
    /// it attaches as tap4's owner and nothing more. `None`: as the lab's root.
    pub fn setpriv_args(&self, user: Option<&str>) -> Vec<String> {
        let mut args: Vec<String> = match (user, &self.place) {
            (Some(user), Place::Named) => {
                vec!["--reuid".into(), user.into(), "--regid".into(), primary_group(user)]
                    .into_iter()
                    .chain(["--clear-groups".into()])
                    .collect()
            }
            (Some(_), Place::Rootless { .. }) => {
                vec!["--inh-caps=-all".into(), "--bounding-set=-all".into()]
            }
            (None, _) => Vec::new(),
        };
        args.push("--".into());
        args
    }

    /// Starts `cmd` (made with [`Lab::command`], its stdin already chosen) as the lab's
    /// child, which the lab kills when it is dropped. Its stdout and stderr go to `log`
    /// (opened for appending, so that others may write into it as it runs, as into a
    /// terminal), or else to files of their own.
    pub fn spawn_command(
        &mut self,
        mut cmd: Command,
        program: &str,
        log: Option<&Path>,
    ) -> Responder {
        let (stdout, stderr, log_dir) = match log {
            Some(log) => (log.to_path_buf(), log.to_path_buf(), None),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "{}-{}",
                    unique_name("out"),
                    COUNTER.fetch_add(1, Ordering::SeqCst)
                ));
                std::fs::create_dir_all(&dir).expect("creating a log directory");
                (dir.join("stdout"), dir.join("stderr"), Some(dir))
            }
        };
        let open = |path: &Path| {
            std::fs::OpenOptions::new().create(true).append(true).open(path).expect("log file")
        };
        let child =
            cmd.stdout(open(&stdout)).stderr(open(&stderr)).spawn().expect("starting the binary");
        self.children.push(child.id());
        let (stdout, stderr) =
            if log.is_some() { (stdout, PathBuf::new()) } else { (stdout, stderr) };
        Responder { child: Some(child), stdout, stderr, program: program.to_owned(), log_dir }
    }

    /// `ping` from the kernel's side of the namespace.
    pub fn ping(&self, args: &[&str]) -> Output {
        self.command("ping").args(args).output().expect("running ping")
    }

    pub fn arping(&self, args: &[&str]) -> Output {
        self.command("arping").args(args).output().expect("running arping")
    }
}

impl Lab {
    /// The processes inside the lab's network namespace (ours, and what they started: a
    /// shell's background job), found by the namespace's identity in /proc/PID/ns/net.
    fn processes(&self) -> Vec<i32> {
        use std::os::unix::fs::MetadataExt;
        let netns = match &self.place {
            Place::Named => std::fs::metadata(Path::new("/run/netns").join(&self.netns))
                .map(|m| format!("net:[{}]", m.ino())),
            Place::Rootless { holder } => {
                std::fs::read_link(format!("/proc/{}/ns/net", holder.id()))
                    .map(|l| l.to_string_lossy().into_owned())
            }
        };
        let Ok(netns) = netns else { return Vec::new() };
        let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/ns/net"))
                    .is_ok_and(|l| l.to_string_lossy() == netns)
            })
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut mounts) = self.mounts.take() {
            let _ = mounts.kill();
            let _ = mounts.wait();
        }
        let holder = match &self.place {
            Place::Rootless { holder } => Some(holder.id() as i32),
            Place::Named => None,
        };
        // Our own children (`ip netns exec` or nsenter exec()s into setpriv and then the
        // binary, so the PID stays), then whatever else still runs in the namespace.
        let others = if self.keep { Vec::new() } else { self.processes() };
        for pid in self.children.iter().map(|p| *p as i32).chain(others) {
            if Some(pid) != holder {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        match &mut self.place {
            Place::Named if !self.keep => {
                let _ = Command::new("ip").args(["netns", "del", &self.netns]).output();
            }
            Place::Named => {}
            // The namespaces go when their last process does: the holder.
            Place::Rootless { holder } => {
                let _ = holder.kill();
                let _ = holder.wait();
            }
        }
    }
}

/// A chapter binary running in a lab.
pub struct Responder {
    child: Option<Child>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    program: String,
    /// The directory of its two log files, if the lab made one for it: removed with it.
    log_dir: Option<PathBuf>,
}

impl Responder {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The binary's standard input, when it was started with a pipe there (once).
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.as_mut()?.stdin.take()
    }

    /// Sends a signal (e.g. SIGTERM) to the binary.
    pub fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.pid() as i32), signal);
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
        self.signal(Signal::SIGTERM);
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
        if let Some(dir) = &self.log_dir {
            let _ = std::fs::remove_dir_all(dir);
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
