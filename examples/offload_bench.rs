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
//!
//! Two experiments on the plain path (one datagram per frame), where the system calls are:
//!
//! - io_uring: the same rx and tx, with 32 reads or writes in flight and one
//!   `io_uring_enter` per batch instead of one `read`/`write` per datagram (raw system
//!   calls through libc, no crate).
//! - multiqueue: the rx flow as 8 flows from two sender threads, read from a multi-queue
//!   tap4 by one thread on one queue, then by two threads on two queues.
//!
//! Run as root: `cargo run --release --example offload_bench` (`--quick` for a short
//! run, `--seconds N` to choose, `--netns-prefix P` to name the namespace). It makes its
//! own namespace `tb-bench-<pid>` with a tap4 and deletes it at the end. The last line is
//! the summary, `offload-summary rx_ratio=R tx_ratio=T csum_errors=N mq_ratio=M
//! uring_ratio=U`: offloads over plain (rx, tx), checksum errors in every row, two queues
//! over one, and io_uring writes over plain writes.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark: its output is the table

use std::fs::File;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use tapbook::Tap;
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
fn lab(prefix: &str) -> anyhow::Result<Netns> {
    let netns = Netns(format!("{prefix}-{}", std::process::id()));
    ip(&["netns", "add", &netns.0])?;
    let file = File::open(format!("/run/netns/{}", netns.0)).context("opening the namespace")?;
    // SAFETY: setns(2) on a descriptor we hold; threads started later inherit it.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns: {}", std::io::Error::last_os_error());
    }
    ip(&["link", "set", "lo", "up"])?;
    make_tap4(false)?;
    Ok(netns)
}

/// A persistent tap4 with the lab's addresses and a static neighbour for 172.16.1.2;
/// `multi_queue`: one that takes several queues (and only queues).
fn make_tap4(multi_queue: bool) -> anyhow::Result<()> {
    let _ = Command::new("ip")
        .args(["link", "del", "tap4"])
        .stderr(std::process::Stdio::null())
        .status();
    let mut add = vec!["tuntap", "add", "dev", "tap4", "mode", "tap"];
    if multi_queue {
        add.push("multi_queue");
    }
    ip(&add)?;
    // A known MAC: /sys/class/net shows the namespace sysfs was mounted in, not ours.
    ip(&["link", "set", "tap4", "address", "02:00:00:00:00:01"])?;
    ip(&["addr", "add", "172.16.1.1/24", "dev", "tap4"])?;
    ip(&["link", "set", "tap4", "up"])?;
    ip(&["neigh", "replace", "172.16.1.2", "lladdr", "02:00:00:00:00:02", "dev", "tap4"])?;
    Ok(())
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
    /// tx: datagrams the kernel cut but the receiving socket had no room for
    /// (`UdpRcvbufErrors`): its thread fell behind.
    dropped: u64,
}

impl Row {
    fn gbps(&self) -> f64 {
        self.payload as f64 * 8.0 / self.seconds / 1e9
    }

    fn print(&self, name: &str) {
        let gb = self.payload as f64 / 1e9;
        println!(
            "{name:<30} {:>7.2} {:>11.1} {:>9.2} {:>12} {:>8}",
            self.gbps(),
            self.datagrams as f64 / self.calls.max(1) as f64,
            if gb > 0.0 { self.cpu / gb } else { f64::NAN },
            self.csum_errors,
            self.dropped
        );
    }
}

/// kernel -> us. `cut`: also cut the superframes (and complete the checksums) ourselves.
fn rx(options: &TapOptions, cut: bool, seconds: f64) -> anyhow::Result<Row> {
    let (tap, negotiated) = options.blocking(true).open("tap4")?;
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
    let (tap, negotiated) = options.blocking(true).open("tap4")?;
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
    let (csum0, dropped0) = (udp_counter("InCsumErrors"), udp_counter("RcvbufErrors"));
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
    row.dropped = udp_counter("RcvbufErrors") - dropped0;
    Ok(row)
}

