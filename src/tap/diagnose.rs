//! Chapter 1, when it goes wrong: what exactly is the matter, and the one command that
//! fixes it here.
//!
//! An errno alone is ambiguous. `ENOENT` from `open("/dev/net/tun")` means either that
//! the driver is not loaded or that the node is missing; `EINVAL` from `TUNSETIFF` means
//! a TUN where we asked for a TAP, a multi-queue TAP, an interface that is no TUN/TAP at
//! all, or a name the kernel does not accept. So after a failure we look around (the
//! node's type and device number, `/sys/class/misc/tun`, `/sys/class/net/NAME`) and say
//! which it is. And a fix is only useful if it fits the situation: the interface the user
//! named with `--iface`, the network namespace the program runs in.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::{Mode, fstat};

use super::{CLONE_DEVICE, TapError};
use crate::cli::DEFAULT_IFACE;

/// The clone device's device number, fixed since Linux 2.4: the misc driver's major 10,
/// minor 200 (`Documentation/admin-guide/devices.txt`, "200 = /dev/net/tun").
pub const TUN_MAJOR: u64 = 10;
pub const TUN_MINOR: u64 = 200;

/// `tun_flags` bits (`include/uapi/linux/if_tun.h`).
const IFF_TUN: u32 = 0x0001;
use super::IFF_MULTI_QUEUE;

/// Where an interface is: its name and, when the program runs inside a named network
/// namespace (`ip netns exec NAME`), that namespace, which every fix must name too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub name: String,
    pub netns: Option<String>,
}

impl Place {
    /// The interface `name` in the namespace this process runs in.
    pub fn here(name: &str) -> Place {
        Place { name: name.to_owned(), netns: current_netns() }
    }

    /// `sudo scripts/setup.sh` with the options that make it prepare this interface in
    /// this namespace, for this user (setup.sh's default user is the one behind sudo,
    /// who is not the user a program in a namespace runs as).
    pub fn setup_command(&self) -> String {
        let mut command = "sudo scripts/setup.sh".to_owned();
        if self.name != DEFAULT_IFACE {
            command += &format!(" --iface {}", self.name);
        }
        if let Some(netns) = &self.netns {
            command += &format!(" --netns {netns}");
            let uid = nix::unistd::getuid();
            if !uid.is_root() {
                command += &format!(" --user {}", user_name(uid));
            }
        }
        command
    }

    /// `sudo ip ARGS`, run in this namespace (`ip -n NAME` is `ip netns exec NAME ip`).
    pub fn ip_command(&self, args: &str) -> String {
        match &self.netns {
            Some(netns) => format!("sudo ip -n {netns} {args}"),
            None => format!("sudo ip {args}"),
        }
    }
}

/// The width of a terminal nobody resized: the messages we print fit in it.
pub const COLUMNS: usize = 78;

