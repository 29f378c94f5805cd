//! Property tests: whatever the frame, the responder neither panics nor sends a wrong
//! reply. Every outcome is judged by an independent oracle (`oracle/mod.rs`): a reply
//! must be exactly the one RFC 826, RFC 792 and Linux's handling of IPv4 options call
//! for (an ARP reply, an echo reply with its Record Route and Timestamp updated, or a
//! Parameter Problem), or RFC 4861 and 4443 for IPv6 (a neighbour advertisement as Linux
//! sends it, an ICMPv6 echo reply), so its checksums verify and its lengths agree; never longer than
//! the request, sent to a unicast address, and only for a request for our address that
//! deserves it; and a frame that deserves a reply gets one. The IPv4 identifications,
//! which the oracle leaves to the responder, must not repeat (a test of their own).
//!
//! The frames are random bytes, frames assembled from random but plausible fields, and
//! the kernel's own captured frames with random damage, each with its checksums repaired
//! or not so that the checks behind them are reached too. The same oracle judges the
//! fuzz target (`fuzz/`), which runs for millions of inputs rather than thousands.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::OnceLock;
use tapbook_testkit::{fixtures, oracle};

use oracle::{Clock, OUR_IP, OUR_IP6, OUR_LINK_LOCAL, OUR_MAC};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
use tapbook::respond::{DropReason, Host, Idents, Reply, Services, Timestamp, respond};
use tapbook::show::{Dump, Summary};
use tapbook::wire::MacAddr;

const US: Host = Host {
    ip: Ipv4Addr::new(OUR_IP[0], OUR_IP[1], OUR_IP[2], OUR_IP[3]),
    ip6: std::net::Ipv6Addr::new(0xfd00, 0x172, 0x16, 1, 0, 0, 0, 2),
    mac: MacAddr(OUR_MAC),
};

/// The time of day the tests give the responder: 23:59:59.999 UT, the last millisecond.
const NOW: u32 = 86_399_999;

/// `respond` as the binaries call it, with counters from a fixed key and the fixed time.
fn call(services: Services, frame: &[u8], out: &mut [u8]) -> Result<Reply, DropReason> {
    respond(&US, services, &mut Idents::new(3), Timestamp(NOW), frame, out)
}

/// Runs the responder as the binaries do and has the oracle judge the outcome. The
/// output buffer is 8 bytes longer than the request, room for the one reply allowed to
/// be longer (a neighbour advertisement carrying the MAC a solicitation did not carry);
/// the oracle reports any other reply longer than its request as an amplification.
fn judge(frame: &[u8], services: Services) -> Result<(), TestCaseError> {
    let mut out = vec![0xa5u8; frame.len() + 8];
    let outcome = call(services, frame, &mut out);
    let reply = match outcome {
        Ok(reply) => Some(&out[..reply.len()]),
        Err(_) => {
            prop_assert!(
                out.iter().all(|&b| b == 0xa5),
                "dropped ({outcome:?}) but wrote into the output buffer"
            );
            None
        }
    };
    if let Err(why) =
        oracle::check(frame, services.arp, services.echo, services.ipv6, reply, Clock::At(NOW))
    {
        return Err(TestCaseError::fail(format!("outcome {outcome:?}: {why}")));
    }
    // What 02 and 05 print for every frame must not panic either.
    let _ = Summary(frame).to_string();
    let _ = Dump(frame).to_string();
    Ok(())
}

fn judge_all_services(frame: &[u8]) -> Result<(), TestCaseError> {
    judge(frame, Services::ALL)?;
    judge(frame, Services::IPV6)?;
    judge(frame, Services::ARP)
}

/// The kernel's frames from `tests/fixtures`, read once at run time.
fn fixtures() -> &'static [Vec<u8>] {
    static FIXTURES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FIXTURES.get_or_init(read_fixtures)
}

fn read_fixtures() -> Vec<Vec<u8>> {
    fixtures::all().into_iter().map(|(_, frame)| frame).collect()
}

