//! The responder as pure functions (chapters 3 to 5): a frame and our addresses in; the
//! reply frame, or the reason the frame is ignored, out. No I/O happens here, so every
//! decision can be tested with captured bytes and no TAP device.
//!
//! The rules are those of a careful host, and each one closes a hole that a naive
//! responder (like the C program this course grew from) leaves open:
//! - answer ARP only for our own address (no spoofing of other hosts);
//! - answer only echo *requests* (never a reply: two responders must not ping-pong);
//! - never reply to, or from, a broadcast or multicast address (no smurf amplifier);
//! - never send more bytes than we received (no amplification);
//! - verify every length and checksum before trusting a field;
//! - never panic, whatever the frame: the lints below forbid indexing, `unwrap` and the
//!   like outside the tests, and the property tests and the fuzzer try it.

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

use std::fmt;
use std::net::Ipv4Addr;

use crate::wire::arp::{self, ArpOperation, ArpPacket, ArpRepr};
use crate::wire::ethernet::{self, EtherType, EthernetFrame, MacAddr};
use crate::wire::icmpv4::{Icmpv4Message, Icmpv4Type};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use crate::wire::{self, checksum};

/// Who we are on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

/// The TTL of our echo replies: Linux's default (`net.ipv4.ip_default_ttl`).
pub const REPLY_TTL: u8 = 64;

// ANCHOR: drop
/// Why a frame got no reply. The full responder counts each reason; the book explains them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Drop {
    /// A header, or the length a header claims, runs past the end of the frame.
    Truncated,
    /// The destination MAC is another host's unicast address (seen on a bridge), or a
    /// group address where only unicast makes sense.
    NotOurMac,
    /// The source MAC is a group (multicast or broadcast) address: no frame may come from
    /// one, and a reply would go to everybody.
    BadSourceMac,
    /// An IEEE 802.1Q VLAN tag (or an 802.1ad "Q-in-Q" one): this host is on no VLAN.
    VlanTagged,
    /// A protocol this program does not answer (IPv6, LLDP, TCP, UDP, ...).
    OtherProtocol,
    /// ARP for something other than Ethernet and IPv4.
    ArpUnsupported,
    /// An ARP reply or another operation: only requests are answered.
    ArpNotRequest,
    /// An ARP request for another address: answering would steal that host's traffic.
    ArpNotForUs,
    /// An ARP request whose sender claims a group MAC, our own IP address, or an IP
    /// address no host can have (broadcast, multicast, loopback).
    ArpBadSender,
    /// IPv4 with a version other than 4, a header shorter than 20 bytes, a total length
    /// shorter than its own header, or options whose lengths do not add up.
    Ipv4Malformed,
    /// The IPv4 header checksum does not verify.
    Ipv4BadChecksum,
    /// A fragment: a piece of a larger packet. We do not reassemble.
    Ipv4Fragment,
    /// A source-routed packet (loose or strict source route option): RFC 1122 says the
    /// reply MUST follow the route back, and we send no options.
    Ipv4SourceRouted,
    /// IPv4 for another address, broadcast and multicast included.
    Ipv4NotForUs,
    /// IPv4 from an address no reply may go to (broadcast, multicast, 0.0.0.0/8,
    /// loopback, or our own address).
    Ipv4BadSource,
    /// The ICMP checksum does not verify.
    IcmpBadChecksum,
    /// ICMP other than an echo request (code 0): replies, errors, timestamps...
    IcmpNotEchoRequest,
    /// The caller's output buffer cannot hold the reply (a programming error, reported
    /// rather than panicking).
    NoRoom,
}
// ANCHOR_END: drop

impl Drop {
    /// Every reason, in the order counters are printed.
    pub const ALL: [Drop; 18] = [
        Drop::Truncated,
        Drop::NotOurMac,
        Drop::BadSourceMac,
        Drop::VlanTagged,
        Drop::OtherProtocol,
        Drop::ArpUnsupported,
        Drop::ArpNotRequest,
        Drop::ArpNotForUs,
        Drop::ArpBadSender,
        Drop::Ipv4Malformed,
        Drop::Ipv4BadChecksum,
        Drop::Ipv4Fragment,
        Drop::Ipv4SourceRouted,
        Drop::Ipv4NotForUs,
        Drop::Ipv4BadSource,
        Drop::IcmpBadChecksum,
        Drop::IcmpNotEchoRequest,
        Drop::NoRoom,
    ];

