//! Chapter 5: the full responder. ARP and ICMP echo with every validation, and (since
//! chapter 8) IPv6 neighbour discovery and ICMPv6 echo; counts what it
//! answered and what it dropped, and why; `--quiet`; `--pcap FILE`; prints the counts and
//! exits 0 on Ctrl-C, SIGTERM or SIGHUP.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use tapbook::cli::{Args, Program};
use tapbook::output::{self, Output};
use tapbook::pcap::PcapWriter;
use tapbook::respond::{Counters, Idents};
use tapbook::serve::{FrameLog, Responder, Sent};
use tapbook::{FRAME_BUFFER_LEN, Services, Tap, TapError};

const PROGRAM: Program = Program {
    name: "05_full_responder",
    about: "Answer ARP, ping and IPv6 on a TAP, fully validated; count each drop, and why.",
    addresses: true,
    responder_flags: true,
    sockets: false,
};

fn main() -> ExitCode {
    tapbook::cli::run_program(PROGRAM, |args| {
        let mut counters = Counters::default();
        let result = run(args, &mut counters);
        // The counts are worth seeing however we stop, on a signal or on an error, and
        // wherever they can still go: standard output, else standard error.
        if counters.frames_read > 0 || result.is_ok() {
            output::print_last(format_args!("\n{counters}"));
        }
        result
    })
}

fn run(args: &Args, counters: &mut Counters) -> anyhow::Result<()> {
    let host = args.host();
    // The pcap file first: if it cannot be opened, we fail before attaching to the TAP,
    // and the kernel never sees a responder that is not ready to answer.
    let pcap = match &args.pcap {
        Some(path) => {
            let file = output::create(path)?;
            Some(PcapWriter::new(file).context("writing the pcap header")?)
        }
        None => None,
    };
    let tap = Tap::open(&args.iface)?;
    // Per-frame lines go through a buffer that is flushed whenever we are about to wait
    // for the next frame: one write(2) per burst instead of one per line.
    let out = BufWriter::with_capacity(64 * 1024, Output::stdout());
    let mut log = FrameLog { pcap, out, quiet: args.quiet };
    if let Some(notice) = tap.created_notice(host.ip) {
        writeln!(log.out, "{notice}\n")?;
    }
    writeln!(
        log.out,
        "Answering ARP, ping and IPv6 for {} and {}\nwith {} on {}. Ctrl-C to stop.",
        host.ip,
        host.ip6,
        host.mac,
        tap.name()
    )?;
    let mut responder = Responder {
        host,
        services: Services::ALL,
        idents: Idents::random(),
        counters: std::mem::take(counters),
    };

    // ANCHOR: loop
    // ANCHOR: buffers_and_flush
    let mut frame = vec![0u8; FRAME_BUFFER_LEN];
    let mut reply = vec![0u8; FRAME_BUFFER_LEN];
    let result = loop {
        let read = tap.read_frame_or_idle(&mut frame, || log.flush());
        // ANCHOR_END: buffers_and_flush
        let len = match read {
            Ok(Some(len)) => len,
            Ok(None) => break Ok(()), // Ctrl-C, SIGTERM or SIGHUP
            Err(err) => break Err(err.into()),
        };
        let send = |reply: &[u8]| match tap.write_frame(reply) {
            Ok(()) => Ok(Sent::Taken),
            // The interface went down between our read and our write. Keep going.
            Err(TapError::InterfaceDown { .. }) => Ok(Sent::Refused),
            Err(err) => Err(err),
        };
        if let Err(err) = responder.serve_frame(&frame[..len], &mut reply, &mut log, send) {
            break Err(err);
        }
    };
    // ANCHOR_END: loop
    *counters = responder.counters;
    result?;
    log.flush()?;
    Ok(())
}
