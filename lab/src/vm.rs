//! `cargo lab vm`: a real virtual machine on the wire. QEMU boots a small Linux guest
//! (a kernel, and an initramfs holding busybox and `scripts/vm/init.sh` as its init) on a
//! second TAP, a bridge joins that TAP to our responder's `tap4`, and the guest's own
//! `ping` gets its replies from `05_full_responder`. All of it inside a lab namespace
//! ([`Lab`]): as root a named one; not root, a user namespace of the caller's own, where
//! QEMU opens a tap the caller owns, with no root anywhere.
//!
//! The guest is built and run by functions that know nothing of the bridge ([`pick_kernel`],
//! [`build_initramfs`], [`qemu_args`], [`boot`], [`watch_guest`], [`clean_console`]), so
//! that another network (`--network`) can give the guest another backend: today only
//! `bridge`.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::{
    IFACE, KERNEL_IP, Lab, RESPONDER_IP, Responder, catch_stop_signals, ensure_clone_device,
    is_root, lab_user, repo_root, say, stopped, tool_exists, userns_blocked, wait_until,
};

type Result<T> = std::result::Result<T, String>;

pub const GUEST_IP: &str = "172.16.1.3";
/// QEMU's own default; 52:54:00 is QEMU's prefix.
pub const GUEST_MAC: &str = "52:54:00:12:34:56";
/// The host's side of the bridge: the MAC the book's recordings give the kernel's side.
pub const HOST_MAC: &str = "02:00:00:00:00:01";
pub const BRIDGE: &str = "br0";
/// QEMU's tap: libvirt's name for the taps it makes for guests.
pub const VM_TAP: &str = "vnet0";
/// How long KVM gets to reach the guest's init before we try TCG.
const KVM_WAIT: Duration = Duration::from_secs(10);
/// A whole guest run under TCG on a slow machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Load order for busybox insmod, which does not follow dependencies: each module after
/// the ones it needs (measured on Debian's 6.1 kernel; built-in ones are skipped).
const VIRTIO_MODULES: [&str; 8] = [
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
];
const DEBIAN_KERNEL_META: &str = "linux-image-cloud-amd64";
/// The guest's whole user space: its PID 1.
const INIT_SCRIPT: &str = include_str!("../../scripts/vm/init.sh");

const USAGE: &str = "\
Usage: cargo lab vm [OPTIONS]

Boot a small Linux guest with QEMU and let it ping our responder, all inside a lab
namespace that is made for the run and removed afterwards (also on failure or Ctrl-C):

    guest eth0 172.16.1.3 (virtio-net)          05_full_responder 172.16.1.2
        |                                            |
      vnet0 (TAP, QEMU's) ----- br0 172.16.1.1 ----- tap4 (TAP, ours)

  1. builds 05_full_responder (cargo build --release);
  2. picks the guest kernel: this machine's /boot/vmlinuz-$(uname -r) with its
     modules when readable and usable, else Debian's linux-image-cloud-amd64
     (apt-get download + dpkg -x, cached; nothing is installed);
  3. builds a busybox initramfs around scripts/vm/init.sh (cached);
  4. makes the lab: scripts/setup.sh for tap4, the bridge br0 with the host's
     address, a second TAP vnet0 for QEMU;
  5. runs 05_full_responder --pcap on tap4, boots the guest with KVM when KVM works
     here, else with TCG (software emulation), and prints the guest's console, the
     bridge's forwarding table, the responder's counters and a tshark summary of the
     frames the responder saw.
Exits 0 when the guest's ping to 172.16.1.2 got replies from our responder.

Not root: a user namespace of your own (no root, no sudo); QEMU and the responder run
as you, QEMU on a tap you own. As root: a named network namespace; the responder runs
as the user behind sudo, or nobody. Needs qemu-system-x86 and busybox-static (tshark
for the capture summary, ethtool for the offloads, strace for --strace).

With --network ours the guest's wire is our code, and no TAP is QEMU's:

    guest eth0, DHCP (virtio-net)         10_dhcp_server 172.16.1.2 (no TAP)
        |  -netdev stream                     |  --stream
      guest1.sock -- 12_learning_switch -- responder.sock
                            |
                          tap4 (TAP) -- the kernel, 172.16.1.1

  the guest's udhcpc gets its lease from our server, then it pings 172.16.1.2
  and 172.16.1.1; with --guests 2 a second guest joins and the two ping each
  other. Prints the consoles, the server's leases and the switch's table.

Options:
  --network WHICH   how the guest reaches the responder: bridge (the default: a
                    TAP for QEMU, bridged with tap4) or ours (our switch and our
                    DHCP server, above)
  --guests N        with --network ours: 1 or 2 guests (default: 1)
  --keep            keep the lab running after the pings (guest, responder,
                    namespace) until Ctrl-C, and print how to reach it
  --shell           after its pings, give the guest an interactive shell on
                    this terminal ('exit' powers it off; Ctrl-A x kills QEMU)
  --count N         pings from the guest to each address (default: 3)
  --kernel WHICH    auto, host or debian (default: auto)
  --accel WHICH     auto, kvm or tcg (default: auto: KVM if it boots the guest
                    within 10 s, else TCG)
  --pcap FILE       keep the responder's capture in FILE
  --strace FILE     run QEMU under strace and save its system calls on the TAP
                    (opening /dev/net/tun, the ioctls, the first frames) to FILE;
                    the whole trace goes to FILE.all
  --bin PATH        use this 05_full_responder instead of building it (with
                    --network ours: this 10_dhcp_server, and the
                    12_learning_switch next to it)
  --user NAME       (root) run the responder as NAME (default: $SUDO_USER, else nobody)
  --cache DIR       where the kernel and initramfs are cached
                    (default: $TAPBOOK_CACHE, else ~/.cache/tapbook)
  --netns NAME      (root) the namespace to create (default: tapbook-vm-PID); it must
                    not exist yet, since it is deleted at the end
  -h, --help        this help

The book's recordings of this chapter: cargo lab record vm-lab (and vmm)";

// ---- options ------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelChoice {
    Auto,
    Host,
    Debian,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// What the guest does after its pings (`tapbook.mode=` on its kernel command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Waits for "poweroff" on its console, so the host can look while it is up.
    Batch,
    /// An interactive shell on the console (this terminal).
    Shell,
    /// Stays up, answering pings, until killed.
    Keep,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Batch => "batch",
            Mode::Shell => "shell",
            Mode::Keep => "keep",
        }
    }
}

/// How the guest's NIC reaches our responder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// A TAP for QEMU, bridged with tap4 in the lab namespace.
    Bridge,
    /// QEMU's `-netdev stream` on a port of our switch (12_learning_switch), whose other
    /// ports are tap4 and our DHCP server (10_dhcp_server --stream): [`crate::ours`].
    Ours,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub network: Network,
    /// `--guests N` (with `--network ours`): how many guests share the switch.
    pub guests: u32,
    pub keep: bool,
    pub shell: bool,
    pub count: u32,
    pub kernel: KernelChoice,
    pub accel: Option<Accel>,
    pub pcap: Option<PathBuf>,
    pub strace: Option<PathBuf>,
    pub bin: Option<PathBuf>,
    pub user: Option<String>,
    pub cache: PathBuf,
    pub netns: Option<String>,
}

/// `$TAPBOOK_CACHE`, else `$XDG_CACHE_HOME/tapbook`, else `~/.cache/tapbook`.
pub fn default_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("TAPBOOK_CACHE").filter(|d| !d.is_empty()) {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("tapbook")
}