/// `Fix: COMMAND` on one line when it fits in [`COLUMNS`], else the command on a line of
/// its own (a long namespace or interface name), so that it can still be copied whole.
pub fn fix_line(command: &str) -> String {
    if "Fix: ".len() + command.chars().count() <= COLUMNS {
        format!("Fix: {command}")
    } else {
        format!("Fix:\n  {command}")
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

// ANCHOR: current_netns
/// The name of the network namespace we run in, if it has one: `ip netns add NAME` keeps
/// the namespace alive by bind-mounting it on `/run/netns/NAME`, so the namespace whose
/// device and inode numbers match our own `/proc/self/ns/net` is ours.
pub fn current_netns() -> Option<String> {
    let ours = fs::metadata("/proc/self/ns/net").ok()?;
    fs::read_dir("/run/netns").ok()?.flatten().find_map(|entry| {
        let meta = fs::metadata(entry.path()).ok()?;
        (meta.dev() == ours.dev() && meta.ino() == ours.ino())
            .then(|| entry.file_name().to_string_lossy().into_owned())
    })
}
// ANCHOR_END: current_netns

/// What is wrong with the clone device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloneDevice {
    /// No `/dev/net/tun`; `driver` says whether the tun driver is registered.
    Missing { driver: bool },
    /// Something that is not a character device has the name (a file, a directory).
    NotCharDevice,
    /// A character device with another number: another driver's device, or none.
    WrongNumber { major: u64, minor: u64 },
    /// The right node, but no driver behind it: the module is not loaded.
    NoDriver,
}

impl CloneDevice {
    /// What the matter is, in a sentence or two (without the fix).
    pub fn describe(&self) -> String {
        match self {
            CloneDevice::Missing { driver: false } => format!(
                "{CLONE_DEVICE} does not exist, and the tun driver is not loaded\n\
                 (no /sys/class/misc/tun)."
            ),
            CloneDevice::Missing { driver: true } => format!(
                "{CLONE_DEVICE} does not exist, although the tun driver is loaded\n\
                 (/sys/class/misc/tun is there): the device node was never made."
            ),
            CloneDevice::NotCharDevice => {
                format!("{CLONE_DEVICE} is not a character device.")
            }
            CloneDevice::WrongNumber { major, minor } => format!(
                "{CLONE_DEVICE} is character device {major}:{minor}, not the clone\n\
                 device {TUN_MAJOR}:{TUN_MINOR}: it leads to another driver, or to none."
            ),
            CloneDevice::NoDriver => format!(
                "{CLONE_DEVICE} is the right node ({TUN_MAJOR}:{TUN_MINOR}), but no driver \
                 answers it:\nthe tun module is not loaded."
            ),
        }
    }

    /// The command that fixes it.
    pub fn fix(&self) -> String {
        let mknod = format!("sudo mknod -m 0666 {CLONE_DEVICE} c {TUN_MAJOR} {TUN_MINOR}");
        match self {
            CloneDevice::Missing { driver: false } | CloneDevice::NoDriver => {
                "sudo modprobe tun".to_owned()
            }
            CloneDevice::Missing { driver: true } => format!("sudo mkdir -p /dev/net && {mknod}"),
            CloneDevice::NotCharDevice | CloneDevice::WrongNumber { .. } => {
                format!("sudo rm {CLONE_DEVICE} && {mknod}")
            }
        }
    }
}

/// Whether the tun driver is registered (as a module or built in).
fn tun_driver_loaded() -> bool {
    Path::new("/sys/class/misc/tun").exists()
}

/// Looks at the node and the driver after `open(/dev/net/tun)` or `TUNSETIFF` failed
/// with an errno that says "not the device we wanted" (ENOENT, ENODEV, ENXIO, ENOTTY).
/// `opened` is the descriptor if the open itself worked: what it leads to is the truth,
/// whatever the path shows now.
pub fn clone_device(opened: Option<&OwnedFd>) -> Option<CloneDevice> {
    let (is_char, rdev) = match opened {
        Some(fd) => {
            let stat = fstat(fd.as_fd()).ok()?;
            let kind = nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode);
            (kind.contains(nix::sys::stat::SFlag::S_IFCHR), stat.st_rdev)
        }
        None => match fs::metadata(CLONE_DEVICE) {
            Err(_) => return Some(CloneDevice::Missing { driver: tun_driver_loaded() }),
            Ok(meta) => (meta.file_type().is_char_device(), meta.rdev()),
        },
    };
    if !is_char {
        return Some(CloneDevice::NotCharDevice);
    }
    let (major, minor) = (libc::major(rdev) as u64, libc::minor(rdev) as u64);
    if (major, minor) != (TUN_MAJOR, TUN_MINOR) {
        return Some(CloneDevice::WrongNumber { major, minor });
    }
    (!tun_driver_loaded()).then_some(CloneDevice::NoDriver)
}

