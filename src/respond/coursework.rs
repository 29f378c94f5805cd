//! The checks `cargo lab check` runs (tier a): one module per chapter, each test one
//! rule of the chapter, on frames captured from the kernel (tests/fixtures/README.md says
//! how). The checker maps each test's name to a line in the student's terms and the
//! section of the book to read (lab/src/check.rs); keep the two lists in step.
//!
//! Each chapter's tests call only that chapter's code and what earlier chapters wrote:
//! chapter 4 calls the echo reply directly, not through chapter 5's validation.

use super::testing::*;
use super::{DropReason, Idents, Services, echo::echo_reply, wire_drop};
use crate::wire::fixtures::fixture;
use crate::wire::ipv4_options::Ipv4Options;
use crate::wire::{EthernetFrame, Icmpv4Message, Ipv4Packet};

/// The reply chapter 4's echo code writes for `frame`, cut to its length, in a buffer
/// pre-filled with 0xa5 so a field left unwritten shows.
fn echo(frame: &[u8]) -> Result<Vec<u8>, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(wire_drop)?;
    let ip = Ipv4Packet::new_checked(eth.payload()).map_err(wire_drop)?;
    let options = Ipv4Options::parse(ip.header()).map_err(|_| DropReason::Ipv4Malformed)?;
    let mut out = vec![0xa5u8; 65536];
    let reply = echo_reply(&US, &mut Idents::new(1), NOW, &eth, &ip, &options, &mut out)?;
    out.truncate(reply.len());
    Ok(out)
}

/// 60 bytes: an Ethernet header to us with `ethertype`, then zeroes.
fn frame_of_type(ethertype: [u8; 2]) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&US.mac.0);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&ethertype);
    f
}

mod ch2 {
    use super::*;
    use crate::show::{Dump, Summary};

    #[test]
    fn summary_names_a_runt() {
        let line = Summary(&[0u8; 10]).to_string();
        assert_eq!(line, "runt frame, 10 bytes (shorter than an Ethernet header)");
    }

    #[test]
    fn summary_names_an_unknown_ethertype() {
        let line = Summary(&frame_of_type([0x88, 0xb5])).to_string();
        assert_eq!(line, "EtherType 0x88b5, 60 bytes");
    }

    #[test]
    fn dump_labels_each_part_with_frame_offsets() {
        let dump = Dump(&frame_of_type([0x88, 0xb5])).to_string();
        let labels: Vec<&str> = dump.lines().filter(|l| l.starts_with("  ")).collect();
        assert_eq!(labels, ["  Ethernet header (14 bytes)", "  payload (46 bytes)"], "{dump}");
        // The payload's first line starts at the frame's offset 14 (0xe), not at 0.
        assert!(dump.lines().any(|l| l.starts_with("000e:")), "{dump}");
    }

    #[test]
    fn read_buffer_holds_a_full_frame() {
        // 1500 bytes of IP and a 14-byte Ethernet header: a shorter buffer cuts frames.
        // (black_box: a runtime check, so that a short buffer fails this test only.)
        let len = std::hint::black_box(crate::FRAME_BUFFER_LEN);
        assert!(len >= 1514, "{len} bytes");
    }
}

mod ch3 {
    use super::*;

    #[test]
    fn answers_arping_byte_for_byte() {
        // The kernel's own reply to the same arping, captured over a veth pair.
        let kernel = fixture!("kernel_arp_reply");
        Dialogue::new(Services::ARP).receive(&fixture!("arp_request_arping")).expect(&kernel[..42]);
    }

    #[test]
    fn answers_the_kernels_who_has() {
        let request = fixture!("arp_request_kernel");
        let ours = reply_with(Services::ARP, &request).expect("no reply");
        assert_eq!(ours[0..6], request[6..12], "Ethernet destination: the asker");
        assert_eq!(ours[6..12], US.mac.0, "Ethernet source: our MAC");
        assert_eq!(ours[22..28], US.mac.0, "ARP sender hardware address: our MAC");
        assert_eq!(ours[28..32], US.ip.octets(), "ARP sender protocol address: our IP");
        assert_eq!(ours[32..42], request[22..32], "ARP target: the asker's MAC and IP");
    }

