//! IPv4 for the responder (chapter 4): the checks a packet must pass before anything in
//! it is trusted, the order in which Linux looks at the rest, and the identification of
//! every datagram we send.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::Ipv4Addr;

use super::echo::{Timestamp, echo_reply};
use super::parameter_problem::parameter_problem;
use super::{DropReason, Host, Outcome, Services, udp_echo, wire_drop};
use crate::wire::ethernet::{EthernetFrame, MacAddr};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use crate::wire::ipv4_options::Ipv4Options;

/// The TTL of our echo replies: Linux's default (`net.ipv4.ip_default_ttl`).
pub const REPLY_TTL: u8 = 64;

// ANCHOR: idents
/// Chooses the IPv4 identification of every datagram we send.
///
/// Our replies leave with DF clear, as Linux's do, so a router on a narrower path back may
/// fragment them, and the receiver then sorts fragments into datagrams by source,
/// destination, protocol and identification. So the identification must not repeat
/// between two hosts while an earlier datagram may still be in flight (RFC 791; RFC 6864
/// section 4): echoing the request's would give two requests with the same number two
/// replies with the same number. Hence a counter per destination, as Linux keeps them
/// (`ip_idents_reserve`): 64 counters here, each serving the destinations a keyed hash
/// puts in its bucket, each starting at a value derived from the key. One counter for
/// everybody would also do for uniqueness, but would tell every host how many replies went
/// to all the others (the "idle scan"; RFC 7739 section 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idents {
    key: u64,
    next: [u16; Idents::BUCKETS],
}

impl Idents {
    const BUCKETS: usize = 64;

    /// Counters derived from `key`: the same key gives the same numbers (for tests).
    pub fn new(key: u64) -> Idents {
        let mut next = [0; Idents::BUCKETS];
        for (bucket, start) in (0u64..).zip(next.iter_mut()) {
            *start = mix(key ^ mix(bucket)) as u16;
        }
        Idents { key, next }
    }

    /// Counters with a key from the operating system's randomness (which the standard
    /// library's `RandomState` draws on): for the binaries.
    pub fn random() -> Idents {
        Idents::new(RandomState::new().hash_one(0u64))
    }

    /// The identification of the next datagram to `dst`.
    pub fn next(&mut self, dst: Ipv4Addr) -> u16 {
        let bucket = mix(self.key.rotate_left(32) ^ u64::from(u32::from(dst)));
        let bucket = (bucket % Idents::BUCKETS as u64) as usize;
        let Some(next) = self.next.get_mut(bucket) else { return 0 };
        let ident = *next;
        *next = next.wrapping_add(1);
        ident
    }
}

/// SplitMix64's finalizer: spreads every bit of the input over every bit of the output.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
// ANCHOR_END: idents

// ANCHOR: echo_checks
// ANCHOR: student_ch5_validation "chapter 5: the full responder's validation"
/// Checks an IPv4 packet and returns it if it is for us: version, lengths, header
/// checksum, our address as destination and a unicast source.
fn ipv4_for_us<'a>(
    host: &Host,
    dst_mac: MacAddr,
    bytes: &'a [u8],
) -> Result<Ipv4Packet<&'a [u8]>, DropReason> {
    if dst_mac != host.mac {
        return Err(DropReason::NotOurMac);
    }
    let ip = Ipv4Packet::new_checked(bytes).map_err(wire_drop)?;
    if !ip.verify_checksum() {
        return Err(DropReason::Ipv4BadChecksum);
    }
    if ip.dst_addr() != host.ip {
        return Err(DropReason::Ipv4NotForUs);
    }
    // 0.0.0.0/8 means "this network": a source only while a host has no address yet.
    let src = ip.src_addr();
    if src.is_broadcast()
        || src.is_multicast()
        || src.octets()[0] == 0
        || src.is_loopback()
        || src == host.ip
    {
        return Err(DropReason::Ipv4BadSource);
    }
    Ok(ip)
}
// ANCHOR_END: student_ch5_validation
// ANCHOR_END: echo_checks

