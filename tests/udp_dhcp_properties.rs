//! Property tests for chapter 10: UDP echo and the DHCP server, judged by the independent
//! oracle (`oracle/udp.rs`, on raw bytes with its own checksum). Whatever the frame,
//! nothing panics; a UDP echo reply is exactly the one RFC 768 and 862 call for, and a
//! datagram that deserves one gets it; a DHCP reply is a well-formed OFFER, ACK or NAK
//! for the request that came in; and whatever the sequence of messages, the lease table
//! never gives one address to two clients nor an address outside the pool.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use tapbook_testkit::{fixtures, oracle};

use oracle::udp::{check_dhcp_reply, check_with_udp, udp_checksum};
use oracle::{Clock, OUR_IP, OUR_MAC};
use proptest::prelude::*;
use proptest::sample::select;
use tapbook::dhcp::{Dhcp, DhcpConfig, Event};
use tapbook::respond::{Host, Idents, Services, Timestamp, respond};
use tapbook::wire::MacAddr;

const US: Host = Host {
    ip: Ipv4Addr::new(OUR_IP[0], OUR_IP[1], OUR_IP[2], OUR_IP[3]),
    ip6: tapbook::cli::DEFAULT_IP6,
    mac: MacAddr(OUR_MAC),
};
const NOW: u32 = 1_000;

const UDP_FIXTURES: [&str; 4] =
    ["udp_echo_request_0", "udp_echo_request_5", "udp_echo_request_1472", "udp_echo_broadcast"];
