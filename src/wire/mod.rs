//! Wire formats, written by hand (chapters 2 to 4).
//!
//! Each header gets a *view* over a byte buffer, in the shape of smoltcp's wire module:
//! `new_checked` does every length check once, after which every accessor reads real
//! bytes; the getters return host values and the setters exist only for mutable buffers.
//! Nothing in this module knows about file descriptors, files or printing.
//!
//! Whatever a frame holds, nothing here can panic: the accessors go through `bytes`,
//! which never indexes out of bounds, and the lints below make the compiler refuse any
//! indexing, slicing, `unwrap`, `expect` or `panic!` outside the tests.

// ANCHOR: no_panic
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]
// ANCHOR_END: no_panic

pub mod arp;
mod bytes;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv4_options;
pub mod ipv6;
pub mod ndisc;
pub mod udp;
pub mod virtio_net;

pub mod dhcp;

use std::fmt;

pub use arp::{ArpOperation, ArpPacket};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
pub use icmpv4::{Icmpv4Message, Icmpv4Type};
pub use ipv4::{IpProtocol, Ipv4Packet};
pub use ipv6::Ipv6Packet;
pub use udp::UdpPacket;

/// Why a buffer could not be read as the header it was supposed to hold.
///
/// A small enum rather than strings: the full responder counts each kind separately and
/// the book explains every one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer ends before the header (or the length the header claims) does.
    Truncated,
    /// A length field contradicts itself or the buffer (e.g. IPv4 total length shorter
    /// than its own header).
    BadLength,
    /// A field holds a value this code does not handle (IPv4 version 6, ARP for another
    /// hardware type...).
    Unsupported,
}

// No `BadChecksum`: making a view checks lengths only. Whether a checksum verifies is the
// yes or no of each view's `verify_checksum`, and the responder names the layer that
// failed (`DropReason::Ipv4BadChecksum`, `IcmpBadChecksum`, ...).

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated",
            Error::BadLength => "inconsistent length field",
            Error::Unsupported => "unsupported field value",
        })
    }
}

impl std::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;

#[cfg(test)]
pub(crate) mod fixtures {
    //! Frames captured from the kernel (see `tests/fixtures/README.md` for how), loaded
    //! at compile time so the unit tests need no files at run time.

    pub use tapbook_testkit::fixtures::parse;

    macro_rules! fixture {
        ($name:literal) => {
            $crate::wire::fixtures::parse(include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/",
                $name,
                ".hex"
            )))
        };
    }
    pub(crate) use fixture;
}
