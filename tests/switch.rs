//! Chapters 11 and 12 end to end: `11_qemu_relay` and `12_learning_switch` in a lab
//! namespace, with the kernel on tap4 and, on the QEMU side, first a peer of our own
//! that speaks QEMU's stream and dgram protocols (`tapbook_lab::switch_lab::Peer`, written
//! from QEMU's description, not with the library's framing) and answers ARP and ping
//! with `tapbook::respond`; then real QEMU guests (TCG) booted on `-netdev stream` and
//! `-netdev dgram` (`switch_lab::boot`, the kernel and initramfs of `cargo lab vm` with
//! `scripts/vm/init.sh` as `/init`, told by the kernel's command line what address to
//! take and what to ping). The book's recordings of these chapters are
//! `cargo lab record switch` (`switch_lab::record`).

use tapbook_lab as common;
use tapbook_lab::require_lab;
use tapbook_lab::switch_lab::{self, GuestImage, Peer, host};

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Lab, Responder, ScratchDir, wait_until};
use nix::sys::signal::Signal;

const BIN_11: &str = env!("CARGO_BIN_EXE_11_qemu_relay");
const BIN_12: &str = env!("CARGO_BIN_EXE_12_learning_switch");

fn ping_ok(lab: &Lab, addr: &str, count: u32, program: &Responder) {
    let out = lab.ping(&["-c", &count.to_string(), "-i", "0.2", "-W", "2", addr]);
    let (sent, received) = common::ping_counts(&out);
    assert_eq!(
        (sent, received),
        (count, count),
        "ping {addr}:\n{}\nprogram:\n{}",
        String::from_utf8_lossy(&out.stdout),
        program.output()
    );
}

