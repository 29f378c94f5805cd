//! Property tests: whatever the frame, the responder neither panics nor sends a wrong
//! reply. Every outcome is judged by an independent oracle (`oracle/mod.rs`): a reply
//! must be exactly the one RFC 826 or RFC 792 calls for (so its checksums verify and its
//! lengths agree), never longer than the request, sent to a unicast address, and only
//! for a well-formed request for our address; and a frame that deserves a reply gets one.
//!
//! The frames are random bytes, frames assembled from random but plausible fields, and
//! the kernel's own captured frames with random damage, each with its checksums repaired
//! or not so that the checks behind them are reached too. The same oracle judges the
//! fuzz target (`fuzz/`), which runs for millions of inputs rather than thousands.

mod fixtures;
mod oracle;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::OnceLock;

use oracle::{OUR_IP, OUR_MAC};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
use tapbook::respond::{Drop, Host, Reply, Services, respond};
use tapbook::show::{Dump, Summary};
use tapbook::wire::MacAddr;

const US: Host =
    Host { ip: Ipv4Addr::new(OUR_IP[0], OUR_IP[1], OUR_IP[2], OUR_IP[3]), mac: MacAddr(OUR_MAC) };

/// Runs the responder as the binaries do and has the oracle judge the outcome. The
/// output buffer is as long as the request: a reply that needs more would be an
/// amplification, reported by `respond` as `NoRoom` and by the oracle as a missing reply.
fn judge(frame: &[u8], services: Services) -> Result<(), TestCaseError> {
    let mut out = vec![0xa5u8; frame.len()];
    let outcome = respond(&US, services, frame, &mut out);
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
    if let Err(why) = oracle::check(frame, services.arp, services.echo, reply) {
        return Err(TestCaseError::fail(format!("outcome {outcome:?}: {why}")));
    }
    // What 02 and 05 print for every frame must not panic either.
    let _ = Summary(frame).to_string();
    let _ = Dump(frame).to_string();
    Ok(())
}

fn judge_all_services(frame: &[u8]) -> Result<(), TestCaseError> {
    judge(frame, Services::ALL)?;
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
/// now and then the kernel's `ping -R` request with its option's type and length changed.
fn damaged_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![9 => damaged_capture(), 1 => changed_option()]
}

/// The kernel's echo request with options (a NOP, then record route: type 7, length 39 at
/// offsets 35 and 36), turned into a source route, another option, or a malformed one.
fn changed_option() -> impl Strategy<Value = Vec<u8>> {
    let kinds = select(vec![0x07u8, 0x83, 0x89, 0x44, 0x94, 0x00, 0x01]);
    let lens = select(vec![39u8, 0, 1, 2, 3, 38, 40, 255]);
    (kinds, lens).prop_map(|(kind, len)| {
        let mut frame = fixtures::load("icmp_echo_request_options");
        frame[35] = kind;
        frame[36] = len;
        oracle::repair_checksums(&mut frame, true, true);
        frame
    })
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
    // must meet every drop reason (but the output buffer's) and both kinds of reply.
    let mut runner =
        TestRunner::new_with_rng(config(3000), TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let mut seen = HashSet::new();
    let mut out = vec![0u8; 70_000];
    for _ in 0..3000 {
        let frame = damaged_frame().new_tree(&mut runner).unwrap().current();
        seen.insert(
            respond(&US, Services::ALL, &frame, &mut out).map(|r| matches!(r, Reply::Arp(_))),
        );
    }
    for reason in Drop::ALL.into_iter().filter(|d| *d != Drop::NoRoom) {
        assert!(seen.contains(&Err(reason)), "no damaged frame was dropped as {reason}");
    }
    assert!(seen.contains(&Ok(true)) && seen.contains(&Ok(false)), "{seen:?}");
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
        options in select(vec![0usize, 4, 8, 40]),
        data in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..1600),
            proptest::collection::vec(Just(0u8), 0..64),
        ],
        padding in 0usize..20,
    ) {
        let frame = echo_request(ident, seq, tos, ttl, dont_frag, options, &data, padding);
        prop_assert_eq!(oracle::expected(&frame, true, true), oracle::Expect::EchoReply);
        judge(&frame, Services::ALL)?;
    }
}