/// One kind of damage done to a frame.
#[derive(Debug, Clone)]
enum Damage {
    /// Overwrite the byte at this position (modulo the length) with a value.
    Set(usize, u8),
    /// Flip one bit.
    Flip(usize, u8),
    /// Cut the frame to this length (modulo the length + 1).
    Truncate(usize),
    /// Append these bytes (padding, or junk past the IPv4 total length).
    Extend(Vec<u8>),
    /// Overwrite a header field that matters with a value that matters.
    Field(usize, Vec<u8>),
}

/// Offsets and values that steer a frame to the decisions the responder makes.
fn interesting_field() -> impl Strategy<Value = Damage> {
    let mac = select(vec![
        vec![0xff; 6],
        OUR_MAC.to_vec(),
        vec![0x01, 0, 0x5e, 0, 0, 1],
        vec![0x02, 0, 0, 0, 0, 1],
        vec![0x33, 0x33, 0, 0, 0, 1],
        vec![0; 6],
    ]);
    let ip = select(vec![
        OUR_IP.to_vec(),
        vec![172, 16, 1, 1],
        vec![172, 16, 1, 255],
        vec![255; 4],
        vec![224, 0, 0, 1],
        vec![0; 4],
        vec![0, 1, 2, 3],
        vec![127, 0, 0, 1],
        vec![240, 0, 0, 1],
    ]);
    let ethertype =
        select(vec![vec![0x08, 0x00], vec![0x08, 0x06], vec![0x81, 0x00], vec![0x88, 0xa8]]);
    prop_oneof![
        (select(vec![0usize, 6]), mac.clone()).prop_map(|(at, v)| Damage::Field(at, v)),
        ethertype.prop_map(|v| Damage::Field(12, v)),
        // ARP: sender and target hardware and protocol addresses, operation.
        (select(vec![22usize, 32]), mac).prop_map(|(at, v)| Damage::Field(at, v)),
        (select(vec![28usize, 38]), ip.clone()).prop_map(|(at, v)| Damage::Field(at, v)),
        (0u16..4).prop_map(|op| Damage::Field(20, op.to_be_bytes().to_vec())),
        // IPv4: version and IHL, total length, flags and offset, TTL, protocol, addresses.
        any::<u8>().prop_map(|v| Damage::Field(14, vec![v])),
        (0u16..1600).prop_map(|len| Damage::Field(16, len.to_be_bytes().to_vec())),
        select(vec![0x4000u16, 0x2000, 0x0001, 0x0000, 0x8000])
            .prop_map(|f| Damage::Field(20, f.to_be_bytes().to_vec())),
        select(vec![0u8, 1, 255]).prop_map(|ttl| Damage::Field(22, vec![ttl])),
        select(vec![1u8, 6, 17, 58]).prop_map(|p| Damage::Field(23, vec![p])),
        (select(vec![26usize, 30]), ip).prop_map(|(at, v)| Damage::Field(at, v)),
        // ICMP type and code (at 34 when the header has no options).
        (any::<u8>(), select(vec![0u8, 1, 255])).prop_map(|(t, c)| Damage::Field(34, vec![t, c])),
        ipv6_field(),
    ]
}

