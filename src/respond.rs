//! The responder as pure functions (chapters 3 to 5): a frame and our addresses in; the
//! reply frame, or the reason the frame is ignored, out. No I/O happens here, and what a
//! reply needs besides the frame (the next IPv4 identification, the time of day) is
//! passed in, so every decision can be tested with captured bytes and no TAP device.
//!
//! The rules are those of a careful host, and each one closes a hole that a naive
//! responder (like the C program this course grew from) leaves open:
//! - answer ARP only for our own address (no spoofing of other hosts);
//! - answer only echo *requests* (never a reply: two responders must not ping-pong),
//!   and never send an ICMP error about an ICMP error;
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

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::wire::arp::{self, ArpOperation, ArpPacket, ArpRepr};
use crate::wire::ethernet::{self, EtherType, EthernetFrame, MacAddr};
use crate::wire::icmpv4::{self, Icmpv4Message, Icmpv4Type};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr, MAX_HEADER_LEN, MIN_HEADER_LEN};
use crate::wire::ipv4_options::{
    BadOption, Ipv4Options, SlotOption, TS_AND_ADDRESS, TS_ONLY, TS_PRESPECIFIED,
};
use crate::wire::{self, checksum, ipv6};

mod ipv6_reply;
mod udp_echo;

// ANCHOR: host
/// Who we are on the link: an IPv4 address, an IPv6 one, and a MAC, from which our IPv6
/// link-local address is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    pub ip: Ipv4Addr,
    pub ip6: Ipv6Addr,
    pub mac: MacAddr,
}

impl Host {
    /// Our link-local address (modified EUI-64 of the MAC, RFC 4291).
    pub fn link_local(&self) -> Ipv6Addr {
        ipv6::link_local(self.mac.0)
    }

    /// Whether `addr` is one of our two IPv6 unicast addresses.
    pub fn is_ours(&self, addr: Ipv6Addr) -> bool {
        addr == self.ip6 || addr == self.link_local()
    }

    /// Whether we listen on the multicast group `group`: all-nodes, and the solicited-node
    /// group of each of our addresses.
    pub fn in_group(&self, group: Ipv6Addr) -> bool {
        group == ipv6::ALL_NODES
            || group == ipv6::solicited_node(self.ip6)
            || group == ipv6::solicited_node(self.link_local())
    }
}
// ANCHOR_END: host

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

// ANCHOR: timestamp
/// The time of day as the IPv4 Timestamp option carries it (RFC 791): milliseconds since
/// midnight UT, as Linux's `inet_current_timestamp` computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub u32);

impl Timestamp {
    /// The time now, from the system clock.
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    pub fn from_system_time(time: SystemTime) -> Timestamp {
        match time.duration_since(UNIX_EPOCH) {
            // Unix time has no leap seconds: every day is 86 400 of its seconds.
            Ok(since) => {
                let ms = since.as_secs() % 86_400 * 1000 + u64::from(since.subsec_millis());
                Timestamp(u32::try_from(ms).unwrap_or(0))
            }
            // RFC 791: a time not counted from midnight UT has the high-order bit set.
            Err(_) => Timestamp(1 << 31),
        }
    }
}
// ANCHOR_END: timestamp

// ANCHOR: drop
/// Why a frame got no reply. The full responder counts each reason; the book explains them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
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
    /// A protocol this program does not answer (LLDP, TCP, UDP, IPv6 in chapters 3 to 5,
    /// ...).
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
    /// IPv4 with a version other than 4, a header shorter than 20 bytes, or a total
    /// length shorter than its own header.
    Ipv4Malformed,
    /// IPv4 options that Linux refuses (see `wire::ipv4_options`), in a packet that may
    /// get no ICMP Parameter Problem: one carrying an ICMP error, a later fragment, one
    /// from a class E address, or one too short to be quoted in an error no longer than
    /// itself.
    Ipv4BadOption,
    /// The IPv4 header checksum does not verify.
    Ipv4BadChecksum,
    /// A fragment: a piece of a larger packet. We do not reassemble.
    Ipv4Fragment,
    /// A source-routed packet (loose or strict source route option): RFC 1122 says the
    /// reply MUST follow the route back, and Linux drops these unless told otherwise
    /// (`net.ipv4.conf.all.accept_source_route` is 0).
    Ipv4SourceRouted,
    /// A Record Route or Timestamp option with room for our entry on arrival but not for
    /// the one on departure (its pointer is not on a slot boundary): Linux sends no reply.
    Ipv4OptionNoRoom,
    /// IPv4 for another address, broadcast and multicast included.
    Ipv4NotForUs,
    /// IPv4 from an address no reply may go to (broadcast, multicast, 0.0.0.0/8,
    /// loopback, or our own address).
    Ipv4BadSource,
    /// The ICMP checksum does not verify.
    IcmpBadChecksum,
    /// ICMP other than an echo request (code 0): replies, errors, timestamps...
    IcmpNotEchoRequest,
    /// IPv6 with a version other than 6.
    Ipv6Malformed,
    /// An extension header we would have to act on: a Hop-by-Hop header that is not the
    /// first, a Routing header with segments left, an unknown option whose type says
    /// "discard" (RFC 8200 4). Linux sends an ICMPv6 Parameter Problem for some; we drop.
    Ipv6Extension,
    /// An IPv6 Fragment header: a piece of a larger packet. We do not reassemble.
    Ipv6Fragment,
    /// IPv6 for another address, or a group we are not in (the kernel's MLD reports to
    /// ff02::16, its router solicitations to ff02::2).
    Ipv6NotForUs,
    /// IPv6 from a multicast or loopback address, one of ours, or from `::` in anything
    /// but a duplicate address probe.
    Ipv6BadSource,
    /// The ICMPv6 checksum (over the pseudo-header and the message) does not verify.
    Icmpv6BadChecksum,
    /// ICMPv6 other than an echo request (code 0) or a neighbour solicitation: MLD,
    /// router messages, advertisements, errors...
    Icmpv6NotAnswered,
    /// An ICMPv6 echo request to a multicast group: no smurf amplifier in IPv6 either.
    Icmpv6EchoToGroup,
    /// A neighbour solicitation whose hop limit is not 255: it crossed a router, so its
    /// sender is not on our link (RFC 4861 7.1.1).
    NdiscHopLimit,
    /// A neighbour solicitation with an ICMPv6 code other than 0.
    NdiscBadCode,
    /// A neighbour solicitation shorter than 24 bytes.
    NdiscTooShort,
    /// A neighbour solicitation whose target is a multicast address.
    NdiscMulticastTarget,
    /// A neighbour discovery option of length 0, one that runs past the message, or a
    /// link-layer address option that is not 8 bytes.
    NdiscBadOption,
    /// A duplicate address probe (source `::`) not sent to a solicited-node group, or
    /// carrying a source link-layer address option.
    NdiscBadProbe,
    /// A neighbour solicitation for another host's address.
    NdiscNotForUs,
    /// The caller's output buffer cannot hold the reply (a programming error, reported
    /// rather than panicking).
    NoRoom,
    // UDP and DHCP (chapter 10): see `respond::udp_echo` and `crate::dhcp`.
    /// A UDP length field shorter than its header.
    UdpMalformed,
    /// The UDP checksum (pseudo-header included) does not verify.
    UdpBadChecksum,
    /// UDP to a port nobody here listens on (Linux would send ICMP port unreachable).
    UdpClosedPort,
    /// UDP echo from port 0 (no reply can go there) or from a port whose service answers
    /// every datagram (echo, daytime, quote, chargen, time): two such services answering
    /// each other would loop forever.
    UdpLoopPort,
    /// A DHCP message that breaks RFC 2131/2132: no magic cookie, an option running past
    /// the end, no End option, an option of the wrong length, option overload, not a
    /// client's BOOTREQUEST for Ethernet, or no message type.
    DhcpMalformed,
    /// A DHCP message through a relay (giaddr set): we serve our own link only.
    DhcpRelayed,
    /// A DHCP REQUEST for another server (the client chose its offer), or a client
    /// message type a server does not answer (OFFER, ACK, NAK, INFORM...).
    DhcpNotForUs,
    /// A DHCP client with a group MAC, or one whose frame came from another MAC.
    DhcpBadClient,
    /// No free address left in the pool for a DISCOVER.
    DhcpPoolExhausted,
}
// ANCHOR_END: drop