fn run(seconds: f64, prefix: &str) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("needs root: it makes a network namespace with a TAP in it");
    }
    let _netns = lab(prefix)?;
    let plain = TapOptions::default();
    let offloading = TapOptions::offloading();
    let (_, negotiated) = offloading.open("tap4")?;
    println!("kernel {}", std::fs::read_to_string("/proc/sys/kernel/osrelease")?.trim());
    println!("{negotiated}");
    println!(
        "{seconds} s per row; UDP payload {SEGMENT} bytes per datagram, {SEGMENTS_PER_SEND} per superframe"
    );
    println!(
        "{:<30} {:>7} {:>11} {:>9} {:>12} {:>8}",
        "", "Gbit/s", "dgrams/call", "CPU s/GB", "csum errors", "dropped"
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
    let rx_uring = rx_uring(seconds)?;
    rx_uring.print("rx plain, io_uring");
    let tx_uring = tx_uring(seconds)?;
    tx_uring.print("tx plain, io_uring");
    make_tap4(true)?;
    let rx_q1 = rx_queues(1, seconds)?;
    rx_q1.print("rx plain, 8 flows, 1 queue");
    let rx_q2 = rx_queues(2, seconds)?;
    rx_q2.print("rx plain, 8 flows, 2 queues");
    let errors = [rx_plain, rx_off, rx_cut, tx_plain, tx_off, rx_uring, tx_uring, rx_q1, rx_q2]
        .iter()
        .map(|r| r.csum_errors)
        .sum::<u64>();
    println!(
        "io_uring over plain: rx {:.2}, tx {:.2}; 2 queues over 1: {:.2}",
        rx_uring.gbps() / rx_plain.gbps(),
        tx_uring.gbps() / tx_plain.gbps(),
        rx_q2.gbps() / rx_q1.gbps()
    );
    // The first four fields are the chapter's target, in this form, always first.
    println!(
        "offload-summary rx_ratio={:.1} tx_ratio={:.1} csum_errors={errors} mq_ratio={:.2} uring_ratio={:.2}",
        rx_off.gbps() / rx_plain.gbps(),
        tx_off.gbps() / tx_plain.gbps(),
        rx_q2.gbps() / rx_q1.gbps(),
        tx_uring.gbps() / tx_plain.gbps()
    );
    Ok(())
}

fn main() -> ExitCode {
    let mut seconds = 3.0;
    let mut prefix = "tb-bench".to_owned();
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
            "--netns-prefix" => match args.next() {
                Some(p) if !p.is_empty() && p.len() <= 40 => prefix = p,
                _ => {
                    eprintln!("--netns-prefix needs a name of 1 to 40 characters");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!(
                    "Usage: offload_bench [--quick | --seconds N] [--netns-prefix P]   (as root)"
                );
                return ExitCode::from(2);
            }
        }
    }
    tapbook::cli::exit_status(run(seconds, &prefix))
}

// ---- io_uring, by hand: two system calls and three shared memory areas -----------------
//
// The structures of <linux/io_uring.h> that we use, spelled out (libc has the system call
// numbers, not the structures). One ring of submission entries (what to do), one of
// completion entries (what happened); the kernel and we each move one end of each ring.

#[repr(C)]
#[derive(Default)]
struct SqringOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags: u32,
    dropped: u32,
    array: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct CqringOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    overflow: u32,
    cqes: u32,
    flags: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct UringParams {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: SqringOffsets,
    cq_off: CqringOffsets,
}

/// `struct io_uring_sqe`, 64 bytes, the fields a read or write uses.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Sqe {
    opcode: u8,
    flags: u8,
    ioprio: u16,
    fd: i32,
    off: u64,
    addr: u64,
    len: u32,
    rw_flags: u32,
    user_data: u64,
    buf_index: u16,
    personality: u16,
    splice_fd_in: i32,
    addr3: u64,
    pad2: u64,
}

/// `struct io_uring_cqe`, 16 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
struct Cqe {
    user_data: u64,
    res: i32,
    flags: u32,
}

const IORING_OP_READ: u8 = 22;
const IORING_OP_WRITE: u8 = 23;
const IORING_ENTER_GETEVENTS: libc::c_uint = 1;
const IORING_OFF_SQ_RING: libc::off_t = 0;
const IORING_OFF_CQ_RING: libc::off_t = 0x800_0000;
const IORING_OFF_SQES: libc::off_t = 0x1000_0000;