// ANCHOR: ipv4_reply
/// Answers an IPv4 packet for us, in Linux's order: the options first (malformed ones get
/// an ICMP Parameter Problem, whatever the protocol), then fragments and source routes
/// (dropped), then the ICMP echo request.
pub(super) fn ipv4_reply(
    host: &Host,
    services: Services,
    idents: &mut Idents,
    now: Timestamp,
    eth: &EthernetFrame<&[u8]>,
    out: &mut [u8],
) -> Outcome {
    let ip = ipv4_for_us(host, eth.dst_addr(), eth.payload())?;
    let options = match Ipv4Options::parse(ip.header()) {
        Ok(options) => options,
        Err(bad) => return parameter_problem(host, idents, eth, &ip, bad, out),
    };
    if ip.is_fragment() {
        return Err(DropReason::Ipv4Fragment);
    }
    // Linux accepts source routes only where `accept_source_route` is set, which it is
    // not by default; then it drops them without a word, as we do.
    if options.source_route.is_some() {
        return Err(DropReason::Ipv4SourceRouted);
    }
    if ip.protocol() == IpProtocol::Udp && services.udp_echo {
        return udp_echo::reply(host, idents, eth, &ip, out);
    }
    echo_reply(host, idents, now, eth, &ip, &options, out)
}
// ANCHOR_END: ipv4_reply

// ANCHOR: reply_header
/// The IPv4 header of our answer to `ip`, back to its sender: from our address, with the
/// next identification for that host, TTL 64, and DF clear, as Linux's, so that a
/// narrower path back may fragment it.
pub(super) fn reply_header(
    host: &Host,
    idents: &mut Idents,
    ip: &Ipv4Packet<&[u8]>,
    protocol: IpProtocol,
    tos: u8,
    payload_len: usize,
) -> Ipv4Repr {
    Ipv4Repr {
        src_addr: host.ip,
        dst_addr: ip.src_addr(),
        protocol,
        tos,
        ident: idents.next(ip.src_addr()),
        dont_frag: false,
        ttl: REPLY_TTL,
        payload_len,
    }
}
// ANCHOR_END: reply_header

#[cfg(test)]
mod tests {
    use super::*;
    use crate::respond::respond;
    use crate::respond::testing::*;
    use crate::wire::fixtures::fixture;

    // ANCHOR: idents_test
    #[test]
    fn two_requests_with_the_same_identification_get_replies_with_different_ones() {
        // ping -M do sends its requests with identification 0 (an atomic datagram, RFC
        // 6864); the replies have DF clear, so theirs must not repeat.
        let request = with_ip(&fixture!("icmp_echo_request_56"), |p| p[4..6].fill(0));
        let mut idents = Idents::new(7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let mut out = [0u8; 200];
            respond(&US, Services::ALL, &mut idents, NOW, &request, &mut out).unwrap();
            assert_eq!(out[20] & 0x40, 0, "DF clear");
            assert!(
                seen.insert(u16::from_be_bytes([out[18], out[19]])),
                "an identification repeated"
            );
        }
    }
    // ANCHOR_END: idents_test

    #[test]
    fn idents_count_per_destination_from_a_keyed_start() {
        let a = Ipv4Addr::new(172, 16, 1, 1);
        let mut idents = Idents::new(42);
        let first = idents.next(a);
        assert_eq!(idents.next(a), first.wrapping_add(1));
        assert_eq!(Idents::new(42).next(a), first, "the same key, the same numbers");
        assert_ne!(Idents::new(43).next(a), first, "another key, other numbers");
        // Replies to 250 other hosts show in a's sequence only where they share its
        // bucket (1 in 64 of them, on average).
        let mut quiet = Idents::new(42);
        let start = quiet.next(a);
        for n in 3..=252 {
            quiet.next(Ipv4Addr::new(172, 16, 1, n));
        }
        let counted = quiet.next(a).wrapping_sub(start) - 1;
        assert!(counted < 20, "{counted} of 250 replies to others counted in a's bucket");
        assert_ne!(Idents::random(), Idents::random());
    }
}