impl Options {
    /// The options of `cargo lab vm` (after "vm"); `None` for --help (printed).
    pub fn parse(args: &[String]) -> Result<Option<Options>> {
        let mut o = Options {
            network: Network::Bridge,
            guests: 1,
            keep: false,
            shell: false,
            count: 3,
            kernel: KernelChoice::Auto,
            accel: None,
            pcap: None,
            strace: None,
            bin: None,
            user: None,
            cache: default_cache(),
            netns: None,
        };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let (option, inline) = match arg.split_once('=') {
                Some((opt, v)) if opt.starts_with("--") => (opt, Some(v)),
                _ => (arg.as_str(), None),
            };
            let mut value = || -> Result<String> {
                let v = match inline {
                    Some(v) => v.to_owned(),
                    None => rest.next().ok_or(format!("option {option} needs a value"))?.clone(),
                };
                if v.is_empty() {
                    return Err(format!("option {option} needs a value, not an empty one"));
                }
                Ok(v)
            };
            match option {
                "-h" | "--help" => {
                    say(USAGE);
                    return Ok(None);
                }
                "--network" => {
                    o.network = match value()?.as_str() {
                        "bridge" => Network::Bridge,
                        "ours" => Network::Ours,
                        v => return Err(format!("--network wants bridge or ours (got '{v}')")),
                    }
                }
                "--guests" => {
                    let v = value()?;
                    o.guests = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=2).contains(n))
                        .ok_or(format!("--guests wants 1 or 2, not '{v}'"))?;
                }
                "--keep" => o.keep = true,
                "--shell" => o.shell = true,
                "--count" => {
                    let v = value()?;
                    o.count =
                        v.parse().ok().filter(|n| (1..=100).contains(n)).ok_or(format!(
                            "--count wants a whole number from 1 to 100, not '{v}'"
                        ))?;
                }
                "--kernel" => {
                    o.kernel = match value()?.as_str() {
                        "auto" => KernelChoice::Auto,
                        "host" => KernelChoice::Host,
                        "debian" => KernelChoice::Debian,
                        v => {
                            return Err(format!("--kernel wants auto, host or debian (got '{v}')"));
                        }
                    }
                }
                "--accel" => {
                    o.accel = match value()?.as_str() {
                        "auto" => None,
                        "kvm" => Some(Accel::Kvm),
                        "tcg" => Some(Accel::Tcg),
                        v => return Err(format!("--accel wants auto, kvm or tcg (got '{v}')")),
                    }
                }
                "--pcap" => o.pcap = Some(value()?.into()),
                "--strace" => o.strace = Some(value()?.into()),
                "--bin" => o.bin = Some(value()?.into()),
                "--user" => o.user = Some(value()?),
                "--cache" => o.cache = value()?.into(),
                "--netns" => o.netns = Some(value()?),
                _ => return Err(format!("unknown option '{arg}' (try: cargo lab vm --help)")),
            }
        }
        if o.network == Network::Bridge && o.guests != 1 {
            return Err("--guests goes with --network ours (the bridge lab has one guest)".into());
        }
        if o.network == Network::Ours {
            let bridge_only = [
                ("--keep", o.keep),
                ("--shell", o.shell),
                ("--pcap", o.pcap.is_some()),
                ("--strace", o.strace.is_some()),
            ];
            if let Some((option, _)) = bridge_only.iter().find(|(_, given)| *given) {
                return Err(format!("{option} goes with --network bridge, not ours"));
            }
        }
        if o.keep && o.shell {
            return Err("--keep and --shell do not go together: the shell ends the guest".into());
        }
        if !is_root() && (o.netns.is_some() || o.user.is_some()) {
            return Err("--netns and --user need root (a named network namespace, another \
                        user); not root, the lab is a user namespace of your own"
                .into());
        }
        if let Some(name) = &o.netns {
            let ok = name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok || name == "." || name == ".." {
                return Err(format!(
                    "bad network namespace name '{name}' (letters, digits, . _ -)"
                ));
            }
        }
        Ok(Some(o))
    }
}

/// `cargo lab vm ARGS`.
pub fn command(args: &[String]) -> Result<ExitCode> {
    let Some(options) = Options::parse(args)? else { return Ok(ExitCode::SUCCESS) };
    match options.network {
        Network::Bridge => run_bridge(&options),
        Network::Ours => crate::ours::run(&options),
    }
}

// ---- small helpers --------------------------------------------------------------------

pub(crate) fn section(title: impl std::fmt::Display) {
    say("");
    say(format_args!("== {title}"));
}

pub(crate) fn indent(text: &str, by: &str) -> String {
    let lines = text.trim_end_matches('\n').lines();
    lines.map(|l| format!("{by}{}", l.trim_end())).collect::<Vec<_>>().join("\n")
}

pub(crate) fn seconds(d: Duration) -> String {
    format!("{}.{}", d.as_secs(), d.subsec_millis() / 100)
}

/// A path inside the repository relative to it, for shorter messages.
pub(crate) fn repo_path(path: &Path) -> String {
    let root = repo_root();
    path.strip_prefix(&root).unwrap_or(path).display().to_string()
}

pub(crate) fn check_stop() -> Result<()> {
    if stopped() { Err("stopped (signal); the lab is removed".into()) } else { Ok(()) }
}

/// Runs a command and returns its standard output, or an error with its standard error.
pub(crate) fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A directory of our own under the temporary directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir> {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(crate::unique_name(tag));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        // Another user (the responder's) may reach a file we make for it, no more.
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711));
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The kernel's names for the `tun_flags` bits of a TAP (include/uapi/linux/if_tun.h) as
/// the lab shows them: `tap no_pi persist vnet_hdr (tun_flags 0x7802)`.
pub fn describe_tun_flags(text: &str) -> String {
    let flags = u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).unwrap_or(0);
    let mut out = match (flags & 0x2 != 0, flags & 0x1 != 0) {
        (true, _) => "tap".to_owned(),
        (_, true) => "tun".to_owned(),
        _ => "neither tun nor tap".to_owned(),
    };
    out += if flags & 0x1000 != 0 { " no_pi" } else { " pi" };
    for (bit, name) in [(0x800, " persist"), (0x100, " multi_queue"), (0x4000, " vnet_hdr")] {
        if flags & bit != 0 {
            out += name;
        }
    }
    format!("{out} (tun_flags {})", text.trim())
}

// ---- the guest's kernel ----------------------------------------------------------------

/// A kernel for the guest, with the virtio-net modules it needs in load order.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub image: PathBuf,
    pub description: String,
    /// Names its initramfs in the cache.
    pub id: String,
    pub modules: Vec<PathBuf>,
}

fn find_module(tree: &Path, name: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(tree).ok()?;
    let mut dirs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let file = entry.file_name();
        let file = file.to_string_lossy();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(path);
        } else if file == format!("{name}.ko") || file.starts_with(&format!("{name}.ko.")) {
            return Some(path);
        }
    }
    dirs.sort();
    dirs.iter().find_map(|d| find_module(d, name))
}

/// The virtio-net modules under `tree` in load order, leaving out those the kernel has
/// built in (`builtin`, its modules.builtin); an error says why the kernel will not do.
fn resolve_modules(tree: &Path, builtin: &Path) -> Result<Vec<PathBuf>> {
    let builtin = std::fs::read_to_string(builtin).unwrap_or_default();
    let is_builtin = |name: &str| {
        builtin.lines().any(|l| {
            let file = l.rsplit('/').next().unwrap_or(l);
            file == format!("{name}.ko") || file.starts_with(&format!("{name}.ko."))
        })
    };
    let mut have: Vec<&str> = Vec::new();
    let mut files = Vec::new();
    for name in VIRTIO_MODULES {
        if is_builtin(name) {
            have.push(name);
            continue;
        }
        // Older kernels have no virtio_pci_legacy_dev etc.; the dependency check below
        // tells whether anything needed it.
        let Some(file) = find_module(tree, name) else { continue };
        if let Ok(out) = Command::new("modinfo").args(["-F", "depends"]).arg(&file).output() {
            let depends = String::from_utf8_lossy(&out.stdout);
            let missing = depends
                .trim()
                .split(',')
                .filter(|d| !d.is_empty())
                .find(|d| !have.contains(d))
                .map(str::to_owned);
            if let Some(dep) = missing {
                return Err(format!("module {name} needs {dep}, which is not in the load order"));
            }
        }
        have.push(name);
        files.push(file);
    }
    if !have.contains(&"virtio_net") {
        return Err("it has no virtio_net driver (neither built in nor as a module)".into());
    }
    Ok(files)
}

/// This machine's own kernel, if it can be read and has its modules.
pub fn host_kernel() -> Result<Kernel> {
    let release = output(Command::new("uname").arg("-r"))?.trim().to_owned();
    let image = PathBuf::from(format!("/boot/vmlinuz-{release}"));
    let moddir = PathBuf::from(format!("/lib/modules/{release}"));
    if std::fs::File::open(&image).is_err() {
        return Err(format!("{} is missing or not readable", image.display()));
    }
    if !moddir.is_dir() {
        return Err(format!("its modules ({}) are not installed", moddir.display()));
    }
    let modules = resolve_modules(&moddir, &moddir.join("modules.builtin"))?;
    Ok(Kernel {
        description: format!("this machine's own kernel, {}", image.display()),
        image,
        id: format!("host-{release}"),
        modules,
    })
}

/// The linux-image package that Debian's cloud kernel meta-package names.
fn debian_kernel_package() -> Option<String> {
    let out = Command::new("apt-cache")
        .args(["depends", DEBIAN_KERNEL_META])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let dep = l.trim().strip_prefix("Depends: ")?;
        (dep.starts_with("linux-image-") && !dep.contains(' ')).then(|| dep.to_owned())
    })
}

