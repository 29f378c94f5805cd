//! The reader the fixtures in `tests/fixtures/` were captured with (`capture.sh` starts
//! and stops it). A TAP that no program holds open has no carrier, and the kernel sends
//! nothing on it: no ARP, no ICMP, no IPv6 router solicitation. This attaches, so the
//! kernel starts sending (and tcpdump on the interface sees it), then reads every frame
//! and throws it away. It never writes, so nothing answers. As root, in the capture
//! namespace: `ip netns exec tbcap1 target/debug/examples/capture_reader tap4`. Stop it
//! with Ctrl-C or SIGTERM.

use std::process::ExitCode;

use tapbook::output::print_error;
use tapbook::{FRAME_BUFFER_LEN, Tap, signals};

// ANCHOR: capture_reader
fn run(name: &str) -> anyhow::Result<()> {
    signals::stop_on_signals()?;
    let tap = Tap::open(name)?;
    print_error(format_args!("capture_reader: attached to {}", tap.name()));
    let mut frame = vec![0u8; FRAME_BUFFER_LEN];
    while tap.read_frame(&mut frame)?.is_some() {}
    Ok(())
}
// ANCHOR_END: capture_reader

fn main() -> ExitCode {
    let name = std::env::args().nth(1).unwrap_or_else(|| "tap4".to_owned());
    tapbook::cli::exit_status(run(&name))
}