/// Starts a relay or switch in the lab and waits until it holds tap4 and has made
/// its sockets.
fn start(lab: &mut Lab, bin: &str, args: &[&str], sockets: &[&Path]) -> Responder {
    switch_lab::start(lab, bin, args, sockets).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_kernel_pings_a_peer_through_the_relay_over_stream() {
    require_lab!("the_kernel_pings_a_peer_through_the_relay_over_stream");
    let dir = ScratchDir::new("relay-stream");
    let sock = dir.path("guest.sock");
    let mut lab = Lab::new("relay11s");
    let mut relay = start(&mut lab, BIN_11, &["--stream", sock.to_str().unwrap()], &[&sock]);
    let peer = Peer::stream(&sock, host(2)).expect("a peer");
    ping_ok(&lab, "172.16.1.2", 3, &relay);
    let (status, out) = relay.stop();
    assert!(status.is_some_and(|s| s.success()), "{out}");
    for line in [
        "[guest] QEMU connected to",
        "tap4 -> guest:\n  ARP who-has 172.16.1.2 tell 172.16.1.1",
        "guest -> tap4:\n  ARP reply 172.16.1.2 is-at 02:00:00:00:00:02",
        "guest -> tap4:\n  IPv4 172.16.1.2 > 172.16.1.1 ICMP echo reply",
        "   guest: ",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    let seen = peer.seen();
    assert_eq!(seen.iter().filter(|s| s.contains("ICMP echo request")).count(), 3, "{seen:?}");
}

#[test]
fn the_kernel_pings_a_peer_through_the_relay_over_dgram() {
    require_lab!("the_kernel_pings_a_peer_through_the_relay_over_dgram");
    let dir = ScratchDir::new("relay-dgram");
    let (ours, theirs) = (dir.path("relay.sock"), dir.path("qemu.sock"));
    let spec = format!("{}:{}", ours.display(), theirs.display());
    let mut lab = Lab::new("relay11d");
    let mut relay = start(&mut lab, BIN_11, &["--dgram", &spec], &[&ours]);
    let peer = Peer::dgram(&theirs, &ours, host(2)).expect("a peer");
    ping_ok(&lab, "172.16.1.2", 3, &relay);
    let (status, out) = relay.stop();
    assert!(status.is_some_and(|s| s.success()), "{out}");
    assert!(
        out.contains("relay -> tap4:\n  IPv4 172.16.1.2 > 172.16.1.1 ICMP echo reply"),
        "{out}"
    );
    assert!(peer.seen().iter().any(|s| s.contains("ICMP echo request")));
}

#[test]
fn help_mistakes_and_a_missing_tap_are_one_clear_message() {
    for bin in [BIN_11, BIN_12] {
        let help = Command::new(bin).arg("--help").output().expect("running --help");
        assert!(help.status.success());
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(text.contains("--stream PATH") && text.lines().all(|l| l.len() <= 78), "{text}");
        let full = std::fs::File::options().write(true).open("/dev/full").expect("/dev/full");
        let status = Command::new(bin).arg("--help").stdout(full).status().expect("running");
        assert_eq!(status.code(), Some(1), "{bin} --help > /dev/full");
        let mistake = Command::new(bin).arg("--bogus").output().expect("running");
        assert_eq!(mistake.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&mistake.stderr).contains("unexpected argument"));
    }
    // A socket path where a file is: refused, and the file left alone.
    let dir = ScratchDir::new("mistakes");
    let file = dir.path("notes.txt");
    std::fs::write(&file, "mine").expect("a file");
    let out = Command::new(BIN_12)
        .args([
            "--stream",
            file.to_str().unwrap(),
            "--stream",
            dir.path("b.sock").to_str().unwrap(),
        ])
        .output()
        .expect("running the switch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("Error: ") && stderr.contains("is not a socket"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).expect("the file"), "mine");
}

#[test]
fn the_relay_needs_no_privilege() {
    require_lab!("the_relay_needs_no_privilege");
    let dir = ScratchDir::new("relay-user");
    // The user must be able to make its socket there.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let sock = dir.path("guest.sock");
    let user = common::UNPRIVILEGED_USER;
    let mut lab = Lab::with_owner("relay11u", user);
    let mut relay = lab.start(BIN_11, &["--stream", sock.to_str().unwrap()], Some(user));
    assert!(wait_until(Duration::from_secs(10), || sock.exists()), "{}", relay.output());
    let _peer = Peer::stream(&sock, host(2)).expect("a peer");
    ping_ok(&lab, "172.16.1.2", 2, &relay);
    let (status, out) = relay.stop();
    assert!(status.is_some_and(|s| s.success()), "{out}");
}

#[test]
fn a_station_not_heard_from_for_the_ageing_time_is_flooded_to_again() {
    require_lab!("a_station_not_heard_from_for_the_ageing_time_is_flooded_to_again");
    let dir = ScratchDir::new("ageing");
    let (a, b) = (dir.path("peer2.sock"), dir.path("peer4.sock"));
    let mut lab = Lab::new("switch12a");
    let args = [
        "--tap",
        "tap4",
        "--stream",
        a.to_str().unwrap(),
        "--stream",
        b.to_str().unwrap(),
        "--ageing",
        "2",
    ];
    let mut switch = start(&mut lab, BIN_12, &args, &[&a, &b]);
    let (peer2, peer4) =
        (Peer::stream(&a, host(2)).expect("peer2"), Peer::stream(&b, host(4)).expect("peer4"));
    ping_ok(&lab, "172.16.1.2", 1, &switch);
    let echo = |p: &Peer| p.seen().iter().filter(|s| s.contains("> 172.16.1.2 ICMP echo")).count();
    assert_eq!(echo(&peer4), 0, "known: the echo request went to peer2 only");
    // The kernel still knows peer2's MAC (its neighbour entry lasts longer than 2 s), so
    // it sends the next request unicast; the switch has forgotten where that MAC is.
    std::thread::sleep(Duration::from_secs(3));
    ping_ok(&lab, "172.16.1.2", 1, &switch);
    assert_eq!(echo(&peer4), 1, "aged out: flooded to peer4 too");
    assert_eq!(echo(&peer2), 2, "and to peer2, which answered");
    let (_, out) = switch.stop();
    assert!(out.contains("  -> flood (unknown): peer2 peer4"), "{out}");
    assert!(out.contains("MAC table: 2 entries, ageing 2 s"), "{out}");
}

/// The line of the switch's table for `mac`, if any: "  MAC  PORT  AGE".
fn table_port(text: &str, mac: &str) -> Option<String> {
    let table = text.rsplit("MAC table:").next()?;
    let line = table.lines().find(|l| l.trim_start().starts_with(mac))?;
    line.split_whitespace().nth(1).map(str::to_owned)
}

#[test]
fn the_switch_floods_until_it_learns_then_sends_to_one_port() {
    require_lab!("the_switch_floods_until_it_learns_then_sends_to_one_port");
    let dir = ScratchDir::new("switch");
    let (a, b) = (dir.path("peer2.sock"), dir.path("peer4.sock"));
    let mut lab = Lab::new("switch12");
    let args = ["--tap", "tap4", "--stream", a.to_str().unwrap(), "--stream", b.to_str().unwrap()];
    let mut switch = start(&mut lab, BIN_12, &args, &[&a, &b]);
    let (peer2, peer4) =
        (Peer::stream(&a, host(2)).expect("peer2"), Peer::stream(&b, host(4)).expect("peer4"));
    ping_ok(&lab, "172.16.1.2", 3, &switch);
    ping_ok(&lab, "172.16.1.4", 3, &switch);

    // The kernel's first ARP request (broadcast) reached both peers; its echo requests
    // to .2, once the switch knew where 02:00:00:00:00:02 is, reached peer2 only.
    let (seen2, seen4) = (peer2.seen(), peer4.seen());
    assert!(seen4.iter().any(|s| s == "ARP who-has 172.16.1.2 tell 172.16.1.1"), "{seen4:?}");
    assert!(!seen4.iter().any(|s| s.contains("172.16.1.1 > 172.16.1.2")), "{seen4:?}");
    assert!(!seen2.iter().any(|s| s.contains("172.16.1.1 > 172.16.1.4")), "{seen2:?}");
    assert_eq!(seen2.iter().filter(|s| s.contains("echo request")).count(), 3, "{seen2:?}");

    // The table on request, then at exit.
    switch.signal(Signal::SIGUSR1);
    let shown = wait_until(Duration::from_secs(5), || switch.output().contains("MAC table"));
    assert!(shown, "no table after SIGUSR1:\n{}", switch.output());
    let first_table = switch.output();
    assert_eq!(table_port(&first_table, "02:00:00:00:00:04").as_deref(), Some("peer4"));

    // peer4 hangs up: the switch forgets the station behind that port.
    peer4.hang_up();
    let forgot = wait_until(Duration::from_secs(5), || {
        switch.output().contains("[peer4] forgot 1 station\n")
    });
    assert!(forgot, "{}", switch.output());
    let (status, out) = switch.stop();
    assert!(status.is_some_and(|s| s.success()), "{out}");
    assert!(out.contains("[peer4] QEMU disconnected: it closed the connection"), "{out}");
    assert_eq!(table_port(&out, "02:00:00:00:00:02").as_deref(), Some("peer2"), "{out}");
    assert_eq!(table_port(&out, "02:00:00:00:00:04"), None, "forgotten:\n{out}");
    let kernel_mac = lab.ip(&["-br", "link", "show", "tap4"]);
    let kernel_mac = kernel_mac.split_whitespace().nth(2).expect("tap4's MAC");
    assert_eq!(table_port(&out, kernel_mac).as_deref(), Some("tap4"), "{out}");
    assert!(out.contains("-> flood (broadcast): peer2 peer4"), "{out}");
    assert!(out.contains("  from peer2: 02:00:00:00:00:02 > "), "{out}");
    assert!(out.contains("  -> peer2\n"), "{out}");
    assert_eq!(out.matches("MAC table:").count(), 2, "on SIGUSR1 and at exit:\n{out}");
}

// ---- Real guests ----------------------------------------------------------------------

/// The guests' kernel and initramfs (switch_lab::guest_image).
fn guest_image() -> GuestImage {
    switch_lab::guest_image().unwrap_or_else(|e| panic!("{e}"))
}

/// busybox ping's summary for `addr` in a guest's console: (transmitted, received).
fn guest_ping(console: &str, addr: &str) -> Option<(u32, u32)> {
    let header = format!("--- {addr} ping statistics ---");
    let mut lines = console.lines().skip_while(|l| l.trim() != header);
    lines.next()?;
    let numbers: Vec<u32> =
        lines.next()?.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
    Some((*numbers.first()?, *numbers.get(1)?))
}

fn wait_done(guest: &mut Responder, what: &str, program: &Responder) {
    switch_lab::wait_done(guest, what, program).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_qemu_guest_pings_the_kernel_through_the_relay() {
    require_lab!("a_qemu_guest_pings_the_kernel_through_the_relay", "qemu-system-x86_64");
    let dir = ScratchDir::new("relay-qemu");
    let image = guest_image();
    let sock = dir.path("guest.sock");
    let mut lab = Lab::new("relay11q");
    let mut relay = start(&mut lab, BIN_11, &["--stream", sock.to_str().unwrap()], &[&sock]);
    let netdev = switch_lab::stream_netdev(&sock);
    let mut guest = switch_lab::boot(&mut lab, &image, &netdev, 3, &["172.16.1.1"]);
    wait_done(&mut guest, "the guest", &relay);
    // And the kernel pings the guest.
    ping_ok(&lab, "172.16.1.3", 3, &relay);
    let console = guest.output();
    assert_eq!(guest_ping(&console, "172.16.1.1"), Some((3, 3)), "{console}");
    let (status, out) = relay.stop();
    assert!(status.is_some_and(|s| s.success()), "{out}");
    assert!(out.contains("guest -> tap4:\n  ARP who-has 172.16.1.1 tell 172.16.1.3"), "{out}");
    assert!(
        out.contains("tap4 -> guest:\n  IPv4 172.16.1.1 > 172.16.1.3 ICMP echo reply"),
        "{out}"
    );
}

#[test]
fn two_qemu_guests_ping_each_other_through_the_switch() {
    let test = "two_qemu_guests_ping_each_other_through_the_switch";
    require_lab!(test, "qemu-system-x86_64", "busybox");
    let dir = ScratchDir::new("switch-qemu");
    let image = guest_image();
    let (g3, peer) = (dir.path("guest3.sock"), dir.path("peer2.sock"));
    let (ours, theirs) = (dir.path("guest4.sock"), dir.path("qemu4.sock"));
    let mut lab = Lab::new("switch12q");
    let args = [
        "--tap",
        "tap4",
        "--stream",
        g3.to_str().unwrap(),
        "--dgram",
        &format!("{}:{}", ours.display(), theirs.display()),
        "--stream",
        peer.to_str().unwrap(),
    ];
    let mut switch = start(&mut lab, BIN_12, &args, &[&g3, &ours, &peer]);
    let _peer = Peer::stream(&peer, host(2)).expect("a peer");
    let stream = switch_lab::stream_netdev(&g3);
    let dgram = switch_lab::dgram_netdev(&theirs, &ours);
    let targets = |other: &'static str| ["172.16.1.1", "172.16.1.2", other];
    let mut guest3 = switch_lab::boot(&mut lab, &image, &stream, 3, &targets("172.16.1.4"));
    let mut guest4 = switch_lab::boot(&mut lab, &image, &dgram, 4, &targets("172.16.1.3"));
    wait_done(&mut guest3, "guest 3 (stream)", &switch);
    wait_done(&mut guest4, "guest 4 (dgram)", &switch);
    for (guest, other) in [(&guest3, "172.16.1.4"), (&guest4, "172.16.1.3")] {
        let console = guest.output();
        for addr in ["172.16.1.1", "172.16.1.2", other] {
            assert_eq!(guest_ping(&console, addr), Some((3, 3)), "{addr}:\n{console}");
        }
    }
    let (status, out) = switch.stop();
    assert!(status.is_some_and(|s| s.success()), "{out}");
    assert_eq!(table_port(&out, "52:54:00:12:34:03").as_deref(), Some("guest3"), "{out}");
    assert_eq!(table_port(&out, "52:54:00:12:34:04").as_deref(), Some("guest4"), "{out}");
    assert_eq!(table_port(&out, "02:00:00:00:00:02").as_deref(), Some("peer2"), "{out}");
}