/// The same for IPv6: addresses and groups, hop limits, next headers, ICMPv6 types, the
/// neighbour solicitation's target and options.
fn ipv6_field() -> impl Strategy<Value = Damage> {
    let ip6 = select(vec![
        OUR_IP6.to_vec(),
        OUR_LINK_LOCAL.to_vec(),
        oracle::ALL_NODES.to_vec(),
        [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 2].to_vec(),
        [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 1].to_vec(),
        [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16].to_vec(),
        [0xfd, 0, 1, 0x72, 0, 0x16, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1].to_vec(),
        [0; 16].to_vec(),
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1].to_vec(),
    ]);
    let mac = select(vec![
        vec![0x33, 0x33, 0xff, 0, 0, 2],
        vec![0x33, 0x33, 0, 0, 0, 1],
        vec![0x33, 0x33, 0, 0, 0, 0x16],
    ]);
    prop_oneof![
        mac.prop_map(|v| Damage::Field(0, v)),
        Just(Damage::Field(12, vec![0x86, 0xdd])),
        select(vec![0x60u8, 0x6b, 0x40, 0x70]).prop_map(|v| Damage::Field(14, vec![v])),
        (0u16..1600).prop_map(|len| Damage::Field(18, len.to_be_bytes().to_vec())),
        select(vec![58u8, 0, 60, 43, 44, 59, 17]).prop_map(|v| Damage::Field(20, vec![v])),
        select(vec![255u8, 254, 64, 1, 0]).prop_map(|v| Damage::Field(21, vec![v])),
        (select(vec![22usize, 38, 62]), ip6).prop_map(|(at, v)| Damage::Field(at, v)),
        (select(vec![128u8, 129, 135, 136, 133, 143]), select(vec![0u8, 1]))
            .prop_map(|(t, c)| Damage::Field(54, vec![t, c])),
        (select(vec![1u8, 2, 14, 0]), 0u8..4).prop_map(|(t, l)| Damage::Field(78, vec![t, l])),
    ]
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        3 => interesting_field(),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, v)| Damage::Set(at, v)),
        2 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Damage::Flip(at, bit)),
        1 => any::<usize>().prop_map(Damage::Truncate),
        1 => proptest::collection::vec(any::<u8>(), 1..40).prop_map(Damage::Extend),
    ]
}

fn apply(frame: &mut Vec<u8>, damage: &Damage) {
    let len = frame.len();
    match damage {
        Damage::Set(at, v) if len > 0 => frame[at % len] = *v,
        Damage::Flip(at, bit) if len > 0 => frame[at % len] ^= 1 << bit,
        Damage::Truncate(to) => frame.truncate(to % (len + 1)),
        Damage::Extend(bytes) => frame.extend_from_slice(bytes),
        Damage::Field(at, bytes) => {
            if let Some(field) = frame.get_mut(*at..*at + bytes.len()) {
                field.copy_from_slice(bytes);
            }
        }
        _ => {}
    }
}

/// A captured frame with up to four kinds of damage, then its checksums repaired or not;
/// now and then one of the kernel's requests with options, its option changed.
fn damaged_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![7 => damaged_capture(), 3 => changed_option(), 2 => ipv6_extension()]
}

