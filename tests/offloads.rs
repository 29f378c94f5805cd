//! Chapter 9 end to end: the kernel's own sockets on one side of tap4, `09_offloads` on
//! the other, in a fresh namespace.
//!
//! - Receive: the same flow read once from a plain TAP (the kernel cuts it) and once
//!   with offloads (we cut the superframe) gives the same frames, byte for byte.
//! - Send: our UDP superframes reach a kernel socket whole, with no checksum error.
//!
//! The kernel-side sockets live in a thread of this test that has joined the lab's
//! namespace (`setns` changes the namespace of the calling thread only).

use tapbook_lab as common;
use tapbook_lab::require_lab;

use std::fs::File;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::{Lab, Responder, wait_until};
use nix::sys::socket::{setsockopt, sockopt};

const BIN: &str = env!("CARGO_BIN_EXE_09_offloads");

/// Moves the calling thread into the namespace mounted at `/run/netns/NAME`.
fn join_netns(name: &str) {
    let ns = File::open(format!("/run/netns/{name}")).expect("opening the namespace");
    // SAFETY: setns(2) on a descriptor we hold open; it changes only this thread.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a thread inside the lab's network namespace.
fn in_netns<R: Send + 'static>(lab: &Lab, f: impl FnOnce() -> R + Send + 'static) -> R {
    let name = lab.netns.clone();
    std::thread::spawn(move || {
        join_netns(&name);
        f()
    })
    .join()
    .expect("the namespace thread panicked")
}

fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// The lab, plus the static neighbour entry that spares the kernel an ARP question.
fn lab(tag: &str) -> Lab {
    let lab = Lab::new(tag);
    lab.ip(&["neigh", "replace", "172.16.1.2", "lladdr", "02:00:00:00:00:02", "dev", "tap4"]);
    lab
}

/// Frames in a pcap file that carry IPv4 (IPv6 router solicitations come and go).
fn ipv4_frames(path: &std::path::Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).expect("reading the pcap");
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let len = u32::from_ne_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &data[at + 16..at + 16 + len];
        if frame[12..14] == [0x08, 0x00] {
            frames.push(frame.to_vec());
        }
        at += 16 + len;
    }
    frames
}

/// Runs 09_offloads with `args` while `send` runs in the namespace; returns its output
/// and the IPv4 frames it wrote to its `--pcap` once `lines` lines matched `expect`.
fn capture(
    lab: &mut Lab,
    args: &[&str],
    expect: &str,
    lines: usize,
    send: impl FnOnce() + Send + 'static,
) -> (String, Vec<Vec<u8>>) {
    let pcap = std::env::temp_dir().join(format!("{}-{}.pcap", lab.netns, args.len()));
    let pcap_arg = pcap.to_str().unwrap().to_owned();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--pcap", &pcap_arg]);
    let mut program: Responder = lab.start(BIN, &all, None);
    in_netns(lab, send);
    let done = wait_until(Duration::from_secs(5), || {
        program.stdout_text().matches(expect).count() >= lines
    });
    let (status, output) = program.stop();
    assert!(done, "never saw {lines} x {expect:?}:\n{output}");
    assert!(status.is_some_and(|s| s.success()), "{output}");
    let frames = ipv4_frames(&pcap);
    let _ = std::fs::remove_file(&pcap);
    (output, frames)
}

/// 8,000 bytes from a UDP socket with UDP_SEGMENT 1000: one superframe, or eight
/// datagrams. Bound to a fixed port and with DF (IP_PMTUDISC_DO), so that both runs
/// produce identical headers: an unconnected socket's DF packets all start at ID 0.
fn send_udp_flow() {
    let socket = UdpSocket::bind("172.16.1.1:40000").expect("binding 172.16.1.1:40000");
    let pmtudisc_do: libc::c_int = libc::IP_PMTUDISC_DO;
    // SAFETY: a valid socket, and a pointer to an int of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&pmtudisc_do as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "IP_MTU_DISCOVER");
    setsockopt(&socket, sockopt::UdpGsoSegment, &1000).expect("UDP_SEGMENT");
    let payload: Vec<u8> = (0..8000).map(pattern).collect();
    socket.send_to(&payload, "172.16.1.2:9000").expect("sending the UDP flow");
}

