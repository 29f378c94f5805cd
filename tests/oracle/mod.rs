//! An oracle for the responder: which frames deserve an answer, and the exact bytes of
//! that answer, written straight from RFC 826, 791, 792 and 1071 on raw bytes.
//!
//! It shares no code with `tapbook::wire` or `tapbook::respond` (it has its own checksum
//! and reads every field by offset), so a mistake in the library is not repeated here.
//! The property tests (`tests/properties.rs`) and the fuzz target (`fuzz/`) both judge
//! every outcome of `respond` with [`check`].

#![allow(dead_code)] // each user needs a different part

use std::fmt::Write as _;

/// Our addresses: the lab's defaults.
pub const OUR_IP: [u8; 4] = [172, 16, 1, 2];
pub const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// What the responder must do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    ArpReply,
    EchoReply,
    Nothing,
}

/// The bytes at `range`, or `None` past the end.
fn at(frame: &[u8], start: usize, len: usize) -> Option<&[u8]> {
    frame.get(start..start.checked_add(len)?)
}

fn be16(frame: &[u8], start: usize) -> Option<u16> {
    at(frame, start, 2).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// The RFC 1071 sum, 16 bits at a time, the textbook way (no folding tricks).
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = (u32::from(pair[0]) << 8) | u32::from(*pair.get(1).unwrap_or(&0));
        sum += word;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Whether data that includes its checksum field verifies (sums to all ones).
pub fn checksum_ok(data: &[u8]) -> bool {
    ones_complement_sum(data) == 0xffff
}

/// The checksum to store over `data` whose checksum field is zero.
pub fn checksum(data: &[u8]) -> u16 {
    !ones_complement_sum(data)
}

fn is_group_mac(mac: &[u8]) -> bool {
    mac.first().is_some_and(|b| b & 1 == 1)
}

/// An IPv4 address no reply may go to, nor a host claim as its own.
fn is_bad_ip_source(ip: &[u8]) -> bool {
    ip == [255, 255, 255, 255] || (224..=239).contains(&ip[0]) || ip[0] == 127
}

/// Where the IPv4 header starts, and its length, the total length, the ICMP message.
struct Ipv4<'a> {
    header: &'a [u8],
    icmp: &'a [u8],
}

/// A well-formed, unfragmented IPv4 packet carrying ICMP, or `None`.
fn ipv4_icmp(frame: &[u8]) -> Option<Ipv4<'_>> {
    let ver_ihl = *frame.get(14)?;
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    let total = usize::from(be16(frame, 16)?);
    if ver_ihl >> 4 != 4 || ihl < 20 || total < ihl || 14 + total > frame.len() {
        return None;
    }
    let header = at(frame, 14, ihl)?;
    let flags_offset = be16(frame, 20)?;
    let protocol = *frame.get(23)?;
    if !checksum_ok(header) || flags_offset & 0x3fff != 0 || protocol != 1 {
        return None;
    }
    if !options_answerable(&header[20..]) {
        return None;
    }
    Some(Ipv4 { header, icmp: at(frame, 14 + ihl, total - ihl)? })
}

/// RFC 791 options: 0 ends the list, 1 is one byte of padding, any other is type, length
/// (at least 2, within the header), data. A source route (0x83 loose, 0x89 strict) must
/// be reversed in the reply (RFC 1122 3.2.2.6), which a reply without options cannot do.
fn options_answerable(options: &[u8]) -> bool {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => return true,
            1 => i += 1,
            0x83 | 0x89 => return false,
            _ => match options.get(i + 1) {
                Some(&len) if len >= 2 && i + usize::from(len) <= options.len() => {
                    i += usize::from(len)
                }
                _ => return false,
            },
        }
    }
    true
}

/// What a careful host does with `frame` (the policy `tapbook::respond` documents).
pub fn expected(frame: &[u8], arp: bool, echo: bool) -> Expect {
    let (Some(dst), Some(src), Some(ethertype)) =
        (at(frame, 0, 6), at(frame, 6, 6), be16(frame, 12))
    else {
        return Expect::Nothing;
    };
    if is_group_mac(src) {
        return Expect::Nothing;
    }
    match ethertype {
        0x0806 if arp && arp_deserves_reply(frame, dst) => Expect::ArpReply,
        0x0800 if echo && echo_deserves_reply(frame, dst) => Expect::EchoReply,
        _ => Expect::Nothing,
    }
}

fn arp_deserves_reply(frame: &[u8], dst: &[u8]) -> bool {
    let Some(arp) = at(frame, 14, 28) else { return false };
    let (sha, spa, tpa) = (&arp[8..14], &arp[14..18], &arp[24..28]);
    (dst == [0xff; 6] || dst == OUR_MAC)
        && arp[0..8] == [0, 1, 0x08, 0x00, 6, 4, 0, 1] // Ethernet, IPv4, 6, 4, request
        && tpa == OUR_IP
        && !is_group_mac(sha)
        && spa != OUR_IP
        && !is_bad_ip_source(spa)
}

fn echo_deserves_reply(frame: &[u8], dst: &[u8]) -> bool {
    let Some(ip) = ipv4_icmp(frame) else { return false };
    let (src_ip, dst_ip) = (&ip.header[12..16], &ip.header[16..20]);
    dst == OUR_MAC
        && dst_ip == OUR_IP
        && !is_bad_ip_source(src_ip)
        && src_ip[0] != 0
        && src_ip != OUR_IP
        && ip.icmp.len() >= 8
        && checksum_ok(ip.icmp)
        && ip.icmp[0] == 8
        && ip.icmp[1] == 0
}

