//! An oracle for the responder: which frames deserve an answer, and the exact bytes of
//! that answer, written straight from RFC 826, 791, 792, 1071 and 1122, and from what
//! Linux was seen to do with IPv4 options (`net/ipv4/ip_options.c`), on raw bytes; and
//! for IPv6 from RFC 8200, 4443, 4861 and 4291, and what Linux's `ndisc_recv_ns` sends.
//!
//! It shares no code with `tapbook::wire` or `tapbook::respond` (it has its own checksum
//! and reads every field by offset), so a mistake in the library is not repeated here.
//! The property tests (`tests/properties.rs`), the fuzz target (`fuzz/`) and the hostile
//! end-to-end tests (`tests/hostile.rs`) judge every outcome of `respond` with [`check`].
//!
//! Two things in a reply are the responder's to choose: the IPv4 identification (any
//! value: its uniqueness is tested over many replies, not one) and the time in Timestamp
//! options (the caller says which times are right: [`Clock`]).

use std::fmt::Write as _;

pub mod udp;

/// Our addresses: the lab's defaults.
pub const OUR_IP: [u8; 4] = [172, 16, 1, 2];
pub const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// fd00:172:16:1::2, and fe80::ff:fe00:2 (modified EUI-64 of OUR_MAC, written out).
pub const OUR_IP6: [u8; 16] = [0xfd, 0, 0x01, 0x72, 0, 0x16, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2];
pub const OUR_LINK_LOCAL: [u8; 16] =
    [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe, 0, 0, 0x02];
pub const ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// What the responder must do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    ArpReply,
    EchoReply,
    /// An ICMP Parameter Problem pointing at this byte of the IPv4 header.
    ParameterProblem(u8),
    /// An IPv6 Neighbor Advertisement.
    NeighborAdvert,
    /// An ICMPv6 Echo Reply.
    Echo6Reply,
    Nothing,
}

/// Which timestamps (milliseconds since midnight UT) a reply may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The time the test gave `respond`.
    At(u32),
    /// Any time from the first to the second, inclusive (around midnight: wrapping).
    Within(u32, u32),
}

impl Clock {
    fn allows(self, t: u32) -> bool {
        const DAY: u32 = 86_400_000;
        match self {
            Clock::At(at) => t == at,
            Clock::Within(first, last) => {
                t < DAY && (t + DAY - first) % DAY <= (last + DAY - first) % DAY
            }
        }
    }
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

/// An IPv4 packet for us, with its header and the bytes its total length covers.
struct Ipv4<'a> {
    header: &'a [u8],
    packet: &'a [u8],
}

impl Ipv4<'_> {
    fn payload(&self) -> &[u8] {
        &self.packet[self.header.len()..]
    }
    fn later_fragment(&self) -> bool {
        u16::from_be_bytes([self.header[6], self.header[7]]) & 0x1fff != 0
    }
    fn fragment(&self) -> bool {
        u16::from_be_bytes([self.header[6], self.header[7]]) & 0x3fff != 0
    }
}

/// A well-formed IPv4 packet to our MAC and address from a unicast source, or `None`.
fn ipv4_for_us(frame: &[u8]) -> Option<Ipv4<'_>> {
    let ver_ihl = *frame.get(14)?;
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    let total = usize::from(be16(frame, 16)?);
    if ver_ihl >> 4 != 4 || ihl < 20 || total < ihl || 14 + total > frame.len() {
        return None;
    }
    let header = at(frame, 14, ihl)?;
    let (src_ip, dst_ip) = (&header[12..16], &header[16..20]);
    let ok = frame[0..6] == OUR_MAC
        && checksum_ok(header)
        && dst_ip == OUR_IP
        && !is_bad_ip_source(src_ip)
        && src_ip[0] != 0
        && src_ip != OUR_IP;
    ok.then(|| Ipv4 { header, packet: &frame[14..14 + total] })
}

/// What the options of a header say: where Record Route and Timestamp are (offsets in the
/// header), whether there is a source route; or the pointer of Linux's Parameter Problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Options {
    Fine { rr: Option<usize>, ts: Option<usize>, source_route: bool },
    Bad(u8),
}

