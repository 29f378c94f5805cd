//! End to end, hostile: frames crafted byte by byte are written into tap4 from the
//! kernel's side of a namespace (a raw `AF_PACKET` socket, as a VM or an attacker on the
//! link could send them), and the kernel's own tools send what they can of the same kind
//! (`arping -b`, `ping -b`, fragments). 05 runs as an unprivileged user.
//!
//! A second packet socket captures everything on tap4 in both directions. Every frame
//! the responder sent must be exactly the reply the oracle (`oracle/mod.rs`) derives from
//! one of the requests that deserve one, and every such request must get its reply; so
//! nothing wrong comes back and nothing right is missing. Afterwards 05 still answers
//! the kernel's `ping`, and its counters show each frame under the expected reason.
//!
//! IPv4 options get a test of their own: the malformed ones Linux answers with ICMP
//! Parameter Problem (each case was first sent to a Linux kernel over a veth pair, and
//! the pointer it answered with is written down here) and the legal ones `ping -R` and
//! `ping -T` cannot send.

use tapbook_lab as common;
use tapbook_lab::require_lab;
use tapbook_testkit::{fixtures, oracle};

use std::collections::BTreeMap;
use std::fs::File;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::{Lab, RESPONDER_IP, UNPRIVILEGED_USER, ping_counts};
use tapbook::respond::{DropReason, Timestamp};

const BIN_05: &str = env!("CARGO_BIN_EXE_05_full_responder");

// ---- raw frames on tap4 ---------------------------------------------------------------

/// A frame seen on tap4 by a capturing packet socket.
#[derive(Debug, Clone)]
struct Seen {
    /// Sent by the kernel's side (our crafted frames, ping, arping): the requests.
    outgoing: bool,
    bytes: Vec<u8>,
}

/// A raw `AF_PACKET` socket bound to an interface of a network namespace: what it sends
/// goes out of that interface (to the program holding the TAP), and it receives copies
/// of every frame crossing the interface in either direction.
struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    fn open(netns: &str, iface: &str) -> PacketSocket {
        let (netns, iface) = (netns.to_owned(), iface.to_owned());
        // setns() moves only the calling thread: do it in a thread of its own, and the
        // socket stays in that namespace after the thread has ended.
        std::thread::spawn(move || {
            let ns = File::open(format!("/var/run/netns/{netns}")).expect("the lab's netns");
            // SAFETY: plain system calls on descriptors we own; `addr` and the option
            // values are fully initialised and outlive the calls that read them.
            unsafe {
                assert_eq!(libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET), 0, "setns");
                let all = (libc::ETH_P_ALL as u16).to_be();
                let fd =
                    libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, all.into());
                assert!(fd >= 0, "socket(AF_PACKET): {}", std::io::Error::last_os_error());
                let fd = OwnedFd::from_raw_fd(fd);
                let index = nix::net::if_::if_nametoindex(iface.as_str()).expect("tap4 exists");
                let mut addr: libc::sockaddr_ll = zeroed();
                addr.sll_family = libc::AF_PACKET as u16;
                addr.sll_protocol = all;
                addr.sll_ifindex = index as i32;
                let rc = libc::bind(
                    fd.as_raw_fd(),
                    (&raw const addr).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                );
                assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
                let timeout = libc::timeval { tv_sec: 0, tv_usec: 20_000 };
                let buffer: libc::c_int = 4 << 20;
                for (option, value, len) in [
                    (libc::SO_RCVTIMEO, (&raw const timeout).cast(), size_of::<libc::timeval>()),
                    (libc::SO_RCVBUF, (&raw const buffer).cast(), size_of::<libc::c_int>()),
                ] {
                    let rc = libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_SOCKET,
                        option,
                        value,
                        len as u32,
                    );
                    assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
                }
                PacketSocket { fd }
            }
        })
        .join()
        .expect("opening a packet socket in the lab")
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: the pointer and length describe `frame`, which outlives the call.
        let sent =
            unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            sent,
            frame.len() as isize,
            "sending {} bytes: {}",
            frame.len(),
            std::io::Error::last_os_error()
        );
    }

    /// The next frame seen on the interface, or `None` if none comes within 20 ms.
    fn recv(&self) -> Option<Seen> {
        let mut buf = vec![0u8; 70_000];
        // SAFETY: as in `open`; `from` and `len` are initialised and ours.
        let mut from: libc::sockaddr_ll = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
                (&raw mut from).cast(),
                &mut len,
            )
        };
        if n < 0 {
            return None; // the receive timeout
        }
        assert!((n as usize) <= buf.len(), "a frame of {n} bytes did not fit");
        buf.truncate(n as usize);
        Some(Seen { outgoing: from.sll_pkttype == libc::PACKET_OUTGOING, bytes: buf })
    }

    /// Everything seen until `done` holds for a frame (and 100 ms more), or `timeout`.
    fn capture_until(&self, timeout: Duration, mut done: impl FnMut(&Seen) -> bool) -> Vec<Seen> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        let mut finished: Option<Instant> = None;
        while Instant::now() < finished.unwrap_or(deadline) {
            if let Some(frame) = self.recv() {
                if finished.is_none() && done(&frame) {
                    finished = Some(Instant::now() + Duration::from_millis(100));
                }
                seen.push(frame);
            }
        }
        assert!(finished.is_some(), "the end marker never came back within {timeout:?}");
        seen
    }
}