/// One of the kernel's IPv6 requests (to us) with an extension header put in front of its
/// ICMPv6 message: hop-by-hop, destination options, routing or fragment, of 8 or 16 bytes
/// of options that are mostly padding or mostly random (or none: 58), perhaps sent to all
/// nodes (ff02::1 and its MAC), perhaps cut short, then perhaps damaged further.
fn ipv6_extension() -> impl Strategy<Value = Vec<u8>> {
    let names = select(vec!["ipv6_ns_multicast", "ipv6_echo_request_56", "ipv6_ns_dad"]);
    let kinds = select(vec![0u8, 60, 43, 44, 58]);
    let body = prop_oneof![
        Just(vec![1u8, 4, 0, 0, 0, 0]),
        Just(vec![1u8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        proptest::collection::vec(any::<u8>(), 6),
        proptest::collection::vec(select(vec![0u8, 1, 2, 5, 0x1e, 0x5e, 0x9e, 0xde]), 6),
    ];
    let cut = prop_oneof![3 => Just(None), 1 => (8usize..24).prop_map(Some)];
    // Nothing, code 1, or a multicast target (ff02::1; in an echo request, data).
    let tweak = select(vec![0u8, 0, 0, 1, 2]);
    let damages = proptest::collection::vec(damage(), 0..2);
    (names, kinds, body, (any::<bool>(), cut, tweak), damages).prop_map(
        |(name, kind, body, (to_all_nodes, cut, tweak), damages)| {
            let mut frame = fixtures::load(name);
            if let Some(len) = cut {
                // An ICMPv6 message of `len` bytes: too short for neighbour discovery.
                frame.truncate(54 + len);
                frame[18..20].copy_from_slice(&(len as u16).to_be_bytes());
            }
            if to_all_nodes {
                frame[0..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
                frame[38..54].copy_from_slice(&oracle::ALL_NODES);
            }
            match tweak {
                1 => frame[55] = 1,
                2 if frame.len() >= 78 => frame[62..78].copy_from_slice(&oracle::ALL_NODES),
                _ => {}
            }
            oracle::repair_checksums(&mut frame, false, true);
            if kind == 58 {
                // No extension header: damage, then repair, so that the checks behind the
                // checksum are reached.
                for d in &damages {
                    apply(&mut frame, d);
                }
                oracle::repair_checksums(&mut frame, false, true);
                return frame;
            }
            let mut ext = vec![frame[20], ((body.len() + 2) / 8 - 1) as u8];
            ext.extend_from_slice(&body);
            frame.splice(54..54, ext.iter().copied());
            frame[20] = kind;
            let len = u16::from_be_bytes([frame[18], frame[19]]) + ext.len() as u16;
            frame[18..20].copy_from_slice(&len.to_be_bytes());
            for d in &damages {
                apply(&mut frame, d);
            }
            frame
        },
    )
}

/// One of the kernel's requests with options (`ping -R`: a NOP, then Record Route, type
/// 7 at offset 35; `ping -T tsonly`, `-T tsandaddr`: Timestamp, type 68 at offset 34),
/// its option's type, length, pointer and flags changed to values around the limits: a
/// source route, another option, a malformed one, one with no room left.
fn changed_option() -> impl Strategy<Value = Vec<u8>> {
    let names = select(vec![
        "kernel_echo_request_rr",
        "kernel_echo_request_tsonly",
        "kernel_echo_request_tsandaddr",
    ]);
    let kinds = select(vec![7u8, 68, 131, 137, 134, 148, 130, 0, 1]);
    let lens = select(vec![0u8, 1, 2, 3, 4, 7, 8, 11, 12, 35, 36, 38, 39, 40, 255]);
    let pointers = select(vec![0u8, 3, 4, 5, 6, 8, 9, 12, 13, 33, 36, 37, 38, 39, 40, 41]);
    let flags = select(vec![0x00u8, 0x01, 0x02, 0x03, 0xe0, 0xf0, 0xf1, 0xf3]);
    let ours = any::<bool>();
    let icmp_type = select(vec![8u8, 8, 8, 0, 3, 12, 13, 19]);
    (names, kinds, lens, pointers, flags, ours, icmp_type).prop_map(
        |(name, kind, len, pointer, flags, ours, icmp_type)| {
            let mut frame = fixtures::load(name);
            let at = if name == "kernel_echo_request_rr" { 35 } else { 34 };
            frame[at..at + 3].copy_from_slice(&[kind, len, pointer]);
            if kind == 68 {
                frame[at + 3] = flags;
            }
            if ours {
                // A prespecified timestamp for us, or our address in a Record Route.
                frame[at + 4..at + 8].copy_from_slice(&OUR_IP);
            }
            let ihl = usize::from(frame[14] & 0x0f) * 4;
            frame[14 + ihl] = icmp_type;
            oracle::repair_checksums(&mut frame, true, true);
            frame
        },
    )
}

fn damaged_capture() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<prop::sample::Index>(),
        proptest::collection::vec(damage(), 0..5),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(pick, damages, repair_ip, repair_icmp)| {
            let mut frame = pick.get(fixtures()).clone();
            for d in &damages {
                apply(&mut frame, d);
            }
            oracle::repair_checksums(&mut frame, repair_ip, repair_icmp);
            frame
        })
}

fn config(cases: u32) -> ProptestConfig {
    // No regression files: a failure prints the minimal frame, which becomes a unit test.
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config(3000))]

    /// Damaged real frames: the bulk of the search.
    #[test]
    fn damaged_real_frames_get_only_correct_replies(frame in damaged_frame()) {
        judge_all_services(&frame)?;
    }
}

