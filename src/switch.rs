//! Chapter 12: a learning switch, as a pure type: a frame and the port it came in on go
//! in, the ports it must go out of come out. No file descriptor, no clock of its own
//! (the caller passes `now`), no printing: `12_learning_switch` wires it to taps and
//! QEMU's sockets.
//!
//! The rules are IEEE 802.1D-2004's (clauses 7.7 to 7.9: forwarding, learning and "the
//! Filtering Database"), as the
//! Linux bridge applies them (`net/bridge/br_input.c`, `br_fdb.c`):
//!
//! - learn: the source address of every valid frame is entered in the table with the
//!   port it arrived on; an entry not refreshed for the ageing time (300 s by default,
//!   802.1D table 7-5) is forgotten;
//! - forward: a unicast destination in the table goes out of its one port; broadcast,
//!   multicast and unknown unicast are flooded out of every port but the one the frame
//!   came in on;
//! - never: send a frame back out of its ingress port (a known destination on the
//!   ingress port is filtered), learn a group address (a frame whose source has the I/G
//!   bit set is invalid and dropped, as is the all-zero source), or forward the
//!   link-local control groups `01:80:c2:00:00:0X` (spanning tree, pause, LLDP, 802.1X:
//!   they are for the switch itself, 802.1D table 7-10).

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::wire::MacAddr;
use crate::wire::ethernet::EthernetFrame;

/// 802.1D's recommended ageing time (table 7-5), also the Linux bridge's default.
pub const DEFAULT_AGEING: Duration = Duration::from_secs(300);

/// How many addresses the table holds. A guest sending frames from random source
/// addresses would otherwise grow it without end (the "MAC flooding" attack); when it is
/// full, new addresses are not learnt (their frames are still forwarded, by flooding).
pub const DEFAULT_CAPACITY: usize = 1024;

/// A port: an index into the switch's list of ports (the program names them).
pub type PortId = usize;

// ANCHOR: decision
/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// What the frame taught the switch about its source.
    pub learnt: Learnt,
    /// Where it goes.
    pub forward: Forward,
}

/// What the source address of a frame did to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learnt {
    /// A new entry: the source is now known to be behind the ingress port.
    New,
    /// The source was known behind another port: the station moved (or a loop).
    Moved { from: PortId },
    /// Known behind this port already: the entry's age is reset.
    Refreshed,
    /// The table is full: the source was not learnt.
    TableFull,
    /// Nothing: the frame was filtered before learning (see [`Filtered`]).
    Nothing,
}

/// Where a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Out of this one port, where its destination was learnt.
    To(PortId),
    /// Out of every port but `except` (the ingress port).
    Flood { except: PortId, why: Flood },
    /// Nowhere.
    Filter(Filtered),
}

/// Why a frame is flooded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    Broadcast,
    /// A group address other than broadcast (IPv6 neighbour discovery, mDNS, ...): this
    /// switch does no IGMP or MLD snooping, so every port may have a member.
    Multicast,
    /// A unicast destination not in the table (never seen, or aged out).
    Unknown,
}

/// Why a frame goes nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtered {
    /// Shorter than an Ethernet header.
    Runt,
    /// The source is a group address (I/G bit set): no station sends from one.
    GroupSource,
    /// The source is 00:00:00:00:00:00, which is no station's.
    ZeroSource,
    /// The destination is behind the port the frame came in on: it has arrived already.
    SamePort,
    /// 01:80:c2:00:00:00 to 0f: addressed to the switch, never forwarded.
    LinkLocal,
    /// The ingress port does not exist (a bug in the caller).
    NoSuchPort,
}
// ANCHOR_END: decision

impl Forward {
    /// The ports the frame goes out of, for a switch with `ports` ports.
    pub fn ports(self, ports: usize) -> impl Iterator<Item = PortId> {
        (0..ports).filter(move |&port| match self {
            Forward::To(to) => port == to,
            Forward::Flood { except, .. } => port != except,
            Forward::Filter(_) => false,
        })
    }
}

/// One entry of the table: where a station is, and when we last heard from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub port: PortId,
    pub last_seen: Instant,
}

/// The learning switch: its ports, and the table from MAC address to port.
#[derive(Debug, Clone)]
pub struct Switch {
    ports: usize,
    ageing: Duration,
    capacity: usize,
    table: HashMap<MacAddr, Entry>,
}

impl Switch {
    /// A switch with `ports` ports, the default ageing time and capacity.
    pub fn new(ports: usize) -> Switch {
        Switch::with_limits(ports, DEFAULT_AGEING, DEFAULT_CAPACITY)
    }

    pub fn with_limits(ports: usize, ageing: Duration, capacity: usize) -> Switch {
        Switch { ports, ageing, capacity, table: HashMap::new() }
    }

    pub fn ports(&self) -> usize {
        self.ports
    }

