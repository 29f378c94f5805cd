//! Property tests of chapter 11's stream framing (`tapbook::qemu_stream`): any frames,
//! cut into reads of any sizes, come out whole and in order; any bytes at all never make
//! the reader panic or hand out more than it was given; a writer facing a socket that
//! takes random amounts never cuts a frame.
//!
//! And of the learning switch (`tapbook::switch`, chapter 12): random
//! sequences of frames between a few stations, group addresses and the all-zero address
//! among them, on random ports at random times, each decision judged against a model
//! written here from 802.1D's rules (a list of "last heard from on port P at time T"),
//! not from the switch's code. Whatever happens: no frame goes back out of its ingress
//! port; no group address is ever in the table; a known, fresh unicast destination gets
//! exactly its port, anything else is flooded to every other port or filtered for a
//! stated reason.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use tapbook::qemu_stream::{Fill, MAX_FRAME_LEN, Sent, StreamReader, StreamWriter};
use tapbook::switch::{Filtered, Flood, Forward, Learnt, Switch};
use tapbook::wire::MacAddr;

const PORTS: usize = 4;
const AGEING: Duration = Duration::from_secs(30);

/// The addresses the frames use: five stations, broadcast, an IPv4 and an IPv6 group,
/// spanning tree's group, the all-zero address.
fn address() -> impl Strategy<Value = MacAddr> {
    prop::sample::select(vec![
        MacAddr([0x52, 0x54, 0, 0x12, 0x34, 1]),
        MacAddr([0x52, 0x54, 0, 0x12, 0x34, 2]),
        MacAddr([0x52, 0x54, 0, 0x12, 0x34, 3]),
        MacAddr([0x02, 0, 0, 0, 0, 2]),
        MacAddr([0x0a, 0xbb, 0xcc, 0xdd, 0xee, 0xff]),
        MacAddr::BROADCAST,
        MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]),
        MacAddr([0x33, 0x33, 0xff, 0x00, 0x00, 0x02]),
        MacAddr([0x01, 0x80, 0xc2, 0x00, 0x00, 0x00]),
        MacAddr([0; 6]),
    ])
}

#[derive(Debug, Clone)]
struct Step {
    ingress: usize,
    src: MacAddr,
    dst: MacAddr,
    /// Seconds since the previous frame.
    after: u64,
    len: usize,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0..PORTS,
        address(),
        address(),
        prop::sample::select(vec![0u64, 0, 1, 5, 29, 30, 31]),
        0..80usize,
    )
        .prop_map(|(ingress, src, dst, after, len)| Step { ingress, src, dst, after, len })
}

fn frame(step: &Step) -> Vec<u8> {
    let mut f = vec![0xa5; step.len];
    let header = [&step.dst.0[..], &step.src.0[..], &[0x08, 0x00]].concat();
    let n = header.len().min(f.len());
    f[..n].copy_from_slice(&header[..n]);
    f
}

/// The model: where and when each station was last heard from.
#[derive(Default)]
struct Model {
    heard: Vec<(MacAddr, usize, Instant)>,
}

impl Model {
    fn fresh_port(&self, mac: MacAddr, now: Instant) -> Option<usize> {
        self.heard
            .iter()
            .find(|(m, _, at)| *m == mac && now.duration_since(*at) < AGEING)
            .map(|(_, port, _)| *port)
    }