/// Debian's cloud kernel, downloaded once into `cache` (apt-get download and dpkg -x:
/// nothing is installed).
pub fn debian_kernel(cache: &Path) -> Result<Kernel> {
    if !tool_exists("apt-get") {
        return Err("apt-get is not available (not a Debian-based system)".into());
    }
    let debian = cache.join("debian");
    let cached = || -> Option<String> {
        let mut names: Vec<String> = std::fs::read_dir(&debian)
            .ok()?
            .flatten()
            .filter(|e| e.path().join(".complete").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.pop()
    };
    let package = match debian_kernel_package() {
        Some(p) => p,
        None => match cached() {
            Some(p) => {
                say(format_args!(
                    "    apt does not know {DEBIAN_KERNEL_META}; using the cached {p}"
                ));
                p
            }
            None if is_root() => {
                say(format_args!(
                    "    apt does not know {DEBIAN_KERNEL_META} yet: running apt-get update"
                ));
                output(Command::new("apt-get").args(["update", "-q"]))?;
                debian_kernel_package()
                    .ok_or(format!("apt knows no package {DEBIAN_KERNEL_META}"))?
            }
            None => {
                return Err(format!(
                    "apt knows no package {DEBIAN_KERNEL_META} (as root, once: apt-get update)"
                ));
            }
        },
    };
    let dir = debian.join(&package);
    if !dir.join(".complete").exists() {
        download_debian_kernel(&debian, &package, &dir)?;
    }
    let modules = resolve_modules(&dir.join("modules"), &dir.join("modules.builtin"))?;
    let deb = std::fs::read_to_string(dir.join("package")).unwrap_or_default();
    Ok(Kernel {
        image: dir.join("vmlinuz"),
        description: format!("Debian's {}, cached in {}", deb.trim(), dir.display()),
        id: package,
        modules,
    })
}

fn download_debian_kernel(debian: &Path, package: &str, dir: &Path) -> Result<()> {
    say(format_args!("    downloading {package} (apt-get download; nothing is installed)"));
    std::fs::create_dir_all(debian).map_err(|e| format!("creating {}: {e}", debian.display()))?;
    let tmp = debian.join(format!(".download.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let result = (|| -> Result<()> {
        // As root, apt downloads as its sandbox user _apt, which must be able to write.
        if is_root() {
            let _ = Command::new("chown").arg("_apt").arg(&tmp).stderr(Stdio::null()).status();
        }
        output(Command::new("apt-get").args(["download", "-q", package]).current_dir(&tmp))?;
        let deb = std::fs::read_dir(&tmp)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or("apt-get download left no .deb")?;
        let root = tmp.join("root");
        output(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))?;
        let release = std::fs::read_dir(root.join("lib/modules"))
            .map_err(|e| format!("no modules in {package}: {e}"))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next()
            .ok_or(format!("no modules in {package}"))?;
        let moddir = root.join("lib/modules").join(&release);
        let modules = resolve_modules(&moddir, &moddir.join("modules.builtin"))?;
        // Keep only what the guest needs; the directory appears in the cache complete, by
        // one rename, so that two runs at the same time cannot see half of it.
        let keep = tmp.join("keep");
        std::fs::create_dir_all(keep.join("modules")).map_err(|e| e.to_string())?;
        let copy = |from: &Path, to: &Path| {
            std::fs::copy(from, to).map_err(|e| format!("copying {}: {e}", from.display()))
        };
        copy(&root.join(format!("boot/vmlinuz-{release}")), &keep.join("vmlinuz"))?;
        copy(&moddir.join("modules.builtin"), &keep.join("modules.builtin"))?;
        for module in &modules {
            copy(module, &keep.join("modules").join(module.file_name().unwrap_or_default()))?;
        }
        let write = |name: &str, text: String| {
            std::fs::write(keep.join(name), text).map_err(|e| format!("writing {name}: {e}"))
        };
        write("kernel-release", format!("{release}\n"))?;
        write("package", format!("{}\n", deb.file_name().unwrap_or_default().to_string_lossy()))?;
        write(".complete", String::new())?;
        if !dir.join(".complete").exists() {
            // Left over by an older version, or half of one.
            let _ = std::fs::remove_dir_all(dir);
        }
        // Fails if another run was first, which is as good.
        let _ = std::fs::rename(&keep, dir);
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result?;
    if !dir.join(".complete").exists() {
        return Err(format!("could not store the kernel in {}", dir.display()));
    }
    Ok(())
}

/// The kernels to try, in order, for `--kernel`.
pub fn kernel_order(choice: KernelChoice) -> Vec<KernelChoice> {
    match choice {
        KernelChoice::Auto => vec![KernelChoice::Host, KernelChoice::Debian],
        other => vec![other],
    }
}

// ---- the initramfs ----------------------------------------------------------------------

/// The guest's initramfs, in the cache.
#[derive(Debug, Clone)]
pub struct Initramfs {
    pub path: PathBuf,
    /// "built" or "cached".
    pub note: &'static str,
}

/// One entry of a newc cpio archive (what the kernel unpacks into the initramfs). Public
/// for tests/switch.rs, which lays a second archive with its own `/init` over ours.
pub fn cpio_entry(archive: &mut Vec<u8>, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
    let ino = archive.len() as u32 + 1;
    let fields = [ino, mode, 0, 0, 1, 0, data.len() as u32, 0, 0, rdev.0, rdev.1];
    archive.extend_from_slice(b"070701");
    for field in fields {
        archive.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    archive.extend_from_slice(format!("{:08X}{:08X}", name.len() + 1, 0).as_bytes());
    archive.extend_from_slice(name.as_bytes());
    archive.push(0);
    while !archive.len().is_multiple_of(4) {
        archive.push(0);
    }
    archive.extend_from_slice(data);
    while !archive.len().is_multiple_of(4) {
        archive.push(0);
    }
}

/// A module's ELF file: busybox insmod reads plain ELF only; distributions compress them.
fn module_bytes(file: &Path) -> Result<Vec<u8>> {
    let name = file.to_string_lossy();
    let tool = if name.ends_with(".ko") {
        return std::fs::read(file).map_err(|e| format!("reading {name}: {e}"));
    } else if name.ends_with(".ko.xz") {
        "xz"
    } else if name.ends_with(".ko.zst") {
        "zstd"
    } else if name.ends_with(".ko.gz") {
        "gzip"
    } else {
        return Err(format!("do not know how to unpack {name}"));
    };
    let out = Command::new(tool)
        .args(["-dc"])
        .arg(file)
        .output()
        .map_err(|e| format!("{tool} (to unpack {name}): {e}"))?;
    if !out.status.success() {
        return Err(format!("{tool} -dc {name} failed"));
    }
    Ok(out.stdout)
}

/// The busybox that goes into the guest: it must be static, the guest has no libraries.
pub fn find_busybox() -> Result<PathBuf> {
    let busybox = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("busybox")).find(|p| p.is_file()))
        .ok_or("busybox is missing: apt-get install busybox-static")?;
    let ldd = Command::new("ldd").arg(&busybox).env("LC_ALL", "C").output();
    if let Ok(out) = ldd {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !text.contains("not a dynamic executable") {
            return Err(format!(
                "{} is linked dynamically; the guest has no libraries: apt-get install \
                 busybox-static",
                busybox.display()
            ));
        }
    }
    Ok(busybox)
}

/// A gzipped newc cpio with busybox, `/init` (scripts/vm/init.sh), the modules and their
/// load order; built once per kernel and content, then found in `cache`. Written in Rust,
/// with /dev/console as an archive entry: no root needed (mknod), no cpio.
pub fn build_initramfs(kernel: &Kernel, cache: &Path) -> Result<Initramfs> {
    let busybox = find_busybox()?;
    let busybox_bytes =
        std::fs::read(&busybox).map_err(|e| format!("reading {}: {e}", busybox.display()))?;
    let mut modules = Vec::new();
    for file in &kernel.modules {
        let file_name = file.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let name = file_name.split(".ko").next().unwrap_or(&file_name).to_owned();
        modules.push((name, module_bytes(file)?));
    }
    let mut hasher = DefaultHasher::new();
    hasher.write(INIT_SCRIPT.as_bytes());
    hasher.write(&busybox_bytes);
    for (name, bytes) in &modules {
        hasher.write(name.as_bytes());
        hasher.write(bytes);
    }
    let path =
        cache.join("initramfs").join(format!("{}-{:016x}.cpio.gz", kernel.id, hasher.finish()));
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
        return Ok(Initramfs { path, note: "cached" });
    }
    const DIR: u32 = 0o040755;
    const FILE: u32 = 0o100644;
    const EXEC: u32 = 0o100755;
    let mut archive = Vec::new();
    for dir in [".", "bin", "dev", "lib", "lib/modules", "lib/modules/tapbook", "proc", "sys"] {
        cpio_entry(&mut archive, dir, DIR, (0, 0), &[]);
    }
    cpio_entry(&mut archive, "bin/busybox", EXEC, (0, 0), &busybox_bytes);
    // The kernel opens /dev/console for init before anything could mount devtmpfs.
    cpio_entry(&mut archive, "dev/console", 0o020600, (5, 1), &[]);
    cpio_entry(&mut archive, "init", EXEC, (0, 0), INIT_SCRIPT.as_bytes());
    let mut order = String::new();
    for (name, bytes) in &modules {
        cpio_entry(&mut archive, &format!("lib/modules/tapbook/{name}.ko"), FILE, (0, 0), bytes);
        order.push_str(name);
        order.push('\n');
    }
    cpio_entry(&mut archive, "lib/modules/tapbook/load-order", FILE, (0, 0), order.as_bytes());
    cpio_entry(&mut archive, "TRAILER!!!", 0, (0, 0), &[]);

    let dir = cache.join("initramfs");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    // Written under a name of its own, then renamed: a run at the same time may do the
    // same, and either result is the same file. Of its own also among the threads of one
    // process (tests that boot guests at the same time).
    let part = dir.join(format!(".part.{}", crate::unique_name("initramfs")));
    let file = std::fs::File::create(&part).map_err(|e| format!("{}: {e}", part.display()))?;
    let mut gzip = Command::new("gzip")
        .arg("-9n")
        .stdin(Stdio::piped())
        .stdout(file)
        .spawn()
        .map_err(|e| format!("running gzip: {e}"))?;
    let written = gzip.stdin.take().map(|mut s| s.write_all(&archive));
    let status = gzip.wait().map_err(|e| format!("gzip: {e}"))?;
    if !status.success() || !matches!(written, Some(Ok(()))) {
        let _ = std::fs::remove_file(&part);
        return Err("gzip failed to pack the initramfs".into());
    }
    std::fs::rename(&part, &path).map_err(|e| format!("storing {}: {e}", path.display()))?;
    Ok(Initramfs { path, note: "built" })
}