#[test]
fn a_uso_superframe_cut_by_us_equals_the_kernels_cut() {
    require_lab!("a_uso_superframe_cut_by_us_equals_the_kernels_cut");
    let mut lab = lab("h7-uso");
    // Offloads first: the plain run after it also shows that `open_with` turned them off
    // again (they belong to the interface and outlive the descriptor that set them).
    let (ours_out, ours) =
        capture(&mut lab, &[], "gso_type=5 (UDP_L4) gso_size=1000", 1, send_udp_flow);
    let (plain_out, kernel) = capture(&mut lab, &["--plain"], "1042 bytes", 8, send_udp_flow);
    assert_eq!(kernel.len(), 8, "{plain_out}");
    assert!(ours_out.contains("-> 8 frames"), "{ours_out}");
    assert!(ours_out.contains("0 bad checksums, 0 errors"), "{ours_out}");
    assert_eq!(ours, kernel, "our cut differs from the kernel's");
}

/// A TCP superframe (CWR|ACK|PSH|FIN, 250 bytes, MSS 100) written out of tap4 through an
/// AF_PACKET socket with PACKET_VNET_HDR, the way a VMM's own backend hands the kernel a
/// TSO frame. (A real TCP connection would need a TCP peer behind the TAP.)
fn send_tcp_superframe(mac: [u8; 6]) {
    let payload: Vec<u8> = (0..250).map(pattern).collect();
    let tcp_len = 20 + payload.len();
    let mut frame = vec![2, 0, 0, 0, 0, 2];
    frame.extend(&mac);
    frame.extend([0x08, 0x00, 0x45, 0]);
    frame.extend(((20 + tcp_len) as u16).to_be_bytes());
    frame.extend([0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 172, 16, 1, 1, 172, 16, 1, 2]);
    let ip_check = tapbook::wire::checksum::checksum(&frame[14..34]);
    frame[24..26].copy_from_slice(&ip_check.to_be_bytes());
    let pseudo = tapbook::segment::pseudo_header_sum(
        Ipv4Addr::new(172, 16, 1, 1),
        Ipv4Addr::new(172, 16, 1, 2),
        6,
        tcp_len as u16,
    );
    frame.extend([0x9c, 0x41, 0x23, 0x29, 0, 0, 0x03, 0xe8, 0, 0, 0x13, 0x88, 0x50, 0x99]);
    frame.extend([0x01, 0xf6]);
    frame.extend((!tapbook::wire::checksum::finish(pseudo)).to_be_bytes());
    frame.extend([0, 0]);
    frame.extend(&payload);
    // NEEDS_CSUM, TCPV4, hdr_len 54, gso_size 100, csum_start 34, csum_offset 16.
    let mut message = vec![1, 1, 54, 0, 100, 0, 34, 0, 16, 0];
    message.extend(&frame);

    // SAFETY: plain socket(2); the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a socket we just opened and own from here on.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and a pointer to an int of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_VNET_HDR,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "PACKET_VNET_HDR: {}", std::io::Error::last_os_error());
    let index = nix::net::if_::if_nametoindex("tap4").expect("tap4's index");
    // SAFETY: all zeroes is a valid sockaddr_ll.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_ifindex = index as i32;
    // SAFETY: message and to outlive the call; the lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            0,
            (&to as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    assert_eq!(sent, message.len() as isize, "{}", std::io::Error::last_os_error());
}

#[test]
fn a_tso_superframe_cut_by_us_equals_the_kernels_cut() {
    require_lab!("a_tso_superframe_cut_by_us_equals_the_kernels_cut");
    let mut lab = lab("h7-tso");
    // From `ip`, not /sys/class/net: sysfs shows the namespace it was mounted in.
    let link = lab.ip(&["-o", "link", "show", "tap4"]);
    let mac_text = link.split("link/ether ").nth(1).and_then(|s| s.get(..17)).expect("a MAC");
    let mut mac = [0u8; 6];
    for (byte, hex) in mac.iter_mut().zip(mac_text.split(':')) {
        *byte = u8::from_str_radix(hex, 16).expect("hex");
    }
    let send = move || send_tcp_superframe(mac);
    let (plain_out, kernel) = capture(&mut lab, &["--plain"], "104 bytes (no header)", 1, send);
    let (ours_out, ours) = capture(&mut lab, &[], "gso_type=1 (TCPV4) gso_size=100", 1, send);
    assert_eq!(kernel.len(), 3, "{plain_out}");
    assert!(ours_out.contains("-> 3 frames of [154, 154, 104] bytes"), "{ours_out}");
    assert_eq!(ours, kernel, "our cut differs from the kernel's");
    // The flags, as the kernel put them: CWR|ACK, ACK, ACK|PSH|FIN.
    let flags: Vec<u8> = kernel.iter().map(|f| f[47]).collect();
    assert_eq!(flags, [0x90, 0x10, 0x19]);
}

/// The `Udp:` counters of /proc/net/snmp in the lab's namespace, by name.
fn udp_counters(lab: &Lab) -> Vec<(String, u64)> {
    let out = common::run_ok(lab.command("cat").arg("/proc/net/snmp"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap_or(""), udp.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
        .map(|(n, v)| (n.to_owned(), v.parse().unwrap_or(u64::MAX)))
        .collect()
}

#[test]
fn our_udp_superframes_reach_a_kernel_socket_whole() {
    require_lab!("our_udp_superframes_reach_a_kernel_socket_whole");
    let mut lab = lab("h7-tx");
    const BYTES: usize = 300_000;
    let receiver = {
        let name = lab.netns.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            join_netns(&name);
            let socket = UdpSocket::bind("172.16.1.1:9001").expect("binding 172.16.1.1:9001");
            // Room for everything at once: a slow test machine must not drop datagrams.
            setsockopt(&socket, sockopt::RcvBufForce, &(8 << 20)).expect("SO_RCVBUFFORCE");
            socket.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
            ready_tx.send(()).expect("telling the test we are ready");
            let mut received = Vec::new();
            let mut datagrams = 0;
            let mut buf = vec![0u8; 65536];
            while received.len() < BYTES {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        received.extend_from_slice(&buf[..n]);
                        datagrams += 1;
                    }
                    Err(_) => break,
                }
            }
            (received, datagrams)
        });
        ready_rx.recv().expect("the receiver thread started");
        thread
    };
    let bytes = BYTES.to_string();
    let mut sender = lab.spawn(
        BIN,
        &["--send", "172.16.1.1:9001", "--bytes", &bytes, "--segment", "1000"],
        None,
    );
    let status = sender.wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{}", sender.output());
    assert!(
        sender.stdout_text().contains("in 5 writes of up to 65 datagrams"),
        "{}",
        sender.output()
    );
    let (received, datagrams) = receiver.join().expect("receiver thread");
    assert_eq!(received.len(), BYTES, "every byte arrives");
    assert_eq!(datagrams, 300, "cut into 1,000-byte datagrams by the kernel");
    assert!(received.iter().enumerate().all(|(i, b)| *b == pattern(i)), "bytes intact, in order");
    let counters = udp_counters(&lab);
    let get = |name: &str| counters.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    assert_eq!(get("InDatagrams"), Some(300), "{counters:?}");
    assert_eq!(get("InCsumErrors"), Some(0), "{counters:?}");
    assert_eq!(get("InErrors"), Some(0), "{counters:?}");
}

