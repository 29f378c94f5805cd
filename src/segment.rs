//! Chapter 9: what a guest's virtio-net driver does with the frames a TAP hands it when
//! offloads are on, and what a guest's TSO does for the frames it writes.
//!
//! - **Checksum completion.** With `TUN_F_CSUM` the kernel leaves UDP and TCP checksums
//!   unfinished (`NEEDS_CSUM`): the checksum field holds only the pseudo-header sum and
//!   the header says where the summing starts. One RFC 1071 pass finishes it.
//! - **Segmentation.** With `TUN_F_TSO4/6` and `TUN_F_USO4/6` one read can return a
//!   *superframe* of up to 64 KiB: one set of headers, then many segments' worth of
//!   payload. [`segment`] cuts it into the frames the kernel would have put on a wire,
//!   byte for byte what it sends to a TAP without offloads (the e2e test proves it).
//! - **Superframes to send.** [`build_udp_superframe`] writes one UDP superframe with
//!   its virtio-net header, for the kernel to segment on its side.
//!
//! Pure functions, no I/O: they take and give bytes. TCP and UDP over IPv4 and IPv6 are
//! cut (without IPv6 extension headers); that is exactly what [`crate::vnet`] offers the
//! kernel, since an offload we accept is a promise to handle every frame it brings.

// The same promise as `wire`: whatever the bytes, nothing here panics.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable
    )
)]

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::checksum;
use crate::wire::ethernet::{self, EtherType, MacAddr};
use crate::wire::ipv4::{self, IpProtocol, Ipv4Packet};
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::virtio_net::{GsoType, VirtioNetHeader, VirtioNetRepr};
use crate::wire::{Error, Result};

pub const UDP_HEADER_LEN: usize = 8;
pub const TCP_MIN_HEADER_LEN: usize = 20;
/// Where the checksum sits in each header: what `csum_offset` holds.
pub const UDP_CHECKSUM_OFFSET: usize = 6;
pub const TCP_CHECKSUM_OFFSET: usize = 16;

const TCP_SEQ: std::ops::Range<usize> = 4..8;
const TCP_DATA_OFFSET: usize = 12;
const TCP_FLAGS: usize = 13;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;
const UDP_LEN: std::ops::Range<usize> = 4..6;

fn field<const N: usize>(buf: &[u8], at: usize) -> Result<[u8; N]> {
    buf.get(at..at + N).and_then(|b| <[u8; N]>::try_from(b).ok()).ok_or(Error::Truncated)
}

fn set_field<const N: usize>(buf: &mut [u8], at: usize, value: [u8; N]) -> Result<()> {
    let slot = buf.get_mut(at..at + N).ok_or(Error::Truncated)?;
    slot.copy_from_slice(&value);
    Ok(())
}

// ANCHOR: complete_checksum
/// Finishes a checksum the kernel left partial (`NEEDS_CSUM`): the 16-bit field at
/// `csum_start + csum_offset` already holds the pseudo-header sum, so summing every byte
/// from `csum_start` to the end of the frame (that field included) and complementing
/// gives the checksum. What the kernel's `skb_checksum_help` does, down to turning a
/// result of 0 into 0xffff (for UDP, 0 would mean "no checksum").
pub fn complete_checksum(frame: &mut [u8], csum_start: usize, csum_offset: usize) -> Result<()> {
    let at = csum_start.checked_add(csum_offset).ok_or(Error::BadLength)?;
    let covered = frame.get(csum_start..).ok_or(Error::Truncated)?;
    if at + 2 > frame.len() {
        return Err(Error::Truncated);
    }
    let value = match checksum::checksum(covered) {
        0 => 0xffff,
        value => value,
    };
    set_field(frame, at, value.to_be_bytes())
}
// ANCHOR_END: complete_checksum

/// The one's complement sum of the IPv4 pseudo-header (RFC 768, RFC 9293 section 3.1).
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4_len: u16) -> u32 {
    let mut header = [0u8; 12];
    header[0..4].copy_from_slice(&src.octets());
    header[4..8].copy_from_slice(&dst.octets());
    header[9] = protocol;
    header[10..12].copy_from_slice(&l4_len.to_be_bytes());
    checksum::sum(&header)
}

