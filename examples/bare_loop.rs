//! The crudest ping responder there is, as the yardstick for `cargo lab bench`: a
//! blocking `read`, swap the addresses, turn the request into a reply, patch the ICMP
//! checksum, `write`. It checks only what it needs to not answer garbage with garbage
//! (IPv4, ICMP, echo request, long enough) and nothing else: no header checksums, no
//! address checks, no counters, no output. What `05_full_responder` does on top of
//! this is the price of being correct; the benchmark measures that price.
//!
//! It borrows only the TAP opening from the library. Run it inside the lab (as root or as
//! the owner of tap4): `cargo run --release --example bare_loop -- tap4`. It answers ping
//! only, not ARP: give the kernel a static neighbour entry first
//! (`ip neigh replace 172.16.1.2 lladdr 02:00:00:00:00:02 dev tap4`). Stop it with Ctrl-C.

#![allow(clippy::print_stderr)] // a yardstick, not a lesson: one line at start

use std::os::fd::AsFd;

use anyhow::Context;
use tapbook::tap::{FRAME_BUFFER_LEN, Tap};

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const IP_PROTO_ICMP: u8 = 1;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;

fn main() -> anyhow::Result<()> {
    let iface = std::env::args().nth(1).unwrap_or_else(|| "tap4".to_owned());
    // Tap::open makes reads non-blocking (chapter 5 sleeps in ppoll); the bare loop
    // sleeps inside read(2) instead, as the simplest C program would.
    let (tap, _) = Tap::options().blocking(true).open(&iface)?;
    eprintln!("bare_loop: answering ping on {} (no ARP). Ctrl-C to stop.", tap.name());

    // ANCHOR: bare_loop
    let mut buf = vec![0u8; FRAME_BUFFER_LEN];
    loop {
        let len = nix::unistd::read(tap.as_fd(), &mut buf).context("read")?;
        let frame = &mut buf[..len];
        let Some(icmp) = echo_request_offset(frame) else { continue };
        for i in 0..6 {
            frame.swap(i, 6 + i); // destination MAC <-> source MAC
        }
        for i in 26..30 {
            frame.swap(i, i + 4); // source IP <-> destination IP
        }
        frame[icmp] = ICMP_ECHO_REPLY;
        // The type word went from 0x0800 to 0x0000: add 0x0800 back into the checksum
        // (RFC 1624), with the end-around carry of one's complement arithmetic.
        let old = u16::from_be_bytes([frame[icmp + 2], frame[icmp + 3]]);
        let sum = u32::from(old) + 0x0800;
        let new = (sum & 0xffff) as u16 + (sum >> 16) as u16;
        frame[icmp + 2..icmp + 4].copy_from_slice(&new.to_be_bytes());
        nix::unistd::write(tap.as_fd(), frame).context("write")?;
    }
    // ANCHOR_END: bare_loop
}

/// Where the ICMP message starts, if the frame is an IPv4 ICMP echo request long enough
/// to hold its 8-byte ICMP header.
fn echo_request_offset(frame: &[u8]) -> Option<usize> {
    if frame.len() < 14 + 20 || frame[12..14] != ETHERTYPE_IPV4 || frame[23] != IP_PROTO_ICMP {
        return None;
    }
    let icmp = 14 + usize::from(frame[14] & 0x0f) * 4;
    (frame.len() >= icmp + 8 && frame[icmp] == ICMP_ECHO_REQUEST).then_some(icmp)
}
