//! Chapter 4: answer ping. ICMP echo requests get echo replies, and ARP is answered with
//! chapter 3's code, so a plain `ping 172.16.1.2` works. Prints the checksums it
//! verified in each request and computed for each reply.

use std::io::{LineWriter, Write};
use std::process::ExitCode;

use tapbook::cli::{Args, Program};
use tapbook::output::Output;
use tapbook::respond::{Idents, Timestamp};
use tapbook::show::Summary;
use tapbook::wire::{EthernetFrame, Icmpv4Message, Ipv4Packet};
use tapbook::{FRAME_BUFFER_LEN, Reply, Services, Tap, respond};

const PROGRAM: Program = Program {
    name: "04_icmp_reply",
    about: "Answer ICMP echo requests (ping) and ARP for our IPv4 address on a TAP.",
    addresses: true,
    responder_flags: false,
    sockets: false,
};

fn main() -> ExitCode {
    tapbook::cli::run_program(PROGRAM, run)
}

fn run(args: &Args) -> anyhow::Result<()> {
    let host = args.host();
    let tap = Tap::open(&args.iface)?;
    let mut out = LineWriter::new(Output::stdout());
    if let Some(notice) = tap.created_notice(host.ip) {
        writeln!(out, "{notice}\n")?;
    }
    writeln!(
        out,
        "Answering ping and ARP for {} ({}) on {}.\nCtrl-C to stop.",
        host.ip,
        host.mac,
        tap.name()
    )?;

    let mut frame = vec![0u8; FRAME_BUFFER_LEN];
    let mut reply = vec![0u8; FRAME_BUFFER_LEN];
    let mut idents = Idents::random();
    while let Some(len) = tap.read_frame(&mut frame)? {
        let request = &frame[..len];
        writeln!(out, "<- {}", Summary(request))?;
        match respond(&host, Services::IPV4, &mut idents, Timestamp::now(), request, &mut reply) {
            Ok(answer) => {
                let reply = &reply[..answer.len()];
                if let Reply::Echo(_) = answer {
                    print_checksums(&mut out, request, reply)?;
                }
                if let Err(err) = tap.write_frame(reply) {
                    writeln!(out, "   reply not sent: {err}")?;
                    continue;
                }
                writeln!(out, "-> {}", Summary(reply))?;
            }
            Err(reason) => writeln!(out, "   (ignored: {reason})")?,
        }
    }
    Ok(())
}

// ANCHOR: checksums
/// Shows the two checksums of each packet: the request's were verified (the sum over the
/// header, or the message, including the checksum field comes to 0xffff), the reply's
/// were computed.
fn print_checksums(out: &mut impl Write, request: &[u8], reply: &[u8]) -> std::io::Result<()> {
    for (what, frame) in [("verified", request), ("computed", reply)] {
        let ip = EthernetFrame::new_checked(frame).ok().and_then(|eth| {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            let icmp = Icmpv4Message::new_checked(ip.payload()).ok()?;
            Some((ip.checksum(), ip.header_len(), icmp.checksum(), icmp.as_bytes().len()))
        });
        if let Some((ip_sum, ip_len, icmp_sum, icmp_len)) = ip {
            writeln!(
                out,
                "   {what}: IPv4 header checksum 0x{ip_sum:04x} over {ip_len} bytes, \
                 ICMP checksum 0x{icmp_sum:04x} over {icmp_len} bytes"
            )?;
        }
    }
    Ok(())
}
// ANCHOR_END: checksums
