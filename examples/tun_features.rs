//! What `TUNGETFEATURES` says on this kernel: the `IFF_*` flags its TUN driver supports,
//! asked on a descriptor of `/dev/net/tun` attached to nothing (chapter 6, where QEMU asks
//! the same first). No interface and no privileges needed:
//! `cargo run --example tun_features`.

use std::io::Write;
use std::process::ExitCode;

use tapbook::Tap;
use tapbook::output::Output;
use tapbook::tap::CLONE_DEVICE;

// ANCHOR: tun_features
/// The kernel's names for the `IFF_*` bits (`include/uapi/linux/if_tun.h`), as
/// `ip -d link` prints some of them.
const NAMES: [(u32, &str); 10] = [
    (0x0001, "tun"),
    (0x0002, "tap"),
    (0x0010, "napi"),
    (0x0020, "napi_frags"),
    (0x0040, "no_carrier"),
    (0x0100, "multi_queue"),
    (0x0800, "persist"),
    (0x1000, "no_pi"),
    (0x2000, "one_queue"),
    (0x4000, "vnet_hdr"),
];

fn run() -> anyhow::Result<()> {
    let features = Tap::features()?;
    let names: Vec<&str> =
        NAMES.iter().filter(|(bit, _)| features & bit != 0).map(|(_, name)| *name).collect();
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
