//! What one frame costs in user space, without the kernel: the internet checksum, the
//! responder function, and the per-frame summary lines of `05_full_responder`.
//!
//! `cargo bench --bench per_frame` prints a markdown table: nanoseconds per call (the best
//! of several timed batches: a shared machine only ever adds time) and bytes per second.
//! `cargo bench --bench per_frame -- --save FILE` also writes the table to FILE.
//! Under `cargo test` (no `--bench` argument) every case runs a few times and its
//! result is checked, so the benchmark cannot rot.
//!
//! No criterion: `std::time::Instant` and `std::hint::black_box` are enough for loops
//! this regular, and CI builds stay light.

#![allow(clippy::print_stdout, clippy::print_stderr)] // its output is the table

use tapbook_testkit::fixtures;

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tapbook::respond::{Counters, Idents, Timestamp};
use tapbook::serve::{FrameLog, Responder, Sent};
use tapbook::wire::{MacAddr, checksum};
use tapbook::{FRAME_BUFFER_LEN, Host, Services, respond};

const US: Host = Host {
    ip: Ipv4Addr::new(172, 16, 1, 2),
    ip6: tapbook::cli::DEFAULT_IP6,
    mac: MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]),
};

/// The textbook loop of RFC 1071's C sample: one 16-bit word at a time into a 32-bit
/// sum, folded once at the end (fine up to 128 KiB), to compare with the library's loop.
fn checksum_16bit_words(data: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    let mut words = data.chunks_exact(2);
    for word in &mut words {
        acc += u32::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        acc += u32::from(*last) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// How long one call of `f` takes, in nanoseconds: batches sized to take about 5 ms are
/// timed again and again for `budget`, and the fastest batch counts.
fn time_per_call(budget: Duration, mut f: impl FnMut()) -> f64 {
    let mut batch: u64 = 1;
    loop {
        let start = Instant::now();
        for _ in 0..batch {
            f();
        }
        if start.elapsed() >= Duration::from_millis(5) || budget < Duration::from_millis(5) {
            break;
        }
        batch *= 2;
    }
    let mut best = f64::INFINITY;
    let deadline = Instant::now() + budget;
    loop {
        let start = Instant::now();
        for _ in 0..batch {
            f();
        }
        best = best.min(start.elapsed().as_nanos() as f64 / batch as f64);
        if Instant::now() >= deadline {
            return best;
        }
    }
}

struct Row {
    what: String,
    bytes: usize,
    ns: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; `cargo test` runs us without it.
    let measuring = args.iter().any(|a| a == "--bench");
    let save = args.iter().position(|a| a == "--save").and_then(|i| args.get(i + 1)).cloned();
    let budget = if measuring { Duration::from_millis(300) } else { Duration::ZERO };

    let ping_56 = fixtures::load("icmp_echo_request_56");
    let ping_1472 = fixtures::load("icmp_echo_request_1472");
    let arp = fixtures::load("arp_request_arping");
    let mld = fixtures::load("ipv6_mld_report");
    let ping_rr = fixtures::load("kernel_echo_request_rr");
    // The ICMP messages the responder verifies: 64 and 1480 bytes.
    let icmp_56 = &ping_56[34..];
    let icmp_1472 = &ping_1472[34..];
    let big: Vec<u8> = (0..65_507u32).map(|i| (i * 7 + 3) as u8).collect();

    let mut rows = Vec::new();
    for (label, data) in [("64 B", icmp_56), ("1480 B", icmp_1472), ("65507 B", &big[..])] {
        assert_eq!(checksum::checksum(data), checksum_16bit_words(data), "{label}");
        let ns = time_per_call(budget, || {
            black_box(checksum::checksum(black_box(data)));
        });
        rows.push(Row {
            what: format!("checksum, {label} (`wire::checksum`)"),
            bytes: data.len(),
            ns,
        });
        let ns = time_per_call(budget, || {
            black_box(checksum_16bit_words(black_box(data)));
        });
        rows.push(Row {
            what: format!("checksum, {label} (16-bit textbook loop)"),
            bytes: data.len(),
            ns,
        });
    }

    let mut reply = vec![0u8; FRAME_BUFFER_LEN];
    let mut idents = Idents::new(1);
    // A fixed time: the clock is the caller's to read (05 reads it once per frame).
    let now = Timestamp(0);
    for (label, frame, answered) in [
        ("echo request, 98 B (`ping -s 56`)", &ping_56, true),
        ("echo request with Record Route, 138 B (`ping -R`)", &ping_rr, true),
        ("echo request, 1514 B (`ping -s 1472`)", &ping_1472, true),
        ("ARP request, 58 B", &arp, true),
        ("IPv6 MLD report, 90 B (dropped)", &mld, false),
    ] {
        let outcome = respond(&US, Services::ALL, &mut idents, now, frame, &mut reply);
        assert_eq!(outcome.is_ok(), answered, "{label}: {outcome:?}");
        let ns = time_per_call(budget, || {
            let frame = black_box(frame);
            black_box(respond(&US, Services::ALL, &mut idents, now, frame, &mut reply)).ok();
        });
        rows.push(Row { what: format!("`respond()`, {label}"), bytes: frame.len(), ns });
    }

    // What 05_full_responder does per frame when it is not --quiet: its own per-frame
    // function (`serve::Responder::serve_frame`), which also counts and formats two
    // summary lines into its output buffer (no pcap; the kernel takes every reply).
    let mut responder =
        Responder { host: US, services: Services::ALL, idents, counters: Counters::default() };
    let mut log: FrameLog<std::io::Sink, Vec<u8>> =
        FrameLog { pcap: None, out: Vec::with_capacity(64 * 1024), quiet: false };
    for (label, frame) in [("98 B", &ping_56), ("1514 B", &ping_1472)] {
        let ns = time_per_call(budget, || {
            responder
                .serve_frame(black_box(frame), &mut reply, &mut log, |_| Ok(Sent::Taken))
                .expect("into a Vec");
            black_box(&log.out);
            log.out.clear();
        });
        rows.push(Row {
            what: format!("`serve_frame()`: respond, count, two summary lines, {label}"),
            bytes: frame.len(),
            ns,
        });
    }

    if !measuring {
        println!(
            "per_frame: {} cases checked (run `cargo bench --bench per_frame` to time them)",
            rows.len()
        );
        return;
    }
    let mut table = String::from("| what | bytes | ns per call | GB/s |\n|---|---:|---:|---:|\n");
    for row in &rows {
        // bytes per nanosecond is gigabytes per second.
        let gbps = row.bytes as f64 / row.ns;
        table += &format!("| {} | {} | {:.1} | {:.2} |\n", row.what, row.bytes, row.ns, gbps);
    }
    print!("{table}");
    if let Some(path) = save {
        std::fs::write(&path, &table).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        eprintln!("saved to {path}");
    }
}