/// The IPv6 pseudo-header sum (RFC 8200 section 8.1).
pub fn pseudo_header_sum_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, l4_len: u32) -> u32 {
    let mut header = [0u8; 40];
    header[0..16].copy_from_slice(&src.octets());
    header[16..32].copy_from_slice(&dst.octets());
    header[32..36].copy_from_slice(&l4_len.to_be_bytes());
    header[39] = next_header;
    checksum::sum(&header)
}

/// Where the parts of an Ethernet + IPv4/IPv6 + TCP/UDP frame begin and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// 4 or 6.
    pub ip_version: u8,
    /// Offset of the IP header (14: no VLAN tag).
    pub ip: usize,
    pub ip_header_len: usize,
    /// Offset of the TCP or UDP header.
    pub l4: usize,
    pub l4_header_len: usize,
    /// Offset of the payload; it runs to the end of the IP packet.
    pub payload: usize,
    /// End of the IP packet (anything after it is padding).
    pub end: usize,
    pub protocol: IpProtocol,
}

impl Layout {
    /// The pseudo-header sum for an L4 length of `l4_len`.
    fn pseudo_sum(&self, frame: &[u8], l4_len: usize) -> Result<u32> {
        let proto = u8::from(self.protocol);
        if self.ip_version == 4 {
            let len = u16::try_from(l4_len).map_err(|_| Error::BadLength)?;
            let src = Ipv4Addr::from(field::<4>(frame, self.ip + 12)?);
            let dst = Ipv4Addr::from(field::<4>(frame, self.ip + 16)?);
            Ok(pseudo_header_sum(src, dst, proto, len))
        } else {
            let len = u32::try_from(l4_len).map_err(|_| Error::BadLength)?;
            let src = Ipv6Addr::from(field::<16>(frame, self.ip + 8)?);
            let dst = Ipv6Addr::from(field::<16>(frame, self.ip + 24)?);
            Ok(pseudo_header_sum_v6(src, dst, proto, len))
        }
    }
}

/// Finds the headers of an Ethernet + IPv4 or IPv6 + TCP or UDP frame, checking every
/// length. IPv6 extension headers are not followed (a frame with them is
/// `Unsupported`). Does not trust `hdr_len` from the virtio-net header (see
/// [`VirtioNetHeader::hdr_len`]).
pub fn layout(frame: &[u8]) -> Result<Layout> {
    let ethertype = EtherType::from(u16::from_be_bytes(field(frame, 12)?));
    let ip = ethernet::HEADER_LEN;
    let ip_bytes = frame.get(ip..).ok_or(Error::Truncated)?;
    let (ip_version, ip_header_len, end, protocol) = match ethertype {
        EtherType::Ipv4 => {
            let packet = Ipv4Packet::new_checked(ip_bytes)?;
            if packet.is_fragment() {
                return Err(Error::Unsupported);
            }
            let end = ip + usize::from(packet.total_len());
            (4, packet.header_len(), end, packet.protocol())
        }
        EtherType::Ipv6 => {
            let packet = Ipv6Packet::new_checked(ip_bytes)?;
            let end = ip + ipv6::HEADER_LEN + usize::from(packet.payload_len());
            (6, ipv6::HEADER_LEN, end, IpProtocol::from(packet.next_header()))
        }
        _ => return Err(Error::Unsupported),
    };
    let l4 = ip + ip_header_len;
    let l4_header_len = match protocol {
        IpProtocol::Udp => UDP_HEADER_LEN,
        IpProtocol::Tcp => {
            let [offset] = field(frame, l4 + TCP_DATA_OFFSET)?;
            let len = usize::from(offset >> 4) * 4;
            if len < TCP_MIN_HEADER_LEN {
                return Err(Error::BadLength);
            }
            len
        }
        _ => return Err(Error::Unsupported),
    };
    let payload = l4 + l4_header_len;
    if payload > end {
        return Err(Error::Truncated);
    }
    Ok(Layout { ip_version, ip, ip_header_len, l4, l4_header_len, payload, end, protocol })
}

