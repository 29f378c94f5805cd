//! Chapter 9: opening a TAP the way a VMM does. [`TapOptions`] says what to ask for (a
//! virtio-net header before every frame, several queues, offloads) and [`open_with`]
//! asks the kernel, step by step, falling back where an older kernel refuses something.
//!
//! The steps, in the order QEMU, Firecracker and cloud-hypervisor take them:
//!
//! 1. `TUNGETFEATURES`: which `IFF_*` flags this kernel's TUN driver knows.
//! 2. `TUNSETIFF` with `IFF_TAP | IFF_NO_PI`, plus `IFF_VNET_HDR` and `IFF_MULTI_QUEUE`.
//! 3. `TUNSETVNETHDRSZ`: 10 bytes (`virtio_net_hdr`) or 12 (`..._mrg_rxbuf`).
//! 4. `TUNSETVNETLE`: the header's 16-bit fields are little-endian (virtio 1.x).
//! 5. `TUNSETOFFLOAD`: what *we*, the reader of the TAP, can accept. The kernel then
//!    turns on the matching device features (`ethtool -k tap4` shows them) and starts
//!    handing us partial checksums and superframes.

use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};

use crate::tap::{Place, Tap, TapError, attach, check_name, diagnose, features_of};
use crate::wire::virtio_net;

// ANCHOR: ioctls
// From <linux/if_tun.h> (TUNSETIFF and TUNGETFEATURES are in src/tap.rs). Like
// TUNSETIFF, some are declared with an argument type that is not what the kernel really
// takes, so each is spelled out with its true argument.
// _IOW('T', 208, unsigned int), but the flags are passed *by value*, not by pointer.
nix::ioctl_write_int_bad!(
    tunsetoffload,
    nix::request_code_write!(b'T', 208, std::mem::size_of::<libc::c_uint>())
);
// _IOW('T', 216, int): a pointer to the header size.
nix::ioctl_write_ptr_bad!(
    tunsetvnethdrsz,
    nix::request_code_write!(b'T', 216, std::mem::size_of::<libc::c_int>()),
    libc::c_int
);
// _IOW('T', 220, int): a pointer to 1 (little-endian) or 0 (the host's order).
nix::ioctl_write_ptr_bad!(
    tunsetvnetle,
    nix::request_code_write!(b'T', 220, std::mem::size_of::<libc::c_int>()),
    libc::c_int
);
// ANCHOR_END: ioctls

/// How large a read buffer must be with offloads on: a header, then a superframe of up
/// to 64 KiB of IPv4 packet behind an Ethernet header (and room for a VLAN tag).
pub const READ_BUFFER_LEN: usize = virtio_net::HEADER_LEN_MRG_RXBUF + 14 + 4 + 65535;

pub use crate::tap::{IFF_MULTI_QUEUE, IFF_NO_PI, IFF_TAP, IFF_VNET_HDR};

// ANCHOR: offloads
/// `TUN_F_*` flags of `TUNSETOFFLOAD`: what the reader of the TAP can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Offloads(pub u32);

impl Offloads {
    pub const NONE: Offloads = Offloads(0);
    /// Partial checksums (`NEEDS_CSUM`). Every other offload needs this one.
    pub const CSUM: Offloads = Offloads(0x01);
    /// TCP over IPv4 superframes.
    pub const TSO4: Offloads = Offloads(0x02);
    /// TCP over IPv6 superframes.
    pub const TSO6: Offloads = Offloads(0x04);
    /// TCP superframes with ECN (CWR only on the first segment).
    pub const TSO_ECN: Offloads = Offloads(0x08);
    /// UDP over IPv4 superframes (Linux 6.2 and later).
    pub const USO4: Offloads = Offloads(0x20);
    /// UDP over IPv6 superframes (Linux 6.2 and later).
    pub const USO6: Offloads = Offloads(0x40);
    /// What [`crate::segment`] can handle: checksums, TCP and UDP superframes over IPv4
    /// and IPv6. (Linux takes USO4 and USO6 only together: either alone is EINVAL.)
    pub const SEGMENTABLE: Offloads = Offloads(0x01 | 0x02 | 0x04 | 0x20 | 0x40);

