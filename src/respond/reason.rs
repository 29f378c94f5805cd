//! Why a frame got no reply (chapter 5): one reason per rule, each counted by the full
//! responder and explained in the book.

use std::fmt;

// ANCHOR: drop_reason
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
// ANCHOR_END: drop_reason

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_drop_reason_is_listed_once() {
        for (i, d) in DropReason::ALL.iter().enumerate() {
            assert_eq!(d.index(), i, "{d}");
        }
    }
}
