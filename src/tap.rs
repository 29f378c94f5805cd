//! Chapter 1: the clone device `/dev/net/tun`, the `TUNSETIFF` ioctl and an owned TAP
//! handle that reads and writes whole Ethernet frames.
//!
//! Opening `/dev/net/tun` gives a file descriptor that is not yet attached to anything;
//! `TUNSETIFF` on it creates the interface (or attaches to an existing persistent one) and
//! from then on every `read` returns one frame the kernel sent out of that interface and
//! every `write` injects one frame as if it had arrived on the wire.

use std::ffi::CStr;
use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::OFlag;

use crate::signals;

/// The clone device: opening it hands out a fresh, unattached TUN/TAP file descriptor.
pub const CLONE_DEVICE: &str = "/dev/net/tun";

/// The kernel's names for the `IFF_*` bits (`include/uapi/linux/if_tun.h`), as
/// `ip -d link` prints some of them: what `TUNGETFEATURES` offers and what
/// `/sys/class/net/NAME/tun_flags` shows.
pub const IFF_NAMES: [(u32, &str); 10] = [
    (0x0001, "tun"),
    (0x0002, "tap"),
    (0x0010, "napi"),
    (0x0020, "napi_frags"),
    (0x0040, "no_carrier"),
    (0x0100, "multi_queue"),
    (0x0800, "persist"),
    (0x1000, "no_pi"),
    (0x2000, "one_queue"),
    (0x4000, "vnet_hdr"),
];

/// The names of the `IFF_*` bits set in `flags`, in the kernel's order.
pub fn iff_names(flags: u32) -> Vec<&'static str> {
    IFF_NAMES.iter().filter(|(bit, _)| flags & bit != 0).map(|(_, name)| *name).collect()
}

/// The largest MTU the kernel lets a TAP have: `ip -d link show tap4` says `maxmtu 65521`,
/// which is 65535 less the 14-byte Ethernet header.
pub const MAX_MTU: usize = 65521;

// ANCHOR: buffer_len
/// How large a read buffer must be so that no frame is ever cut short: the MTU counts the
/// IP packet only, so a frame adds the 14-byte Ethernet header, plus 4 bytes should the
/// kernel hand over a VLAN tag. We size for the largest MTU a TAP accepts, not the
/// current one (1500 by default, needing 1514), so raising the MTU while a program runs
/// (`ip link set tap4 mtu 9000`) can never truncate a frame. 64 KiB is allocated once.
pub const FRAME_BUFFER_LEN: usize = MAX_MTU + crate::wire::ethernet::HEADER_LEN + 4;
// ANCHOR_END: buffer_len

// ANCHOR: ioctl
// `TUNSETIFF` is defined in <linux/if_tun.h> as `_IOW('T', 202, int)`: direction "write",
// type 'T', number 202, and a size of sizeof(int) = 4, giving 0x400454ca. Yet the
// argument is a `struct ifreq *` (40 bytes), which the kernel reads *and writes back*
// (with the name it chose). The `int` is a historical mistake that can no longer be fixed
// without breaking every program compiled against the old number, so we use nix's "bad"
// macro, which takes the number as given instead of computing it from the argument type.
nix::ioctl_readwrite_bad!(
    tunsetiff,
    nix::request_code_write!(b'T', 202, std::mem::size_of::<libc::c_int>()),
    libc::ifreq
);
// ANCHOR_END: ioctl

// ANCHOR: tungetfeatures
// `TUNGETFEATURES` is `_IOR('T', 207, unsigned int)`: the kernel writes the `IFF_*` flags
// its TUN driver knows into one unsigned int. It works on a descriptor not yet attached.
nix::ioctl_read_bad!(
    tungetfeatures,
    nix::request_code_read!(b'T', 207, std::mem::size_of::<libc::c_uint>()),
    libc::c_uint
);
// ANCHOR_END: tungetfeatures

/// `IFF_*` flags of `TUNSETIFF` and `TUNGETFEATURES` (<linux/if_tun.h>).
pub const IFF_TAP: u32 = 0x0002;
pub const IFF_MULTI_QUEUE: u32 = 0x0100;
pub const IFF_NO_PI: u32 = 0x1000;
pub const IFF_VNET_HDR: u32 = 0x4000;