    pub fn ageing(&self) -> Duration {
        self.ageing
    }

    // ANCHOR: handle
    /// Learns from a frame that arrived on `ingress` at `now`, and decides where it goes.
    pub fn handle(&mut self, now: Instant, ingress: PortId, frame: &[u8]) -> Decision {
        let filter = |why| Decision { learnt: Learnt::Nothing, forward: Forward::Filter(why) };
        if ingress >= self.ports {
            return filter(Filtered::NoSuchPort);
        }
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return filter(Filtered::Runt);
        };
        let (src, dst) = (eth.src_addr(), eth.dst_addr());
        // A group source is invalid: learning it would send that group's traffic to
        // one port only. Linux drops these frames too (br_handle_frame).
        if src.is_multicast() {
            return filter(Filtered::GroupSource);
        }
        if src.0 == [0; 6] {
            return filter(Filtered::ZeroSource);
        }
        let learnt = self.learn(now, ingress, src);
        let forward = if dst.0[..5] == [0x01, 0x80, 0xc2, 0x00, 0x00] && dst.0[5] <= 0x0f {
            Forward::Filter(Filtered::LinkLocal)
        } else if dst.is_broadcast() {
            Forward::Flood { except: ingress, why: Flood::Broadcast }
        } else if dst.is_multicast() {
            Forward::Flood { except: ingress, why: Flood::Multicast }
        } else {
            match self.lookup(now, dst) {
                // Never back out of the ingress port: the destination has it already.
                Some(port) if port == ingress => Forward::Filter(Filtered::SamePort),
                Some(port) => Forward::To(port),
                None => Forward::Flood { except: ingress, why: Flood::Unknown },
            }
        };
        Decision { learnt, forward }
    }
    // ANCHOR_END: handle

    // ANCHOR: learn
    fn learn(&mut self, now: Instant, port: PortId, src: MacAddr) -> Learnt {
        if let Some(entry) = self.table.get_mut(&src) {
            // An entry past the ageing time is as good as forgotten (the ageing sweep
            // may just not have run yet): learning it again is learning it anew.
            let stale = now.saturating_duration_since(entry.last_seen) >= self.ageing;
            let from = entry.port;
            *entry = Entry { port, last_seen: now };
            return match (stale, from == port) {
                (true, _) => Learnt::New,
                (false, true) => Learnt::Refreshed,
                (false, false) => Learnt::Moved { from },
            };
        }
        if self.table.len() >= self.capacity {
            // Make room by forgetting the stale entries, if there are any.
            self.expire(now);
            if self.table.len() >= self.capacity {
                return Learnt::TableFull;
            }
        }
        self.table.insert(src, Entry { port, last_seen: now });
        Learnt::New
    }

    /// Where `dst` is, if it was heard from within the ageing time; an entry older than
    /// that is forgotten here.
    fn lookup(&mut self, now: Instant, dst: MacAddr) -> Option<PortId> {
        let entry = *self.table.get(&dst)?;
        if now.saturating_duration_since(entry.last_seen) >= self.ageing {
            self.table.remove(&dst);
            return None;
        }
        Some(entry.port)
    }
    // ANCHOR_END: learn

    /// Forgets every entry older than the ageing time; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.table.len();
        let ageing = self.ageing;
        self.table.retain(|_, e| now.saturating_duration_since(e.last_seen) < ageing);
        before - self.table.len()
    }

    /// Forgets every station behind `port` (the guest went away, the tap went down):
    /// their frames will be flooded until they are heard from again.
    pub fn forget_port(&mut self, port: PortId) -> usize {
        let before = self.table.len();
        self.table.retain(|_, e| e.port != port);
        before - self.table.len()
    }

    /// The port `mac` was learnt on, without ageing (for tests and the table).
    pub fn port_of(&self, mac: MacAddr) -> Option<PortId> {
        self.table.get(&mac).map(|e| e.port)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The live entries at `now`, sorted by port then address.
    pub fn entries(&self, now: Instant) -> Vec<(MacAddr, Entry)> {
        let mut entries: Vec<(MacAddr, Entry)> = self
            .table
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.last_seen) < self.ageing)
            .map(|(mac, e)| (*mac, *e))
            .collect();
        entries.sort_by_key(|(mac, e)| (e.port, mac.0));
        entries
    }
}

