//! UDP (RFC 768): ports, a length and a checksum in front of the data, nothing more.
//!
//! ```text
//!  0      7 8     15 16    23 24    31
//! +--------+--------+--------+--------+
//! |     Source      |   Destination   |
//! |      Port       |      Port       |
//! +--------+--------+--------+--------+
//! |                 |                 |
//! |     Length      |    Checksum     |
//! +--------+--------+--------+--------+
//! |          data octets ...
//! +---------------- ...
//! ```
//!
//! The length counts the header and the data. The checksum is RFC 1071's, taken over a
//! *pseudo-header* (source and destination address, a zero byte, the protocol 17 and the
//! UDP length, as the IP header has them) followed by the header and the data: so a
//! datagram delivered to the wrong address fails its checksum. Over IPv4 the checksum is
//! optional: 0 means "none computed", and a computed checksum that comes out as 0 is sent
//! as `0xffff` instead (the other zero of one's complement).

use std::net::Ipv4Addr;
use std::ops::Range;

use super::{Error, Result, bytes, checksum};

// ANCHOR: fields
mod field {
    use std::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// Ports, length and checksum: 8 bytes.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// The IPv4 protocol number of UDP.
pub const PROTOCOL: u8 = 17;
// ANCHOR_END: fields

/// A view of a UDP datagram. Give it the IPv4 packet's payload (already cut by the IPv4
/// total length); the UDP length then cuts the data again.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    // ANCHOR: new_checked
    /// Checks the lengths once: the header fits, the length field counts at least the
    /// header ([`Error::BadLength`] otherwise) and no more than the buffer holds
    /// ([`Error::Truncated`]). Bytes after the length (Linux trims them) are ignored.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let packet = UdpPacket { buffer };
        let claimed = usize::from(packet.len());
        if claimed < HEADER_LEN {
            return Err(Error::BadLength);
        }
        if claimed > len {
            return Err(Error::Truncated);
        }
        Ok(packet)
    }
    // ANCHOR_END: new_checked

    fn u16_at(&self, range: Range<usize>) -> u16 {
        bytes::read_u16(self.buffer.as_ref(), range)
    }

    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// The length field: header and data.
    #[allow(clippy::len_without_is_empty)] // a datagram is never empty: it has a header
    pub fn len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// The header and the data, as the length field counts them.
    pub fn as_bytes(&self) -> &[u8] {
        bytes::slice(self.buffer.as_ref(), ..usize::from(self.len()))
    }

    /// The data, cut by the length field.
    pub fn payload(&self) -> &[u8] {
        bytes::slice(self.buffer.as_ref(), field::PAYLOAD..usize::from(self.len()))
    }

    // ANCHOR: verify_checksum
    /// Whether the checksum verifies for a datagram from `src` to `dst`. A checksum of 0
    /// means the sender computed none (RFC 768), and is accepted.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let sum = checksum::combine(
            pseudo_header_sum(src, dst, self.len()),
            checksum::sum(self.as_bytes()),
        );
        checksum::finish(sum) == 0
    }
    // ANCHOR_END: verify_checksum
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    fn set_u16(&mut self, range: Range<usize>, value: u16) {
        bytes::write_u16(self.buffer.as_mut(), range, value);
    }

    pub fn set_src_port(&mut self, value: u16) {
        self.set_u16(field::SRC_PORT, value);
    }

    pub fn set_dst_port(&mut self, value: u16) {
        self.set_u16(field::DST_PORT, value);
    }

    pub fn set_len(&mut self, value: u16) {
        self.set_u16(field::LENGTH, value);
    }

    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16(field::CHECKSUM, value);
    }

    /// The data, cut by the length field (set the length first).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        bytes::slice_mut(self.buffer.as_mut(), field::PAYLOAD..end)
    }

    // ANCHOR: fill_checksum
    /// Computes the checksum for a datagram from `src` to `dst` (the length field must be
    /// set). A result of 0 is sent as `0xffff`: 0 would say "no checksum" (RFC 768).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let sum = checksum::combine(
            pseudo_header_sum(src, dst, self.len()),
            checksum::sum(self.as_bytes()),
        );
        let value = match checksum::finish(sum) {
            0 => 0xffff,
            value => value,
        };
        self.set_checksum(value);
    }
    // ANCHOR_END: fill_checksum
}