#[test]
fn the_damage_reaches_every_decision() {
    // A search that never reaches a branch proves nothing about it: the damaged frames
    // must meet every drop reason (but the output buffer's) and every kind of reply.
    let mut runner =
        TestRunner::new_with_rng(config(12000), TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let mut seen = HashSet::new();
    let mut out = vec![0u8; 70_000];
    for _ in 0..12000 {
        let frame = damaged_frame().new_tree(&mut runner).unwrap().current();
        seen.insert(call(Services::ALL, &frame, &mut out).map(|r| match r {
            Reply::Arp(_) => "ARP",
            Reply::Echo(_) => "echo",
            Reply::ParameterProblem(_) => "parameter problem",
            Reply::NeighborAdvert(_) => "neighbour advertisement",
            Reply::Echo6(_) => "echo6",
            Reply::UdpEcho(_) | Reply::Dhcp(_) => "UDP or DHCP, which Services::ALL never sends",
        }));
    }
    // UDP echo and DHCP are chapter 10's (tests/udp_dhcp_properties.rs), not Services::ALL's.
    let chapter_10 = |d: DropReason| d.index() >= DropReason::UdpMalformed.index();
    for reason in
        DropReason::ALL.into_iter().filter(|d| *d != DropReason::NoRoom && !chapter_10(*d))
    {
        assert!(seen.contains(&Err(reason)), "no damaged frame was dropped as {reason}");
    }
    for reply in ["ARP", "echo", "parameter problem", "neighbour advertisement", "echo6"] {
        assert!(seen.contains(&Ok(reply)), "no damaged frame got an {reply} reply: {seen:?}");
    }
}

proptest! {
    #![proptest_config(config(1000))]

    /// Bytes with no structure at all, of any length up to a full frame.
    #[test]
    fn random_bytes_never_get_a_wrong_reply(frame in proptest::collection::vec(any::<u8>(), 0..1600)) {
        judge_all_services(&frame)?;
    }

    /// Random bytes behind a header that reaches the parsers: our MAC or broadcast, a
    /// unicast source, the ARP or IPv4 EtherType, and for IPv4 version 4 with repaired
    /// checksums, so that the random part meets the deeper checks.
    #[test]
    fn random_bodies_behind_plausible_headers(
        dst in select(vec![OUR_MAC, [0xff; 6]]),
        ethertype in select(vec![[0x08u8, 0x06], [0x08, 0x00]]),
        ver_ihl in 0x45u8..=0x4f,
        total_len in 20u16..200,
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut frame = dst.to_vec();
        frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        frame.extend_from_slice(&ethertype);
        frame.extend_from_slice(&body);
        if ethertype == [0x08, 0x00] && frame.len() >= 18 {
            frame[14] = ver_ihl;
            frame[16..18].copy_from_slice(&total_len.to_be_bytes());
            if frame.len() >= 34 {
                frame[30..34].copy_from_slice(&OUR_IP);
            }
            oracle::repair_checksums(&mut frame, true, true);
        }
        judge_all_services(&frame)?;
    }

    /// Requests that must be answered, whatever their identifier, sequence number, data
    /// and length: each reply is compared with the oracle's byte for byte.
    #[test]
    fn every_valid_echo_request_gets_the_exact_reply(
        // Zeroes are likely on purpose: an all-zero reply is where one's complement
        // arithmetic has its two zeros (see `respond::echo_reply`).
        ident in prop_oneof![Just(0u16), any::<u16>()],
        seq in prop_oneof![Just(0u16), any::<u16>()],
        tos in any::<u8>(),
        ttl in 1u8..=255,
        dont_frag in any::<bool>(),
        options in prop_oneof![
            select(vec![vec![], vec![1; 4], vec![1; 8], vec![1; 40]]),
            record_route_or_timestamp(),
        ],
        data in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..1600),
            proptest::collection::vec(Just(0u8), 0..64),
        ],
        padding in 0usize..20,
    ) {
        let frame = echo_request(ident, seq, tos, ttl, dont_frag, &options, &data, padding);
        prop_assert_eq!(oracle::expected(&frame, true, true, true), oracle::Expect::EchoReply);
        judge(&frame, Services::ALL)?;
    }

    /// Requests whose options Linux refuses: a Parameter Problem if the request is long
    /// enough to be quoted, byte for byte as the oracle builds it.
    #[test]
    fn malformed_options_get_the_exact_parameter_problem(
        options in malformed_options(),
        data in proptest::collection::vec(any::<u8>(), 0..600),
        tos in any::<u8>(),
    ) {
        let frame = echo_request(1, 2, tos, 64, true, &options, &data, 0);
        let expect = oracle::expected(&frame, true, true, true);
        prop_assert!(matches!(expect, oracle::Expect::ParameterProblem(_) | oracle::Expect::Nothing), "{:?}", expect);
        judge(&frame, Services::ALL)?;
    }

    /// However many replies go to one host, their identifications do not repeat (up to
    /// the 65536 a 16-bit field can tell apart), whatever the requests' own.
    #[test]
    fn identifications_do_not_repeat(
        key in any::<u64>(),
        idents_in_requests in proptest::collection::vec(prop_oneof![Just(0u16), any::<u16>()], 1..300),
    ) {
        let mut idents = Idents::new(key);
        let mut seen = HashSet::new();
        for ident in idents_in_requests {
            let mut frame = echo_request(0x1234, 1, 0, 64, true, &[], &[1, 2, 3], 0);
            frame[18..20].copy_from_slice(&ident.to_be_bytes());
            oracle::repair_checksums(&mut frame, true, false);
            let mut out = vec![0u8; frame.len()];
            respond(&US, Services::ALL, &mut idents, Timestamp(NOW), &frame, &mut out).unwrap();
            prop_assert!(seen.insert(u16::from_be_bytes([out[18], out[19]])), "repeated");
        }
    }
}