// ANCHOR: table
/// The table as the program prints it: one line per station, with the port's name and
/// the entry's age.
pub struct Table<'a> {
    pub switch: &'a Switch,
    pub port_names: &'a [String],
    pub now: Instant,
}

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.switch.entries(self.now);
        writeln!(
            f,
            "MAC table: {} entries, ageing {} s",
            entries.len(),
            self.switch.ageing.as_secs()
        )?;
        write!(f, "  {:<17}  {:<10}  age", "MAC", "port")?;
        for (mac, entry) in entries {
            let name = self.port_names.get(entry.port).map_or("?", String::as_str);
            let age = self.now.saturating_duration_since(entry.last_seen);
            write!(f, "\n  {mac}  {name:<10}  {:.1} s", age.as_secs_f32())?;
        }
        Ok(())
    }
}
// ANCHOR_END: table

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::fixture;

    const KERNEL: MacAddr = MacAddr([0x12, 0x9e, 0x0f, 0x59, 0x18, 0x3c]);

    /// A frame from `src` to `dst` with an IPv4 EtherType and some payload.
    fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
        let mut f = vec![0xa5; 60];
        f[0..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&src.0);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f
    }

    fn mac(last: u8) -> MacAddr {
        MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, last])
    }

    #[test]
    fn the_kernels_arp_request_is_flooded_and_its_source_learnt() {
        let arp = fixture!("arp_request_kernel");
        let src = EthernetFrame::new_checked(&arp[..]).unwrap().src_addr();
        let mut sw = Switch::new(3);
        let now = Instant::now();
        let d = sw.handle(now, 0, &arp);
        assert_eq!(d.learnt, Learnt::New);
        assert_eq!(d.forward, Forward::Flood { except: 0, why: Flood::Broadcast });
        assert_eq!(d.forward.ports(3).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(sw.port_of(src), Some(0));
    }

    #[test]
    fn a_reply_to_a_learnt_station_goes_to_its_port_only() {
        // The kernel's request (port 0), then the guest's reply (port 2) to the kernel.
        let request = fixture!("icmp_echo_request_56");
        let eth = EthernetFrame::new_checked(&request[..]).unwrap();
        let (kernel, guest) = (eth.src_addr(), eth.dst_addr());
        let mut sw = Switch::new(3);
        let now = Instant::now();
        // Before the guest spoke, its address is unknown: flooded.
        let d = sw.handle(now, 0, &request);
        assert_eq!(d.forward, Forward::Flood { except: 0, why: Flood::Unknown });
        let d = sw.handle(now, 2, &frame(kernel, guest));
        assert_eq!((d.learnt, d.forward), (Learnt::New, Forward::To(0)));
        // Now both are known: the next request goes to port 2 alone.
        let d = sw.handle(now, 0, &request);
        assert_eq!((d.learnt, d.forward), (Learnt::Refreshed, Forward::To(2)));
        assert_eq!(d.forward.ports(3).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn never_back_out_of_the_ingress_port() {
        let mut sw = Switch::new(2);
        let now = Instant::now();
        sw.handle(now, 0, &frame(MacAddr::BROADCAST, mac(1)));
        sw.handle(now, 0, &frame(MacAddr::BROADCAST, mac(2)));
        // Two stations behind port 0 (a hub, or another switch) talk to each other.
        let d = sw.handle(now, 0, &frame(mac(2), mac(1)));
        assert_eq!(d.forward, Forward::Filter(Filtered::SamePort));
        assert_eq!(d.forward.ports(2).count(), 0);
        // A flood never includes the ingress port either.
        let d = sw.handle(now, 1, &frame(MacAddr::BROADCAST, mac(3)));
        assert_eq!(d.forward.ports(2).collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn a_group_source_is_dropped_and_never_learnt() {
        let mut sw = Switch::new(2);
        let now = Instant::now();
        let group = MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]);
        for src in [group, MacAddr::BROADCAST, MacAddr([0x33, 0x33, 0, 0, 0, 1])] {
            let d = sw.handle(now, 0, &frame(mac(9), src));
            assert_eq!(d.forward, Forward::Filter(Filtered::GroupSource), "{src}");
            assert_eq!(d.learnt, Learnt::Nothing);
        }
        let d = sw.handle(now, 0, &frame(mac(9), MacAddr([0; 6])));
        assert_eq!(d.forward, Forward::Filter(Filtered::ZeroSource));
        assert!(sw.is_empty());
        // And a frame to that group is flooded, not sent to where a "source" was seen.
        let d = sw.handle(now, 1, &frame(group, mac(1)));
        assert_eq!(d.forward, Forward::Flood { except: 1, why: Flood::Multicast });
    }

    #[test]
    fn the_kernels_neighbour_solicitation_is_flooded_as_multicast() {
        // To 33:33:ff:00:00:02, the solicited-node group of fd00:172:16:1::2.
        let ns = fixture!("ipv6_ns_multicast");
        let mut sw = Switch::new(3);
        let d = sw.handle(Instant::now(), 1, &ns);
        assert_eq!(d.forward, Forward::Flood { except: 1, why: Flood::Multicast });
        assert_eq!(d.learnt, Learnt::New);
    }

    #[test]
    fn link_local_control_frames_are_not_forwarded() {
        let mut sw = Switch::new(3);
        let now = Instant::now();
        for last in [0x00, 0x01, 0x0e] {
            let stp = MacAddr([0x01, 0x80, 0xc2, 0x00, 0x00, last]);
            let d = sw.handle(now, 0, &frame(stp, mac(1)));
            assert_eq!(d.forward, Forward::Filter(Filtered::LinkLocal), "{stp}");
        }
        let beyond = MacAddr([0x01, 0x80, 0xc2, 0x00, 0x00, 0x10]);
        assert!(matches!(sw.handle(now, 0, &frame(beyond, mac(1))).forward, Forward::Flood { .. }));
    }

    #[test]
    fn entries_age_out_and_then_the_destination_is_flooded() {
        let mut sw = Switch::with_limits(3, Duration::from_secs(10), 16);
        let t0 = Instant::now();
        sw.handle(t0, 2, &frame(KERNEL, mac(3)));
        let d = sw.handle(t0 + Duration::from_secs(9), 0, &frame(mac(3), KERNEL));
        assert_eq!(d.forward, Forward::To(2));
        assert_eq!(sw.entries(t0 + Duration::from_secs(9)).len(), 2);
        // Ten seconds after it was last heard from, mac(3) is forgotten.
        let d = sw.handle(t0 + Duration::from_secs(10), 0, &frame(mac(3), KERNEL));
        assert_eq!(d.forward, Forward::Flood { except: 0, why: Flood::Unknown });
        assert_eq!(sw.port_of(mac(3)), None);
        assert_eq!(sw.expire(t0 + Duration::from_secs(30)), 1, "KERNEL, last seen at 10 s");
        assert!(sw.is_empty());
    }

    #[test]
    fn a_station_that_moves_is_found_on_its_new_port() {
        let mut sw = Switch::new(3);
        let now = Instant::now();
        sw.handle(now, 1, &frame(MacAddr::BROADCAST, mac(3)));
        let d = sw.handle(now, 2, &frame(MacAddr::BROADCAST, mac(3)));
        assert_eq!(d.learnt, Learnt::Moved { from: 1 });
        assert_eq!(sw.handle(now, 0, &frame(mac(3), KERNEL)).forward, Forward::To(2));
    }

    #[test]
    fn a_full_table_learns_nothing_new_but_still_forwards() {
        let mut sw = Switch::with_limits(2, Duration::from_secs(300), 2);
        let now = Instant::now();
        sw.handle(now, 0, &frame(MacAddr::BROADCAST, mac(1)));
        sw.handle(now, 0, &frame(MacAddr::BROADCAST, mac(2)));
        let d = sw.handle(now, 1, &frame(mac(1), mac(3)));
        assert_eq!((d.learnt, d.forward), (Learnt::TableFull, Forward::To(0)));
        assert_eq!(sw.len(), 2);
        // Once the old entries are stale, there is room again.
        let later = now + Duration::from_secs(301);
        assert_eq!(sw.handle(later, 1, &frame(mac(1), mac(3))).learnt, Learnt::New);
        assert_eq!(sw.len(), 1);
    }

    #[test]
    fn forgetting_a_port_forgets_its_stations() {
        let mut sw = Switch::new(3);
        let now = Instant::now();
        sw.handle(now, 1, &frame(MacAddr::BROADCAST, mac(1)));
        sw.handle(now, 2, &frame(MacAddr::BROADCAST, mac(2)));
        assert_eq!(sw.forget_port(1), 1);
        assert_eq!(sw.port_of(mac(1)), None);
        assert_eq!(sw.port_of(mac(2)), Some(2));
    }

    #[test]
    fn runts_and_unknown_ports_go_nowhere() {
        let mut sw = Switch::new(2);
        let now = Instant::now();
        assert_eq!(sw.handle(now, 0, &[0xff; 13]).forward, Forward::Filter(Filtered::Runt));
        let f = frame(MacAddr::BROADCAST, mac(1));
        assert_eq!(sw.handle(now, 2, &f).forward, Forward::Filter(Filtered::NoSuchPort));
        assert!(sw.is_empty());
    }

    #[test]
    fn the_table_prints_one_line_per_station() {
        let mut sw = Switch::new(2);
        let now = Instant::now();
        sw.handle(now, 1, &frame(MacAddr::BROADCAST, mac(3)));
        sw.handle(now, 0, &frame(MacAddr::BROADCAST, KERNEL));
        let names = ["tap4".to_owned(), "guest0".to_owned()];
        let text = Table { switch: &sw, port_names: &names, now }.to_string();
        assert_eq!(
            text,
            "MAC table: 2 entries, ageing 300 s\n  \
             MAC                port        age\n  \
             12:9e:0f:59:18:3c  tap4        0.0 s\n  \
             52:54:00:12:34:03  guest0      0.0 s"
        );
    }
}
