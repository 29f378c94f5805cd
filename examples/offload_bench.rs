//! Chapter 9's measurement: a bulk UDP flow through tap4, each way, without and with the
//! virtio-net header's offloads, in one run.
//!
//! - rx (kernel -> us): a kernel UDP socket in the namespace sends with `UDP_SEGMENT`
//!   (64 KiB per `send`, 1,472-byte datagrams) to 172.16.1.2 behind the TAP; we read the
//!   TAP. Plain: the kernel cuts and checksums every datagram and we read them one by
//!   one. Offloads: one read returns the whole superframe with a partial checksum, which
//!   we hand on as a VMM hands it to its guest (and, in a third row, cut ourselves).
//! - tx (us -> kernel): we write to the TAP, a kernel UDP socket on 172.16.1.1 reads.
//!   Plain: one write per datagram, checksum computed by us. Offloads: one write per
//!   superframe (`gso_type` UDP_L4, `NEEDS_CSUM`); the kernel cuts and checksums.
//!
//! Run as root: `cargo run --release --example offload_bench` (`--quick` for a short
//! run, `--seconds N` to choose). It makes its own namespace `tb-bench-<pid>` with a tap4
//! and deletes it at the end. The last line is the summary:
//! `offload-summary rx_ratio=R tx_ratio=T csum_errors=N`.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark: its output is the table

use std::fs::File;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use tapbook::segment::{self, UdpFlow};
use tapbook::vnet::{self, TapOptions};
use tapbook::wire::MacAddr;
use tapbook::wire::virtio_net::{VirtioNetHeader, VirtioNetRepr};

/// The most UDP payload one 1,500-byte-MTU datagram carries.
const SEGMENT: u16 = 1472;
/// Whole segments in one 64 KiB superframe.
const SEGMENTS_PER_SEND: usize = (65535 - 20 - 8) / SEGMENT as usize;

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("ip").args(args).status().context("running ip")?;
    if !status.success() {
        bail!("ip {} failed", args.join(" "));
    }
    Ok(())
}

/// Makes the namespace, moves this (still single-threaded) process into it, and gives
/// it a persistent tap4 with the lab's addresses and a static neighbour for 172.16.1.2.
fn lab() -> anyhow::Result<Netns> {
    let netns = Netns(format!("tb-bench-{}", std::process::id()));
    ip(&["netns", "add", &netns.0])?;
    let file = File::open(format!("/run/netns/{}", netns.0)).context("opening the namespace")?;
    // SAFETY: setns(2) on a descriptor we hold; threads started later inherit it.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns: {}", std::io::Error::last_os_error());
    }
    ip(&["link", "set", "lo", "up"])?;
    ip(&["tuntap", "add", "dev", "tap4", "mode", "tap"])?;
    // A known MAC: /sys/class/net shows the namespace sysfs was mounted in, not ours.
    ip(&["link", "set", "tap4", "address", "02:00:00:00:00:01"])?;
    ip(&["addr", "add", "172.16.1.1/24", "dev", "tap4"])?;
    ip(&["link", "set", "tap4", "up"])?;
    ip(&["neigh", "replace", "172.16.1.2", "lladdr", "02:00:00:00:00:02", "dev", "tap4"])?;
    Ok(netns)
}

/// User plus system CPU time of the whole process so far, in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: all zeroes is a valid rusage, and getrusage fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a pointer to a rusage we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn udp_counter(name: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap_or(""), udp.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

#[derive(Default, Debug, Clone, Copy)]
struct Row {
    /// UDP payload bytes that reached the other side.
    payload: u64,
    /// Wire-size datagrams those bytes made.
    datagrams: u64,
    /// read(2) or write(2) calls on the TAP.
    calls: u64,
    seconds: f64,
    cpu: f64,
    csum_errors: u64,
}

impl Row {
    fn gbps(&self) -> f64 {
        self.payload as f64 * 8.0 / self.seconds / 1e9
    }