/// A shared mapping of the ring's descriptor.
struct Mapping(*mut u8, usize);

impl Mapping {
    fn new(fd: &OwnedFd, len: usize, offset: libc::off_t) -> anyhow::Result<Mapping> {
        // SAFETY: a fresh shared mapping of the io_uring descriptor at the offset the
        // kernel defines for this area; the kernel checks the length.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            bail!("mmap of the io_uring: {}", std::io::Error::last_os_error());
        }
        Ok(Mapping(ptr.cast(), len))
    }

    /// The `T` at byte `offset` (the kernel said where, in the params).
    fn at<T>(&self, offset: u32) -> *mut T {
        assert!(offset as usize + std::mem::size_of::<T>() <= self.1, "offset inside the mapping");
        // SAFETY: inside the mapping, checked above.
        unsafe { self.0.add(offset as usize).cast() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what mmap returned.
        unsafe { libc::munmap(self.0.cast(), self.1) };
    }
}

struct Ring {
    // Field order is drop order: the mappings go before the descriptor.
    sq: Mapping,
    cq: Mapping,
    sqes: Mapping,
    fd: OwnedFd,
    p: UringParams,
}

impl Ring {
    fn new(entries: u32) -> anyhow::Result<Ring> {
        let mut p = UringParams::default();
        // SAFETY: io_uring_setup(2) with a params struct it fills in.
        let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, entries, &mut p as *mut _) };
        if fd < 0 {
            bail!("io_uring_setup: {}", std::io::Error::last_os_error());
        }
        // SAFETY: a descriptor the kernel just gave us, owned from here on.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        let sq_len = p.sq_off.array as usize + p.sq_entries as usize * 4;
        let cq_len = p.cq_off.cqes as usize + p.cq_entries as usize * std::mem::size_of::<Cqe>();
        let sqes_len = p.sq_entries as usize * std::mem::size_of::<Sqe>();
        Ok(Ring {
            sq: Mapping::new(&fd, sq_len, IORING_OFF_SQ_RING)?,
            cq: Mapping::new(&fd, cq_len, IORING_OFF_CQ_RING)?,
            sqes: Mapping::new(&fd, sqes_len, IORING_OFF_SQES)?,
            fd,
            p,
        })
    }

    /// Queues one read or write of `len` bytes at `buf` on `fd`; the caller keeps no more
    /// than `entries` in flight, and `buf` alive and untouched until its completion.
    fn push(&mut self, opcode: u8, fd: i32, buf: *mut u8, len: usize, user_data: u64) {
        let tail_ptr: *mut u32 = self.sq.at(self.p.sq_off.tail);
        // SAFETY: only we write the submission tail; the kernel reads it.
        let tail = unsafe { (*(tail_ptr as *const AtomicU32)).load(Ordering::Relaxed) };
        let index = tail & self.p.sq_entries.wrapping_sub(1);
        let sqe = Sqe {
            opcode,
            fd,
            off: u64::MAX, // the descriptor's own position: a tap has none
            addr: buf as u64,
            len: len as u32,
            user_data,
            ..Sqe::default()
        };
        let sqes: *mut Sqe = self.sqes.0.cast();
        let array: *mut u32 = self.sq.at(self.p.sq_off.array);
        // SAFETY: index < sq_entries, and the entry is ours until the tail passes it.
        unsafe {
            sqes.add(index as usize).write(sqe);
            array.add(index as usize).write(index);
            (*(tail_ptr as *const AtomicU32)).store(tail.wrapping_add(1), Ordering::Release);
        }
    }

    /// One io_uring_enter(2): submit `to_submit`, wait for at least `wait` completions.
    fn enter(&self, to_submit: u32, wait: u32) -> anyhow::Result<()> {
        loop {
            // SAFETY: io_uring_enter(2) with no signal mask.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_io_uring_enter,
                    self.fd.as_raw_fd(),
                    to_submit,
                    wait,
                    IORING_ENTER_GETEVENTS,
                    std::ptr::null::<libc::sigset_t>(),
                    0usize,
                )
            };
            if rc >= 0 {
                return Ok(());
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINTR) {
                bail!("io_uring_enter: {err}");
            }
        }
    }

    /// Hands every completion waiting in the ring to `f(user_data, result)`.
    fn reap(&mut self, mut f: impl FnMut(u64, i32)) -> usize {
        let head_ptr: *const AtomicU32 = self.cq.at::<u32>(self.p.cq_off.head).cast();
        let tail_ptr: *const AtomicU32 = self.cq.at::<u32>(self.p.cq_off.tail).cast();
        let cqes: *const Cqe = self.cq.at(self.p.cq_off.cqes);
        // SAFETY: the ring's head and tail words, 4-byte aligned, shared with the kernel.
        let (mut head, tail) =
            unsafe { ((*head_ptr).load(Ordering::Relaxed), (*tail_ptr).load(Ordering::Acquire)) };
        let mut n = 0;
        while head != tail {
            let index = head & self.p.cq_entries.wrapping_sub(1);
            // SAFETY: index < cq_entries; the entry is ours until the head passes it.
            let cqe = unsafe { cqes.add(index as usize).read() };
            f(cqe.user_data, cqe.res);
            head = head.wrapping_add(1);
            n += 1;
        }
        // SAFETY: as above; only we write the completion head.
        unsafe { (*head_ptr).store(head, Ordering::Release) };
        n
    }
}