// ANCHOR: segment
/// Turns what one read from an offloading TAP returned (the frame after its virtio-net
/// header) into wire-size frames, calling `emit` with each; returns how many.
///
/// An ordinary frame comes out once, its checksum completed if the header asks for it.
/// A superframe is cut the way the kernel's `tcp_gso_segment` / `__udp_gso_segment` and
/// `inet_gso_segment` cut it: every segment gets the same headers with
///
/// - IPv4: total length of its own, identification +1 per segment, header checksum;
/// - UDP: length of its own, and a full checksum;
/// - TCP: sequence number advanced by the bytes before it, FIN and PSH on the last
///   segment only, CWR on the first only, and a full checksum.
///
/// `scratch` is where each segment is built (reused, so no allocation per segment).
pub fn segment(
    vnet: &VirtioNetRepr,
    frame: &[u8],
    scratch: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8]),
) -> Result<usize> {
    let gso = vnet.gso();
    if gso == GsoType::None {
        scratch.clear();
        scratch.extend_from_slice(frame);
        if vnet.needs_csum {
            complete_checksum(scratch, vnet.csum_start.into(), vnet.csum_offset.into())?;
        }
        emit(scratch);
        return Ok(1);
    }
    let layout = layout(frame)?;
    match (gso, layout.ip_version, layout.protocol) {
        (GsoType::UdpL4, _, IpProtocol::Udp)
        | (GsoType::TcpV4, 4, IpProtocol::Tcp)
        | (GsoType::TcpV6, 6, IpProtocol::Tcp) => {}
        _ => return Err(Error::Unsupported),
    }
    let gso_size = usize::from(vnet.gso_size);
    if gso_size == 0 {
        return Err(Error::BadLength);
    }
    let headers = frame.get(..layout.payload).ok_or(Error::Truncated)?;
    let payload = frame.get(layout.payload..layout.end).ok_or(Error::Truncated)?;
    let first_ident = u16::from_be_bytes(field(frame, layout.ip + 4)?);
    // TCP's fields; a UDP datagram of a few bytes may not even reach where they would be.
    let (first_seq, flags) = match layout.protocol {
        IpProtocol::Tcp => {
            let [flags] = field(frame, layout.l4 + TCP_FLAGS)?;
            (u32::from_be_bytes(field(frame, layout.l4 + TCP_SEQ.start)?), flags)
        }
        _ => (0, 0),
    };

    let count = payload.len().div_ceil(gso_size).max(1);
    // A superframe with no payload at all is still one frame, its headers alone (as
    // `tcp_gso_segment` leaves a packet no longer than one segment): `chunks` of an empty
    // slice yields nothing, so the empty chunk is added by hand. (Found by the fuzzer.)
    let empty = std::iter::once(payload).filter(|p| p.is_empty());
    for (index, chunk) in empty.chain(payload.chunks(gso_size)).enumerate() {
        scratch.clear();
        scratch.extend_from_slice(headers);
        scratch.extend_from_slice(chunk);
        let l4_len = layout.l4_header_len + chunk.len();
        let pseudo = layout.pseudo_sum(scratch, l4_len)?;
        let ip_bytes = scratch.get_mut(layout.ip..).ok_or(Error::Truncated)?;
        if layout.ip_version == 4 {
            let total =
                u16::try_from(layout.ip_header_len + l4_len).map_err(|_| Error::BadLength)?;
            let mut ip = Ipv4Packet::new_unchecked(ip_bytes);
            ip.set_total_len(total);
            ip.set_ident(first_ident.wrapping_add(index as u16));
            ip.fill_checksum();
        } else {
            // IPv6 has no identification and no header checksum: only the length changes.
            let payload_len = u16::try_from(l4_len).map_err(|_| Error::BadLength)?;
            set_field(ip_bytes, 4, payload_len.to_be_bytes())?;
        }
        let l4_len = u16::try_from(l4_len).map_err(|_| Error::BadLength)?;

        let l4 = scratch.get_mut(layout.l4..).ok_or(Error::Truncated)?;
        let checksum_at = match layout.protocol {
            IpProtocol::Udp => {
                set_field(l4, UDP_LEN.start, l4_len.to_be_bytes())?;
                UDP_CHECKSUM_OFFSET
            }
            _ => {
                let seq = first_seq.wrapping_add((index * gso_size) as u32);
                set_field(l4, TCP_SEQ.start, seq.to_be_bytes())?;
                let mut segment_flags = flags;
                if index + 1 < count {
                    segment_flags &= !(TCP_FIN | TCP_PSH);
                }
                if index > 0 {
                    segment_flags &= !TCP_CWR;
                }
                set_field(l4, TCP_FLAGS, [segment_flags])?;
                TCP_CHECKSUM_OFFSET
            }
        };
        // The field starts as the pseudo-header sum, exactly as the kernel leaves it for
        // NEEDS_CSUM; completing the checksum then is the one pass described above.
        let folded = !checksum::finish(pseudo);
        set_field(l4, checksum_at, folded.to_be_bytes())?;
        complete_checksum(l4, 0, checksum_at)?;
        emit(scratch);
    }
    Ok(count)
}
// ANCHOR_END: segment