    fn print(&self, name: &str) {
        let gb = self.payload as f64 / 1e9;
        println!(
            "{name:<26} {:>7.2} Gbit/s {:>8.1} datagrams per call {:>7.2} CPU s/GB {:>5} checksum errors",
            self.gbps(),
            self.datagrams as f64 / self.calls.max(1) as f64,
            if gb > 0.0 { self.cpu / gb } else { f64::NAN },
            self.csum_errors
        );
    }
}

/// kernel -> us. `cut`: also cut the superframes (and complete the checksums) ourselves.
fn rx(options: &TapOptions, cut: bool, seconds: f64) -> anyhow::Result<Row> {
    let (tap, negotiated) = vnet::open_with("tap4", &TapOptions { blocking: true, ..*options })?;
    let hdr = negotiated.vnet_hdr_len;
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || -> anyhow::Result<()> {
            let socket = UdpSocket::bind("172.16.1.1:0")?;
            setsockopt(&socket, sockopt::UdpGsoSegment, &i32::from(SEGMENT))?;
            let payload: Vec<u8> =
                (0..SEGMENTS_PER_SEND * usize::from(SEGMENT)).map(|i| i as u8).collect();
            socket.connect("172.16.1.2:9000")?;
            while !stop.load(Ordering::Relaxed) {
                // ENOBUFS when the TAP's queue is full: the reader is behind; try again.
                let _ = socket.send(&payload);
            }
            Ok(())
        })
    };
    let mut buf = vec![0u8; vnet::READ_BUFFER_LEN];
    let mut scratch = Vec::with_capacity(vnet::READ_BUFFER_LEN);
    let mut row = Row::default();
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    while start.elapsed().as_secs_f64() < seconds {
        let len = match nix::unistd::read(&tap, &mut buf) {
            Ok(len) => len,
            Err(Errno::EINTR) => continue,
            Err(errno) => bail!("reading tap4: {errno}"),
        };
        let Some(read) = buf.get(..len) else { continue };
        let (header, frame) = read.split_at(hdr.min(len));
        let vnet = match hdr {
            0 => VirtioNetRepr::default(),
            _ => VirtioNetRepr::parse(&VirtioNetHeader::new_checked(header)?),
        };
        let Ok(layout) = segment::layout(frame) else { continue }; // IPv6 chatter
        row.calls += 1;
        row.payload += (layout.end - layout.payload) as u64;
        let check = row.calls % 16 == 0; // verify a sample: the check costs a pass too
        if cut || check {
            let mut errors = 0;
            let n = segment::segment(&vnet, frame, &mut scratch, |wire| {
                if check && !segment::l4_checksum_ok(wire) {
                    errors += 1;
                }
            })?;
            row.datagrams += n as u64;
            row.csum_errors += errors;
        } else {
            row.datagrams += match vnet.gso_size {
                0 => 1,
                size => (layout.end - layout.payload).div_ceil(usize::from(size)) as u64,
            };
        }
    }
    row.seconds = start.elapsed().as_secs_f64();
    row.cpu = cpu_seconds() - cpu0;
    stop.store(true, Ordering::Relaxed);
    drop(tap); // no carrier: the sender's sends fail fast and it sees the flag
    sender.join().map_err(|_| anyhow::anyhow!("the sender panicked"))??;
    Ok(row)
}

