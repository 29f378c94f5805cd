//! libFuzzer target: the responder and every parser, on any bytes.
//!
//! The first input byte steers the run; the rest is the frame:
//! - bit 0: repair the IPv4 header checksum, bit 1: repair the ICMP checksum (ICMPv6's,
//!   pseudo-header included, in an IPv6 frame), so that the fuzzer reaches the checks
//!   behind them (a random checksum is right once in 65536);
//! - bit 2: answer ARP only (chapter 3) instead of everything (chapter 5);
//! - bit 3: make the frame IPv6 (EtherType 0x86dd, version 6) before the repair, so that
//!   half the effort goes to the IPv6 path: extension headers, neighbour discovery, echo.
//!
//! A finding is a panic anywhere (an out-of-bounds access, an overflow: the script builds
//! with overflow checks), or an outcome the oracle of the property tests rejects: a reply
//! that is not exactly the one RFC 826, 792, 4443 or 4861 (and Linux, for IPv4 options,
//! Parameter Problem and neighbour advertisements) calls for (checksums, lengths), longer than the request, to a group address,
//! or to a frame that deserves none; or no reply to a frame that deserves one.

#![no_main]

use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use tapbook::respond::{Host, Idents, Services, Timestamp, respond};
use tapbook::show::{Dump, Summary};
use tapbook::wire::arp::{ArpPacket, ArpRepr, PACKET_LEN};
use tapbook::wire::icmpv6::Icmpv6Message;
use tapbook::wire::ndisc::NdiscMessage;
use tapbook::wire::{EthernetFrame, Icmpv4Message, Ipv4Packet, Ipv6Packet, MacAddr};

use tapbook_testkit::oracle;

const US: Host = Host {
    ip: Ipv4Addr::new(oracle::OUR_IP[0], oracle::OUR_IP[1], oracle::OUR_IP[2], oracle::OUR_IP[3]),
    ip6: std::net::Ipv6Addr::new(0xfd00, 0x172, 0x16, 1, 0, 0, 0, 2),
    mac: MacAddr(oracle::OUR_MAC),
};

fuzz_target!(|data: &[u8]| {
    let Some((&control, frame)) = data.split_first() else { return };
    let mut frame = frame.to_vec();
    if control & 8 != 0 && frame.len() > 14 {
        frame[12..14].copy_from_slice(&[0x86, 0xdd]);
        frame[14] = 0x60 | (frame[14] & 0x0f);
    }
    oracle::repair_checksums(&mut frame, control & 1 != 0, control & 2 != 0);
    let services = if control & 4 != 0 { Services::ARP } else { Services::ALL };

    // As the binaries run it, with an output buffer 8 bytes longer than the request: room
    // for the one reply allowed to be longer (a neighbour advertisement carrying the MAC
    // its solicitation did not carry); the oracle reports any other longer reply.
    let mut out = vec![0xa5u8; frame.len() + 8];
    let now = 12_345_678;
    let outcome = respond(&US, services, &mut Idents::new(1), Timestamp(now), &frame, &mut out);
    let reply = outcome.ok().map(|r| out.get(..r.len()).expect("a reply fits the buffer"));
    if let Err(why) = oracle::check(&frame, services.arp, services.echo, services.ipv6, reply, oracle::Clock::At(now)) {
        panic!("outcome {outcome:?}: {why}");
    }

    parsers(&frame);
    if let Some(rest) = frame.get(14..) {
        parsers(rest);
    }
    // What 02 and 05 print for every frame.
    let _ = write!(Discard, "{}{}", Summary(&frame), Dump(&frame));
});

/// Every view over `bytes`, checked and unchecked, with every accessor: none may panic,
/// and what `new_checked` promises must hold.
fn parsers(bytes: &[u8]) {
    if let Ok(eth) = EthernetFrame::new_checked(bytes) {
        let _ = (eth.dst_addr(), eth.src_addr(), eth.ethertype());
        assert_eq!(eth.payload().len(), bytes.len() - 14);
    }
    if let Ok(arp) = ArpPacket::new_checked(bytes) {
        let repr = ArpRepr::parse(&arp);
        let mut buf = [0xa5u8; PACKET_LEN];
        repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..])).expect("28 bytes hold ARP");
        assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).expect("emitted")), repr);
    }
    if let Ok(ip) = Ipv4Packet::new_checked(bytes) {
        let _ = (ip.tos(), ip.ident(), ip.dont_frag(), ip.is_fragment(), ip.frag_offset());
        let _ = (ip.ttl(), ip.protocol(), ip.checksum(), ip.src_addr(), ip.dst_addr());
        let _ = ip.verify_checksum();
        let _ = tapbook::wire::ipv4_options::Ipv4Options::parse(ip.header());
        assert_eq!(ip.version(), 4);
        assert!(ip.header_len() >= 20 && ip.header().len() == ip.header_len());
        assert_eq!(ip.options().len(), ip.header_len() - 20);
        assert_eq!(ip.payload().len(), usize::from(ip.total_len()) - ip.header_len());
        if let Ok(icmp) = Icmpv4Message::new_checked(ip.payload()) {
            let _ = (icmp.msg_type(), icmp.msg_code(), icmp.checksum(), icmp.verify_checksum());
            let _ = (icmp.echo_ident(), icmp.echo_seq_no());
            assert_eq!(icmp.data().len(), ip.payload().len() - 8);
        }
    }
    if let Ok(ip) = Ipv6Packet::new_checked(bytes) {
        let _ = (ip.next_header(), ip.hop_limit(), ip.src_addr(), ip.dst_addr());
        assert_eq!(ip.payload().len(), usize::from(ip.payload_len()));
        let _ = (ip.traffic_class(), ip.flow_label());
        if let Ok((_, upper)) = ip.upper_layer() {
            if let Ok(icmp) = Icmpv6Message::new_checked(upper) {
                let _ = (icmp.msg_type(), icmp.msg_code(), icmp.echo_ident(), icmp.echo_seq_no());
                let _ = icmp.verify_checksum(ip.src_addr(), ip.dst_addr());
            }
            if let Ok(nd) = NdiscMessage::new_checked(upper) {
                let _ = (nd.flags(), nd.target(), nd.source_ll_addr(), nd.options().count());
            }
        }
    }
    // Unchecked views over buffers of any length, short ones included: reads fall back
    // to zeroes and writes to nothing, never a panic.
    let mut copy = bytes.to_vec();
    let ip = Ipv4Packet::new_unchecked(&copy[..]);
    let _ = (ip.header_len(), ip.total_len(), ip.header(), ip.options(), ip.payload());
    let _ = (ip.verify_checksum(), ip.src_addr());
    let icmp = Icmpv4Message::new_unchecked(&copy[..]);
    let _ = (icmp.msg_type(), icmp.data(), icmp.verify_checksum());
    let _ = ArpRepr::parse(&ArpPacket::new_unchecked(&copy[..]));
    let mut ip = Ipv4Packet::new_unchecked(&mut copy[..]);
    ip.fill_checksum();
    let _ = ip.payload_mut();
    let mut eth = EthernetFrame::new_unchecked(&mut copy[..]);
    eth.set_dst_addr(US.mac);
    let _ = eth.payload_mut();
    Icmpv4Message::new_unchecked(&mut copy[..]).fill_checksum();
}

/// A formatter target that keeps nothing: only the formatting code runs.
struct Discard;

impl fmt::Write for Discard {
    fn write_str(&mut self, _: &str) -> fmt::Result {
        Ok(())
    }
}
