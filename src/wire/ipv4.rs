//! IPv4 (RFC 791). The header is at least 20 bytes; the IHL field counts 32-bit words, so
//! up to 40 bytes of options may follow. The total length field, not the frame, says
//! where the packet ends: anything after it is Ethernet padding.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |Type of Service|          Total Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Identification        |Flags|      Fragment Offset    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Source Address                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Destination Address                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options (IHL > 5)                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::net::Ipv4Addr;

use std::ops::Range;

use super::{Error, Result, bytes, checksum};

/// The protocol field: what the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpProtocol {
    Icmp,
    Tcp,
    Udp,
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    fn from(value: u8) -> Self {
        match value {
            1 => IpProtocol::Icmp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(value: IpProtocol) -> Self {
        match value {
            IpProtocol::Icmp => 1,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Unknown(other) => other,
        }
    }
}

// ANCHOR: fields
mod field {
    use std::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// The length of a header without options.
pub const MIN_HEADER_LEN: usize = field::DST.end;
/// IHL is four bits, counting 32-bit words: 15 × 4.
pub const MAX_HEADER_LEN: usize = 60;
// ANCHOR_END: fields

const FLAG_DONT_FRAGMENT: u16 = 0x4000;
const FLAG_MORE_FRAGMENTS: u16 = 0x2000;
const FRAGMENT_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    // ANCHOR: new_checked
    // ANCHOR: student_ch4_ipv4_view "chapter 4: the IPv4 view"
    /// Checks, once, everything the accessors rely on: the version, a header of at least
    /// 20 bytes that fits in the buffer, and a total length that covers the header and
    /// fits in the buffer. The checksum is checked separately ([`Self::verify_checksum`])
    /// so that a tool can still show a damaged packet.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Ipv4Packet { buffer };
        let len = packet.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if packet.version() != 4 {
            return Err(Error::Unsupported);
        }
        let header_len = packet.header_len();
        let total_len = usize::from(packet.total_len());
        if header_len < MIN_HEADER_LEN || total_len < header_len {
            return Err(Error::BadLength);
        }
        if len < header_len || len < total_len {
            return Err(Error::Truncated);
        }
        Ok(packet)
    }
    // ANCHOR_END: student_ch4_ipv4_view
    // ANCHOR_END: new_checked

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, range: Range<usize>) -> u16 {
        bytes::read_u16(self.buffer.as_ref(), range)
    }

    fn addr_at(&self, range: Range<usize>) -> Ipv4Addr {
        Ipv4Addr::from(bytes::read::<4>(self.buffer.as_ref(), range))
    }

    pub fn version(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), field::VER_IHL) >> 4
    }

    /// The header length in bytes (IHL counts 32-bit words).
    pub fn header_len(&self) -> usize {
        usize::from(bytes::read_u8(self.buffer.as_ref(), field::VER_IHL) & 0x0f) * 4
    }

    pub fn tos(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), field::TOS)
    }

    pub fn total_len(&self) -> u16 {
        self.u16_at(field::TOTAL_LEN)
    }

    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }

    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLAGS_FRAG) & FLAG_DONT_FRAGMENT != 0
    }

    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLAGS_FRAG) & FLAG_MORE_FRAGMENTS != 0
    }

    /// The fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (self.u16_at(field::FLAGS_FRAG) & FRAGMENT_OFFSET_MASK) * 8
    }

    /// True for any piece of a fragmented packet: the first (more-fragments set), the
    /// middle ones and the last (non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    pub fn ttl(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), field::TTL)
    }

    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(bytes::read_u8(self.buffer.as_ref(), field::PROTOCOL))
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        self.addr_at(field::SRC)
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        self.addr_at(field::DST)
    }

    /// The whole header, options included.
    pub fn header(&self) -> &[u8] {
        bytes::slice(self.buffer.as_ref(), ..self.header_len())
    }

    /// The options (empty when IHL is 5).
    pub fn options(&self) -> &[u8] {
        bytes::slice(self.buffer.as_ref(), MIN_HEADER_LEN..self.header_len())
    }

    // ANCHOR: verify_checksum
    // ANCHOR: student_ch4_ipv4_verify "chapter 4: the IPv4 header checksum"
    /// The header checksum covers the header only (options included), not the payload.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.header())
    }
    // ANCHOR_END: student_ch4_ipv4_verify
    // ANCHOR_END: verify_checksum

    // ANCHOR: payload
    // ANCHOR: student_ch4_ipv4_payload "chapter 4: the IPv4 payload"
    /// The payload, cut by the total length: Ethernet padding after it is not included.
    pub fn payload(&self) -> &[u8] {
        let range = self.header_len()..usize::from(self.total_len());
        bytes::slice(self.buffer.as_ref(), range)
    }
    // ANCHOR_END: student_ch4_ipv4_payload
    // ANCHOR_END: payload
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn set_u16(&mut self, range: Range<usize>, value: u16) {
        bytes::write_u16(self.buffer.as_mut(), range, value);
    }

    /// Sets version 4 and the header length (a multiple of 4, from 20 to 60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        debug_assert!(
            header_len.is_multiple_of(4) && (MIN_HEADER_LEN..=MAX_HEADER_LEN).contains(&header_len)
        );
        let ihl = (header_len / 4) as u8 & 0x0f;
        bytes::write_u8(self.buffer.as_mut(), field::VER_IHL, 0x40 | ihl);
    }

    pub fn set_tos(&mut self, value: u8) {
        bytes::write_u8(self.buffer.as_mut(), field::TOS, value);
    }

    pub fn set_total_len(&mut self, value: u16) {
        self.set_u16(field::TOTAL_LEN, value);
    }

    pub fn set_ident(&mut self, value: u16) {
        self.set_u16(field::IDENT, value);
    }

    /// Sets the flags and fragment offset word: only "don't fragment" may be set, since
    /// what we build is never a fragment.
    pub fn set_unfragmented(&mut self, dont_frag: bool) {
        self.set_u16(field::FLAGS_FRAG, if dont_frag { FLAG_DONT_FRAGMENT } else { 0 });
    }

    pub fn set_ttl(&mut self, value: u8) {
        bytes::write_u8(self.buffer.as_mut(), field::TTL, value);
    }

    pub fn set_protocol(&mut self, value: IpProtocol) {
        bytes::write_u8(self.buffer.as_mut(), field::PROTOCOL, value.into());
    }

    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16(field::CHECKSUM, value);
    }

    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        bytes::write(self.buffer.as_mut(), field::SRC, addr.octets());
    }

    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        bytes::write(self.buffer.as_mut(), field::DST, addr.octets());
    }

    // ANCHOR: fill_checksum
    // ANCHOR: student_ch4_ipv4_fill "chapter 4: the IPv4 header checksum"
    /// Computes the header checksum over the header with its checksum field zeroed.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::checksum(self.header());
        self.set_checksum(sum);
    }
    // ANCHOR_END: student_ch4_ipv4_fill
    // ANCHOR_END: fill_checksum

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        bytes::slice_mut(self.buffer.as_mut(), range)
    }
}