/// us -> kernel.
fn tx(options: &TapOptions, seconds: f64) -> anyhow::Result<Row> {
    let (tap, negotiated) = vnet::open_with("tap4", &TapOptions { blocking: true, ..*options })?;
    let hdr = negotiated.vnet_hdr_len;
    let socket = UdpSocket::bind("172.16.1.1:9001")?;
    setsockopt(&socket, sockopt::RcvBufForce, &(64 << 20))?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let (mut bytes, mut datagrams) = (0u64, 0u64);
            let mut buf = vec![0u8; 65536];
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        bytes += n as u64;
                        datagrams += 1;
                    }
                    Err(_) if stop.load(Ordering::Relaxed) => return (bytes, datagrams),
                    Err(_) => {}
                }
            }
        })
    };
    let flow = UdpFlow {
        src_mac: MacAddr([2, 0, 0, 0, 0, 2]),
        dst_mac: MacAddr([2, 0, 0, 0, 0, 1]),
        src: Ipv4Addr::new(172, 16, 1, 2),
        dst: Ipv4Addr::new(172, 16, 1, 1),
        src_port: 9000,
        dst_port: 9001,
        ident: 0,
    };
    let (per_write, gso) = match hdr {
        0 => (usize::from(SEGMENT), 0),
        _ => (SEGMENTS_PER_SEND * usize::from(SEGMENT), SEGMENT),
    };
    let payload: Vec<u8> = (0..per_write).map(|i| i as u8).collect();
    let mut frame = Vec::with_capacity(vnet::READ_BUFFER_LEN);
    let csum0 = udp_counter("InCsumErrors");
    let mut row = Row::default();
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    while start.elapsed().as_secs_f64() < seconds {
        // Built anew each time: the checksum (plain) or the header (offloads) is part of
        // the cost being measured.
        segment::build_udp_superframe(&flow, &payload, gso, hdr, &mut frame)?;
        tap.write_frame(&frame)?;
        row.calls += 1;
    }
    std::thread::sleep(Duration::from_millis(300)); // let the receiver drain
    stop.store(true, Ordering::Relaxed);
    let (bytes, datagrams) =
        receiver.join().map_err(|_| anyhow::anyhow!("the receiver panicked"))?;
    row.seconds = start.elapsed().as_secs_f64() - 0.3;
    row.cpu = cpu_seconds() - cpu0;
    row.payload = bytes;
    row.datagrams = datagrams;
    row.csum_errors = udp_counter("InCsumErrors") - csum0;
    Ok(row)
}

fn run(seconds: f64) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("needs root: it makes a network namespace with a TAP in it");
    }
    let _netns = lab()?;
    let plain = TapOptions::default();
    let offloading = TapOptions::offloading();
    let (_, negotiated) = vnet::open_with("tap4", &offloading)?;
    println!(
        "kernel {}; {negotiated}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")?.trim()
    );
    println!(
        "{seconds} s per row, UDP payload {SEGMENT} bytes per datagram, {SEGMENTS_PER_SEND} per superframe"
    );
    let rx_plain = rx(&plain, false, seconds)?;
    rx_plain.print("rx plain");
    let rx_off = rx(&offloading, false, seconds)?;
    rx_off.print("rx offloads");
    let rx_cut = rx(&offloading, true, seconds)?;
    rx_cut.print("rx offloads, cut by us");
    let tx_plain = tx(&plain, seconds)?;
    tx_plain.print("tx plain");
    let tx_off = tx(&offloading, seconds)?;
    tx_off.print("tx offloads");
    let errors =
        [rx_plain, rx_off, rx_cut, tx_plain, tx_off].iter().map(|r| r.csum_errors).sum::<u64>();
    println!(
        "offload-summary rx_ratio={:.1} tx_ratio={:.1} csum_errors={errors}",
        rx_off.gbps() / rx_plain.gbps(),
        tx_off.gbps() / tx_plain.gbps()
    );
    Ok(())
}

fn main() -> ExitCode {
    let mut seconds = 3.0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => seconds = 0.3,
            "--seconds" => match args.next().and_then(|s| s.parse().ok()) {
                Some(s) => seconds = s,
                None => {
                    eprintln!("--seconds needs a number");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("Usage: offload_bench [--quick | --seconds N]   (as root)");
                return ExitCode::from(2);
            }
        }
    }
    tapbook::cli::exit_status(run(seconds))
}
