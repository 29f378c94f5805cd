//! ICMPv6 (RFC 4443): the same four header bytes as ICMPv4, but the checksum also covers a
//! pseudo-header of the IPv6 addresses, the message's length and the next-header value 58
//! (RFC 8200 section 8.1), so a message delivered to the wrong address fails it.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Identifier          |        Sequence Number        |  (echo)
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::net::Ipv6Addr;

use super::{Error, Result, bytes, checksum, ipv6};

/// The message types this course meets.
pub const ECHO_REQUEST: u8 = 128;
pub const ECHO_REPLY: u8 = 129;
pub const ROUTER_SOLICITATION: u8 = 133;
pub const ROUTER_ADVERTISEMENT: u8 = 134;
pub const NEIGHBOR_SOLICITATION: u8 = 135;
pub const NEIGHBOR_ADVERTISEMENT: u8 = 136;
pub const MLD_QUERY: u8 = 130;
pub const MLDV1_REPORT: u8 = 131;
pub const MLDV2_REPORT: u8 = 143;

mod field {
    use std::ops::Range;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ: Range<usize> = 6..8;
}

/// Type, code, checksum and four bytes that depend on the type.
pub const HEADER_LEN: usize = 8;

// ANCHOR: pseudo_header
/// The one's complement sum of the pseudo-header (RFC 8200 8.1): source and destination
/// addresses, the upper-layer length as 32 bits, three zero bytes and the next header.
pub fn pseudo_header_sum(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> u32 {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    let tail = [len[0], len[1], len[2], len[3], 0, 0, 0, ipv6::NEXT_HEADER_ICMPV6];
    let addrs = checksum::combine(checksum::sum(&src.octets()), checksum::sum(&dst.octets()));
    checksum::combine(addrs, checksum::sum(&tail))
}
// ANCHOR_END: pseudo_header

/// A view of an ICMPv6 message: the whole upper-layer payload, no more.
#[derive(Debug, Clone)]
pub struct Icmpv6Message<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Message<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Message { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Icmpv6Message { buffer })
    }

    pub fn msg_type(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), field::TYPE)
    }

    pub fn msg_code(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), field::CODE)
    }

    pub fn checksum(&self) -> u16 {
        bytes::read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn echo_ident(&self) -> u16 {
        bytes::read_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    pub fn echo_seq_no(&self) -> u16 {
        bytes::read_u16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Whether the checksum verifies over the pseudo-header and the whole message.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let bytes = self.buffer.as_ref();
        let sum = checksum::combine(pseudo_header_sum(src, dst, bytes.len()), checksum::sum(bytes));
        checksum::finish(sum) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Message<T> {
    pub fn set_msg_type(&mut self, value: u8) {
        bytes::write_u8(self.buffer.as_mut(), field::TYPE, value);
    }

    pub fn set_msg_code(&mut self, value: u8) {
        bytes::write_u8(self.buffer.as_mut(), field::CODE, value);
    }

    pub fn set_checksum(&mut self, value: u16) {
        bytes::write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Computes the checksum over the pseudo-header and the message, and stores it.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let bytes = self.buffer.as_ref();
        let sum = checksum::combine(pseudo_header_sum(src, dst, bytes.len()), checksum::sum(bytes));
        self.set_checksum(checksum::finish(sum));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::EthernetFrame;
    use crate::wire::fixtures::fixture;
    use crate::wire::ipv6::Ipv6Packet;

    #[test]
    fn the_kernels_checksums_verify_and_are_recomputed_the_same() {
        for frame in [
            fixture!("ipv6_echo_request_56"),
            fixture!("ipv6_echo_request_0"),
            fixture!("ipv6_echo_request_1"),
            fixture!("ipv6_echo_request_1452"),
            fixture!("ipv6_ns_multicast"),
            fixture!("ipv6_ns_dad"),
            fixture!("kernel_na_unicast"),
            fixture!("ipv6_router_solicitation"),
        ] {
            let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
            let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            let icmp = Icmpv6Message::new_checked(ip.payload()).unwrap();
            assert!(icmp.verify_checksum(src, dst), "{}", hex::encode(&frame));
            let mut copy = ip.payload().to_vec();
            let mut ours = Icmpv6Message::new_unchecked(&mut copy[..]);
            ours.fill_checksum(src, dst);
            assert_eq!(ours.checksum(), icmp.checksum());
            // Delivered to another address, the same bytes fail.
            let other = Ipv6Addr::new(0xfd00, 0x172, 0x16, 1, 0, 0, 0, 3);
            assert!(!icmp.verify_checksum(src, other));
        }
    }

    #[test]
    fn reads_an_echo_request() {
        let frame = fixture!("ipv6_echo_request_56");
        let icmp = Icmpv6Message::new_checked(&frame[54..]).unwrap();
        assert_eq!((icmp.msg_type(), icmp.msg_code()), (ECHO_REQUEST, 0));
        assert_eq!(icmp.as_bytes().len(), 64);
        assert!(Icmpv6Message::new_checked(&frame[54..61]).is_err());
    }
}