/// A thread that sends 64 KiB `UDP_SEGMENT` sends to 172.16.1.2:9000 until `stop`,
/// from one socket per port in `ports`, in turn (port 0: any).
fn spawn_sender(
    stop: &Arc<AtomicBool>,
    ports: Vec<u16>,
) -> std::thread::JoinHandle<anyhow::Result<()>> {
    let stop = Arc::clone(stop);
    std::thread::spawn(move || -> anyhow::Result<()> {
        let mut sockets = Vec::new();
        for port in ports {
            let socket = UdpSocket::bind(("172.16.1.1", port))?;
            setsockopt(&socket, sockopt::UdpGsoSegment, &i32::from(SEGMENT))?;
            socket.connect("172.16.1.2:9000")?;
            sockets.push(socket);
        }
        let payload: Vec<u8> =
            (0..SEGMENTS_PER_SEND * usize::from(SEGMENT)).map(|i| i as u8).collect();
        while !stop.load(Ordering::Relaxed) {
            for socket in &sockets {
                // ENOBUFS when the TAP's queue is full: the reader is behind; try again.
                let _ = socket.send(&payload);
            }
        }
        Ok(())
    })
}

/// The UDP payload bytes of a plain frame (0 for anything else, such as IPv6 chatter).
fn udp_payload(frame: &[u8]) -> u64 {
    segment::layout(frame).map_or(0, |l| (l.end - l.payload) as u64)
}

// ANCHOR: rx_uring
/// kernel -> us on a plain tap, with `BATCH` reads in flight: each `io_uring_enter`
/// hands back every read that completed and re-queues as many.
fn rx_uring(seconds: f64) -> anyhow::Result<Row> {
    const BATCH: usize = 32;
    let (tap, _) = Tap::options().blocking(true).open("tap4")?;
    let stop = Arc::new(AtomicBool::new(false));
    let sender = spawn_sender(&stop, vec![0]);
    let mut ring = Ring::new(BATCH as u32)?;
    let mut bufs = vec![vec![0u8; tapbook::FRAME_BUFFER_LEN]; BATCH];
    for (i, buf) in bufs.iter_mut().enumerate() {
        ring.push(IORING_OP_READ, tap.as_fd().as_raw_fd(), buf.as_mut_ptr(), buf.len(), i as u64);
    }
    let mut row = Row::default();
    let mut to_submit = BATCH as u32;
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    while start.elapsed().as_secs_f64() < seconds {
        ring.enter(to_submit, 1)?;
        row.calls += 1;
        let mut done = Vec::with_capacity(BATCH);
        ring.reap(|slot, res| done.push((slot as usize, res)));
        for &(slot, res) in &done {
            if res > 0 {
                let payload = udp_payload(&bufs[slot][..res as usize]);
                row.payload += payload;
                row.datagrams += u64::from(payload > 0);
            }
            let buf = &mut bufs[slot];
            ring.push(
                IORING_OP_READ,
                tap.as_fd().as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
                slot as u64,
            );
        }
        to_submit = done.len() as u32;
    }
    row.seconds = start.elapsed().as_secs_f64();
    row.cpu = cpu_seconds() - cpu0;
    stop.store(true, Ordering::Relaxed);
    drop(ring); // cancels the reads still in flight, before their buffers go
    drop(bufs);
    drop(tap);
    sender.join().map_err(|_| anyhow::anyhow!("the sender panicked"))??;
    Ok(row)
}
// ANCHOR_END: rx_uring