    #[test]
    fn ignores_who_has_for_other_addresses() {
        let request = patch(&fixture!("arp_request_arping"), 38, &[172, 16, 1, 9]);
        Dialogue::new(Services::ARP).receive(&request).expect_nothing();
    }

    #[test]
    fn ignores_arp_replies() {
        let reply = patch(&fixture!("arp_request_arping"), 20, &[0, 2]);
        Dialogue::new(Services::ARP).receive(&reply).expect_nothing();
    }

    #[test]
    fn arp_view_checks_length_and_types() {
        use crate::wire::{ArpPacket, Error};
        let frame = fixture!("arp_request_arping");
        let arp = &frame[14..42];
        assert!(ArpPacket::new_checked(arp).is_ok());
        for len in 0..28 {
            assert_eq!(ArpPacket::new_checked(&arp[..len]).err(), Some(Error::Truncated));
        }
        let other_hardware = patch(arp, 1, &[6]);
        assert_eq!(ArpPacket::new_checked(&other_hardware[..]).err(), Some(Error::Unsupported));
        let other_protocol = patch(arp, 2, &[0x86, 0xdd]);
        assert_eq!(ArpPacket::new_checked(&other_protocol[..]).err(), Some(Error::Unsupported));
    }

    #[test]
    fn drops_every_truncated_request() {
        let request = fixture!("arp_request_arping");
        for len in 14..42 {
            assert!(reply_with(Services::ARP, &request[..len]).is_err(), "{len} bytes");
        }
    }
}

mod ch4 {
    use super::*;
    use crate::wire::checksum;

