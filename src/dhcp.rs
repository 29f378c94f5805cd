//! A DHCP server (RFC 2131, options from RFC 2132) for the hosts on our link: chapter 10.
//!
//! Unlike [`crate::respond`](mod@crate::respond), which answers every frame from the frame alone, a DHCP
//! server remembers: which address it offered to which client, and until when a client
//! holds its lease. That state lives in [`Dhcp`], and [`Dhcp::handle`] is the one way
//! in: a frame and the time in, a reply frame (or the reason for silence) out. Still no
//! I/O here: the program reads and writes the TAP, the time is a parameter, and every
//! decision can be tested with captured bytes.
//!
//! The conversation (RFC 2131 section 3.1):
//!
//! ```text
//!   client (port 68)                          server (port 67)
//!   DHCPDISCOVER  0.0.0.0 -> 255.255.255.255  ->
//!                                           <-  DHCPOFFER   yiaddr 172.16.1.100
//!   DHCPREQUEST   0.0.0.0 -> 255.255.255.255  ->  (server id 172.16.1.2, requested .100)
//!                                           <-  DHCPACK     lease, mask, router
//!   ... later, DHCPREQUEST from 172.16.1.100 to renew, DHCPRELEASE to give it back
//! ```

#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::respond::{DropReason, Host, Idents, REPLY_TTL, Reply, start_frame};
use crate::wire::dhcp::{
    self, BOOTREPLY, DhcpPacket, DhcpRequest, HTYPE_ETHERNET, MessageType, OptionsWriter, option,
};
use crate::wire::ethernet::{self, EtherType, EthernetFrame, EthernetRepr, MacAddr};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
use crate::wire::udp::{self, UdpPacket, UdpRepr};
use crate::wire::{self};

// ANCHOR: config
/// What the server hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpConfig {
    /// Our own address and MAC: option 54 (server identifier) names the address.
    pub server: Host,
    pub subnet_mask: Ipv4Addr,
    /// Option 3: where the client sends what is not on the link.
    pub router: Ipv4Addr,
    /// The pool, both ends included.
    pub pool_first: Ipv4Addr,
    pub pool_last: Ipv4Addr,
    /// The longest lease we give (and the one we give when none is asked for).
    pub lease_time: Duration,
    /// How long an OFFER keeps its address for the client that was offered it.
    pub offer_hold: Duration,
}

/// The shortest lease we give, whatever a client asks for: a lease of a few seconds
/// would have the client renewing all the time.
pub const MIN_LEASE: Duration = Duration::from_secs(60);

impl DhcpConfig {
    /// The lab's: we are `server` in a /24 whose `.1` is the router (the kernel's side of
    /// tap4), and we lend `.100` to `.199` for an hour.
    pub fn lab(server: Host) -> DhcpConfig {
        let [a, b, c, _] = server.ip.octets();
        DhcpConfig {
            server,
            subnet_mask: Ipv4Addr::new(255, 255, 255, 0),
            router: Ipv4Addr::new(a, b, c, 1),
            pool_first: Ipv4Addr::new(a, b, c, 100),
            pool_last: Ipv4Addr::new(a, b, c, 199),
            lease_time: Duration::from_secs(3600),
            offer_hold: Duration::from_secs(60),
        }
    }

    /// Whether `addr` is a host address of our subnet (not its network or broadcast
    /// address).
    pub fn on_our_subnet(&self, addr: Ipv4Addr) -> bool {
        let (mask, addr) = (u32::from(self.subnet_mask), u32::from(addr));
        let net = u32::from(self.server.ip) & mask;
        addr & mask == net && addr != net && addr != net | !mask
    }

    fn in_pool(&self, addr: Ipv4Addr) -> bool {
        (self.pool_first..=self.pool_last).contains(&addr) && addr != self.server.ip
    }
}
// ANCHOR_END: config