/// RFC 791's option format, with the checks Linux makes (ip_options_compile) on arrival:
/// 0 ends the list, 1 is one byte of padding, any other is type, length (at least 2,
/// within the header), data. Record Route (7) and Timestamp (68) carry a pointer that
/// must name a whole slot (or pair of slots, for timestamp flags 1 and 3) or lie past the
/// end; a full Timestamp's overflow count must not be 15 already. A source route (131,
/// 137) needs length 3 and pointer 4 at least; Router Alert (148) length 4; CIPSO (134)
/// is refused (no domain). Record Route, Timestamp and source routes may appear once.
fn options(header: &[u8]) -> Options {
    let mut i = 20;
    let (mut rr, mut ts, mut source_route) = (None, None, false);
    while i < header.len() {
        let kind = header[i];
        if kind == 0 {
            break;
        }
        if kind == 1 {
            i += 1;
            continue;
        }
        let here = |offset: usize| Options::Bad((i + offset) as u8);
        let left = header.len() - i;
        if left < 2 {
            return here(0);
        }
        let len = usize::from(header[i + 1]);
        if len < 2 || len > left {
            return here(0);
        }
        let pointer = header.get(i + 2).map_or(0, |&p| usize::from(p));
        match kind {
            131 | 137 => {
                if len < 3 {
                    return here(1);
                }
                if pointer < 4 {
                    return here(2);
                }
                if source_route {
                    return here(0);
                }
                source_route = true;
            }
            7 => {
                if rr.is_some() {
                    return here(0);
                }
                if len < 3 {
                    return here(1);
                }
                if pointer < 4 || (pointer <= len && pointer + 3 > len) {
                    return here(2);
                }
                rr = Some(i);
            }
            68 => {
                if ts.is_some() {
                    return here(0);
                }
                if len < 4 {
                    return here(1);
                }
                let flag = header[i + 3] & 0x0f;
                let slot = if flag == 1 || flag == 3 { 8 } else { 4 };
                if pointer < 5
                    || (pointer <= len && (pointer + 3 > len || pointer + slot - 1 > len))
                {
                    return here(2);
                }
                if pointer > len && flag != 3 && header[i + 3] >> 4 == 15 {
                    return here(3);
                }
                ts = Some(i);
            }
            148 if len < 4 => return here(1),
            134 => return here(if len < 8 { 1 } else { 2 }),
            _ => {}
        }
        i += len;
    }
    Options::Fine { rr, ts, source_route }
}

/// Where the entries go that a host adds to a request's Record Route or Timestamp in its
/// echo reply: Linux adds one when the request arrives and one when the reply leaves.
/// Returns the option as the reply carries it and the offsets (in the option) of the
/// timestamps written, or `None` where Linux gives up (room for the first entry only
/// partly for the second: `ip_options_echo` fails, nothing is sent).
fn updated_option(option: &[u8], now: u32) -> Option<(Vec<u8>, Vec<usize>)> {
    let mut o = option.to_vec();
    let len = o.len();
    let mut p = usize::from(o[2]);
    let mut stamps = Vec::new();
    let put = |o: &mut Vec<u8>, p: usize, value: [u8; 4]| o[p - 1..p + 3].copy_from_slice(&value);
    if o[0] == 7 {
        for entry in 0..2 {
            if p > len {
                break;
            }
            if p + 3 > len {
                // Only the departure can find this: parse refused it on arrival.
                assert_eq!(entry, 1);
                return None;
            }
            put(&mut o, p, OUR_IP);
            p += 4;
        }
    } else {
        let flag = o[3] & 0x0f;
        if p > len {
            if flag != 3 {
                o[3] += 0x10;
            }
            return Some((o, stamps));
        }
        for entry in 0..2 {
            if p > len {
                break;
            }
            if entry == 1 && p + 3 > len {
                return None;
            }
            match flag {
                0 => {
                    put(&mut o, p, now.to_be_bytes());
                    stamps.push(p - 1);
                    p += 4;
                }
                1 => {
                    if p + 7 > len {
                        return None;
                    }
                    put(&mut o, p, OUR_IP);
                    put(&mut o, p + 4, now.to_be_bytes());
                    stamps.push(p + 3);
                    p += 8;
                }
                3 if p + 7 <= len && o[p - 1..p + 3] == OUR_IP => {
                    put(&mut o, p + 4, now.to_be_bytes());
                    stamps.push(p + 3);
                    p += 8;
                }
                _ => break,
            }
        }
    }
    o[2] = p as u8;
    Some((o, stamps))
}

