//! Chapter 1: open the clone device, attach a TAP, and look at what the kernel reports.
//!
//! Run it after `sudo scripts/setup.sh`: `cargo run --bin 01_open_clone`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tapbook::cli::{Args, Program};
use tapbook::{signals, tap};

const PROGRAM: Program = Program {
    name: "01_open_clone",
    about: "Open /dev/net/tun, attach a TAP with TUNSETIFF, and show what the kernel reports.",
    addresses: false,
    responder_flags: false,
};

fn main() -> ExitCode {
    tapbook::cli::run_program(PROGRAM, run)
}

fn run(args: &Args) -> anyhow::Result<()> {
    // ANCHOR: open
    let tap = tap::Tap::open(&args.iface)?;
    println!("Opened {} and attached it to {}.\n", tap::CLONE_DEVICE, tap.name());
    println!("{}\n", tap.report());
    // ANCHOR_END: open

    // ANCHOR: no_path
    let would_be = Path::new("/dev").join(tap.name());
    println!(
        "{} is a network interface (ip link show {}) and, to this program, a file \
         descriptor; yet {} {}.",
        tap.name(),
        tap.name(),
        would_be.display(),
        if would_be.exists() {
            "exists (unusual!)"
        } else {
            "does not exist: the interface has no path of its own"
        }
    );
    // ANCHOR_END: no_path

    println!("\nPress Enter (or Ctrl-D, or Ctrl-C) to close the descriptor.");
    wait_for_enter().context("waiting for Enter")?;

    // ANCHOR: close
    let name = tap.name().to_owned();
    drop(tap); // closes the file descriptor: the program detaches from the interface
    if tap::interface_exists(&name) {
        println!("Closed. {name} still exists: it is persistent (made with ip tuntap add).");
    } else {
        println!("Closed. {name} vanished with its last descriptor: it was transient.");
    }
    // ANCHOR_END: close
    Ok(())
}

/// Returns after a line, end of input, or Ctrl-C.
fn wait_for_enter() -> std::io::Result<()> {
    let stdin = std::io::stdin();
    signals::wait_readable(std::os::fd::AsFd::as_fd(&stdin))?;
    if !signals::stop_requested() {
        let mut line = String::new();
        stdin.read_line(&mut line)?;
    }
    Ok(())
}