impl DropReason {
    /// Every reason, in the order counters are printed.
    pub const ALL: [DropReason; 44] = [
        DropReason::Truncated,
        DropReason::NotOurMac,
        DropReason::BadSourceMac,
        DropReason::VlanTagged,
        DropReason::OtherProtocol,
        DropReason::ArpUnsupported,
        DropReason::ArpNotRequest,
        DropReason::ArpNotForUs,
        DropReason::ArpBadSender,
        DropReason::Ipv4Malformed,
        DropReason::Ipv4BadOption,
        DropReason::Ipv4BadChecksum,
        DropReason::Ipv4Fragment,
        DropReason::Ipv4SourceRouted,
        DropReason::Ipv4OptionNoRoom,
        DropReason::Ipv4NotForUs,
        DropReason::Ipv4BadSource,
        DropReason::IcmpBadChecksum,
        DropReason::IcmpNotEchoRequest,
        DropReason::Ipv6Malformed,
        DropReason::Ipv6Extension,
        DropReason::Ipv6Fragment,
        DropReason::Ipv6NotForUs,
        DropReason::Ipv6BadSource,
        DropReason::Icmpv6BadChecksum,
        DropReason::Icmpv6NotAnswered,
        DropReason::Icmpv6EchoToGroup,
        DropReason::NdiscHopLimit,
        DropReason::NdiscBadCode,
        DropReason::NdiscTooShort,
        DropReason::NdiscMulticastTarget,
        DropReason::NdiscBadOption,
        DropReason::NdiscBadProbe,
        DropReason::NdiscNotForUs,
        DropReason::NoRoom,
        DropReason::UdpMalformed,
        DropReason::UdpBadChecksum,
        DropReason::UdpClosedPort,
        DropReason::UdpLoopPort,
        DropReason::DhcpMalformed,
        DropReason::DhcpRelayed,
        DropReason::DhcpNotForUs,
        DropReason::DhcpBadClient,
        DropReason::DhcpPoolExhausted,
    ];

    /// A short label for logs and counters.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::NotOurMac => "not our MAC",
            DropReason::BadSourceMac => "group source MAC",
            DropReason::VlanTagged => "VLAN tagged",
            DropReason::OtherProtocol => "other protocol",
            DropReason::ArpUnsupported => "ARP not Ethernet/IPv4",
            DropReason::ArpNotRequest => "ARP not a request",
            DropReason::ArpNotForUs => "ARP for another address",
            DropReason::ArpBadSender => "ARP bad sender",
            DropReason::Ipv4Malformed => "IPv4 malformed header",
            DropReason::Ipv4BadOption => "IPv4 bad option, no error allowed",
            DropReason::Ipv4BadChecksum => "IPv4 bad header checksum",
            DropReason::Ipv4Fragment => "IPv4 fragment",
            DropReason::Ipv4SourceRouted => "IPv4 source-routed",
            DropReason::Ipv4OptionNoRoom => "IPv4 option without room to echo",
            DropReason::Ipv4NotForUs => "IPv4 for another address",
            DropReason::Ipv4BadSource => "IPv4 bad source address",
            DropReason::IcmpBadChecksum => "ICMP bad checksum",
            DropReason::IcmpNotEchoRequest => "ICMP not an echo request",
            DropReason::Ipv6Malformed => "IPv6 malformed header",
            DropReason::Ipv6Extension => "IPv6 extension header refused",
            DropReason::Ipv6Fragment => "IPv6 fragment",
            DropReason::Ipv6NotForUs => "IPv6 for another address or group",
            DropReason::Ipv6BadSource => "IPv6 bad source address",
            DropReason::Icmpv6BadChecksum => "ICMPv6 bad checksum",
            DropReason::Icmpv6NotAnswered => "ICMPv6 not an echo request nor a solicitation",
            DropReason::Icmpv6EchoToGroup => "ICMPv6 echo request to a group",
            DropReason::NdiscHopLimit => "NDP hop limit not 255",
            DropReason::NdiscBadCode => "NDP code not 0",
            DropReason::NdiscTooShort => "NDP message too short",
            DropReason::NdiscMulticastTarget => "NDP multicast target",
            DropReason::NdiscBadOption => "NDP bad option length",
            DropReason::NdiscBadProbe => "NDP bad duplicate address probe",
            DropReason::NdiscNotForUs => "NDP for another address",
            DropReason::NoRoom => "no room for the reply",
            DropReason::UdpMalformed => "UDP bad length",
            DropReason::UdpBadChecksum => "UDP bad checksum",
            DropReason::UdpClosedPort => "UDP to a closed port",
            DropReason::UdpLoopPort => "UDP echo from port 0 or a looping service",
            DropReason::DhcpMalformed => "DHCP malformed",
            DropReason::DhcpRelayed => "DHCP through a relay",
            DropReason::DhcpNotForUs => "DHCP not for this server",
            DropReason::DhcpBadClient => "DHCP bad client address",
            DropReason::DhcpPoolExhausted => "DHCP pool exhausted",
        }
    }

    /// The position of this reason in [`DropReason::ALL`], for counter arrays: its place in the
    /// declaration, which `ALL` follows (the tests check it).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
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
    /// An ICMP Parameter Problem frame of this many bytes.
    ParameterProblem(usize),
    /// An IPv6 Neighbor Advertisement frame of this many bytes.
    NeighborAdvert(usize),
    /// An ICMPv6 echo reply frame of this many bytes.
    Echo6(usize),
    /// A UDP echo reply (RFC 862) frame of this many bytes.
    UdpEcho(usize),
    /// A DHCP reply (OFFER, ACK or NAK) frame of this many bytes, from `crate::dhcp`.
    Dhcp(usize),
}

