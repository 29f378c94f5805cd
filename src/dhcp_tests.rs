//! The DHCP server's tests, on messages busybox udhcpc sent (tests/fixtures/dhcp_*.hex).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::*;
use crate::wire::checksum;
use crate::wire::fixtures::fixture;

const US: Host = Host {
    ip: Ipv4Addr::new(172, 16, 1, 2),
    ip6: crate::cli::DEFAULT_IP6,
    mac: MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]),
};
/// The client of the captured exchange (the kernel's side of tap4).
const CLIENT: MacAddr = MacAddr([0x76, 0xd9, 0xdc, 0x34, 0x73, 0xa4]);
const FIRST: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 100);

/// A server and a clock that the test moves on.
struct Lab {
    dhcp: Dhcp,
    start: Instant,
    now: Instant,
    idents: Idents,
}

impl Lab {
    fn new() -> Lab {
        let start = Instant::now();
        Lab { dhcp: Dhcp::new(DhcpConfig::lab(US)), start, now: start, idents: Idents::new(5) }
    }

    fn send(&mut self, frame: &[u8]) -> Result<(Event, Option<Vec<u8>>), DropReason> {
        let mut out = vec![0xa5u8; 1514];
        let handled = self
            .dhcp
            .handle(self.now, &mut self.idents, frame, &mut out)
            .expect("a message to port 67 is the DHCP server's")?;
        let reply = handled.reply.map(|reply| out[..reply.len()].to_vec());
        Ok((handled.event, reply))
    }

    fn later(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
    }
}

/// The parts of a reply frame a client reads.
#[derive(Debug)]
struct Seen {
    dst_mac: MacAddr,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    ports: (u16, u16),
    xid: u32,
    flags: u16,
    ciaddr: Ipv4Addr,
    yiaddr: Ipv4Addr,
    chaddr: MacAddr,
    options: Vec<(u8, Vec<u8>)>,
}