const DHCP_FIXTURES: [&str; 5] = [
    "dhcp_discover",
    "dhcp_exchange_discover",
    "dhcp_request_selecting",
    "dhcp_request_renewing",
    "dhcp_release",
];

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Repairs the IPv4 header checksum and the UDP checksum of an IPv4/UDP frame (when the
/// lengths let us find them), so that the checks behind them are reached.
fn repair(frame: &mut [u8], ip: bool, udp: bool) {
    let Some(&ver_ihl) = frame.get(14) else { return };
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    if ihl < 20 || frame.len() < 14 + ihl {
        return;
    }
    if udp {
        let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
        let end = (14 + total).min(frame.len());
        let (src, dst) = (frame[26..30].to_vec(), frame[30..34].to_vec());
        if end >= 14 + ihl + 8 {
            let ulen = usize::from(u16::from_be_bytes([frame[14 + ihl + 4], frame[14 + ihl + 5]]));
            let datagram = &mut frame[14 + ihl..end];
            if (8..=datagram.len()).contains(&ulen) {
                let datagram = &mut datagram[..ulen];
                datagram[6..8].fill(0);
                let sum = udp_checksum(&src, &dst, datagram);
                datagram[6..8].copy_from_slice(&sum.to_be_bytes());
            }
        }
    }
    if ip {
        let header = &mut frame[14..14 + ihl];
        header[10..12].fill(0);
        let sum = oracle::checksum(header);
        header[10..12].copy_from_slice(&sum.to_be_bytes());
    }
}

/// A captured UDP or DHCP frame, damaged at up to four places (the ports, the lengths,
/// the DHCP options and the addresses most often), checksums repaired or not.
fn damaged(names: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let place = prop_oneof![
        3 => select(vec![34usize, 35, 36, 37, 38, 39, 40, 41]), // UDP header
        2 => select(vec![16usize, 17, 20, 23, 26, 29, 30, 33]), // IPv4 lengths, addresses
        3 => 42usize..400,                                      // the data, DHCP's options
        1 => 0usize..12,                                        // MACs
    ];
    let damage = (place, any::<u8>(), any::<bool>());
    (
        select(names.to_vec()),
        proptest::collection::vec(damage, 0..4),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(0usize..400),
    )
        .prop_map(|(name, damages, repair_ip, repair_udp, cut)| {
            let mut frame = fixtures::load(name);
            for (at, value, flip) in damages {
                if let Some(byte) = frame.get_mut(at) {
                    *byte = if flip { *byte ^ (value | 1) } else { value };
                }
            }
            if let Some(cut) = cut {
                frame.truncate(cut.max(14));
            }
            repair(&mut frame, repair_ip, repair_udp);
            frame
        })
}

fn judge_udp(frame: &[u8]) -> Result<(), TestCaseError> {
    let mut out = vec![0xa5u8; frame.len()];
    let outcome =
        respond(&US, Services::WITH_UDP, &mut Idents::new(9), Timestamp(NOW), frame, &mut out);
    let reply = outcome.ok().map(|r| &out[..r.len()]);
    if outcome.is_err() {
        prop_assert!(out.iter().all(|&b| b == 0xa5), "dropped ({outcome:?}) but wrote");
    }
    check_with_udp(frame, reply, Clock::At(NOW))
        .map_err(|why| TestCaseError::fail(format!("{outcome:?}: {why}")))
}

/// Sends `frame` to a fresh server (or `dhcp`), and checks any reply with the oracle.
fn judge_dhcp(dhcp: &mut Dhcp, now: Instant, frame: &[u8]) -> Result<(), TestCaseError> {
    let mut out = vec![0xa5u8; 1514];
    let handled = dhcp.handle(now, &mut Idents::new(9), frame, &mut out);
    match handled {
        Some(Ok(h)) => {
            if let Some(reply) = h.reply {
                check_dhcp_reply(frame, &out[..reply.len()]).map_err(|why| {
                    TestCaseError::fail(format!("{h:?}: {why}\nframe {}", oracle::hex(frame)))
                })?;
            } else {
                prop_assert!(matches!(h.event, Event::Released(_) | Event::Declined(_)));
            }
        }
        _ => prop_assert!(out.iter().all(|&b| b == 0xa5), "no reply ({handled:?}) but wrote"),
    }
    Ok(())
}

fn lab_server() -> Dhcp {
    Dhcp::new(DhcpConfig::lab(US))
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn damaged_udp_datagrams_get_only_the_exact_echo(frame in damaged(&UDP_FIXTURES)) {
        judge_udp(&frame)?;
    }

    #[test]
    fn damaged_dhcp_messages_get_only_well_formed_replies(frame in damaged(&DHCP_FIXTURES)) {
        judge_dhcp(&mut lab_server(), Instant::now(), &frame)?;
        judge_udp(&frame)?;
    }

    #[test]
    fn random_bytes_behind_udp_headers(
        sport in select(vec![0u16, 7, 19, 68, 1234, 65535]),
        dport in select(vec![7u16, 67, 68, 9]),
        body in proptest::collection::vec(any::<u8>(), 0..600),
        ulen_delta in -9i32..9,
        zero_checksum in any::<bool>(),
    ) {
        let mut frame = fixtures::load("udp_echo_request_0");
        frame.truncate(42);
        frame.extend_from_slice(&body);
        let total = (28 + body.len()) as u16;
        frame[16..18].copy_from_slice(&total.to_be_bytes());
        frame[34..36].copy_from_slice(&sport.to_be_bytes());
        frame[36..38].copy_from_slice(&dport.to_be_bytes());
        let ulen = (8 + body.len() as i32 + ulen_delta).clamp(0, 65535) as u16;
        frame[38..40].copy_from_slice(&ulen.to_be_bytes());
        repair(&mut frame, true, true);
        if zero_checksum {
            frame[40..42].fill(0);
        }
        judge_udp(&frame)?;
        judge_dhcp(&mut lab_server(), Instant::now(), &frame)?;
    }
}

/// One client message in a random conversation: which client, what it sends.
#[derive(Debug, Clone)]
enum Message {
    Discover(u8),
    /// SELECTING: our server id and a requested address.
    Select(u8, u8),
    /// INIT-REBOOT: a requested address, no server id.
    Reboot(u8, u8),
    Renew(u8, u8),
    Release(u8, u8),
    Wait(u16),
}

fn message() -> impl Strategy<Value = Message> {
    let client = 0u8..6;
    let host = select(vec![99u8, 100, 101, 102, 103, 150, 199, 200, 2, 1]);
    prop_oneof![
        3 => client.clone().prop_map(Message::Discover),
        3 => (client.clone(), host.clone()).prop_map(|(c, h)| Message::Select(c, h)),
        1 => (client.clone(), host.clone()).prop_map(|(c, h)| Message::Reboot(c, h)),
        1 => (client.clone(), host.clone()).prop_map(|(c, h)| Message::Renew(c, h)),
        1 => (client, host).prop_map(|(c, h)| Message::Release(c, h)),
        1 => (0u16..4000).prop_map(Message::Wait),
    ]
}

/// udhcpc's captured DISCOVER made into `message` from client `c` (options rewritten,
/// checksums repaired by the caller).
fn build(message: &Message) -> Option<Vec<u8>> {
    let base = fixtures::load("dhcp_discover");
    let (client, kind, options, ciaddr): (u8, u8, Vec<u8>, [u8; 4]) = match *message {
        Message::Discover(c) => (c, 1, vec![], [0; 4]),
        Message::Select(c, h) => {
            (c, 3, [vec![50, 4, 172, 16, 1, h], vec![54, 4, 172, 16, 1, 2]].concat(), [0; 4])
        }
        Message::Reboot(c, h) => (c, 3, vec![50, 4, 172, 16, 1, h], [0; 4]),
        Message::Renew(c, h) => (c, 3, vec![], [172, 16, 1, h]),
        Message::Release(c, h) => (c, 7, vec![54, 4, 172, 16, 1, 2], [172, 16, 1, h]),
        Message::Wait(_) => return None,
    };
    let mac = [0x02, 0, 0, 0, 0x10, client];
    let mut frame = base[..42 + 240].to_vec();
    frame[6..12].copy_from_slice(&mac);
    frame[42 + 12..42 + 16].copy_from_slice(&ciaddr);
    frame[42 + 28..42 + 34].copy_from_slice(&mac);
    frame.extend_from_slice(&[53, 1, kind]);
    frame.extend_from_slice(&options);
    frame.push(255);
    if ciaddr != [0; 4] {
        // Renewals and releases come unicast from the client's address to ours.
        frame[0..6].copy_from_slice(&OUR_MAC);
        frame[26..30].copy_from_slice(&ciaddr);
        frame[30..34].copy_from_slice(&OUR_IP);
    }
    let udp_len = (frame.len() - 34) as u16;
    frame[38..40].copy_from_slice(&udp_len.to_be_bytes());
    frame[16..18].copy_from_slice(&(udp_len + 20).to_be_bytes());
    repair(&mut frame, true, true);
    Some(frame)
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn the_lease_table_never_gives_one_address_twice(messages in proptest::collection::vec(message(), 1..40)) {
        let mut dhcp = lab_server();
        let mut now = Instant::now();
        for message in &messages {
            let Some(frame) = build(message) else {
                if let Message::Wait(secs) = message {
                    now += Duration::from_secs(u64::from(*secs));
                }
                continue;
            };
            judge_dhcp(&mut dhcp, now, &frame)?;
            let leases = dhcp.leases();
            let ips: HashSet<Ipv4Addr> = leases.iter().map(|l| l.ip).collect();
            let macs: HashSet<MacAddr> = leases.iter().map(|l| l.mac).collect();
            prop_assert_eq!(ips.len(), leases.len(), "an address held twice: {:?}", leases);
            prop_assert_eq!(macs.len(), leases.len(), "a client with two rows: {:?}", leases);
            for lease in leases {
                let [a, b, c, d] = lease.ip.octets();
                prop_assert!([a, b, c] == [172, 16, 1] && (100..=199).contains(&d), "{:?}", lease);
            }
        }
    }
}

#[test]
fn the_udp_oracle_agrees_with_the_kernel_on_its_own_datagrams() {
    // The kernel computed these checksums; the oracle must find them right.
    for name in UDP_FIXTURES.iter().chain(&DHCP_FIXTURES) {
        let frame = fixtures::load(name);
        let udp = &frame[34..];
        let ulen = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        assert!(
            oracle::udp::udp_checksum_ok(&frame[26..30], &frame[30..34], &udp[..ulen]),
            "{name}"
        );
        let mut zeroed = udp[..ulen].to_vec();
        zeroed[6..8].fill(0);
        assert_eq!(
            oracle::udp::udp_checksum(&frame[26..30], &frame[30..34], &zeroed).to_be_bytes(),
            udp[6..8],
            "{name}"
        );
    }
}

#[test]
fn the_conversations_reach_every_kind_of_reply() {
    // A search that never reaches an ACK or a NAK proves nothing about them.
    let mut dhcp = lab_server();
    let now = Instant::now();
    let mut seen = HashSet::new();
    for message in [
        Message::Discover(1),
        Message::Select(1, 100),
        Message::Renew(1, 100),
        Message::Select(2, 100),
        Message::Release(1, 100),
    ] {
        let frame = build(&message).unwrap();
        let mut out = vec![0u8; 1514];
        if let Some(Ok(h)) = dhcp.handle(now, &mut Idents::new(1), &frame, &mut out) {
            seen.insert(std::mem::discriminant(&h.event));
        }
    }
    assert_eq!(seen.len(), 4, "offer, ack, nak and release");
}
