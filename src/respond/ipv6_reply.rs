//! IPv6 for the responder (chapter 8): neighbour discovery (RFC 4861), so the kernel can
//! find our MAC, and ICMPv6 echo (RFC 4443), so `ping -6` works. The same rules as for
//! IPv4: every length and checksum verified before a field is trusted, no reply to or
//! from a group address, answers only for our own addresses.

use std::net::Ipv6Addr;

use super::{DropReason, Host, Outcome, Reply, start_frame};
use crate::wire::ethernet::{self, EtherType, EthernetFrame, EthernetRepr, MacAddr};
use crate::wire::icmpv6::{self, Icmpv6Message};
use crate::wire::ipv6::{self, Extension, Ipv6Packet, Ipv6Repr};
use crate::wire::ndisc::{self, NdiscMessage};
use crate::wire::{self, checksum};

/// The hop limit of our echo replies: Linux's default (`net.ipv6.conf.*.hop_limit`).
pub const REPLY_HOP_LIMIT: u8 = 64;

/// Neighbour discovery messages travel with hop limit 255, and are accepted only with it
/// (RFC 4861 7.1.1): no router decremented it, so the sender is on our link.
pub const NDISC_HOP_LIMIT: u8 = 255;

/// An IPv6 packet for us and the ICMPv6 message it carries.
type ForUs<'a> = (Ipv6Packet<&'a [u8]>, Icmpv6Message<&'a [u8]>);

// ANCHOR: ipv6_for_us
/// Checks an IPv6 packet and returns it with its ICMPv6 message if it is for us: to one
/// of our addresses, or to a group we are in (all-nodes, our solicited-node groups) with
/// the matching multicast MAC; from an address a reply may go to (or from `::`, which
/// only a duplicate address probe may use: see [`neighbor_advert`]); no extension header
/// we would have to act on; ICMPv6 with a checksum that verifies.
fn ipv6_for_us<'a>(
    host: &Host,
    dst_mac: MacAddr,
    bytes: &'a [u8],
) -> Result<ForUs<'a>, DropReason> {
    let ip = Ipv6Packet::new_checked(bytes).map_err(|err| match err {
        wire::Error::Truncated => DropReason::Truncated,
        _ => DropReason::Ipv6Malformed,
    })?;
    let dst = ip.dst_addr();
    if dst.is_multicast() {
        if dst_mac.0 != ipv6::multicast_mac(dst) {
            return Err(DropReason::NotOurMac);
        }
        if !host.in_group(dst) {
            return Err(DropReason::Ipv6NotForUs);
        }
    } else {
        if dst_mac != host.mac {
            return Err(DropReason::NotOurMac);
        }
        if !host.is_ours(dst) {
            return Err(DropReason::Ipv6NotForUs);
        }
    }
    let src = ip.src_addr();
    if src.is_multicast() || src.is_loopback() || host.is_ours(src) {
        return Err(DropReason::Ipv6BadSource);
    }
    // The payload, cut by the payload length that new_checked found within the buffer.
    let payload = bytes.get(ipv6::HEADER_LEN..ipv6::HEADER_LEN + usize::from(ip.payload_len()));
    let payload = payload.ok_or(DropReason::Truncated)?;
    let (next_header, upper) =
        ipv6::walk_extensions(ip.next_header(), payload).map_err(|ext| match ext {
            Extension::Truncated => DropReason::Truncated,
            Extension::Fragment => DropReason::Ipv6Fragment,
            Extension::HopByHopNotFirst | Extension::Routing | Extension::UnknownOption => {
                DropReason::Ipv6Extension
            }
        })?;
    if next_header != ipv6::NEXT_HEADER_ICMPV6 {
        return Err(DropReason::OtherProtocol);
    }
    let icmp = Icmpv6Message::new_checked(upper).map_err(|_| DropReason::Truncated)?;
    if !icmp.verify_checksum(src, dst) {
        return Err(DropReason::Icmpv6BadChecksum);
    }
    Ok((ip, icmp))
}
// ANCHOR_END: ipv6_for_us

