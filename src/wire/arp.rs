//! ARP for Ethernet and IPv4 (RFC 826): "who has 172.16.1.2? tell 172.16.1.1".
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Hardware type (1)         |     Protocol type (0x0800)    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | HW len (6)    | Proto len (4) |  Operation (1 req, 2 reply)   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Sender hardware address (6)                   |
//! +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                               | Sender protocol address (4)   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//! |                               |                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//! |                 Target hardware address (6)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Target protocol address (4)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::net::Ipv4Addr;
use std::ops::Range;

use super::{Error, MacAddr, Result, bytes};

/// `ar$op`: request or reply (RFC 826); other values exist (RARP, InARP) but not here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOperation {
    Request,
    Reply,
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(value: u16) -> Self {
        match value {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => ArpOperation::Unknown(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(value: ArpOperation) -> Self {
        match value {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(other) => other,
        }
    }
}

/// `ar$hrd` for Ethernet.
pub const HARDWARE_ETHERNET: u16 = 1;
/// `ar$pro` for IPv4: the EtherType of the protocol being resolved.
pub const PROTOCOL_IPV4: u16 = 0x0800;

// ANCHOR: fields
mod field {
    use std::ops::Range;

    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    // The address fields below assume Ethernet (6) and IPv4 (4) lengths, which
    // `new_checked` insists on.
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// The length of an ARP packet for Ethernet and IPv4.
pub const PACKET_LEN: usize = field::TPA.end;
// ANCHOR_END: fields

/// A view of an ARP packet for Ethernet and IPv4.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    // ANCHOR: new_checked
    // ANCHOR: student_ch3_view "chapter 3: the ARP view"
    /// Checks the length and that this is ARP for Ethernet and IPv4: other hardware or
    /// protocol types put the addresses at other offsets, so nothing else can be read.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = ArpPacket { buffer };
        if packet.buffer.as_ref().len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        if packet.hardware_type() != HARDWARE_ETHERNET
            || packet.protocol_type() != PROTOCOL_IPV4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(Error::Unsupported);
        }
        Ok(packet)
    }
    // ANCHOR_END: student_ch3_view
    // ANCHOR_END: new_checked

    fn u16_at(&self, range: Range<usize>) -> u16 {
        bytes::read_u16(self.buffer.as_ref(), range)
    }

    fn ipv4_at(&self, range: Range<usize>) -> Ipv4Addr {
        Ipv4Addr::from(bytes::read::<4>(self.buffer.as_ref(), range))
    }

    fn mac_at(&self, range: Range<usize>) -> MacAddr {
        MacAddr(bytes::read(self.buffer.as_ref(), range))
    }

    pub fn hardware_type(&self) -> u16 {
        self.u16_at(field::HTYPE)
    }

    pub fn protocol_type(&self) -> u16 {
        self.u16_at(field::PTYPE)
    }

    pub fn hardware_len(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), field::HLEN)
    }

    pub fn protocol_len(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), field::PLEN)
    }

    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(self.u16_at(field::OPER))
    }

    pub fn sender_hw_addr(&self) -> MacAddr {
        self.mac_at(field::SHA)
    }

    pub fn sender_proto_addr(&self) -> Ipv4Addr {
        self.ipv4_at(field::SPA)
    }

    pub fn target_hw_addr(&self) -> MacAddr {
        self.mac_at(field::THA)
    }

    pub fn target_proto_addr(&self) -> Ipv4Addr {
        self.ipv4_at(field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    fn set_u16(&mut self, range: Range<usize>, value: u16) {
        bytes::write_u16(self.buffer.as_mut(), range, value);
    }

    pub fn set_hardware_type(&mut self, value: u16) {
        self.set_u16(field::HTYPE, value);
    }

    pub fn set_protocol_type(&mut self, value: u16) {
        self.set_u16(field::PTYPE, value);
    }

    pub fn set_hardware_len(&mut self, value: u8) {
        bytes::write_u8(self.buffer.as_mut(), field::HLEN, value);
    }

    pub fn set_protocol_len(&mut self, value: u8) {
        bytes::write_u8(self.buffer.as_mut(), field::PLEN, value);
    }

    pub fn set_operation(&mut self, value: ArpOperation) {
        self.set_u16(field::OPER, value.into());
    }

    pub fn set_sender_hw_addr(&mut self, addr: MacAddr) {
        bytes::write(self.buffer.as_mut(), field::SHA, addr.0);
    }

    pub fn set_sender_proto_addr(&mut self, addr: Ipv4Addr) {
        bytes::write(self.buffer.as_mut(), field::SPA, addr.octets());
    }

    pub fn set_target_hw_addr(&mut self, addr: MacAddr) {
        bytes::write(self.buffer.as_mut(), field::THA, addr.0);
    }

    pub fn set_target_proto_addr(&mut self, addr: Ipv4Addr) {
        bytes::write(self.buffer.as_mut(), field::TPA, addr.octets());
    }
}

// ANCHOR: repr
/// The meaning of an ARP packet, without the constant fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    pub operation: ArpOperation,
    pub sender_hw_addr: MacAddr,
    pub sender_proto_addr: Ipv4Addr,
    pub target_hw_addr: MacAddr,
    pub target_proto_addr: Ipv4Addr,
}