#[test]
fn open_with_reports_what_the_kernel_agreed_to() {
    require_lab!("open_with_reports_what_the_kernel_agreed_to");
    let mut lab = lab("h7-neg");
    // USO4 alone: Linux takes USO4 and USO6 only together, so it is refused, cleanly.
    let mut program = lab.start(BIN, &["--offloads", "csum,tso4,uso4"], None);
    let (_, output) = program.stop();
    assert!(output.contains("offloads csum,tso4 (refused by this kernel: uso4)"), "{output}");
    let out = lab.ip(&["-d", "link", "show", "tap4"]);
    assert!(out.contains("tap"), "{out}");
}

#[test]
fn the_bench_runs_and_ends_with_its_summary_line() {
    require_lab!("the_bench_runs_and_ends_with_its_summary_line");
    let bench = common::example("offload_bench", std::path::Path::new(BIN));
    let out =
        std::process::Command::new(&bench).arg("--quick").output().expect("running the bench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let last = text.lines().last().unwrap_or("");
    let fields: Vec<&str> = last.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"offload-summary"), "{text}");
    assert!(fields.get(1).is_some_and(|f| f.starts_with("rx_ratio=")), "{text}");
    assert!(fields.get(2).is_some_and(|f| f.starts_with("tx_ratio=")), "{text}");
    assert_eq!(fields.get(3), Some(&"csum_errors=0"), "{text}");
    assert!(fields.get(4).is_some_and(|f| f.starts_with("mq_ratio=")), "{text}");
    assert!(fields.get(5).is_some_and(|f| f.starts_with("uring_ratio=")), "{text}");
    for row in [
        "rx plain",
        "rx offloads",
        "rx offloads, cut by us",
        "tx plain",
        "tx offloads",
        "rx plain, io_uring",
        "tx plain, io_uring",
        "rx plain, 8 flows, 1 queue",
        "rx plain, 8 flows, 2 queues",
    ] {
        assert!(text.lines().any(|l| l.starts_with(row)), "no {row:?} row:\n{text}");
    }
}