/// The longest interface name: `IFNAMSIZ` (16) less the terminating NUL.
pub const MAX_NAME_LEN: usize = libc::IFNAMSIZ - 1;

pub mod diagnose;

pub use diagnose::{CloneDevice, Place};

/// A failure, worded so that the reader knows what happened and what to do about it.
/// Every fix is the command for this situation: the interface named with `--iface`, the
/// network namespace the program runs in (see [`diagnose`]).
#[derive(Debug)]
pub enum TapError {
    BadName {
        name: String,
        why: &'static str,
    },
    /// `/dev/net/tun` is missing, is the wrong device, or has no driver behind it.
    CloneDevice(CloneDevice),
    CloneDeviceAccess(Errno),
    NotPermitted {
        place: Place,
    },
    Busy {
        place: Place,
    },
    WrongKind {
        place: Place,
        kind: diagnose::Kind,
    },
    InterfaceDown {
        place: Place,
    },
    InterfaceGone {
        place: Place,
    },
    Io {
        what: &'static str,
        name: String,
        errno: Errno,
    },
}

// ANCHOR: tap_error_display
impl fmt::Display for TapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TapError::BadName { name, why } => {
                write!(f, "{name:?} is not a valid interface name:\n{why}.")
            }
            TapError::CloneDevice(problem) => {
                write!(f, "{}\nFix: {}", problem.describe(), problem.fix())
            }
            TapError::CloneDeviceAccess(errno) => write!(
                f,
                "cannot open {CLONE_DEVICE}: {}.\n\
                 Its file mode does not let you open it (see ls -l {CLONE_DEVICE};\n\
                 most distributions ship mode 0666), or a security module such as\n\
                 SELinux or AppArmor forbids it.\n\
                 Fix: sudo chmod 0666 {CLONE_DEVICE} (scripts/setup.sh does it too)",
                errno.desc()
            ),
            TapError::NotPermitted { place } => write!(
                f,
                "the kernel refused to create or attach {place} (EPERM).\n\
                 Creating a network interface needs CAP_NET_ADMIN, and attaching to\n\
                 an existing one needs it too unless the interface belongs to you.\n\
                 {}\n\
                 (once: it makes a persistent {place} that is yours; then no sudo)",
                diagnose::fix_line(&place.setup_command())
            ),
            TapError::Busy { place } => write!(
                f,
                "{place} is already in use (EBUSY): another program holds it open.\n\
                 Fix: stop the other program (see: fuser -v {CLONE_DEVICE}),\n\
                 or use another interface with --iface."
            ),
            TapError::WrongKind { place, kind } => {
                f.write_str(&diagnose::wrong_kind_message(place, *kind))
            }
            TapError::InterfaceDown { place } => write!(
                f,
                "cannot send on {place}: the interface is down (EIO).\n{}",
                diagnose::fix_line(&place.ip_command(&format!("link set {place} up")))
            ),
            TapError::InterfaceGone { place } => write!(
                f,
                "{place} has been deleted (EBADFD): this file descriptor is no longer\n\
                 attached to any interface.\n\
                 {}\n\
                 (it makes {place} again; then start this program again)",
                diagnose::fix_line(&place.setup_command())
            ),
            TapError::Io { what, name, errno } => {
                write!(f, "{what} {name} failed: {} ({errno})", errno.desc())
            }
        }
    }
}
// ANCHOR_END: tap_error_display

impl std::error::Error for TapError {}