// ANCHOR: open_clone_device
/// Opens the clone device, and when that fails, says why and what to do.
pub fn open_clone_device() -> Result<OwnedFd, TapError> {
    let flags = OFlag::O_RDWR | OFlag::O_CLOEXEC;
    open(CLONE_DEVICE, flags, Mode::empty()).map_err(|errno| match errno {
        Errno::ENOENT | Errno::ENODEV | Errno::ENXIO | Errno::ENOTDIR => match clone_device(None) {
            Some(problem) => TapError::CloneDevice(problem),
            None => TapError::Io { what: "opening", name: CLONE_DEVICE.into(), errno },
        },
        // Not allowed to open it; but if it is not the clone device at all, that is what
        // needs fixing first.
        Errno::EACCES | Errno::EPERM => match clone_device(None) {
            Some(problem @ (CloneDevice::NotCharDevice | CloneDevice::WrongNumber { .. })) => {
                TapError::CloneDevice(problem)
            }
            _ => TapError::CloneDeviceAccess(errno),
        },
        errno => TapError::Io { what: "opening", name: CLONE_DEVICE.to_owned(), errno },
    })
}
// ANCHOR_END: open_clone_device

/// Why `TUNSETIFF` on `fd` for `place` failed with `errno`, with the fix.
pub fn tunsetiff_error(errno: Errno, fd: &OwnedFd, place: &Place) -> TapError {
    match errno {
        Errno::EPERM => TapError::NotPermitted { place: place.clone() },
        Errno::EBUSY => TapError::Busy { place: place.clone() },
        Errno::EINVAL => wrong_kind(place),
        // The open worked, but what we opened is not the clone device (a node with
        // another number, say /dev/null's 1:3): "Inappropriate ioctl for device".
        Errno::ENOTTY => match clone_device(Some(fd)) {
            Some(problem) => TapError::CloneDevice(problem),
            None => TapError::Io { what: "TUNSETIFF on", name: place.name.clone(), errno },
        },
        errno => TapError::Io { what: "TUNSETIFF on", name: place.name.clone(), errno },
    }
}

/// What kind of interface the name belongs to, when `TUNSETIFF` says EINVAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No interface of that name: the kernel refused the name itself.
    None,
    Tun,
    MultiQueueTap,
    /// A TAP whose flags still do not match ours.
    OtherTap,
    /// A veth, a bridge, a dummy...: not made by the tun driver.
    NotTunTap,
}

fn wrong_kind(place: &Place) -> TapError {
    if !super::interface_exists(&place.name) {
        return TapError::BadName {
            name: place.name.clone(),
            why: "the kernel refused it (EINVAL from TUNSETIFF)",
        };
    }
    let flags = fs::read_to_string(format!("/sys/class/net/{}/tun_flags", place.name))
        .ok()
        .and_then(|text| u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok());
    let kind = match flags {
        None => Kind::NotTunTap,
        Some(flags) if flags & IFF_TUN != 0 => Kind::Tun,
        Some(flags) if flags & IFF_MULTI_QUEUE != 0 => Kind::MultiQueueTap,
        Some(_) => Kind::OtherTap,
    };
    TapError::WrongKind { place: place.clone(), kind }
}

/// The message for [`TapError::WrongKind`].
pub fn wrong_kind_message(place: &Place, kind: Kind) -> String {
    let name = &place.name;
    let what = match kind {
        Kind::Tun => "a TUN (IP packets, no Ethernet header), not a TAP",
        Kind::MultiQueueTap => "a multi-queue TAP; we open a single queue",
        Kind::OtherTap | Kind::None => "a TAP made with other flags than ours",
        Kind::NotTunTap => "not a TUN/TAP interface at all (ip -d link show says what)",
    };
    let mut text = format!("{name} exists but we cannot attach to it (EINVAL):\nit is {what}.\n");
    let lab = Place { name: DEFAULT_IFACE.into(), ..place.clone() };
    match (kind, *name == lab.name) {
        // The lab's own name: setup.sh recreates it as the lab needs it, address and all.
        (Kind::NotTunTap, true) => {
            let other = Place { name: "tap5".into(), ..place.clone() };
            text += &format!(
                "{}\n(then run with --iface tap5; or remove this tap4 first, \
                 if it is yours)",
                fix_line(&other.setup_command())
            );
        }
        (Kind::NotTunTap, false) => {
            text += &format!(
                "Fix: leave out --iface {name}: the lab's TAP is tap4\n\
                 (if there is none yet, make it with\n{})",
                lab.setup_command()
            );
        }
        (_, true) => {
            text += &format!(
                "{}\n(it deletes {name} and makes it the lab's TAP again)",
                fix_line(&place.setup_command())
            );
        }
        // Another name: make just that interface a TAP, and leave the lab's tap4 and its
        // address alone (setup.sh would give this one the same address).
        (_, false) => {
            let user = match nix::unistd::getuid() {
                uid if uid.is_root() => String::new(),
                uid => format!(" user {}", user_name(uid)),
            };
            text += &format!(
                "Fix: {} &&\n  {}\n(a persistent TAP of the same name; nothing else changes)",
                place.ip_command(&format!("link del {name}")),
                place.ip_command(&format!("tuntap add {name} mode tap{user}")),
            );
        }
    }
    text
}