// ANCHOR: ipv6_reply
/// Answers an IPv6 frame: a Neighbor Solicitation for one of our addresses with a Neighbor
/// Advertisement, an Echo Request to one of them with an Echo Reply.
pub(super) fn ipv6_reply(host: &Host, eth: &EthernetFrame<&[u8]>, out: &mut [u8]) -> Outcome {
    let (ip, icmp) = ipv6_for_us(host, eth.dst_addr(), eth.payload())?;
    match icmp.msg_type() {
        icmpv6::NEIGHBOR_SOLICITATION => neighbor_advert(host, eth, &ip, &icmp, out),
        icmpv6::ECHO_REQUEST if icmp.msg_code() == 0 => echo_reply(host, eth, &ip, &icmp, out),
        _ => Err(DropReason::Icmpv6NotAnswered),
    }
}
// ANCHOR_END: ipv6_reply

// ANCHOR: neighbor_advert
/// Answers a Neighbor Solicitation for one of our addresses, after every validity check
/// of RFC 4861 7.1.1, as Linux's `ndisc_recv_ns` does:
/// - to a solicitation sent to a multicast group: Solicited and Override set, and our MAC
///   in a target link-layer address option (the asker does not know it yet);
/// - to a unicast one (the kernel checking we are still reachable): Solicited only, no
///   option (it knows our MAC; RFC 4861 7.2.4 allows leaving it out);
/// - to a duplicate address probe (source `::`, RFC 4862): we already hold the address, so
///   we defend it with an advertisement to all nodes (ff02::1), Override set, Solicited
///   clear (there is nobody to answer yet).
///
/// The reply is as long as the solicitation, or 8 bytes longer where a solicitation with
/// no option asks for an answer that must carry ours: the only reply that may be longer
/// than its request, by one option, once per solicitation.
fn neighbor_advert(
    host: &Host,
    eth: &EthernetFrame<&[u8]>,
    ip: &Ipv6Packet<&[u8]>,
    icmp: &Icmpv6Message<&[u8]>,
    out: &mut [u8],
) -> Outcome {
    if ip.hop_limit() != NDISC_HOP_LIMIT {
        return Err(DropReason::NdiscHopLimit);
    }
    if icmp.msg_code() != 0 {
        return Err(DropReason::NdiscBadCode);
    }
    let ns = NdiscMessage::new_checked(icmp.as_bytes()).map_err(|_| DropReason::NdiscTooShort)?;
    let target = ns.target();
    if target.is_multicast() {
        return Err(DropReason::NdiscMulticastTarget);
    }
    let source_ll_addr = ns.source_ll_addr().map_err(|_| DropReason::NdiscBadOption)?;
    let probe = ip.src_addr().is_unspecified();
    if probe && (!ipv6::is_solicited_node(ip.dst_addr()) || source_ll_addr.is_some()) {
        return Err(DropReason::NdiscBadProbe);
    }
    if !host.is_ours(target) {
        return Err(DropReason::NdiscNotForUs);
    }

    let to_group = ip.dst_addr().is_multicast();
    let (dst_mac, dst, flags) = if probe {
        (MacAddr(ipv6::multicast_mac(ipv6::ALL_NODES)), ipv6::ALL_NODES, ndisc::FLAG_OVERRIDE)
    } else if to_group {
        (eth.src_addr(), ip.src_addr(), ndisc::FLAG_SOLICITED | ndisc::FLAG_OVERRIDE)
    } else {
        (eth.src_addr(), ip.src_addr(), ndisc::FLAG_SOLICITED)
    };
    let with_option = probe || to_group;
    let icmp_len = ndisc::MESSAGE_LEN + if with_option { ndisc::LL_ADDR_OPTION_LEN } else { 0 };
    let payload = start_reply(host, dst_mac, target, dst, 0, NDISC_HOP_LIMIT, icmp_len, out)?;
    payload.fill(0);
    let mut na = NdiscMessage::new_unchecked(&mut *payload);
    na.set_flags(flags);
    na.set_target(target);
    if with_option {
        na.set_target_ll_addr(host.mac);
    }
    let mut message = Icmpv6Message::new_unchecked(payload);
    message.set_msg_type(icmpv6::NEIGHBOR_ADVERTISEMENT);
    message.fill_checksum(target, dst);
    Ok(Reply::NeighborAdvert(ethernet::HEADER_LEN + ipv6::HEADER_LEN + icmp_len))
}
// ANCHOR_END: neighbor_advert