/// Replaces the lab's tap4 by a multi-queue one (a TAP is made one kind or the other).
fn make_multi_queue(lab: &Lab) {
    lab.ip(&["link", "del", "tap4"]);
    lab.ip(&["tuntap", "add", "dev", "tap4", "mode", "tap", "multi_queue"]);
    lab.ip(&["addr", "add", "172.16.1.1/24", "dev", "tap4"]);
    lab.ip(&["link", "set", "tap4", "up"]);
    lab.ip(&["neigh", "replace", "172.16.1.2", "lladdr", "02:00:00:00:00:02", "dev", "tap4"]);
}

#[test]
fn two_queues_share_the_flows_and_keep_each_flow_on_one() {
    require_lab!("two_queues_share_the_flows_and_keep_each_flow_on_one");
    let mut lab = lab("mq");
    make_multi_queue(&lab);
    // A single-queue open of a multi-queue TAP is refused: the two kinds do not mix.
    let mut single = lab.spawn(BIN, &[], None);
    let status = single.wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|s| !s.success()), "{}", single.output());

    let mut program = lab.start(BIN, &["--queues", "2"], None);
    // The carrier comes on with the first queue: wait for the second too (the banner
    // follows both), or the flows sent meanwhile all go to the only queue there is.
    let both = wait_until(Duration::from_secs(10), || {
        program.output().contains("2 queues (IFF_MULTI_QUEUE), one thread each")
    });
    assert!(both, "09 did not attach its two queues:\n{}", program.output());
    // 16 flows (source ports 40001-40016) of 3 datagrams each, in turns, so that every
    // flow's datagrams are interleaved with the others'.
    in_netns(&lab, || {
        let sockets: Vec<UdpSocket> = (40001..=40016)
            .map(|port| UdpSocket::bind(("172.16.1.1", port)).expect("binding a source port"))
            .collect();
        for _ in 0..3 {
            for socket in &sockets {
                socket.send_to(&[7; 100], "172.16.1.2:9000").expect("sending a datagram");
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500)); // the threads read what is queued
    let (status, output) = program.stop();
    assert!(status.is_some_and(|s| s.success()), "{output}");
    assert!(output.contains("2 queues (IFF_MULTI_QUEUE), one thread each"), "{output}");
    assert!(output.contains("every flow came out of one queue only"), "{output}");
    // Each flow is listed once, under one queue, with all of its 3 datagrams.
    for port in 40001..=40016 {
        let flow = format!("UDP 172.16.1.1:{port} > 172.16.1.2:9000");
        let lines: Vec<&str> = output.lines().filter(|l| l.contains(&flow)).collect();
        assert_eq!(lines.len(), 1, "{flow} under one queue only:\n{output}");
        assert!(lines[0].ends_with(" 3 frames"), "{flow}: all 3 datagrams:\n{output}");
    }
    // Both queues carried some of them (all 16 on one queue: a chance of 1 in 32,768
    // once both queues are attached).
    let per_queue: Vec<usize> = output
        .split("\nqueue ")
        .skip(1)
        .map(|queue| queue.lines().filter(|l| l.contains("UDP 172.16.1.1:")).count())
        .collect();
    assert_eq!(per_queue.len(), 2, "{output}");
    assert!(per_queue.iter().all(|&n| n > 0), "flows per queue {per_queue:?}:\n{output}");
}