/// The exact reply a careful host sends, field by field.
pub fn expected_reply(frame: &[u8], expect: Expect) -> Option<Vec<u8>> {
    let mut reply = Vec::new();
    match expect {
        Expect::Nothing => return None,
        Expect::ArpReply => {
            let arp = at(frame, 14, 28)?;
            reply.extend_from_slice(&arp[8..14]); // to the asker's hardware address
            reply.extend_from_slice(&OUR_MAC);
            reply.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
            reply.extend_from_slice(&OUR_MAC); // sender: us
            reply.extend_from_slice(&OUR_IP);
            reply.extend_from_slice(&arp[8..18]); // target: the asker, MAC and IP
        }
        Expect::EchoReply => {
            let ip = ipv4_icmp(frame)?;
            let total = u16::try_from(20 + ip.icmp.len()).ok()?;
            reply.extend_from_slice(at(frame, 6, 6)?); // back to the sender's MAC
            reply.extend_from_slice(&OUR_MAC);
            reply.extend_from_slice(&[0x08, 0x00]);
            // Version 4, IHL 5 (no options), the request's TOS, our total length, the
            // request's identification, no flags, TTL 64, ICMP, checksum to fill in.
            reply.extend_from_slice(&[0x45, ip.header[1]]);
            reply.extend_from_slice(&total.to_be_bytes());
            reply.extend_from_slice(&ip.header[4..6]);
            reply.extend_from_slice(&[0, 0, 64, 1, 0, 0]);
            reply.extend_from_slice(&OUR_IP);
            reply.extend_from_slice(&ip.header[12..16]);
            let header_checksum = checksum(&reply[14..34]);
            reply[24..26].copy_from_slice(&header_checksum.to_be_bytes());
            // ICMP: type 0, code 0, checksum, then identifier, sequence and data as sent.
            reply.extend_from_slice(&[0, 0, 0, 0]);
            reply.extend_from_slice(&ip.icmp[4..]);
            let icmp_checksum = checksum(&reply[34..]);
            reply[36..38].copy_from_slice(&icmp_checksum.to_be_bytes());
        }
    }
    Some(reply)
}

/// Judges one outcome of `respond`: `reply` is the frame it wrote, or `None` if it
/// dropped the frame. Returns what is wrong, if anything.
pub fn check(frame: &[u8], arp: bool, echo: bool, reply: Option<&[u8]>) -> Result<(), String> {
    let expect = expected(frame, arp, echo);
    let wanted = expected_reply(frame, expect);
    let problem = match (reply, &wanted) {
        (None, None) => return Ok(()),
        (Some(_), None) => format!("answered a frame that deserves no answer ({expect:?})"),
        (None, Some(_)) => format!("dropped a frame that deserves an answer ({expect:?})"),
        (Some(got), Some(want)) => {
            let mut why = String::new();
            if got.len() > frame.len() {
                let _ = write!(
                    why,
                    "reply of {} bytes to {} (amplification); ",
                    got.len(),
                    frame.len()
                );
            }
            if got.first().is_none_or(|b| b & 1 == 1) {
                why += "reply to a group MAC address; ";
            }
            if expect == Expect::EchoReply {
                let ip = got.get(14..34).unwrap_or_default();
                if !checksum_ok(ip) {
                    why += "bad IPv4 header checksum; ";
                }
                if !checksum_ok(got.get(34..).unwrap_or_default()) {
                    why += "bad ICMP checksum; ";
                }
                if be16(got, 16).map(usize::from) != Some(got.len().saturating_sub(14)) {
                    why += "IPv4 total length is not the frame's; ";
                }
            }
            if got != want.as_slice() {
                let first = got.iter().zip(want).position(|(a, b)| a != b);
                let _ = write!(
                    why,
                    "reply differs from the expected one (lengths {} and {}, first difference at {first:?})",
                    got.len(),
                    want.len()
                );
            }
            if why.is_empty() {
                return Ok(());
            }
            why
        }
    };
    Err(format!(
        "{problem}\nframe  {}\nreply  {}\nwanted {}",
        hex(frame),
        reply.map_or("(none)".into(), hex),
        wanted.as_deref().map_or("(none)".into(), hex)
    ))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Repairs the checksums of a (mutated) frame so that the checks behind them are reached:
/// the IPv4 header checksum if `ip`, the ICMP checksum if `icmp`. Anything that does not
/// look like IPv4 far enough to find the field is left alone.
pub fn repair_checksums(frame: &mut [u8], ip: bool, icmp: bool) {
    let Some(&ver_ihl) = frame.get(14) else { return };
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    if ihl < 20 || frame.len() < 14 + ihl {
        return;
    }
    if icmp {
        let total = be16(frame, 16).map_or(0, usize::from);
        let end = (14 + total).min(frame.len());
        if end >= 14 + ihl + 4 {
            let message = &mut frame[14 + ihl..end];
            message[2..4].fill(0);
            let sum = checksum(message);
            message[2..4].copy_from_slice(&sum.to_be_bytes());
        }
    }
    if ip {
        let header = &mut frame[14..14 + ihl];
        header[10..12].fill(0);
        let sum = checksum(header);
        header[10..12].copy_from_slice(&sum.to_be_bytes());
    }
}
