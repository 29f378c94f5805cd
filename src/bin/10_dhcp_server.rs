//! Chapter 10: UDP and DHCP. A DHCP server for the hosts on the link (DISCOVER -> OFFER,
//! REQUEST -> ACK or NAK, RELEASE), UDP echo on port 7, and chapter 5's ARP and ping.
//! Prints what it did with each frame, and at exit the counts and the lease table.

use std::io::{LineWriter, Write};
use std::process::ExitCode;
use std::time::Instant;

use tapbook::cli::{Args, Program};
use tapbook::dhcp::{Dhcp, DhcpConfig, LeaseTable};
use tapbook::output::{self, Output};
use tapbook::respond::{Counters, Idents, Timestamp};
use tapbook::show::Summary;
use tapbook::{FRAME_BUFFER_LEN, Services, Tap, respond};

const PROGRAM: Program = Program {
    name: "10_dhcp_server",
    about: "Lend addresses by DHCP, answer UDP echo, ARP and ping on a TAP.",
    addresses: true,
    responder_flags: false,
};

fn main() -> ExitCode {
    tapbook::cli::run_program(PROGRAM, |args| {
        let mut counters = Counters::default();
        let mut dhcp = Dhcp::new(DhcpConfig::lab(args.host()));
        let result = run(args, &mut dhcp, &mut counters);
        let table = LeaseTable(&dhcp, Instant::now());
        output::print_last(format_args!("\n{counters}\n{table}"));
        result
    })
}

fn run(args: &Args, dhcp: &mut Dhcp, counters: &mut Counters) -> anyhow::Result<()> {
    let host = args.host();
    let tap = Tap::open(&args.iface)?;
    let mut out = LineWriter::new(Output::stdout());
    let config = *dhcp.config();
    writeln!(out, "DHCP server {} ({}) on {}:", host.ip, host.mac, tap.name())?;
    writeln!(
        out,
        "  pool {}-{}, mask {},",
        config.pool_first, config.pool_last, config.subnet_mask
    )?;
    writeln!(out, "  router {}, lease {} s.", config.router, config.lease_time.as_secs())?;
    writeln!(out, "Ctrl-C to stop.")?;

    // ANCHOR: loop
    let mut frame = vec![0u8; FRAME_BUFFER_LEN];
    let mut reply = vec![0u8; FRAME_BUFFER_LEN];
    let mut idents = Idents::random();
    while let Some(len) = tap.read_frame(&mut frame)? {
        let request = &frame[..len];
        writeln!(out, "<- {}", Summary(request))?;
        // DHCP first: it has state (the lease table). Anything else goes to respond().
        let outcome = match dhcp.handle(Instant::now(), &mut idents, request, &mut reply) {
            Some(Ok(handled)) => {
                writeln!(out, "   DHCP: {}", handled.event)?;
                handled.reply.ok_or(None)
            }
            Some(Err(reason)) => Err(Some(reason)),
            None => respond(
                &host,
                Services::WITH_UDP,
                &mut idents,
                Timestamp::now(),
                request,
                &mut reply,
            )
            .map_err(Some),
        };
        match outcome {
            Ok(answer) => {
                counters.record(&Ok(answer));
                let reply = &reply[..answer.len()];
                if let Err(err) = tap.write_frame(reply) {
                    counters.record_refused(answer);
                    writeln!(out, "   reply not sent: {err}")?;
                    continue;
                }
                writeln!(out, "-> {}", Summary(reply))?;
            }
            // A RELEASE or DECLINE: handled, and no reply is due.
            Err(None) => counters.frames_read += 1,
            Err(Some(reason)) => {
                counters.record(&Err(reason));
                writeln!(out, "   (ignored: {reason})")?;
            }
        }
    }
    // ANCHOR_END: loop
    Ok(())
}
