//! The responder as pure functions (chapters 3 to 5, 8, 10): a frame and our addresses in; the
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
//!
//! One file per part of the course, each re-exported here:
//!
//! | file | chapter | what it answers, or holds |
//! |------|---------|---------------------------|
//! | `arp.rs` | 3 | ARP requests for our address |
//! | `ipv4.rs` | 4 | the checks on every IPv4 packet; the identification of ours |
//! | `echo.rs` | 4 | ICMP echo requests, with their Record Route and Timestamp options |
//! | `parameter_problem.rs` | 4 | the ICMP error about options Linux refuses |
//! | `reason.rs` | 5 | [`DropReason`]: why a frame got no reply |
//! | `counters.rs` | 5 | [`Counters`]: what the full responder did |
//! | `ipv6_reply.rs` | 8 | neighbour solicitations and ICMPv6 echo requests |
//! | `udp_echo.rs` | 10 | UDP echo on port 7 |
//!
//! This file holds what they share and [`respond`], which hands each frame to one of them.

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

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
use crate::wire::{self, ipv6};

mod arp;
mod counters;
#[cfg(test)]
mod coursework;
mod echo;
mod ipv4;
mod ipv6_reply;
mod parameter_problem;
mod reason;
#[cfg(test)]
mod testing;
mod udp_echo;

pub use arp::arp_reply;
pub use counters::Counters;
pub use echo::Timestamp;
pub use ipv4::{Idents, REPLY_TTL};
pub use reason::DropReason;

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
    }
}

/// Starts a reply of `len` bytes at the front of `out`: checks that it fits, and writes
/// its Ethernet header.
pub(crate) fn start_frame(
    out: &mut [u8],
    len: usize,
    header: EthernetRepr,
) -> Result<EthernetFrame<&mut [u8]>, DropReason> {
    let mut frame = EthernetFrame::new_unchecked(out.get_mut(..len).ok_or(DropReason::NoRoom)?);
    header.emit(&mut frame).map_err(|_| DropReason::NoRoom)?;
    Ok(frame)
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
        EtherType::Ipv4 if services.echo => {
            ipv4::ipv4_reply(host, services, idents, now, &eth, out)
        }
        EtherType::Ipv6 if services.ipv6 => ipv6_reply::ipv6_reply(host, &eth, out),
        tag if tag.is_vlan_tag() => Err(DropReason::VlanTagged),
        _ => Err(DropReason::OtherProtocol),
    }
}
// ANCHOR_END: respond

#[cfg(test)]
mod tests {
    use super::*;
    use crate::respond::testing::*;
    use crate::wire::fixtures::fixture;
    use crate::wire::{Icmpv4Message, MacAddr};

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
    fn no_drop_writes_into_the_output_buffer() {
        let ping = fixture!("icmp_echo_request_56");
        for frame in [flip(&ping, 40), patch(&ping, 12, &[0x81, 0x00]), ping[..50].to_vec()] {
            let mut out = [0xa5u8; 1514];
            assert!(call(Services::ALL, &frame, &mut out).is_err());
            assert!(out.iter().all(|&b| b == 0xa5));
        }
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
}
