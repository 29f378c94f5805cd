//! Chapter 3: answer ARP requests for our address, and only for it.
//!
//! `cargo run --bin 03_arp_reply`, then in another terminal `arping -I tap4 172.16.1.2`
//! (or `ping 172.16.1.2`: the kernel's ARP request is answered, its pings are not yet).

use std::io::{LineWriter, Write};
use std::process::ExitCode;

use tapbook::cli::{Args, Program};
use tapbook::output::Output;
use tapbook::respond::{Idents, Timestamp};
use tapbook::show::Summary;
use tapbook::{FRAME_BUFFER_LEN, Services, Tap, respond};

const PROGRAM: Program = Program {
    name: "03_arp_reply",
    about: "Answer ARP requests for our IPv4 address on a TAP.",
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
        "Answering ARP for {} with {} on {}.\nCtrl-C to stop.",
        host.ip,
        host.mac,
        tap.name()
    )?;

    // ANCHOR: loop
    let mut frame = vec![0u8; FRAME_BUFFER_LEN];
    let mut reply = vec![0u8; FRAME_BUFFER_LEN];
    let mut idents = Idents::random();
    while let Some(len) = tap.read_frame(&mut frame)? {
        let request = &frame[..len];
        writeln!(out, "<- {}", Summary(request))?;
        match respond(&host, Services::ARP, &mut idents, Timestamp::now(), request, &mut reply) {
            Ok(answer) => {
                let reply = &reply[..answer.len()];
                if let Err(err) = tap.write_frame(reply) {
                    writeln!(out, "   reply not sent: {err}")?;
                    continue;
                }
                writeln!(out, "-> {}", Summary(reply))?;
            }
            Err(reason) => writeln!(out, "   (ignored: {reason})")?,
        }
    }
    // ANCHOR_END: loop
    Ok(())
}