// ANCHOR: lease
/// One row of the lease table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The client, by the MAC in `chaddr` ([`DECLINED`] for an address a client found in
    /// use by someone else).
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    /// Offered only, or bound by an ACK.
    pub bound: bool,
    pub expires: Instant,
}

/// The owner of an address that a client declined (RFC 2131 4.3.3): nobody gets it until
/// the entry expires.
pub const DECLINED: MacAddr = MacAddr([0; 6]);
// ANCHOR_END: lease

/// What a DHCP message made the server do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Offered(Ipv4Addr),
    Acked(Ipv4Addr),
    /// A NAK: the address the client asked for is not (or no longer) its.
    Naked,
    Released(Ipv4Addr),
    Declined(Ipv4Addr),
}

/// A DHCP message handled: what happened, and the reply written, if any (RELEASE and
/// DECLINE get none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    pub event: Event,
    pub reply: Option<Reply>,
}

/// The server: its configuration and its lease table.
#[derive(Debug, Clone)]
pub struct Dhcp {
    config: DhcpConfig,
    leases: Vec<Lease>,
}

// ANCHOR: handle
impl Dhcp {
    pub fn new(config: DhcpConfig) -> Dhcp {
        Dhcp { config, leases: Vec::new() }
    }

    pub fn config(&self) -> &DhcpConfig {
        &self.config
    }

    /// The lease table, expired rows included until their address is given again.
    pub fn leases(&self) -> &[Lease] {
        &self.leases
    }