// ANCHOR: tx_uring
/// us -> kernel on a plain tap, `BATCH` frames (each with its own checksum) per
/// `io_uring_enter`, which returns when all of them are written.
fn tx_uring(seconds: f64) -> anyhow::Result<Row> {
    const BATCH: usize = 32;
    let (tap, _) = Tap::options().blocking(true).open("tap4")?;
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
    let payload: Vec<u8> = (0..usize::from(SEGMENT)).map(|i| i as u8).collect();
    let mut frames: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(2048)).collect();
    let mut ring = Ring::new(BATCH as u32)?;
    let (csum0, dropped0) = (udp_counter("InCsumErrors"), udp_counter("RcvbufErrors"));
    let mut row = Row::default();
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    while start.elapsed().as_secs_f64() < seconds {
        for (i, frame) in frames.iter_mut().enumerate() {
            segment::build_udp_superframe(&flow, &payload, 0, 0, frame)?;
            ring.push(
                IORING_OP_WRITE,
                tap.as_fd().as_raw_fd(),
                frame.as_mut_ptr(),
                frame.len(),
                i as u64,
            );
        }
        ring.enter(BATCH as u32, BATCH as u32)?;
        row.calls += 1;
        let mut failed = None;
        ring.reap(|_, res| {
            if res < 0 {
                failed = Some(res);
            }
        });
        if let Some(res) = failed {
            bail!("an io_uring write to tap4: {}", std::io::Error::from_raw_os_error(-res));
        }
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
    row.dropped = udp_counter("RcvbufErrors") - dropped0;
    Ok(row)
}
// ANCHOR_END: tx_uring

// ANCHOR: rx_queues
/// kernel -> us on a plain multi-queue tap4: 8 flows (two sender threads of four sockets
/// each), read by one thread per queue.
fn rx_queues(queues: usize, seconds: f64) -> anyhow::Result<Row> {
    let (taps, _) = vnet::open_queues("tap4", &Tap::options(), queues)?;
    let stop = Arc::new(AtomicBool::new(false));
    let senders = [
        spawn_sender(&stop, (41000..41004).collect()),
        spawn_sender(&stop, (41004..41008).collect()),
    ];
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let readers: Vec<_> = taps
        .into_iter()
        .map(|tap| {
            std::thread::spawn(move || -> anyhow::Result<Row> {
                let mut row = Row::default();
                let mut buf = vec![0u8; tapbook::FRAME_BUFFER_LEN];
                while start.elapsed().as_secs_f64() < seconds {
                    match nix::unistd::read(&tap, &mut buf) {
                        Ok(len) => {
                            let payload = udp_payload(&buf[..len]);
                            row.payload += payload;
                            row.datagrams += u64::from(payload > 0);
                            row.calls += 1;
                        }
                        Err(Errno::EAGAIN) => {
                            // Nothing for this queue (yet): wait a little, not for ever.
                            let mut fds =
                                [nix::poll::PollFd::new(tap.as_fd(), nix::poll::PollFlags::POLLIN)];
                            let _ = nix::poll::poll(&mut fds, 50u16);
                        }
                        Err(Errno::EINTR) => {}
                        Err(errno) => bail!("reading a queue of tap4: {errno}"),
                    }
                }
                Ok(row)
            })
        })
        .collect();
    let mut total = Row::default();
    for reader in readers {
        let row = reader.join().map_err(|_| anyhow::anyhow!("a reader panicked"))??;
        total.payload += row.payload;
        total.datagrams += row.datagrams;
        total.calls += row.calls;
    }
    total.seconds = start.elapsed().as_secs_f64();
    total.cpu = cpu_seconds() - cpu0;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.join().map_err(|_| anyhow::anyhow!("a sender panicked"))??;
    }
    Ok(total)
}
// ANCHOR_END: rx_queues
