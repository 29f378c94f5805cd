//! ICMP echo (chapter 4): the reply to `ping`, with the request's Record Route and
//! Timestamp options echoed as Linux echoes them.

use std::net::Ipv4Addr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::ipv4::reply_header;
use super::{DropReason, Host, Idents, Outcome, Reply, start_frame, wire_drop};
use crate::wire::checksum;
use crate::wire::ethernet::{self, EtherType, EthernetFrame, EthernetRepr};
use crate::wire::icmpv4::{Icmpv4Message, Icmpv4Type};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr, MAX_HEADER_LEN, MIN_HEADER_LEN};
use crate::wire::ipv4_options::{
    Ipv4Options, SlotOption, TS_AND_ADDRESS, TS_ONLY, TS_PRESPECIFIED,
};

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

// ANCHOR: echo_reply
// ANCHOR: student_ch4_echo "chapter 4: the echo reply"
/// Answers an ICMP echo request (RFC 792) with an echo reply carrying the same
/// identifier, sequence number and data, and the request's Record Route and Timestamp
/// options with our entries added.
pub(super) fn echo_reply(
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
    let header =
        EthernetRepr { dst_addr: eth.src_addr(), src_addr: host.mac, ethertype: EtherType::Ipv4 };
    let mut frame = start_frame(out, len, header)?;

    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    reply_header(host, idents, ip, IpProtocol::Icmp, ip.tos(), icmp_len)
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
// ANCHOR_END: student_ch4_echo
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::respond::testing::*;
    use crate::wire::Ipv4Packet;
    use crate::wire::fixtures::fixture;

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
}
