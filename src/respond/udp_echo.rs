//! UDP echo (RFC 862), chapter 10's first step: a datagram to port 7 comes back to its
//! sender with the same data. `respond` has already checked the Ethernet and IPv4 layers
//! (our MAC, our address, a unicast source, no fragment, no source route), so a
//! broadcast or multicast echo request never reaches this code: it would make us an
//! amplifier, as a broadcast ping would.

use super::ipv4::reply_header;
use super::{DropReason, Host, Idents, Outcome, Reply, start_frame};
use crate::wire::ethernet::{self, EtherType, EthernetFrame, EthernetRepr};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use crate::wire::udp::{self, UdpPacket, UdpRepr};
use crate::wire::{self};

// ANCHOR: ports
/// The echo service's port (RFC 862).
pub const ECHO_PORT: u16 = 7;

/// Source ports an echo reply must never go to: 0 (no port at all) and the old "small
/// services" that answer any datagram, echo itself, daytime (13), quote of the day
/// (17), chargen (19) and time (37). Two of them answering each other loop for ever.
const LOOPING_PORTS: [u16; 6] = [0, ECHO_PORT, 13, 17, 19, 37];
// ANCHOR_END: ports

// ANCHOR: udp_echo
/// Answers a UDP datagram to port 7 with the same data, back to the port it came from.
pub(super) fn reply(
    host: &Host,
    idents: &mut Idents,
    eth: &EthernetFrame<&[u8]>,
    ip: &Ipv4Packet<&[u8]>,
    out: &mut [u8],
) -> Outcome {
    let request = UdpPacket::new_checked(ip.payload()).map_err(|err| match err {
        wire::Error::Truncated => DropReason::Truncated,
        _ => DropReason::UdpMalformed,
    })?;
    if !request.verify_checksum(ip.src_addr(), ip.dst_addr()) {
        return Err(DropReason::UdpBadChecksum);
    }
    if request.dst_port() != ECHO_PORT {
        return Err(DropReason::UdpClosedPort);
    }
    if LOOPING_PORTS.contains(&request.src_port()) {
        return Err(DropReason::UdpLoopPort);
    }

    let data = request.payload();
    let udp_len = udp::HEADER_LEN + data.len();
    let len = ethernet::HEADER_LEN + Ipv4Repr::HEADER_LEN + udp_len;
    let header =
        EthernetRepr { dst_addr: eth.src_addr(), src_addr: host.mac, ethertype: EtherType::Ipv4 };
    let mut frame = start_frame(out, len, header)?;
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    reply_header(host, idents, ip, IpProtocol::Udp, ip.tos(), udp_len)
        .emit(&mut packet)
        .map_err(|_| DropReason::NoRoom)?;
    let mut reply = UdpPacket::new_unchecked(packet.payload_mut());
    UdpRepr { src_port: ECHO_PORT, dst_port: request.src_port(), payload_len: data.len() }
        .emit(&mut reply)
        .map_err(|_| DropReason::NoRoom)?;
    reply.payload_mut().copy_from_slice(data);
    // Always a checksum, even when the request came without one: Linux sends one too.
    reply.fill_checksum(host.ip, ip.src_addr());
    Ok(Reply::UdpEcho(len))
}
// ANCHOR_END: udp_echo

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::respond::Services;
    use crate::respond::testing::*;
    use crate::wire::fixtures::fixture;

    /// Changes the UDP datagram of a frame (no IPv4 options), then fixes its checksum.
    fn with_udp(frame: &[u8], change: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let mut f = frame.to_vec();
        change(&mut f[34..]);
        let src = Ipv4Addr::new(f[26], f[27], f[28], f[29]);
        let dst = Ipv4Addr::new(f[30], f[31], f[32], f[33]);
        UdpPacket::new_unchecked(&mut f[34..]).fill_checksum(src, dst);
        f
    }

    #[test]
    fn echoes_the_kernels_datagrams_of_every_size() {
        for request in [
            fixture!("udp_echo_request_0"),
            fixture!("udp_echo_request_5"),
            fixture!("udp_echo_request_1472"),
        ] {
            let reply = reply_with(Services::WITH_UDP, &request).unwrap();
            assert_eq!(reply.len(), request.len());
            // Ethernet addresses swapped, IPv4 addresses swapped, ports swapped.
            assert_eq!((&reply[0..6], &reply[6..12]), (&request[6..12], &request[0..6]));
            assert_eq!((&reply[26..30], &reply[30..34]), (&request[30..34], &request[26..30]));
            assert_eq!((&reply[34..36], &reply[36..38]), (&request[36..38], &request[34..36]));
            assert_eq!(reply[38..40], request[38..40], "the same UDP length");
            assert_eq!(reply[42..], request[42..], "the same data");
            let ip = Ipv4Packet::new_checked(&reply[14..]).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(ip.protocol(), IpProtocol::Udp);
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert_ne!(udp.checksum(), 0);
            assert!(udp.verify_checksum(US.ip, Ipv4Addr::new(172, 16, 1, 1)));
        }
    }

    #[test]
    fn the_reply_checksum_is_the_one_the_kernel_would_compute() {
        // The datagram back is the request's with addresses and ports swapped: both are
        // sums of the same words, so the one's complement sum, and the checksum, agree
        // with the kernel's for the request.
        let request = fixture!("udp_echo_request_5");
        let reply = reply_with(Services::WITH_UDP, &request).unwrap();
        assert_eq!(reply[40..42], request[40..42]);
    }

    #[test]
    fn without_udp_echo_udp_is_another_protocol() {
        let request = fixture!("udp_echo_request_5");
        assert_eq!(reply_with(Services::ALL, &request), Err(DropReason::OtherProtocol));
    }

    #[test]
    fn ignores_what_it_must() {
        let ping = fixture!("udp_echo_request_5");
        let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
            ("broadcast destination", fixture!("udp_echo_broadcast"), DropReason::NotOurMac),
            (
                "damaged data",
                {
                    let mut f = ping.clone();
                    f[46] ^= 1;
                    f
                },
                DropReason::UdpBadChecksum,
            ),
            (
                "closed port",
                with_udp(&ping, |u| u[2..4].copy_from_slice(&9u16.to_be_bytes())),
                DropReason::UdpClosedPort,
            ),
            ("from port 0", with_udp(&ping, |u| u[0..2].fill(0)), DropReason::UdpLoopPort),
            (
                "from echo",
                with_udp(&ping, |u| u[0..2].copy_from_slice(&7u16.to_be_bytes())),
                DropReason::UdpLoopPort,
            ),
            (
                "from chargen",
                with_udp(&ping, |u| u[0..2].copy_from_slice(&19u16.to_be_bytes())),
                DropReason::UdpLoopPort,
            ),
            (
                "length 7",
                with_udp(&ping, |u| u[4..6].copy_from_slice(&7u16.to_be_bytes())),
                DropReason::UdpMalformed,
            ),
            (
                "length past the end",
                with_udp(&ping, |u| u[4..6].copy_from_slice(&14u16.to_be_bytes())),
                DropReason::Truncated,
            ),
        ];
        for (what, frame, reason) in cases {
            assert_eq!(reply_with(Services::WITH_UDP, &frame), Err(reason), "{what}");
        }
        // The subnet broadcast with our MAC still is not our address.
        let mut to_bcast = fixture!("udp_echo_broadcast");
        to_bcast[..6].copy_from_slice(&US.mac.0);
        assert_eq!(reply_with(Services::WITH_UDP, &to_bcast), Err(DropReason::Ipv4NotForUs));
    }

    #[test]
    fn a_request_without_checksum_gets_one() {
        let mut request = fixture!("udp_echo_request_5");
        request[40..42].fill(0);
        let reply = reply_with(Services::WITH_UDP, &request).unwrap();
        assert_eq!(reply[40..42], fixture!("udp_echo_request_5")[40..42]);
    }

    #[test]
    fn ethernet_padding_and_bytes_past_the_udp_length_are_not_echoed() {
        // A 5-byte datagram padded to Ethernet's 60 bytes, as a NIC would.
        let mut request = fixture!("udp_echo_request_5");
        request.resize(60, 0);
        let reply = reply_with(Services::WITH_UDP, &request).unwrap();
        assert_eq!(reply.len(), 47);
    }

    #[test]
    fn every_truncation_is_dropped() {
        let request = fixture!("udp_echo_request_5");
        for len in 0..request.len() {
            assert!(reply_with(Services::WITH_UDP, &request[..len]).is_err(), "{len} bytes");
        }
    }
}
