//! What the full responder did, frame by frame (chapter 5).

use std::fmt;

use super::{DropReason, Outcome, Reply};

// ANCHOR: counters
/// What the full responder did, frame by frame: counted, never allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    pub frames_read: u64,
    pub arp_replies: u64,
    pub echo_replies: u64,
    pub parameter_problems: u64,
    pub neighbor_adverts: u64,
    pub echo6_replies: u64,
    pub udp_echo_replies: u64,
    pub dhcp_replies: u64,
    /// Replies the kernel refused (the interface was down at that instant).
    pub send_failures: u64,
    pub dropped: [u64; DropReason::ALL.len()],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            frames_read: 0,
            arp_replies: 0,
            echo_replies: 0,
            parameter_problems: 0,
            neighbor_adverts: 0,
            echo6_replies: 0,
            udp_echo_replies: 0,
            dhcp_replies: 0,
            send_failures: 0,
            dropped: [0; DropReason::ALL.len()],
        }
    }
}

impl Counters {
    /// Counts one frame read and what became of it.
    pub fn record(&mut self, outcome: &Outcome) {
        self.frames_read += 1;
        match outcome {
            Ok(Reply::Arp(_)) => self.arp_replies += 1,
            Ok(Reply::Echo(_)) => self.echo_replies += 1,
            Ok(Reply::ParameterProblem(_)) => self.parameter_problems += 1,
            Ok(Reply::NeighborAdvert(_)) => self.neighbor_adverts += 1,
            Ok(Reply::Echo6(_)) => self.echo6_replies += 1,
            Ok(Reply::UdpEcho(_)) => self.udp_echo_replies += 1,
            Ok(Reply::Dhcp(_)) => self.dhcp_replies += 1,
            Err(reason) => {
                if let Some(count) = self.dropped.get_mut(reason.index()) {
                    *count += 1;
                }
            }
        }
    }

    /// A reply that [`Counters::record`] counted but the kernel then refused (the
    /// interface went down between our read and our write): it was not sent after all.
    pub fn record_refused(&mut self, reply: Reply) {
        let sent = match reply {
            Reply::Arp(_) => &mut self.arp_replies,
            Reply::Echo(_) => &mut self.echo_replies,
            Reply::ParameterProblem(_) => &mut self.parameter_problems,
            Reply::NeighborAdvert(_) => &mut self.neighbor_adverts,
            Reply::Echo6(_) => &mut self.echo6_replies,
            Reply::UdpEcho(_) => &mut self.udp_echo_replies,
            Reply::Dhcp(_) => &mut self.dhcp_replies,
        };
        *sent = sent.saturating_sub(1);
        self.send_failures += 1;
    }

    /// How many frames were dropped for this reason.
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        self.dropped.get(reason.index()).copied().unwrap_or(0)
    }

    pub fn total_dropped(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:>10}  frames read", self.frames_read)?;
        writeln!(f, "{:>10}  ARP replies sent", self.arp_replies)?;
        writeln!(f, "{:>10}  ICMP echo replies sent", self.echo_replies)?;
        if self.parameter_problems > 0 {
            writeln!(f, "{:>10}  ICMP parameter problems sent", self.parameter_problems)?;
        }
        // IPv6 (chapter 8), when there was any: chapter 5's counts stay as they were.
        if self.neighbor_adverts + self.echo6_replies > 0 {
            writeln!(f, "{:>10}  IPv6 neighbour advertisements sent", self.neighbor_adverts)?;
            writeln!(f, "{:>10}  ICMPv6 echo replies sent", self.echo6_replies)?;
        }
        if self.udp_echo_replies > 0 {
            writeln!(f, "{:>10}  UDP echo replies sent", self.udp_echo_replies)?;
        }
        if self.dhcp_replies > 0 {
            writeln!(f, "{:>10}  DHCP replies sent", self.dhcp_replies)?;
        }
        if self.send_failures > 0 {
            writeln!(f, "{:>10}  replies the kernel refused (interface down)", self.send_failures)?;
        }
        write!(f, "{:>10}  frames dropped", self.total_dropped())?;
        for reason in DropReason::ALL {
            let count = self.dropped_for(reason);
            if count > 0 {
                write!(f, "\n{count:>10}    {reason}")?;
            }
        }
        Ok(())
    }
}
// ANCHOR_END: counters

#[cfg(test)]
mod tests {
    use super::*;
    use crate::respond::Services;
    use crate::respond::testing::*;
    use crate::wire::fixtures::fixture;

    #[test]
    fn counters_add_up() {
        let mut counters = Counters::default();
        let mut out = [0u8; 1514];
        for frame in [
            fixture!("arp_request_arping"),
            fixture!("icmp_echo_request_56"),
            fixture!("ipv6_mld_report"),
            fixture!("ipv6_ns_multicast"),
            fixture!("ipv6_echo_request_56"),
        ] {
            counters.record(&call(Services::ALL, &frame, &mut out));
        }
        assert_eq!((counters.frames_read, counters.arp_replies, counters.echo_replies), (5, 1, 1));
        assert_eq!((counters.neighbor_adverts, counters.echo6_replies), (1, 1));
        assert_eq!(counters.dropped[DropReason::Ipv6NotForUs.index()], 1);
        let text = counters.to_string();
        assert!(
            text.contains("1  frames dropped")
                && text.contains("1    IPv6 for another address or group")
                && text.contains("1  IPv6 neighbour advertisements sent"),
            "{text}"
        );
    }

    #[test]
    fn a_refused_reply_is_not_counted_as_sent() {
        let mut counters = Counters::default();
        let mut out = [0u8; 1514];
        let outcome = call(Services::ALL, &fixture!("icmp_echo_request_56"), &mut out);
        counters.record(&outcome);
        counters.record_refused(outcome.unwrap());
        assert_eq!((counters.echo_replies, counters.send_failures), (0, 1));
        assert!(counters.to_string().contains("1  replies the kernel refused"));
    }
}
