//! One `read` from tap4, shown raw: what a descriptor attached without `IFF_NO_PI` hands
//! over, and what a buffer shorter than the frame gets (the book's troubleshooting
//! appendix, and chapter 5's first bug). In the lab, start one of
//!
//! ```text
//! cargo run --example read_one_frame -- --packet-info --buffer 2048 --want 0806
//! cargo run --example read_one_frame -- --buffer 1500 --want 0800
//! ```
//!
//! then, from the kernel's side, `ping -c 1 172.16.1.2` (`-s 1472` for the second, with
//! a static neighbour entry for 172.16.1.2, as nobody answers ARP). `--want` is the
//! EtherType of the frame to show (0806 ARP, 0800 IPv4); other frames are skipped. It
//! gives up after 5 seconds without one.

use std::io::Write;
use std::os::fd::AsFd;
use std::process::ExitCode;

use anyhow::{Context, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tapbook::Tap;
use tapbook::output::Output;
use tapbook::tap::{IFF_NO_PI, IFF_TAP};

fn main() -> ExitCode {
    tapbook::cli::exit_status(parse().and_then(|(pi, buffer, want)| run(pi, buffer, want)))
}

/// `--packet-info`, `--buffer N` and `--want HEX`, in any order.
fn parse() -> anyhow::Result<(bool, usize, u16)> {
    let (mut packet_info, mut buffer, mut want) = (false, 2048, 0x0806);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--packet-info" => packet_info = true,
            "--buffer" => buffer = args.next().context("--buffer N")?.parse()?,
            "--want" => want = u16::from_str_radix(&args.next().context("--want HEX")?, 16)?,
            other => bail!("unknown argument {other:?} (--packet-info, --buffer N, --want HEX)"),
        }
    }
    Ok((packet_info, buffer, want))
}

// ANCHOR: read_one_frame
fn run(packet_info: bool, buffer: usize, want: u16) -> anyhow::Result<()> {
    let mut out = Output::stdout();
    let (tap, _) = Tap::options().packet_info(packet_info).open("tap4")?;
    let flags = if packet_info { IFF_TAP } else { IFF_TAP | IFF_NO_PI };
    writeln!(out, "attached to tap4 with flags {flags:#06x}, reading into a {buffer}-byte buffer")?;
    // The packet information header is 2 bytes of flags, then the EtherType; without it,
    // the frame's own EtherType is at byte 12.
    let at = if packet_info { 2 } else { 12 };
    let mut buf = vec![0u8; buffer];
    let frame = loop {
        let mut ready = [PollFd::new(tap.as_fd(), PollFlags::POLLIN)];
        if poll(&mut ready, PollTimeout::from(5000u16))? == 0 {
            bail!("no such frame came");
        }
        let len = tap.read_frame(&mut buf)?.context("stopped")?;
        if buf.get(at..at + 2) == Some(&want.to_be_bytes()[..]) {
            break &buf[..len];
        }
    };
    writeln!(out, "read() returned {} bytes; the first 24:", frame.len())?;
    let first: Vec<String> = frame.iter().take(24).map(|b| format!("{b:02x}")).collect();
    writeln!(out, "{}", first.join(" "))?;
    if !packet_info && want == 0x0800 {
        // The IPv4 total length says how long the frame was before the read cut it.
        let total = frame.get(16..18).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        let on_wire = 14 + usize::from(total);
        writeln!(
            out,
            "the IPv4 total length inside says {total}, so the frame on the wire was \
             14 + {total} = {on_wire} bytes:"
        )?;
        let cut = on_wire.saturating_sub(frame.len());
        writeln!(out, "the last {cut} bytes were cut off, silently")?;
    }
    Ok(())
}
// ANCHOR_END: read_one_frame