    pub const fn contains(self, other: Offloads) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn union(self, other: Offloads) -> Offloads {
        Offloads(self.0 | other.0)
    }

    pub const fn without(self, other: Offloads) -> Offloads {
        Offloads(self.0 & !other.0)
    }

    /// Parses `csum,tso4,uso4` (or `none`).
    pub fn parse(text: &str) -> Result<Offloads, String> {
        let mut set = Offloads::NONE;
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let one = NAMES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(word))
                .map(|(_, flag)| *flag)
                .ok_or_else(|| format!("unknown offload {word:?} (know: none, {})", names()))?;
            set = set.union(one);
        }
        Ok(set)
    }
}

const NAMES: [(&str, Offloads); 7] = [
    ("none", Offloads::NONE),
    ("csum", Offloads::CSUM),
    ("tso4", Offloads::TSO4),
    ("tso6", Offloads::TSO6),
    ("tso_ecn", Offloads::TSO_ECN),
    ("uso4", Offloads::USO4),
    ("uso6", Offloads::USO6),
];

fn names() -> String {
    NAMES.iter().skip(1).map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for Offloads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set: Vec<&str> = NAMES
            .iter()
            .skip(1)
            .filter(|(_, flag)| self.contains(*flag))
            .map(|(name, _)| *name)
            .collect();
        if set.is_empty() { f.write_str("none") } else { f.write_str(&set.join(",")) }
    }
}
// ANCHOR_END: offloads

// ANCHOR: options
/// How to open a TAP, built from chapter 1's defaults (no header, one queue, non-blocking
/// reads, no offloads) by what differs: `Tap::options().vnet_hdr(12).blocking(true)`,
/// then [`TapOptions::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapOptions {
    /// `IFF_VNET_HDR` and `TUNSETVNETHDRSZ`: a virtio-net header of this many bytes (10
    /// or 12) before every frame, both ways; 0 for none.
    vnet_hdr_len: usize,
    /// `IFF_MULTI_QUEUE`: this descriptor is one queue of several.
    multi_queue: bool,
    /// Whether `read` may block; otherwise the descriptor is `O_NONBLOCK` and waits in
    /// `ppoll`, as in chapter 1.
    blocking: bool,
    /// No `IFF_NO_PI`: the kernel's 4-byte packet information header before every frame
    /// (chapter 2 shows what it holds, and why we never want it).
    packet_info: bool,
    /// `TUNSETOFFLOAD` (needs the header: without it there is nowhere to say that a
    /// checksum is partial).
    offloads: Offloads,
}

impl Default for TapOptions {
    fn default() -> Self {
        TapOptions {
            vnet_hdr_len: 0,
            multi_queue: false,
            blocking: false,
            packet_info: false,
            offloads: Offloads::NONE,
        }
    }
}

impl TapOptions {
    /// What a VMM asks for, limited to what this course's segmenter handles.
    pub fn offloading() -> TapOptions {
        TapOptions::default()
            .vnet_hdr(virtio_net::HEADER_LEN_MRG_RXBUF)
            .offloads(Offloads::SEGMENTABLE)
    }

    pub fn vnet_hdr(self, len: usize) -> TapOptions {
        TapOptions { vnet_hdr_len: len, ..self }
    }

    pub fn multi_queue(self, on: bool) -> TapOptions {
        TapOptions { multi_queue: on, ..self }
    }

    pub fn blocking(self, on: bool) -> TapOptions {
        TapOptions { blocking: on, ..self }
    }

    pub fn packet_info(self, on: bool) -> TapOptions {
        TapOptions { packet_info: on, ..self }
    }