    /// A short label for logs and counters.
    pub fn label(self) -> &'static str {
        match self {
            Drop::Truncated => "truncated",
            Drop::NotOurMac => "not our MAC",
            Drop::BadSourceMac => "group source MAC",
            Drop::VlanTagged => "VLAN tagged",
            Drop::OtherProtocol => "other protocol",
            Drop::ArpUnsupported => "ARP not Ethernet/IPv4",
            Drop::ArpNotRequest => "ARP not a request",
            Drop::ArpNotForUs => "ARP for another address",
            Drop::ArpBadSender => "ARP bad sender",
            Drop::Ipv4Malformed => "IPv4 malformed header",
            Drop::Ipv4BadChecksum => "IPv4 bad header checksum",
            Drop::Ipv4Fragment => "IPv4 fragment",
            Drop::Ipv4SourceRouted => "IPv4 source-routed",
            Drop::Ipv4NotForUs => "IPv4 for another address",
            Drop::Ipv4BadSource => "IPv4 bad source address",
            Drop::IcmpBadChecksum => "ICMP bad checksum",
            Drop::IcmpNotEchoRequest => "ICMP not an echo request",
            Drop::NoRoom => "no room for the reply",
        }
    }

    /// The position of this reason in [`Drop::ALL`], for counter arrays: its place in the
    /// declaration, which `ALL` follows (the tests check it).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Drop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What was written into the output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// An ARP reply of this many bytes.
    Arp(usize),
    /// An ICMP echo reply frame of this many bytes.
    Echo(usize),
}

impl Reply {
    /// The length of the reply frame in the output buffer.
    pub fn len(self) -> usize {
        match self {
            Reply::Arp(len) | Reply::Echo(len) => len,
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// The result of looking at one frame.
pub type Outcome = Result<Reply, Drop>;

/// Which protocols to answer: chapter 3 answers ARP only, chapters 4 and 5 both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Services {
    pub arp: bool,
    pub echo: bool,
}

impl Services {
    pub const ARP: Services = Services { arp: true, echo: false };
    pub const ALL: Services = Services { arp: true, echo: true };
}

fn wire_drop(err: wire::Error) -> Drop {
    match err {
        wire::Error::Truncated => Drop::Truncated,
        wire::Error::BadLength | wire::Error::Unsupported => Drop::Ipv4Malformed,
        wire::Error::BadChecksum => Drop::Ipv4BadChecksum,
    }
}

// ANCHOR: respond
/// Looks at one frame read from the TAP and, if it deserves an answer, writes the reply
/// frame into `out` (which should be as large as the largest frame read).
pub fn respond(host: &Host, services: Services, frame: &[u8], out: &mut [u8]) -> Outcome {
    let eth = EthernetFrame::new_checked(frame).map_err(wire_drop)?;
    if eth.src_addr().is_multicast() {
        return Err(Drop::BadSourceMac);
    }
    match eth.ethertype() {
        EtherType::Arp if services.arp => arp_reply(host, &eth, out),
        EtherType::Ipv4 if services.echo => echo_reply(host, &eth, out),
        tag if tag.is_vlan_tag() => Err(Drop::VlanTagged),
        _ => Err(Drop::OtherProtocol),
    }
}
// ANCHOR_END: respond

// ANCHOR: arp_reply
/// Answers "who has `host.ip`?" with "`host.ip` is at `host.mac`" (RFC 826).
pub fn arp_reply(host: &Host, eth: &EthernetFrame<&[u8]>, out: &mut [u8]) -> Outcome {
    // Requests are broadcast; the kernel re-checks a neighbour with a unicast one.
    let dst = eth.dst_addr();
    if !(dst.is_broadcast() || dst == host.mac) {
        return Err(Drop::NotOurMac);
    }
    let request = ArpPacket::new_checked(eth.payload()).map_err(|err| match err {
        wire::Error::Truncated => Drop::Truncated,
        _ => Drop::ArpUnsupported,
    })?;
    let request = ArpRepr::parse(&request);
    if request.operation != ArpOperation::Request {
        return Err(Drop::ArpNotRequest);
    }
    if request.target_proto_addr != host.ip {
        return Err(Drop::ArpNotForUs);
    }
    // A sender claiming our own address is a conflict (or a gratuitous ARP), not a
    // question; a group sender address would make our reply a broadcast. A sender IP of
    // 0.0.0.0 is an address probe (RFC 5227): answered, as Linux does, to defend ours.
    let sender_ip = request.sender_proto_addr;
    if request.sender_hw_addr.is_multicast()
        || sender_ip == host.ip
        || sender_ip.is_broadcast()
        || sender_ip.is_multicast()
        || sender_ip.is_loopback()
    {
        return Err(Drop::ArpBadSender);
    }

    let reply = ArpRepr {
        operation: ArpOperation::Reply,
        sender_hw_addr: host.mac,
        sender_proto_addr: host.ip,
        target_hw_addr: request.sender_hw_addr,
        target_proto_addr: request.sender_proto_addr,
    };
    let len = ethernet::HEADER_LEN + arp::PACKET_LEN;
    let out = out.get_mut(..len).ok_or(Drop::NoRoom)?;
    let mut frame = EthernetFrame::new_unchecked(out);
    frame.set_dst_addr(request.sender_hw_addr);
    frame.set_src_addr(host.mac);
    frame.set_ethertype(EtherType::Arp);
    reply.emit(&mut ArpPacket::new_unchecked(frame.payload_mut())).map_err(|_| Drop::NoRoom)?;
    Ok(Reply::Arp(len))
}
// ANCHOR_END: arp_reply

// ANCHOR: echo_checks
/// Checks an IPv4 packet and returns it if we may answer it: version, lengths, header
/// checksum, no fragment, well-formed options with no source route, our address as
/// destination and a unicast source.
fn ipv4_for_us<'a>(
    host: &Host,
    dst_mac: MacAddr,
    bytes: &'a [u8],
) -> Result<Ipv4Packet<&'a [u8]>, Drop> {
    if dst_mac != host.mac {
        return Err(Drop::NotOurMac);
    }
    let ip = Ipv4Packet::new_checked(bytes).map_err(wire_drop)?;
    if !ip.verify_checksum() {
        return Err(Drop::Ipv4BadChecksum);
    }
    if ip.is_fragment() {
        return Err(Drop::Ipv4Fragment);
    }
    if ip.has_source_route().map_err(wire_drop)? {
        return Err(Drop::Ipv4SourceRouted);
    }
    if ip.dst_addr() != host.ip {
        return Err(Drop::Ipv4NotForUs);
    }
    // 0.0.0.0/8 means "this network": a source only while a host has no address yet.
    let src = ip.src_addr();
    if src.is_broadcast()
        || src.is_multicast()
        || src.octets()[0] == 0
        || src.is_loopback()
        || src == host.ip
    {
        return Err(Drop::Ipv4BadSource);
    }
    Ok(ip)
}
// ANCHOR_END: echo_checks

