//! Chapter 1: open the clone device, attach a TAP, and look at what the kernel reports.
//!
//! Run it after `sudo scripts/setup.sh`: `cargo run --bin 01_open_clone`.

use std::io::{LineWriter, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use nix::errno::Errno;
use tapbook::cli::{Args, Program};
use tapbook::output::Output;
use tapbook::{signals, tap};

// ANCHOR: main
const PROGRAM: Program = Program {
    name: "01_open_clone",
    about: "Open /dev/net/tun, attach a TAP with TUNSETIFF, show what the kernel reports.",
    addresses: false,
    responder_flags: false,
    sockets: false,
};

fn main() -> ExitCode {
    tapbook::cli::run_program(PROGRAM, run)
}

fn run(args: &Args) -> anyhow::Result<()> {
    // ANCHOR_END: main
    let mut out = LineWriter::new(Output::stdout());
    // ANCHOR: open
    let tap = tap::Tap::open(&args.iface)?;
    writeln!(out, "Opened {} and attached it to {}.\n", tap::CLONE_DEVICE, tap.name())?;
    writeln!(out, "{}\n", tap.report())?;
    // ANCHOR_END: open

    // ANCHOR: no_path
    let would_be = Path::new("/dev").join(tap.name());
    writeln!(
        out,
        "{} is a network interface (ip link show {}) and, to this program,\n\
         a file descriptor; yet {} {}.",
        tap.name(),
        tap.name(),
        would_be.display(),
        if would_be.exists() {
            "exists (unusual!)"
        } else {
            "does not exist:\nthe interface has no path of its own"
        }
    )?;
    // ANCHOR_END: no_path

    writeln!(out, "\nPress Enter (or Ctrl-D, or Ctrl-C) to close the descriptor.")?;
    wait_for_enter().context("waiting for Enter")?;

    // ANCHOR: close
    // By index, not by name: it may have been renamed while we waited.
    let (name, ifindex) = (tap.name(), tap.ifindex());
    drop(tap); // closes the file descriptor: the program detaches from the interface
    match tap::interface_name(ifindex) {
        Some(now) => writeln!(out, "Closed. {now} still exists: it is persistent.")?,
        None => writeln!(out, "Closed. {name} vanished with its last descriptor: transient.")?,
    }
    // ANCHOR_END: close
    Ok(())
}

/// Returns after a line, end of input, or Ctrl-C. One `read` of at most 1 KiB: a terminal
/// hands over a whole line at once, and `< /dev/zero`, which never sends a newline, cannot
/// make us read (and keep) for ever.
fn wait_for_enter() -> nix::Result<()> {
    let stdin = std::io::stdin();
    signals::wait_readable(stdin.as_fd())?;
    if !signals::stop_requested() {
        let mut line = [0u8; 1024];
        match nix::unistd::read(stdin.as_fd(), &mut line) {
            Ok(_) | Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}
