//! The oracle for chapter 10: UDP echo (RFC 768, RFC 862) and the DHCP server's replies
//! (RFC 2131), on raw bytes, with the parent's checksum and none of `tapbook`'s code.

use super::{
    Clock, OUR_IP, OUR_MAC, Options, at, be16, check, checksum_ok, ipv4_for_us, is_group_mac,
    ones_complement_sum, options,
};

/// The sum of RFC 768's pseudo-header (source, destination, zero, 17, UDP length) and
/// the datagram, folded.
fn pseudo_sum(src: &[u8], dst: &[u8], udp: &[u8]) -> u16 {
    let mut bytes = Vec::with_capacity(12 + udp.len());
    bytes.extend_from_slice(src);
    bytes.extend_from_slice(dst);
    bytes.extend_from_slice(&[0, 17]);
    bytes.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    bytes.extend_from_slice(udp);
    ones_complement_sum(&bytes)
}

/// Whether a UDP datagram's checksum verifies; 0 means none was computed.
pub fn udp_checksum_ok(src: &[u8], dst: &[u8], udp: &[u8]) -> bool {
    udp.get(6..8) == Some(&[0, 0][..]) || pseudo_sum(src, dst, udp) == 0xffff
}

/// The checksum to send (with the field zero in `udp`): 0 goes out as 0xffff.
pub fn udp_checksum(src: &[u8], dst: &[u8], udp: &[u8]) -> u16 {
    match !pseudo_sum(src, dst, udp) {
        0 => 0xffff,
        sum => sum,
    }
}

/// Ports an echo must never answer: none, and the small services that answer anything.
const LOOPING: [u16; 6] = [0, 7, 13, 17, 19, 37];

/// The exact UDP echo reply a frame deserves (with `ident`), or `None`: the frame is
/// not a UDP datagram for us (the ICMP oracle judges those), or deserves nothing.
/// `Some(None)`: a UDP datagram for us that gets no echo.
fn udp_echo(frame: &[u8], ident: u16) -> Option<Option<Vec<u8>>> {
    if at(frame, 6, 6).is_none_or(is_group_mac) || be16(frame, 12) != Some(0x0800) {
        return None;
    }
    let ip = ipv4_for_us(frame)?;
    let fine = matches!(options(ip.header), Options::Fine { source_route: false, .. });
    if ip.header[9] != 17 || !fine || ip.fragment() {
        return None;
    }
    let payload = ip.payload();
    let Some(ulen) = be16(payload, 4).map(usize::from) else { return Some(None) };
    if ulen < 8 || ulen > payload.len() {
        return Some(None);
    }
    let udp = &payload[..ulen];
    let (src, dst) = (&ip.header[12..16], &ip.header[16..20]);
    let (sport, dport) = (be16(udp, 0)?, be16(udp, 2)?);
    if !udp_checksum_ok(src, dst, udp) || dport != 7 || LOOPING.contains(&sport) {
        return Some(None);
    }
    let mut reply = Vec::new();
    reply.extend_from_slice(&frame[6..12]);
    reply.extend_from_slice(&OUR_MAC);
    reply.extend_from_slice(&[0x08, 0x00, 0x45, ip.header[1]]);
    reply.extend_from_slice(&((20 + ulen) as u16).to_be_bytes());
    reply.extend_from_slice(&ident.to_be_bytes());
    reply.extend_from_slice(&[0, 0, 64, 17, 0, 0]);
    reply.extend_from_slice(&OUR_IP);
    reply.extend_from_slice(src);
    let sum = !ones_complement_sum(&reply[14..34]);
    reply[24..26].copy_from_slice(&sum.to_be_bytes());
    reply.extend_from_slice(&[0, 7]);
    reply.extend_from_slice(&sport.to_be_bytes());
    reply.extend_from_slice(&(ulen as u16).to_be_bytes());
    reply.extend_from_slice(&[0, 0]);
    reply.extend_from_slice(&udp[8..]);
    let sum = udp_checksum(&OUR_IP, src, &reply[34..]);
    reply[40..42].copy_from_slice(&sum.to_be_bytes());
    Some(Some(reply))
}