// ANCHOR: echo_reply
/// Answers an ICMP echo request (RFC 792) with an echo reply carrying the same
/// identifier, sequence number and data.
pub fn echo_reply(host: &Host, eth: &EthernetFrame<&[u8]>, out: &mut [u8]) -> Outcome {
    let ip = ipv4_for_us(host, eth.dst_addr(), eth.payload())?;
    if ip.protocol() != IpProtocol::Icmp {
        return Err(Drop::OtherProtocol);
    }
    // The IPv4 payload is cut by the total length, so Ethernet padding is not included.
    let request = Icmpv4Message::new_checked(ip.payload()).map_err(wire_drop)?;
    if !request.verify_checksum() {
        return Err(Drop::IcmpBadChecksum);
    }
    if request.msg_type() != Icmpv4Type::EchoRequest || request.msg_code() != 0 {
        return Err(Drop::IcmpNotEchoRequest);
    }

    // The reply has a 20-byte header whatever options the request carried, so it is
    // never longer than the request. RFC 1122 3.2.2.6 allows leaving out record route and
    // timestamp options; a source route it does not, which is why ipv4_for_us dropped those.
    let icmp_len = request.as_bytes().len();
    let ip_len = Ipv4Repr::HEADER_LEN + icmp_len;
    let len = ethernet::HEADER_LEN + ip_len;
    let out = out.get_mut(..len).ok_or(Drop::NoRoom)?;

    let mut frame = EthernetFrame::new_unchecked(out);
    frame.set_dst_addr(eth.src_addr());
    frame.set_src_addr(host.mac);
    frame.set_ethertype(EtherType::Ipv4);

    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    Ipv4Repr {
        src_addr: host.ip,
        dst_addr: ip.src_addr(),
        protocol: IpProtocol::Icmp,
        tos: ip.tos(),
        // Echo the request's identification: it only has to be unique per (source,
        // destination, protocol) for reassembly, and the reply travels the other way.
        ident: ip.ident(),
        dont_frag: false,
        ttl: REPLY_TTL,
        payload_len: icmp_len,
    }
    .emit(&mut packet)
    .map_err(|_| Drop::NoRoom)?;

    // The header we just wrote says the payload is `icmp_len` bytes: `get_mut` takes
    // exactly that many, so the copy has matching lengths.
    let payload = packet.payload_mut().get_mut(..icmp_len).ok_or(Drop::NoRoom)?;
    payload.copy_from_slice(request.as_bytes());
    let mut reply = Icmpv4Message::new_unchecked(payload);
    reply.set_msg_type(Icmpv4Type::EchoReply);
    // Only the type word changed (0x0800 -> 0x0000): RFC 1624's incremental update gives
    // the same checksum as summing the whole message again, without reading the data
    // twice. Save in one case: one's complement has two zeros, and where a full sum gives
    // 0xffff (a message of zeroes only: identifier, sequence number and data all 0) the
    // update gives 0x0000, which receivers reject. Then we sum the message again.
    let sum = checksum::update(request.checksum(), 0x0800, 0x0000);
    if sum == 0 {
        reply.fill_checksum();
    } else {
        reply.set_checksum(sum);
    }
    Ok(Reply::Echo(len))
}
// ANCHOR_END: echo_reply

