//! Just enough IPv6 (RFC 8200) to *name* what a freshly-upped interface sends on its own:
//! router solicitations, neighbour solicitations and MLD reports. The responder does not
//! answer IPv6; the hex dump chapter shows it.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Traffic Class |           Flow Label                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Source Address (16 bytes)                     |
//! |                 Destination Address (16 bytes)                |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::net::Ipv6Addr;

use super::{Error, Result, bytes};

mod field {
    use std::ops::Range;

    pub const VERSION: usize = 0;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

pub const HEADER_LEN: usize = field::DST.end;

/// Next-header values met on a fresh interface.
pub const NEXT_HEADER_HOP_BY_HOP: u8 = 0;
pub const NEXT_HEADER_ICMPV6: u8 = 58;

/// A view of an IPv6 packet's fixed header.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Checks the version and that the fixed header and the payload length fit.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Ipv6Packet { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if bytes::read_u8(packet.buffer.as_ref(), field::VERSION) >> 4 != 6 {
            return Err(Error::Unsupported);
        }
        if len < HEADER_LEN + usize::from(packet.payload_len()) {
            return Err(Error::Truncated);
        }
        Ok(packet)
    }

    pub fn payload_len(&self) -> u16 {
        bytes::read_u16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    pub fn next_header(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), field::NEXT_HEADER)
    }

    pub fn hop_limit(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), field::HOP_LIMIT)
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(bytes::read::<16>(self.buffer.as_ref(), field::SRC))
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(bytes::read::<16>(self.buffer.as_ref(), field::DST))
    }

    pub fn payload(&self) -> &[u8] {
        bytes::slice(self.buffer.as_ref(), HEADER_LEN..HEADER_LEN + usize::from(self.payload_len()))
    }

    /// The upper-layer protocol and its bytes, skipping a hop-by-hop options header (which
    /// MLD reports carry for their router alert). Returns `None` if that header is cut.
    pub fn upper_layer(&self) -> Option<(u8, &[u8])> {
        let payload = self.payload();
        if self.next_header() != NEXT_HEADER_HOP_BY_HOP {
            return Some((self.next_header(), payload));
        }
        // Hop-by-hop: next header, then its length in 8-byte units not counting the first.
        let (&next, rest) = payload.split_first()?;
        let ext_len = (usize::from(*rest.first()?) + 1) * 8;
        Some((next, payload.get(ext_len..)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::EthernetFrame;
    use crate::wire::fixtures::fixture;

    #[test]
    fn finds_icmpv6_behind_hop_by_hop_in_an_mld_report() {
        let bytes = fixture!("ipv6_mld_report");
        let eth = EthernetFrame::new_checked(&bytes[..]).unwrap();
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.next_header(), NEXT_HEADER_HOP_BY_HOP);
        let (proto, icmp) = ip.upper_layer().unwrap();
        assert_eq!(proto, NEXT_HEADER_ICMPV6);
        assert_eq!(icmp[0], 143, "MLDv2 report");
    }

    #[test]
    fn reads_a_router_solicitation() {
        let bytes = fixture!("ipv6_router_solicitation");
        let eth = EthernetFrame::new_checked(&bytes[..]).unwrap();
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        let (proto, icmp) = ip.upper_layer().unwrap();
        assert_eq!((proto, icmp[0]), (NEXT_HEADER_ICMPV6, 133));
        assert_eq!(ip.hop_limit(), 255);
        assert_eq!(ip.dst_addr(), "ff02::2".parse::<Ipv6Addr>().unwrap());
    }
}