/// Finds the first usable kernel in `order` (which it shortens) and its initramfs,
/// printing what it chose, or why not.
pub fn pick_kernel(order: &mut Vec<KernelChoice>, cache: &Path) -> Result<(Kernel, Initramfs)> {
    while !order.is_empty() {
        let which = order.remove(0);
        let kernel = match which {
            KernelChoice::Host => host_kernel(),
            _ => debian_kernel(cache),
        };
        match kernel {
            Ok(kernel) => {
                let initramfs = build_initramfs(&kernel, cache)?;
                let names: Vec<String> = kernel
                    .modules
                    .iter()
                    .map(|m| {
                        let f = m.file_name().unwrap_or_default().to_string_lossy();
                        f.split(".ko").next().unwrap_or(&f).to_owned()
                    })
                    .collect();
                let kib = std::fs::metadata(&initramfs.path).map_or(0, |m| m.len().div_ceil(1024));
                say(format_args!("    kernel:    {}", kernel.description));
                say(format_args!(
                    "    modules:   {} (insmod in this order; the rest is built in)",
                    names.join(" ")
                ));
                say(format_args!(
                    "    initramfs: {} ({}, {kib} KiB: busybox, scripts/vm/init.sh, the modules)",
                    initramfs.path.display(),
                    initramfs.note
                ));
                return Ok((kernel, initramfs));
            }
            Err(why) if which == KernelChoice::Host => {
                say(format_args!("    not this machine's kernel: {why}"))
            }
            Err(why) => say(format_args!("    not Debian's cloud kernel: {why}")),
        }
    }
    Err("no usable guest kernel (see above)".into())
}

// ---- booting the guest -------------------------------------------------------------------

/// What QEMU boots, and how.
#[derive(Debug, Clone)]
pub struct Guest {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub accel: Accel,
    pub mode: Mode,
    pub count: u32,
    /// The NIC's MAC address ([`GUEST_MAC`] unless there are several guests).
    pub mac: String,
    /// More kernel options for the guest's init, e.g. `tapbook.ip=dhcp`.
    pub append: String,
}

/// QEMU's command line (after the program's name) for `guest`, its NIC on `netdev` (a
/// `-netdev` value with `id=net0`), its process ID written to `pidfile`.
pub fn qemu_args(guest: &Guest, netdev: &str, pidfile: &Path) -> Vec<String> {
    let serial = if guest.mode == Mode::Shell { "mon:stdio" } else { "stdio" };
    let (accel, mode, count) = (guest.accel.name(), guest.mode.name(), guest.count);
    let (mac, extra) = (&guest.mac, &guest.append);
    let kernel = guest.kernel.display();
    let initrd = guest.initramfs.display();
    let pidfile = pidfile.display();
    // ANCHOR: qemu
    let args = [
        "-name tapbook-guest -machine pc -m 256 -smp 1".to_owned(),
        format!("-accel {accel}"),
        "-nodefaults -no-user-config -nographic -no-reboot".to_owned(),
        format!("-serial {serial}"),
        format!("-kernel {kernel} -initrd {initrd}"),
        format!("-netdev {netdev}"),
        format!("-device virtio-net-pci,netdev=net0,mac={mac},romfile="),
        format!("-pidfile {pidfile}"),
    ];
    let append = format!(
        "console=ttyS0 loglevel=3 edd=off panic=-1 tapbook.mode={mode} tapbook.count={count}"
    );
    // ANCHOR_END: qemu
    let append = if extra.is_empty() { append } else { format!("{append} {extra}") };
    let mut argv: Vec<String> = args.iter().flat_map(|a| a.split(' ').map(str::to_owned)).collect();
    argv.extend(["-append".to_owned(), append]);
    argv
}

/// The guest's serial console without carriage returns and the terminal control
/// sequences with which SeaBIOS resets and clears the screen (the reset becomes a line
/// break: SeaBIOS and the kernel do not end their last lines).
pub fn clean_console(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\x1b' => match chars.peek() {
                Some('c') => {
                    chars.next();
                    out.push('\n');
                }
                Some('[') => {
                    chars.next();
                    while let Some(&n) = chars.peek() {
                        chars.next();
                        if n.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
                _ => out.push(c),
            },
            _ => out.push(c),
        }
    }
    match out.strip_prefix('\n') {
        Some(rest) => rest.to_owned(),
        None => out,
    }
}

/// How far the guest got, from its console (the `[guest]` lines of init.sh).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestState {
    Starting,
    Init,
    Finished,
    NoEth0,
}

pub fn guest_state(console: &str) -> GuestState {
    if console.contains("[guest] no eth0") {
        GuestState::NoEth0
    } else if ["[guest] done", "[guest] shell:", "[guest] staying up"]
        .iter()
        .any(|l| console.contains(l))
    {
        GuestState::Finished
    } else if console.contains("[guest] init started") {
        GuestState::Init
    } else {
        GuestState::Starting
    }
}

/// How a boot ended, as far as the host could see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The guest did its pings (and now waits, or has a shell, or stays up).
    Finished,
    /// KVM did not reach the guest's init in time (common inside a virtual machine).
    AccelFailed,
    /// The kernel brought up no virtio-net NIC.
    NoEth0,
    Timeout,
    /// QEMU exited first.
    Exited,
    /// Ctrl-C.
    Stopped,
}

/// A QEMU running a guest: its console (written to a file) and its input.
pub struct Boot {
    pub child: Child,
    pub console: PathBuf,
    pub input: Option<ChildStdin>,
    pub started: Instant,
    copier: Option<std::thread::JoinHandle<()>>,
}

impl Boot {
    pub fn console_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.console).unwrap_or_default()).into_owned()
    }

    /// Says "poweroff" to a guest in batch mode and waits (10 s at most) for QEMU to end.
    pub fn poweroff(&mut self) {
        if let Some(mut input) = self.input.take() {
            let _ = input.write_all(b"poweroff\n");
        }
        let child = &mut self.child;
        wait_until(Duration::from_secs(10), || child.try_wait().is_ok_and(|s| s.is_some()));
    }

    /// Stops QEMU (SIGTERM, SIGKILL after 3 s); the pid file names QEMU when a tracer
    /// (strace) started it.
    pub fn stop(&mut self, pidfile: &Path) {
        let qemu = std::fs::read_to_string(pidfile).ok().and_then(|p| p.trim().parse::<i32>().ok());
        for pid in qemu.into_iter().chain([self.child.id() as i32]) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
        }
        let child = &mut self.child;
        if !wait_until(Duration::from_secs(3), || child.try_wait().is_ok_and(|s| s.is_some())) {
            let _ = child.kill();
        }
        let _ = self.child.wait();
        if let Some(copier) = self.copier.take() {
            let _ = copier.join();
        }
    }
}

/// Starts QEMU with `cmd` (QEMU's command, in whatever namespace, maybe under a tracer),
/// its console into the file `console`. Interactive: the console is also this terminal,
/// which is QEMU's input; otherwise its input is a pipe ([`Boot::poweroff`]).
pub fn boot(mut cmd: Command, console: &Path, interactive: bool) -> Result<Boot> {
    let file = std::fs::File::create(console)
        .map_err(|e| format!("creating {}: {e}", console.display()))?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    if interactive {
        cmd.stdin(Stdio::inherit()).stdout(Stdio::piped()).stderr(err);
    } else {
        cmd.stdin(Stdio::piped()).stdout(file.try_clone().map_err(|e| e.to_string())?).stderr(err);
    }
    let mut child = cmd.spawn().map_err(|e| format!("starting QEMU ({cmd:?}): {e}"))?;
    let started = Instant::now();
    let input = child.stdin.take();
    // The terminal sees what the file gets, as it comes (tee).
    let copier = child.stdout.take().map(|mut from| {
        let mut file = file;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = file.write_all(&buf[..n]);
                let mut out = std::io::stdout();
                let _ = out.write_all(&buf[..n]);
                let _ = out.flush();
            }
        })
    });
    Ok(Boot { child, console: console.to_owned(), input, started, copier })
}

