//! Chapter 2: what a frame is, in one line (like tcpdump) and as an annotated hex dump.
//!
//! Both are `Display` types that parse while they print, so showing a frame allocates
//! nothing: `println!("{}", Summary(frame))`.

use std::fmt;

use pretty_hex::{HexConfig, hex_write};

use crate::wire::arp::{ArpOperation, ArpPacket};
use crate::wire::ethernet::MacAddr;
use crate::wire::ethernet::{self, EtherType, EthernetFrame};
use crate::wire::icmpv4::{Icmpv4Message, Icmpv4Type};
use crate::wire::icmpv6::{self, Icmpv6Message};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet};
use crate::wire::ipv6::{self, Extension, Ipv6Packet};
use crate::wire::ndisc::{self, NdiscMessage};

// ANCHOR: summary
/// One line per frame: `ARP who-has 172.16.1.2 tell 172.16.1.1`,
/// `IPv4 172.16.1.1 > 172.16.1.2 ICMP echo request id 0x1c2f seq 3, 64 bytes`.
pub struct Summary<'a>(pub &'a [u8]);

// ANCHOR: student_ch2_summary "chapter 2: the one-line summary"
impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(eth) = EthernetFrame::new_checked(self.0) else {
            return write!(
                f,
                "runt frame, {} bytes (shorter than an Ethernet header)",
                self.0.len()
            );
        };
        match eth.ethertype() {
            EtherType::Arp => arp(f, eth.payload()),
            EtherType::Ipv4 => ipv4(f, eth.payload()),
            EtherType::Ipv6 => ipv6(f, eth.payload()),
            EtherType::Vlan => write!(f, "802.1Q VLAN-tagged frame, {} bytes", self.0.len()),
            EtherType::Unknown(t) => write!(f, "EtherType 0x{t:04x}, {} bytes", self.0.len()),
        }
    }
}
// ANCHOR_END: student_ch2_summary
// ANCHOR_END: summary

fn arp(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let Ok(p) = ArpPacket::new_checked(bytes) else {
        return write!(f, "ARP, malformed or not Ethernet/IPv4 ({} bytes)", bytes.len());
    };
    match p.operation() {
        ArpOperation::Request => {
            write!(f, "ARP who-has {} tell {}", p.target_proto_addr(), p.sender_proto_addr())
        }
        ArpOperation::Reply => {
            write!(f, "ARP reply {} is-at {}", p.sender_proto_addr(), p.sender_hw_addr())
        }
        ArpOperation::Unknown(op) => write!(f, "ARP operation {op}"),
    }
}

fn ipv4(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let ip = match Ipv4Packet::new_checked(bytes) {
        Ok(ip) => ip,
        Err(err) => return write!(f, "IPv4, {err} ({} bytes)", bytes.len()),
    };
    write!(f, "IPv4 {} > {} ", ip.src_addr(), ip.dst_addr())?;
    if ip.is_fragment() {
        write!(f, "fragment offset {}, ", ip.frag_offset())?;
    }
    let payload = ip.payload();
    match ip.protocol() {
        IpProtocol::Icmp if ip.frag_offset() == 0 => icmpv4(f, payload),
        IpProtocol::Icmp => write!(f, "ICMP, {} bytes", payload.len()),
        IpProtocol::Tcp => write!(f, "TCP, {} bytes", payload.len()),
        IpProtocol::Udp => write!(f, "UDP, {} bytes", payload.len()),
        IpProtocol::Unknown(p) => write!(f, "protocol {p}, {} bytes", payload.len()),
    }
}

fn icmpv4(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let Ok(m) = Icmpv4Message::new_checked(bytes) else {
        return write!(f, "ICMP, truncated ({} bytes)", bytes.len());
    };
    let len = bytes.len();
    match m.msg_type() {
        t @ (Icmpv4Type::EchoRequest | Icmpv4Type::EchoReply) => {
            let what = if t == Icmpv4Type::EchoRequest { "request" } else { "reply" };
            write!(
                f,
                "ICMP echo {what} id 0x{:04x} seq {}, {len} bytes",
                m.echo_ident(),
                m.echo_seq_no()
            )
        }
        Icmpv4Type::DestinationUnreachable => {
            write!(f, "ICMP destination unreachable code {}, {len} bytes", m.msg_code())
        }
        Icmpv4Type::TimeExceeded => write!(f, "ICMP time exceeded, {len} bytes"),
        Icmpv4Type::Redirect => write!(f, "ICMP redirect, {len} bytes"),
        Icmpv4Type::ParameterProblem => {
            write!(f, "ICMP parameter problem, pointer {}, {len} bytes", m.param_pointer())
        }
        Icmpv4Type::Unknown(t) => write!(f, "ICMP type {t} code {}, {len} bytes", m.msg_code()),
    }
}