/// Judges one outcome of `respond` with `Services::WITH_UDP`: UDP datagrams for us by
/// the rules above, everything else by the ICMP oracle ([`check`]).
pub fn check_with_udp(frame: &[u8], reply: Option<&[u8]>, clock: Clock) -> Result<(), String> {
    let ident = reply.and_then(|r| be16(r, 18)).unwrap_or(0);
    let Some(wanted) = udp_echo(frame, ident) else {
        return check(frame, true, true, true, reply, clock);
    };
    if wanted.as_deref() == reply {
        return Ok(());
    }
    Err(format!(
        "UDP echo: got {}, wanted {}\nframe {}",
        reply.map_or("(none)".into(), super::hex),
        wanted.as_deref().map_or("(none)".into(), super::hex),
        super::hex(frame)
    ))
}

/// What must hold of any reply the DHCP server sends to `request` (a frame that reached
/// it): an OFFER, ACK or NAK from 172.16.1.2:67 to port 68, checksums right, BOOTREPLY
/// for Ethernet with the request's xid and chaddr, padded to 300 bytes, options well
/// formed and ended, the address given in the pool (none in a NAK). Returns what is wrong.
pub fn check_dhcp_reply(request: &[u8], reply: &[u8]) -> Result<(), String> {
    let mut why = Vec::new();
    let ihl = usize::from(request.get(14).copied().unwrap_or(0) & 0x0f) * 4;
    let req = request.get(14 + ihl + 8..).unwrap_or_default();
    if reply.len() != 14 + 20 + 8 + 300 {
        why.push(format!("{} bytes, not 342", reply.len()));
        return Err(why.join("; "));
    }
    let (ip, udp, msg) = (&reply[14..34], &reply[34..], &reply[42..]);
    if reply[6..12] != OUR_MAC || reply[12..14] != [8, 0] || is_group_mac(&reply[6..12]) {
        why.push("not from our MAC, or not IPv4".into());
    }
    if !checksum_ok(ip) || ip[0] != 0x45 || ip[9] != 17 || ip[12..16] != OUR_IP {
        why.push("IPv4 header wrong".into());
    }
    if be16(ip, 2) != Some(328) || be16(udp, 4) != Some(308) {
        why.push("lengths wrong".into());
    }
    if udp[0..4] != [0, 67, 0, 68]
        || !udp_checksum_ok(&ip[12..16], &ip[16..20], udp)
        || udp[6..8] == [0, 0]
    {
        why.push("UDP ports or checksum wrong".into());
    }
    if msg[0..4] != [2, 1, 6, 0] || msg[236..240] != [99, 130, 83, 99] {
        why.push("not a BOOTREPLY for Ethernet with the cookie".into());
    }
    if req.get(4..8) != Some(&msg[4..8]) || req.get(28..34) != Some(&msg[28..34]) {
        why.push("xid or chaddr not the request's".into());
    }
    let mut at = 240;
    let mut kind = None;
    loop {
        match msg.get(at) {
            Some(0) => at += 1,
            Some(255) => break,
            Some(&code) => {
                let Some(&len) = msg.get(at + 1) else {
                    why.push("option cut".into());
                    break;
                };
                if code == 53 && len == 1 {
                    kind = msg.get(at + 2).copied();
                }
                at += 2 + usize::from(len);
            }
            None => {
                why.push("no End option".into());
                break;
            }
        }
    }
    let yiaddr = &msg[16..20];
    match kind {
        Some(2 | 5) if yiaddr[..3] == [172, 16, 1] && (100..=199).contains(&yiaddr[3]) => {}
        Some(6) if yiaddr == [0; 4] && reply[0..6] == [0xff; 6] => {}
        other => why.push(format!("message type {other:?} with yiaddr {yiaddr:?}")),
    }
    if why.is_empty() { Ok(()) } else { Err(why.join("; ")) }
}