/// Waits until the guest has finished its pings, or failed. With `kvm_may_fail`, KVM
/// gets [`KVM_WAIT`] to reach the guest's init (the caller then falls back to TCG).
pub fn watch_guest(boot: &mut Boot, accel: Accel, kvm_may_fail: bool) -> Verdict {
    let deadline = boot.started + BOOT_TIMEOUT;
    let init_deadline =
        if accel == Accel::Kvm && kvm_may_fail { boot.started + KVM_WAIT } else { deadline };
    loop {
        let state = guest_state(&boot.console_text());
        match state {
            GuestState::Finished => return Verdict::Finished,
            GuestState::NoEth0 => return Verdict::NoEth0,
            _ => {}
        }
        if boot.child.try_wait().is_ok_and(|s| s.is_some()) {
            return Verdict::Exited;
        }
        if stopped() {
            return Verdict::Stopped;
        }
        let now = Instant::now();
        if state == GuestState::Starting && now >= init_deadline {
            return if accel == Accel::Kvm { Verdict::AccelFailed } else { Verdict::Timeout };
        }
        if now >= deadline {
            return Verdict::Timeout;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// QEMU's version, e.g. "7.2.22".
pub fn qemu_version() -> String {
    let text = output(Command::new("qemu-system-x86_64").arg("--version")).unwrap_or_default();
    let first = text.lines().next().unwrap_or("");
    first.split("version ").nth(1).and_then(|v| v.split_whitespace().next()).unwrap_or("?").into()
}

/// Whether KVM is there to try: /dev/kvm opens for reading and writing.
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()
}

/// What to boot, besides the kernel: the accelerator (`None`: KVM if it works, else
/// TCG), what the guest does after its pings, and how many.
#[derive(Debug, Clone)]
pub struct GuestOptions {
    pub accel: Option<Accel>,
    pub mode: Mode,
    pub count: u32,
    /// Where another kernel's initramfs goes, if this one brings up no NIC.
    pub cache: PathBuf,
    /// The console is this terminal (`--shell`).
    pub interactive: bool,
    /// The NIC's MAC and more kernel options ([`Guest`]).
    pub mac: String,
    pub append: String,
}

/// A guest that got as far as the end of its pings.
pub struct Booted {
    pub run: Boot,
    pub accel: Accel,
    /// The accelerator, and why that one, in words.
    pub accel_note: String,
    pub kernel: Kernel,
    pub initramfs: Initramfs,
    /// From QEMU's start to the guest's results.
    pub boot_time: Duration,
    /// QEMU's process ID file.
    pub pidfile: PathBuf,
}

/// Boots `first` (a kernel and its initramfs) with QEMU as `qemu` makes it for a
/// [`Guest`] (in a namespace, on some network, maybe under strace; its `-pidfile` is
/// `log`/qemu.pid), its console into `log`, until the guest has done its pings: where
/// KVM does not get the guest going it starts again with TCG, and where the kernel
/// brings up no NIC it tries the next of `kernels`. Says what it did, for each retry.
pub fn boot_guest(
    wanted: &GuestOptions,
    kernels: &mut Vec<KernelChoice>,
    first: (Kernel, Initramfs),
    log: &Path,
    mut qemu: impl FnMut(&Guest) -> Command,
) -> Result<Booted> {
    let (mut kernel, mut initramfs) = first;
    let pidfile = log.join("qemu.pid");
    let mut accels = match wanted.accel {
        Some(accel) => vec![accel],
        None if kvm_usable() => vec![Accel::Kvm, Accel::Tcg],
        None => vec![Accel::Tcg],
    };
    let mut accel_note = match wanted.accel {
        None => "TCG (software emulation): /dev/kvm is not there or not usable".to_owned(),
        Some(a) => format!("{}, as --accel {} asked", a.name().to_uppercase(), a.name()),
    };
    loop {
        let accel = accels[0];
        let guest = Guest {
            kernel: kernel.image.clone(),
            initramfs: initramfs.path.clone(),
            accel,
            mode: wanted.mode,
            count: wanted.count,
            mac: wanted.mac.clone(),
            append: wanted.append.clone(),
        };
        let _ = std::fs::remove_file(&pidfile);
        let console = log.join(format!("serial-{}.txt", accel.name()));
        let mut run = boot(qemu(&guest), &console, wanted.interactive)?;
        match watch_guest(&mut run, accel, accels.len() > 1) {
            Verdict::Finished => {
                if accel == Accel::Kvm {
                    accel_note = "KVM (hardware virtualization)".into();
                }
                let boot_time = run.started.elapsed();
                return Ok(Booted {
                    run,
                    accel,
                    accel_note,
                    kernel,
                    initramfs,
                    boot_time,
                    pidfile,
                });
            }
            Verdict::AccelFailed => {
                run.stop(&pidfile);
                say(format_args!(
                    "    KVM did not get the guest to its init within {} s; the last console line:",
                    KVM_WAIT.as_secs()
                ));
                let text = clean_console(&run.console_text());
                let last = text
                    .lines()
                    .rfind(|l| !l.trim().is_empty() && !l.contains("terminating on signal"))
                    .unwrap_or("");
                say(format_args!("    {last}"));
                say(
                    "    (KVM inside a virtual machine often fails like this) -> falling back to TCG",
                );
                accel_note =
                    "TCG (software emulation): /dev/kvm is there but KVM did not boot the guest"
                        .into();
                accels.remove(0);
            }
            Verdict::NoEth0 => {
                run.stop(&pidfile);
                say(format_args!(
                    "    {} booted, but brought up no virtio-net NIC; trying the next kernel",
                    kernel.description
                ));
                (kernel, initramfs) = pick_kernel(kernels, &wanted.cache)?;
            }
            Verdict::Stopped => {
                run.stop(&pidfile);
                return Err("stopped (signal); the lab is removed".into());
            }
            other => {
                let took = run.started.elapsed();
                run.stop(&pidfile);
                let text = clean_console(&run.console_text());
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                crate::tell(indent(&tail, "    "));
                return Err(format!(
                    "the guest did not finish its pings ({other:?} after {} s; console above)",
                    seconds(took)
                ));
            }
        }
        if accels.is_empty() {
            return Err("no accelerator left to try".into());
        }
    }
}

// ---- the bridge lab ------------------------------------------------------------------------

// ANCHOR: lab
/// The lab of the earlier chapters (tap4 with 172.16.1.1/24, made by scripts/setup.sh)
/// turned into a segment with three stations: each command runs in the lab namespace.
const BRIDGE_LAB: &[&[&str]] = &[
    // On a bridge the ports are wires, and the host's address belongs to the bridge
    // itself: with it on tap4, the host's route to 172.16.1.0/24 would send its replies
    // to the guest out of tap4 straight to our responder, never across the bridge.
    &["ip", "addr", "del", "172.16.1.1/24", "dev", "tap4"],
    // A fixed MAC for the host's side, so that runs (and the book) agree; without one
    // the bridge takes the lowest MAC of its ports, which are random.
    &["ip", "link", "add", "br0", "address", "02:00:00:00:00:01", "type", "bridge"],
    &["ip", "link", "set", "tap4", "master", "br0"],
    // A persistent TAP for QEMU made in advance (as libvirt does), so it is on the
    // bridge before the guest boots; QEMU attaches to it by name and adds the flags it
    // wants.
    &["ip", "tuntap", "add", "dev", "vnet0", "mode", "tap", "user", "root"],
    &["ip", "link", "set", "vnet0", "master", "br0", "up"],
    &["ip", "addr", "add", "172.16.1.1/24", "dev", "br0"],
    &["ip", "link", "set", "br0", "up"],
];
// ANCHOR_END: lab

/// `$ CMD` in the lab, then its output, indented.
fn shown(lab: &Lab, argv: &[&str]) -> Result<()> {
    say(format_args!("    $ {}", argv.join(" ")));
    let text = output(lab.command(argv[0]).args(&argv[1..]))?;
    if !text.trim().is_empty() {
        say(indent(&text, "      "));
    }
    Ok(())
}

/// Builds 05_full_responder (cargo build --release) and returns its path.
pub fn build_responder() -> Result<PathBuf> {
    let mut built = crate::ours::build_release(&["05_full_responder"])?;
    built.pop().ok_or_else(|| "cargo build did not say where 05_full_responder is".into())
}

/// The tools the VM lab needs, as Debian packages when missing.
fn missing_tools(options: &Options) -> Vec<&'static str> {
    let mut tools = vec![
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("busybox", "busybox-static"),
        ("gzip", "gzip"),
        ("bridge", "iproute2"),
        ("setpriv", "util-linux"),
    ];
    if options.strace.is_some() {
        tools.push(("strace", "strace"));
    }
    tools.into_iter().filter(|(tool, _)| !tool_exists(tool)).map(|(_, package)| package).collect()
}

/// What both labs check before they make anything: the tools, the machine, a namespace
/// name that is free (root) or user namespaces that work (not root), and the user who
/// runs our programs. Returns the namespace's name (root) and that user.
pub(crate) fn lab_checks(options: &Options) -> Result<(Option<String>, String)> {
    let root = is_root();
    let missing = missing_tools(options);
    if !missing.is_empty() {
        return Err(format!(
            "missing tools; install them with:  sudo apt-get install {}",
            missing.join(" ")
        ));
    }
    if std::env::consts::ARCH != "x86_64" {
        return Err(format!(
            "this lab boots an x86-64 guest and needs an x86-64 host (this is {})",
            std::env::consts::ARCH
        ));
    }
    let netns = root.then(|| {
        options.netns.clone().unwrap_or_else(|| format!("tapbook-vm-{}", std::process::id()))
    });
    if let Some(name) = &netns {
        let list = output(Command::new("ip").args(["netns", "list"]))?;
        if list.lines().any(|l| l.split_whitespace().next() == Some(name)) {
            return Err(format!(
                "network namespace {name} exists already; the VM lab deletes its namespace at \
                 the end, so pick a new name with --netns (or remove it: sudo ip netns del {name})"
            ));
        }
    } else {
        if let Some(why) = userns_blocked() {
            return Err(why);
        }
        ensure_clone_device("the VM lab")?;
    }
    let user = options.user.clone().unwrap_or_else(lab_user);
    if root {
        output(Command::new("id").args(["-u", &user]))
            .map_err(|_| format!("no such user: '{user}'"))?;
    }
    Ok((netns, user))
}

fn run_bridge(options: &Options) -> Result<ExitCode> {
    let start = Instant::now();
    let root = is_root();
    say("tapbook VM lab: a Linux guest on a TAP pings our responder across a bridge");

    let bin = match &options.bin {
        Some(bin) => {
            section(format_args!("1. The responder: {}", bin.display()));
            bin.clone()
        }
        None => {
            section("1. Building 05_full_responder");
            let bin = build_responder()?;
            say(format_args!("    {}", repo_path(&bin)));
            bin
        }
    };
    let bin = std::fs::canonicalize(&bin).map_err(|e| format!("{}: {e}", bin.display()))?;

    let (netns, user) = lab_checks(options)?;
    let log = TempDir::new("vm")?;
    catch_stop_signals();

    section("2. The guest's kernel and initramfs");
    let mut kernels = kernel_order(options.kernel);
    std::fs::create_dir_all(&options.cache)
        .map_err(|e| format!("creating {}: {e}", options.cache.display()))?;
    let (kernel, initramfs) = pick_kernel(&mut kernels, &options.cache)?;
    check_stop()?;

    match &netns {
        Some(name) => section(format_args!("3. The lab, in network namespace {name}")),
        None => section("3. The lab, in a user namespace of its own (no root, no sudo)"),
    }
    let lab = Lab::create(netns.clone(), if root { &user } else { "root" })?;
    match &netns {
        Some(name) => {
            say(format_args!("    $ scripts/setup.sh --netns {name} --user {user}"));
            say(format_args!(
                "      (tap4, persistent, owned by {user}, with {KERNEL_IP}/24, up: the lab \
                 of the earlier chapters)"
            ));
        }
        None => {
            say("    $ scripts/setup.sh --user root");
            say(format_args!(
                "      (tap4, persistent, owned by root of this user namespace: you; with \
                 {KERNEL_IP}/24, up: the lab of the earlier chapters)"
            ));
        }
    }
    for argv in BRIDGE_LAB {
        shown(&lab, argv)?;
    }
    shown(&lab, &["bridge", "link", "show"])?;
    check_stop()?;

    let how = if root { String::new() } else { " (you, with no capabilities)".to_owned() };
    section(format_args!("4. 05_full_responder on {IFACE}, as {user}{how}"));
    let pcap = match &options.pcap {
        Some(pcap) => pcap.clone(),
        None => log.0.join("responder.pcap"),
    };
    // Made by us, then handed to the responder's user, who may not create files here.
    std::fs::File::create(&pcap).map_err(|e| format!("creating {}: {e}", pcap.display()))?;
    if root {
        let uid = nix::unistd::User::from_name(&user).ok().flatten().map(|u| u.uid.as_raw());
        std::os::unix::fs::chown(&pcap, uid, None)
            .map_err(|e| format!("chown {}: {e}", pcap.display()))?;
    }
    let pcap_arg = pcap.to_string_lossy().into_owned();
    say(format_args!("    $ 05_full_responder --iface {IFACE} --pcap {pcap_arg}"));
    let mut lab = lab;
    let mut responder =
        lab.spawn(&bin.to_string_lossy(), &["--iface", IFACE, "--pcap", &pcap_arg], Some(&user));
    lab.wait_attached(&mut responder)?;
    let first = responder.output().lines().next().unwrap_or("").to_owned();
    say(format_args!("    attached (pid {}): {first}", responder.pid()));

    let mode = if options.shell {
        Mode::Shell
    } else if options.keep {
        Mode::Keep
    } else {
        Mode::Batch
    };
    if options.shell {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
            return Err("--shell needs a terminal".into());
        }
        say("");
        say("The guest's console will be this terminal. While the guest runs, look at the host's");
        say(format_args!(
            "side from another terminal, e.g.:  {} bridge fdb show br {BRIDGE}",
            lab.enter_command()
        ));
    }
    section(format_args!("5. Booting the guest (QEMU {}) on {VM_TAP}", qemu_version()));
    let pidfile = log.0.join("qemu.pid");
    let strace_file = log.0.join("strace.txt");
    let netdev = format!("tap,id=net0,ifname={VM_TAP},script=no,downscript=no");
    let wanted = GuestOptions {
        accel: options.accel,
        mode,
        count: options.count,
        cache: options.cache.clone(),
        interactive: options.shell,
        mac: GUEST_MAC.to_owned(),
        append: String::new(),
    };
    let booted = boot_guest(&wanted, &mut kernels, (kernel, initramfs), &log.0, |guest| {
        let mut cmd = if options.strace.is_some() {
            let mut cmd = lab.command("strace");
            cmd.args(["-f", "-o"]).arg(&strace_file);
            cmd.args(["-s", "26", "-x", "-e", "trace=openat,ioctl,read,writev,close"]);
            cmd.arg("qemu-system-x86_64");
            cmd
        } else {
            lab.command("qemu-system-x86_64")
        };
        cmd.args(qemu_args(guest, &netdev, &pidfile));
        cmd
    })?;
    let Booted { run: mut boot_run, accel_note, kernel, boot_time, .. } = booted;

    if options.shell {
        // The guest's console is this terminal until the guest powers off.
        let _ = boot_run.child.wait();
        if let Some(copier) = boot_run.copier.take() {
            let _ = copier.join();
        }
        section("6. The guest has powered off (its console was this terminal)");
        section(format_args!(
            "7. The bridge forgot the guest's MAC when QEMU closed {VM_TAP} (no carrier: port \
             disabled)"
        ));
        say(indent(&fdb(&lab)?, "    "));
    } else {
        // Taken while the guest is still up: when QEMU closes its TAP the port loses its
        // carrier and the bridge forgets the MACs it learnt there.
        let snapshot = host_view(&lab)?;
        if options.keep {
            section(format_args!(
                "6. The guest's console so far (QEMU's -serial stdio), booted with {accel_note}"
            ));
            say(indent(&clean_console(&boot_run.console_text()), "    "));
            section("7. The host's view while the guest is up");
            say(snapshot.trim_end());
            let qemu = std::fs::read_to_string(&pidfile).unwrap_or_default();
            say("");
            say("The lab keeps running until you press Ctrl-C (then it is removed):");
            say(format_args!(
                "  guest {GUEST_IP}: QEMU pid {}, console log {}",
                qemu.trim(),
                boot_run.console.display()
            ));
            say(format_args!(
                "  responder {RESPONDER_IP}: pid {}, capture {}",
                responder.pid(),
                pcap.display()
            ));
            let enter = lab.enter_command();
            say(format_args!("Try:   {enter} ping -c 3 {GUEST_IP}"));
            say(format_args!("       {enter} bridge fdb show br {BRIDGE}"));
            while !stopped() && boot_run.child.try_wait().is_ok_and(|s| s.is_none()) {
                std::thread::sleep(Duration::from_millis(200));
            }
            boot_run.stop(&pidfile);
        } else {
            boot_run.poweroff();
            section(format_args!(
                "6. The guest's console (QEMU's -serial stdio), booted with {accel_note}"
            ));
            say(indent(&clean_console(&boot_run.console_text()), "    "));
            say(format_args!(
                "    (the guest reached its results {} s after QEMU started)",
                seconds(boot_time)
            ));
            section("7. The host's view while the guest was up");
            say(snapshot.trim_end());
        }
    }
    boot_run.stop(&pidfile);

    section("8. The responder's output, stopped with SIGTERM (it prints its counters)");
    let status = stop_responder(&mut responder);
    say(indent(&responder.output(), "    "));
    match status {
        Some(s) if s.success() => {}
        Some(s) => return Err(format!("the responder exited with {s}")),
        None => return Err("the responder did not stop within 5 s of SIGTERM".into()),
    }

    section(format_args!("9. The frames on {IFACE}, from the responder's --pcap file"));
    say(capture_summary(&pcap));

    if let Some(out) = &options.strace {
        section(format_args!(
            "10. QEMU's system calls on its TAP (strace; the whole trace: {}.all)",
            out.display()
        ));
        let all = std::fs::read_to_string(&strace_file)
            .map_err(|e| format!("reading QEMU's trace: {e}"))?;
        let mut whole = out.as_os_str().to_owned();
        whole.push(".all");
        std::fs::write(&whole, &all).map_err(|e| format!("writing {}: {e}", out.display()))?;
        let tap_calls = tap_syscalls(&all);
        std::fs::write(out, &tap_calls).map_err(|e| format!("writing {}: {e}", out.display()))?;
        say(indent(&tap_calls, "    "));
    }

    section("Result");
    if options.shell {
        say(format_args!("    the guest ran with {accel_note}; its console was this terminal."));
        say(format_args!("    took {} s in all", seconds(start.elapsed())));
        return Ok(ExitCode::SUCCESS);
    }
    let console = clean_console(&boot_run.console_text());
    let summary = ping_summary(&console, RESPONDER_IP);
    let received = summary
        .as_deref()
        .and_then(|s| s.split(", ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    say(format_args!(
        "    guest's ping of our responder ({RESPONDER_IP}): {}",
        summary.as_deref().unwrap_or("no summary")
    ));
    say(format_args!("    kernel: {}", kernel.description));
    say(format_args!("    accelerator: {accel_note}"));
    say(format_args!(
        "    the guest reached its results {} s after QEMU started",
        seconds(boot_time)
    ));
    say(format_args!("    took {} s in all", seconds(start.elapsed())));
    drop(lab);
    if received == 0 {
        return Err(format!("the guest's pings to {RESPONDER_IP} got no replies"));
    }
    Ok(ExitCode::SUCCESS)
}