/// A well-formed echo request from 172.16.1.1 to us, assembled by hand.
#[allow(clippy::too_many_arguments)]
fn echo_request(
    ident: u16,
    seq: u16,
    tos: u8,
    ttl: u8,
    dont_frag: bool,
    options: usize,
    data: &[u8],
    padding: usize,
) -> Vec<u8> {
    let mut frame = OUR_MAC.to_vec();
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let header_len = 20 + options;
    let total = (header_len + 8 + data.len()) as u16;
    frame.extend_from_slice(&[0x40 | (header_len / 4) as u8, tos]);
    frame.extend_from_slice(&total.to_be_bytes());
    frame.extend_from_slice(&ident.wrapping_mul(7).to_be_bytes());
    frame.extend_from_slice(&(if dont_frag { 0x4000u16 } else { 0 }).to_be_bytes());
    frame.extend_from_slice(&[ttl, 1, 0, 0, 172, 16, 1, 1]);
    frame.extend_from_slice(&OUR_IP);
    // Options: No Operation (1) bytes, then End of Option List (0) as the last.
    frame.extend(std::iter::repeat_n(1u8, options.saturating_sub(1)));
    frame.extend(std::iter::repeat_n(0u8, options.min(1)));
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
    // The kernel's echo request over a veth, and the kernel's reply to it: the oracle's
    // reply differs only in the identification (the kernel picks its own) and the header
    // checksum. This anchors the oracle to real behaviour, not just to our own reading.
    let request = fixtures::load("kernel_echo_request_56_veth");
    let kernel = fixtures::load("kernel_echo_reply_56");
    let ours = oracle::expected_reply(&request, oracle::expected(&request, true, true)).unwrap();
    assert_eq!(ours.len(), kernel.len());
    let differs: Vec<usize> = (0..ours.len()).filter(|&i| ours[i] != kernel[i]).collect();
    assert!(differs.iter().all(|i| [18, 19, 24, 25].contains(i)), "{differs:?}");

    let arp = fixtures::load("arp_request_arping");
    let kernel = fixtures::load("kernel_arp_reply");
    let ours = oracle::expected_reply(&arp, oracle::expected(&arp, true, true)).unwrap();
    assert_eq!(ours, kernel);
}

#[test]
fn the_oracle_refuses_what_the_responder_refuses() {
    // A check that cannot fail proves nothing: every fixture the responder drops, the
    // oracle refuses too, and a reply to one of them is reported.
    for frame in fixtures() {
        let frame = frame.as_slice();
        let mut out = vec![0u8; frame.len()];
        if let Err(reason) = respond(&US, Services::ALL, frame, &mut out) {
            assert_eq!(oracle::expected(frame, true, true), oracle::Expect::Nothing, "{reason}");
            assert!(oracle::check(frame, true, true, Some(frame)).is_err());
        }
    }
}

#[test]
fn only_an_echo_request_with_code_0_is_answered() {
    let frames = fixtures();
    let request = frames
        .iter()
        .find(|f| oracle::expected(f, true, true) == oracle::Expect::EchoReply)
        .expect("a captured echo request");
    for icmp_type in 0..=255u8 {
        for code in [0u8, 1, 255] {
            let mut frame = request.clone();
            let ihl = usize::from(frame[14] & 0x0f) * 4;
            frame[14 + ihl] = icmp_type;
            frame[14 + ihl + 1] = code;
            oracle::repair_checksums(&mut frame, false, true);
            let mut out = vec![0u8; frame.len()];
            let outcome = respond(&US, Services::ALL, &frame, &mut out);
            if (icmp_type, code) == (8, 0) {
                assert!(outcome.is_ok(), "{outcome:?}");
            } else {
                assert_eq!(outcome, Err(Drop::IcmpNotEchoRequest), "type {icmp_type} code {code}");
            }
        }
    }
}
