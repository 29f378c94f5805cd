//! IPv6 (RFC 8200): the fixed header, and the extension headers walked to the upper layer.
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
//!
//! Unlike IPv4 there is no header checksum (the upper layers cover the addresses through
//! their pseudo-header) and no options in the header itself: what IPv4 puts in options,
//! IPv6 puts in extension headers chained by their Next Header fields.

use std::net::Ipv6Addr;

use super::{Error, Result, bytes};

// ANCHOR: fields
mod field {
    use std::ops::Range;

    /// Version (4 bits), traffic class (8 bits), flow label (20 bits).
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

pub const HEADER_LEN: usize = field::DST.end;

/// Next-header values (IANA "Assigned Internet Protocol Numbers").
pub const NEXT_HEADER_HOP_BY_HOP: u8 = 0;
pub const NEXT_HEADER_ROUTING: u8 = 43;
pub const NEXT_HEADER_FRAGMENT: u8 = 44;
pub const NEXT_HEADER_ICMPV6: u8 = 58;
pub const NEXT_HEADER_NONE: u8 = 59;
pub const NEXT_HEADER_DEST_OPTIONS: u8 = 60;
// ANCHOR_END: fields

/// A view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Checks the version and that the fixed header and the payload length fit. Bytes
    /// after the payload (Ethernet padding) are allowed and ignored.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Ipv6Packet { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if packet.version() != 6 {
            return Err(Error::Unsupported);
        }
        if len < HEADER_LEN + usize::from(packet.payload_len()) {
            return Err(Error::Truncated);
        }
        Ok(packet)
    }

    fn ver_tc_flow(&self) -> u32 {
        u32::from_be_bytes(bytes::read(self.buffer.as_ref(), field::VER_TC_FLOW))
    }

    pub fn version(&self) -> u8 {
        (self.ver_tc_flow() >> 28) as u8
    }

    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
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

    /// The payload, cut by the payload length (so Ethernet padding is not included).
    pub fn payload(&self) -> &[u8] {
        bytes::slice(self.buffer.as_ref(), HEADER_LEN..HEADER_LEN + usize::from(self.payload_len()))
    }

    /// Walks the extension headers to the upper layer and returns its protocol number and
    /// bytes (RFC 8200 section 4). Every extension header is at least 8 bytes, so the walk
    /// ends. What this host does not process is refused, never skipped over:
    /// - a Fragment header: we do not reassemble;
    /// - a Hop-by-Hop header anywhere but first (RFC 8200 4.1: it MUST come first);
    /// - a Routing header with segments left (we would have to forward the packet);
    /// - an option we do not know whose type's two high bits say "discard" (4.2);
    /// - a header or option that runs past its end.
    pub fn upper_layer(&self) -> core::result::Result<(u8, &[u8]), Extension> {
        walk_extensions(self.next_header(), self.payload())
    }
}

// ANCHOR: walk_extensions
/// [`Ipv6Packet::upper_layer`] on a next-header value and the bytes it names.
pub fn walk_extensions(
    mut next: u8,
    mut rest: &[u8],
) -> core::result::Result<(u8, &[u8]), Extension> {
    let mut first = true;
    loop {
        match next {
            NEXT_HEADER_HOP_BY_HOP | NEXT_HEADER_DEST_OPTIONS | NEXT_HEADER_ROUTING => {
                if next == NEXT_HEADER_HOP_BY_HOP && !first {
                    return Err(Extension::HopByHopNotFirst);
                }
                // Next header, then the length in 8-byte units not counting the first.
                let (&after, tail) = rest.split_first().ok_or(Extension::Truncated)?;
                let len = (usize::from(*tail.first().ok_or(Extension::Truncated)?) + 1) * 8;
                let header = rest.get(..len).ok_or(Extension::Truncated)?;
                if next == NEXT_HEADER_ROUTING {
                    // Type (byte 2), segments left (byte 3).
                    if header.get(3).copied().unwrap_or(0) != 0 {
                        return Err(Extension::Routing);
                    }
                } else {
                    check_options(header.get(2..).unwrap_or(&[]))?;
                }
                next = after;
                rest = rest.get(len..).unwrap_or(&[]);
            }
            NEXT_HEADER_FRAGMENT => return Err(Extension::Fragment),
            upper => return Ok((upper, rest)),
        }
        first = false;
    }
}
// ANCHOR_END: walk_extensions

