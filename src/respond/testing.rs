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