    /// Looks at one frame read from the TAP. `None` if it is not for a DHCP server (not
    /// IPv4, not UDP to port 67): the caller passes it on to [`crate::respond()`]. Otherwise
    /// what was done (and the reply written into `out`), or why nothing was.
    pub fn handle(
        &mut self,
        now: Instant,
        idents: &mut Idents,
        frame: &[u8],
        out: &mut [u8],
    ) -> Option<Result<Handled, DropReason>> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        if eth.ethertype() != EtherType::Ipv4 {
            return None;
        }
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        let dst_port = ip.payload().get(2..4)?;
        if ip.protocol() != IpProtocol::Udp || dst_port != dhcp::SERVER_PORT.to_be_bytes() {
            return None;
        }
        Some(self.server_message(now, idents, &eth, &ip, out))
    }
    // ANCHOR_END: handle

    // ANCHOR: checks
    /// The checks of every layer for a message to a DHCP server on our link: from a
    /// unicast MAC, to the broadcast or to us (our MAC, 255.255.255.255 or our address),
    /// from 0.0.0.0 (a client without an address) or from our subnet, checksums right.
    fn server_message(
        &mut self,
        now: Instant,
        idents: &mut Idents,
        eth: &EthernetFrame<&[u8]>,
        ip: &Ipv4Packet<&[u8]>,
        out: &mut [u8],
    ) -> Result<Handled, DropReason> {
        let us = self.config.server;
        if eth.src_addr().is_multicast() {
            return Err(DropReason::BadSourceMac);
        }
        if !(eth.dst_addr().is_broadcast() || eth.dst_addr() == us.mac) {
            return Err(DropReason::NotOurMac);
        }
        if !ip.verify_checksum() {
            return Err(DropReason::Ipv4BadChecksum);
        }
        if ip.is_fragment() {
            return Err(DropReason::Ipv4Fragment);
        }
        if !(ip.dst_addr().is_broadcast() || ip.dst_addr() == us.ip) {
            return Err(DropReason::Ipv4NotForUs);
        }
        let src = ip.src_addr();
        if !(src.is_unspecified() || self.config.on_our_subnet(src)) || src == us.ip {
            return Err(DropReason::Ipv4BadSource);
        }
        let datagram = UdpPacket::new_checked(ip.payload()).map_err(|err| match err {
            wire::Error::Truncated => DropReason::Truncated,
            _ => DropReason::UdpMalformed,
        })?;
        if !datagram.verify_checksum(src, ip.dst_addr()) {
            return Err(DropReason::UdpBadChecksum);
        }
        let request = DhcpPacket::new_checked(datagram.payload())
            .and_then(|packet| DhcpRequest::parse(&packet))
            .map_err(|_| DropReason::DhcpMalformed)?;
        if !request.giaddr.is_unspecified() {
            return Err(DropReason::DhcpRelayed);
        }
        if datagram.src_port() != dhcp::CLIENT_PORT {
            return Err(DropReason::DhcpMalformed);
        }
        let mac = request.client_mac;
        if !mac.is_unicast() || mac == DECLINED || mac != eth.src_addr() {
            return Err(DropReason::DhcpBadClient);
        }
        self.expire(now);
        let (event, lease) = self.decide(now, &request)?;
        let reply = match event {
            Event::Offered(_) | Event::Acked(_) | Event::Naked => {
                Some(self.write_reply(idents, &request, event, lease, out)?)
            }
            Event::Released(_) | Event::Declined(_) => None,
        };
        Ok(Handled { event, reply })
    }
    // ANCHOR_END: checks

    /// Forgets offers and leases whose time is up.
    fn expire(&mut self, now: Instant) {
        self.leases.retain(|lease| lease.expires > now);
    }

    fn lease_of(&self, mac: MacAddr) -> Option<&Lease> {
        self.leases.iter().find(|lease| lease.mac == mac)
    }

    /// The lease a client gets: what it asked for, within [`MIN_LEASE`] and ours. A
    /// client asking for years gets our hour: RFC 2131 4.3.1 leaves the choice to us.
    fn lease_for(&self, request: &DhcpRequest) -> Duration {
        let asked = request
            .lease_time
            .map_or(self.config.lease_time, |secs| Duration::from_secs(u64::from(secs)));
        asked.clamp(MIN_LEASE, self.config.lease_time.max(MIN_LEASE))
    }

    // ANCHOR: decide
    /// RFC 2131 section 4.3: what to do with each message type, and the lease it is about.
    fn decide(
        &mut self,
        now: Instant,
        request: &DhcpRequest,
    ) -> Result<(Event, Duration), DropReason> {
        let (us, mac) = (self.config.server.ip, request.client_mac);
        let lease = self.lease_for(request);
        match request.message_type {
            // 4.3.1: the client's current address, else the one it asks for if free,
            // else the first free one; held for a while for this client.
            MessageType::Discover => {
                let ip = match self.lease_of(mac) {
                    Some(held) => held.ip,
                    None => request
                        .requested_ip
                        .filter(|ip| self.free(*ip))
                        .or_else(|| self.first_free())
                        .ok_or(DropReason::DhcpPoolExhausted)?,
                };
                if !self.lease_of(mac).is_some_and(|held| held.bound) {
                    self.put(Lease {
                        mac,
                        ip,
                        bound: false,
                        expires: now + self.config.offer_hold,
                    });
                }
                Ok((Event::Offered(ip), lease))
            }
            MessageType::Request => {
                let held = self.lease_of(mac).map(|held| held.ip);
                let asked = match (request.server_id, request.requested_ip) {
                    // SELECTING: the client chose another server's offer, ours is free.
                    (Some(server), _) if server != us => {
                        self.leases.retain(|l| l.mac != mac || l.bound);
                        return Err(DropReason::DhcpNotForUs);
                    }
                    (Some(_), Some(ip)) => ip,
                    (Some(_), None) => return Err(DropReason::DhcpMalformed),
                    // INIT-REBOOT: an address on another network gets a NAK (4.3.2).
                    (None, Some(ip)) if !self.config.on_our_subnet(ip) => {
                        return Ok((Event::Naked, lease));
                    }
                    (None, Some(ip)) => ip,
                    // RENEWING or REBINDING: the client's address is in ciaddr.
                    (None, None) if !request.ciaddr.is_unspecified() => request.ciaddr,
                    (None, None) => return Err(DropReason::DhcpMalformed),
                };
                match held {
                    Some(ip) if ip == asked => {
                        self.put(Lease { mac, ip, bound: true, expires: now + lease });
                        Ok((Event::Acked(ip), lease))
                    }
                    // Not the address we offered or lent to this client.
                    Some(_) => Ok((Event::Naked, lease)),
                    None if request.server_id.is_some() => Ok((Event::Naked, lease)),
                    // 4.3.2: no record of this client, so another server may have one.
                    None => Err(DropReason::DhcpNotForUs),
                }
            }
            // 4.3.4: the client gives its address back; no reply.
            MessageType::Release => {
                if request.server_id.is_some_and(|server| server != us) {
                    return Err(DropReason::DhcpNotForUs);
                }
                let ip = request.ciaddr;
                let before = self.leases.len();
                self.leases.retain(|l| !(l.mac == mac && l.ip == ip));
                if self.leases.len() == before {
                    return Err(DropReason::DhcpNotForUs);
                }
                Ok((Event::Released(ip), lease))
            }
            // 4.3.3: the client found the address in use: nobody gets it for a while.
            MessageType::Decline => {
                let ip = request.requested_ip.ok_or(DropReason::DhcpMalformed)?;
                if request.server_id != Some(us) || self.lease_of(mac).map(|l| l.ip) != Some(ip) {
                    return Err(DropReason::DhcpNotForUs);
                }
                self.leases.retain(|l| l.mac != mac);
                let expires = now + self.config.lease_time;
                self.leases.push(Lease { mac: DECLINED, ip, bound: false, expires });
                Ok((Event::Declined(ip), lease))
            }
            _ => Err(DropReason::DhcpNotForUs),
        }
    }
    // ANCHOR_END: decide

    /// Whether `ip` is in the pool and nobody holds it.
    fn free(&self, ip: Ipv4Addr) -> bool {
        self.config.in_pool(ip) && !self.leases.iter().any(|lease| lease.ip == ip)
    }

    fn first_free(&self) -> Option<Ipv4Addr> {
        let (first, last) = (u32::from(self.config.pool_first), u32::from(self.config.pool_last));
        (first..=last).map(Ipv4Addr::from).find(|ip| self.free(*ip))
    }

    /// Adds a lease, or replaces this client's.
    fn put(&mut self, lease: Lease) {
        match self.leases.iter_mut().find(|held| held.mac == lease.mac) {
            Some(held) => *held = lease,
            None => self.leases.push(lease),
        }
    }

    // ANCHOR: reply
    /// Writes an OFFER, ACK or NAK, addressed as RFC 2131 4.1 says: a NAK to everybody;
    /// to the client's address if it has one (`ciaddr`); to everybody if it asked so
    /// (the BROADCAST flag); otherwise to its MAC and the address we give it.
    fn write_reply(
        &self,
        idents: &mut Idents,
        request: &DhcpRequest,
        event: Event,
        lease: Duration,
        out: &mut [u8],
    ) -> Result<Reply, DropReason> {
        let us = self.config.server;
        let (kind, yiaddr) = match event {
            Event::Offered(ip) => (MessageType::Offer, ip),
            Event::Acked(ip) => (MessageType::Ack, ip),
            _ => (MessageType::Nak, Ipv4Addr::UNSPECIFIED),
        };
        let (dst_mac, dst_ip) = if kind == MessageType::Nak {
            (MacAddr::BROADCAST, Ipv4Addr::BROADCAST)
        } else if !request.ciaddr.is_unspecified() {
            (request.client_mac, request.ciaddr)
        } else if request.broadcast() {
            (MacAddr::BROADCAST, Ipv4Addr::BROADCAST)
        } else {
            (request.client_mac, yiaddr)
        };

        let mut options = [0u8; 64];
        let mut writer = OptionsWriter::new(&mut options);
        let secs = u32::try_from(lease.as_secs()).unwrap_or(u32::MAX);
        writer.put(option::MESSAGE_TYPE, &[kind.into()]).map_err(|_| DropReason::NoRoom)?;
        writer.put(option::SERVER_ID, &us.ip.octets()).map_err(|_| DropReason::NoRoom)?;
        if kind != MessageType::Nak {
            for (code, value) in [
                (option::LEASE_TIME, secs.to_be_bytes()),
                // T1 and T2, the RFC's defaults: renew at half the lease, rebind at 7/8.
                (option::RENEWAL_TIME, (secs / 2).to_be_bytes()),
                (option::REBINDING_TIME, (secs / 8 * 7).to_be_bytes()),
                (option::SUBNET_MASK, self.config.subnet_mask.octets()),
                (option::ROUTER, self.config.router.octets()),
            ] {
                writer.put(code, &value).map_err(|_| DropReason::NoRoom)?;
            }
        }
        let options_len = writer.finish().map_err(|_| DropReason::NoRoom)?;
        let message_len = (dhcp::HEADER_LEN + options_len).max(dhcp::MIN_MESSAGE_LEN);
        let udp_len = udp::HEADER_LEN + message_len;
        let len = ethernet::HEADER_LEN + Ipv4Repr::HEADER_LEN + udp_len;

        let header =
            EthernetRepr { dst_addr: dst_mac, src_addr: us.mac, ethertype: EtherType::Ipv4 };
        let mut frame = start_frame(out, len, header)?;
        let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
        Ipv4Repr {
            src_addr: us.ip,
            dst_addr: dst_ip,
            protocol: IpProtocol::Udp,
            tos: 0,
            ident: idents.next(dst_ip),
            dont_frag: false,
            ttl: REPLY_TTL,
            payload_len: udp_len,
        }
        .emit(&mut packet)
        .map_err(|_| DropReason::NoRoom)?;
        let mut datagram = UdpPacket::new_unchecked(packet.payload_mut());
        UdpRepr {
            src_port: dhcp::SERVER_PORT,
            dst_port: dhcp::CLIENT_PORT,
            payload_len: message_len,
        }
        .emit(&mut datagram)
        .map_err(|_| DropReason::NoRoom)?;
        let mut message = DhcpPacket::new_unchecked(datagram.payload_mut());
        message.clear_header();
        message.set_op(BOOTREPLY);
        message.set_hardware(HTYPE_ETHERNET, 6);
        message.set_xid(request.xid);
        message.set_flags(request.flags);
        if kind == MessageType::Ack {
            message.set_ciaddr(request.ciaddr);
        }
        message.set_yiaddr(yiaddr);
        message.set_giaddr(request.giaddr);
        message.set_client_mac(request.client_mac);
        let written = message.options_mut();
        written.fill(0); // Pad options up to BOOTP's 300 bytes
        let options = options.get(..options_len).ok_or(DropReason::NoRoom)?;
        written.get_mut(..options_len).ok_or(DropReason::NoRoom)?.copy_from_slice(options);
        datagram.fill_checksum(us.ip, dst_ip);
        Ok(Reply::Dhcp(len))
    }
    // ANCHOR_END: reply
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Offered(ip) => write!(f, "OFFER {ip}"),
            Event::Acked(ip) => write!(f, "ACK {ip}"),
            Event::Naked => f.write_str("NAK"),
            Event::Released(ip) => write!(f, "RELEASE of {ip}"),
            Event::Declined(ip) => write!(f, "DECLINE of {ip}"),
        }
    }
}

/// The lease table as the program prints it at exit.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTable<'a>(pub &'a Dhcp, pub Instant);

impl fmt::Display for LeaseTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let LeaseTable(dhcp, now) = *self;
        write!(f, "{} leases", dhcp.leases.len())?;
        for lease in &dhcp.leases {
            let state = if lease.mac == DECLINED {
                "declined"
            } else if lease.bound {
                "bound"
            } else {
                "offered"
            };
            let left = lease.expires.saturating_duration_since(now).as_secs();
            write!(f, "\n  {:<15} {}  {state:<8} {left} s left", lease.ip, lease.mac)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "dhcp_tests.rs"]
mod tests;
