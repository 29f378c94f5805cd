//! What `TUNGETFEATURES` says on this kernel: the `IFF_*` flags its TUN driver supports,
//! asked on a descriptor of `/dev/net/tun` attached to nothing (chapter 6, where QEMU asks
//! the same first). No interface and no privileges needed:
//! `cargo run --example tun_features`.

use std::io::Write;
use std::process::ExitCode;

use tapbook::Tap;
use tapbook::output::Output;
use tapbook::tap::{CLONE_DEVICE, iff_names};

// ANCHOR: tun_features
fn run() -> anyhow::Result<()> {
    let features = Tap::features()?;
    // The bits' names, from the kernel's if_tun.h: tapbook::tap::IFF_NAMES.
    let names = iff_names(features);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    let mut out = Output::stdout();
    writeln!(
        out,
        "TUNGETFEATURES on a fresh {CLONE_DEVICE} descriptor (kernel {}):",
        kernel.trim()
    )?;
    writeln!(out, "{features:#x}   ({})", names.join(" "))?;
    Ok(())
}
// ANCHOR_END: tun_features

fn main() -> ExitCode {
    tapbook::cli::exit_status(run())
}