// ANCHOR: check_name
/// Checks a name the way the kernel's `dev_valid_name` and `dev_alloc_name` do, and a
/// little more, so that the mistake is reported here, with its reason, rather than as a
/// bare EINVAL from the ioctl (which would read as "not a TAP").
pub fn check_name(name: &str) -> Result<(), TapError> {
    let bytes = name.as_bytes();
    let pattern = bytes.iter().position(|&b| b == b'%');
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("it is longer than 15 bytes (IFNAMSIZ is 16, with the final NUL)")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are reserved")
    } else if name == "all" || name == "default" {
        Some("'all' and 'default' are reserved\n(/proc/sys/net/ipv4/conf/ uses them)")
    } else if bytes.iter().any(|&b| b == b'/' || b == b':' || b.is_ascii_whitespace()) {
        Some("it contains '/', ':' or white space")
    } else if bytes.iter().any(|b| b.is_ascii_control()) {
        Some("it contains a control character")
    } else if !name.is_ascii() {
        Some(
            "it is not plain ASCII (the kernel would take the bytes,\n\
             but tools and scripts show and type such names differently)",
        )
    } else if pattern
        .is_some_and(|at| bytes.get(at + 1) != Some(&b'd') || bytes[at + 2..].contains(&b'%'))
    {
        Some(
            "'%' may appear once, as '%d' (a pattern like tap%d\n\
             that the kernel fills in with a number)",
        )
    } else {
        None
    };
    match why {
        Some(why) => Err(TapError::BadName { name: name.to_owned(), why }),
        None => Ok(()),
    }
}
// ANCHOR_END: check_name

/// An open TAP interface. Dropping it closes the file descriptor, which detaches the
/// program; a persistent interface survives that, a transient one vanishes with it.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    /// The name we attached to, and our namespace. The interface may be renamed while we
    /// run (`ip link set tap4 name lab0`): [`Tap::name`] asks the kernel by `ifindex`.
    place: Place,
    ifindex: u32,
    /// Whether `TUNSETIFF` created the interface (it did not exist before).
    created: bool,
}

impl Tap {
    // ANCHOR: open
    // ANCHOR: student_ch1_open "chapter 1: open the clone device"
    /// Opens the clone device and attaches it to the TAP called `name`, creating it if it
    /// does not exist (which needs `CAP_NET_ADMIN`).
    pub fn open(name: &str) -> Result<Tap, TapError> {
        check_name(name)?;
        let place = Place::here(name);
        let existed = interface_exists(name);
        let fd = diagnose::open_clone_device()?;
        // IFF_TAP: Ethernet frames, not bare IP packets (that would be IFF_TUN).
        // IFF_NO_PI: no 4-byte "packet information" header before each frame.
        let got = attach(&fd, &place, IFF_TAP | IFF_NO_PI)?;
        let tap = Tap::from_attached(fd, Place { name: got, ..place }, !existed);
        tap.set_nonblocking()?;
        Ok(tap)
    }
    // ANCHOR_END: open
    // ANCHOR_END: student_ch1_open

    /// The options of chapter 9 and of the book's examples, from chapter 1's defaults:
    /// `Tap::options().packet_info(true).open("tap4")`, for example. See
    /// [`TapOptions`](crate::vnet::TapOptions).
    pub fn options() -> crate::vnet::TapOptions {
        crate::vnet::TapOptions::default()
    }

    /// `TUNGETFEATURES`: the `IFF_*` flags this kernel's TUN driver supports, asked on a
    /// descriptor of the clone device that is attached to nothing.
    pub fn features() -> Result<u32, TapError> {
        features_of(&diagnose::open_clone_device()?)
    }

    /// Reads never block inside `read(2)`: when no frame is waiting we sleep in `ppoll`,
    /// which is where a Ctrl-C can interrupt us without a race (see [`signals`]).
    fn set_nonblocking(&self) -> Result<(), TapError> {
        use nix::fcntl::{FcntlArg, fcntl};
        let io_err = |errno| TapError::Io { what: "fcntl on", name: self.name(), errno };
        let flags = fcntl(&self.fd, FcntlArg::F_GETFL).map_err(io_err)?;
        let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
        fcntl(&self.fd, FcntlArg::F_SETFL(flags)).map_err(io_err)?;
        Ok(())
    }

    /// The interface's name now: the one we attached to, unless it was renamed since.
    pub fn name(&self) -> String {
        interface_name(self.ifindex).unwrap_or_else(|| self.place.name.clone())
    }