// ANCHOR: ipv6
/// Names the IPv6 messages: those a fresh interface sends on its own (as soon as it is up,
/// Linux joins multicast groups with MLD reports, checks its addresses are unique with
/// neighbour solicitations from ::, and looks for routers with router solicitations),
/// and chapter 8's neighbour discovery and ping.
fn ipv6(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let Ok(ip) = Ipv6Packet::new_checked(bytes) else {
        return write!(f, "IPv6, malformed ({} bytes)", bytes.len());
    };
    write!(f, "IPv6 {} > {} ", ip.src_addr(), ip.dst_addr())?;
    let (proto, upper) = match ip.upper_layer() {
        Ok(upper) => upper,
        Err(Extension::Fragment) => return f.write_str("fragment"),
        Err(ext) => return write!(f, "(extension header: {ext:?})"),
    };
    if proto != ipv6::NEXT_HEADER_ICMPV6 {
        return write!(f, "next header {proto}, {} bytes", upper.len());
    }
    let Ok(icmp) = Icmpv6Message::new_checked(upper) else {
        return write!(f, "ICMPv6, truncated ({} bytes)", upper.len());
    };
    let len = upper.len();
    match icmp.msg_type() {
        t @ (icmpv6::ECHO_REQUEST | icmpv6::ECHO_REPLY) => {
            let what = if t == icmpv6::ECHO_REQUEST { "request" } else { "reply" };
            let (id, seq) = (icmp.echo_ident(), icmp.echo_seq_no());
            write!(f, "ICMPv6 echo {what} id 0x{id:04x} seq {seq}, {len} bytes")
        }
        t @ (icmpv6::NEIGHBOR_SOLICITATION | icmpv6::NEIGHBOR_ADVERTISEMENT) => {
            let Ok(nd) = NdiscMessage::new_checked(upper) else {
                return write!(f, "ICMPv6 neighbor discovery, truncated ({len} bytes)");
            };
            if t == icmpv6::NEIGHBOR_SOLICITATION {
                write!(f, "ICMPv6 neighbor solicitation who-has {}", nd.target())
            } else {
                let flags = nd.flags();
                write!(f, "ICMPv6 neighbor advertisement {} is-at ", nd.target())?;
                match nd.options().flatten().find(|(kind, _)| *kind == ndisc::OPT_TARGET_LL_ADDR) {
                    Some((_, option)) => {
                        let mac: [u8; 6] =
                            option.get(2..8).and_then(|m| m.try_into().ok()).unwrap_or([0; 6]);
                        write!(f, "{}", MacAddr(mac))?;
                    }
                    None => f.write_str("(no option)")?,
                }
                for (bit, name) in
                    [(ndisc::FLAG_SOLICITED, " solicited"), (ndisc::FLAG_OVERRIDE, " override")]
                {
                    if flags & bit != 0 {
                        f.write_str(name)?;
                    }
                }
                Ok(())
            }
        }
        t => {
            let name = match t {
                icmpv6::MLD_QUERY => "multicast listener query",
                icmpv6::MLDV1_REPORT => "MLDv1 report",
                icmpv6::MLDV2_REPORT => "MLDv2 report",
                icmpv6::ROUTER_SOLICITATION => "router solicitation",
                icmpv6::ROUTER_ADVERTISEMENT => "router advertisement",
                _ => return write!(f, "ICMPv6 type {t}, {len} bytes"),
            };
            write!(f, "ICMPv6 {name}, {len} bytes")
        }
    }
}
// ANCHOR_END: ipv6

// ANCHOR: dump
/// A hex dump with each header labelled and offsets counted from the frame's start.
pub struct Dump<'a>(pub &'a [u8]);

