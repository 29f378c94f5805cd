//! What the responder's unit tests share: our addresses, a fixed time, `respond` called
//! with both, and small edits of captured frames that keep every other field valid.

use std::net::Ipv4Addr;

use super::{DropReason, Host, Idents, Outcome, Services, Timestamp, respond};
use crate::wire::{Icmpv4Message, Ipv4Packet, MacAddr};

/// The lab's addresses; the kernel of the captures' namespace B (see
/// `tests/fixtures/README.md`) held the same.
pub(crate) const US: Host = Host {
    ip: Ipv4Addr::new(172, 16, 1, 2),
    ip6: crate::cli::DEFAULT_IP6,
    mac: MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]),
};

/// A fixed time of day for the timestamps: 08:15:21.012 UT.
pub(crate) const NOW: Timestamp = Timestamp(29_721_012);

/// `respond` with counters from a fixed key and the fixed time.
pub(crate) fn call(services: Services, frame: &[u8], out: &mut [u8]) -> Outcome {
    respond(&US, services, &mut Idents::new(1), NOW, frame, out)
}

/// Our reply to `frame`, answering everything but UDP echo, at the fixed time.
pub(crate) fn reply_to(frame: &[u8]) -> Result<Vec<u8>, DropReason> {
    answer(Services::ALL, NOW, frame)
}

/// The same, at another time of day.
pub(crate) fn reply_at(now: Timestamp, frame: &[u8]) -> Result<Vec<u8>, DropReason> {
    answer(Services::ALL, now, frame)
}

/// The same, answering only `services`.
pub(crate) fn reply_with(services: Services, frame: &[u8]) -> Result<Vec<u8>, DropReason> {
    answer(services, NOW, frame)
}

/// The reply frame, cut to its length, in a buffer pre-filled with 0xa5 so that a field
/// left unwritten shows.
fn answer(services: Services, now: Timestamp, frame: &[u8]) -> Result<Vec<u8>, DropReason> {
    let mut out = vec![0xa5u8; 65536];
    let reply = respond(&US, services, &mut Idents::new(1), now, frame, &mut out)?;
    out.truncate(reply.len());
    Ok(out)
}

/// The positions at which two frames of the same length differ.
pub(crate) fn differences(ours: &[u8], kernel: &[u8]) -> Vec<usize> {
    assert_eq!(
        ours.len(),
        kernel.len(),
        "\nours   {}\nkernel {}",
        hex::encode(ours),
        hex::encode(kernel)
    );
    (0..ours.len()).filter(|&i| ours[i] != kernel[i]).collect()
}

/// The ping fixture with `options` (a multiple of 4 bytes) in its IPv4 header.
pub(crate) fn with_options(frame: &[u8], options: &[u8]) -> Vec<u8> {
    let mut f = [&frame[..34], options, &frame[34..]].concat();
    f[14] = 0x45 + (options.len() / 4) as u8;
    let total = u16::from_be_bytes([f[16], f[17]]) + options.len() as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    f
}

/// Overwrites bytes at `offset` of a frame.
pub(crate) fn patch(frame: &[u8], offset: usize, bytes: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[offset..offset + bytes.len()].copy_from_slice(bytes);
    f
}

/// Flips the bits of one byte.
pub(crate) fn flip(frame: &[u8], offset: usize) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[offset] ^= 0xff;
    f
}

/// Changes the IPv4 header, then fixes its checksum so only the change is tested.
pub(crate) fn with_ip(frame: &[u8], change: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut f = frame.to_vec();
    change(&mut f[14..]);
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.fill_checksum();
    f
}

/// Sets the ICMP type of a frame with 4 bytes of options, and fixes its checksum.
pub(crate) fn with_icmp24(frame: &[u8], icmp_type: u8) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[38] = icmp_type;
    Icmpv4Message::new_unchecked(&mut f[38..]).fill_checksum();
    f
}

/// Changes the ICMP message, then fixes its checksum.
pub(crate) fn with_icmp(frame: &[u8], change: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut f = frame.to_vec();
    change(&mut f[34..]);
    Icmpv4Message::new_unchecked(&mut f[34..]).fill_checksum();
    f
}

/// A frame dialogue with the responder, as CS144's tests read: `receive` a frame, then
/// `expect` the reply, byte for byte, or `expect_nothing`. One responder for the whole
/// dialogue (its IPv4 identifications count on), at the fixed time.
///
/// ```ignore
/// Dialogue::new(Services::ARP).receive(&request).expect(&kernel_reply[..42]);
/// Dialogue::new(Services::ARP).receive(&for_someone_else).expect_nothing();
/// ```
pub(crate) struct Dialogue {
    services: Services,
    idents: Idents,
    step: usize,
    reply: Option<Outcome>,
    out: Vec<u8>,
}

impl Dialogue {
    pub(crate) fn new(services: Services) -> Dialogue {
        Dialogue { services, idents: Idents::new(1), step: 0, reply: None, out: Vec::new() }
    }

    /// The responder receives `frame`; what it does is checked by the next `expect...`.
    pub(crate) fn receive(&mut self, frame: &[u8]) -> &mut Dialogue {
        assert!(self.reply.is_none(), "step {}: receive twice, expect nothing between", self.step);
        self.step += 1;
        // Pre-filled with 0xa5, so that a field left unwritten shows.
        self.out = vec![0xa5u8; 65536];
        self.reply = Some(respond(&US, self.services, &mut self.idents, NOW, frame, &mut self.out));
        self
    }

    /// The reply to the frame received last: `expected`, byte for byte.
    pub(crate) fn expect(&mut self, expected: &[u8]) -> &mut Dialogue {
        let ours = self.reply_bytes();
        assert_eq!(
            hex::encode(&ours),
            hex::encode(expected),
            "step {}: the reply differs at bytes {:?}",
            self.step,
            (0..ours.len().min(expected.len()))
                .filter(|&i| ours[i] != expected[i])
                .collect::<Vec<_>>()
        );
        self
    }

    /// The reply to the frame received last, whatever it is (for checks of its own).
    pub(crate) fn reply_bytes(&mut self) -> Vec<u8> {
        match self.reply.take() {
            Some(Ok(reply)) => self.out[..reply.len()].to_vec(),
            Some(Err(reason)) => panic!("step {}: no reply, dropped as {reason:?}", self.step),
            None => panic!("step {}: expect without a frame received", self.step),
        }
    }

    /// No reply to the frame received last (for whatever reason).
    pub(crate) fn expect_nothing(&mut self) -> &mut Dialogue {
        match self.reply.take() {
            Some(Err(_)) => self,
            Some(Ok(reply)) => panic!(
                "step {}: expected no reply, got {}",
                self.step,
                hex::encode(&self.out[..reply.len()])
            ),
            None => panic!("step {}: expect_nothing without a frame received", self.step),
        }
    }
}