    /// The interface's index, which stays the same when it is renamed.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Whether the kernel created the interface for us (it did not exist before we
    /// attached): then it is transient, down and has no address. See
    /// [`Tap::created_notice`].
    pub fn created(&self) -> bool {
        self.created
    }

    /// If we created the interface, what the kernel's side still needs, as commands.
    pub fn created_notice(&self, our_ip: std::net::Ipv4Addr) -> Option<String> {
        let place = Place { name: self.name(), ..self.place.clone() };
        self.created.then(|| diagnose::created_notice(&place, our_ip))
    }

    // ANCHOR: read_frame
    /// Reads one whole frame into `buf` and returns its length, or `None` once a stop
    /// signal (Ctrl-C, SIGTERM) has arrived. `buf` should be [`FRAME_BUFFER_LEN`] long:
    /// the kernel silently cuts a frame that does not fit. Interrupted reads are retried.
    pub fn read_frame(&self, buf: &mut [u8]) -> Result<Option<usize>, TapError> {
        self.read_frame_or_idle(buf, || Ok::<(), TapError>(()))
    }

    /// Like [`Tap::read_frame`], but when no frame is waiting, calls `idle` before going
    /// to sleep: the place to flush buffered output, so that a busy program writes in
    /// large blocks and an idle one shows everything at once. An error of `idle` (the
    /// output's, an `io::Error`) comes back as it is, and ours in the same type.
    pub fn read_frame_or_idle<E: From<TapError>>(
        &self,
        buf: &mut [u8],
        mut idle: impl FnMut() -> Result<(), E>,
    ) -> Result<Option<usize>, E> {
        loop {
            if signals::stop_requested() {
                return Ok(None);
            }
            match nix::unistd::read(&self.fd, buf) {
                Ok(len) => return Ok(Some(len)),
                Err(Errno::EAGAIN) => {
                    idle()?;
                    signals::wait_readable(self.fd.as_fd())
                        .map_err(|errno| self.io_error("waiting on", errno))?;
                }
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(self.io_error("reading from", errno).into()),
            }
        }
    }
    // ANCHOR_END: read_frame

    /// Reads one frame if one is waiting, `None` if not: for a program that waits on
    /// several descriptors at once (chapter 11's relay, chapter 12's switch) in its own
    /// `ppoll`.
    pub fn try_read_frame(&self, buf: &mut [u8]) -> Result<Option<usize>, TapError> {
        loop {
            match nix::unistd::read(&self.fd, buf) {
                Ok(len) => return Ok(Some(len)),
                Err(Errno::EAGAIN) => return Ok(None),
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(self.io_error("reading from", errno)),
            }
        }
    }

    // ANCHOR: write_frame
    /// Writes one whole frame: the kernel takes it as if it had arrived on the wire.
    pub fn write_frame(&self, frame: &[u8]) -> Result<(), TapError> {
        loop {
            match nix::unistd::write(&self.fd, frame) {
                Ok(len) if len == frame.len() => return Ok(()),
                // A TAP takes a frame whole or not at all; anything else is a kernel bug.
                Ok(_) => return Err(self.io_error("writing a whole frame to", Errno::EIO)),
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(self.io_error("writing to", errno)),
            }
        }
    }
    // ANCHOR_END: write_frame

    // ANCHOR: io_error
    fn io_error(&self, what: &'static str, errno: Errno) -> TapError {
        // The name now, not the one we attached to: it may have been renamed.
        let place = Place { name: self.name(), ..self.place.clone() };
        match errno {
            // Written while the interface is administratively down.
            Errno::EIO => TapError::InterfaceDown { place },
            // `ip link del` detached us: the descriptor is attached to nothing.
            Errno::EBADFD => TapError::InterfaceGone { place },
            errno => TapError::Io { what, name: place.name, errno },
        }
    }
    // ANCHOR_END: io_error