// ANCHOR: echo_reply
/// Answers an Echo Request to one of our unicast addresses (RFC 4443 4.2) with the same
/// identifier, sequence number and data, from the address it was sent to, with the
/// request's traffic class as Linux does. Not one sent to a group: like a broadcast ping in
/// IPv4, a ping to ff02::1 would make every host answer one packet (Linux answers those,
/// unless `net.ipv6.icmp.echo_ignore_multicast` is set; we do not).
fn echo_reply(
    host: &Host,
    eth: &EthernetFrame<&[u8]>,
    ip: &Ipv6Packet<&[u8]>,
    request: &Icmpv6Message<&[u8]>,
    out: &mut [u8],
) -> Outcome {
    let (src, dst) = (ip.dst_addr(), ip.src_addr());
    if src.is_multicast() {
        return Err(DropReason::Icmpv6EchoToGroup);
    }
    if dst.is_unspecified() {
        return Err(DropReason::Ipv6BadSource);
    }
    let icmp_len = request.as_bytes().len();
    let tc = ip.traffic_class();
    let payload = start_reply(host, eth.src_addr(), src, dst, tc, REPLY_HOP_LIMIT, icmp_len, out)?;
    payload.copy_from_slice(request.as_bytes());
    let mut reply = Icmpv6Message::new_unchecked(payload);
    reply.set_msg_type(icmpv6::ECHO_REPLY);
    // Swapping the addresses leaves the pseudo-header's sum as it was (the sum does not
    // care about order); only the type changed, 128 -> 129, so RFC 1624's update gives the
    // checksum without summing the data again. Where it gives 0x0000 we sum again, as for
    // IPv4 (chapter 4), so both ways always agree.
    let sum = checksum::update(request.checksum(), 0x8000, 0x8100);
    if sum == 0 {
        reply.fill_checksum(src, dst);
    } else {
        reply.set_checksum(sum);
    }
    Ok(Reply::Echo6(ethernet::HEADER_LEN + ipv6::HEADER_LEN + icmp_len))
}
// ANCHOR_END: echo_reply