/// Why [`Ipv6Packet::upper_layer`] stopped before the upper layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    /// An extension header, or an option in one, runs past its end.
    Truncated,
    /// A Fragment header.
    Fragment,
    /// A Hop-by-Hop Options header that is not the first.
    HopByHopNotFirst,
    /// A Routing header with segments left.
    Routing,
    /// An unknown option whose type says "discard the packet".
    UnknownOption,
}

// ANCHOR: check_options
/// Option types every node knows (RFC 8200 4.2; RFC 2711 for the router alert that MLD
/// reports carry).
const OPT_PAD1: u8 = 0;
const OPT_PADN: u8 = 1;
const OPT_ROUTER_ALERT: u8 = 5;

/// The type-length-value options of a Hop-by-Hop or Destination Options header.
fn check_options(mut options: &[u8]) -> core::result::Result<(), Extension> {
    while let Some((&kind, tail)) = options.split_first() {
        if kind == OPT_PAD1 {
            options = tail;
            continue;
        }
        let len = usize::from(*tail.first().ok_or(Extension::Truncated)?);
        options = tail.get(1 + len..).ok_or(Extension::Truncated)?;
        // The two high bits of an unknown type: 00 skip it, anything else drop the packet
        // (with an ICMP Parameter Problem for 10 and 11, which we do not send).
        if !matches!(kind, OPT_PADN | OPT_ROUTER_ALERT) && kind >> 6 != 0 {
            return Err(Extension::UnknownOption);
        }
    }
    Ok(())
}
// ANCHOR_END: check_options

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    pub fn set_ver_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let word = (6 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        bytes::write(self.buffer.as_mut(), field::VER_TC_FLOW, word.to_be_bytes());
    }

    pub fn set_payload_len(&mut self, len: u16) {
        bytes::write_u16(self.buffer.as_mut(), field::PAYLOAD_LEN, len);
    }

    pub fn set_next_header(&mut self, next: u8) {
        bytes::write_u8(self.buffer.as_mut(), field::NEXT_HEADER, next);
    }

    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        bytes::write_u8(self.buffer.as_mut(), field::HOP_LIMIT, hop_limit);
    }

    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        bytes::write(self.buffer.as_mut(), field::SRC, addr.octets());
    }

    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        bytes::write(self.buffer.as_mut(), field::DST, addr.octets());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        bytes::slice_mut(self.buffer.as_mut(), HEADER_LEN..)
    }
}

/// The fields of an IPv6 header we send (no extension headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: u8,
    pub traffic_class: u8,
    pub hop_limit: u8,
    pub payload_len: usize,
}

impl Ipv6Repr {
    /// Writes the header (flow label 0) into a buffer that holds at least the header and
    /// the payload.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) -> Result<()> {
        let payload_len = u16::try_from(self.payload_len).map_err(|_| Error::BadLength)?;
        if packet.buffer.as_ref().len() < HEADER_LEN + self.payload_len {
            return Err(Error::Truncated);
        }
        packet.set_ver_tc_flow(self.traffic_class, 0);
        packet.set_payload_len(payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        Ok(())
    }
}

// ANCHOR: addresses
/// The link-local address formed from a MAC by modified EUI-64 (RFC 4291 2.5.1 and
/// appendix A): fe80::/64, then the MAC with ff:fe inserted in its middle and the
/// universal/local bit (0x02 of the first byte) inverted. 02:00:00:00:00:02 gives
/// fe80::ff:fe00:2.
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    let [a, b, c, d, e, f] = mac;
    Ipv6Addr::from([0xfe, 0x80, 0, 0, 0, 0, 0, 0, a ^ 0x02, b, c, 0xff, 0xfe, d, e, f])
}

