//! libFuzzer target for chapter 10: UDP echo, the DHCP server and their parsers.
//!
//! The first input byte steers the run; the rest is the frame:
//! - bit 0: repair the IPv4 header checksum, bit 1: repair the UDP checksum, so that the
//!   fuzzer reaches the checks behind them;
//! - bit 2: the server has first lent 172.16.1.100 to udhcpc (the captured exchange), so
//!   renewals, releases and NAKs are reached too.
//!
//! A finding is a panic anywhere, a UDP echo outcome the oracle rejects
//! (`testkit/src/oracle/udp.rs`: the exact reply RFC 768/862 call for, to exactly the frames
//! that deserve one), a DHCP reply that is not a well-formed OFFER, ACK or NAK for the
//! request, or a lease table holding one address twice or one outside the pool.
//!
//! Run: `cargo lab fuzz --target udp_dhcp --seconds 300` (it seeds the corpus with the
//! captured frames).

#![no_main]

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use tapbook::dhcp::{Dhcp, DhcpConfig};
use tapbook::respond::{Host, Idents, Services, Timestamp, respond};
use tapbook::wire::dhcp::{DhcpPacket, DhcpRequest};
use tapbook::wire::udp::UdpPacket;
use tapbook::wire::MacAddr;

use tapbook_testkit::oracle;

const US: Host = Host {
    ip: Ipv4Addr::new(oracle::OUR_IP[0], oracle::OUR_IP[1], oracle::OUR_IP[2], oracle::OUR_IP[3]),
    ip6: tapbook::cli::DEFAULT_IP6,
    mac: MacAddr(oracle::OUR_MAC),
};

/// A fixture's bytes (the `#` lines are comments).
fn fixture(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .map(|b| u8::from_str_radix(b, 16).expect("hex"))
        .collect();
    digits
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, frame)) = data.split_first() else { return };
    let mut frame = frame.to_vec();
    repair(&mut frame, control & 1 != 0, control & 2 != 0);

    let mut out = vec![0xa5u8; frame.len()];
    let now = 4_321;
    let outcome = respond(&US, Services::WITH_UDP, &mut Idents::new(1), Timestamp(now), &frame, &mut out);
    let reply = outcome.ok().map(|r| out.get(..r.len()).expect("a reply fits the buffer"));
    if let Err(why) = oracle::udp::check_with_udp(&frame, reply, oracle::Clock::At(now)) {
        panic!("outcome {outcome:?}: {why}");
    }

    let mut dhcp = Dhcp::new(DhcpConfig::lab(US));
    let start = Instant::now();
    let mut idents = Idents::new(2);
    let mut out = vec![0xa5u8; 1514];
    if control & 4 != 0 {
        for text in [
            include_str!("../../tests/fixtures/dhcp_exchange_discover.hex"),
            include_str!("../../tests/fixtures/dhcp_request_selecting.hex"),
        ] {
            let _ = dhcp.handle(start, &mut idents, &fixture(text), &mut out);
        }
    }
    out.fill(0xa5);
    match dhcp.handle(start, &mut idents, &frame, &mut out) {
        Some(Ok(handled)) => {
            if let Some(reply) = handled.reply {
                if let Err(why) = oracle::udp::check_dhcp_reply(&frame, &out[..reply.len()]) {
                    panic!("{handled:?}: {why}");
                }
            }
        }
        other => assert!(out.iter().all(|&b| b == 0xa5), "{other:?} but wrote"),
    }
    let leases = dhcp.leases();
    let ips: HashSet<Ipv4Addr> = leases.iter().map(|l| l.ip).collect();
    assert_eq!(ips.len(), leases.len(), "{leases:?}");

    parsers(&frame);
    for skip in [14, 34, 42] {
        if let Some(rest) = frame.get(skip..) {
            parsers(rest);
        }
    }
});

/// The UDP and DHCP views over any bytes: none may panic, and what `new_checked`
/// promises must hold.
fn parsers(bytes: &[u8]) {
    if let Ok(udp) = UdpPacket::new_checked(bytes) {
        let _ = (udp.src_port(), udp.dst_port(), udp.checksum());
        let _ = udp.verify_checksum(US.ip, Ipv4Addr::BROADCAST);
        assert_eq!(udp.payload().len() + 8, usize::from(udp.len()));
        assert!(usize::from(udp.len()) <= bytes.len());
    }
    let udp = UdpPacket::new_unchecked(bytes);
    let _ = (udp.payload(), udp.as_bytes(), udp.verify_checksum(US.ip, US.ip));
    if let Ok(msg) = DhcpPacket::new_checked(bytes) {
        let _ = (msg.xid(), msg.flags(), msg.ciaddr(), msg.yiaddr(), msg.client_mac());
        for option in msg.options().take(300) {
            let _ = option;
        }
        let _ = DhcpRequest::parse(&msg);
    }
    let msg = DhcpPacket::new_unchecked(bytes);
    let _ = (msg.options().count(), msg.giaddr(), msg.magic());
    let mut copy = bytes.to_vec();
    UdpPacket::new_unchecked(&mut copy[..]).fill_checksum(US.ip, US.ip);
    let mut msg = DhcpPacket::new_unchecked(&mut copy[..]);
    msg.clear_header();
    msg.set_xid(1);
    let _ = msg.options_mut();
}

/// Repairs the IPv4 header checksum and the UDP checksum where the lengths let us.
fn repair(frame: &mut [u8], ip: bool, udp: bool) {
    let Some(&ver_ihl) = frame.get(14) else { return };
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    if ihl < 20 || frame.len() < 14 + ihl {
        return;
    }
    if udp && frame.len() >= 14 + ihl + 8 {
        let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
        let end = (14 + total).min(frame.len());
        let ulen = usize::from(u16::from_be_bytes([frame[14 + ihl + 4], frame[14 + ihl + 5]]));
        if end >= 14 + ihl + 8 && ulen >= 8 && 14 + ihl + ulen <= end {
            let (src, dst) = (frame[26..30].to_vec(), frame[30..34].to_vec());
            let datagram = &mut frame[14 + ihl..14 + ihl + ulen];
            datagram[6..8].fill(0);
            let sum = oracle::udp::udp_checksum(&src, &dst, datagram);
            datagram[6..8].copy_from_slice(&sum.to_be_bytes());
        }
    }
    if ip {
        let header = &mut frame[14..14 + ihl];
        header[10..12].fill(0);
        let sum = oracle::checksum(header);
        header[10..12].copy_from_slice(&sum.to_be_bytes());
    }
}