/// A Record Route or Timestamp option as `ping -R` and `ping -T` send them: any number
/// of slots that fits, a pointer at any slot boundary or past the end (full), any flag
/// and overflow; padded to a multiple of 4 with End of List. Pointers that are not on a
/// boundary are the damaged frames' business.
fn record_route_or_timestamp() -> impl Strategy<Value = Vec<u8>> {
    let flags = select(vec![0u8, 1, 3, 2, 0xe0, 0x31]);
    let fill = proptest::collection::vec(any::<u8>(), 40);
    (any::<bool>(), 1usize..=9, any::<prop::sample::Index>(), flags, fill, any::<bool>()).prop_map(
        |(rr, slots, pick, flags, fill, prespecify_us)| {
            let pairs = !rr && matches!(flags & 0x0f, 1 | 3);
            let (first, slots) = if rr { (4, slots) } else { (5, slots) };
            let slots = if pairs { slots & !1 } else { slots }.max(if pairs { 2 } else { 1 });
            let len = first - 1 + 4 * slots;
            let step = if pairs { 8 } else { 4 };
            let pointer = first + step * pick.index(4 * slots / step + 1);
            let mut option = vec![if rr { 7 } else { 68 }, len as u8, pointer as u8];
            if !rr {
                option.push(flags);
            }
            option.extend_from_slice(&fill[..len - option.len()]);
            if prespecify_us && !rr && pointer + 3 <= len {
                option[pointer - 1..pointer + 3].copy_from_slice(&OUR_IP);
            }
            option.resize(len.next_multiple_of(4), 0);
            option
        },
    )
}