impl Reply {
    /// The length of the reply frame in the output buffer.
    pub fn len(self) -> usize {
        match self {
            Reply::Arp(len)
            | Reply::Echo(len)
            | Reply::ParameterProblem(len)
            | Reply::NeighborAdvert(len)
            | Reply::Echo6(len)
            | Reply::UdpEcho(len)
            | Reply::Dhcp(len) => len,
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// The result of looking at one frame.
pub type Outcome = Result<Reply, DropReason>;

/// Which protocols to answer: chapter 3 answers ARP only, chapter 4 ARP and ping,
/// chapter 8 IPv6 only (neighbour discovery and ping), chapter 5 all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Services {
    pub arp: bool,
    pub echo: bool,
    pub ipv6: bool,
    /// UDP echo on port 7 (chapter 10).
    pub udp_echo: bool,
}

impl Services {
    pub const ARP: Services = Services { arp: true, echo: false, ipv6: false, udp_echo: false };
    pub const IPV4: Services = Services { arp: true, echo: true, ipv6: false, udp_echo: false };
    pub const IPV6: Services = Services { arp: false, echo: false, ipv6: true, udp_echo: false };
    pub const ALL: Services = Services { arp: true, echo: true, ipv6: true, udp_echo: false };
    /// Chapter 10: everything, and UDP echo too.
    pub const WITH_UDP: Services = Services { arp: true, echo: true, ipv6: true, udp_echo: true };
}

fn wire_drop(err: wire::Error) -> DropReason {
    match err {
        wire::Error::Truncated => DropReason::Truncated,
        wire::Error::BadLength | wire::Error::Unsupported => DropReason::Ipv4Malformed,
        wire::Error::BadChecksum => DropReason::Ipv4BadChecksum,
    }
}

// ANCHOR: respond
/// Looks at one frame read from the TAP and, if it deserves an answer, writes the reply
/// frame into `out` (which should be as large as the largest frame read). `idents`
/// numbers the IPv4 datagrams we send; `now` is the time for IPv4 Timestamp options.
pub fn respond(
    host: &Host,
    services: Services,
    idents: &mut Idents,
    now: Timestamp,
    frame: &[u8],
    out: &mut [u8],
) -> Outcome {
    let eth = EthernetFrame::new_checked(frame).map_err(wire_drop)?;
    if eth.src_addr().is_multicast() {
        return Err(DropReason::BadSourceMac);
    }
    match eth.ethertype() {
        EtherType::Arp if services.arp => arp_reply(host, &eth, out),
        EtherType::Ipv4 if services.echo => ipv4_reply(host, services, idents, now, &eth, out),
        EtherType::Ipv6 if services.ipv6 => ipv6_reply::ipv6_reply(host, &eth, out),
        tag if tag.is_vlan_tag() => Err(DropReason::VlanTagged),
        _ => Err(DropReason::OtherProtocol),
    }
}
// ANCHOR_END: respond

// ANCHOR: arp_reply
/// Answers "who has `host.ip`?" with "`host.ip` is at `host.mac`" (RFC 826).
pub fn arp_reply(host: &Host, eth: &EthernetFrame<&[u8]>, out: &mut [u8]) -> Outcome {
    // Requests are broadcast; the kernel re-checks a neighbour with a unicast one.
    let dst = eth.dst_addr();
    if !(dst.is_broadcast() || dst == host.mac) {
        return Err(DropReason::NotOurMac);
    }
    let request = ArpPacket::new_checked(eth.payload()).map_err(|err| match err {
        wire::Error::Truncated => DropReason::Truncated,
        _ => DropReason::ArpUnsupported,
    })?;
    let request = ArpRepr::parse(&request);
    if request.operation != ArpOperation::Request {
        return Err(DropReason::ArpNotRequest);
    }
    if request.target_proto_addr != host.ip {
        return Err(DropReason::ArpNotForUs);
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
        return Err(DropReason::ArpBadSender);
    }

    let reply = ArpRepr {
        operation: ArpOperation::Reply,
        sender_hw_addr: host.mac,
        sender_proto_addr: host.ip,
        target_hw_addr: request.sender_hw_addr,
        target_proto_addr: request.sender_proto_addr,
    };
    let len = ethernet::HEADER_LEN + arp::PACKET_LEN;
    let out = out.get_mut(..len).ok_or(DropReason::NoRoom)?;
    let mut frame = EthernetFrame::new_unchecked(out);
    frame.set_dst_addr(request.sender_hw_addr);
    frame.set_src_addr(host.mac);
    frame.set_ethertype(EtherType::Arp);
    reply
        .emit(&mut ArpPacket::new_unchecked(frame.payload_mut()))
        .map_err(|_| DropReason::NoRoom)?;
    Ok(Reply::Arp(len))
}
// ANCHOR_END: arp_reply

// ANCHOR: echo_checks
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
// ANCHOR_END: echo_checks

// ANCHOR: ipv4_reply
/// Answers an IPv4 packet for us, in Linux's order: the options first (malformed ones get
/// an ICMP Parameter Problem, whatever the protocol), then fragments and source routes
/// (dropped), then the ICMP echo request.
fn ipv4_reply(
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

// ANCHOR: echo_reply
/// Answers an ICMP echo request (RFC 792) with an echo reply carrying the same
/// identifier, sequence number and data, and the request's Record Route and Timestamp
/// options with our entries added.
fn echo_reply(
    host: &Host,
    idents: &mut Idents,
    now: Timestamp,
    eth: &EthernetFrame<&[u8]>,
    ip: &Ipv4Packet<&[u8]>,
    options: &Ipv4Options,
    out: &mut [u8],
) -> Outcome {
    if ip.protocol() != IpProtocol::Icmp {
        return Err(DropReason::OtherProtocol);
    }
    // The IPv4 payload is cut by the total length, so Ethernet padding is not included.
    let request = Icmpv4Message::new_checked(ip.payload()).map_err(wire_drop)?;
    if !request.verify_checksum() {
        return Err(DropReason::IcmpBadChecksum);
    }
    if request.msg_type() != Icmpv4Type::EchoRequest || request.msg_code() != 0 {
        return Err(DropReason::IcmpNotEchoRequest);
    }

    // The reply's options are at most the request's Record Route and Timestamp, rounded
    // up to a multiple of 4 like the request's own, so the reply is never longer than
    // the request.
    let mut reply_options = [0u8; MAX_HEADER_LEN - MIN_HEADER_LEN];
    let options_len = echo_options(host.ip, now, ip.header(), options, &mut reply_options)?;
    let reply_options = reply_options.get(..options_len).ok_or(DropReason::NoRoom)?;
    let icmp_len = request.as_bytes().len();
    let ip_len = Ipv4Repr::HEADER_LEN + options_len + icmp_len;
    let len = ethernet::HEADER_LEN + ip_len;
    let out = out.get_mut(..len).ok_or(DropReason::NoRoom)?;

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
        ident: idents.next(ip.src_addr()),
        // As Linux: DF clear, so that a narrower path back may fragment the reply.
        dont_frag: false,
        ttl: REPLY_TTL,
        payload_len: icmp_len,
    }
    .emit_with_options(&mut packet, reply_options)
    .map_err(|_| DropReason::NoRoom)?;

    // The header we just wrote says the payload is `icmp_len` bytes: `get_mut` takes
    // exactly that many, so the copy has matching lengths.
    let payload = packet.payload_mut().get_mut(..icmp_len).ok_or(DropReason::NoRoom)?;
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

// ANCHOR: echo_options
/// The options of an echo reply. RFC 1122 (3.2.2.6) says a Record Route or Timestamp
/// option in an echo request SHOULD come back in the reply, updated to include us. Linux
/// does it in two steps, and so do we: it adds its entry when the request arrives
/// (`ip_options_compile`) and again when the reply leaves (`ip_options_echo` and
/// `ip_options_build`), so `ping -R` shows our address twice. The reply carries Record
/// Route first, then Timestamp, whatever their order in the request, then End of List
/// bytes up to a multiple of 4; every other option is left out. Returns the length.
fn echo_options(
    us: Ipv4Addr,
    now: Timestamp,
    header: &[u8],
    found: &Ipv4Options,
    out: &mut [u8],
) -> Result<usize, DropReason> {
    type Fill = fn(&mut SlotOption<&mut [u8]>, Ipv4Addr, Timestamp) -> Result<(), DropReason>;
    let mut len = 0;
    for (at, fill) in
        [(found.record_route, record_route as Fill), (found.timestamp, timestamp as Fill)]
    {
        let Some(at) = at else { continue };
        let option_len = usize::from(header.get(at + 1).copied().unwrap_or(0));
        let request_option = header.get(at..at + option_len).ok_or(DropReason::Ipv4Malformed)?;
        let option = out.get_mut(len..len + option_len).ok_or(DropReason::NoRoom)?;
        option.copy_from_slice(request_option);
        fill(&mut SlotOption::new(option), us, now)?;
        len += option_len;
    }
    // `out` came zeroed: the bytes up to the next multiple of 4 are End of List.
    Ok(len.next_multiple_of(4))
}

/// Record Route (RFC 791): our address in the slot the pointer names, which moves on by 4,
/// once for the arrival and once for the departure, while there is room.
fn record_route(
    option: &mut SlotOption<&mut [u8]>,
    us: Ipv4Addr,
    _now: Timestamp,
) -> Result<(), DropReason> {
    let mut pointer = option.pointer();
    // Ipv4Options::parse made sure that a pointer within the option names a whole slot.
    if pointer <= option.len() {
        option.set_slot(pointer, us.octets());
        pointer += 4;
        if pointer <= option.len() {
            if !option.has_slot(pointer) {
                return Err(DropReason::Ipv4OptionNoRoom);
            }
            option.set_slot(pointer, us.octets());
            pointer += 4;
        }
    }
    option.set_pointer(pointer);
    Ok(())
}

/// Timestamp (RFC 791): the time (and our address, for flag 1; for flag 3 only where the
/// sender wrote our address), on arrival and on departure. A full option counts us in
/// its overflow instead, once, as Linux does (not for flag 3).
fn timestamp(
    option: &mut SlotOption<&mut [u8]>,
    us: Ipv4Addr,
    now: Timestamp,
) -> Result<(), DropReason> {
    let (flags, time) = (option.flags(), now.0.to_be_bytes());
    let mut pointer = option.pointer();
    if pointer > option.len() {
        // Ipv4Options::parse refused an overflow count that is already 15.
        if flags != TS_PRESPECIFIED {
            option.set_overflow(option.overflow() + 1);
        }
        return Ok(());
    }
    // Arrival. Ipv4Options::parse made sure the slot (or pair of slots) is whole.
    let (need_addr, need_time) = match flags {
        TS_ONLY => {
            option.set_slot(pointer, time);
            pointer += 4;
            (false, true)
        }
        TS_AND_ADDRESS => {
            option.set_slot(pointer, us.octets());
            option.set_slot(pointer + 4, time);
            pointer += 8;
            (true, true)
        }
        TS_PRESPECIFIED if option.addr_at(pointer) == us => {
            option.set_slot(pointer + 4, time);
            pointer += 8;
            (false, true)
        }
        _ => (false, false),
    };
    // Departure, if there is room left at all; room for only part of an entry is an
    // error (Linux's ip_options_echo fails, and no reply is sent).
    if pointer <= option.len() {
        if need_addr {
            if !option.has_slot(pointer) {
                return Err(DropReason::Ipv4OptionNoRoom);
            }
            option.set_slot(pointer, us.octets());
            pointer += 4;
        }
        if need_time {
            if !option.has_slot(pointer) {
                return Err(DropReason::Ipv4OptionNoRoom);
            }
            if flags != TS_PRESPECIFIED {
                option.set_slot(pointer, time);
                pointer += 4;
            } else if option.has_slot(pointer + 4) && option.addr_at(pointer) == us {
                option.set_slot(pointer + 4, time);
                pointer += 8;
            }
        }
    }
    option.set_pointer(pointer);
    Ok(())
}
// ANCHOR_END: echo_options

// ANCHOR: parameter_problem
/// The most of the offending datagram an ICMP error quotes: Linux fills its errors up to
/// 576 bytes (RFC 1812 4.3.2.3), a 20-byte header and the 8-byte ICMP header included.
const MAX_QUOTE: usize = 576 - MIN_HEADER_LEN - icmpv4::HEADER_LEN;

/// Answers a packet whose options Linux refuses with what Linux sends: an ICMP Parameter
/// Problem (type 12, code 0) whose pointer names the offending byte (RFC 792), with
/// precedence "internetwork control" (0xc0) and the request's TOS bits, quoting the
/// request. Not when RFC 1122 (3.2.2) forbids an error: about a later fragment, about an
/// ICMP error (or, as Linux, an ICMP type it does not know), to an address that is not one
/// host's (broadcasts, multicast and 0.0.0.0/8 were refused already; class E is left).
/// And unlike Linux, never longer than the request: the quote stops there (RFC 1122 asks
/// for the header and 8 bytes of data only), and a request too short even for those gets
/// no error at all.
fn parameter_problem(
    host: &Host,
    idents: &mut Idents,
    eth: &EthernetFrame<&[u8]>,
    ip: &Ipv4Packet<&[u8]>,
    bad: BadOption,
    out: &mut [u8],
) -> Outcome {
    if ip.frag_offset() != 0 {
        return Err(DropReason::Ipv4BadOption);
    }
    if ip.protocol() == IpProtocol::Icmp {
        match ip.payload().first() {
            Some(&kind) if !Icmpv4Type::is_error(kind) && kind <= Icmpv4Type::HIGHEST_KNOWN => {}
            _ => return Err(DropReason::Ipv4BadOption),
        }
    }
    if u32::from(ip.src_addr()) >> 28 == 0xf {
        return Err(DropReason::Ipv4BadOption);
    }
    let request = eth.payload().get(..usize::from(ip.total_len())).ok_or(DropReason::Truncated)?;
    let room = eth.payload().len().saturating_sub(Ipv4Repr::HEADER_LEN + icmpv4::HEADER_LEN);
    let quote_len = request.len().min(MAX_QUOTE).min(room);
    if quote_len < request.len().min(ip.header_len() + 8) {
        return Err(DropReason::Ipv4BadOption);
    }
    let quote = request.get(..quote_len).ok_or(DropReason::Truncated)?;

    let icmp_len = icmpv4::HEADER_LEN + quote_len;
    let len = ethernet::HEADER_LEN + Ipv4Repr::HEADER_LEN + icmp_len;
    let out = out.get_mut(..len).ok_or(DropReason::NoRoom)?;
    let mut frame = EthernetFrame::new_unchecked(out);
    frame.set_dst_addr(eth.src_addr());
    frame.set_src_addr(host.mac);
    frame.set_ethertype(EtherType::Ipv4);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    Ipv4Repr {
        src_addr: host.ip,
        dst_addr: ip.src_addr(),
        protocol: IpProtocol::Icmp,
        // RFC 1349's four TOS bits of the request, under precedence 6 (0xc0).
        tos: (ip.tos() & 0x1e) | 0xc0,
        ident: idents.next(ip.src_addr()),
        dont_frag: false,
        ttl: REPLY_TTL,
        payload_len: icmp_len,
    }
    .emit(&mut packet)
    .map_err(|_| DropReason::NoRoom)?;
    let payload = packet.payload_mut().get_mut(..icmp_len).ok_or(DropReason::NoRoom)?;
    let mut error = Icmpv4Message::new_unchecked(payload);
    error.set_msg_type(Icmpv4Type::ParameterProblem);
    error.set_msg_code(0);
    error.set_param_pointer(bad.pointer);
    error.data_mut().copy_from_slice(quote);
    error.fill_checksum();
    Ok(Reply::ParameterProblem(len))
}
// ANCHOR_END: parameter_problem

// ANCHOR: counters
/// What the full responder did, frame by frame: counted, never allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    pub frames_read: u64,
    pub arp_replies: u64,
    pub echo_replies: u64,
    pub parameter_problems: u64,
    pub neighbor_adverts: u64,
    pub echo6_replies: u64,
    pub udp_echo_replies: u64,
    pub dhcp_replies: u64,
    /// Replies the kernel refused (the interface was down at that instant).
    pub send_failures: u64,
    pub dropped: [u64; DropReason::ALL.len()],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            frames_read: 0,
            arp_replies: 0,
            echo_replies: 0,
            parameter_problems: 0,
            neighbor_adverts: 0,
            echo6_replies: 0,
            udp_echo_replies: 0,
            dhcp_replies: 0,
            send_failures: 0,
            dropped: [0; DropReason::ALL.len()],
        }
    }
}