// ANCHOR: counters
/// What the full responder did, frame by frame: counted, never allocated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub frames_read: u64,
    pub arp_replies: u64,
    pub echo_replies: u64,
    /// Replies the kernel refused (the interface was down at that instant).
    pub send_failures: u64,
    pub dropped: [u64; Drop::ALL.len()],
}

impl Counters {
    /// Counts one frame read and what became of it.
    pub fn record(&mut self, outcome: &Outcome) {
        self.frames_read += 1;
        match outcome {
            Ok(Reply::Arp(_)) => self.arp_replies += 1,
            Ok(Reply::Echo(_)) => self.echo_replies += 1,
            Err(reason) => {
                if let Some(count) = self.dropped.get_mut(reason.index()) {
                    *count += 1;
                }
            }
        }
    }

    /// A reply that [`Counters::record`] counted but the kernel then refused (the
    /// interface went down between our read and our write): it was not sent after all.
    pub fn record_refused(&mut self, reply: Reply) {
        let sent = match reply {
            Reply::Arp(_) => &mut self.arp_replies,
            Reply::Echo(_) => &mut self.echo_replies,
        };
        *sent = sent.saturating_sub(1);
        self.send_failures += 1;
    }

    /// How many frames were dropped for this reason.
    pub fn dropped_for(&self, reason: Drop) -> u64 {
        self.dropped.get(reason.index()).copied().unwrap_or(0)
    }