/// Writes the Ethernet and IPv6 headers of a reply carrying `icmp_len` bytes of ICMPv6,
/// and returns the room for them.
#[allow(clippy::too_many_arguments)]
fn start_reply<'a>(
    host: &Host,
    dst_mac: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    traffic_class: u8,
    hop_limit: u8,
    icmp_len: usize,
    out: &'a mut [u8],
) -> Result<&'a mut [u8], DropReason> {
    let len = ethernet::HEADER_LEN + ipv6::HEADER_LEN + icmp_len;
    let header = EthernetRepr { dst_addr: dst_mac, src_addr: host.mac, ethertype: EtherType::Ipv6 };
    let frame = start_frame(out, len, header)?;
    let repr = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: ipv6::NEXT_HEADER_ICMPV6,
        traffic_class,
        hop_limit,
        payload_len: icmp_len,
    };
    let out = frame.into_inner();
    let packet = out.get_mut(ethernet::HEADER_LEN..).ok_or(DropReason::NoRoom)?;
    repr.emit(&mut Ipv6Packet::new_unchecked(&mut *packet)).map_err(|_| DropReason::NoRoom)?;
    packet.get_mut(ipv6::HEADER_LEN..).ok_or(DropReason::NoRoom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::respond::Services;
    use crate::respond::testing::*;
    use crate::wire::fixtures::fixture;

    // ANCHOR: as_linux_does
    #[test]
    fn answers_byte_for_byte_as_linux_does() {
        // Each request sent by the kernel of namespace A, and the reply the kernel of
        // namespace B (holding our addresses and MAC) sent back: tests/fixtures/
        // capture_ipv6.sh. B ran with net.ipv6.auto_flowlabels=0, so its flow labels are 0
        // like ours; every other byte is Linux's choice.
        for (request, kernel) in [
            (fixture!("ipv6_ns_multicast"), fixture!("kernel_na_solicited")),
            (fixture!("ipv6_ns_unicast"), fixture!("kernel_na_unicast")),
            (fixture!("ipv6_ns_dad"), fixture!("kernel_na_dad")),
            (fixture!("ipv6_echo_request_56"), fixture!("kernel_echo6_reply_56")),
            (fixture!("ipv6_echo_request_0"), fixture!("kernel_echo6_reply_0")),
            (fixture!("ipv6_echo_request_1452"), fixture!("kernel_echo6_reply_1452")),
            (fixture!("ipv6_echo_request_link_local"), fixture!("kernel_echo6_reply_link_local")),
        ] {
            let ours = reply_to(&request).unwrap();
            assert_eq!(hex::encode(&ours), hex::encode(&kernel), "{}", hex::encode(&request));
        }
    }
    // ANCHOR_END: as_linux_does

    #[test]
    fn an_echo_request_of_one_byte_is_answered() {
        let request = fixture!("ipv6_echo_request_1");
        let reply = reply_to(&request).unwrap();
        assert_eq!(reply.len(), 14 + 40 + 9);
        assert_eq!(reply[54], icmpv6::ECHO_REPLY);
        assert_eq!(reply[58..], request[58..], "identifier, sequence number and data");
        let ip = Ipv6Packet::new_checked(&reply[14..]).unwrap();
        let icmp = Icmpv6Message::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(ip.src_addr(), ip.dst_addr()));
    }

    #[test]
    fn a_jumbo_echo_request_is_answered_whole() {
        // ping -6 -s 8952 on an interface with MTU 9000: built from the captured 1452-byte
        // request by repeating its data, with the length and checksum to match.
        let small = fixture!("ipv6_echo_request_1452");
        let mut frame = small[..62].to_vec();
        frame.extend(small[62..].iter().cycle().take(8952));
        frame[18..20].copy_from_slice(&8960u16.to_be_bytes());
        let (src, dst) = {
            let ip = Ipv6Packet::new_checked(&frame[14..]).unwrap();
            (ip.src_addr(), ip.dst_addr())
        };
        Icmpv6Message::new_unchecked(&mut frame[54..]).fill_checksum(src, dst);
        assert_eq!(frame.len(), 9014);
        let reply = reply_to(&frame).unwrap();
        assert_eq!(reply.len(), 9014);
        assert_eq!(reply[58..], frame[58..]);
        let icmp = Icmpv6Message::new_checked(&reply[54..]).unwrap();
        assert!(icmp.verify_checksum(dst, src));
    }

    /// Changes a frame's IPv6 packet, then fixes the ICMPv6 checksum (the message starts
    /// right after the fixed header) so that only the change is tested.
    fn with_ip6(frame: &[u8], change: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let mut f = frame.to_vec();
        change(&mut f[14..]);
        let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
        let (src, dst, len) = (ip.src_addr(), ip.dst_addr(), usize::from(ip.payload_len()));
        Icmpv6Message::new_unchecked(&mut f[54..54 + len]).fill_checksum(src, dst);
        f
    }

    /// Changes the ICMPv6 message (from byte 54) and fixes its checksum.
    fn with_icmp6(frame: &[u8], change: impl FnOnce(&mut [u8])) -> Vec<u8> {
        with_ip6(frame, |p| change(&mut p[40..]))
    }

    fn set(bytes: &mut [u8], at: usize, value: &[u8]) {
        bytes[at..at + value.len()].copy_from_slice(value);
    }

    // ANCHOR: rfc4861_checks
    #[test]
    fn every_rfc_4861_check_drops_what_fails_it() {
        let ns = fixture!("ipv6_ns_multicast");
        let dad = fixture!("ipv6_ns_dad");
        let ff02_1 = ipv6::ALL_NODES.octets();
        let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
            ("hop limit 254", with_ip6(&ns, |p| p[7] = 254), DropReason::NdiscHopLimit),
            ("hop limit 64", with_ip6(&ns, |p| p[7] = 64), DropReason::NdiscHopLimit),
            ("code 1", with_icmp6(&ns, |m| m[1] = 1), DropReason::NdiscBadCode),
            (
                "ICMP length 16",
                with_ip6(&ns[..70], |p| p[4..6].copy_from_slice(&[0, 16])),
                DropReason::NdiscTooShort,
            ),
            (
                "multicast target",
                with_icmp6(&ns, |m| set(m, 8, &ff02_1)),
                DropReason::NdiscMulticastTarget,
            ),
            ("option of length 0", with_icmp6(&ns, |m| m[25] = 0), DropReason::NdiscBadOption),
            ("option past the end", with_icmp6(&ns, |m| m[25] = 2), DropReason::NdiscBadOption),
            (
                "probe with a source link-layer address",
                with_icmp6(&dad, |m| set(m, 24, &[1, 1, 2, 0, 0, 0, 0, 1])),
                DropReason::NdiscBadProbe,
            ),
            (
                "probe to all nodes",
                with_ip6(&patch(&dad, 0, &[0x33, 0x33, 0, 0, 0, 1]), |p| set(p, 24, &ff02_1)),
                DropReason::NdiscBadProbe,
            ),
            ("another target", with_icmp6(&ns, |m| m[23] = 3), DropReason::NdiscNotForUs),
        ];
        for (what, frame, expected) in cases {
            assert_eq!(reply_to(&frame), Err(expected), "{what}");
        }
    }
    // ANCHOR_END: rfc4861_checks

    #[test]
    fn ignores_what_it_must() {
        let ns = fixture!("ipv6_ns_multicast");
        let ping = fixture!("ipv6_echo_request_56");
        let ff02_1 = ipv6::ALL_NODES.octets();
        let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
            ("the kernel's MLD report", fixture!("ipv6_mld_report"), DropReason::Ipv6NotForUs),
            (
                "the kernel's router solicitation",
                fixture!("ipv6_router_solicitation"),
                DropReason::Ipv6NotForUs,
            ),
            ("the kernel's NA", fixture!("kernel_na_solicited"), DropReason::NotOurMac),
            ("bad ICMPv6 checksum", patch(&ping, 56, &[0, 0]), DropReason::Icmpv6BadChecksum),
            ("NS with a bad checksum", patch(&ns, 56, &[0, 0]), DropReason::Icmpv6BadChecksum),
            (
                "echo to all nodes",
                with_ip6(&patch(&ping, 0, &[0x33, 0x33, 0, 0, 0, 1]), |p| set(p, 24, &ff02_1)),
                DropReason::Icmpv6EchoToGroup,
            ),
            (
                "echo to ff02::1 with our unicast MAC",
                with_ip6(&ping, |p| set(p, 24, &ff02_1)),
                DropReason::NotOurMac,
            ),
            ("echo to another address", with_ip6(&ping, |p| p[39] = 3), DropReason::Ipv6NotForUs),
            ("echo from ::", with_ip6(&ping, |p| p[8..24].fill(0)), DropReason::Ipv6BadSource),
            (
                "echo from ::1",
                with_ip6(&ping, |p| {
                    p[8..24].fill(0);
                    p[23] = 1
                }),
                DropReason::Ipv6BadSource,
            ),
            (
                "echo from ff02::1",
                with_ip6(&ping, |p| set(p, 8, &ff02_1)),
                DropReason::Ipv6BadSource,
            ),
            ("echo from ourselves", with_ip6(&ping, |p| p[23] = 2), DropReason::Ipv6BadSource),
            ("echo reply", with_icmp6(&ping, |m| m[0] = 129), DropReason::Icmpv6NotAnswered),
            ("echo request code 1", with_icmp6(&ping, |m| m[1] = 1), DropReason::Icmpv6NotAnswered),
            ("version 4 in an IPv6 frame", patch(&ping, 14, &[0x46]), DropReason::Ipv6Malformed),
            (
                "payload length past the end",
                with_ip6(&ping, |p| p[5] = 64).into_iter().take(100).collect(),
                DropReason::Truncated,
            ),
            ("UDP", patch(&ping, 20, &[17]), DropReason::OtherProtocol),
            ("no next header", patch(&ping, 20, &[59]), DropReason::OtherProtocol),
            ("to another MAC", patch(&ping, 5, &[3]), DropReason::NotOurMac),
            ("to another group's MAC", patch(&ns, 5, &[3]), DropReason::NotOurMac),
        ];
        for (what, frame, expected) in cases {
            assert_eq!(reply_to(&frame), Err(expected), "{what}");
        }
    }

    #[test]
    fn answers_for_both_addresses_and_in_both_groups() {
        let ns = fixture!("ipv6_ns_multicast");
        // "Who has fe80::ff:fe00:2?", to its solicited-node group (the same ff02::1:ff00:2).
        let link_local = with_icmp6(&ns, |m| set(m, 8, &US.link_local().octets()));
        let reply = reply_to(&link_local).unwrap();
        assert_eq!(reply[14 + 8..14 + 24], US.link_local().octets(), "from the target");
        // To all nodes: Linux answers it, and so do we (with Override and our MAC).
        let to_all = with_ip6(&patch(&ns, 0, &[0x33, 0x33, 0, 0, 0, 1]), |p| {
            set(p, 24, &ipv6::ALL_NODES.octets())
        });
        let reply = reply_to(&to_all).unwrap();
        assert_eq!(reply[58], ndisc::FLAG_SOLICITED | ndisc::FLAG_OVERRIDE);
        // A multicast solicitation without a source link-layer option (allowed by 7.1.1)
        // gets our MAC: the one reply 8 bytes longer than its request.
        let bare = with_ip6(&ns[..78], |p| p[4..6].copy_from_slice(&[0, 24]));
        let reply = reply_to(&bare).unwrap();
        assert_eq!((bare.len(), reply.len()), (78, 86));
        assert_eq!(reply[78..], [2, 1, 2, 0, 0, 0, 0, 2]);
        // Extension headers we may skip are skipped (RFC 8200 4).
        let with_dest_opts = {
            let mut f = ns.clone();
            f.splice(54..54, [58u8, 0, 1, 4, 0, 0, 0, 0]);
            f[20] = 60;
            f[19] += 8;
            f
        };
        let reply = reply_to(&with_dest_opts).unwrap();
        assert_eq!(reply, reply_to(&ns).unwrap());
    }

    #[test]
    fn chapters_3_and_4_leave_ipv6_alone() {
        for services in [Services::ARP, Services::IPV4] {
            let outcome = reply_with(services, &fixture!("ipv6_ns_multicast"));
            assert_eq!(outcome, Err(DropReason::OtherProtocol));
        }
    }

    #[test]
    fn every_truncation_of_a_real_frame_is_dropped() {
        for frame in [fixture!("ipv6_ns_multicast"), fixture!("ipv6_echo_request_56")] {
            assert!(reply_to(&frame).is_ok());
            for len in 0..frame.len() {
                assert!(reply_to(&frame[..len]).is_err(), "{len} bytes");
            }
        }
    }
}