/// A lab with 05 running as an unprivileged user, IPv6 off on tap4 (so that the kernel
/// sends nothing of its own and the counters are exact), and two packet sockets on it.
fn hostile_lab(tag: &str, mtu: &str) -> (Lab, common::Responder, PacketSocket, PacketSocket) {
    let mut lab = Lab::with_owner(tag, UNPRIVILEGED_USER);
    common::run_ok(lab.command("sysctl").args(["-qw", "net.ipv6.conf.tap4.disable_ipv6=1"]));
    lab.ip(&["link", "set", "tap4", "mtu", mtu]);
    let capture = PacketSocket::open(&lab.netns, &lab.iface);
    let sender = PacketSocket::open(&lab.netns, &lab.iface);
    let responder = lab.start(BIN_05, &[], Some(UNPRIVILEGED_USER));
    (lab, responder, capture, sender)
}

// ---- the frames -------------------------------------------------------------------------

fn fixture(name: &str) -> Vec<u8> {
    fixtures::load(name)
}

fn patch(frame: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[at..at + bytes.len()].copy_from_slice(bytes);
    f
}

/// Patches, then repairs both checksums so that only the patch is being tested.
fn patch_fixed(frame: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut f = patch(frame, at, bytes);
    oracle::repair_checksums(&mut f, true, true);
    f
}

/// `frame` (an echo request with a 20-byte header) with `options` (a multiple of 4 bytes)
/// in its IPv4 header, lengths and checksums to match.
fn with_options(frame: &[u8], options: &[u8]) -> Vec<u8> {
    let mut f = [&frame[..34], options, &frame[34..]].concat();
    f[14] = 0x45 + (options.len() / 4) as u8;
    let total = u16::from_be_bytes([f[16], f[17]]) + options.len() as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    oracle::repair_checksums(&mut f, true, true);
    f
}

/// An option of length 1: Linux's Parameter Problem points at it (byte 20).
const BAD_OPTION: [u8; 4] = [7, 1, 0, 0];

/// A marker at the end of a burst: an echo request with identifier 0xbeef. The responder
/// handles frames in order, so once its reply is back every earlier frame was handled.
fn end_marker(seq: u16) -> Vec<u8> {
    let ping = fixture("icmp_echo_request_56");
    let mut f = patch(&ping, 38, &[0xbe, 0xef]);
    f[40..42].copy_from_slice(&seq.to_be_bytes());
    oracle::repair_checksums(&mut f, true, true);
    f
}

fn is_marker_reply(seen: &Seen, seq: u16) -> bool {
    !seen.outgoing
        && seen.bytes.len() > 42
        && seen.bytes[34] == 0
        && seen.bytes[38..42] == [0xbe, 0xef, (seq >> 8) as u8, seq as u8]
}