impl Counters {
    /// Counts one frame read and what became of it.
    pub fn record(&mut self, outcome: &Outcome) {
        self.frames_read += 1;
        match outcome {
            Ok(Reply::Arp(_)) => self.arp_replies += 1,
            Ok(Reply::Echo(_)) => self.echo_replies += 1,
            Ok(Reply::ParameterProblem(_)) => self.parameter_problems += 1,
            Ok(Reply::NeighborAdvert(_)) => self.neighbor_adverts += 1,
            Ok(Reply::Echo6(_)) => self.echo6_replies += 1,
            Ok(Reply::UdpEcho(_)) => self.udp_echo_replies += 1,
            Ok(Reply::Dhcp(_)) => self.dhcp_replies += 1,
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
            Reply::ParameterProblem(_) => &mut self.parameter_problems,
            Reply::NeighborAdvert(_) => &mut self.neighbor_adverts,
            Reply::Echo6(_) => &mut self.echo6_replies,
            Reply::UdpEcho(_) => &mut self.udp_echo_replies,
            Reply::Dhcp(_) => &mut self.dhcp_replies,
        };
        *sent = sent.saturating_sub(1);
        self.send_failures += 1;
    }

    /// How many frames were dropped for this reason.
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
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
        if self.parameter_problems > 0 {
            writeln!(f, "{:>10}  ICMP parameter problems sent", self.parameter_problems)?;
        }
        // IPv6 (chapter 8), when there was any: chapter 5's counts stay as they were.
        if self.neighbor_adverts + self.echo6_replies > 0 {
            writeln!(f, "{:>10}  IPv6 neighbour advertisements sent", self.neighbor_adverts)?;
            writeln!(f, "{:>10}  ICMPv6 echo replies sent", self.echo6_replies)?;
        }
        if self.udp_echo_replies > 0 {
            writeln!(f, "{:>10}  UDP echo replies sent", self.udp_echo_replies)?;
        }
        if self.dhcp_replies > 0 {
            writeln!(f, "{:>10}  DHCP replies sent", self.dhcp_replies)?;
        }
        if self.send_failures > 0 {
            writeln!(f, "{:>10}  replies the kernel refused (interface down)", self.send_failures)?;
        }
        write!(f, "{:>10}  frames dropped", self.total_dropped())?;
        for reason in DropReason::ALL {
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
        ip6: crate::cli::DEFAULT_IP6,
        mac: MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]),
    };

    /// A fixed time of day for the timestamps: 08:15:21.012 UT.
    const NOW: Timestamp = Timestamp(29_721_012);

    /// `respond` with counters from a fixed key and the fixed time.
    fn call(services: Services, frame: &[u8], out: &mut [u8]) -> Outcome {
        respond(&US, services, &mut Idents::new(1), NOW, frame, out)
    }

    fn reply_to(frame: &[u8]) -> Result<Vec<u8>, DropReason> {
        reply_at(NOW, frame)
    }

    fn reply_at(now: Timestamp, frame: &[u8]) -> Result<Vec<u8>, DropReason> {
        let mut out = vec![0xa5u8; 65536];
        let reply = respond(&US, Services::ALL, &mut Idents::new(1), now, frame, &mut out)?;
        out.truncate(reply.len());
        Ok(out)
    }

    /// The positions at which two frames of the same length differ.
    fn differences(ours: &[u8], kernel: &[u8]) -> Vec<usize> {
        assert_eq!(
            ours.len(),
            kernel.len(),
            "\nours   {}\nkernel {}",
            hex::encode(ours),
            hex::encode(kernel)
        );
        (0..ours.len()).filter(|&i| ours[i] != kernel[i]).collect()
    }

    #[test]
    fn every_drop_reason_is_listed_once() {
        for (i, d) in DropReason::ALL.iter().enumerate() {
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
        // ours only in the IPv4 identification (the kernel counts its own, we count ours)
        // and so in the header checksum. TTL 64, TOS copied, DF clear: same.
        let request = fixture!("kernel_echo_request_56_veth");
        let kernel = fixture!("kernel_echo_reply_56");
        let ours = reply_to(&request).unwrap();
        let differs = differences(&ours, &kernel);
        assert!(differs.iter().all(|i| [18, 19, 24, 25].contains(i)), "{differs:?}");
    }

    #[test]
    fn option_replies_match_the_kernels_but_for_the_identification() {
        // ping -R, -T tsonly and -T tsandaddr over a veth pair, and the kernel's replies.
        // Its timestamps all fell in the same millisecond; at that time, ours are equal.
        for (name, request, kernel) in [
            ("rr", fixture!("kernel_echo_request_rr"), fixture!("kernel_echo_reply_rr")),
            (
                "tsonly",
                fixture!("kernel_echo_request_tsonly"),
                fixture!("kernel_echo_reply_tsonly"),
            ),
            (
                "tsandaddr",
                fixture!("kernel_echo_request_tsandaddr"),
                fixture!("kernel_echo_reply_tsandaddr"),
            ),
        ] {
            let at = if name == "tsandaddr" { 42 } else { 38 };
            let now = Timestamp(u32::from_be_bytes(kernel[at..at + 4].try_into().unwrap()));
            let ours = reply_at(now, &request).unwrap();
            let differs = differences(&ours, &kernel);
            assert!(differs.iter().all(|i| [18, 19, 24, 25].contains(i)), "{name}: {differs:?}");
        }
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

    /// The ping fixture with `options` (a multiple of 4 bytes) in its IPv4 header.
    fn with_options(frame: &[u8], options: &[u8]) -> Vec<u8> {
        let mut f = [&frame[..34], options, &frame[34..]].concat();
        f[14] = 0x45 + (options.len() / 4) as u8;
        let total = u16::from_be_bytes([f[16], f[17]]) + options.len() as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
        f
    }

    /// The options of a reply frame, or what it was dropped for.
    fn reply_options(options: &[u8]) -> Result<Vec<u8>, DropReason> {
        let reply = reply_to(&with_options(&fixture!("icmp_echo_request_56"), options))?;
        let ip = Ipv4Packet::new_checked(&reply[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert!(Icmpv4Message::new_checked(ip.payload()).unwrap().verify_checksum());
        Ok(ip.options().to_vec())
    }

    // ANCHOR: echo_options_test
    #[test]
    fn echoes_options_as_linux_does() {
        // Each request was also sent to Linux 6.18 over a veth pair (crafted with a packet
        // socket); its reply carried these options (its timestamps put in as T).
        const US: [u8; 4] = [172, 16, 1, 2];
        const THEM: [u8; 4] = [172, 16, 1, 1];
        const T: [u8; 4] = NOW.0.to_be_bytes();
        let cases: [(&str, Vec<u8>, Vec<u8>); 12] = [
            ("empty Record Route", [&[1, 7, 39, 4][..], &[0; 36]].concat(), {
                [&[7, 39, 12][..], &US, &US, &[0; 28], &[0]].concat()
            }),
            ("Record Route, one slot", [&[7, 7, 4][..], &[0; 5]].concat(), {
                [&[7, 7, 8][..], &US, &[0]].concat()
            }),
            ("Record Route full", [&[7, 7, 8][..], &THEM, &[0]].concat(), {
                [&[7, 7, 8][..], &THEM, &[0]].concat()
            }),
            (
                "timestamps, one slot",
                vec![68, 8, 5, 0, 0, 0, 0, 0],
                [&[68, 8, 9, 0][..], &T].concat(),
            ),
            ("timestamps full", vec![68, 8, 9, 0, 1, 2, 3, 4], vec![68, 8, 9, 0x10, 1, 2, 3, 4]),
            (
                "full, overflow 14",
                vec![68, 8, 9, 0xe0, 1, 2, 3, 4],
                vec![68, 8, 9, 0xf0, 1, 2, 3, 4],
            ),
            ("unknown flag 2", vec![68, 8, 5, 2, 0, 0, 0, 0], vec![68, 8, 5, 2, 0, 0, 0, 0]),
            ("prespecified: us", [&[68, 12, 5, 3][..], &US, &[0; 4]].concat(), {
                [&[68, 12, 13, 3][..], &US, &T].concat()
            }),
            (
                "prespecified: us, us",
                [&[68, 20, 5, 3][..], &US, &[0; 4], &US, &[0; 8]].concat(),
                [&[68, 20, 21, 3][..], &US, &T, &US, &T].concat(),
            ),
            ("prespecified: them", [&[68, 12, 5, 3][..], &THEM, &[0; 4]].concat(), {
                [&[68, 12, 5, 3][..], &THEM, &[0; 4]].concat()
            }),
            (
                "Timestamp, then Record Route",
                [&[68, 8, 5, 0, 0, 0, 0, 0, 7, 7, 4][..], &[0; 5]].concat(),
                [&[7, 7, 8][..], &US, &[68, 8, 9, 0], &T, &[0]].concat(),
            ),
            ("unknown options only", [&[130, 11][..], &[0; 10]].concat(), vec![]),
        ];
        for (what, request, reply) in cases {
            assert_eq!(reply_options(&request), Ok(reply), "{what}");
        }
        // Room on arrival but none on departure: Linux's ip_options_echo() fails and the
        // kernel sends nothing.
        for (what, request) in [
            ("Record Route, pointer 5 of 11", [&[7, 11, 5][..], &[0; 9]].concat()),
            ("Record Route, pointer 33 of 39", [&[1, 7, 39, 33][..], &[0; 36]].concat()),
            ("address and time, room for one pair", [&[68, 16, 5, 1][..], &[0; 12]].concat()),
            ("timestamps, pointer 6 of 10", [&[68, 10, 6, 0][..], &[0; 8]].concat()),
        ] {
            assert_eq!(reply_options(&request), Err(DropReason::Ipv4OptionNoRoom), "{what}");
        }
    }
    // ANCHOR_END: echo_options_test

    #[test]
    fn a_reply_with_options_is_never_longer_than_its_request() {
        let request = fixture!("icmp_echo_request_options");
        let reply = reply_to(&request).unwrap();
        assert_eq!(reply.len(), request.len(), "NOP + 39-byte option + End of List: 40 bytes");
        let tiny = with_options(&fixture!("icmp_echo_request_0"), &[68, 8, 5, 0, 0, 0, 0, 0]);
        assert_eq!(reply_to(&tiny).unwrap().len(), tiny.len());
    }

    // ANCHOR: parameter_problem_test
    #[test]
    fn parameter_problem_matches_the_kernels_but_for_what_we_choose() {
        // The kernel's answer to its own ping -R request with the option length made 40.
        // Ours: the same but for the identification (and the checksums that follow), and
        // the quote, which stops where the error would grow longer than the request.
        let request = fixture!("kernel_bad_option_request");
        let kernel = fixture!("kernel_parameter_problem");
        let ours = reply_to(&request).unwrap();
        assert_eq!(ours.len(), request.len(), "no longer than the request");
        let quote = ours.len() - 42;
        let mut kernel = kernel[..ours.len()].to_vec();
        kernel[16..18].copy_from_slice(&(20 + 8 + quote as u16).to_be_bytes());
        let differs = differences(&ours, &kernel);
        assert!(differs.iter().all(|i| [18, 19, 24, 25, 36, 37].contains(i)), "{differs:?}");
        let icmp = Icmpv4Message::new_checked(&ours[34..]).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!((icmp.msg_type(), icmp.param_pointer()), (Icmpv4Type::ParameterProblem, 21));
    }
    // ANCHOR_END: parameter_problem_test

    #[test]
    fn parameter_problems_go_where_rfc_1122_allows() {
        let ping = fixture!("icmp_echo_request_56");
        let bad = [7, 1, 0, 0]; // an option of length 1: pointer 20
        let answered = |frame: &[u8]| match call(Services::ALL, frame, &mut [0xa5u8; 2000]) {
            Ok(Reply::ParameterProblem(_)) => Ok(()),
            other => Err(other),
        };
        for (what, frame) in [
            ("echo request", with_options(&ping, &bad)),
            ("UDP", with_ip(&with_options(&ping, &bad), |p| p[9] = 17)),
            ("first fragment", with_ip(&with_options(&ping, &bad), |p| p[6] = 0x20)),
            ("echo reply", with_icmp24(&with_options(&ping, &bad), 0)),
            ("address mask reply (18)", with_icmp24(&with_options(&ping, &bad), 18)),
            ("bad ICMP checksum", flip(&with_options(&ping, &bad), 60)),
        ] {
            assert_eq!(answered(&frame), Ok(()), "{what}");
        }
        for (what, frame) in [
            ("destination unreachable", with_icmp24(&with_options(&ping, &bad), 3)),
            ("parameter problem", with_icmp24(&with_options(&ping, &bad), 12)),
            ("unknown ICMP type 19", with_icmp24(&with_options(&ping, &bad), 19)),
            ("later fragment", with_ip(&with_options(&ping, &bad), |p| p[7] = 1)),
            ("from class E", with_ip(&with_options(&ping, &bad), |p| p[12] = 240)),
            ("too short to quote", with_options(&fixture!("icmp_echo_request_0"), &bad)),
            ("no ICMP type byte", with_ip(&with_options(&ping, &bad)[..38], |p| p[3] = 24)),
        ] {
            assert_eq!(answered(&frame), Err(Err(DropReason::Ipv4BadOption)), "{what}");
        }
        let reply = reply_to(&with_ip(&with_options(&ping, &bad), |p| p[1] = 0xff)).unwrap();
        assert_eq!(reply[15], 0xde, "precedence 6 and the request's TOS bits, as Linux");
    }

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

    #[test]
    fn timestamps_count_milliseconds_since_midnight_ut() {
        use std::time::Duration;
        let at = |secs: u64, ms: u64| {
            Timestamp::from_system_time(UNIX_EPOCH + Duration::from_millis(secs * 1000 + ms))
        };
        assert_eq!(at(0, 0), Timestamp(0));
        assert_eq!(at(86_399, 999), Timestamp(86_399_999));
        assert_eq!(at(86_400, 0), Timestamp(0), "midnight again");
        // 2026-12-01T08:15:21.012Z
        assert_eq!(at(1_796_112_921, 12), Timestamp(29_721_012));
        assert_eq!(Timestamp::from_system_time(UNIX_EPOCH - Duration::from_secs(1)).0 >> 31, 1);
    }

    // ANCHOR: ignores_what_it_must
    #[test]
    fn ignores_what_it_must() {
        let arp = fixture!("arp_request_arping");
        let ping = fixture!("icmp_echo_request_56");
        let ping0 = fixture!("icmp_echo_request_0");
        let opts = fixture!("icmp_echo_request_options");
        // An option of length 1 in an echo request whose ICMP type is then `icmp_type`.
        let bad_option_in = |frame: &[u8], icmp_type| {
            let mut f = with_options(frame, &[7, 1, 0, 0]);
            f[38] = icmp_type;
            Icmpv4Message::new_unchecked(&mut f[38..]).fill_checksum();
            f
        };
        let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
            ("ARP for another address", patch(&arp, 38, &[172, 16, 1, 9]), DropReason::ArpNotForUs),
            ("ARP reply", patch(&arp, 21, &[2]), DropReason::ArpNotRequest),
            ("ARP for IPv6", patch(&arp, 16, &[0x86, 0xdd]), DropReason::ArpUnsupported),
            ("ARP hardware type", patch(&arp, 15, &[6]), DropReason::ArpUnsupported),
            ("ARP gratuitous", patch(&arp, 28, &[172, 16, 1, 2]), DropReason::ArpBadSender),
            ("ARP to another MAC", patch(&arp, 0, &[0x02, 0, 0, 0, 0, 9]), DropReason::NotOurMac),
            ("group source MAC", patch(&ping, 6, &[0x01]), DropReason::BadSourceMac),
            ("VLAN", patch(&ping, 12, &[0x81, 0x00]), DropReason::VlanTagged),
            ("IPv4 bytes as IPv6", patch(&ping, 12, &[0x86, 0xdd]), DropReason::Ipv6Malformed),
            ("IPv4 version 5", patch(&ping, 14, &[0x55]), DropReason::Ipv4Malformed),
            ("IPv4 IHL 4", patch(&ping, 14, &[0x44]), DropReason::Ipv4Malformed),
            ("IPv4 bad checksum", patch(&ping, 22, &[0x3f]), DropReason::Ipv4BadChecksum),
            ("ICMP bad checksum", flip(&ping, 37), DropReason::IcmpBadChecksum),
            ("ICMP damaged data", flip(&ping, 60), DropReason::IcmpBadChecksum),
            ("echo to another MAC", patch(&ping, 0, &[0x02, 0, 0, 0, 0, 9]), DropReason::NotOurMac),
            ("echo to broadcast MAC", patch(&ping, 0, &[0xff; 6]), DropReason::NotOurMac),
            ("UDP", with_ip(&ping, |p| p[9] = 17), DropReason::OtherProtocol),
            ("fragment", with_ip(&ping, |p| p[6] |= 0x20), DropReason::Ipv4Fragment),
            ("later fragment", with_ip(&ping, |p| p[7] = 1), DropReason::Ipv4Fragment),
            ("loose source route", with_ip(&opts, |p| p[21] = 0x83), DropReason::Ipv4SourceRouted),
            ("strict source route", with_ip(&opts, |p| p[21] = 0x89), DropReason::Ipv4SourceRouted),
            ("bad option in an ICMP error", bad_option_in(&ping, 3), DropReason::Ipv4BadOption),
            ("bad option, too short to quote", bad_option_in(&ping0, 8), DropReason::Ipv4BadOption),
            (
                "Record Route, no room to echo",
                with_options(&ping, &[7, 11, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                DropReason::Ipv4OptionNoRoom,
            ),
            ("to another host", with_ip(&ping, |p| p[19] = 9), DropReason::Ipv4NotForUs),
            ("to broadcast", with_ip(&ping, |p| p[16..20].fill(255)), DropReason::Ipv4NotForUs),
            ("from broadcast", with_ip(&ping, |p| p[12..16].fill(255)), DropReason::Ipv4BadSource),
            ("from multicast", with_ip(&ping, |p| p[12] = 224), DropReason::Ipv4BadSource),
            ("from ourselves", with_ip(&ping, |p| p[15] = 2), DropReason::Ipv4BadSource),
            ("echo reply", with_icmp(&ping, |m| m[0] = 0), DropReason::IcmpNotEchoRequest),
            ("echo code 1", with_icmp(&ping, |m| m[1] = 1), DropReason::IcmpNotEchoRequest),
            ("unreachable", with_icmp(&ping, |m| m[0] = 3), DropReason::IcmpNotEchoRequest),
            ("total length past the end", with_ip(&ping, |p| p[3] += 1), DropReason::Truncated),
            ("802.1ad Q-in-Q tag", patch(&ping, 12, &[0x88, 0xa8]), DropReason::VlanTagged),
            ("old Q-in-Q tag", patch(&ping, 12, &[0x91, 0x00]), DropReason::VlanTagged),
            ("ARP hardware length 8", patch(&arp, 18, &[8]), DropReason::ArpUnsupported),
            ("ARP protocol length 16", patch(&arp, 19, &[16]), DropReason::ArpUnsupported),
            ("ARP operation 3 (RARP)", patch(&arp, 21, &[3]), DropReason::ArpNotRequest),
            (
                "ARP to a multicast MAC",
                patch(&arp, 0, &[0x01, 0, 0x5e, 0, 0, 1]),
                DropReason::NotOurMac,
            ),
            ("ARP from a group MAC", patch(&arp, 22, &[0x01]), DropReason::ArpBadSender),
            ("ARP from 255.255.255.255", patch(&arp, 28, &[255; 4]), DropReason::ArpBadSender),
            ("ARP from 224.0.0.1", patch(&arp, 28, &[224, 0, 0, 1]), DropReason::ArpBadSender),
            ("ARP from 127.0.0.1", patch(&arp, 28, &[127, 0, 0, 1]), DropReason::ArpBadSender),
            ("ARP cut in the middle", arp[..41].to_vec(), DropReason::Truncated),
            (
                "IPv4 total length < header",
                with_ip(&ping, |p| p[2..4].copy_from_slice(&[0, 19])),
                DropReason::Ipv4Malformed,
            ),
            (
                "IPv4 IHL past the total length",
                with_ip(&fixture!("icmp_echo_request_0"), |p| p[0] = 0x4f),
                DropReason::Ipv4Malformed,
            ),
            (
                "IPv4 IHL past the frame",
                patch(&ping, 14, &[0x4f])[..60].to_vec(),
                DropReason::Truncated,
            ),
            ("IPv4 version 6", patch(&ping, 14, &[0x65]), DropReason::Ipv4Malformed),
            (
                "to multicast",
                with_ip(&ping, |p| p[16..20].copy_from_slice(&[224, 0, 0, 1])),
                DropReason::Ipv4NotForUs,
            ),
            ("to the subnet broadcast", with_ip(&ping, |p| p[19] = 255), DropReason::Ipv4NotForUs),
            ("from 0.0.0.0", with_ip(&ping, |p| p[12..16].fill(0)), DropReason::Ipv4BadSource),
            (
                "from 0.1.2.3",
                with_ip(&ping, |p| p[12..16].copy_from_slice(&[0, 1, 2, 3])),
                DropReason::Ipv4BadSource,
            ),
            (
                "from loopback",
                with_ip(&ping, |p| p[12..16].copy_from_slice(&[127, 0, 0, 1])),
                DropReason::Ipv4BadSource,
            ),
            (
                "ICMP shorter than 8 bytes",
                with_ip(&ping[..38], |p| p[2..4].copy_from_slice(&[0, 24])),
                DropReason::Truncated,
            ),
            ("timestamp request", with_icmp(&ping, |m| m[0] = 13), DropReason::IcmpNotEchoRequest),
            ("time exceeded", with_icmp(&ping, |m| m[0] = 11), DropReason::IcmpNotEchoRequest),
            ("TCP", with_ip(&ping, |p| p[9] = 6), DropReason::OtherProtocol),
            (
                "LLC (802.3 length field)",
                patch(&ping, 12, &[0x00, 0x54]),
                DropReason::OtherProtocol,
            ),
            ("source MAC broadcast", patch(&ping, 6, &[0xff; 6]), DropReason::BadSourceMac),
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
            assert!(call(Services::ALL, &frame, &mut out).is_err());
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
            fixture!("ipv6_ns_multicast"),
            fixture!("ipv6_echo_request_56"),
        ] {
            counters.record(&call(Services::ALL, &frame, &mut out));
        }
        assert_eq!((counters.frames_read, counters.arp_replies, counters.echo_replies), (5, 1, 1));
        assert_eq!((counters.neighbor_adverts, counters.echo6_replies), (1, 1));
        assert_eq!(counters.dropped[DropReason::Ipv6NotForUs.index()], 1);
        let text = counters.to_string();
        assert!(
            text.contains("1  frames dropped")
                && text.contains("1    IPv6 for another address or group")
                && text.contains("1  IPv6 neighbour advertisements sent"),
            "{text}"
        );
    }

    #[test]
    fn a_refused_reply_is_not_counted_as_sent() {
        let mut counters = Counters::default();
        let mut out = [0u8; 1514];
        let outcome = call(Services::ALL, &fixture!("icmp_echo_request_56"), &mut out);
        counters.record(&outcome);
        counters.record_refused(outcome.unwrap());
        assert_eq!((counters.echo_replies, counters.send_failures), (0, 1));
        assert!(counters.to_string().contains("1  replies the kernel refused"));
    }

    #[test]
    fn chapter_3_answers_arp_but_not_ping() {
        let mut out = [0u8; 1514];
        let ping = fixture!("icmp_echo_request_56");
        assert_eq!(call(Services::ARP, &ping, &mut out), Err(DropReason::OtherProtocol));
        let arp = fixture!("arp_request_arping");
        assert_eq!(call(Services::ARP, &arp, &mut out), Ok(Reply::Arp(42)));
    }

    #[test]
    fn a_small_output_buffer_is_reported_not_a_panic() {
        let ping = fixture!("icmp_echo_request_1472");
        let mut out = [0u8; 100];
        assert_eq!(call(Services::ALL, &ping, &mut out), Err(DropReason::NoRoom));
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

    /// Sets the ICMP type of a frame with 4 bytes of options, and fixes its checksum.
    fn with_icmp24(frame: &[u8], icmp_type: u8) -> Vec<u8> {
        let mut f = frame.to_vec();
        f[38] = icmp_type;
        Icmpv4Message::new_unchecked(&mut f[38..]).fill_checksum();
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