    pub fn total_dropped(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:>10}  frames read", self.frames_read)?;
        writeln!(f, "{:>10}  ARP replies sent", self.arp_replies)?;
        writeln!(f, "{:>10}  ICMP echo replies sent", self.echo_replies)?;
        if self.send_failures > 0 {
            writeln!(f, "{:>10}  replies the kernel refused (interface down)", self.send_failures)?;
        }
        write!(f, "{:>10}  frames dropped", self.total_dropped())?;
        for reason in Drop::ALL {
            let count = self.dropped_for(reason);
            if count > 0 {
                write!(f, "\n{count:>10}    {reason}")?;
            }
        }
        Ok(())
    }
}
// ANCHOR_END: counters

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::fixture;

    const US: Host = Host {
        ip: Ipv4Addr::new(172, 16, 1, 2),
        mac: MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]),
    };

    fn reply_to(frame: &[u8]) -> Result<Vec<u8>, Drop> {
        let mut out = vec![0xa5u8; 65536];
        let reply = respond(&US, Services::ALL, frame, &mut out)?;
        out.truncate(reply.len());
        Ok(out)
    }

    #[test]
    fn every_drop_reason_is_listed_once() {
        for (i, d) in Drop::ALL.iter().enumerate() {
            assert_eq!(d.index(), i, "{d}");
        }
    }

    #[test]
    fn arp_reply_is_byte_exact_to_the_kernels() {
        // kernel_arp_reply is what Linux itself answered to arping for 172.16.1.2 with our
        // MAC (captured over a veth pair): our reply to the same request must be identical.
        let request = fixture!("arp_request_arping");
        let kernel = fixture!("kernel_arp_reply");
        let ours = reply_to(&request).unwrap();
        assert_eq!(hex::encode(&ours), hex::encode(&kernel[..ours.len()]));
    }

    #[test]
    fn answers_the_kernels_own_who_has() {
        let request = fixture!("arp_request_kernel");
        let ours = reply_to(&request).unwrap();
        assert_eq!(ours.len(), 42);
        assert_eq!(ours[0..6], request[6..12], "back to the asker");
        assert_eq!(ours[6..12], US.mac.0);
    }

    #[test]
    fn echo_replies_are_valid_for_every_size() {
        for name in ["0", "1", "56", "1472", "ttl1", "options"] {
            let request = match name {
                "0" => fixture!("icmp_echo_request_0"),
                "1" => fixture!("icmp_echo_request_1"),
                "56" => fixture!("icmp_echo_request_56"),
                "1472" => fixture!("icmp_echo_request_1472"),
                "ttl1" => fixture!("icmp_echo_request_ttl1"),
                _ => fixture!("icmp_echo_request_options"),
            };
            let reply = reply_to(&request).unwrap_or_else(|d| panic!("{name}: dropped: {d}"));
            assert!(reply.len() <= request.len(), "{name}: no amplification");
            let eth = EthernetFrame::new_checked(&reply[..]).unwrap();
            assert_eq!(eth.dst_addr().0, request[6..12]);
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            assert!(ip.verify_checksum(), "{name}");
            assert_eq!(usize::from(ip.total_len()), eth.payload().len(), "{name}");
            let icmp = Icmpv4Message::new_checked(ip.payload()).unwrap();
            assert!(icmp.verify_checksum(), "{name}");
            assert_eq!(icmp.msg_type(), Icmpv4Type::EchoReply);
            // Same identifier, sequence number and data as the request.
            let req_ip = Ipv4Packet::new_checked(&request[14..]).unwrap();
            assert_eq!(&icmp.as_bytes()[4..], &req_ip.payload()[4..], "{name}");
        }
    }

    // ANCHOR: kernel_comparison
    #[test]
    fn echo_reply_matches_the_kernels_but_for_the_fields_it_chooses() {
        // The kernel's reply to the same request, captured over a veth pair, differs from
        // ours only in the IPv4 identification (the kernel picks its own; we echo the
        // request's) and so in the header checksum. TTL 64, TOS copied, DF clear: same.
        let request = fixture!("kernel_echo_request_56_veth");
        let kernel = fixture!("kernel_echo_reply_56");
        let ours = reply_to(&request).unwrap();
        assert_eq!(ours.len(), kernel.len());
        let differs: Vec<usize> = (0..ours.len()).filter(|&i| ours[i] != kernel[i]).collect();
        assert!(
            differs.iter().all(|i| [18, 19, 24, 25].contains(i)),
            "differing bytes {differs:?}\nours   {}\nkernel {}",
            hex::encode(&ours),
            hex::encode(&kernel)
        );
    }
    // ANCHOR_END: kernel_comparison

    // ANCHOR: padding_test
    #[test]
    fn padding_does_not_reach_the_reply() {
        let mut request = fixture!("icmp_echo_request_0");
        let unpadded = reply_to(&request).unwrap();
        request.resize(60, 0xee);
        assert_eq!(reply_to(&request).unwrap(), unpadded);
    }
    // ANCHOR_END: padding_test

    #[test]
    fn options_are_dropped_from_the_reply_with_lengths_to_match() {
        let request = fixture!("icmp_echo_request_options");
        let reply = reply_to(&request).unwrap();
        let ip = Ipv4Packet::new_checked(&reply[14..]).unwrap();
        assert_eq!(ip.header_len(), 20);
        let req = Ipv4Packet::new_checked(&request[14..]).unwrap();
        assert!(req.header_len() > 20);
        assert_eq!(usize::from(ip.total_len()), 20 + req.payload().len());
        assert_eq!(reply.len(), 14 + 20 + req.payload().len());
        assert!(ip.verify_checksum());
    }

    // ANCHOR: ignores_what_it_must
    #[test]
    fn ignores_what_it_must() {
        let arp = fixture!("arp_request_arping");
        let ping = fixture!("icmp_echo_request_56");
        let opts = fixture!("icmp_echo_request_options");
        let cases: Vec<(&str, Vec<u8>, Drop)> = vec![
            ("ARP for another address", patch(&arp, 38, &[172, 16, 1, 9]), Drop::ArpNotForUs),
            ("ARP reply", patch(&arp, 21, &[2]), Drop::ArpNotRequest),
            ("ARP for IPv6", patch(&arp, 16, &[0x86, 0xdd]), Drop::ArpUnsupported),
            ("ARP hardware type", patch(&arp, 15, &[6]), Drop::ArpUnsupported),
            ("ARP gratuitous", patch(&arp, 28, &[172, 16, 1, 2]), Drop::ArpBadSender),
            ("ARP to another MAC", patch(&arp, 0, &[0x02, 0, 0, 0, 0, 9]), Drop::NotOurMac),
            ("group source MAC", patch(&ping, 6, &[0x01]), Drop::BadSourceMac),
            ("VLAN", patch(&ping, 12, &[0x81, 0x00]), Drop::VlanTagged),
            ("IPv6", patch(&ping, 12, &[0x86, 0xdd]), Drop::OtherProtocol),
            ("IPv4 version 5", patch(&ping, 14, &[0x55]), Drop::Ipv4Malformed),
            ("IPv4 IHL 4", patch(&ping, 14, &[0x44]), Drop::Ipv4Malformed),
            ("IPv4 bad checksum", patch(&ping, 22, &[0x3f]), Drop::Ipv4BadChecksum),
            ("ICMP bad checksum", flip(&ping, 37), Drop::IcmpBadChecksum),
            ("ICMP damaged data", flip(&ping, 60), Drop::IcmpBadChecksum),
            ("echo to another MAC", patch(&ping, 0, &[0x02, 0, 0, 0, 0, 9]), Drop::NotOurMac),
            ("echo to broadcast MAC", patch(&ping, 0, &[0xff; 6]), Drop::NotOurMac),
            ("UDP", with_ip(&ping, |p| p[9] = 17), Drop::OtherProtocol),
            ("fragment", with_ip(&ping, |p| p[6] |= 0x20), Drop::Ipv4Fragment),
            ("later fragment", with_ip(&ping, |p| p[7] = 1), Drop::Ipv4Fragment),
            ("loose source route", with_ip(&opts, |p| p[21] = 0x83), Drop::Ipv4SourceRouted),
            ("strict source route", with_ip(&opts, |p| p[21] = 0x89), Drop::Ipv4SourceRouted),
            ("option past the header", with_ip(&opts, |p| p[22] = 40), Drop::Ipv4Malformed),
            ("to another host", with_ip(&ping, |p| p[19] = 9), Drop::Ipv4NotForUs),
            ("to broadcast", with_ip(&ping, |p| p[16..20].fill(255)), Drop::Ipv4NotForUs),
            ("from broadcast", with_ip(&ping, |p| p[12..16].fill(255)), Drop::Ipv4BadSource),
            ("from multicast", with_ip(&ping, |p| p[12] = 224), Drop::Ipv4BadSource),
            ("from ourselves", with_ip(&ping, |p| p[15] = 2), Drop::Ipv4BadSource),
            ("echo reply", with_icmp(&ping, |m| m[0] = 0), Drop::IcmpNotEchoRequest),
            ("echo code 1", with_icmp(&ping, |m| m[1] = 1), Drop::IcmpNotEchoRequest),
            ("unreachable", with_icmp(&ping, |m| m[0] = 3), Drop::IcmpNotEchoRequest),
            ("total length past the end", with_ip(&ping, |p| p[3] += 1), Drop::Truncated),
            ("802.1ad Q-in-Q tag", patch(&ping, 12, &[0x88, 0xa8]), Drop::VlanTagged),
            ("old Q-in-Q tag", patch(&ping, 12, &[0x91, 0x00]), Drop::VlanTagged),
            ("ARP hardware length 8", patch(&arp, 18, &[8]), Drop::ArpUnsupported),
            ("ARP protocol length 16", patch(&arp, 19, &[16]), Drop::ArpUnsupported),
            ("ARP operation 3 (RARP)", patch(&arp, 21, &[3]), Drop::ArpNotRequest),
            ("ARP to a multicast MAC", patch(&arp, 0, &[0x01, 0, 0x5e, 0, 0, 1]), Drop::NotOurMac),
            ("ARP from a group MAC", patch(&arp, 22, &[0x01]), Drop::ArpBadSender),
            ("ARP from 255.255.255.255", patch(&arp, 28, &[255; 4]), Drop::ArpBadSender),
            ("ARP from 224.0.0.1", patch(&arp, 28, &[224, 0, 0, 1]), Drop::ArpBadSender),
            ("ARP from 127.0.0.1", patch(&arp, 28, &[127, 0, 0, 1]), Drop::ArpBadSender),
            ("ARP cut in the middle", arp[..41].to_vec(), Drop::Truncated),
            (
                "IPv4 total length < header",
                with_ip(&ping, |p| p[2..4].copy_from_slice(&[0, 19])),
                Drop::Ipv4Malformed,
            ),
            (
                "IPv4 IHL past the total length",
                with_ip(&fixture!("icmp_echo_request_0"), |p| p[0] = 0x4f),
                Drop::Ipv4Malformed,
            ),
            ("IPv4 IHL past the frame", patch(&ping, 14, &[0x4f])[..60].to_vec(), Drop::Truncated),
            ("IPv4 version 6", patch(&ping, 14, &[0x65]), Drop::Ipv4Malformed),
            (
                "to multicast",
                with_ip(&ping, |p| p[16..20].copy_from_slice(&[224, 0, 0, 1])),
                Drop::Ipv4NotForUs,
            ),
            ("to the subnet broadcast", with_ip(&ping, |p| p[19] = 255), Drop::Ipv4NotForUs),
            ("from 0.0.0.0", with_ip(&ping, |p| p[12..16].fill(0)), Drop::Ipv4BadSource),
            (
                "from 0.1.2.3",
                with_ip(&ping, |p| p[12..16].copy_from_slice(&[0, 1, 2, 3])),
                Drop::Ipv4BadSource,
            ),
            (
                "from loopback",
                with_ip(&ping, |p| p[12..16].copy_from_slice(&[127, 0, 0, 1])),
                Drop::Ipv4BadSource,
            ),
            (
                "ICMP shorter than 8 bytes",
                with_ip(&ping[..38], |p| p[2..4].copy_from_slice(&[0, 24])),
                Drop::Truncated,
            ),
            ("timestamp request", with_icmp(&ping, |m| m[0] = 13), Drop::IcmpNotEchoRequest),
            ("time exceeded", with_icmp(&ping, |m| m[0] = 11), Drop::IcmpNotEchoRequest),
            ("TCP", with_ip(&ping, |p| p[9] = 6), Drop::OtherProtocol),
            ("LLC (802.3 length field)", patch(&ping, 12, &[0x00, 0x54]), Drop::OtherProtocol),
            ("source MAC broadcast", patch(&ping, 6, &[0xff; 6]), Drop::BadSourceMac),
        ];
        for (what, frame, expected) in cases {
            assert_eq!(reply_to(&frame), Err(expected), "{what}");
        }
    }
    // ANCHOR_END: ignores_what_it_must

    #[test]
    fn legal_but_unusual_requests_are_answered() {
        let arp = fixture!("arp_request_arping");
        let ping = fixture!("icmp_echo_request_56");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            // RFC 5227 probe: "who has 172.16.1.2? tell 0.0.0.0". Linux answers to defend
            // its address; the reply goes to the asker's MAC, never to a broadcast.
            ("ARP probe", patch(&arp, 28, &[0, 0, 0, 0])),
            ("ARP unicast to us", patch(&arp, 0, &US.mac.0)),
            ("ARP with padding", [&arp[..], &[0xee; 100]].concat()),
            ("TTL 0", with_ip(&ping, |p| p[8] = 0)),
            ("DF clear", with_ip(&ping, |p| p[6] = 0)),
            ("reserved flag", with_ip(&ping, |p| p[6] |= 0x80)),
            ("TOS 0xff", with_ip(&ping, |p| p[1] = 0xff)),
            ("from class E", with_ip(&ping, |p| p[12] = 240)),
            ("junk after the total length", [&ping[..], &[0x55; 7]].concat()),
        ];
        for (what, frame) in cases {
            let reply = reply_to(&frame).unwrap_or_else(|d| panic!("{what}: dropped: {d}"));
            assert!(reply.len() <= frame.len(), "{what}");
            assert!(MacAddr(reply[0..6].try_into().unwrap()).is_unicast(), "{what}");
        }
        let probe = reply_to(&patch(&arp, 28, &[0, 0, 0, 0])).unwrap();
        assert_eq!(probe[0..6], arp[6..12], "the probe's answer goes to the asker");
        assert_eq!(probe[38..42], [0, 0, 0, 0], "target protocol address: the asker's 0.0.0.0");
    }

    #[test]
    fn an_all_zero_echo_reply_gets_checksum_0xffff_not_0x0000() {
        // ping -s 0 with identifier and sequence number 0: the reply's ICMP message is all
        // zeroes, whose checksum is 0xffff. RFC 1624's update alone would give 0x0000,
        // which the kernel rejects as a bad checksum.
        let request = with_icmp(&fixture!("icmp_echo_request_0"), |m| m[4..8].fill(0));
        let reply = reply_to(&request).unwrap();
        assert_eq!(reply[34..], [0, 0, 0xff, 0xff, 0, 0, 0, 0]);
        assert!(Icmpv4Message::new_checked(&reply[34..]).unwrap().verify_checksum());
    }

    #[test]
    fn a_jumbo_echo_request_is_answered_whole() {
        // ping -s 8972 on an interface with MTU 9000: built from the captured 1472-byte
        // request by repeating its data pattern, with the lengths and checksums to match.
        let small = fixture!("icmp_echo_request_1472");
        let mut frame = small[..42].to_vec();
        frame.extend(small[42..].iter().cycle().take(8972));
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
        ip.set_total_len(9000);
        ip.fill_checksum();
        Icmpv4Message::new_unchecked(&mut frame[34..]).fill_checksum();
        assert_eq!(frame.len(), 9014);
        let reply = reply_to(&frame).unwrap();
        assert_eq!(reply.len(), 9014);
        assert_eq!(reply[42..], frame[42..], "identifier, sequence number and data");
        assert!(Icmpv4Message::new_checked(&reply[34..]).unwrap().verify_checksum());
    }

    #[test]
    fn no_drop_writes_into_the_output_buffer() {
        let ping = fixture!("icmp_echo_request_56");
        for frame in [flip(&ping, 40), patch(&ping, 12, &[0x81, 0x00]), ping[..50].to_vec()] {
            let mut out = [0xa5u8; 1514];
            assert!(respond(&US, Services::ALL, &frame, &mut out).is_err());
            assert!(out.iter().all(|&b| b == 0xa5));
        }
    }

    #[test]
    fn counters_add_up() {
        let mut counters = Counters::default();
        let mut out = [0u8; 1514];
        for frame in [
            fixture!("arp_request_arping"),
            fixture!("icmp_echo_request_56"),
            fixture!("ipv6_mld_report"),
        ] {
            counters.record(&respond(&US, Services::ALL, &frame, &mut out));
        }
        assert_eq!((counters.frames_read, counters.arp_replies, counters.echo_replies), (3, 1, 1));
        assert_eq!(counters.dropped[Drop::OtherProtocol.index()], 1);
        let text = counters.to_string();
        assert!(
            text.contains("1  frames dropped") && text.contains("1    other protocol"),
            "{text}"
        );
    }

    #[test]
    fn a_refused_reply_is_not_counted_as_sent() {
        let mut counters = Counters::default();
        let mut out = [0u8; 1514];
        let outcome = respond(&US, Services::ALL, &fixture!("icmp_echo_request_56"), &mut out);
        counters.record(&outcome);
        counters.record_refused(outcome.unwrap());
        assert_eq!((counters.echo_replies, counters.send_failures), (0, 1));
        assert!(counters.to_string().contains("1  replies the kernel refused"));
    }

    #[test]
    fn chapter_3_answers_arp_but_not_ping() {
        let mut out = [0u8; 1514];
        let ping = fixture!("icmp_echo_request_56");
        assert_eq!(respond(&US, Services::ARP, &ping, &mut out), Err(Drop::OtherProtocol));
        let arp = fixture!("arp_request_arping");
        assert_eq!(respond(&US, Services::ARP, &arp, &mut out), Ok(Reply::Arp(42)));
    }

    #[test]
    fn a_small_output_buffer_is_reported_not_a_panic() {
        let ping = fixture!("icmp_echo_request_1472");
        let mut out = [0u8; 100];
        assert_eq!(respond(&US, Services::ALL, &ping, &mut out), Err(Drop::NoRoom));
    }

    #[test]
    fn every_truncation_of_real_frames_is_dropped() {
        // arping pads its request with 16 zero bytes; 42 bytes are the whole ARP frame.
        for (frame, needed) in
            [(fixture!("arp_request_arping"), 42), (fixture!("icmp_echo_request_56"), 98)]
        {
            assert!(reply_to(&frame[..needed]).is_ok());
            for len in 0..needed {
                let outcome = reply_to(&frame[..len]);
                assert!(outcome.is_err(), "{len} bytes of {}", hex::encode(&frame));
            }
        }
    }

    /// Overwrites bytes at `offset` of a frame.
    fn patch(frame: &[u8], offset: usize, bytes: &[u8]) -> Vec<u8> {
        let mut f = frame.to_vec();
        f[offset..offset + bytes.len()].copy_from_slice(bytes);
        f
    }

    /// Flips the bits of one byte.
    fn flip(frame: &[u8], offset: usize) -> Vec<u8> {
        let mut f = frame.to_vec();
        f[offset] ^= 0xff;
        f
    }

    /// Changes the IPv4 header, then fixes its checksum so only the change is tested.
    fn with_ip(frame: &[u8], change: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let mut f = frame.to_vec();
        change(&mut f[14..]);
        let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.fill_checksum();
        f
    }

    /// Changes the ICMP message, then fixes its checksum.
    fn with_icmp(frame: &[u8], change: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let mut f = frame.to_vec();
        change(&mut f[34..]);
        Icmpv4Message::new_unchecked(&mut f[34..]).fill_checksum();
        f
    }
}