/// The options of an echo reply: Record Route, then Timestamp, each updated, then zeros
/// (End of List) to a multiple of 4; and the offsets (in the options) of the timestamps.
fn reply_options(ip: &Ipv4<'_>, now: u32) -> Option<(Vec<u8>, Vec<usize>)> {
    let Options::Fine { rr, ts, .. } = options(ip.header) else { return None };
    let mut out = Vec::new();
    let mut stamps = Vec::new();
    for start in [rr, ts].into_iter().flatten() {
        let len = usize::from(ip.header[start + 1]);
        let (option, at) = updated_option(&ip.header[start..start + len], now)?;
        stamps.extend(at.iter().map(|a| out.len() + a));
        out.extend_from_slice(&option);
    }
    while out.len() % 4 != 0 {
        out.push(0);
    }
    Some((out, stamps))
}

/// How much of the request a Parameter Problem quotes: Linux fills errors up to 576
/// bytes; ours stop where the error would outgrow the request, and must hold at least
/// the header and 8 bytes of data (RFC 1122 3.2.2). `None`: too short for an error.
fn quote_len(frame: &[u8], ip: &Ipv4<'_>) -> Option<usize> {
    let total = ip.packet.len();
    let room = (frame.len() - 14).saturating_sub(28);
    let len = total.min(576 - 28).min(room);
    (len >= total.min(ip.header.len() + 8)).then_some(len)
}

/// Whether RFC 1122 (3.2.2) and Linux allow an ICMP error about this packet: not about
/// a later fragment, an ICMP error or an ICMP message of a type Linux does not know (or
/// with no type at all), not to a class E source.
fn error_allowed(ip: &Ipv4<'_>) -> bool {
    let icmp_ok = ip.header[9] != 1
        || ip.payload().first().is_some_and(|&t| t <= 18 && ![3, 4, 5, 11, 12].contains(&t));
    !ip.later_fragment() && icmp_ok && ip.header[12] < 240
}

/// What a careful host does with `frame` (the policy `tapbook::respond` documents).
pub fn expected(frame: &[u8], arp: bool, echo: bool, ipv6: bool) -> Expect {
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
        0x0800 if echo => ipv4_expected(frame),
        0x86dd if ipv6 => ipv6_expected(frame),
        _ => Expect::Nothing,
    }
}

// ---- IPv6 -----------------------------------------------------------------------------

fn ours6(addr: &[u8]) -> bool {
    addr == OUR_IP6 || addr == OUR_LINK_LOCAL
}

/// ff02::1:ffXX:XXXX, the solicited-node group of an address (RFC 4291 2.7.1).
fn solicited(addr: &[u8; 16]) -> [u8; 16] {
    let mut group = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
    group[13..].copy_from_slice(&addr[13..]);
    group
}

fn is_solicited(addr: &[u8]) -> bool {
    addr[..13] == solicited(&[0; 16])[..13]
}

/// An IPv6 packet for us, down to its ICMPv6 message.
struct V6<'a> {
    traffic_class: u8,
    hop_limit: u8,
    src: [u8; 16],
    dst: [u8; 16],
    icmp: &'a [u8],
}

fn ipv6_for_us(frame: &[u8]) -> Option<V6<'_>> {
    let ip = at(frame, 14, 40)?;
    if ip[0] >> 4 != 6 {
        return None;
    }
    let payload = at(frame, 54, usize::from(be16(ip, 4)?))?;
    let src: [u8; 16] = ip[8..24].try_into().ok()?;
    let dst: [u8; 16] = ip[24..40].try_into().ok()?;
    let addressed = if dst[0] == 0xff {
        frame[0..6] == [0x33, 0x33, dst[12], dst[13], dst[14], dst[15]]
            && (dst == ALL_NODES || dst == solicited(&OUR_IP6) || dst == solicited(&OUR_LINK_LOCAL))
    } else {
        frame[0..6] == OUR_MAC && ours6(&dst)
    };
    let mut loopback = [0u8; 16];
    loopback[15] = 1;
    if !addressed || src[0] == 0xff || src == loopback || ours6(&src) {
        return None;
    }
    // Extension headers (RFC 8200 4): hop-by-hop (first only), destination options and
    // routing with no segments left are walked; fragments and the rest are not for us.
    let (mut next, mut rest, mut first) = (ip[6], payload, true);
    while next != 58 {
        let len = (usize::from(*rest.get(1)?) + 1) * 8;
        let header = rest.get(..len)?;
        match next {
            0 | 60 if next == 60 || first => {
                let mut i = 2;
                while i < len {
                    let kind = header[i];
                    if kind == 0 {
                        i += 1;
                        continue;
                    }
                    i += 2 + usize::from(*header.get(i + 1)?);
                    if i > len || (kind != 1 && kind != 5 && kind >> 6 != 0) {
                        return None;
                    }
                }
            }
            43 if header[3] == 0 => {}
            _ => return None,
        }
        (next, rest, first) = (header[0], &rest[len..], false);
    }
    if rest.len() < 8 || !ones_complement_ok6(&src, &dst, rest) {
        return None;
    }
    Some(V6 { traffic_class: (be16(ip, 0)? >> 4) as u8, hop_limit: ip[7], src, dst, icmp: rest })
}