/// The solicited-node multicast group of an address (RFC 4291 2.7.1): ff02::1:ff00:0/104
/// and the address's last 24 bits. Neighbour solicitations for the address go there.
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let [.., x, y, z] = addr.octets();
    Ipv6Addr::from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, x, y, z])
}

/// Whether `addr` is some solicited-node group.
pub fn is_solicited_node(addr: Ipv6Addr) -> bool {
    addr.octets()[..13] == solicited_node(Ipv6Addr::UNSPECIFIED).octets()[..13]
}

/// The all-nodes group of the link, ff02::1: every IPv6 host listens on it.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The Ethernet address a multicast group maps to (RFC 2464 section 7): 33:33 and the
/// group's last 32 bits.
pub fn multicast_mac(group: Ipv6Addr) -> [u8; 6] {
    let [.., w, x, y, z] = group.octets();
    [0x33, 0x33, w, x, y, z]
}
// ANCHOR_END: addresses

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::fixture;

    fn ip(frame: &[u8]) -> Ipv6Packet<&[u8]> {
        Ipv6Packet::new_checked(&frame[14..]).unwrap()
    }

    #[test]
    fn finds_icmpv6_behind_hop_by_hop_in_an_mld_report() {
        let bytes = fixture!("ipv6_mld_report");
        let ip = ip(&bytes);
        assert_eq!(ip.next_header(), NEXT_HEADER_HOP_BY_HOP);
        let (proto, icmp) = ip.upper_layer().unwrap();
        assert_eq!(proto, NEXT_HEADER_ICMPV6);
        assert_eq!(icmp[0], 143, "MLDv2 report");
    }

    #[test]
    fn reads_a_router_solicitation() {
        let bytes = fixture!("ipv6_router_solicitation");
        let ip = ip(&bytes);
        let (proto, icmp) = ip.upper_layer().unwrap();
        assert_eq!((proto, icmp[0]), (NEXT_HEADER_ICMPV6, 133));
        assert_eq!(ip.hop_limit(), 255);
        assert_eq!(ip.dst_addr(), "ff02::2".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn reads_the_fields_of_a_captured_echo_request() {
        let bytes = fixture!("ipv6_echo_request_56");
        let ip = ip(&bytes);
        assert_eq!((ip.version(), ip.traffic_class(), ip.payload_len()), (6, 0, 64));
        assert_ne!(ip.flow_label(), 0, "Linux labels its flows (net.ipv6.auto_flowlabels)");
        assert_eq!(ip.hop_limit(), 64);
        assert_eq!(ip.src_addr(), "fd00:172:16:1::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.dst_addr(), "fd00:172:16:1::2".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn the_lab_addresses_are_formed_as_rfc_4291_says() {
        let mac = [0x02, 0, 0, 0, 0, 0x02];
        assert_eq!(link_local(mac), "fe80::ff:fe00:2".parse::<Ipv6Addr>().unwrap());
        // The kernel's own link-local address, from the captures (MAC 02:00:00:00:00:01).
        let ns = fixture!("ipv6_ns_unicast");
        assert_eq!(link_local([0x02, 0, 0, 0, 0, 0x01]), ip(&ns).src_addr());
        let group = solicited_node("fd00:172:16:1::2".parse().unwrap());
        assert_eq!(group, "ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap());
        assert!(is_solicited_node(group) && !is_solicited_node(ALL_NODES));
        assert_eq!(multicast_mac(group), [0x33, 0x33, 0xff, 0, 0, 0x02]);
        let ns = fixture!("ipv6_ns_multicast");
        assert_eq!(ip(&ns).dst_addr(), group);
        assert_eq!(ns[0..6], multicast_mac(group));
    }

    /// The echo request with `ext` inserted between the fixed header and ICMPv6.
    fn with_extension(ext: &[u8]) -> Vec<u8> {
        let mut frame = fixture!("ipv6_echo_request_56");
        let first = frame[20];
        frame.splice(54..54, ext.iter().copied());
        frame[20] = ext[0];
        frame[54] = first;
        let len = u16::from_be_bytes([frame[18], frame[19]]) + ext.len() as u16;
        frame[18..20].copy_from_slice(&len.to_be_bytes());
        frame
    }

    #[test]
    fn walks_extension_headers_and_refuses_what_it_must() {
        let icmp = |f: &[u8]| ip(f).upper_layer().map(|(proto, bytes)| (proto, bytes.len()));
        // Each header: [next header (patched), length, ...]; the first byte names its type.
        type Walked = core::result::Result<(u8, usize), Extension>;
        let cases: Vec<(&str, Vec<u8>, Walked)> = vec![
            ("hop-by-hop, PadN", vec![0, 0, 1, 4, 0, 0, 0, 0], Ok((58, 64))),
            ("destination options, Pad1s", vec![60, 0, 0, 0, 0, 0, 0, 0], Ok((58, 64))),
            ("router alert", vec![0, 0, 5, 2, 0, 0, 1, 0], Ok((58, 64))),
            ("unknown option, skip", vec![60, 0, 0x1e, 4, 0, 0, 0, 0], Ok((58, 64))),
            (
                "unknown option, discard",
                vec![60, 0, 0x5e, 4, 0, 0, 0, 0],
                Err(Extension::UnknownOption),
            ),
            (
                "unknown option, error",
                vec![60, 0, 0x9e, 4, 0, 0, 0, 0],
                Err(Extension::UnknownOption),
            ),
            ("option past the header", vec![60, 0, 1, 5, 0, 0, 0, 0], Err(Extension::Truncated)),
            ("header past the packet", vec![60, 200, 0, 0, 0, 0, 0, 0], Err(Extension::Truncated)),
            ("routing, 0 segments left", vec![43, 0, 4, 0, 0, 0, 0, 0], Ok((58, 64))),
            ("routing, 1 segment left", vec![43, 0, 4, 1, 0, 0, 0, 0], Err(Extension::Routing)),
            ("fragment", vec![44, 0, 0, 0, 0, 0, 0, 1], Err(Extension::Fragment)),
        ];
        for (what, ext, expected) in cases {
            assert_eq!(icmp(&with_extension(&ext)), expected, "{what}");
        }
        // Destination options, then hop-by-hop: the second is out of place.
        let mut twice = with_extension(&[60, 0, 1, 4, 0, 0, 0, 0]);
        twice.splice(54..54, [0u8, 0, 1, 4, 0, 0, 0, 0]);
        (twice[20], twice[54], twice[19]) = (60, 0, twice[19] + 8);
        assert_eq!(icmp(&twice), Err(Extension::HopByHopNotFirst));
        twice[54] = 60;
        assert_eq!(icmp(&twice), Ok((58, 64)), "two destination options headers");
    }

    #[test]
    fn emits_a_header() {
        let mut buf = [0xa5u8; 48];
        let repr = Ipv6Repr {
            src_addr: "fd00:172:16:1::2".parse().unwrap(),
            dst_addr: "fd00:172:16:1::1".parse().unwrap(),
            next_header: NEXT_HEADER_ICMPV6,
            traffic_class: 0xb8,
            hop_limit: 64,
            payload_len: 8,
        };
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..])).unwrap();
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(buf[0..4], [0x6b, 0x80, 0, 0]);
        assert_eq!((p.traffic_class(), p.flow_label(), p.payload_len()), (0xb8, 0, 8));
        assert_eq!((p.src_addr(), p.dst_addr(), p.hop_limit()), (repr.src_addr, repr.dst_addr, 64));
        assert_eq!(buf[40..], [0xa5; 8], "the payload is the caller's");
        let mut short = [0u8; 47];
        assert_eq!(
            repr.emit(&mut Ipv6Packet::new_unchecked(&mut short[..])),
            Err(Error::Truncated)
        );
    }
}