/// Options of a valid shape with one thing wrong, as Linux sees it.
fn malformed_options() -> impl Strategy<Value = Vec<u8>> {
    select(vec![
        vec![1, 7, 40, 4, 0, 0, 0, 0],
        vec![7, 1, 0, 0],
        vec![7, 2, 1, 0],
        vec![7, 7, 3, 0, 0, 0, 0, 0],
        vec![7, 7, 5, 0, 0, 0, 0, 0],
        vec![7, 3, 4, 7, 3, 4, 0, 0],
        vec![68, 3, 5, 0],
        vec![68, 8, 4, 0, 0, 0, 0, 0],
        vec![68, 8, 9, 0xf0, 1, 2, 3, 4],
        vec![68, 8, 5, 1, 0, 0, 0, 0],
        vec![148, 3, 0, 0],
        vec![131, 7, 3, 172, 16, 1, 9, 0],
        vec![134, 8, 0, 0, 0, 1, 0, 0],
        vec![134, 6, 0, 0, 0, 1, 0, 0],
        vec![7, 7, 4, 0, 0, 0, 0, 68, 3, 5, 0, 0],
        vec![1, 1, 1, 7],
    ])
}

/// A well-formed echo request from 172.16.1.1 to us, assembled by hand, with `options`
/// (a multiple of 4 bytes) in its IPv4 header.
#[allow(clippy::too_many_arguments)]
fn echo_request(
    ident: u16,
    seq: u16,
    tos: u8,
    ttl: u8,
    dont_frag: bool,
    options: &[u8],
    data: &[u8],
    padding: usize,
) -> Vec<u8> {
    let mut frame = OUR_MAC.to_vec();
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let header_len = 20 + options.len();
    let total = (header_len + 8 + data.len()) as u16;
    frame.extend_from_slice(&[0x40 | (header_len / 4) as u8, tos]);
    frame.extend_from_slice(&total.to_be_bytes());
    frame.extend_from_slice(&ident.wrapping_mul(7).to_be_bytes());
    frame.extend_from_slice(&(if dont_frag { 0x4000u16 } else { 0 }).to_be_bytes());
    frame.extend_from_slice(&[ttl, 1, 0, 0, 172, 16, 1, 1]);
    frame.extend_from_slice(&OUR_IP);
    frame.extend_from_slice(options);
    frame.extend_from_slice(&[8, 0, 0, 0]);
    frame.extend_from_slice(&ident.to_be_bytes());
    frame.extend_from_slice(&seq.to_be_bytes());
    frame.extend_from_slice(data);
    oracle::repair_checksums(&mut frame, true, true);
    frame.extend(std::iter::repeat_n(0u8, padding));
    frame
}