// ANCHOR: student_ch3_repr "chapter 3: parse and emit ARP"
impl ArpRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> ArpRepr {
        ArpRepr {
            operation: packet.operation(),
            sender_hw_addr: packet.sender_hw_addr(),
            sender_proto_addr: packet.sender_proto_addr(),
            target_hw_addr: packet.target_hw_addr(),
            target_proto_addr: packet.target_proto_addr(),
        }
    }

    /// Writes all 28 bytes, or fails with [`Error::Truncated`] if `packet` is shorter
    /// than [`PACKET_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) -> Result<()> {
        if packet.buffer.as_ref().len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        packet.set_hardware_type(HARDWARE_ETHERNET);
        packet.set_protocol_type(PROTOCOL_IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_sender_hw_addr(self.sender_hw_addr);
        packet.set_sender_proto_addr(self.sender_proto_addr);
        packet.set_target_hw_addr(self.target_hw_addr);
        packet.set_target_proto_addr(self.target_proto_addr);
        Ok(())
    }
}
// ANCHOR_END: student_ch3_repr
// ANCHOR_END: repr

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::{EthernetFrame, HEADER_LEN};
    use crate::wire::fixtures::fixture;

    fn arp_of(frame: &[u8]) -> &[u8] {
        &frame[HEADER_LEN..HEADER_LEN + PACKET_LEN]
    }

    #[test]
    fn parses_the_kernels_who_has() {
        let bytes = fixture!("arp_request_kernel");
        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        let packet = ArpPacket::new_checked(frame.payload()).unwrap();
        let repr = ArpRepr::parse(&packet);
        assert_eq!(repr.operation, ArpOperation::Request);
        assert_eq!(repr.sender_hw_addr, frame.src_addr());
        assert_eq!(repr.sender_proto_addr, Ipv4Addr::new(172, 16, 1, 1));
        assert_eq!(repr.target_proto_addr, Ipv4Addr::new(172, 16, 1, 2));
    }

    #[test]
    fn parses_arpings_who_has() {
        let bytes = fixture!("arp_request_arping");
        let packet = ArpPacket::new_checked(arp_of(&bytes)).unwrap();
        assert_eq!(packet.operation(), ArpOperation::Request);
        assert_eq!(packet.target_proto_addr(), Ipv4Addr::new(172, 16, 1, 2));
    }

    #[test]
    fn emit_reproduces_the_kernels_reply_byte_for_byte() {
        let bytes = fixture!("kernel_arp_reply");
        let original = arp_of(&bytes);
        let repr = ArpRepr::parse(&ArpPacket::new_checked(original).unwrap());
        assert_eq!(repr.operation, ArpOperation::Reply);
        let mut out = [0xa5u8; PACKET_LEN];
        repr.emit(&mut ArpPacket::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(&out[..], original);
        let mut short = [0xa5u8; PACKET_LEN - 1];
        assert_eq!(repr.emit(&mut ArpPacket::new_unchecked(&mut short[..])), Err(Error::Truncated));
    }

    #[test]
    fn rejects_truncation_and_other_types() {
        let bytes = fixture!("arp_request_kernel");
        let arp = &bytes[HEADER_LEN..HEADER_LEN + PACKET_LEN];
        for len in 0..PACKET_LEN {
            assert_eq!(ArpPacket::new_checked(&arp[..len]).unwrap_err(), Error::Truncated);
        }
        for (offset, value) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut bad = arp.to_vec();
            bad[offset] = value;
            assert_eq!(ArpPacket::new_checked(&bad[..]).unwrap_err(), Error::Unsupported);
        }
    }
}