// ANCHOR: student_ch2_dump "chapter 2: the annotated hex dump"
impl fmt::Display for Dump<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let frame = self.0;
        let mut start = 0;
        for (label, end) in layers(frame) {
            let end = end.min(frame.len());
            if end <= start {
                continue;
            }
            writeln!(f, "  {label} ({} bytes)", end - start)?;
            let config = HexConfig { title: false, display_offset: start, ..HexConfig::default() };
            hex_write(f, &&frame[start..end], config)?;
            writeln!(f)?;
            start = end;
        }
        Ok(())
    }
}
// ANCHOR_END: student_ch2_dump
// ANCHOR_END: dump

/// Where each layer ends, as far as the frame can be parsed.
fn layers(frame: &[u8]) -> impl Iterator<Item = (&'static str, usize)> {
    let eth_end = ethernet::HEADER_LEN;
    let mut parts: [(&'static str, usize); 4] = [("", 0); 4];
    parts[0] = ("Ethernet header", eth_end);
    let mut n = 1;
    if let Ok(eth) = EthernetFrame::new_checked(frame) {
        match eth.ethertype() {
            EtherType::Arp => {
                parts[1] = ("ARP packet", eth_end + crate::wire::arp::PACKET_LEN);
                n = 2;
            }
            EtherType::Ipv4 => match Ipv4Packet::new_checked(eth.payload()) {
                Ok(ip) => {
                    let label = match ip.protocol() {
                        IpProtocol::Icmp => "ICMP message",
                        _ => "IPv4 payload",
                    };
                    let header = if ip.header_len() > 20 {
                        "IPv4 header with options"
                    } else {
                        "IPv4 header"
                    };
                    parts[1] = (header, eth_end + ip.header_len());
                    parts[2] = (label, eth_end + usize::from(ip.total_len()));
                    n = 3;
                }
                Err(_) => {
                    parts[1] = ("IPv4 (malformed)", frame.len());
                    n = 2;
                }
            },
            EtherType::Ipv6 => match Ipv6Packet::new_checked(eth.payload()) {
                Ok(ip) => {
                    parts[1] = ("IPv6 header", eth_end + ipv6::HEADER_LEN);
                    parts[2] = (
                        "IPv6 payload",
                        eth_end + ipv6::HEADER_LEN + usize::from(ip.payload_len()),
                    );
                    n = 3;
                }
                Err(_) => {
                    parts[1] = ("IPv6 (malformed)", frame.len());
                    n = 2;
                }
            },
            _ => {
                parts[1] = ("payload", frame.len());
                n = 2;
            }
        }
    }
    // Whatever the headers do not account for: padding up to the 60-byte minimum, or junk.
    parts[n] = ("trailing bytes (Ethernet padding)", frame.len());
    parts.into_iter().take(n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::fixture;

    #[test]
    fn summaries_read_like_tcpdump() {
        let s = |b: Vec<u8>| Summary(&b).to_string();
        assert_eq!(s(fixture!("arp_request_arping")), "ARP who-has 172.16.1.2 tell 172.16.1.1");
        assert_eq!(s(fixture!("kernel_arp_reply")), "ARP reply 172.16.1.2 is-at 02:00:00:00:00:02");
        let ping = s(fixture!("icmp_echo_request_56"));
        assert!(ping.starts_with("IPv4 172.16.1.1 > 172.16.1.2 ICMP echo request id 0x"), "{ping}");
        assert!(ping.ends_with(", 64 bytes"), "{ping}");
        assert!(s(fixture!("ipv6_router_solicitation")).contains("ICMPv6 router solicitation"));
        assert!(s(fixture!("ipv6_mld_report")).contains("ICMPv6 MLDv2 report"));
        assert!(s(vec![1, 2, 3]).starts_with("runt frame, 3 bytes"));
    }

    #[test]
    fn the_dump_labels_each_header() {
        let frame = fixture!("icmp_echo_request_options");
        let dump = Dump(&frame).to_string();
        assert!(dump.contains("Ethernet header (14 bytes)"), "{dump}");
        assert!(dump.contains("IPv4 header with options"), "{dump}");
        assert!(dump.contains("ICMP message (64 bytes)"), "{dump}");
        assert!(dump.contains("000e:"), "offsets count from the frame's start:\n{dump}");
    }

    #[test]
    fn summary_and_dump_survive_every_truncation() {
        for frame in [
            fixture!("icmp_echo_request_56"),
            fixture!("ipv6_mld_report"),
            fixture!("arp_request_kernel"),
        ] {
            for len in 0..=frame.len() {
                let _ = Summary(&frame[..len]).to_string();
                let _ = Dump(&frame[..len]).to_string();
            }
        }
    }
}
