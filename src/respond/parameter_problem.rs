//! ICMP Parameter Problem (chapter 4): what Linux sends about IPv4 options it refuses,
//! and when RFC 1122 forbids sending anything.

use super::ipv4::reply_header;
use super::{DropReason, Host, Idents, Outcome, Reply, start_frame};
use crate::wire::ethernet::{self, EtherType, EthernetFrame, EthernetRepr};
use crate::wire::icmpv4::{self, Icmpv4Message, Icmpv4Type};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr, MIN_HEADER_LEN};
use crate::wire::ipv4_options::BadOption;

// ANCHOR: parameter_problem
/// The most of the offending datagram an ICMP error quotes: Linux fills its errors up to
/// 576 bytes (RFC 1812 4.3.2.3), a 20-byte header and the 8-byte ICMP header included.
const MAX_QUOTE: usize = 576 - MIN_HEADER_LEN - icmpv4::HEADER_LEN;

/// Answers a packet whose options Linux refuses with what Linux sends: an ICMP Parameter
/// Problem (type 12, code 0) whose pointer names the offending byte (RFC 792), with
/// precedence "internetwork control" (0xc0) and the request's TOS bits, quoting the
/// request. Not when RFC 1122 (3.2.2) forbids an error: about a later fragment, about an
/// ICMP error (or, as Linux, an ICMP type it does not know), to an address that is not one
/// host's (broadcasts, multicast and 0.0.0.0/8 were refused already; class E is left).
/// And unlike Linux, never longer than the request: the quote stops there (RFC 1122 asks
/// for the header and 8 bytes of data only), and a request too short even for those gets
/// no error at all.
pub(super) fn parameter_problem(
    host: &Host,
    idents: &mut Idents,
    eth: &EthernetFrame<&[u8]>,
    ip: &Ipv4Packet<&[u8]>,
    bad: BadOption,
    out: &mut [u8],
) -> Outcome {
    if ip.frag_offset() != 0 {
        return Err(DropReason::Ipv4BadOption);
    }
    if ip.protocol() == IpProtocol::Icmp {
        match ip.payload().first() {
            Some(&kind) if !Icmpv4Type::is_error(kind) && kind <= Icmpv4Type::HIGHEST_KNOWN => {}
            _ => return Err(DropReason::Ipv4BadOption),
        }
    }
    if u32::from(ip.src_addr()) >> 28 == 0xf {
        return Err(DropReason::Ipv4BadOption);
    }
    let request = eth.payload().get(..usize::from(ip.total_len())).ok_or(DropReason::Truncated)?;
    let room = eth.payload().len().saturating_sub(Ipv4Repr::HEADER_LEN + icmpv4::HEADER_LEN);
    let quote_len = request.len().min(MAX_QUOTE).min(room);
    if quote_len < request.len().min(ip.header_len() + 8) {
        return Err(DropReason::Ipv4BadOption);
    }
    let quote = request.get(..quote_len).ok_or(DropReason::Truncated)?;

    let icmp_len = icmpv4::HEADER_LEN + quote_len;
    let len = ethernet::HEADER_LEN + Ipv4Repr::HEADER_LEN + icmp_len;
    let header =
        EthernetRepr { dst_addr: eth.src_addr(), src_addr: host.mac, ethertype: EtherType::Ipv4 };
    let mut frame = start_frame(out, len, header)?;
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    // RFC 1349's four TOS bits of the request, under precedence 6 (0xc0).
    let tos = (ip.tos() & 0x1e) | 0xc0;
    reply_header(host, idents, ip, IpProtocol::Icmp, tos, icmp_len)
        .emit(&mut packet)
        .map_err(|_| DropReason::NoRoom)?;
    let payload = packet.payload_mut().get_mut(..icmp_len).ok_or(DropReason::NoRoom)?;
    let mut error = Icmpv4Message::new_unchecked(payload);
    error.set_msg_type(Icmpv4Type::ParameterProblem);
    error.set_msg_code(0);
    error.set_param_pointer(bad.pointer);
    error.data_mut().copy_from_slice(quote);
    error.fill_checksum();
    Ok(Reply::ParameterProblem(len))
}
// ANCHOR_END: parameter_problem

#[cfg(test)]
mod tests {
    use super::*;
    use crate::respond::Services;
    use crate::respond::testing::*;
    use crate::wire::fixtures::fixture;

    // ANCHOR: parameter_problem_test
    #[test]
    fn parameter_problem_matches_the_kernels_but_for_what_we_choose() {
        // The kernel's answer to its own ping -R request with the option length made 40.
        // Ours: the same but for the identification (and the checksums that follow), and
        // the quote, which stops where the error would grow longer than the request.
        let request = fixture!("kernel_bad_option_request");
        let kernel = fixture!("kernel_parameter_problem");
        let ours = reply_to(&request).unwrap();
        assert_eq!(ours.len(), request.len(), "no longer than the request");
        let quote = ours.len() - 42;
        let mut kernel = kernel[..ours.len()].to_vec();
        kernel[16..18].copy_from_slice(&(20 + 8 + quote as u16).to_be_bytes());
        let differs = differences(&ours, &kernel);
        assert!(differs.iter().all(|i| [18, 19, 24, 25, 36, 37].contains(i)), "{differs:?}");
        let icmp = Icmpv4Message::new_checked(&ours[34..]).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!((icmp.msg_type(), icmp.param_pointer()), (Icmpv4Type::ParameterProblem, 21));
    }
    // ANCHOR_END: parameter_problem_test

    #[test]
    fn parameter_problems_go_where_rfc_1122_allows() {
        let ping = fixture!("icmp_echo_request_56");
        let bad = [7, 1, 0, 0]; // an option of length 1: pointer 20
        let answered = |frame: &[u8]| match call(Services::ALL, frame, &mut [0xa5u8; 2000]) {
            Ok(Reply::ParameterProblem(_)) => Ok(()),
            other => Err(other),
        };
        for (what, frame) in [
            ("echo request", with_options(&ping, &bad)),
            ("UDP", with_ip(&with_options(&ping, &bad), |p| p[9] = 17)),
            ("first fragment", with_ip(&with_options(&ping, &bad), |p| p[6] = 0x20)),
            ("echo reply", with_icmp24(&with_options(&ping, &bad), 0)),
            ("address mask reply (18)", with_icmp24(&with_options(&ping, &bad), 18)),
            ("bad ICMP checksum", flip(&with_options(&ping, &bad), 60)),
        ] {
            assert_eq!(answered(&frame), Ok(()), "{what}");
        }
        for (what, frame) in [
            ("destination unreachable", with_icmp24(&with_options(&ping, &bad), 3)),
            ("parameter problem", with_icmp24(&with_options(&ping, &bad), 12)),
            ("unknown ICMP type 19", with_icmp24(&with_options(&ping, &bad), 19)),
            ("later fragment", with_ip(&with_options(&ping, &bad), |p| p[7] = 1)),
            ("from class E", with_ip(&with_options(&ping, &bad), |p| p[12] = 240)),
            ("too short to quote", with_options(&fixture!("icmp_echo_request_0"), &bad)),
            ("no ICMP type byte", with_ip(&with_options(&ping, &bad)[..38], |p| p[3] = 24)),
        ] {
            assert_eq!(answered(&frame), Err(Err(DropReason::Ipv4BadOption)), "{what}");
        }
        let reply = reply_to(&with_ip(&with_options(&ping, &bad), |p| p[1] = 0xff)).unwrap();
        assert_eq!(reply[15], 0xde, "precedence 6 and the request's TOS bits, as Linux");
    }
}