/// The login name of `uid`, or the number if it has none.
fn user_name(uid: nix::unistd::Uid) -> String {
    let user = nix::unistd::User::from_uid(uid).ok().flatten();
    user.map_or_else(|| uid.to_string(), |user| user.name)
}

// ANCHOR: created_notice
/// What a program says when `TUNSETIFF` created the interface (run as root before
/// `scripts/setup.sh`): such a TAP is transient, down and has no address, so `ping`
/// answers "Network is unreachable". `our_ip` is the program's address; the kernel's
/// side gets the .1 (or .2) of its /24, as setup.sh would give it.
pub fn created_notice(place: &Place, our_ip: std::net::Ipv4Addr) -> String {
    let [a, b, c, d] = our_ip.octets();
    let kernel = std::net::Ipv4Addr::new(a, b, c, if d == 1 { 2 } else { 1 });
    let name = &place.name;
    format!(
        "{name} did not exist, so the kernel created it for this program. It is\n\
         transient (it vanishes when we exit), down and without an address:\n\
         ping says \"Network is unreachable\". In another terminal, give the\n\
         kernel's side its address and bring it up:\n    \
         {}\n    \
         {}\n\
         (Or stop here and run {} once:\n\
         it makes a persistent {name} that needs no root.)",
        place.ip_command(&format!("addr add {kernel}/24 dev {name}")),
        place.ip_command(&format!("link set {name} up")),
        place.setup_command(),
    )
}
// ANCHOR_END: created_notice

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_name_the_interface_and_the_namespace() {
        let here = Place { name: "tap4".into(), netns: None };
        assert_eq!(here.setup_command(), "sudo scripts/setup.sh");
        assert_eq!(here.ip_command("link set tap4 up"), "sudo ip link set tap4 up");
        let tap9 = Place { name: "tap9".into(), netns: None };
        assert_eq!(tap9.setup_command(), "sudo scripts/setup.sh --iface tap9");
        let lab = Place { name: "tap4".into(), netns: Some("lab".into()) };
        assert!(lab.setup_command().starts_with("sudo scripts/setup.sh --netns lab"));
        assert_eq!(lab.ip_command("link set tap4 up"), "sudo ip -n lab link set tap4 up");
    }

    #[test]
    fn every_clone_device_problem_has_its_own_fix() {
        let problems = [
            CloneDevice::Missing { driver: false },
            CloneDevice::Missing { driver: true },
            CloneDevice::NotCharDevice,
            CloneDevice::WrongNumber { major: 1, minor: 3 },
            CloneDevice::NoDriver,
        ];
        for problem in &problems {
            assert!(problem.describe().lines().all(|l| l.len() <= 78), "{problem:?}");
        }
        assert_eq!(problems[0].fix(), "sudo modprobe tun");
        assert!(problems[1].fix().contains("mknod -m 0666 /dev/net/tun c 10 200"));
        assert!(problems[3].fix().starts_with("sudo rm /dev/net/tun && "));
    }

    #[test]
    fn the_kernel_side_gets_the_other_end_of_the_link() {
        let place = Place { name: "tap4".into(), netns: None };
        let text = created_notice(&place, std::net::Ipv4Addr::new(172, 16, 1, 2));
        assert!(text.contains("    sudo ip addr add 172.16.1.1/24 dev tap4\n"), "{text}");
        assert!(text.contains("    sudo ip link set tap4 up\n"), "{text}");
        assert!(text.lines().all(|l| l.len() <= 78), "{text}");
    }
}