    pub fn offloads(self, offloads: Offloads) -> TapOptions {
        TapOptions { offloads, ..self }
    }

    /// Opens the TAP `name` so: [`open_with`].
    pub fn open(&self, name: &str) -> Result<(Tap, Negotiated), TapError> {
        open_with(name, self)
    }
}
// ANCHOR_END: options

/// What the kernel agreed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// `TUNGETFEATURES`: the `IFF_*` flags this kernel supports.
    pub features: u32,
    /// 0 without `IFF_VNET_HDR`.
    pub vnet_hdr_len: usize,
    /// The offloads in force.
    pub offloads: Offloads,
    /// The offloads asked for that the kernel refused (EINVAL: too old for them).
    pub refused: Offloads,
}

impl fmt::Display for Negotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TUNGETFEATURES {:#06x}; vnet header {} bytes; offloads {}",
            self.features, self.vnet_hdr_len, self.offloads
        )?;
        if self.refused != Offloads::NONE {
            write!(f, " (refused by this kernel: {})", self.refused)?;
        }
        Ok(())
    }
}

// ANCHOR: open_with
/// Opens `/dev/net/tun` and attaches it to the TAP `name` as `options` say; returns the
/// handle and what the kernel agreed to.
///
/// The offloads are always set, to none if none were asked for: they belong to the
/// interface, not to the descriptor, so on a persistent TAP they outlive the program
/// that set them, and the next reader without a header would get superframes.
pub fn open_with(name: &str, options: &TapOptions) -> Result<(Tap, Negotiated), TapError> {
    check_name(name)?;
    let io = |what: &'static str| move |errno| TapError::Io { what, name: name.to_owned(), errno };
    let place = Place::here(name);
    let existed = crate::tap::interface_exists(name);
    let fd = diagnose::open_clone_device()?;

    let features = features_of(&fd)?;
    let mut flags = if options.packet_info { IFF_TAP } else { IFF_TAP | IFF_NO_PI };
    let vnet_hdr = options.vnet_hdr_len > 0;
    for (wanted, flag) in [(vnet_hdr, IFF_VNET_HDR), (options.multi_queue, IFF_MULTI_QUEUE)] {
        if wanted {
            if features & flag == 0 {
                return Err(TapError::Io {
                    what: "asking for a feature on",
                    name: name.to_owned(),
                    errno: Errno::EOPNOTSUPP,
                });
            }
            flags |= flag;
        }
    }

    // (EINVAL is also what a persistent TAP made without IFF_MULTI_QUEUE says to a queue.)
    let attached = attach(&fd, &place, flags)?;

    let mut vnet_hdr_len = 0;
    if vnet_hdr {
        let size = libc::c_int::try_from(options.vnet_hdr_len).unwrap_or(libc::c_int::MAX);
        // SAFETY: the kernel reads one int through the pointer, which outlives the call.
        unsafe { tunsetvnethdrsz(fd.as_raw_fd(), &size) }.map_err(io("TUNSETVNETHDRSZ on"))?;
        let little_endian: libc::c_int = 1;
        // SAFETY: as above.
        unsafe { tunsetvnetle(fd.as_raw_fd(), &little_endian) }.map_err(io("TUNSETVNETLE on"))?;
        vnet_hdr_len = options.vnet_hdr_len;
    }

    let (offloads, refused) =
        set_offloads(&fd, options.offloads).map_err(io("TUNSETOFFLOAD on"))?;

    if !options.blocking {
        let getfl = fcntl(&fd, FcntlArg::F_GETFL).map_err(io("fcntl on"))?;
        let nonblocking = OFlag::from_bits_retain(getfl) | OFlag::O_NONBLOCK;
        fcntl(&fd, FcntlArg::F_SETFL(nonblocking)).map_err(io("fcntl on"))?;
    }
    let negotiated = Negotiated { features, vnet_hdr_len, offloads, refused };
    Ok((Tap::from_attached(fd, Place { name: attached, ..place }, !existed), negotiated))
}
// ANCHOR_END: open_with

