//! Chapter 5: the full responder. ARP and ICMP echo with every validation, and (since
//! chapter 8) IPv6 neighbour discovery and ICMPv6 echo; counts what it
//! answered and what it dropped, and why; `--quiet`; `--pcap FILE`; prints the counts and
//! exits 0 on Ctrl-C, SIGTERM or SIGHUP.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use tapbook::cli::{Args, Program};
use tapbook::output::{self, Output};
use tapbook::pcap::PcapWriter;
use tapbook::respond::{Counters, Idents, Timestamp};
use tapbook::show::Summary;
use tapbook::{FRAME_BUFFER_LEN, Services, Tap, TapError, respond};

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
    let mut pcap = match &args.pcap {
        Some(path) => {
            let file = output::create(path)?;
            Some(PcapWriter::new(file).context("writing the pcap header")?)
        }
        None => None,
    };
    let tap = Tap::open(&args.iface)?;
    // Per-frame lines go through a buffer that is flushed whenever we are about to wait
    // for the next frame: one write(2) per burst instead of one per line.
    let mut out = BufWriter::with_capacity(64 * 1024, Output::stdout());
    if let Some(notice) = tap.created_notice(host.ip) {
        writeln!(out, "{notice}\n")?;
    }
    writeln!(
        out,
        "Answering ARP, ping and IPv6 for {} and {}\nwith {} on {}. Ctrl-C to stop.",
        host.ip,
        host.ip6,
        host.mac,
        tap.name()
    )?;

    // ANCHOR: loop
    // ANCHOR: buffers_and_flush
    let mut frame = vec![0u8; FRAME_BUFFER_LEN];
    let mut reply = vec![0u8; FRAME_BUFFER_LEN];
    let mut idents = Idents::random();
    loop {
        let flush = || -> io::Result<()> {
            out.flush()?;
            pcap.as_mut().map_or(Ok(()), PcapWriter::flush)
        };
        let Some(len) = tap.read_frame_or_idle(&mut frame, flush)? else {
            break; // Ctrl-C or SIGTERM
        };
        // ANCHOR_END: buffers_and_flush
        let request = &frame[..len];
        let outcome =
            respond(&host, Services::ALL, &mut idents, Timestamp::now(), request, &mut reply);
        counters.record(&outcome);
        if let Some(pcap) = pcap.as_mut() {
            pcap.write_frame(request, SystemTime::now())?;
        }
        match outcome {
            Ok(answer) => {
                let reply = &reply[..answer.len()];
                match tap.write_frame(reply) {
                    Ok(()) => {}
                    // The interface went down between our read and our write: the reply
                    // is lost, as it would be on a real wire. Keep going.
                    Err(TapError::InterfaceDown { .. }) => {
                        counters.record_refused(answer);
                        continue;
                    }
                    Err(err) => return Err(err.into()),
                }
                if let Some(pcap) = pcap.as_mut() {
                    pcap.write_frame(reply, SystemTime::now())?;
                }
                if !args.quiet {
                    writeln!(out, "<- {}\n-> {}", Summary(request), Summary(reply))?;
                }
            }
            Err(reason) => {
                if !args.quiet {
                    writeln!(out, "<- {}\n   dropped: {reason}", Summary(request))?;
                }
            }
        }
    }
    // ANCHOR_END: loop
    if let Some(pcap) = pcap.as_mut() {
        pcap.flush()?;
    }
    out.flush()?;
    Ok(())
}
