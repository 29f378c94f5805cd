//! Chapter 2: print every frame the kernel sends out of the TAP, as a one-line summary
//! and an annotated hex dump. Answers nothing.

use std::io::{LineWriter, Write};
use std::process::ExitCode;

use tapbook::cli::{Args, Program};
use tapbook::output::{self, Output};
use tapbook::show::{Dump, Summary};
use tapbook::{FRAME_BUFFER_LEN, Tap};

const PROGRAM: Program = Program {
    name: "02_hexdump",
    about: "Print every frame read from a TAP: a summary line and an annotated hex dump.",
    addresses: false,
    responder_flags: false,
    sockets: false,
};

fn main() -> ExitCode {
    tapbook::cli::run_program(PROGRAM, run)
}

fn run(args: &Args) -> anyhow::Result<()> {
    let tap = Tap::open(&args.iface)?;
    let mtu = tap.report().mtu.unwrap_or_else(|| "?".into());
    // Not `println!`, which panics when standard output fails and cannot be stopped
    // while a pipe is full (see chapter 5).
    let mut out = LineWriter::new(Output::stdout());
    if let Some(notice) = tap.created_notice(tapbook::cli::DEFAULT_IP) {
        writeln!(out, "{notice}\n")?;
    }
    writeln!(
        out,
        "Reading frames from {} (MTU {mtu}; buffer {FRAME_BUFFER_LEN} bytes).\nCtrl-C to stop.",
        tap.name()
    )?;

    // ANCHOR: read_loop
    let mut frame = vec![0u8; FRAME_BUFFER_LEN];
    let mut count = 0u64;
    while let Some(len) = tap.read_frame(&mut frame)? {
        count += 1;
        let frame = &frame[..len];
        writeln!(out, "\n#{count}: {len} bytes: {}", Summary(frame))?;
        write!(out, "{}", Dump(frame))?;
    }
    // ANCHOR_END: read_loop
    out.flush()?;
    output::print_last(format_args!("\n{count} frames read."));
    Ok(())
}