// ANCHOR: open_queues
/// Opens `queues` descriptors on the TAP `name`, each one queue of it (`IFF_MULTI_QUEUE`),
/// as a VMM opens one per virtqueue pair. The TAP must have been made multi-queue
/// (`ip tuntap add dev tap4 mode tap multi_queue`, or by the first of these opens, with
/// `CAP_NET_ADMIN`): the kernel refuses to mix the two kinds (EINVAL).
///
/// The kernel picks a queue for each frame it sends us by the flow's hash (addresses and
/// ports), so all the frames of one flow come out of one queue, in order, and different
/// flows spread over the queues.
pub fn open_queues(
    name: &str,
    options: &TapOptions,
    queues: usize,
) -> Result<(Vec<Tap>, Negotiated), TapError> {
    let options = options.multi_queue(true);
    let (first, negotiated) = open_with(name, &options)?;
    let mut taps = vec![first];
    for _ in 1..queues {
        taps.push(open_with(name, &options)?.0);
    }
    Ok((taps, negotiated))
}
// ANCHOR_END: open_queues

// ANCHOR: set_offloads
/// `TUNSETOFFLOAD` answers EINVAL for any flag it does not know (the USO flags before
/// Linux 6.2) and for USO4 without USO6 or the reverse ("for now USO4 and USO6 should
/// work simultaneously", says `drivers/net/tun.c`), and it refuses the whole set, not
/// just the flag. So we ask for everything, then drop the newest flags until it agrees.
fn set_offloads(fd: &OwnedFd, wanted: Offloads) -> Result<(Offloads, Offloads), Errno> {
    let newest_first = [Offloads::USO4.union(Offloads::USO6), Offloads::TSO_ECN, Offloads::TSO6];
    let mut asked = wanted;
    let mut refused = Offloads::NONE;
    let mut fallbacks = newest_first.iter();
    loop {
        // SAFETY: TUNSETOFFLOAD takes the flags by value; no memory is passed.
        match unsafe { tunsetoffload(fd.as_raw_fd(), asked.0 as libc::c_int) } {
            Ok(_) => return Ok((asked, refused)),
            Err(Errno::EINVAL) => match fallbacks.find(|flag| asked.0 & flag.0 != 0) {
                Some(flag) => {
                    refused = refused.union(Offloads(asked.0 & flag.0));
                    asked = asked.without(*flag);
                }
                None => return Err(Errno::EINVAL),
            },
            Err(errno) => return Err(errno),
        }
    }
}
// ANCHOR_END: set_offloads

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        // The values <linux/if_tun.h> gives on x86_64, as printed by a C program:
        // printf("%#lx", (unsigned long)TUNGETFEATURES) and so on.
        let codes = [
            nix::request_code_read!(b'T', 207, 4),
            nix::request_code_write!(b'T', 208, 4),
            nix::request_code_write!(b'T', 216, 4),
            nix::request_code_write!(b'T', 220, 4),
        ];
        // TUNGETFEATURES, TUNSETOFFLOAD, TUNSETVNETHDRSZ, TUNSETVNETLE
        assert_eq!(codes, [0x8004_54cf, 0x4004_54d0, 0x4004_54d8, 0x4004_54dc]);
    }

    #[test]
    fn offload_names_round_trip() {
        let set = Offloads::parse("csum,tso4,tso6,uso4,uso6").unwrap();
        assert_eq!(set, Offloads::SEGMENTABLE);
        assert_eq!(set.to_string(), "csum,tso4,tso6,uso4,uso6");
        assert_eq!(Offloads::parse("none").unwrap(), Offloads::NONE);
        assert_eq!(Offloads::NONE.to_string(), "none");
        assert!(Offloads::parse("csum,gro").is_err());
    }
}