#[test]
fn the_oracle_agrees_with_the_kernel_on_its_own_frames() {
    // The kernel's echo requests over a veth, with and without options, and the kernel's
    // replies to them: given the kernel's identification and time, the oracle's reply is
    // the kernel's, byte for byte. This anchors the oracle to real behaviour, not just to
    // our own reading of the RFCs.
    for (request, reply, time_at) in [
        ("kernel_echo_request_56_veth", "kernel_echo_reply_56", None),
        ("kernel_echo_request_rr", "kernel_echo_reply_rr", None),
        ("kernel_echo_request_tsonly", "kernel_echo_reply_tsonly", Some(38)),
        ("kernel_echo_request_tsandaddr", "kernel_echo_reply_tsandaddr", Some(42)),
    ] {
        let (request, kernel) = (fixtures::load(request), fixtures::load(reply));
        let ident = u16::from_be_bytes([kernel[18], kernel[19]]);
        let now = time_at
            .map_or(0, |at: usize| u32::from_be_bytes(kernel[at..at + 4].try_into().unwrap()));
        let expect = oracle::expected(&request, true, true, true);
        let (ours, _) = oracle::expected_reply(&request, expect, ident, now).unwrap();
        assert_eq!(oracle::hex(&ours), oracle::hex(&kernel), "{reply}");
    }
    // The kernel's Parameter Problem quotes the whole request; ours, no more than keeps
    // the error as short as the request. The rest is the kernel's, byte for byte.
    let request = fixtures::load("kernel_bad_option_request");
    let kernel = fixtures::load("kernel_parameter_problem");
    let expect = oracle::expected(&request, true, true, true);
    assert_eq!(expect, oracle::Expect::ParameterProblem(21));
    let ident = u16::from_be_bytes([kernel[18], kernel[19]]);
    let (ours, _) = oracle::expected_reply(&request, expect, ident, 0).unwrap();
    let mut kernel = kernel[..ours.len()].to_vec();
    kernel[16..18].copy_from_slice(&ours[16..18]);
    oracle::repair_checksums(&mut kernel, true, true);
    assert_eq!(oracle::hex(&ours), oracle::hex(&kernel));

    // IPv6: the kernel's neighbour advertisements and echo replies (flow label 0 in
    // namespace B, as ours), byte for byte.
    for (request, reply) in [
        ("ipv6_ns_multicast", "kernel_na_solicited"),
        ("ipv6_ns_unicast", "kernel_na_unicast"),
        ("ipv6_ns_dad", "kernel_na_dad"),
        ("ipv6_echo_request_0", "kernel_echo6_reply_0"),
        ("ipv6_echo_request_56", "kernel_echo6_reply_56"),
        ("ipv6_echo_request_1452", "kernel_echo6_reply_1452"),
        ("ipv6_echo_request_link_local", "kernel_echo6_reply_link_local"),
    ] {
        let (request, kernel) = (fixtures::load(request), fixtures::load(reply));
        let expect = oracle::expected(&request, true, true, true);
        let (ours, _) = oracle::expected_reply(&request, expect, 0, 0).unwrap();
        assert_eq!(oracle::hex(&ours), oracle::hex(&kernel), "{reply}");
    }

    let arp = fixtures::load("arp_request_arping");
    let kernel = fixtures::load("kernel_arp_reply");
    let (ours, _) =
        oracle::expected_reply(&arp, oracle::expected(&arp, true, true, true), 0, 0).unwrap();
    assert_eq!(ours, kernel);
}

#[test]
fn the_oracle_refuses_what_the_responder_refuses() {
    // A check that cannot fail proves nothing: every fixture the responder drops, the
    // oracle refuses too, and a reply to one of them is reported.
    for frame in fixtures() {
        let frame = frame.as_slice();
        let mut out = vec![0u8; frame.len()];
        if let Err(reason) = call(Services::ALL, frame, &mut out) {
            assert_eq!(
                oracle::expected(frame, true, true, true),
                oracle::Expect::Nothing,
                "{reason}"
            );
            assert!(oracle::check(frame, true, true, true, Some(frame), Clock::At(NOW)).is_err());
        }
    }
}

#[test]
fn only_an_echo_request_with_code_0_is_answered() {
    let frames = fixtures();
    let request = frames
        .iter()
        .find(|f| oracle::expected(f, true, true, true) == oracle::Expect::EchoReply)
        .expect("a captured echo request");
    for icmp_type in 0..=255u8 {
        for code in [0u8, 1, 255] {
            let mut frame = request.clone();
            let ihl = usize::from(frame[14] & 0x0f) * 4;
            frame[14 + ihl] = icmp_type;
            frame[14 + ihl + 1] = code;
            oracle::repair_checksums(&mut frame, false, true);
            let mut out = vec![0u8; frame.len()];
            let outcome = call(Services::ALL, &frame, &mut out);
            if (icmp_type, code) == (8, 0) {
                assert!(outcome.is_ok(), "{outcome:?}");
            } else {
                assert_eq!(
                    outcome,
                    Err(DropReason::IcmpNotEchoRequest),
                    "type {icmp_type} code {code}"
                );
            }
        }
    }
}