fn stop_responder(responder: &mut Responder) -> Option<std::process::ExitStatus> {
    responder.signal(Signal::SIGTERM);
    responder.wait_exit(Duration::from_secs(5))
}

/// The line after busybox ping's "--- ADDR ping statistics ---".
pub fn ping_summary(console: &str, addr: &str) -> Option<String> {
    let header = format!("--- {addr} ping statistics ---");
    let mut lines = console.lines().skip_while(|l| l.trim() != header);
    lines.next()?;
    Some(lines.next()?.trim().to_owned())
}

/// The bridge's forwarding table without the ports' multicast entries (`self`).
fn fdb(lab: &Lab) -> Result<String> {
    let text = output(lab.command("bridge").args(["fdb", "show", "br", BRIDGE]))?;
    Ok(text.lines().filter(|l| !l.contains(" self")).collect::<Vec<_>>().join("\n"))
}

/// The bridge's table, the TAPs' flags and the offloads each program accepted.
fn host_view(lab: &Lab) -> Result<String> {
    let mut out = format!(
        "    $ bridge fdb show br {BRIDGE} | grep -v self      (without the ports' multicast \
         entries)\n{}\n\n",
        indent(&fdb(lab)?, "    ")
    );
    out += "    TAP flags (/sys/class/net/IFACE/tun_flags) while both programs are attached:\n";
    for dev in [IFACE, VM_TAP] {
        let flags = output(lab.command("cat").arg(format!("/sys/class/net/{dev}/tun_flags")))?;
        out += &format!("      {dev}: {}\n", describe_tun_flags(&flags));
    }
    // What each program told the kernel it can take (TUNSETOFFLOAD): frames with the
    // checksum left to finish, and TCP segments larger than the MTU.
    out += "\n";
    if tool_exists("ethtool") {
        out += "    Offloads the kernel may use towards each program (ethtool -k IFACE):\n";
        for dev in [IFACE, VM_TAP] {
            let text = output(lab.command("ethtool").args(["-k", dev]))?;
            let wanted: Vec<String> = text
                .lines()
                .filter_map(|l| l.split_once(": "))
                .filter(|(k, _)| ["tx-checksumming", "tcp-segmentation-offload"].contains(k))
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            out += &format!("      {dev}: {}\n", wanted.join(", "));
        }
    } else {
        out += "    (install ethtool to see the offloads each program accepted)\n";
    }
    Ok(out)
}

