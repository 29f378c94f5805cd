//! Chapter 11: be the guest's wire. QEMU's `-netdev stream` (or `dgram`) hands the
//! guest's frames to a UNIX socket instead of a TAP; this program takes them from there
//! and writes them to tap4, where the host's kernel receives them, and carries the
//! kernel's frames back. It prints one line per frame and, at exit, the counts.

use std::io::{LineWriter, Write};
use std::process::ExitCode;

use nix::poll::PollFlags;
use tapbook::output::{self, Output};
use tapbook::ports::{Delivery, Port, PortArgs, PortProgram, RECEIVE_BUFFER_LEN, Received};
use tapbook::show::Summary;
use tapbook::signals;

const PROGRAM: PortProgram = PortProgram {
    name: "11_qemu_relay",
    about: "Relay frames between a QEMU guest's socket netdev and a TAP.",
    switch: false,
};

fn main() -> ExitCode {
    let args = PortArgs::from_env(PROGRAM);
    let result = signals::stop_on_signals()
        .and_then(|()| signals::report_on_sigusr1())
        .map_err(|errno| anyhow::anyhow!("installing the signal handlers: {errno}"))
        .and_then(|()| run(&args));
    tapbook::cli::exit_status(result)
}

fn run(args: &PortArgs) -> anyhow::Result<()> {
    // ANCHOR: open
    let [tap, guest] = &args.ports[..] else { unreachable!("PortArgs gives the relay two") };
    let mut ports = [tap.open()?, guest.open()?];
    // ANCHOR_END: open
    let mut out = LineWriter::new(Output::stdout());
    writeln!(out, "Relaying frames between {tap}\nand {guest}.")?;
    writeln!(out, "Waiting for QEMU; Ctrl-C to stop.")?;
    let result = relay(&mut ports, args.quiet, &mut out);
    let [tap, guest] = &ports;
    let counts = |p: &Port| {
        let c = p.counters;
        format!("{:>8}: {} received, {} sent, {} dropped", p.name, c.received, c.sent, c.dropped)
    };
    output::print_last(format_args!("\n{}\n{}", counts(guest), counts(tap)));
    result
}

// ANCHOR: relay
fn relay(ports: &mut [Port; 2], quiet: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let mut frame = vec![0u8; RECEIVE_BUFFER_LEN];
    while !signals::stop_requested() {
        // Sleep until either side has something (or a half-sent frame can go on).
        let mut fds = [ports[0].poll_fd(), ports[1].poll_fd()];
        signals::wait_any(&mut fds)?;
        let ready = fds.map(|fd| fd.revents().unwrap_or(PollFlags::empty()));
        signals::take_report_request(); // SIGUSR1: the relay has no table to print
        for from in [0, 1] {
            let to = 1 - from;
            if ready[from].contains(PollFlags::POLLOUT) {
                ports[from].flush();
            }
            if ready[from].is_empty() {
                continue;
            }
            // Take everything this side has, and pass each frame to the other.
            loop {
                let len = match ports[from].receive(&mut frame)? {
                    Received::Frame(len) => len,
                    Received::Idle => break,
                    Received::Event(event) => {
                        writeln!(out, "[{}] {event}", ports[from].name)?;
                        continue;
                    }
                };
                let frame = &frame[..len];
                let delivery = ports[to].send(frame)?;
                if !quiet {
                    let (a, b) = (&ports[from].name, &ports[to].name);
                    writeln!(out, "{a} -> {b}:\n  {}", Summary(frame))?;
                }
                if let Delivery::Dropped(why) = delivery {
                    writeln!(out, "   dropped: {why}")?;
                }
            }
        }
    }
    Ok(())
}
// ANCHOR_END: relay