// ANCHOR: repr
/// The fields of an IPv4 header that a sender chooses; options are given to
/// [`Ipv4Repr::emit_with_options`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: IpProtocol,
    pub tos: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub ttl: u8,
    /// The length of what follows the header.
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// The length of a header without options.
    pub const HEADER_LEN: usize = MIN_HEADER_LEN;

    /// Writes a 20-byte header with a correct checksum. Fails with [`Error::Truncated`]
    /// if `packet` cannot hold the header and with [`Error::BadLength`] if the packet
    /// would be longer than the 65535 bytes the total length field can say.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) -> Result<()> {
        self.emit_with_options(packet, &[])
    }

    /// Writes a header of 20 bytes plus `options` (already padded to a multiple of 4,
    /// at most 40 bytes, else [`Error::BadLength`]), checksum included.
    pub fn emit_with_options<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Ipv4Packet<T>,
        options: &[u8],
    ) -> Result<()> {
        let header_len = Self::HEADER_LEN + options.len();
        if !options.len().is_multiple_of(4) || header_len > MAX_HEADER_LEN {
            return Err(Error::BadLength);
        }
        if packet.buffer.as_ref().len() < header_len {
            return Err(Error::Truncated);
        }
        let total_len =
            u16::try_from(header_len + self.payload_len).map_err(|_| Error::BadLength)?;
        packet.set_version_and_header_len(header_len);
        packet.set_tos(self.tos);
        packet.set_total_len(total_len);
        packet.set_ident(self.ident);
        packet.set_unfragmented(self.dont_frag);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        bytes::slice_mut(packet.buffer.as_mut(), MIN_HEADER_LEN..header_len)
            .copy_from_slice(options);
        packet.fill_checksum();
        Ok(())
    }
}
// ANCHOR_END: repr

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::{EthernetFrame, HEADER_LEN};
    use crate::wire::fixtures::fixture;

    fn ip_of(frame: &[u8]) -> &[u8] {
        assert!(EthernetFrame::new_checked(frame).is_ok());
        &frame[HEADER_LEN..]
    }

    #[test]
    fn parses_the_kernels_echo_request() {
        let bytes = fixture!("icmp_echo_request_56");
        let packet = Ipv4Packet::new_checked(ip_of(&bytes)).unwrap();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 20);
        assert_eq!(usize::from(packet.total_len()), 20 + 8 + 56);
        assert_eq!(packet.protocol(), IpProtocol::Icmp);
        assert_eq!(packet.src_addr(), Ipv4Addr::new(172, 16, 1, 1));
        assert_eq!(packet.dst_addr(), Ipv4Addr::new(172, 16, 1, 2));
        assert!(!packet.is_fragment());
        assert!(packet.verify_checksum());
        assert_eq!(packet.payload().len(), 8 + 56);
    }

    #[test]
    fn honours_options() {
        let bytes = fixture!("icmp_echo_request_options");
        let packet = Ipv4Packet::new_checked(ip_of(&bytes)).unwrap();
        assert!(packet.header_len() > 20);
        assert_eq!(packet.options().len(), packet.header_len() - 20);
        assert!(packet.verify_checksum());
        // The payload starts after the options: an ICMP echo request (type 8).
        assert_eq!(packet.payload()[0], 8);
    }

    #[test]
    fn padding_is_not_payload() {
        let mut bytes = fixture!("icmp_echo_request_0");
        let unpadded = ip_of(&bytes).len();
        bytes.resize(60, 0);
        let packet = Ipv4Packet::new_checked(ip_of(&bytes)).unwrap();
        assert_eq!(packet.payload().len(), unpadded - 20);
    }

    #[test]
    fn rejects_what_cannot_be_read() {
        let bytes = fixture!("icmp_echo_request_56");
        let ip = &bytes[HEADER_LEN..];
        for len in 0..ip.len() {
            assert_eq!(
                Ipv4Packet::new_checked(&ip[..len]).unwrap_err(),
                Error::Truncated,
                "len {len}"
            );
        }
        let mut v6 = ip.to_vec();
        v6[0] = 0x65;
        assert_eq!(Ipv4Packet::new_checked(&v6[..]).unwrap_err(), Error::Unsupported);
        let mut short_ihl = ip.to_vec();
        short_ihl[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&short_ihl[..]).unwrap_err(), Error::BadLength);
        let mut short_total = ip.to_vec();
        short_total[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&short_total[..]).unwrap_err(), Error::BadLength);
        let mut long_ihl = ip.to_vec();
        long_ihl.truncate(40);
        long_ihl[0] = 0x4f; // 60-byte header in a 40-byte buffer
        long_ihl[2..4].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&long_ihl[..]).unwrap_err(), Error::BadLength);
    }

    #[test]
    fn detects_a_damaged_header() {
        let bytes = fixture!("icmp_echo_request_56");
        let mut ip = bytes[HEADER_LEN..].to_vec();
        ip[8] ^= 1; // the TTL
        assert!(!Ipv4Packet::new_checked(&ip[..]).unwrap().verify_checksum());
    }

    #[test]
    fn repr_emit_writes_every_byte_and_a_valid_checksum() {
        let repr = Ipv4Repr {
            src_addr: Ipv4Addr::new(172, 16, 1, 2),
            dst_addr: Ipv4Addr::new(172, 16, 1, 1),
            protocol: IpProtocol::Icmp,
            tos: 0,
            ident: 0x1234,
            dont_frag: false,
            ttl: 64,
            payload_len: 64,
        };
        let mut buf = [0xa5u8; 20 + 64];
        let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut packet).unwrap();
        assert_eq!(buf[..10], [0x45, 0x00, 0x00, 0x54, 0x12, 0x34, 0x00, 0x00, 0x40, 0x01]);
        assert_eq!(buf[12..20], [172, 16, 1, 2, 172, 16, 1, 1]);
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(packet.verify_checksum());
    }

    #[test]
    fn repr_emits_options_after_the_header() {
        let repr = Ipv4Repr {
            src_addr: Ipv4Addr::new(172, 16, 1, 2),
            dst_addr: Ipv4Addr::new(172, 16, 1, 1),
            protocol: IpProtocol::Icmp,
            tos: 0,
            ident: 1,
            dont_frag: false,
            ttl: 64,
            payload_len: 8,
        };
        let mut buf = [0xa5u8; 24 + 8];
        let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
        repr.emit_with_options(&mut packet, &[7, 3, 4, 0]).unwrap();
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!((packet.header_len(), packet.total_len()), (24, 32));
        assert_eq!(packet.options(), [7, 3, 4, 0]);
        assert!(packet.verify_checksum());
        let mut packet = Ipv4Packet::new_unchecked(&mut buf[..]);
        assert_eq!(repr.emit_with_options(&mut packet, &[1, 0]), Err(Error::BadLength));
        assert_eq!(repr.emit_with_options(&mut packet, &[1; 44]), Err(Error::BadLength));
    }
}
