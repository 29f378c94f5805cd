//! Chapter 8: IPv6, the protocol every guest speaks first. Answers neighbour solicitations
//! for our two addresses (fd00:172:16:1::2 and the link-local one formed from our MAC) and
//! ICMPv6 echo requests to them, so `ping -6` works; names every other IPv6 frame the
//! kernel sends on its own, and why it gets no answer.

use std::io::{LineWriter, Write};
use std::process::ExitCode;

use tapbook::cli::{Args, Program};
use tapbook::output::Output;
use tapbook::respond::{Idents, Timestamp};
use tapbook::show::Summary;
use tapbook::{FRAME_BUFFER_LEN, Services, Tap, respond};

const PROGRAM: Program = Program {
    name: "08_ipv6_responder",
    about: "Answer IPv6 neighbour discovery and ping -6 for our addresses on a TAP.",
    addresses: true,
    responder_flags: false,
    sockets: false,
};

fn main() -> ExitCode {
    tapbook::cli::run_program(PROGRAM, run)
}

// ANCHOR: run
fn run(args: &Args) -> anyhow::Result<()> {
    let host = args.host();
    let tap = Tap::open(&args.iface)?;
    let mut out = LineWriter::new(Output::stdout());
    if let Some(notice) = tap.created_notice(host.ip) {
        writeln!(out, "{notice}\n")?;
    }
    writeln!(
        out,
        "Answering IPv6 for {} and {}\nwith {} on {}. Ctrl-C to stop.",
        host.ip6,
        host.link_local(),
        host.mac,
        tap.name()
    )?;

    let mut frame = vec![0u8; FRAME_BUFFER_LEN];
    let mut reply = vec![0u8; FRAME_BUFFER_LEN];
    // IPv6 needs no identification counter; `respond` takes one for IPv4's sake.
    let mut idents = Idents::random();
    while let Some(len) = tap.read_frame(&mut frame)? {
        let request = &frame[..len];
        writeln!(out, "<- {}", Summary(request))?;
        match respond(&host, Services::IPV6, &mut idents, Timestamp::now(), request, &mut reply) {
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
    Ok(())
}
// ANCHOR_END: run