fn read(frame: &[u8]) -> Seen {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((ip.ttl(), ip.protocol()), (64, IpProtocol::Udp));
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_ne!(udp.checksum(), 0);
    assert!(udp.verify_checksum(ip.src_addr(), ip.dst_addr()));
    let msg = DhcpPacket::new_checked(udp.payload()).unwrap();
    assert_eq!(udp.payload().len(), dhcp::MIN_MESSAGE_LEN, "padded to BOOTP's 300 bytes");
    assert_eq!((msg.op(), msg.htype(), msg.hlen(), msg.hops()), (2, 1, 6, 0));
    assert_eq!(msg.siaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(msg.giaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(udp.payload()[34..236].iter().all(|&b| b == 0), "chaddr padding, sname, file");
    Seen {
        dst_mac: eth.dst_addr(),
        src_ip: ip.src_addr(),
        dst_ip: ip.dst_addr(),
        ports: (udp.src_port(), udp.dst_port()),
        xid: msg.xid(),
        flags: msg.flags(),
        ciaddr: msg.ciaddr(),
        yiaddr: msg.yiaddr(),
        chaddr: msg.client_mac(),
        options: msg.options().map(|o| o.map(|(c, v)| (c, v.to_vec())).unwrap()).collect(),
    }
}

fn option(seen: &Seen, code: u8) -> Option<&[u8]> {
    seen.options.iter().find(|(c, _)| *c == code).map(|(_, v)| &v[..])
}

/// Changes the DHCP message of a frame (IPv4 without options), then fixes the UDP
/// checksum so that only the change is tested.
fn with_dhcp(frame: &[u8], change: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut msg = frame[42..].to_vec();
    change(&mut msg);
    let mut f = frame[..42].to_vec();
    f.extend_from_slice(&msg);
    let udp_len = (8 + msg.len()) as u16;
    f[38..40].copy_from_slice(&udp_len.to_be_bytes());
    let total = (20 + 8 + msg.len()) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    let (src, dst) =
        (Ipv4Addr::new(f[26], f[27], f[28], f[29]), Ipv4Addr::new(f[30], f[31], f[32], f[33]));
    UdpPacket::new_unchecked(&mut f[34..]).fill_checksum(src, dst);
    f
}

/// The options of a message (up to End), the End excluded.
fn options_of(msg: &[u8]) -> Vec<u8> {
    let mut at = 240;
    while msg[at] != 255 {
        at += if msg[at] == 0 { 1 } else { 2 + usize::from(msg[at + 1]) };
    }
    msg[240..at].to_vec()
}

/// A message whose options are `options` then End.
fn with_options(frame: &[u8], options: &[u8]) -> Vec<u8> {
    with_dhcp(frame, |msg| {
        msg.truncate(240);
        msg.extend_from_slice(options);
        msg.push(255);
    })
}

#[test]
fn udhcpc_gets_the_lease_it_got_in_the_lab() {
    // The captured exchange, replayed: the OFFER and the ACK it answered.
    let mut lab = Lab::new();
    let (event, offer) = lab.send(&fixture!("dhcp_exchange_discover")).unwrap();
    assert_eq!(event, Event::Offered(FIRST));
    let offer = read(&offer.unwrap());
    assert_eq!(offer.xid, 0xe3bc_572c);
    assert_eq!((offer.yiaddr, offer.ciaddr, offer.chaddr), (FIRST, Ipv4Addr::UNSPECIFIED, CLIENT));
    assert_eq!(option(&offer, option::MESSAGE_TYPE), Some(&[2][..]));
    assert_eq!(option(&offer, option::SERVER_ID), Some(&[172, 16, 1, 2][..]));

    let (event, ack) = lab.send(&fixture!("dhcp_request_selecting")).unwrap();
    assert_eq!(event, Event::Acked(FIRST));
    let ack = read(&ack.unwrap());
    assert_eq!(option(&ack, option::MESSAGE_TYPE), Some(&[5][..]));
    assert_eq!(option(&ack, option::LEASE_TIME), Some(&3600u32.to_be_bytes()[..]));
    assert_eq!(option(&ack, option::RENEWAL_TIME), Some(&1800u32.to_be_bytes()[..]));
    assert_eq!(option(&ack, option::REBINDING_TIME), Some(&3150u32.to_be_bytes()[..]));
    assert_eq!(option(&ack, option::SUBNET_MASK), Some(&[255, 255, 255, 0][..]));
    assert_eq!(option(&ack, option::ROUTER), Some(&[172, 16, 1, 1][..]));
    let lease = lab.dhcp.leases()[0];
    assert_eq!((lease.mac, lease.ip, lease.bound), (CLIENT, FIRST, true));

    // Renewing (unicast from the leased address, ciaddr set): ACK to ciaddr, ciaddr kept.
    lab.later(1800);
    let (event, ack) = lab.send(&fixture!("dhcp_request_renewing")).unwrap();
    assert_eq!(event, Event::Acked(FIRST));
    let ack = read(&ack.unwrap());
    assert_eq!((ack.dst_mac, ack.dst_ip, ack.ciaddr), (CLIENT, FIRST, FIRST));
    assert_eq!(lab.dhcp.leases()[0].expires, lab.now + Duration::from_secs(3600));

    // RELEASE: no reply, the address is free again.
    let (event, reply) = lab.send(&fixture!("dhcp_release")).unwrap();
    assert_eq!((event, reply), (Event::Released(FIRST), None));
    assert!(lab.dhcp.leases().is_empty());
}

#[test]
fn replies_are_addressed_as_rfc_2131_section_4_1_says() {
    let discover = fixture!("dhcp_exchange_discover");
    // No BROADCAST bit, no ciaddr: to the client's MAC and the offered address.
    let offer = read(&Lab::new().send(&discover).unwrap().1.unwrap());
    assert_eq!((offer.dst_mac, offer.src_ip, offer.dst_ip), (CLIENT, US.ip, FIRST));
    assert_eq!(offer.ports, (67, 68));
    // BROADCAST bit: to everybody, and the flag comes back.
    let asks_broadcast = with_dhcp(&discover, |m| m[10] = 0x80);
    let offer = read(&Lab::new().send(&asks_broadcast).unwrap().1.unwrap());
    assert_eq!(
        (offer.dst_mac, offer.dst_ip, offer.flags),
        (MacAddr::BROADCAST, Ipv4Addr::BROADCAST, 0x8000)
    );
    // A NAK always goes to everybody (the client may not have the address it thinks).
    let mut lab = Lab::new();
    let wrong = with_dhcp(&fixture!("dhcp_request_selecting"), |m| m[10] = 0);
    let (event, nak) = lab.send(&wrong).unwrap();
    assert_eq!(event, Event::Naked);
    let nak = read(&nak.unwrap());
    assert_eq!(
        (nak.dst_mac, nak.dst_ip, nak.yiaddr),
        (MacAddr::BROADCAST, Ipv4Addr::BROADCAST, Ipv4Addr::UNSPECIFIED)
    );
    assert_eq!(nak.options, [(53, vec![6]), (54, vec![172, 16, 1, 2])]);
}

#[test]
fn naks_an_address_it_did_not_offer() {
    let mut lab = Lab::new();
    // 02:00:00:00:00:01 is offered .100 first; then the other client asks for .100.
    assert_eq!(lab.send(&fixture!("dhcp_discover")).unwrap().0, Event::Offered(FIRST));
    let (event, _) = lab.send(&fixture!("dhcp_exchange_discover")).unwrap();
    assert_eq!(event, Event::Offered(Ipv4Addr::new(172, 16, 1, 101)));
    assert_eq!(lab.send(&fixture!("dhcp_request_selecting")).unwrap().0, Event::Naked);
}

#[test]
fn init_reboot_on_another_subnet_gets_a_nak_and_without_record_silence() {
    let request = fixture!("dhcp_request_selecting");
    let options = options_of(&request[42..]);
    // INIT-REBOOT: option 50, no option 54. udhcpc's options: 53 3, 50 (4), 54 (4), ...
    let without_server_id = [&options[..9], &options[15..]].concat();
    let elsewhere = {
        let mut o = without_server_id.clone();
        o[5..9].copy_from_slice(&[10, 0, 0, 7]);
        o
    };
    let mut lab = Lab::new();
    assert_eq!(lab.send(&with_options(&request, &elsewhere)).unwrap().0, Event::Naked);
    assert_eq!(
        lab.send(&with_options(&request, &without_server_id)),
        Err(DropReason::DhcpNotForUs)
    );
    // With a record of the client (a lease), INIT-REBOOT for its address is ACKed.
    lab.send(&fixture!("dhcp_exchange_discover")).unwrap();
    lab.send(&request).unwrap();
    let (event, _) = lab.send(&with_options(&request, &without_server_id)).unwrap();
    assert_eq!(event, Event::Acked(FIRST));
}

#[test]
fn a_request_for_another_server_frees_our_offer() {
    let mut lab = Lab::new();
    lab.send(&fixture!("dhcp_exchange_discover")).unwrap();
    let request = fixture!("dhcp_request_selecting");
    let mut options = options_of(&request[42..]);
    options[11..15].copy_from_slice(&[172, 16, 1, 3]);
    assert_eq!(lab.send(&with_options(&request, &options)), Err(DropReason::DhcpNotForUs));
    assert!(lab.dhcp.leases().is_empty());
}

#[test]
fn lease_times_are_ours_to_choose() {
    // RFC 2131 4.3.1: the server may give less than asked. A request for 0xffffffff
    // ("infinity") gets our hour, a request for 10 s our minimum.
    let discover = fixture!("dhcp_exchange_discover");
    let options = options_of(&discover[42..]);
    for (asked, given) in [(u32::MAX, 3600u32), (600, 600), (10, 60)] {
        let o = [&options[..], &[51, 4], &asked.to_be_bytes()[..]].concat();
        let offer = read(&Lab::new().send(&with_options(&discover, &o)).unwrap().1.unwrap());
        assert_eq!(option(&offer, option::LEASE_TIME), Some(&given.to_be_bytes()[..]), "{asked}");
    }
}

#[test]
fn offers_expire_and_leases_last_their_time() {
    let mut lab = Lab::new();
    lab.send(&fixture!("dhcp_exchange_discover")).unwrap();
    lab.later(61);
    // The offer is gone: the REQUEST for it is refused.
    assert_eq!(lab.send(&fixture!("dhcp_request_selecting")).unwrap().0, Event::Naked);
    lab.send(&fixture!("dhcp_exchange_discover")).unwrap();
    lab.send(&fixture!("dhcp_request_selecting")).unwrap();
    lab.later(3599);
    assert_eq!(lab.dhcp.leases().len(), 1);
    // Another client's DISCOVER after the hour finds .100 free again.
    lab.later(2);
    assert_eq!(lab.send(&fixture!("dhcp_discover")).unwrap().0, Event::Offered(FIRST));
    assert!(lab.now > lab.start);
}

#[test]
fn the_pool_runs_out() {
    let mut lab = Lab::new();
    let discover = fixture!("dhcp_discover");
    for i in 0..100u8 {
        let mac = [0x02, 0, 0, 0, 1, i];
        let frame = with_dhcp(&discover, |m| m[28..34].copy_from_slice(&mac));
        let mut frame = frame;
        frame[6..12].copy_from_slice(&mac);
        assert_eq!(lab.send(&frame).unwrap().0, Event::Offered(Ipv4Addr::new(172, 16, 1, 100 + i)));
    }
    assert_eq!(lab.send(&discover), Err(DropReason::DhcpPoolExhausted));
    assert_eq!(lab.dhcp.leases().len(), 100);
}

#[test]
fn hostile_messages_are_dropped_with_a_reason() {
    let discover = fixture!("dhcp_exchange_discover");
    let options = options_of(&discover[42..]);
    let mut lab = Lab::new();
    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("wrong magic cookie", with_dhcp(&discover, |m| m[236] = 0x64), DropReason::DhcpMalformed),
        (
            "no End option",
            with_dhcp(&discover, |m| {
                m.truncate(240);
                m.extend_from_slice(&options);
            }),
            DropReason::DhcpMalformed,
        ),
        (
            "an option past the end",
            with_dhcp(&discover, |m| {
                m.truncate(240);
                m.extend_from_slice(&[53, 1, 1, 12, 9, b'x']);
            }),
            DropReason::DhcpMalformed,
        ),
        (
            "option overload",
            with_options(&discover, &[&options[..], &[52, 1, 3]].concat()),
            DropReason::DhcpMalformed,
        ),
        (
            "requested IP of 3 bytes",
            with_options(&discover, &[&options[..], &[50, 3, 1, 2, 3]].concat()),
            DropReason::DhcpMalformed,
        ),
        (
            "message type of 2 bytes",
            with_options(&discover, &[53, 2, 1, 1]),
            DropReason::DhcpMalformed,
        ),
        ("no message type (BOOTP)", with_options(&discover, &[]), DropReason::DhcpMalformed),
        (
            "fixed part cut short",
            with_dhcp(&discover, |m| m.truncate(200)),
            DropReason::DhcpMalformed,
        ),
        (
            "a BOOTREPLY to the server",
            with_dhcp(&discover, |m| m[0] = 2),
            DropReason::DhcpMalformed,
        ),
        (
            "through a relay",
            with_dhcp(&discover, |m| m[24..28].copy_from_slice(&[10, 0, 0, 1])),
            DropReason::DhcpRelayed,
        ),
        (
            "chaddr not the frame's source",
            with_dhcp(&discover, |m| m[33] ^= 1),
            DropReason::DhcpBadClient,
        ),
        ("chaddr multicast", with_dhcp(&discover, |m| m[28] = 1), DropReason::DhcpBadClient),
        (
            "an OFFER sent to the server",
            with_options(&discover, &[53, 1, 2]),
            DropReason::DhcpNotForUs,
        ),
        ("an INFORM", with_options(&discover, &[53, 1, 8]), DropReason::DhcpNotForUs),
        (
            "bad UDP checksum",
            {
                let mut f = discover.clone();
                f[300] ^= 1;
                f
            },
            DropReason::UdpBadChecksum,
        ),
        (
            "bad IPv4 checksum",
            {
                let mut f = discover.clone();
                f[24] ^= 1;
                f
            },
            DropReason::Ipv4BadChecksum,
        ),
        (
            "from a group MAC",
            {
                let mut f = discover.clone();
                f[6] |= 1;
                f
            },
            DropReason::BadSourceMac,
        ),
        (
            "to another host's MAC",
            {
                let mut f = discover.clone();
                f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
                f
            },
            DropReason::NotOurMac,
        ),
        ("a RELEASE of nothing", fixture!("dhcp_release"), DropReason::DhcpNotForUs),
        ("a RENEW without a lease", fixture!("dhcp_request_renewing"), DropReason::DhcpNotForUs),
    ];
    for (what, frame, reason) in cases {
        assert_eq!(lab.send(&frame), Err(reason), "{what}");
    }
    assert!(lab.dhcp.leases().is_empty(), "nothing hostile took an address");
}

#[test]
fn from_the_wrong_addresses_or_ports_is_dropped() {
    let discover = fixture!("dhcp_exchange_discover");
    let ip = |change: fn(&mut [u8])| {
        let mut f = discover.clone();
        change(&mut f[14..34]);
        Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
        let src = Ipv4Addr::new(f[26], f[27], f[28], f[29]);
        let dst = Ipv4Addr::new(f[30], f[31], f[32], f[33]);
        UdpPacket::new_unchecked(&mut f[34..]).fill_checksum(src, dst);
        f
    };
    let mut lab = Lab::new();
    assert_eq!(
        lab.send(&ip(|h| h[12..16].copy_from_slice(&[10, 0, 0, 7]))),
        Err(DropReason::Ipv4BadSource)
    );
    assert_eq!(
        lab.send(&ip(|h| h[16..20].copy_from_slice(&[172, 16, 1, 255]))),
        Err(DropReason::Ipv4NotForUs)
    );
    assert_eq!(lab.send(&ip(|h| h[6] = 0x20)), Err(DropReason::Ipv4Fragment));
    let mut from_67 = discover.clone();
    from_67[34..36].copy_from_slice(&67u16.to_be_bytes());
    from_67[40..42].copy_from_slice(&[0, 0]);
    assert_eq!(lab.send(&from_67), Err(DropReason::DhcpMalformed));
}

#[test]
fn what_is_not_for_port_67_is_left_to_respond() {
    let mut dhcp = Dhcp::new(DhcpConfig::lab(US));
    let mut out = [0u8; 1514];
    for frame in [
        fixture!("udp_echo_request_5"),
        fixture!("icmp_echo_request_56"),
        fixture!("arp_request_arping"),
        vec![],
    ] {
        assert_eq!(dhcp.handle(Instant::now(), &mut Idents::new(1), &frame, &mut out), None);
    }
}

#[test]
fn every_truncation_of_a_real_message_is_dropped_not_a_panic() {
    let request = fixture!("dhcp_request_selecting");
    for len in 0..request.len() {
        let mut lab = Lab::new();
        let mut out = vec![0u8; 1514];
        if let Some(Ok(handled)) =
            lab.dhcp.handle(lab.now, &mut lab.idents, &request[..len], &mut out)
        {
            panic!("{len} bytes were handled: {handled:?}");
        }
    }
}

#[test]
fn a_small_output_buffer_is_reported_not_a_panic() {
    let mut dhcp = Dhcp::new(DhcpConfig::lab(US));
    let mut out = [0u8; 341];
    let frame = fixture!("dhcp_exchange_discover");
    assert_eq!(
        dhcp.handle(Instant::now(), &mut Idents::new(1), &frame, &mut out),
        Some(Err(DropReason::NoRoom))
    );
}

#[test]
fn the_reply_checksum_agrees_with_an_independent_sum() {
    let reply = Lab::new().send(&fixture!("dhcp_exchange_discover")).unwrap().1.unwrap();
    let udp = &reply[34..];
    let mut pseudo = vec![172, 16, 1, 2, 172, 16, 1, 100, 0, 17];
    pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    assert!(checksum::verify(&[&pseudo[..], udp].concat()));
}