/// What one UDP superframe carries: addresses, ports and the IPv4 identification of its
/// first segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFlow {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub ident: u16,
}

// ANCHOR: build_udp_superframe
/// Writes, into `out`, a virtio-net header (`hdr_size` bytes: 10 or 12) and one UDP
/// superframe carrying `payload`, for the kernel to cut into datagrams of `gso_size`
/// bytes each: what a guest's driver writes when its stack uses USO. The UDP checksum
/// field holds only the pseudo-header sum (`NEEDS_CSUM`); the kernel finishes it per
/// segment. With `gso_size` 0 (or a payload that fits one segment) it is an ordinary
/// datagram with a full checksum and no GSO.
pub fn build_udp_superframe(
    flow: &UdpFlow,
    payload: &[u8],
    gso_size: u16,
    hdr_size: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    let udp_len = u16::try_from(UDP_HEADER_LEN + payload.len()).map_err(|_| Error::BadLength)?;
    let total = udp_len.checked_add(ipv4::MIN_HEADER_LEN as u16).ok_or(Error::BadLength)?;
    let gso = gso_size > 0 && payload.len() > usize::from(gso_size);
    let l4 = ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN;

    out.clear();
    out.resize(hdr_size + l4 + UDP_HEADER_LEN, 0);
    let repr = VirtioNetRepr {
        needs_csum: gso,
        gso_type: if gso { GsoType::UdpL4.into() } else { GsoType::None.into() },
        hdr_len: if gso { (l4 + UDP_HEADER_LEN) as u16 } else { 0 },
        gso_size: if gso { gso_size } else { 0 },
        csum_start: if gso { l4 as u16 } else { 0 },
        csum_offset: if gso { UDP_CHECKSUM_OFFSET as u16 } else { 0 },
        ..VirtioNetRepr::default()
    };
    let (header, frame) = out.split_at_mut(hdr_size);
    repr.emit(&mut VirtioNetHeader::new_unchecked(header));
    ethernet::EthernetRepr {
        dst_addr: flow.dst_mac,
        src_addr: flow.src_mac,
        ethertype: EtherType::Ipv4,
    }
    .emit(&mut ethernet::EthernetFrame::new_unchecked(&mut *frame))?;
    let mut ip =
        Ipv4Packet::new_unchecked(frame.get_mut(ethernet::HEADER_LEN..).ok_or(Error::Truncated)?);
    ip.set_version_and_header_len(ipv4::MIN_HEADER_LEN);
    ip.set_tos(0);
    ip.set_total_len(total);
    ip.set_ident(flow.ident);
    ip.set_unfragmented(true);
    ip.set_ttl(64);
    ip.set_protocol(IpProtocol::Udp);
    ip.set_src_addr(flow.src);
    ip.set_dst_addr(flow.dst);
    ip.fill_checksum();
    let udp = frame.get_mut(l4..).ok_or(Error::Truncated)?;
    set_field(udp, 0, flow.src_port.to_be_bytes())?;
    set_field(udp, 2, flow.dst_port.to_be_bytes())?;
    set_field(udp, UDP_LEN.start, udp_len.to_be_bytes())?;
    let pseudo = pseudo_header_sum(flow.src, flow.dst, IpProtocol::Udp.into(), udp_len);
    set_field(udp, UDP_CHECKSUM_OFFSET, (!checksum::finish(pseudo)).to_be_bytes())?;
    out.extend_from_slice(payload);
    if !gso {
        let frame = out.get_mut(hdr_size..).ok_or(Error::Truncated)?;
        complete_checksum(frame, l4, UDP_CHECKSUM_OFFSET)?;
    }
    Ok(())
}
// ANCHOR_END: build_udp_superframe