/// Frames that must get no reply, each with the reason 05 must count it under.
fn hostile_frames() -> Vec<(&'static str, Vec<u8>, DropReason)> {
    let arp = fixture("arp_request_arping");
    let ping = fixture("icmp_echo_request_56");
    let ping0 = fixture("icmp_echo_request_0");
    let opts = fixture("icmp_echo_request_options");
    let vlan = [&ping[..12], &[0x81, 0x00, 0x00, 0x07], &ping[12..]].concat();
    let qinq =
        [&ping[..12], &[0x88, 0xa8, 0x00, 0x07, 0x81, 0x00, 0x00, 0x07], &ping[12..]].concat();
    vec![
        ("Ethernet header only", ping[..14].to_vec(), DropReason::Truncated),
        ("ARP cut at 41 bytes", arp[..41].to_vec(), DropReason::Truncated),
        ("IPv4 header cut at 33 bytes", ping[..33].to_vec(), DropReason::Truncated),
        ("ping cut one byte short", ping[..97].to_vec(), DropReason::Truncated),
        (
            "total length past the frame",
            patch_fixed(&ping, 16, &[0x05, 0xdc]),
            DropReason::Truncated,
        ),
        (
            "ICMP shorter than its header",
            patch_fixed(&ping0[..40], 16, &[0, 26]),
            DropReason::Truncated,
        ),
        ("echo to another MAC", patch(&ping, 0, &[2, 0, 0, 0, 0, 9]), DropReason::NotOurMac),
        ("echo to the broadcast MAC", patch(&ping, 0, &[0xff; 6]), DropReason::NotOurMac),
        ("ARP to a multicast MAC", patch(&arp, 0, &[1, 0, 0x5e, 0, 0, 1]), DropReason::NotOurMac),
        ("from a group MAC", patch(&ping, 6, &[0x01]), DropReason::BadSourceMac),
        ("from the broadcast MAC", patch(&arp, 6, &[0xff; 6]), DropReason::BadSourceMac),
        ("802.1Q tagged echo", vlan, DropReason::VlanTagged),
        ("802.1ad Q-in-Q echo", qinq, DropReason::VlanTagged),
        ("IPv6 router solicitation", fixture("ipv6_router_solicitation"), DropReason::Ipv6NotForUs),
        ("UDP", patch_fixed(&ping, 23, &[17]), DropReason::OtherProtocol),
        (
            "802.3 length, not an EtherType",
            patch(&ping, 12, &[0x00, 0x54]),
            DropReason::OtherProtocol,
        ),
        ("ARP for token ring", patch(&arp, 15, &[6]), DropReason::ArpUnsupported),
        ("ARP for IPv6", patch(&arp, 16, &[0x86, 0xdd]), DropReason::ArpUnsupported),
        ("ARP hardware length 8", patch(&arp, 18, &[8]), DropReason::ArpUnsupported),
        ("ARP reply", patch(&arp, 21, &[2]), DropReason::ArpNotRequest),
        ("RARP request (operation 3)", patch(&arp, 21, &[3]), DropReason::ArpNotRequest),
        ("ARP for 172.16.1.9", patch(&arp, 38, &[172, 16, 1, 9]), DropReason::ArpNotForUs),
        (
            "gratuitous ARP for our address",
            patch(&arp, 28, &[172, 16, 1, 2]),
            DropReason::ArpBadSender,
        ),
        ("ARP from a group sender MAC", patch(&arp, 22, &[0x01]), DropReason::ArpBadSender),
        ("ARP from 224.0.0.1", patch(&arp, 28, &[224, 0, 0, 1]), DropReason::ArpBadSender),
        ("IPv4 version 5", patch_fixed(&ping, 14, &[0x55]), DropReason::Ipv4Malformed),
        ("IPv4 IHL 4 (16 bytes)", patch_fixed(&ping, 14, &[0x44]), DropReason::Ipv4Malformed),
        ("total length < header", patch_fixed(&ping, 16, &[0, 19]), DropReason::Ipv4Malformed),
        ("IHL past total length", patch_fixed(&ping0, 14, &[0x4f]), DropReason::Ipv4Malformed),
        ("bad header checksum", patch(&ping, 24, &[0x00, 0x00]), DropReason::Ipv4BadChecksum),
        ("TTL changed, checksum not", patch(&ping, 22, &[0x3f]), DropReason::Ipv4BadChecksum),
        ("first fragment", patch_fixed(&ping, 20, &[0x20, 0x00]), DropReason::Ipv4Fragment),
        ("later fragment", patch_fixed(&ping, 20, &[0x00, 0x10]), DropReason::Ipv4Fragment),
        ("loose source route", patch_fixed(&opts, 35, &[0x83]), DropReason::Ipv4SourceRouted),
        ("strict source route", patch_fixed(&opts, 35, &[0x89]), DropReason::Ipv4SourceRouted),
        // Malformed options where RFC 1122 forbids an error, or it could not be shorter
        // than the request; options with room for our arrival entry only (Linux, too,
        // then sends nothing).
        (
            "bad option in a destination unreachable",
            patch_fixed(&with_options(&ping, &BAD_OPTION), 38, &[3, 3]),
            DropReason::Ipv4BadOption,
        ),
        (
            "bad option in a later fragment",
            patch_fixed(&with_options(&ping, &BAD_OPTION), 20, &[0x00, 0x10]),
            DropReason::Ipv4BadOption,
        ),
        (
            "bad option from 240.0.0.1 (class E)",
            patch_fixed(&with_options(&ping, &BAD_OPTION), 26, &[240, 0, 0, 1]),
            DropReason::Ipv4BadOption,
        ),
        (
            "bad option in a 4-byte ping",
            with_options(&ping0, &BAD_OPTION),
            DropReason::Ipv4BadOption,
        ),
        (
            "bad option to 172.16.1.9",
            patch_fixed(&with_options(&ping, &BAD_OPTION), 33, &[9]),
            DropReason::Ipv4NotForUs,
        ),
        (
            "Record Route, pointer 5 of 11",
            with_options(&ping, &[7, 11, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            DropReason::Ipv4OptionNoRoom,
        ),
        (
            "addresses and times, room for one pair",
            with_options(&ping, &[68, 16, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            DropReason::Ipv4OptionNoRoom,
        ),
        ("to 172.16.1.9", patch_fixed(&ping, 33, &[9]), DropReason::Ipv4NotForUs),
        ("to the subnet broadcast", patch_fixed(&ping, 33, &[255]), DropReason::Ipv4NotForUs),
        ("to 255.255.255.255", patch_fixed(&ping, 30, &[255; 4]), DropReason::Ipv4NotForUs),
        ("to 224.0.0.1", patch_fixed(&ping, 30, &[224, 0, 0, 1]), DropReason::Ipv4NotForUs),
        (
            "from 255.255.255.255 (smurf)",
            patch_fixed(&ping, 26, &[255; 4]),
            DropReason::Ipv4BadSource,
        ),
        ("from 224.0.0.1", patch_fixed(&ping, 26, &[224, 0, 0, 1]), DropReason::Ipv4BadSource),
        ("from 0.0.0.0", patch_fixed(&ping, 26, &[0; 4]), DropReason::Ipv4BadSource),
        ("from 127.0.0.1", patch_fixed(&ping, 26, &[127, 0, 0, 1]), DropReason::Ipv4BadSource),
        ("from ourselves", patch_fixed(&ping, 26, &[172, 16, 1, 2]), DropReason::Ipv4BadSource),
        ("ICMP checksum wrong", patch(&ping, 36, &[0, 0]), DropReason::IcmpBadChecksum),
        ("ICMP data damaged", patch(&ping, 97, &[!ping[97]]), DropReason::IcmpBadChecksum),
        ("echo reply (no ping-pong)", patch_fixed(&ping, 34, &[0]), DropReason::IcmpNotEchoRequest),
        ("echo request code 1", patch_fixed(&ping, 35, &[1]), DropReason::IcmpNotEchoRequest),
        (
            "destination unreachable",
            patch_fixed(&ping, 34, &[3, 3]),
            DropReason::IcmpNotEchoRequest,
        ),
        ("timestamp request", patch_fixed(&ping, 34, &[13]), DropReason::IcmpNotEchoRequest),
    ]
}

/// Legal but unusual frames: each must get exactly the reply the oracle derives.
fn unusual_frames() -> Vec<(&'static str, Vec<u8>)> {
    let arp = fixture("arp_request_arping");
    let ping0 = fixture("icmp_echo_request_0");
    let big = fixture("icmp_echo_request_1472");
    // ping -s 8972 on MTU 9000, built from the 1472-byte request's data pattern.
    let mut jumbo = big[..42].to_vec();
    jumbo.extend(big[42..].iter().cycle().take(8972));
    jumbo[16..18].copy_from_slice(&9000u16.to_be_bytes());
    oracle::repair_checksums(&mut jumbo, true, true);
    vec![
        ("ARP probe from 0.0.0.0 (RFC 5227)", patch(&arp, 28, &[0; 4])),
        ("ARP unicast to our MAC", patch(&arp, 0, &oracle::OUR_MAC)),
        ("ARP with 100 bytes of padding", [&arp[..], &[0xee; 100]].concat()),
        ("echo padded to 60 bytes", [&ping0[..], &[0xee; 18]].concat()),
        ("echo with a 40-byte options header", fixture("icmp_echo_request_options")),
        ("echo with TTL 1", fixture("icmp_echo_request_ttl1")),
        ("echo with TTL 0", patch_fixed(&ping0, 22, &[0])),
        ("echo with 1 byte of data (odd length)", fixture("icmp_echo_request_1")),
        ("echo of a full 1514-byte frame", big),
        ("echo of a 9014-byte jumbo frame", jumbo),
        ("echo with id, seq and data all zero", patch_fixed(&ping0, 38, &[0, 0, 0, 0])),
        ("echo with TOS 0xff and DF clear", patch_fixed(&ping0, 15, &[0xff, 0, 0x1c, 0, 0, 0, 0])),
    ]
}

/// Malformed options, each in the default ping's echo request (so that the error can
/// quote it and stay shorter), with the pointer of the Parameter Problem Linux 6.18 sent
/// for it (crafted the same way, sent over a veth pair).
fn bad_option_frames() -> Vec<(&'static str, Vec<u8>, u8)> {
    let ping = fixture("icmp_echo_request_56");
    let rr = fixture("kernel_echo_request_rr");
    let cases: [(&str, &[u8], u8); 16] = [
        ("option of length 1", &BAD_OPTION, 20),
        ("Record Route of length 2", &[7, 2, 1, 0], 21),
        ("Record Route pointer 3", &[7, 7, 3, 0, 0, 0, 0, 0], 22),
        ("Record Route slot past the end", &[7, 7, 5, 0, 0, 0, 0, 0], 22),
        ("two Record Routes", &[7, 3, 4, 7, 3, 4, 0, 0], 23),
        ("Timestamp of length 3", &[68, 3, 5, 0], 21),
        ("Timestamp pointer 4", &[68, 8, 4, 0, 0, 0, 0, 0], 22),
        ("Timestamp full, overflow 15", &[68, 8, 9, 0xf0, 1, 2, 3, 4], 23),
        ("address and time, room for one", &[68, 8, 5, 1, 0, 0, 0, 0], 22),
        ("Router Alert of length 3", &[148, 3, 0, 0], 21),
        ("source route pointer 3", &[131, 7, 3, 172, 16, 1, 9, 0], 22),
        ("source route of length 2", &[131, 2, 0, 0], 21),
        ("CIPSO", &[134, 8, 0, 0, 0, 1, 0, 0], 22),
        ("CIPSO of length 6", &[134, 6, 0, 0, 0, 1, 0, 0], 21),
        ("Record Route, then a bad Timestamp", &[7, 7, 4, 0, 0, 0, 0, 68, 3, 5, 0, 0], 28),
        ("a lone type byte at the end", &[1, 1, 1, 7], 23),
    ];
    let mut frames: Vec<(&str, Vec<u8>, u8)> = cases
        .into_iter()
        .map(|(what, options, pointer)| (what, with_options(&ping, options), pointer))
        .collect();
    let with_bad = with_options(&ping, &BAD_OPTION);
    frames.extend([
        ("ping -R with option length 40", patch_fixed(&rr, 36, &[40]), 21),
        ("bad option in UDP", patch_fixed(&with_bad, 23, &[17]), 20),
        ("bad option in a first fragment", patch_fixed(&with_bad, 20, &[0x20, 0]), 20),
        ("bad option in an echo reply", patch_fixed(&with_bad, 38, &[0]), 20),
        ("bad option, ICMP checksum wrong", patch(&with_bad, 40, &[0, 0]), 20),
        ("bad option, TOS 0xff", patch_fixed(&with_bad, 15, &[0xff]), 20),
    ]);
    frames
}

/// Legal options that the kernel's ping does not send, as Linux answers them.
fn option_frames() -> Vec<(&'static str, Vec<u8>)> {
    let ping = fixture("icmp_echo_request_56");
    let us = oracle::OUR_IP;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("Record Route, one slot", vec![7, 7, 4, 0, 0, 0, 0, 0]),
        ("Record Route, full", vec![7, 7, 8, 172, 16, 1, 1, 0]),
        ("timestamps, full: overflow 1", vec![68, 8, 9, 0, 1, 2, 3, 4]),
        ("timestamps, unknown flag 2", vec![68, 8, 5, 2, 0, 0, 0, 0]),
        ("timestamp prespecified for us", [&[68, 12, 5, 3][..], &us, &[0; 4]].concat()),
        (
            "timestamps prespecified for us twice",
            [&[68, 20, 5, 3][..], &us, &[0; 4], &us, &[0; 8]].concat(),
        ),
        (
            "Timestamp, then Record Route",
            [&[68, 8, 5, 0, 0, 0, 0, 0, 7, 7, 4][..], &[0; 5]].concat(),
        ),
        ("Router Alert and an unknown option", vec![148, 4, 0, 0, 130, 4, 0, 0]),
    ];
    cases.into_iter().map(|(what, options)| (what, with_options(&ping, &options))).collect()
}

// ---- judging ----------------------------------------------------------------------------

/// Every frame the responder sent must be the oracle's reply to one of the requests that
/// deserve one, and each such request must get exactly one reply. The requests are the
/// frames that left the kernel's side: the crafted ones (each must be among them: the
/// kernel took it whole) and those of ping and arping. Returns the number of replies.
fn judge(seen: &[Seen], crafted: &[Vec<u8>], clock: oracle::Clock) -> usize {
    let requests: Vec<&[u8]> =
        seen.iter().filter(|s| s.outgoing).map(|s| s.bytes.as_slice()).collect();
    for frame in crafted {
        assert!(
            requests.contains(&frame.as_slice()),
            "a crafted frame never left the kernel's side whole:\n{}",
            oracle::hex(frame)
        );
    }
    // The requests that deserve a reply, each with the number of replies it got.
    let mut wanted: Vec<(&[u8], usize)> = requests
        .iter()
        .filter(|r| oracle::expected(r, true, true, true) != oracle::Expect::Nothing)
        .map(|r| (*r, 0))
        .collect();
    let replies: Vec<&Seen> = seen.iter().filter(|s| !s.outgoing).collect();
    let mut idents = std::collections::HashSet::new();
    for reply in &replies {
        // The oracle leaves the identification and the time to the responder (within
        // `clock`): a reply answers the first request it is exactly right for.
        let Some(entry) = wanted.iter_mut().find(|(request, n)| {
            *n == 0 && oracle::check(request, true, true, true, Some(&reply.bytes), clock).is_ok()
        }) else {
            panic!(
                "the responder sent a frame that answers no request that deserves one:\n{}",
                oracle::hex(&reply.bytes)
            );
        };
        entry.1 += 1;
        // Every IPv4 reply went to 172.16.1.1: no identification may come twice.
        if reply.bytes[12..14] == [0x08, 0x00] {
            let ident = u16::from_be_bytes([reply.bytes[18], reply.bytes[19]]);
            assert!(idents.insert(ident), "identification {ident:#06x} sent twice");
        }
    }
    for (request, n) in &wanted {
        assert_eq!(*n, 1, "a request that deserves a reply got {n}:\n{}", oracle::hex(request));
    }
    replies.len()
}

/// The time as Timestamp options count it, for [`oracle::Clock::Within`].
fn now() -> u32 {
    Timestamp::now().0
}

/// The counters 05 prints when it stops: label -> count.
fn counters(output: &str) -> BTreeMap<String, u64> {
    output
        .lines()
        .filter_map(|line| {
            let (count, label) = line.trim_start().split_once(char::is_whitespace)?;
            Some((label.trim().to_owned(), count.parse().ok()?))
        })
        .collect()
}

fn assert_ping_answered(lab: &Lab, args: &[&str], log: impl Fn() -> String) {
    let mut all = vec!["-c", "2", "-i", "0.2", "-W", "2"];
    all.extend_from_slice(args);
    all.push(RESPONDER_IP);
    let out = lab.ping(&all);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(ping_counts(&out), (2, 2), "ping {args:?}:\n{text}\nresponder:\n{}", log());
    for bad in ["DUP!", "BAD CHECKSUM", "wrong data", "truncated"] {
        assert!(!text.contains(bad), "ping {args:?} saw {bad:?}:\n{text}");
    }
}

// ---- the tests ----------------------------------------------------------------------------

#[test]
fn hostile_frames_get_no_reply_and_are_counted_by_reason() {
    require_lab!("hostile_frames_get_no_reply_and_are_counted_by_reason");
    let start = Instant::now();
    let first_time = now();
    let (lab, mut responder, capture, sender) = hostile_lab("hostile", "1500");
    let frames = hostile_frames();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut sent: Vec<Vec<u8>> = Vec::new();
    for (_, frame, reason) in &frames {
        sender.send(frame);
        sent.push(frame.clone());
        *expected.entry(reason.label().to_owned()).or_default() += 1;
    }
    // The kernel's own tools, sending what they can of the same kind. Each arping sends
    // exactly one request (-c 1) and gives up after 0.2 s without an answer.
    let arping = |extra: &[&str], target: &str| {
        let mut args = vec!["-c", "1", "-w", "0.2", "-I", "tap4"];
        args.extend_from_slice(extra);
        args.push(target);
        let out = lab.arping(&args);
        assert!(!out.status.success(), "arping {args:?} got an answer:\n{out:?}");
    };
    arping(&["-b"], RESPONDER_IP); // "tell 255.255.255.255"
    arping(&["-S", RESPONDER_IP], RESPONDER_IP); // claims our own address
    arping(&["-P", "-U"], RESPONDER_IP); // an unsolicited ARP reply
    arping(&["-t", "02:00:00:00:00:09"], RESPONDER_IP); // to another host's MAC
    arping(&[], "172.16.1.9"); // for another address
    for (label, count) in [
        (DropReason::ArpBadSender, 2),
        (DropReason::ArpNotRequest, 1),
        (DropReason::NotOurMac, 1),
        (DropReason::ArpNotForUs, 1),
    ] {
        *expected.entry(label.label().to_owned()).or_default() += count;
    }
    // ping -b: to 172.16.1.255 and the broadcast MAC. ping -s 3000 on a 1500-byte MTU:
    // three fragments (after an ARP request, which is answered).
    let out = lab.ping(&["-c", "1", "-W", "0.3", "-b", "172.16.1.255"]);
    assert_eq!(ping_counts(&out), (1, 0), "{out:?}");
    let out = lab.ping(&["-c", "1", "-W", "0.3", "-s", "3000", RESPONDER_IP]);
    assert_eq!(ping_counts(&out), (1, 0), "a reply to fragments: {out:?}");
    *expected.entry(DropReason::NotOurMac.label().to_owned()).or_default() += 1;
    *expected.entry(DropReason::Ipv4Fragment.label().to_owned()).or_default() += 3;

    let marker = end_marker(1);
    sender.send(&marker);
    sent.push(marker);
    let seen = capture.capture_until(Duration::from_secs(10), |s| is_marker_reply(s, 1));
    let replies = judge(&seen, &sent, oracle::Clock::Within(first_time, now()));

    // Still alive and answering, as an unprivileged process.
    assert_ping_answered(&lab, &[], || responder.output());
    let (status, output) = responder.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{output}");
    let counts = counters(&output);
    for reason in DropReason::ALL {
        let want = expected.get(reason.label()).copied().unwrap_or(0);
        assert_eq!(
            counts.get(reason.label()).copied().unwrap_or(0),
            want,
            "frames counted as {reason:?}\n{output}"
        );
    }
    // The kernel's ARP requests (for the fragments and the final ping) and the marker.
    assert_eq!(counts.get("ICMP echo replies sent"), Some(&3), "{output}");
    assert!(counts.get("ARP replies sent").is_some_and(|n| *n >= 1), "{output}");
    eprintln!(
        "hostile: {} crafted frames, {} replies judged, {:.1} s",
        frames.len(),
        replies,
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn unusual_but_legal_frames_get_exact_replies() {
    require_lab!("unusual_but_legal_frames_get_exact_replies");
    let start = Instant::now();
    let first_time = now();
    let (lab, mut responder, capture, sender) = hostile_lab("unusual", "9000");
    let frames = unusual_frames();
    let mut sent = Vec::new();
    for (_, frame) in &frames {
        sender.send(frame);
        sent.push(frame.clone());
    }
    // The kernel's ping with IPv4 options (record route), odd sizes, TTL 1, a TOS, a
    // full-size and a jumbo frame; arping from 0.0.0.0 (a probe).
    let log = || responder.output();
    for args in [
        &["-R"][..],
        &["-T", "tsonly"],
        &["-T", "tsandaddr"],
        &["-s", "1"],
        &["-s", "3"],
        &["-s", "1001"],
        &["-t", "1"],
        &["-Q", "0x10"],
        &["-s", "1472"],
        &["-s", "8972"],
        &["-s", "8972", "-M", "do"],
    ] {
        assert_ping_answered(&lab, args, log);
    }
    let out = lab.arping(&["-c", "1", "-w", "2", "-0", "-I", "tap4", RESPONDER_IP]);
    assert!(out.status.success(), "arping -0 got no answer: {out:?}\n{}", log());

    let marker = end_marker(2);
    sender.send(&marker);
    sent.push(marker);
    let seen = capture.capture_until(Duration::from_secs(10), |s| is_marker_reply(s, 2));
    let replies = judge(&seen, &sent, oracle::Clock::Within(first_time, now()));
    // Each crafted frame, each of the 22 pings, the probe and the marker got its reply
    // (the kernel's own ARP requests add more).
    assert!(replies >= frames.len() + 22 + 2, "only {replies} replies");

    let (status, output) = responder.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{output}");
    assert_eq!(counters(&output).get("frames dropped"), Some(&0), "{output}");
    eprintln!(
        "unusual: {} crafted frames and 23 kernel requests, {replies} replies judged, {:.1} s",
        frames.len(),
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn ipv4_options_are_answered_as_linux_answers_them() {
    require_lab!("ipv4_options_are_answered_as_linux_answers_them");
    let start = Instant::now();
    let first_time = now();
    let (lab, mut responder, capture, sender) = hostile_lab("options", "1500");
    let bad = bad_option_frames();
    let good = option_frames();
    let mut sent = Vec::new();
    for (what, frame, pointer) in &bad {
        // The oracle agrees with the kernel on each pointer, and asks for a reply.
        let expect = oracle::expected(frame, true, true, true);
        assert_eq!(expect, oracle::Expect::ParameterProblem(*pointer), "{what}");
        sender.send(frame);
        sent.push(frame.clone());
    }
    for (what, frame) in &good {
        assert_eq!(oracle::expected(frame, true, true, true), oracle::Expect::EchoReply, "{what}");
        sender.send(frame);
        sent.push(frame.clone());
    }
    let marker = end_marker(3);
    sender.send(&marker);
    sent.push(marker);
    let seen = capture.capture_until(Duration::from_secs(10), |s| is_marker_reply(s, 3));
    let replies = judge(&seen, &sent, oracle::Clock::Within(first_time, now()));
    assert_eq!(replies, sent.len(), "one reply for each frame sent");
    assert_ping_answered(&lab, &["-R"], || responder.output());

    let (status, output) = responder.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{output}");
    let counts = counters(&output);
    assert_eq!(counts.get("ICMP parameter problems sent"), Some(&(bad.len() as u64)), "{output}");
    assert_eq!(counts.get("frames dropped"), Some(&0), "{output}");
    eprintln!(
        "options: {} malformed and {} legal, {replies} replies judged, {:.1} s",
        bad.len(),
        good.len(),
        start.elapsed().as_secs_f64()
    );
}

// ---- IPv6: neighbour discovery and echo (chapter 8) ------------------------------------

/// Changes an IPv6 frame (whose ICMPv6 message follows the fixed header), then repairs
/// the ICMPv6 checksum so that only the change is tested.
fn patch6(frame: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut f = patch(frame, at, bytes);
    oracle::repair_checksums(&mut f, false, true);
    f
}

/// IPv6 frames that must get no reply: one for each validity check of RFC 4861 7.1.1 on a
/// neighbour solicitation, and the echo requests and addresses no host answers.
fn hostile_ipv6_frames() -> Vec<(&'static str, Vec<u8>, DropReason)> {
    let ns = fixture("ipv6_ns_multicast");
    let dad = fixture("ipv6_ns_dad");
    let ping = fixture("ipv6_echo_request_56");
    let all_nodes = oracle::ALL_NODES;
    let short_ns = {
        let mut f = ns[..70].to_vec();
        f[18..20].copy_from_slice(&[0, 16]);
        oracle::repair_checksums(&mut f, false, true);
        f
    };
    let fragment = {
        // A Fragment header (offset 0, more fragments) in front of the echo request.
        let mut f = ping.clone();
        f.splice(54..54, [58u8, 0, 0, 1, 0, 0, 0, 7]);
        f[20] = 44;
        f[19] += 8;
        f
    };
    vec![
        ("NS with hop limit 254", patch6(&ns, 21, &[254]), DropReason::NdiscHopLimit),
        ("NS with code 1", patch6(&ns, 55, &[1]), DropReason::NdiscBadCode),
        ("NS of 16 bytes", short_ns, DropReason::NdiscTooShort),
        ("NS for ff02::1", patch6(&ns, 62, &all_nodes), DropReason::NdiscMulticastTarget),
        ("NS with an option of length 0", patch6(&ns, 79, &[0]), DropReason::NdiscBadOption),
        ("NS with an option past its end", patch6(&ns, 79, &[2]), DropReason::NdiscBadOption),
        (
            "probe with a source link-layer address",
            patch6(&dad, 78, &[1, 1, 2, 0, 0, 0, 0, 1]),
            DropReason::NdiscBadProbe,
        ),
        (
            "probe to all nodes",
            patch6(&patch(&dad, 0, &[0x33, 0x33, 0, 0, 0, 1]), 38, &all_nodes),
            DropReason::NdiscBadProbe,
        ),
        ("NS for another address", patch6(&ns, 77, &[3]), DropReason::NdiscNotForUs),
        (
            "echo request to all nodes",
            patch6(&patch(&ping, 0, &[0x33, 0x33, 0, 0, 0, 1]), 38, &all_nodes),
            DropReason::Icmpv6EchoToGroup,
        ),
        ("echo request, bad checksum", patch(&ping, 56, &[0, 0]), DropReason::Icmpv6BadChecksum),
        ("echo request from ::", patch6(&ping, 22, &[0; 16]), DropReason::Ipv6BadSource),
        ("echo request in a fragment", fragment, DropReason::Ipv6Fragment),
        ("echo reply", patch6(&ping, 54, &[129]), DropReason::Icmpv6NotAnswered),
        ("the kernel's MLD report", fixture("ipv6_mld_report"), DropReason::Ipv6NotForUs),
        (
            "the kernel's router solicitation",
            fixture("ipv6_router_solicitation"),
            DropReason::Ipv6NotForUs,
        ),
    ]
}

#[test]
fn hostile_ipv6_frames_get_no_reply_and_legal_ones_exact_replies() {
    require_lab!("hostile_ipv6_frames_get_no_reply_and_legal_ones_exact_replies");
    let start = Instant::now();
    let first_time = now();
    // IPv6 is off on the kernel's side of tap4: every IPv6 frame is one of ours, and the
    // counters are exact.
    let (_lab, mut responder, capture, sender) = hostile_lab("hostile6", "1500");
    let frames = hostile_ipv6_frames();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut sent: Vec<Vec<u8>> = Vec::new();
    for (_, frame, reason) in &frames {
        sender.send(frame);
        sent.push(frame.clone());
        *expected.entry(reason.label().to_owned()).or_default() += 1;
    }
    // And the kernel's own legal requests, which must get exactly the oracle's replies.
    let legal = [
        "ipv6_ns_multicast",
        "ipv6_ns_unicast",
        "ipv6_ns_dad",
        "ipv6_echo_request_0",
        "ipv6_echo_request_1452",
        "ipv6_echo_request_link_local",
    ];
    for name in legal {
        let frame = fixture(name);
        sender.send(&frame);
        sent.push(frame);
    }
    let marker = end_marker(6);
    sender.send(&marker);
    sent.push(marker);
    let seen = capture.capture_until(Duration::from_secs(10), |s| is_marker_reply(s, 6));
    let replies = judge(&seen, &sent, oracle::Clock::Within(first_time, now()));
    assert_eq!(replies, legal.len() + 1, "one reply per legal request and the marker");

    let (status, output) = responder.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{output}");
    let counts = counters(&output);
    for reason in DropReason::ALL {
        let want = expected.get(reason.label()).copied().unwrap_or(0);
        assert_eq!(
            counts.get(reason.label()).copied().unwrap_or(0),
            want,
            "frames counted as {reason:?}\n{output}"
        );
    }
    assert_eq!(counts.get("IPv6 neighbour advertisements sent"), Some(&3), "{output}");
    assert_eq!(counts.get("ICMPv6 echo replies sent"), Some(&3), "{output}");
    eprintln!(
        "hostile IPv6: {} crafted frames, {} legal requests, {replies} replies judged, {:.1} s",
        frames.len(),
        legal.len(),
        start.elapsed().as_secs_f64()
    );
}
