//! Chapter 12: a learning switch whose ports are TAPs and QEMU's sockets. It learns
//! where each source address lives, sends a frame for a known station out of that
//! station's port only, floods the rest, and prints its table on SIGUSR1 and at exit.

use std::io::{LineWriter, Write};
use std::process::ExitCode;
use std::time::Instant;

use nix::poll::PollFlags;
use tapbook::output::{self, Output};
use tapbook::ports::{Delivery, Port, PortArgs, PortProgram, RECEIVE_BUFFER_LEN, Received};
use tapbook::show::Summary;
use tapbook::signals;
use tapbook::switch::{DEFAULT_AGEING, DEFAULT_CAPACITY, Forward, Learnt, Switch, Table};
use tapbook::wire::ethernet::EthernetFrame;

const PROGRAM: PortProgram = PortProgram {
    name: "12_learning_switch",
    about: "A learning switch between TAPs and QEMU guests' socket netdevs.",
    switch: true,
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
    let mut ports = Vec::new();
    for spec in &args.ports {
        ports.push(spec.open()?);
    }
    let ageing = args.ageing.unwrap_or(DEFAULT_AGEING);
    let mut switch = Switch::with_limits(ports.len(), ageing, DEFAULT_CAPACITY);
    let names: Vec<String> = ports.iter().map(|p| p.name.clone()).collect();
    let mut out = LineWriter::new(Output::stdout());
    writeln!(out, "Switching between {} ports:", ports.len())?;
    for spec in &args.ports {
        writeln!(out, "  {spec}")?;
    }
    writeln!(out, "kill -USR1 {} prints the table; Ctrl-C stops.", std::process::id())?;
    let result = switch_frames(&mut switch, &mut ports, args.quiet, &mut out);
    let mut counts = String::new();
    for p in &ports {
        let c = p.counters;
        counts += &format!(
            "\n{:>8}: {} received, {} sent, {} dropped",
            p.name, c.received, c.sent, c.dropped
        );
    }
    let table = Table { switch: &switch, port_names: &names, now: Instant::now() };
    output::print_last(format_args!("{counts}\n{table}"));
    result
}

// ANCHOR: loop
fn switch_frames(
    switch: &mut Switch,
    ports: &mut [Port],
    quiet: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let names: Vec<String> = ports.iter().map(|p| p.name.clone()).collect();
    let mut frame = vec![0u8; RECEIVE_BUFFER_LEN];
    while !signals::stop_requested() {
        let mut fds: Vec<_> = ports.iter().map(Port::poll_fd).collect();
        signals::wait_any(&mut fds)?;
        let ready: Vec<PollFlags> =
            fds.iter().map(|fd| fd.revents().unwrap_or(PollFlags::empty())).collect();
        drop(fds);
        if signals::take_report_request() {
            writeln!(out, "{}", Table { switch, port_names: &names, now: Instant::now() })?;
        }
        for (ingress, ready) in ready.into_iter().enumerate() {
            if ready.contains(PollFlags::POLLOUT) {
                ports[ingress].flush();
            }
            if ready.is_empty() {
                continue;
            }
            loop {
                let len = match ports[ingress].receive(&mut frame)? {
                    Received::Frame(len) => len,
                    Received::Idle => break,
                    Received::Event(event) => {
                        writeln!(out, "[{}] {event}", names[ingress])?;
                        if !ports[ingress].connected() {
                            let n = switch.forget_port(ingress);
                            let s = if n == 1 { "" } else { "s" };
                            writeln!(out, "[{}] forgot {n} station{s}", names[ingress])?;
                        }
                        continue;
                    }
                };
                let frame = &frame[..len];
                let decision = switch.handle(Instant::now(), ingress, frame);
                if !quiet {
                    writeln!(out, "{}", Summary(frame))?;
                    writeln!(out, "  {}", Explain(frame, &decision.learnt, &names, ingress))?;
                    write_forward(out, decision.forward, &names)?;
                }
                for egress in decision.forward.ports(ports.len()) {
                    if let Delivery::Dropped(why) = ports[egress].send(frame)? {
                        writeln!(out, "  not sent to {}: {why}", names[egress])?;
                    }
                }
            }
        }
    }
    Ok(())
}
// ANCHOR_END: loop

/// `from guest3: 52:54:00:12:34:03 > ff:ff:ff:ff:ff:ff, new`: the ingress port, the
/// addresses, and what the source taught the switch.
struct Explain<'a>(&'a [u8], &'a Learnt, &'a [String], usize);

impl std::fmt::Display for Explain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Explain(frame, learnt, names, ingress) = *self;
        let name = |port: usize| names.get(port).map_or("?", String::as_str);
        write!(f, "from {}: ", name(ingress))?;
        let Ok(eth) = EthernetFrame::new_checked(frame) else { return write!(f, "(runt)") };
        write!(f, "{} > {}", eth.src_addr(), eth.dst_addr())?;
        match learnt {
            Learnt::New => write!(f, ", new"),
            Learnt::Moved { from } => write!(f, ", moved from {}", name(*from)),
            Learnt::TableFull => write!(f, ", not learnt: table full"),
            Learnt::Refreshed | Learnt::Nothing => Ok(()),
        }
    }
}

fn write_forward(out: &mut impl Write, forward: Forward, names: &[String]) -> std::io::Result<()> {
    let to: Vec<&str> = forward.ports(names.len()).map(|p| names[p].as_str()).collect();
    match forward {
        Forward::To(_) => writeln!(out, "  -> {}", to.join(" ")),
        Forward::Flood { why, .. } => {
            writeln!(out, "  -> flood ({}): {}", format!("{why:?}").to_lowercase(), to.join(" "))
        }
        Forward::Filter(why) => writeln!(out, "  -> filtered: {why:?}"),
    }
}
