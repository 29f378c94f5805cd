//! The book's small examples (`examples/`), run as the book runs them: in a fresh lab,
//! attached to tap4 as its owner, with the kernel's own ping on the other side. They are
//! what the troubleshooting appendix and chapter 6 show, so they must keep working.

use tapbook_lab as common;
use tapbook_lab::require_lab;

use std::path::Path;
use std::time::Duration;

use common::{Lab, UNPRIVILEGED_USER};

/// The example `name`, built next to this test's binaries.
fn example(name: &str) -> String {
    let beside = Path::new(env!("CARGO_BIN_EXE_01_open_clone"));
    common::example(name, beside).to_string_lossy().into_owned()
}

/// Starts `read_one_frame ARGS` as tap4's owner, makes the kernel send with `ping ...`,
/// and returns what the reader printed.
fn read_one_frame(tag: &str, args: &[&str], neigh: Option<&str>, ping: &[&str]) -> String {
    let mut lab = Lab::with_owner(tag, UNPRIVILEGED_USER);
    match neigh {
        Some(mac) => lab.ip(&["neigh", "replace", "172.16.1.2", "lladdr", mac, "dev", "tap4"]),
        None => lab.ip(&["neigh", "flush", "dev", "tap4"]),
    };
    let mut reader = lab.start(&example("read_one_frame"), args, Some(UNPRIVILEGED_USER));
    lab.ping(ping);
    let status = reader.wait_exit(Duration::from_secs(10));
    let output = reader.output();
    assert!(status.is_some_and(|s| s.success()), "{output}");
    output
}

#[test]
fn without_iff_no_pi_every_frame_starts_with_four_bytes_of_packet_information() {
    require_lab!("without_iff_no_pi_every_frame_starts_with_four_bytes_of_packet_information");
    let args = ["--packet-info", "--buffer", "2048", "--want", "0806"];
    let ping = ["-c", "1", "-W", "1", "172.16.1.2"];
    let output = read_one_frame("hJ-pi", &args, None, &ping);
    assert!(output.contains("attached to tap4 with flags 0x0002,"), "{output}");
    // The kernel's ARP request, 42 bytes, and the header: flags 0, protocol 0x0806.
    assert!(output.contains("read() returned 46 bytes"), "{output}");
    assert!(output.contains("\n00 00 08 06 ff ff ff ff ff ff "), "{output}");
}

#[test]
fn a_buffer_shorter_than_the_frame_gets_the_frame_cut_silently() {
    require_lab!("a_buffer_shorter_than_the_frame_gets_the_frame_cut_silently");
    let args = ["--buffer", "1500", "--want", "0800"];
    let ping = ["-c", "1", "-W", "1", "-s", "1472", "172.16.1.2"];
    let output = read_one_frame("hJ-short", &args, Some(common::RESPONDER_MAC), &ping);
    assert!(output.contains("attached to tap4 with flags 0x1002,"), "{output}");
    assert!(output.contains("read() returned 1500 bytes"), "{output}");
    assert!(output.contains("the last 14 bytes were cut off, silently"), "{output}");
}

#[test]
fn tun_features_names_what_this_kernel_supports() {
    require_lab!("tun_features_names_what_this_kernel_supports");
    let lab = Lab::new("hJ-feat");
    let out = lab.command(&example("tun_features")).output().expect("running tun_features");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("TUNGETFEATURES on a fresh /dev/net/tun descriptor"), "{text}");
    // Every kernel since 2.6.27 knows these; vnet_hdr since 2.6.27, multi_queue since 3.8.
    for name in [" tap ", " no_pi ", " vnet_hdr)", " multi_queue "] {
        assert!(text.contains(name), "{name:?} in {text}");
    }
}

#[test]
fn the_capture_reader_holds_the_carrier_until_it_is_stopped() {
    require_lab!("the_capture_reader_holds_the_carrier_until_it_is_stopped");
    let mut lab = Lab::new("hJ-capr");
    // `start` returns once tap4 has carrier: the reader is attached.
    let mut reader = lab.start(&example("capture_reader"), &["tap4"], None);
    assert!(lab.attached());
    let (status, output) = reader.stop();
    assert!(status.is_some_and(|s| s.success()), "{output}");
    assert!(output.contains("capture_reader: attached to tap4"), "{output}");
    assert!(!lab.attached(), "the carrier goes with the reader");
}