    /// The textbook sum of RFC 1071, 16 bits at a time: the oracle.
    fn oracle(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            acc += u32::from(pair[0]) << 8 | pair.get(1).map_or(0, |b| u32::from(*b));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn checksum_agrees_with_rfc_1071() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        assert_eq!(checksum::checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0x220d);
        // Every length from 0 to 200, odd ones too, of bytes from a fixed generator.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let data: Vec<u8> = (0..200)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for len in 0..data.len() {
            assert_eq!(checksum::checksum(&data[..len]), oracle(&data[..len]), "{len} bytes");
        }
        assert_eq!(checksum::checksum(&[0xff; 3]), oracle(&[0xff; 3]));
    }

    #[test]
    fn ipv4_view_rejects_what_cannot_be_read() {
        let frame = fixture!("icmp_echo_request_56");
        let ip = &frame[14..];
        assert!(Ipv4Packet::new_checked(ip).is_ok());
        for len in 0..20 {
            assert!(Ipv4Packet::new_checked(&ip[..len]).is_err(), "{len} bytes");
        }
        assert!(Ipv4Packet::new_checked(&patch(ip, 0, &[0x65])[..]).is_err(), "version 6");
        assert!(Ipv4Packet::new_checked(&patch(ip, 0, &[0x44])[..]).is_err(), "IHL 4");
        assert!(Ipv4Packet::new_checked(&patch(ip, 2, &[0x10, 0])[..]).is_err(), "total 4096");
        assert!(Ipv4Packet::new_checked(&patch(ip, 2, &[0, 19])[..]).is_err(), "total 19");
        assert!(Ipv4Packet::new_checked(&ip[..ip.len() - 1]).is_err(), "cut short");
    }

    #[test]
    fn ipv4_payload_stops_at_total_length() {
        let mut frame = fixture!("icmp_echo_request_0");
        let icmp = frame.len() - 34;
        frame.resize(60, 0xee);
        let ip = Ipv4Packet::new_checked(&frame[14..]).expect("a valid packet");
        assert_eq!(ip.payload().len(), icmp, "the padding is not payload");
        let frame = fixture!("icmp_echo_request_options");
        let ip = Ipv4Packet::new_checked(&frame[14..]).expect("a valid packet");
        assert_eq!(ip.payload(), &frame[14 + 60..], "the payload starts after the options");
    }

    #[test]
    fn ipv4_header_checksum_verifies_and_fills() {
        let frame = fixture!("icmp_echo_request_options");
        let ip = Ipv4Packet::new_checked(&frame[14..]).expect("a valid packet");
        assert!(ip.verify_checksum(), "the kernel's own header");
        for at in [1, 8, 19, 40, 59] {
            let damaged = flip(&frame[14..], at);
            let ip = Ipv4Packet::new_checked(&damaged[..]).expect("a valid packet");
            assert!(!ip.verify_checksum(), "byte {at} of the header damaged");
        }
        let mut zeroed = patch(&frame[14..], 10, &[0xa5, 0xa5]);
        Ipv4Packet::new_unchecked(&mut zeroed[..]).fill_checksum();
        assert_eq!(zeroed[10..12], frame[24..26], "the kernel's checksum");
    }

    #[test]
    fn icmp_checksum_covers_every_byte() {
        // ping -s 1: a 9-byte message, odd.
        let frame = fixture!("icmp_echo_request_1");
        let icmp = &frame[34..43];
        assert!(Icmpv4Message::new_checked(icmp).expect("8 bytes or more").verify_checksum());
        for at in [0, 4, 8] {
            let damaged = flip(icmp, at);
            assert!(!Icmpv4Message::new_checked(&damaged[..]).unwrap().verify_checksum(), "{at}");
        }
        let mut zeroed = patch(icmp, 2, &[0xa5, 0xa5]);
        Icmpv4Message::new_unchecked(&mut zeroed[..]).fill_checksum();
        assert_eq!(zeroed[2..4], icmp[2..4], "the kernel's checksum");
        assert!(Icmpv4Message::new_checked(&icmp[..7]).is_err(), "7 bytes");
    }

    #[test]
    fn echo_reply_matches_the_kernels() {
        // The kernel's reply to the same request, captured over a veth pair: ours differs
        // only in the identification and so the header checksum.
        let ours = echo(&fixture!("kernel_echo_request_56_veth")).expect("no reply");
        let kernel = fixture!("kernel_echo_reply_56");
        let differs = differences(&ours, &kernel);
        assert!(differs.iter().all(|i| [18, 19, 24, 25].contains(i)), "{differs:?}");
        let ip = Ipv4Packet::new_checked(&ours[14..]).expect("a valid packet");
        assert!(ip.verify_checksum(), "the reply's IPv4 header checksum");
    }

    #[test]
    fn echo_reply_of_odd_length_verifies() {
        let ours = echo(&fixture!("icmp_echo_request_1")).expect("no reply to ping -s 1");
        let icmp = Icmpv4Message::new_checked(&ours[34..]).expect("8 bytes or more");
        assert_eq!(icmp.as_bytes().len(), 9);
        assert!(icmp.verify_checksum(), "the reply's ICMP checksum");
    }

    #[test]
    fn echo_reply_after_ip_options() {
        let request = fixture!("icmp_echo_request_options");
        let ours = echo(&request).expect("no reply to ping -R");
        let ip = Ipv4Packet::new_checked(&ours[14..]).expect("a valid reply");
        let icmp = Icmpv4Message::new_checked(ip.payload()).expect("an ICMP message");
        assert_eq!(icmp.msg_type(), crate::wire::Icmpv4Type::EchoReply);
        assert_eq!(icmp.data(), &request[14 + 60 + 8..], "the request's data");
        assert!(icmp.verify_checksum());
    }

    #[test]
    fn echo_reply_leaves_the_padding_out() {
        let mut request = fixture!("icmp_echo_request_0");
        let unpadded = echo(&request).expect("no reply to ping -s 0");
        request.resize(60, 0xee);
        assert_eq!(echo(&request).expect("no reply to a padded frame"), unpadded);
    }

    #[test]
    fn echo_reply_goes_back_to_the_sender() {
        let request = fixture!("icmp_echo_request_56");
        let ours = echo(&request).expect("no reply");
        assert_eq!(ours[0..6], request[6..12], "Ethernet destination: the sender");
        assert_eq!(ours[6..12], US.mac.0, "Ethernet source: our MAC");
        assert_eq!(ours[26..30], US.ip.octets(), "IPv4 source: our address");
        assert_eq!(ours[30..34], request[26..30], "IPv4 destination: the sender");
    }

    #[test]
    fn ignores_echo_replies() {
        let reply = with_icmp(&fixture!("icmp_echo_request_56"), |icmp| icmp[0] = 0);
        assert!(echo(&reply).is_err());
        // Our own reply, back to us: no ping-pong.
        let request = fixture!("icmp_echo_request_56");
        let mut ours = echo(&request).expect("no reply");
        ours[0..6].copy_from_slice(&US.mac.0);
        ours[6..12].copy_from_slice(&request[6..12]);
        assert!(echo(&ours).is_err(), "our reply, fed back, was answered");
    }

    #[test]
    fn ignores_a_damaged_icmp_message() {
        let request = fixture!("icmp_echo_request_56");
        let last = request.len() - 1;
        assert!(echo(&flip(&request, last)).is_err(), "last data byte damaged");
        assert!(echo(&flip(&request, 38)).is_err(), "identifier damaged");
    }
}