/// The ICMPv6 checksum over the pseudo-header (RFC 8200 8.1) and the message verifies.
fn ones_complement_ok6(src: &[u8], dst: &[u8], icmp: &[u8]) -> bool {
    checksum6(src, dst, icmp) == 0
}

/// The checksum field that makes the sum over the pseudo-header and `icmp` all ones
/// (0 if the field already holds it).
fn checksum6(src: &[u8], dst: &[u8], icmp: &[u8]) -> u16 {
    let len = u32::try_from(icmp.len()).unwrap_or(0).to_be_bytes();
    let mut data = Vec::with_capacity(40 + icmp.len());
    data.extend_from_slice(src);
    data.extend_from_slice(dst);
    data.extend_from_slice(&len);
    data.extend_from_slice(&[0, 0, 0, 58]);
    data.extend_from_slice(icmp);
    checksum(&data)
}

fn ipv6_expected(frame: &[u8]) -> Expect {
    let Some(p) = ipv6_for_us(frame) else { return Expect::Nothing };
    let unspecified = p.src == [0; 16];
    match p.icmp[0] {
        128 if p.icmp[1] == 0 && p.dst[0] != 0xff && !unspecified => Expect::Echo6Reply,
        135 => {
            let Some(target) = at(p.icmp, 8, 16) else { return Expect::Nothing };
            // Options: none of length 0, none past the end, a source link-layer one of 8.
            let (mut i, mut source_ll) = (24, false);
            while i < p.icmp.len() {
                let len = usize::from(p.icmp.get(i + 1).copied().unwrap_or(0)) * 8;
                if len == 0 || i + len > p.icmp.len() || (p.icmp[i] == 1 && len != 8) {
                    return Expect::Nothing;
                }
                source_ll |= p.icmp[i] == 1;
                i += len;
            }
            let valid = p.hop_limit == 255
                && p.icmp[1] == 0
                && target[0] != 0xff
                && (!unspecified || (is_solicited(&p.dst) && !source_ll))
                && ours6(target);
            if valid { Expect::NeighborAdvert } else { Expect::Nothing }
        }
        _ => Expect::Nothing,
    }
}