    // ANCHOR: report
    /// What the kernel says about this descriptor and interface.
    pub fn report(&self) -> KernelReport {
        let fd = self.fd.as_raw_fd();
        let name = self.name();
        let sys = |attr: &str| read_trimmed(format!("/sys/class/net/{name}/{attr}"));
        KernelReport {
            name: name.clone(),
            fd,
            fd_link: fs::read_link(format!("/proc/self/fd/{fd}")).ok(),
            fdinfo_iff: fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok().and_then(
                |info| info.lines().find(|l| l.starts_with("iff:")).map(|l| l.trim().to_owned()),
            ),
            tun_flags: sys("tun_flags"),
            owner: sys("owner"),
            group: sys("group"),
            mtu: sys("mtu"),
        }
    }
    // ANCHOR_END: report
}

// ANCHOR: attach
// ANCHOR: student_ch1_attach "chapter 1: TUNSETIFF"
/// `TUNSETIFF`: attaches `fd`, a fresh descriptor of the clone device, to the interface
/// `place` with `flags`, creating the interface if it does not exist. Returns the name
/// the kernel used (it fills in a `tap%d` pattern).
pub(crate) fn attach(fd: &OwnedFd, place: &Place, flags: u32) -> Result<String, TapError> {
    // SAFETY: ifreq is a plain C struct (a byte array and a union of integers and byte
    // arrays), for which all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(place.name.bytes()) {
        *dst = src as libc::c_char;
    }
    // In C, `ifr.ifr_flags`: a macro for this member of the union.
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;

    // SAFETY: fd is an open descriptor of the clone device and ifr a complete,
    // initialised struct ifreq that outlives the call; the kernel reads and writes
    // exactly sizeof(struct ifreq) bytes of it.
    unsafe { tunsetiff(fd.as_raw_fd(), &mut ifr) }
        .map_err(|errno| diagnose::tunsetiff_error(errno, fd, place))?;

    // The kernel wrote back the name it used.
    // SAFETY: the kernel always NUL-terminates ifr_name within its 16 bytes.
    let got = unsafe { CStr::from_ptr(ifr.ifr_name.as_ptr()) };
    Ok(got.to_string_lossy().into_owned())
}
// ANCHOR_END: attach
// ANCHOR_END: student_ch1_attach

/// `TUNGETFEATURES` on `fd`, a descriptor of the clone device.
pub(crate) fn features_of(fd: &OwnedFd) -> Result<u32, TapError> {
    let mut features: libc::c_uint = 0;
    // SAFETY: fd is an open descriptor; the kernel writes one unsigned int to `features`.
    unsafe { tungetfeatures(fd.as_raw_fd(), &mut features) }.map_err(|errno| {
        // ENOTTY: what we opened is not the clone device (see tap::diagnose).
        match (errno, diagnose::clone_device(Some(fd))) {
            (Errno::ENOTTY, Some(problem)) => TapError::CloneDevice(problem),
            (errno, _) => {
                TapError::Io { what: "TUNGETFEATURES on", name: CLONE_DEVICE.to_owned(), errno }
            }
        }
    })?;
    Ok(features)
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn read_trimmed(path: String) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// Whether an interface of this name exists in our network namespace (asks the kernel
/// through `if_nametoindex`, which works whatever `/sys` shows).
pub fn interface_exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
}

/// The name of the interface with this index, if there is one (`if_indextoname`).
pub fn interface_name(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IFNAMSIZ];
    // SAFETY: buf has the IFNAMSIZ bytes if_indextoname may write, NUL included.
    let name = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if name.is_null() {
        return None;
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    Some(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

/// What the kernel reports about an attached TAP (chapter 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelReport {
    pub name: String,
    pub fd: i32,
    /// `/proc/self/fd/<fd>`: the descriptor still points at the clone device.
    pub fd_link: Option<PathBuf>,
    /// The `iff:` line of `/proc/self/fdinfo/<fd>`: the interface this fd is attached to.
    pub fdinfo_iff: Option<String>,
    /// `/sys/class/net/<name>/tun_flags`: IFF_TAP is 0x0002, IFF_NO_PI 0x1000, and
    /// IFF_PERSIST 0x0800 shows for a persistent interface.
    pub tun_flags: Option<String>,
    /// The uid allowed to attach without `CAP_NET_ADMIN` (-1: nobody in particular).
    pub owner: Option<String>,
    pub group: Option<String>,
    pub mtu: Option<String>,
}

impl fmt::Display for KernelReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or_missing = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unavailable)".into());
        let link = self.fd_link.as_ref().map(|p| p.display().to_string());
        writeln!(f, "interface:                 {}", self.name)?;
        writeln!(f, "file descriptor:           {}", self.fd)?;
        writeln!(f, "/proc/self/fd/{:<12} -> {}", self.fd, or_missing(&link))?;
        writeln!(f, "/proc/self/fdinfo/{:<8} {}", self.fd, or_missing(&self.fdinfo_iff))?;
        let sys = format!("/sys/class/net/{}", self.name);
        writeln!(f, "{sys}/tun_flags  {}", or_missing(&self.tun_flags))?;
        writeln!(f, "{sys}/owner      {}", or_missing(&self.owner))?;
        writeln!(f, "{sys}/group      {}", or_missing(&self.group))?;
        write!(f, "{sys}/mtu        {}", or_missing(&self.mtu))
    }
}