/// A summary of the frames in `pcap`, by tshark, else tcpdump.
fn capture_summary(pcap: &Path) -> String {
    let name = pcap.file_name().unwrap_or_default().to_string_lossy();
    let run = |tool: &str, args: &[&str]| -> String {
        let out = Command::new(tool).args(args).arg(pcap).stdin(Stdio::null()).output();
        let text = out.map(|o| {
            format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
        });
        let text = text.unwrap_or_else(|e| format!("{tool}: {e}"));
        let kept: Vec<&str> =
            text.lines().filter(|l| !l.starts_with("Running as user \"root\"")).collect();
        indent(&kept.join("\n"), "    ")
    };
    if tool_exists("tshark") {
        format!("    $ tshark -r {name} -n\n{}", run("tshark", &["-n", "-r"]))
    } else if tool_exists("tcpdump") {
        format!("    $ tcpdump -r {name} -n -e\n{}", run("tcpdump", &["-n", "-e", "-r"]))
    } else {
        format!("    (install tshark or tcpdump to see a summary; the file is {})", pcap.display())
    }
}

/// From QEMU's whole trace (strace -f -x -s 26): the descriptor it got for /dev/net/tun,
/// every ioctl on it, and its first frames read and written until it is closed. After the
/// first two frames, multicast ones (the IPv6 and IGMP chatter of the host's side) are
/// left out, and reads that found nothing (EAGAIN).
pub fn tap_syscalls(trace: &str) -> String {
    // Is the frame in this read/writev line multicast? Its buffer starts with the
    // virtio-net header (zero bytes here), then the destination MAC.
    let multicast = |line: &str| {
        let Some(i) = line.find('"') else { return false };
        let mut s = &line[i + 1..];
        while let Some(rest) = s.strip_prefix("\\x00") {
            s = rest;
        }
        s.starts_with("\\x33\\x33") || s.starts_with("\\x01\\x00\\x5e")
    };
    let mut out = String::new();
    let mut pending: std::collections::HashMap<String, String> = Default::default();
    let mut fd: Option<String> = None;
    let (mut frames, mut shown, mut left_out) = (0, 0, 0);
    for raw in trace.lines() {
        let pid = raw.split_whitespace().next().unwrap_or("").to_owned();
        // strace -f splits a call that another thread interrupted into "<unfinished ...>"
        // and "<... NAME resumed>" lines; put them back together.
        if let Some(start) = raw.strip_suffix(" <unfinished ...>") {
            pending.insert(pid, start.to_owned());
            continue;
        }
        let line = match raw.find("<... ").filter(|_| raw.contains(" resumed>")) {
            Some(_) => {
                let Some(start) = pending.remove(&pid) else { continue };
                let rest = raw.split_once(" resumed>").map_or("", |(_, r)| r);
                format!("{start}{}", rest.strip_prefix(' ').unwrap_or(rest))
            }
            None => raw.to_owned(),
        };
        let Some(fd) = &fd else {
            if line.contains("openat(AT_FDCWD, \"/dev/net/tun\"") {
                fd = line.split_whitespace().last().map(str::to_owned);
                out += &line;
                out += "\n";
            }
            continue;
        };
        if line.contains(&format!("ioctl({fd},")) {
            out += &line;
            out += "\n";
        } else if (line.contains(&format!("read({fd},")) || line.contains(&format!("writev({fd},")))
            && !line.contains("EAGAIN")
        {
            frames += 1;
            if frames <= 2 || (shown < 12 && !multicast(&line)) {
                out += &line;
                out += "\n";
                shown += 1;
            } else {
                left_out += 1;
            }
        } else if line.contains(&format!("close({fd})")) {
            out += &format!(
                "   ... {left_out} more frames left out (multicast, or after the first 12)\n"
            );
            out += &line;
            out += "\n";
            break;
        }
    }
    out
}

// ---- recordings for the book ------------------------------------------------------------

/// The files [`record_vm_lab`] writes.
pub const VM_LAB_FILES: &[&str] = &[
    "vm-lab.txt",
    "vm-lab-prepare.txt",
    "vm-lab-guest.txt",
    "vm-lab-host.txt",
    "vm-lab-responder.txt",
    "vm-lab-capture.txt",
    "vm-lab-result.txt",
    "vm-strace.txt",
];

/// Runs `cargo lab vm ARGS` (this very program) in `dir`, as `user` if given (with that
/// user's home, so that cargo and the cache are theirs), its output and errors as one.
fn run_vm_lab(args: &[&str], dir: &Path, user: Option<&nix::unistd::User>) -> Result<String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding cargo-lab: {e}"))?;
    let log = dir.join(".run.txt");
    let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = match user {
        Some(u) => {
            let mut cmd = Command::new("setpriv");
            cmd.arg(format!("--reuid={}", u.uid))
                .arg(format!("--regid={}", u.gid))
                .args(["--init-groups", "--"])
                .arg(exe)
                .env("HOME", &u.dir)
                .env("USER", &u.name)
                .env("LOGNAME", &u.name)
                .env_remove("SUDO_USER");
            cmd
        }
        None => Command::new(exe),
    };
    let status = cmd
        .arg("vm")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .status()
        .map_err(|e| format!("running cargo lab vm: {e}"))?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    if !status.success() {
        return Err(format!("cargo lab vm {} failed:\n{text}", args.join(" ")));
    }
    Ok(text)
}