// ANCHOR: pseudo_header
/// The one's complement sum of the IPv4 pseudo-header (RFC 768): the addresses, a zero
/// byte, the protocol and the UDP length, 12 bytes that are never sent.
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, udp_len: u16) -> u32 {
    let [s0, s1, s2, s3] = src.octets();
    let [d0, d1, d2, d3] = dst.octets();
    let [l0, l1] = udp_len.to_be_bytes();
    checksum::sum(&[s0, s1, s2, s3, d0, d1, d2, d3, 0, PROTOCOL, l0, l1])
}
// ANCHOR_END: pseudo_header

/// The fields of a UDP header that a sender chooses; the data is written after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl UdpRepr {
    /// Writes the header (the checksum zero, for [`UdpPacket::fill_checksum`] once the
    /// data is in). [`Error::Truncated`] if the buffer cannot hold header and data,
    /// [`Error::BadLength`] if the length does not fit the 16-bit field.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut UdpPacket<T>) -> Result<()> {
        let len = u16::try_from(HEADER_LEN + self.payload_len).map_err(|_| Error::BadLength)?;
        if packet.buffer.as_ref().len() < usize::from(len) {
            return Err(Error::Truncated);
        }
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        packet.set_checksum(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::EthernetFrame;
    use crate::wire::fixtures::fixture;
    use crate::wire::ipv4::Ipv4Packet;

    /// The IPv4 addresses and the UDP datagram of a captured frame.
    fn udp_of(frame: &[u8]) -> (Ipv4Addr, Ipv4Addr, Vec<u8>) {
        let eth = EthernetFrame::new_checked(frame).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        (ip.src_addr(), ip.dst_addr(), ip.payload().to_vec())
    }

    #[test]
    fn parses_and_verifies_the_kernels_datagrams() {
        for (bytes, data_len) in [
            (fixture!("udp_echo_request_0"), 0),
            (fixture!("udp_echo_request_5"), 5),
            (fixture!("udp_echo_request_1472"), 1472),
            (fixture!("udp_echo_broadcast"), 5),
            (fixture!("dhcp_discover"), 300),
        ] {
            let (src, dst, datagram) = udp_of(&bytes);
            let udp = UdpPacket::new_checked(&datagram[..]).unwrap();
            assert_eq!(udp.payload().len(), data_len);
            assert_ne!(udp.checksum(), 0, "the kernel and udhcpc both compute one");
            assert!(udp.verify_checksum(src, dst), "{data_len}-byte datagram");
        }
    }

    #[test]
    fn the_port_and_length_fields_read_as_tcpdump_showed_them() {
        let (_, _, datagram) = udp_of(&fixture!("udp_echo_request_5"));
        let udp = UdpPacket::new_checked(&datagram[..]).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port(), udp.len()), (33029, 7, 13));
        assert_eq!(udp.payload(), b"hello");
    }

    #[test]
    fn filling_the_checksum_reproduces_the_kernels() {
        // Byte-exactness: the checksum we compute for the kernel's own datagrams (odd,
        // empty and MTU-sized data, unicast and broadcast) is the one the kernel sent.
        for bytes in [
            fixture!("udp_echo_request_0"),
            fixture!("udp_echo_request_5"),
            fixture!("udp_echo_request_1472"),
            fixture!("udp_echo_broadcast"),
            fixture!("dhcp_discover"),
        ] {
            let (src, dst, mut datagram) = udp_of(&bytes);
            let original = UdpPacket::new_checked(&datagram[..]).unwrap().checksum();
            let mut udp = UdpPacket::new_checked(&mut datagram[..]).unwrap();
            udp.set_checksum(0xa5a5);
            udp.fill_checksum(src, dst);
            assert_eq!(udp.checksum(), original);
        }
    }

    #[test]
    fn the_pseudo_header_catches_a_wrong_address() {
        let (src, _, datagram) = udp_of(&fixture!("udp_echo_request_5"));
        let udp = UdpPacket::new_checked(&datagram[..]).unwrap();
        assert!(!udp.verify_checksum(src, Ipv4Addr::new(172, 16, 1, 3)));
    }

    #[test]
    fn a_damaged_odd_last_byte_fails_and_zero_means_none() {
        let (src, dst, mut datagram) = udp_of(&fixture!("udp_echo_request_5"));
        datagram[12] ^= 0x01;
        assert!(!UdpPacket::new_checked(&datagram[..]).unwrap().verify_checksum(src, dst));
        datagram[6..8].fill(0);
        assert!(UdpPacket::new_checked(&datagram[..]).unwrap().verify_checksum(src, dst));
    }

    #[test]
    fn a_checksum_that_sums_to_zero_is_sent_as_all_ones() {
        // Choose the data word so that the whole sum is 0xffff: its complement would be 0.
        let (src, dst) = (Ipv4Addr::new(172, 16, 1, 1), Ipv4Addr::new(172, 16, 1, 2));
        let mut datagram = vec![0x80, 0x05, 0x00, 0x07, 0x00, 0x0a, 0, 0, 0, 0];
        let partial = checksum::combine(pseudo_header_sum(src, dst, 10), checksum::sum(&datagram));
        let word = 0xffff - checksum::combine(partial, 0) as u16;
        datagram[8..10].copy_from_slice(&word.to_be_bytes());
        let mut udp = UdpPacket::new_checked(&mut datagram[..]).unwrap();
        udp.fill_checksum(src, dst);
        assert_eq!(udp.checksum(), 0xffff);
        assert!(udp.verify_checksum(src, dst));
    }

    #[test]
    fn rejects_bad_lengths_and_ignores_trailing_bytes() {
        for len in 0..HEADER_LEN {
            assert_eq!(UdpPacket::new_checked(&vec![0u8; len][..]).unwrap_err(), Error::Truncated);
        }
        let (_, _, datagram) = udp_of(&fixture!("udp_echo_request_5"));
        for claimed in 0..8u16 {
            let mut d = datagram.clone();
            d[4..6].copy_from_slice(&claimed.to_be_bytes());
            assert_eq!(UdpPacket::new_checked(&d[..]).unwrap_err(), Error::BadLength);
        }
        let mut d = datagram.clone();
        d[4..6].copy_from_slice(&14u16.to_be_bytes());
        assert_eq!(UdpPacket::new_checked(&d[..]).unwrap_err(), Error::Truncated);
        let mut longer = datagram.clone();
        longer.extend_from_slice(&[0xa5; 3]);
        let udp = UdpPacket::new_checked(&longer[..]).unwrap();
        assert_eq!(udp.payload(), b"hello");
        assert_eq!(udp.as_bytes(), &datagram[..]);
    }

    #[test]
    fn emit_writes_every_header_byte() {
        let mut buf = [0xa5u8; 13];
        let mut udp = UdpPacket::new_unchecked(&mut buf[..]);
        UdpRepr { src_port: 7, dst_port: 33029, payload_len: 5 }.emit(&mut udp).unwrap();
        udp.payload_mut().copy_from_slice(b"hello");
        assert_eq!(&buf[..8], &[0, 7, 0x81, 0x05, 0, 13, 0, 0]);
        let mut small = [0u8; 12];
        let repr = UdpRepr { src_port: 7, dst_port: 7, payload_len: 5 };
        assert_eq!(repr.emit(&mut UdpPacket::new_unchecked(&mut small[..])), Err(Error::Truncated));
    }
}
