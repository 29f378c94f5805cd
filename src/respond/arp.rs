//! ARP (chapter 3): "who has 172.16.1.2?" answered with our MAC, and nothing else.

use super::{DropReason, Host, Outcome, Reply, start_frame};
use crate::wire;
use crate::wire::arp::{self, ArpOperation, ArpPacket, ArpRepr};
use crate::wire::ethernet::{self, EtherType, EthernetFrame, EthernetRepr};

// ANCHOR: arp_reply
// ANCHOR: student_ch3_reply "chapter 3: the ARP reply decision"
/// Answers "who has `host.ip`?" with "`host.ip` is at `host.mac`" (RFC 826).
pub fn arp_reply(host: &Host, eth: &EthernetFrame<&[u8]>, out: &mut [u8]) -> Outcome {
    // Requests are broadcast; the kernel re-checks a neighbour with a unicast one.
    let dst = eth.dst_addr();
    if !(dst.is_broadcast() || dst == host.mac) {
        return Err(DropReason::NotOurMac);
    }
    let request = ArpPacket::new_checked(eth.payload()).map_err(|err| match err {
        wire::Error::Truncated => DropReason::Truncated,
        _ => DropReason::ArpUnsupported,
    })?;
    let request = ArpRepr::parse(&request);
    if request.operation != ArpOperation::Request {
        return Err(DropReason::ArpNotRequest);
    }
    if request.target_proto_addr != host.ip {
        return Err(DropReason::ArpNotForUs);
    }
    // A sender claiming our own address is a conflict (or a gratuitous ARP), not a
    // question; a group sender address would make our reply a broadcast. A sender IP of
    // 0.0.0.0 is an address probe (RFC 5227): answered, as Linux does, to defend ours.
    let sender_ip = request.sender_proto_addr;
    if request.sender_hw_addr.is_multicast()
        || sender_ip == host.ip
        || sender_ip.is_broadcast()
        || sender_ip.is_multicast()
        || sender_ip.is_loopback()
    {
        return Err(DropReason::ArpBadSender);
    }

    let reply = ArpRepr {
        operation: ArpOperation::Reply,
        sender_hw_addr: host.mac,
        sender_proto_addr: host.ip,
        target_hw_addr: request.sender_hw_addr,
        target_proto_addr: request.sender_proto_addr,
    };
    let len = ethernet::HEADER_LEN + arp::PACKET_LEN;
    let header = EthernetRepr {
        dst_addr: request.sender_hw_addr,
        src_addr: host.mac,
        ethertype: EtherType::Arp,
    };
    let mut frame = start_frame(out, len, header)?;
    reply
        .emit(&mut ArpPacket::new_unchecked(frame.payload_mut()))
        .map_err(|_| DropReason::NoRoom)?;
    Ok(Reply::Arp(len))
}
// ANCHOR_END: student_ch3_reply
// ANCHOR_END: arp_reply

#[cfg(test)]
mod tests {
    use crate::respond::testing::*;
    use crate::wire::fixtures::fixture;

    #[test]
    fn arp_reply_is_byte_exact_to_the_kernels() {
        // kernel_arp_reply is what Linux itself answered to arping for 172.16.1.2 with our
        // MAC (captured over a veth pair): our reply to the same request must be identical.
        let request = fixture!("arp_request_arping");
        let kernel = fixture!("kernel_arp_reply");
        let ours = reply_to(&request).unwrap();
        assert_eq!(hex::encode(&ours), hex::encode(&kernel[..ours.len()]));
    }

    #[test]
    fn answers_the_kernels_own_who_has() {
        let request = fixture!("arp_request_kernel");
        let ours = reply_to(&request).unwrap();
        assert_eq!(ours.len(), 42);
        assert_eq!(ours[0..6], request[6..12], "back to the asker");
        assert_eq!(ours[6..12], US.mac.0);
    }
}