mod ch5 {
    use super::*;
    use std::net::Ipv4Addr;

    fn reply(frame: &[u8]) -> Result<Vec<u8>, DropReason> {
        reply_with(Services::IPV4, frame)
    }

    #[test]
    fn answers_ping() {
        let ours = reply(&fixture!("icmp_echo_request_56")).expect("no reply to ping");
        assert_eq!(ours.len(), fixture!("icmp_echo_request_56").len());
    }

    #[test]
    fn ignores_a_damaged_ipv4_header() {
        // The TTL changed, the header checksum not: damaged on the way.
        let request = flip(&fixture!("icmp_echo_request_56"), 22);
        assert_eq!(reply(&request), Err(DropReason::Ipv4BadChecksum));
    }

    #[test]
    fn answers_a_dialogue_of_arp_then_ping() {
        // The kernel asks who has 172.16.1.2, then pings: both answered, in turn.
        let mut dialogue = Dialogue::new(Services::IPV4);
        dialogue
            .receive(&fixture!("arp_request_arping"))
            .expect(&fixture!("kernel_arp_reply")[..42]);
        let reply = dialogue.receive(&fixture!("icmp_echo_request_56")).reply_bytes();
        assert_eq!(reply[34], 0, "an echo reply");
        dialogue.receive(&flip(&fixture!("icmp_echo_request_56"), 22)).expect_nothing();
    }

    #[test]
    fn ignores_ping_for_other_addresses() {
        let request = with_ip(&fixture!("icmp_echo_request_56"), |ip| {
            ip[16..20].copy_from_slice(&[172, 16, 1, 9])
        });
        assert!(reply(&request).is_err());
    }

    #[test]
    fn ignores_impossible_sources() {
        for src in [
            Ipv4Addr::BROADCAST,
            Ipv4Addr::new(224, 0, 0, 1),
            Ipv4Addr::new(0, 1, 2, 3),
            Ipv4Addr::LOCALHOST,
            US.ip,
        ] {
            let request = with_ip(&fixture!("icmp_echo_request_56"), |ip| {
                ip[12..16].copy_from_slice(&src.octets());
            });
            assert!(reply(&request).is_err(), "source {src}");
        }
    }

    #[test]
    fn ignores_frames_for_other_macs() {
        let request = patch(&fixture!("icmp_echo_request_56"), 0, &[0x02, 0, 0, 0, 0, 0x09]);
        assert_eq!(reply(&request), Err(DropReason::NotOurMac));
    }

    #[test]
    fn drops_every_truncated_ping() {
        let request = fixture!("icmp_echo_request_56");
        for len in 14..request.len() {
            assert!(reply(&request[..len]).is_err(), "{len} bytes");
        }
    }
}
