//! Ethernet II frames (IEEE 802.3 with an EtherType), as a TAP device opened with
//! `IFF_NO_PI` delivers them: destination, source, type, payload. No preamble and no frame
//! check sequence: the kernel neither expects nor adds them on a TAP.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                  Destination MAC (6 bytes)                    |
//! +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                               |                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//! |                    Source MAC (6 bytes)                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           EtherType           |   Payload ...                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::fmt;
use std::str::FromStr;

use super::{Error, Result, bytes};

/// A 48-bit IEEE MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    // ANCHOR: mac_bits
    /// The I/G bit (least significant bit of the first byte): set for group addresses,
    /// broadcast included. Such an address may never be a frame's *source*.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// The U/L bit: set for addresses chosen locally rather than bought from the IEEE,
    /// like the one our responder uses.
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
    // ANCHOR_END: mac_bits
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Parses `02:00:00:00:00:02` (colons or dashes).
impl FromStr for MacAddr {
    type Err = &'static str;

    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        const USAGE: &str = "a MAC address is six hex bytes, like 02:00:00:00:00:02";
        let mut bytes = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut bytes {
            let part = parts.next().ok_or(USAGE)?;
            if part.is_empty() || part.len() > 2 {
                return Err(USAGE);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| USAGE)?;
        }
        if parts.next().is_some() {
            return Err(USAGE);
        }
        Ok(MacAddr(bytes))
    }
}

// ANCHOR: ethertype
/// The EtherType field: what the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtherType {
    Ipv4,
    Arp,
    /// An IEEE 802.1Q VLAN tag: a second EtherType follows four bytes later.
    Vlan,
    Ipv6,
    Unknown(u16),
}

impl EtherType {
    /// The tag protocol identifiers of IEEE 802.1Q (0x8100) and 802.1ad "Q-in-Q"
    /// (0x88a8, and 0x9100 from before the standard): the real EtherType is further on.
    pub fn is_vlan_tag(self) -> bool {
        matches!(u16::from(self), 0x8100 | 0x88a8 | 0x9100)
    }
}

impl From<u16> for EtherType {
    fn from(value: u16) -> Self {
        match value {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x8100 => EtherType::Vlan,
            0x86dd => EtherType::Ipv6,
            other => EtherType::Unknown(other),
        }
    }
}
// ANCHOR_END: ethertype

impl From<EtherType> for u16 {
    fn from(value: EtherType) -> Self {
        match value {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Vlan => 0x8100,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Unknown(other) => other,
        }
    }
}

// ANCHOR: fields
mod field {
    use std::ops::Range;

    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// The length of an Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD;
// ANCHOR_END: fields

// ANCHOR: view
/// A read (and, for mutable buffers, write) view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking it, for building into a buffer you sized yourself.
    /// On one shorter than [`HEADER_LEN`] the getters read zeroes and the setters write
    /// nothing (see `wire::bytes`): wrong, but never a panic.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after checking that it holds a whole header, so that every accessor
    /// reads real bytes.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(EthernetFrame { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(bytes::read(self.buffer.as_ref(), field::DESTINATION))
    }

    pub fn src_addr(&self) -> MacAddr {
        MacAddr(bytes::read(self.buffer.as_ref(), field::SOURCE))
    }

    pub fn ethertype(&self) -> EtherType {
        EtherType::from(bytes::read_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// Everything after the header. On a TAP this can include padding: a frame shorter
    /// than 60 bytes on a real wire is padded, and the padding is not part of the
    /// payload's own length (IPv4 uses its total length field to find where it ends).
    pub fn payload(&self) -> &[u8] {
        bytes::slice(self.buffer.as_ref(), field::PAYLOAD..)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        bytes::write(self.buffer.as_mut(), field::DESTINATION, addr.0);
    }

    pub fn set_src_addr(&mut self, addr: MacAddr) {
        bytes::write(self.buffer.as_mut(), field::SOURCE, addr.0);
    }

    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        bytes::write_u16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.into());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        bytes::slice_mut(self.buffer.as_mut(), field::PAYLOAD..)
    }
}
// ANCHOR_END: view

// ANCHOR: repr
/// The header as three values, for writing one: every reply starts with
/// `EthernetRepr { dst_addr: <the asker>, src_addr: <our MAC>, ethertype }.emit(..)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub dst_addr: MacAddr,
    pub src_addr: MacAddr,
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Writes the header into `frame`, or nothing if it cannot hold one.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) -> Result<()> {
        if frame.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
        Ok(())
    }
}
// ANCHOR_END: repr

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::fixture;

    #[test]
    fn parses_the_kernels_arp_request() {
        let bytes = fixture!("arp_request_kernel");
        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert!(frame.dst_addr().is_broadcast());
        assert!(frame.src_addr().is_unicast());
        assert_eq!(frame.ethertype(), EtherType::Arp);
        assert_eq!(frame.payload().len(), bytes.len() - HEADER_LEN);
    }

    #[test]
    fn rejects_every_truncation_of_the_header() {
        let bytes = fixture!("arp_request_kernel");
        for len in 0..HEADER_LEN {
            assert_eq!(EthernetFrame::new_checked(&bytes[..len]).unwrap_err(), Error::Truncated);
        }
        assert!(EthernetFrame::new_checked(&bytes[..HEADER_LEN]).is_ok());
    }

    #[test]
    fn emit_writes_every_header_byte_and_nothing_else() {
        let repr = EthernetRepr {
            dst_addr: MacAddr([1, 2, 3, 4, 5, 6]),
            src_addr: MacAddr([0x02, 0, 0, 0, 0, 2]),
            ethertype: EtherType::Ipv4,
        };
        let mut buf = [0xa5u8; 20];
        repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..])).unwrap();
        assert_eq!(buf[..14], [1, 2, 3, 4, 5, 6, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00]);
        assert_eq!(buf[14..], [0xa5; 6], "the payload is untouched");
        let mut short = [0xa5u8; 13];
        let emitted = repr.emit(&mut EthernetFrame::new_unchecked(&mut short[..]));
        assert_eq!(emitted, Err(Error::Truncated));
        assert_eq!(short, [0xa5; 13], "nothing written into a buffer too short");
    }

    #[test]
    fn mac_addresses_parse_and_print() {
        let mac: MacAddr = "02:00:00:00:00:02".parse().unwrap();
        assert_eq!(mac.to_string(), "02:00:00:00:00:02");
        assert!(mac.is_local() && mac.is_unicast());
        assert_eq!("02-0A-bc-00-00-ff".parse::<MacAddr>().unwrap().0[2], 0xbc);
        for bad in ["", "02:00:00:00:00", "02:00:00:00:00:02:03", "2:0:0:0:0:zz", "002:0:0:0:0:1"] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