    fn hear(&mut self, mac: MacAddr, port: usize, now: Instant) {
        self.heard.retain(|(m, _, _)| *m != mac);
        self.heard.push((mac, port, now));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_decision_follows_the_rules(steps in prop::collection::vec(step(), 1..60)) {
        let mut switch = Switch::with_limits(PORTS, AGEING, 1024);
        let mut model = Model::default();
        let mut now = Instant::now();
        for step in &steps {
            now += Duration::from_secs(step.after);
            let decision = switch.handle(now, step.ingress, &frame(step));
            let out: Vec<usize> = decision.forward.ports(PORTS).collect();

            // Never back out of the ingress port.
            prop_assert!(!out.contains(&step.ingress), "{step:?}: {decision:?}");

            let expected = if step.len < 14 {
                Forward::Filter(Filtered::Runt)
            } else if step.src.is_multicast() {
                Forward::Filter(Filtered::GroupSource)
            } else if step.src.0 == [0; 6] {
                Forward::Filter(Filtered::ZeroSource)
            } else if step.dst.0[..5] == [0x01, 0x80, 0xc2, 0, 0] && step.dst.0[5] < 0x10 {
                Forward::Filter(Filtered::LinkLocal)
            } else if step.dst.is_broadcast() {
                Forward::Flood { except: step.ingress, why: Flood::Broadcast }
            } else if step.dst.is_multicast() {
                Forward::Flood { except: step.ingress, why: Flood::Multicast }
            } else {
                // The source is learnt first: a frame to oneself counts as known.
                let port = if step.dst == step.src {
                    Some(step.ingress)
                } else {
                    model.fresh_port(step.dst, now)
                };
                match port {
                    Some(p) if p == step.ingress => Forward::Filter(Filtered::SamePort),
                    Some(p) => Forward::To(p),
                    None => Forward::Flood { except: step.ingress, why: Flood::Unknown },
                }
            };
            prop_assert_eq!(decision.forward, expected, "{:?}", step);

            // Learning: only valid unicast sources, and what it says is what happened.
            let valid = step.len >= 14 && step.src.is_unicast() && step.src.0 != [0; 6];
            if valid {
                let before = model.fresh_port(step.src, now);
                let known = model.heard.iter().find(|(m, _, _)| *m == step.src).map(|e| e.1);
                let learnt = decision.learnt;
                // Unknown, or heard from longer ago than the ageing time: learnt anew.
                match (known, before) {
                    (None, _) | (Some(_), None) => prop_assert_eq!(learnt, Learnt::New),
                    (Some(p), Some(_)) if p == step.ingress => {
                        prop_assert_eq!(learnt, Learnt::Refreshed)
                    }
                    (Some(p), Some(_)) => prop_assert_eq!(learnt, Learnt::Moved { from: p }),
                }
                model.hear(step.src, step.ingress, now);
                prop_assert_eq!(switch.port_of(step.src), Some(step.ingress));
            } else {
                prop_assert_eq!(decision.learnt, Learnt::Nothing);
            }
            for (mac, _) in switch.entries(now) {
                prop_assert!(mac.is_unicast() && mac.0 != [0; 6], "learnt {mac}");
            }
        }
    }

    #[test]
    fn a_flood_reaches_every_other_port(ports in 1usize..10, ingress in 0usize..10) {
        let forward = Forward::Flood { except: ingress, why: Flood::Unknown };
        let out: Vec<usize> = forward.ports(ports).collect();
        let expected: Vec<usize> = (0..ports).filter(|&p| p != ingress).collect();
        prop_assert_eq!(out, expected);
    }
}

/// Hands out `bytes` in the given chunk sizes (cycled), then end of file.
struct Chunks {
    bytes: Vec<u8>,
    at: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.sizes[self.turn % self.sizes.len()];
        self.turn += 1;
        if size == 0 && self.at < self.bytes.len() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = size.min(buf.len()).min(self.bytes.len() - self.at);
        buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Every frame the reader hands out until the end, and whether it ended cleanly.
fn read_all(src: &mut Chunks) -> (Vec<Vec<u8>>, bool) {
    let mut reader = StreamReader::new();
    let mut frames = Vec::new();
    loop {
        match reader.fill(src) {
            Ok(Fill::Closed) => return (frames, true),
            Ok(_) => {}
            Err(_) => return (frames, false),
        }
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => frames.push(frame.to_vec()),
                Ok(None) => break,
                Err(_) => return (frames, false),
            }
        }
    }
}

/// Takes the given amounts per call (cycled; 0 means "would block").
struct Takes {
    taken: Vec<u8>,
    sizes: Vec<usize>,
    turn: usize,
}

impl Write for Takes {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let size = self.sizes[self.turn % self.sizes.len()];
        self.turn += 1;
        if size == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = size.min(buf.len());
        self.taken.extend(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn frames_come_out_whole_whatever_the_cuts(
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..1600), 0..8),
        sizes in prop::collection::vec(0usize..2000, 1..6).prop_filter("progress", |s| s.iter().any(|&n| n > 0)),
    ) {
        let mut bytes = Vec::new();
        for frame in &frames {
            bytes.extend((frame.len() as u32).to_be_bytes());
            bytes.extend(frame);
        }
        let (got, clean) = read_all(&mut Chunks { bytes, at: 0, sizes, turn: 0 });
        prop_assert!(clean);
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn any_bytes_at_all_never_panic_nor_invent_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..3000),
        sizes in prop::collection::vec(1usize..700, 1..4),
    ) {
        let total = bytes.len();
        let (got, _) = read_all(&mut Chunks { bytes, at: 0, sizes, turn: 0 });
        let handed_out: usize = got.iter().map(|f| f.len() + 4).sum();
        prop_assert!(handed_out <= total);
        prop_assert!(got.iter().all(|f| !f.is_empty() && f.len() <= MAX_FRAME_LEN));
    }

    #[test]
    fn a_writer_never_cuts_a_frame(
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..1600), 1..10),
        sizes in prop::collection::vec(0usize..700, 1..6),
    ) {
        let mut sock = Takes { taken: Vec::new(), sizes, turn: 0 };
        let mut writer = StreamWriter::new();
        let mut sent = Vec::new();
        for frame in &frames {
            match writer.send(&mut sock, frame).unwrap() {
                Sent::Whole | Sent::Queued => sent.push(frame.clone()),
                Sent::Dropped => {}
            }
        }
        // Let the socket take everything that is pending.
        sock.sizes = vec![10_000];
        prop_assert!(writer.flush(&mut sock).unwrap());
        let (got, clean) =
            read_all(&mut Chunks { bytes: sock.taken, at: 0, sizes: vec![333], turn: 0 });
        prop_assert!(clean);
        // Empty frames are sent (as QEMU would) and skipped by the reader.
        let sent: Vec<Vec<u8>> = sent.into_iter().filter(|f| !f.is_empty()).collect();
        prop_assert_eq!(got, sent);
    }
}
