//! Chapter 10: UDP and DHCP. A DHCP server for the hosts on the link (DISCOVER -> OFFER,
//! REQUEST -> ACK or NAK, RELEASE), UDP echo on port 7, and chapter 5's ARP and ping.
//! Prints what it did with each frame, and at exit the counts and the lease table.
//! On a TAP (tap4), or, with `--stream PATH` or `--dgram OURS:THEIRS`, as a port of
//! chapter 12's switch: then with no TAP and no privilege at all.

use std::io::{LineWriter, Write};
use std::process::ExitCode;
use std::time::Instant;

use nix::poll::PollFlags;
use tapbook::cli::{Args, Program};
use tapbook::dhcp::{Dhcp, DhcpConfig, LeaseTable};
use tapbook::output::{self, Output};
use tapbook::ports::{Delivery, PortSpec, RECEIVE_BUFFER_LEN, Received};
use tapbook::respond::{Counters, Idents, Timestamp};
use tapbook::show::Summary;
use tapbook::{FRAME_BUFFER_LEN, Services, respond, signals};

const PROGRAM: Program = Program {
    name: "10_dhcp_server",
    about: "Lend addresses by DHCP, answer UDP echo, ARP and ping on a TAP or a socket.",
    addresses: true,
    responder_flags: false,
    sockets: true,
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
    // ANCHOR: link
    // A TAP (the kernel at its other end), or, with --stream or --dgram, a port of
    // chapter 12's switch: then no TAP at all, and no privilege.
    let spec = args.socket.clone().unwrap_or_else(|| PortSpec::Tap(args.iface.clone()));
    let mut link = spec.open()?;
    // ANCHOR_END: link
    let mut out = LineWriter::new(Output::stdout());
    let config = *dhcp.config();
    // On a TAP its name, as before; on a socket which one, and how.
    let place = if args.socket.is_some() { spec.to_string() } else { link.name.clone() };
    writeln!(out, "DHCP server {} ({}) on {place}:", host.ip, host.mac)?;
    writeln!(
        out,
        "  pool {}-{}, mask {},",
        config.pool_first, config.pool_last, config.subnet_mask
    )?;
    writeln!(out, "  router {}, lease {} s.", config.router, config.lease_time.as_secs())?;
    writeln!(out, "Ctrl-C to stop.")?;

    // ANCHOR: loop
    let mut frame = vec![0u8; RECEIVE_BUFFER_LEN];
    let mut reply = vec![0u8; FRAME_BUFFER_LEN];
    let mut idents = Idents::random();
    while !signals::stop_requested() {
        let mut fds = [link.poll_fd()];
        signals::wait_any(&mut fds)?;
        if fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLOUT)) {
            link.flush();
        }
        loop {
            let len = match link.receive(&mut frame)? {
                Received::Frame(len) => len,
                Received::Idle => break,
                Received::Event(event) if link.connected() => {
                    writeln!(out, "   ({event})")?;
                    continue;
                }
                Received::Event(event) => anyhow::bail!("{event}"),
            };
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
                    if let Delivery::Dropped(why) = link.send(reply)? {
                        counters.record_refused(answer);
                        writeln!(out, "   reply not sent: {why}")?;
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
    }
    // ANCHOR_END: loop
    Ok(())
}