/// For "Meet a real VM" (`cargo lab record vm-lab`): `cargo lab vm`, whole and cut at its
/// "== N." headings, and a second run with `--strace`, into `dirs.out`. The chapter
/// teaches the lab without root first: run through sudo, the runs are the user's behind
/// it, rootless, as they would type it; as root itself, the root form.
pub fn record_vm_lab(dirs: &crate::record::Dirs) -> Result<()> {
    let tmp = TempDir::new("vm-record")?;
    let student = std::env::var("SUDO_USER")
        .ok()
        .filter(|u| is_root() && !u.is_empty() && u != "root")
        .and_then(|u| nix::unistd::User::from_name(&u).ok().flatten());
    if let Some(u) = &student {
        // The student's runs write the trace into the directory.
        std::os::unix::fs::chown(&tmp.0, Some(u.uid.as_raw()), Some(u.gid.as_raw()))
            .map_err(|e| format!("chown {}: {e}", tmp.0.display()))?;
    }
    // Root itself: the responder runs as nobody, shown; a user (behind sudo or not):
    // the rootless lab.
    let (shown, extra): (&str, &[&str]) = if is_root() && student.is_none() {
        ("sudo cargo lab vm --user nobody", &["--user", "nobody"])
    } else {
        ("cargo lab vm", &[])
    };
    let whole = run_vm_lab(extra, &tmp.0, student.as_ref())?;
    let traced = [extra, &["--strace", "qemu-tap.strace"]].concat();
    run_vm_lab(&traced, &tmp.0, student.as_ref())?;
    let strace = std::fs::read_to_string(tmp.0.join("qemu-tap.strace"))
        .map_err(|e| format!("reading the trace: {e}"))?;
    let mut files: Vec<(String, String)> = vec![
        ("vm-lab.txt".into(), format!("$ {shown}\n{whole}")),
        (
            "vm-strace.txt".into(),
            format!("$ {shown} --strace qemu-tap.strace\n$ cat qemu-tap.strace\n{strace}"),
        ),
    ];
    // The parts of the first run, cut where a heading "== N." or "== Result" starts.
    let mut parts: Vec<(&str, String)> =
        ["prepare", "guest", "host", "responder", "capture", "result"]
            .iter()
            .map(|p| (*p, String::new()))
            .collect();
    let mut part = 0;
    for line in format!("$ {shown}\n{whole}").lines() {
        if let Some(heading) = line.strip_prefix("== ") {
            let number = heading.split(['.', ' ']).next().unwrap_or("");
            part = match number {
                "1" | "2" | "3" | "4" | "5" => 0,
                "6" => 1,
                "7" => 2,
                "8" => 3,
                "9" => 4,
                "Result" => 5,
                _ => return Err(format!("unexpected heading in the run: {line}")),
            };
        }
        parts[part].1 += line;
        parts[part].1 += "\n";
    }
    for (name, text) in parts {
        if text.trim().is_empty() {
            return Err(format!("the run printed no section for '{name}'"));
        }
        // No blank line at the start or the end of a part.
        files.push((format!("vm-lab-{name}.txt"), format!("{}\n", text.trim_matches('\n'))));
    }
    for (name, text) in &files {
        let path = dirs.out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

/// What [`record_vm_ours`] writes.
pub const VM_OURS_FILES: &[&str] = &["12-vm-ours.txt"];

/// For chapter 12's "No root, no TAP" (`cargo lab record vm-ours`): the end of
/// `cargo lab vm --network ours --guests 2` (its "== Result" section: the leases, the
/// pings, the switch's table), run as root as the book shows it (`sudo`: the programs
/// still run as nobody); run as a user, the same command without sudo.
pub fn record_vm_ours(dirs: &crate::record::Dirs) -> Result<()> {
    let tmp = TempDir::new("vm-ours-record")?;
    let args = ["--network", "ours", "--guests", "2"];
    let shown = if is_root() { "sudo cargo lab vm" } else { "cargo lab vm" };
    let run = run_vm_lab(&args, &tmp.0, None)?;
    let result = run
        .find("== Result")
        .map(|at| &run[at..])
        .ok_or_else(|| format!("no '== Result' in the run:\n{run}"))?;
    for want in ["lease of 172.16.1.100 from 172.16.1.2", "ping 172.16.1.101: 3 packets"] {
        if !result.contains(want) {
            return Err(format!("the run did not go as the book says ({want:?}):\n{run}"));
        }
    }
    let text = format!("$ {shown} {}\n{}\n", args.join(" "), result.trim_end());
    let text = crate::wrap::fit(&text, crate::wrap::WIDTH);
    let path = dirs.out.join(VM_OURS_FILES[0]);
    std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first bytes QEMU's serial console gave (`-serial stdio`, TCG, Debian's 6.1
    /// cloud kernel with our initramfs), as `od -c` showed them: SeaBIOS resets and clears
    /// the terminal, twice.
    const CONSOLE: &[u8] =
        b"\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2-debian-1.16.2-1)\r\n\
Booting from ROM...\r\n\x1bc\x1b[?7l\x1b[2J[guest] init started: Linux 6.1.0-57-cloud-amd64, \
mode batch\r\n";

    #[test]
    fn the_console_loses_its_terminal_sequences() {
        let text = clean_console(&String::from_utf8_lossy(CONSOLE));
        assert_eq!(
            text,
            "SeaBIOS (version 1.16.2-debian-1.16.2-1)\nBooting from ROM...\n\n\
             [guest] init started: Linux 6.1.0-57-cloud-amd64, mode batch\n"
        );
        assert_eq!(guest_state(&text), GuestState::Init);
        assert_eq!(guest_state("SeaBIOS"), GuestState::Starting);
        assert_eq!(guest_state("[guest] no eth0: this kernel"), GuestState::NoEth0);
        let done = format!("{text}[guest] done; waiting for the host to say poweroff\n");
        assert_eq!(guest_state(&done), GuestState::Finished);
    }

    /// Lines of `strace -f -s 26 -x -e trace=openat,ioctl,read,writev,close` on QEMU in a
    /// run of `cargo lab vm --strace` (the frames' bytes cut short by -s 26); the pair
    /// "<unfinished ...>" / "<... resumed>" is how strace -f prints a call that another
    /// thread's call interrupted, and the EAGAIN read one that found nothing.
    const TRACE: &str = r#"26945 openat(AT_FDCWD, "/etc/qemu/qemu.conf", O_RDONLY) = -1 ENOENT (No such file or directory)
26945 openat(AT_FDCWD, "/dev/net/tun", O_RDWR) = 3
26945 ioctl(3, TUNGETFEATURES, 0x7fff1f93d94c) = 0
26945 ioctl(3, TUNSETIFF, 0x7fff1f93d950) = 0
26951 ioctl(3, TUNSETOFFLOAD, 0x1f <unfinished ...>
26945 read(3, "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x33\x33\x00\x00\x00\x16\x56\x78\xc5\x38\xdf\x2a\x86\xdd\x60\x00"..., 69632) = 100
26951 <... ioctl resumed>)              = 0
26945 read(3, "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x33\x33\xff\x38\xdf\x2a\x56\x78\xc5\x38\xdf\x2a\x86\xdd"..., 69632) = 98
26945 read(3, "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x33\x33\x00\x00\x00\x16\x56\x78\xc5\x38\xdf\x2a\x86\xdd"..., 69632) = 110
26945 read(3, 0x7f764d17a000, 69632)    = -1 EAGAIN (Resource temporarily unavailable)
26945 writev(3, [{iov_base="\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\x52\x54\x00\x12\x34\x56\x08\x06"..., iov_len=54}], 1) = 54
26945 read(3, "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x52\x54\x00\x12\x34\x56\x02\x00\x00\x00\x00\x02\x08\x06"..., 69632) = 54
26945 close(3)                          = 0
26945 read(3, "\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x3e\x00\x01\x00\x00\x00\x00\x00"..., 832) = 832
"#;

    #[test]
    fn the_trace_keeps_the_taps_calls_and_the_first_unicast_frames() {
        let kept = tap_syscalls(TRACE);
        let lines: Vec<&str> = kept.lines().collect();
        assert_eq!(lines[0], r#"26945 openat(AT_FDCWD, "/dev/net/tun", O_RDWR) = 3"#);
        assert!(lines[1].contains("TUNGETFEATURES") && lines[2].contains("TUNSETIFF"));
        // The first two frames, multicast or not; the interrupted call, put back together
        // where it ended; then the unicast frames only.
        assert!(lines[3].contains("= 100") && lines[5].contains("= 98"), "{kept}");
        assert_eq!(lines[4], "26951 ioctl(3, TUNSETOFFLOAD, 0x1f)              = 0");
        assert!(lines[6].starts_with("26945 writev(3, ") && lines[7].contains("\\x52\\x54"));
        assert_eq!(lines[8], "   ... 1 more frames left out (multicast, or after the first 12)");
        assert_eq!(lines[9], "26945 close(3)                          = 0");
        assert_eq!(lines.len(), 10, "{kept}");
    }

    #[test]
    fn tun_flags_read_as_the_lab_shows_them() {
        // /sys/class/net/IFACE/tun_flags of tap4 (05 attached) and vnet0 (QEMU attached).
        assert_eq!(describe_tun_flags("0x1802\n"), "tap no_pi persist (tun_flags 0x1802)");
        assert_eq!(describe_tun_flags("0x7802"), "tap no_pi persist vnet_hdr (tun_flags 0x7802)");
    }

    /// The newc format of the kernel's Documentation/driver-api/early-userspace/
    /// buffer-format.rst: "070701", thirteen 8-digit hex fields, the name with its NUL,
    /// padded to 4 bytes, the data, padded to 4 bytes.
    #[test]
    fn an_initramfs_entry_is_newc() {
        let mut archive = Vec::new();
        cpio_entry(&mut archive, "dev/console", 0o020600, (5, 1), &[]);
        cpio_entry(&mut archive, "init", 0o100755, (0, 0), b"#!/bin/sh\n");
        let header = String::from_utf8_lossy(&archive[..110]).into_owned();
        let fields: Vec<&str> = (0..13).map(|i| &header[6 + 8 * i..14 + 8 * i]).collect();
        assert!(header.starts_with("070701"));
        assert_eq!(fields[1], format!("{:08X}", 0o020600), "mode: a character device");
        assert_eq!((fields[6], fields[9], fields[10]), ("00000000", "00000005", "00000001"));
        assert_eq!(fields[11], "0000000C", "name length, with its NUL");
        assert_eq!(&archive[110..122], b"dev/console\0");
        // 110 + 12 = 122, padded to 124: the next header.
        assert_eq!(&archive[122..124], b"\0\0");
        assert_eq!(&archive[124..130], b"070701");
        let second = String::from_utf8_lossy(&archive[124..234]).into_owned();
        assert_eq!(&second[6 + 8 * 6..14 + 8 * 6], "0000000A", "file size");
        // 124 + 110 + "init\0" = 239, padded to 240; then the 10 data bytes, padded to 252.
        assert_eq!(&archive[240..250], b"#!/bin/sh\n");
        assert_eq!(archive.len(), 252);
    }
}