/// `io::Error` for callers that mix TAP errors with other I/O.
impl From<TapError> for io::Error {
    fn from(err: TapError) -> Self {
        io::Error::other(err)
    }
}

// --- Chapter 9 (src/vnet.rs) opens the clone device with more flags (IFF_VNET_HDR,
// IFF_MULTI_QUEUE) and configures it itself; it hands the result over as a Tap. ---
impl Tap {
    /// A `Tap` from a descriptor already attached to the interface `place`, which
    /// `TUNSETIFF` created if `created`.
    pub(crate) fn from_attached(fd: OwnedFd, place: Place, created: bool) -> Tap {
        let ifindex = nix::net::if_::if_nametoindex(place.name.as_str()).unwrap_or(0);
        Tap { fd, place, ifindex, created }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunsetiff_has_the_number_in_the_kernel_headers() {
        // <linux/if_tun.h>: #define TUNSETIFF _IOW('T', 202, int), which is 0x400454ca:
        // direction 01 (write) << 30 | size 4 << 16 | type 'T' (0x54) << 8 | nr 202 (0xca).
        let code = nix::request_code_write!(b'T', 202, std::mem::size_of::<libc::c_int>());
        assert_eq!(code as u64, 0x4004_54ca);
        assert_eq!(std::mem::size_of::<libc::ifreq>(), 40, "the full struct ifreq");
    }

    #[test]
    fn names_are_checked_before_the_kernel_sees_them() {
        assert!(check_name("tap4").is_ok());
        assert!(check_name("tap%d").is_ok());
        assert!(check_name("fifteen-bytes-x").is_ok());
        for bad in [
            "",
            "sixteen-bytes-xx",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "tap\n",
            "all",
            "default",
            "a%b",
            "%d%d",
            "tap%",
            "a\u{1}b",
            "caf\u{e9}",
        ] {
            assert!(matches!(check_name(bad), Err(TapError::BadName { .. })), "{bad:?}");
        }
    }

    #[test]
    fn every_error_says_what_to_do() {
        let place = Place { name: "tap4".to_owned(), netns: Some("lab".to_owned()) };
        for err in [
            TapError::CloneDevice(CloneDevice::Missing { driver: false }),
            TapError::CloneDevice(CloneDevice::WrongNumber { major: 1, minor: 3 }),
            TapError::CloneDeviceAccess(Errno::EACCES),
            TapError::NotPermitted { place: place.clone() },
            TapError::Busy { place: place.clone() },
            TapError::WrongKind { place: place.clone(), kind: diagnose::Kind::Tun },
            TapError::WrongKind { place: place.clone(), kind: diagnose::Kind::NotTunTap },
            TapError::InterfaceDown { place: place.clone() },
            TapError::InterfaceGone { place },
        ] {
            let text = err.to_string();
            assert!(text.contains("Fix: "), "{text}");
            // "Error: " comes in front of the first line.
            let widths =
                text.lines().enumerate().map(|(i, l)| l.len() + if i == 0 { 7 } else { 0 });
            assert!(widths.max().unwrap_or(0) <= 78, "{text}");
        }
    }
}