/// Whether the UDP or TCP checksum of a finished frame verifies (for tests and the
/// program's self-check).
pub fn l4_checksum_ok(frame: &[u8]) -> bool {
    let Ok(layout) = layout(frame) else { return false };
    let Some(l4) = frame.get(layout.l4..layout.end) else { return false };
    let Ok(pseudo) = layout.pseudo_sum(frame, l4.len()) else { return false };
    checksum::finish(checksum::combine(pseudo, checksum::sum(l4))) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::fixture;
    use proptest::prelude::*;

    /// The virtio-net headers that came with the two captured superframes (see the
    /// comments in `tests/fixtures/uso_superframe.hex` and `tso_superframe.hex`).
    const USO_HEADER: [u8; 12] = [0x01, 0x05, 0x2a, 0, 0x64, 0, 0x22, 0, 0x06, 0, 0, 0];
    const TSO_HEADER: [u8; 12] = [0x01, 0x01, 0x30, 0x01, 0x64, 0, 0x22, 0, 0x10, 0, 0, 0];

    fn repr(header: &[u8]) -> VirtioNetRepr {
        VirtioNetRepr::parse(&VirtioNetHeader::new_checked(header).unwrap())
    }

    fn cut(vnet: &VirtioNetRepr, frame: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut scratch = vec![0xa5; 17];
        segment(vnet, frame, &mut scratch, |f| out.push(f.to_vec()))?;
        Ok(out)
    }

    #[test]
    fn cuts_a_captured_uso_superframe_as_the_kernel_did() {
        let superframe = fixture!("uso_superframe");
        assert!(!l4_checksum_ok(&superframe), "the kernel left the checksum partial");
        let kernel =
            [fixture!("uso_segment_0"), fixture!("uso_segment_1"), fixture!("uso_segment_2")];
        assert_eq!(cut(&repr(&USO_HEADER), &superframe).unwrap(), kernel);
    }

    #[test]
    fn cuts_a_captured_tso_superframe_as_the_kernel_did() {
        let superframe = fixture!("tso_superframe");
        let kernel =
            [fixture!("tso_segment_0"), fixture!("tso_segment_1"), fixture!("tso_segment_2")];
        let ours = cut(&repr(&TSO_HEADER), &superframe).unwrap();
        assert_eq!(ours, kernel);
        // CWR|ACK|PSH|FIN on the superframe: CWR stays on the first, PSH and FIN go to
        // the last, ACK is on all three.
        let flags: Vec<u8> = ours.iter().map(|f| f[14 + 20 + 13]).collect();
        assert_eq!(flags, [0x90, 0x10, 0x19]);
    }

    #[test]
    fn completes_a_partial_checksum() {
        // The superframe as one frame: a NEEDS_CSUM frame without GSO, 250 bytes of payload.
        let mut vnet = repr(&USO_HEADER);
        vnet.gso_type = GsoType::None.into();
        let superframe = fixture!("uso_superframe");
        let ours = cut(&vnet, &superframe).unwrap();
        assert_eq!(ours.len(), 1);
        assert!(l4_checksum_ok(&ours[0]));
        assert_eq!(ours[0][..40], superframe[..40], "only the checksum changes");
        assert_eq!(ours[0][42..], superframe[42..]);
    }

    #[test]
    fn cuts_a_udp_superframe_too_short_to_hold_a_tcp_header() {
        // Found by the property test: a UDP superframe of 3 payload bytes ends before
        // byte 13 of its L4 header, where TCP's flags would be; only TCP reads them.
        let flow = Flow { v6: false, tcp: false, ident: 9, seq: 0, flags: 0 };
        let superframe = build(&flow, &[1, 2, 3], true);
        let vnet = VirtioNetRepr {
            needs_csum: true,
            gso_type: GsoType::UdpL4.into(),
            gso_size: 2,
            csum_start: 34,
            csum_offset: 6,
            ..VirtioNetRepr::default()
        };
        assert_eq!(cut(&vnet, &superframe).unwrap(), reference(&flow, &[1, 2, 3], 2));
    }

    #[test]
    fn cuts_a_superframe_without_payload_into_one_frame() {
        // Found by `cargo lab fuzz --target offloads`: a TCPV4 superframe of headers only
        // came out as nothing, while `segment` said one frame. Here: the captured TSO
        // superframe with its payload cut off and its IPv4 total length (and header
        // checksum) made to say so.
        let mut frame = fixture!("tso_superframe")[..14 + 20 + 20].to_vec();
        frame[16..18].copy_from_slice(&40u16.to_be_bytes());
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..34]);
        ip.fill_checksum();
        let ours = cut(&repr(&TSO_HEADER), &frame).unwrap();
        assert_eq!(ours.len(), 1, "one frame, as the count says");
        assert!(l4_checksum_ok(&ours[0]), "its checksum completed");
        assert_eq!(ours[0][..50], frame[..50], "headers as they were, flags included");
        let flow = Flow { v6: false, tcp: true, ident: 9, seq: 7, flags: 0x19 };
        let empty = build(&flow, &[], true);
        let vnet = VirtioNetRepr {
            needs_csum: true,
            gso_type: GsoType::TcpV4.into(),
            gso_size: 100,
            csum_start: 34,
            csum_offset: 16,
            ..VirtioNetRepr::default()
        };
        assert_eq!(cut(&vnet, &empty).unwrap(), [build(&flow, &[], false)]);
    }

    #[test]
    fn never_panics_on_a_cut_short_or_lying_superframe() {
        let superframe = fixture!("tso_superframe");
        for len in 0..superframe.len() {
            assert!(cut(&repr(&TSO_HEADER), &superframe[..len]).is_err(), "{len}");
        }
        let mut vnet = repr(&TSO_HEADER);
        vnet.csum_start = 300;
        vnet.gso_type = 0;
        assert_eq!(cut(&vnet, &superframe).unwrap_err(), Error::Truncated);
        vnet.gso_type = GsoType::UdpL4.into();
        assert_eq!(cut(&vnet, &superframe).unwrap_err(), Error::Unsupported, "UDP_L4 on TCP");
    }

    #[test]
    fn builds_a_udp_superframe_the_kernel_can_cut() {
        let flow = UdpFlow {
            src_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            src: Ipv4Addr::new(172, 16, 1, 2),
            dst: Ipv4Addr::new(172, 16, 1, 1),
            src_port: 9000,
            dst_port: 9001,
            ident: 7,
        };
        let payload: Vec<u8> = (0..250u32).map(|i| i as u8).collect();
        let mut out = vec![0xa5; 3];
        build_udp_superframe(&flow, &payload, 100, 12, &mut out).unwrap();
        assert_eq!(out[..12], USO_HEADER, "the header the kernel itself gives such a frame");
        let frames = cut(&repr(&out[..12]), &out[12..]).unwrap();
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|f| l4_checksum_ok(f)));
        build_udp_superframe(&flow, &payload[..100], 100, 10, &mut out).unwrap();
        assert_eq!(out[..10], [0; 10], "one segment's worth is an ordinary datagram");
        assert!(l4_checksum_ok(&out[10..]));
    }

    // ---- An independent segmentation, for the property test. ----

    /// The textbook checksum: 16-bit words one at a time (not `checksum::sum`).
    fn textbook(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            acc += u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[derive(Debug, Clone)]
    struct Flow {
        v6: bool,
        tcp: bool,
        ident: u16,
        seq: u32,
        flags: u8,
    }

    /// One frame of the flow carrying `payload`, built field by field. With `partial`, the
    /// L4 checksum holds the pseudo-header sum only (what the kernel hands over);
    /// otherwise it is complete (0 written as 0xffff).
    fn build(flow: &Flow, payload: &[u8], partial: bool) -> Vec<u8> {
        let l4_len = if flow.tcp { 20 } else { 8 } + payload.len();
        let proto = if flow.tcp { 6u8 } else { 17 };
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        let mut pseudo = Vec::new();
        if flow.v6 {
            f.extend([0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend((l4_len as u16).to_be_bytes());
            f.extend([proto, 64]);
            let (src, dst) = ([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], [0xfd; 16]);
            f.extend(src);
            f.extend(dst);
            pseudo.extend(src);
            pseudo.extend(dst);
            pseudo.extend((l4_len as u32).to_be_bytes());
            pseudo.extend([0, 0, 0, proto]);
        } else {
            f.extend([0x08, 0x00, 0x45, 0]);
            f.extend(((20 + l4_len) as u16).to_be_bytes());
            f.extend(flow.ident.to_be_bytes());
            f.extend([0x40, 0, 64, proto, 0, 0, 172, 16, 1, 1, 172, 16, 1, 2]);
            let check = textbook(&f[14..34]);
            f[24..26].copy_from_slice(&check.to_be_bytes());
            pseudo.extend([172, 16, 1, 1, 172, 16, 1, 2, 0, proto]);
            pseudo.extend((l4_len as u16).to_be_bytes());
        }
        let l4 = f.len();
        f.extend([0x9c, 0x40, 0x23, 0x28]); // ports 40000 -> 9000
        if flow.tcp {
            f.extend(flow.seq.to_be_bytes());
            f.extend([0, 0, 0x13, 0x88, 0x50, flow.flags, 0x01, 0xf6, 0, 0, 0, 0]);
        } else {
            f.extend((l4_len as u16).to_be_bytes());
            f.extend([0, 0]);
        }
        f.extend(payload);
        let at = l4 + if flow.tcp { 16 } else { 6 };
        let value = if partial {
            !textbook(&pseudo)
        } else {
            let mut all = pseudo.clone();
            all.extend(&f[l4..]);
            match textbook(&all) {
                0 => 0xffff,
                v => v,
            }
        };
        f[at..at + 2].copy_from_slice(&value.to_be_bytes());
        f
    }

    /// What the kernel's GSO does, written as the rules read: segment `i` of `n` is the
    /// flow's frame with payload piece `i`, identification + i, sequence number + the
    /// bytes before it, FIN and PSH only on the last, CWR only on the first.
    fn reference(flow: &Flow, payload: &[u8], gso_size: usize) -> Vec<Vec<u8>> {
        let pieces: Vec<&[u8]> = payload.chunks(gso_size).collect();
        let n = pieces.len();
        pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| {
                let mut flags = flow.flags;
                if i + 1 < n {
                    flags &= !(0x01 | 0x08);
                }
                if i > 0 {
                    flags &= !0x80;
                }
                let one = Flow {
                    ident: flow.ident.wrapping_add(i as u16),
                    seq: flow.seq.wrapping_add((i * gso_size) as u32),
                    flags,
                    ..flow.clone()
                };
                build(&one, piece, false)
            })
            .collect()
    }

    proptest! {
        #[test]
        fn our_segmentation_equals_the_rules(
            v6 in any::<bool>(),
            tcp in any::<bool>(),
            ident in any::<u16>(),
            seq in any::<u32>(),
            flags in any::<u8>(),
            gso_size in 1usize..1500,
            payload in proptest::collection::vec(any::<u8>(), 1..6000),
        ) {
            let flow = Flow { v6, tcp, ident, seq, flags: flags & !0x20, };
            let superframe = build(&flow, &payload, true);
            let (gso, start) = match (tcp, v6) {
                (true, false) => (GsoType::TcpV4, 34),
                (true, true) => (GsoType::TcpV6, 54),
                (false, false) => (GsoType::UdpL4, 34),
                (false, true) => (GsoType::UdpL4, 54),
            };
            let vnet = VirtioNetRepr {
                needs_csum: true,
                gso_type: gso.into(),
                gso_size: gso_size as u16,
                csum_start: start,
                csum_offset: if tcp { 16 } else { 6 },
                ..VirtioNetRepr::default()
            };
            let ours = cut(&vnet, &superframe).unwrap();
            prop_assert_eq!(ours, reference(&flow, &payload, gso_size));
        }

        #[test]
        fn never_panics_on_any_bytes(
            header in proptest::collection::vec(any::<u8>(), 10),
            frame in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            if let Ok(view) = VirtioNetHeader::new_checked(&header[..]) {
                let _ = cut(&VirtioNetRepr::parse(&view), &frame);
            }
        }
    }
}