fn ipv6_reply(frame: &[u8], expect: Expect) -> Option<Vec<u8>> {
    let p = ipv6_for_us(frame)?;
    let mut reply = Vec::new();
    let (dst_mac, src, dst, traffic_class, hop_limit, mut icmp) = match expect {
        Expect::NeighborAdvert => {
            let target = at(p.icmp, 8, 16)?;
            let probe = p.src == [0; 16];
            let to_group = p.dst[0] == 0xff;
            let flags = if probe {
                0x20
            } else if to_group {
                0x60
            } else {
                0x40
            };
            let mut icmp = vec![136, 0, 0, 0, flags, 0, 0, 0];
            icmp.extend_from_slice(target);
            if probe || to_group {
                icmp.extend_from_slice(&[2, 1]);
                icmp.extend_from_slice(&OUR_MAC);
            }
            let (dst_mac, dst) = if probe {
                ([0x33, 0x33, 0, 0, 0, 1], ALL_NODES)
            } else {
                (frame[6..12].try_into().ok()?, p.src)
            };
            (dst_mac, <[u8; 16]>::try_from(target).ok()?, dst, 0, 255, icmp)
        }
        Expect::Echo6Reply => {
            let mut icmp = vec![129, 0, 0, 0];
            icmp.extend_from_slice(&p.icmp[4..]);
            (frame[6..12].try_into().ok()?, p.dst, p.src, p.traffic_class, 64, icmp)
        }
        _ => return None,
    };
    let sum = checksum6(&src, &dst, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let dst_mac: [u8; 6] = dst_mac;
    reply.extend_from_slice(&dst_mac);
    reply.extend_from_slice(&OUR_MAC);
    reply.extend_from_slice(&[0x86, 0xdd, 0x60 | (traffic_class >> 4), traffic_class << 4, 0, 0]);
    reply.extend_from_slice(&u16::try_from(icmp.len()).ok()?.to_be_bytes());
    reply.extend_from_slice(&[58, hop_limit]);
    reply.extend_from_slice(&src);
    reply.extend_from_slice(&dst);
    reply.extend_from_slice(&icmp);
    Some(reply)
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

fn ipv4_expected(frame: &[u8]) -> Expect {
    let Some(ip) = ipv4_for_us(frame) else { return Expect::Nothing };
    let source_route = match options(ip.header) {
        Options::Bad(pointer) if error_allowed(&ip) && quote_len(frame, &ip).is_some() => {
            return Expect::ParameterProblem(pointer);
        }
        Options::Bad(_) => return Expect::Nothing,
        Options::Fine { source_route, .. } => source_route,
    };
    let icmp = ip.payload();
    let echo = !ip.fragment()
        && !source_route
        && ip.header[9] == 1
        && icmp.len() >= 8
        && checksum_ok(icmp)
        && icmp[0] == 8
        && icmp[1] == 0
        && reply_options(&ip, 0).is_some();
    if echo { Expect::EchoReply } else { Expect::Nothing }
}

/// The exact reply a careful host sends, field by field, with `ident` as its IPv4
/// identification and `now` in its timestamps; and the offsets (in the reply) of those
/// timestamps.
pub fn expected_reply(
    frame: &[u8],
    expect: Expect,
    ident: u16,
    now: u32,
) -> Option<(Vec<u8>, Vec<usize>)> {
    let mut reply = Vec::new();
    let mut stamps = Vec::new();
    match expect {
        Expect::Nothing => return None,
        Expect::NeighborAdvert | Expect::Echo6Reply => {
            return Some((ipv6_reply(frame, expect)?, stamps));
        }
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
            let ip = ipv4_for_us(frame)?;
            let (options, at) = reply_options(&ip, now)?;
            let icmp = ip.payload();
            let header_len = 20 + options.len();
            let total = u16::try_from(header_len + icmp.len()).ok()?;
            reply.extend_from_slice(&frame[6..12]); // back to the sender's MAC
            reply.extend_from_slice(&OUR_MAC);
            reply.extend_from_slice(&[0x08, 0x00]);
            // Version 4 and the header length, the request's TOS, our total length, our
            // identification, no flags (DF clear, as Linux), TTL 64, ICMP, checksum.
            reply.extend_from_slice(&[0x40 | (header_len / 4) as u8, ip.header[1]]);
            reply.extend_from_slice(&total.to_be_bytes());
            reply.extend_from_slice(&ident.to_be_bytes());
            reply.extend_from_slice(&[0, 0, 64, 1, 0, 0]);
            reply.extend_from_slice(&OUR_IP);
            reply.extend_from_slice(&ip.header[12..16]);
            reply.extend_from_slice(&options);
            stamps.extend(at.iter().map(|a| 34 + a));
            let header_checksum = checksum(&reply[14..14 + header_len]);
            reply[24..26].copy_from_slice(&header_checksum.to_be_bytes());
            // ICMP: type 0, code 0, checksum, then identifier, sequence and data as sent.
            let start = reply.len();
            reply.extend_from_slice(&[0, 0, 0, 0]);
            reply.extend_from_slice(&icmp[4..]);
            let icmp_checksum = checksum(&reply[start..]);
            reply[start + 2..start + 4].copy_from_slice(&icmp_checksum.to_be_bytes());
        }
        Expect::ParameterProblem(pointer) => {
            let ip = ipv4_for_us(frame)?;
            let quote = &ip.packet[..quote_len(frame, &ip)?];
            let total = u16::try_from(20 + 8 + quote.len()).ok()?;
            reply.extend_from_slice(&frame[6..12]);
            reply.extend_from_slice(&OUR_MAC);
            reply.extend_from_slice(&[0x08, 0x00]);
            // Precedence 6 (internetwork control) and the request's four TOS bits.
            reply.extend_from_slice(&[0x45, 0xc0 | (ip.header[1] & 0x1e)]);
            reply.extend_from_slice(&total.to_be_bytes());
            reply.extend_from_slice(&ident.to_be_bytes());
            reply.extend_from_slice(&[0, 0, 64, 1, 0, 0]);
            reply.extend_from_slice(&OUR_IP);
            reply.extend_from_slice(&ip.header[12..16]);
            let header_checksum = checksum(&reply[14..34]);
            reply[24..26].copy_from_slice(&header_checksum.to_be_bytes());
            // Type 12, code 0, checksum, the pointer, three unused bytes, the quote.
            reply.extend_from_slice(&[12, 0, 0, 0, pointer, 0, 0, 0]);
            reply.extend_from_slice(quote);
            let icmp_checksum = checksum(&reply[34..]);
            reply[36..38].copy_from_slice(&icmp_checksum.to_be_bytes());
        }
    }
    Some((reply, stamps))
}

/// Judges one outcome of `respond`: `reply` is the frame it wrote, or `None` if it
/// dropped the frame; `clock` says which timestamps are right. Returns what is wrong.
pub fn check(
    frame: &[u8],
    arp: bool,
    echo: bool,
    ipv6: bool,
    reply: Option<&[u8]>,
    clock: Clock,
) -> Result<(), String> {
    let expect = expected(frame, arp, echo, ipv6);
    // The identification is the responder's choice: take it from the reply. So is the
    // time, within `clock`: take it from where the first timestamp must be.
    let ident = reply.and_then(|r| be16(r, 18)).unwrap_or(0);
    let mut wanted = expected_reply(frame, expect, ident, 0);
    let mut bad_time = None;
    if let (Some(got), Some((_, stamps))) = (reply, &wanted)
        && let Some(&first) = stamps.first()
    {
        let now = match clock {
            Clock::At(now) => now,
            Clock::Within(..) => {
                at(got, first, 4).map_or(0, |b| u32::from_be_bytes(b.try_into().unwrap()))
            }
        };
        if !clock.allows(now) {
            bad_time = Some(now);
        }
        wanted = expected_reply(frame, expect, ident, now);
    } else if let Clock::At(now) = clock {
        wanted = expected_reply(frame, expect, ident, now);
    }
    let wanted = wanted.map(|(bytes, _)| bytes);
    let problem = match (reply, &wanted) {
        (None, None) => return Ok(()),
        (Some(_), None) => format!("answered a frame that deserves no answer ({expect:?})"),
        (None, Some(_)) => format!("dropped a frame that deserves an answer ({expect:?})"),
        (Some(got), Some(want)) => {
            let mut why = String::new();
            // One reply may be longer than its request: a neighbour advertisement that
            // must carry our MAC in answer to a solicitation that carried none (8 bytes).
            let allowed = frame.len() + if expect == Expect::NeighborAdvert { 8 } else { 0 };
            if got.len() > allowed {
                let _ = write!(
                    why,
                    "reply of {} bytes to {} (amplification); ",
                    got.len(),
                    frame.len()
                );
            }
            // One reply goes to a group, by RFC 4861 7.2.4: the defence of our address
            // against a duplicate address probe, to all nodes (the prober has no address).
            let defence = expect == Expect::NeighborAdvert
                && got.get(0..6) == Some(&[0x33, 0x33, 0, 0, 0, 1]);
            if got.first().is_none_or(|b| b & 1 == 1) && !defence {
                why += "reply to a group MAC address; ";
            }
            if let Some(t) = bad_time {
                let _ = write!(why, "timestamp {t} is not the time ({clock:?}); ");
            }
            if matches!(expect, Expect::EchoReply | Expect::ParameterProblem(_)) {
                let ihl = got.get(14).map_or(0, |b| usize::from(b & 0x0f) * 4);
                if !checksum_ok(got.get(14..14 + ihl).unwrap_or_default()) {
                    why += "bad IPv4 header checksum; ";
                }
                if !checksum_ok(got.get(14 + ihl..).unwrap_or_default()) {
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
    if be16(frame, 12) == Some(0x86dd) {
        // IPv6 has no header checksum; the ICMPv6 one (right after the fixed header, if
        // the payload length fits the frame) covers the pseudo-header.
        let len = be16(frame, 18).map_or(0, usize::from);
        if icmp && frame.len() >= 54 + len && len >= 4 {
            let (head, rest) = frame.split_at_mut(54);
            let message = &mut rest[..len];
            message[2..4].fill(0);
            let sum = checksum6(&head[22..38], &head[38..54], message);
            message[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        return;
    }
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
