//! Chapters 11 and 12 end to end: `11_qemu_relay` and `12_learning_switch` in a lab
//! namespace, with the kernel on tap4 and, on the QEMU side, first a peer of our own
//! that speaks QEMU's stream and dgram protocols (written here from QEMU's description,
//! not with the library's framing) and answers ARP and ping with `tapbook::respond`;
//! then real QEMU guests (TCG) booted on `-netdev stream` and `-netdev dgram`.
//!
//! The guests boot the kernel and initramfs of `cargo lab vm` (`tapbook_lab::vm`, cached
//! in `$TAPBOOK_CACHE`, else `~/.cache/tapbook`), whose `/init` is `scripts/vm/init.sh`;
//! their address and what to ping come from the kernel's command line.

use tapbook_lab as common;
use tapbook_lab::require_lab;

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{Lab, Responder, wait_until};
use nix::sys::signal::Signal;
use tapbook::respond::{Host, Idents, Services, Timestamp, respond};
use tapbook::show::Summary;
use tapbook::wire::MacAddr;

const BIN_11: &str = env!("CARGO_BIN_EXE_11_qemu_relay");
const BIN_12: &str = env!("CARGO_BIN_EXE_12_learning_switch");

/// A scratch directory for the sockets, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("tb-sw-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }

    /// A fixed, short place (for recordings, whose lines show the paths).
    fn at(dir: &str) -> Scratch {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("scratch directory");
        Scratch(dir.into())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn host(last: u8) -> Host {
    Host {
        ip: Ipv4Addr::new(172, 16, 1, last),
        ip6: format!("fd00:172:16:1::{last}").parse().expect("an IPv6 address"),
        mac: MacAddr([0x02, 0, 0, 0, 0, last]),
    }
}

/// A station on a QEMU socket: answers ARP and ping as `host`, and keeps a summary of
/// every frame it received.
struct Peer {
    seen: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
    /// A stream peer's socket, to hang up with.
    sock: Option<UnixStream>,
}

impl Peer {
    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("the peer's log").clone()
    }

    /// Hangs up, as a QEMU that exits does.
    fn hang_up(&self) {
        if let Some(sock) = &self.sock {
            let _ = sock.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Connects to `path` as QEMU's `-netdev stream,server=off` does, and from then on
    /// reads a 4-byte big-endian length and that many bytes, and answers likewise.
    fn stream(path: &Path, host: Host) -> Peer {
        let connected = wait_until(Duration::from_secs(10), || path.exists());
        assert!(connected, "no socket at {}", path.display());
        let mut sock = UnixStream::connect(path).expect("connecting like QEMU");
        let ours = sock.try_clone().expect("a second handle on the socket");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let thread = std::thread::spawn(move || {
            let mut idents = Idents::new(7);
            let mut reply = vec![0u8; 2048];
            loop {
                let mut length = [0u8; 4];
                if sock.read_exact(&mut length).is_err() {
                    return; // the relay or switch has gone
                }
                let mut frame = vec![0u8; u32::from_be_bytes(length) as usize];
                if sock.read_exact(&mut frame).is_err() {
                    return;
                }
                log.lock().expect("the peer's log").push(Summary(&frame).to_string());
                let now = Timestamp::now();
                if let Ok(answer) =
                    respond(&host, Services::IPV4, &mut idents, now, &frame, &mut reply)
                {
                    let answer = &reply[..answer.len()];
                    let mut bytes = (answer.len() as u32).to_be_bytes().to_vec();
                    bytes.extend(answer);
                    if sock.write_all(&bytes).is_err() {
                        return;
                    }
                }
            }
        });
        Peer { seen, thread: Some(thread), sock: Some(ours) }
    }

    /// Binds `ours` and exchanges one datagram per frame with `theirs`, as QEMU's
    /// `-netdev dgram` does.
    fn dgram(ours: &Path, theirs: &Path, host: Host) -> Peer {
        let sock = UnixDatagram::bind(ours).expect("binding the peer's socket");
        let theirs = theirs.to_owned();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let thread = std::thread::spawn(move || {
            sock.set_read_timeout(Some(Duration::from_secs(20))).expect("a timeout");
            let mut idents = Idents::new(7);
            let (mut frame, mut reply) = (vec![0u8; 70_000], vec![0u8; 2048]);
            while let Ok(len) = sock.recv(&mut frame) {
                let frame = &frame[..len];
                log.lock().expect("the peer's log").push(Summary(frame).to_string());
                let now = Timestamp::now();
                if let Ok(answer) =
                    respond(&host, Services::IPV4, &mut idents, now, frame, &mut reply)
                {
                    let _ = sock.send_to(&reply[..answer.len()], &theirs);
                }
            }
        });
        Peer { seen, thread: Some(thread), sock: None }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // A stream peer ends when the program closes its socket; a dgram peer after its
        // timeout. Not waiting for the latter keeps a failing test quick.
        drop(self.thread.take());
    }
}

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
    let program = lab.start(bin, args, None);
    let made = wait_until(Duration::from_secs(10), || sockets.iter().all(|s| s.exists()));
    assert!(made, "no sockets {sockets:?}:\n{}", program.output());
    program
}

#[test]
fn the_kernel_pings_a_peer_through_the_relay_over_stream() {
    require_lab!("the_kernel_pings_a_peer_through_the_relay_over_stream");
    let dir = Scratch::new("relay-stream");
    let sock = dir.path("guest.sock");
    let mut lab = Lab::new("relay11s");
    let mut relay = start(&mut lab, BIN_11, &["--stream", sock.to_str().unwrap()], &[&sock]);
    let peer = Peer::stream(&sock, host(2));
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
    let dir = Scratch::new("relay-dgram");
    let (ours, theirs) = (dir.path("relay.sock"), dir.path("qemu.sock"));
    let spec = format!("{}:{}", ours.display(), theirs.display());
    let mut lab = Lab::new("relay11d");
    let mut relay = start(&mut lab, BIN_11, &["--dgram", &spec], &[&ours]);
    let peer = Peer::dgram(&theirs, &ours, host(2));
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
    let dir = Scratch::new("mistakes");
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
    let dir = Scratch::new("relay-user");
    // The user must be able to make its socket there.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let sock = dir.path("guest.sock");
    let user = common::UNPRIVILEGED_USER;
    let mut lab = Lab::with_owner("relay11u", user);
    let mut relay = lab.start(BIN_11, &["--stream", sock.to_str().unwrap()], Some(user));
    assert!(wait_until(Duration::from_secs(10), || sock.exists()), "{}", relay.output());
    let _peer = Peer::stream(&sock, host(2));
    ping_ok(&lab, "172.16.1.2", 2, &relay);
    let (status, out) = relay.stop();
    assert!(status.is_some_and(|s| s.success()), "{out}");
}

#[test]
fn a_station_not_heard_from_for_the_ageing_time_is_flooded_to_again() {
    require_lab!("a_station_not_heard_from_for_the_ageing_time_is_flooded_to_again");
    let dir = Scratch::new("ageing");
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
    let (peer2, peer4) = (Peer::stream(&a, host(2)), Peer::stream(&b, host(4)));
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
    let dir = Scratch::new("switch");
    let (a, b) = (dir.path("peer2.sock"), dir.path("peer4.sock"));
    let mut lab = Lab::new("switch12");
    let args = ["--tap", "tap4", "--stream", a.to_str().unwrap(), "--stream", b.to_str().unwrap()];
    let mut switch = start(&mut lab, BIN_12, &args, &[&a, &b]);
    let (peer2, peer4) = (Peer::stream(&a, host(2)), Peer::stream(&b, host(4)));
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
    assert!(out.contains("[peer4] QEMU disconnected: "), "{out}");
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

/// The guest's kernel and `cargo lab vm`'s initramfs.
struct GuestImage {
    kernel: PathBuf,
    initrd: PathBuf,
}

/// The kernel and initramfs `cargo lab vm` uses (this machine's kernel if it will do,
/// else Debian's cloud kernel, downloaded once into the cache).
fn guest_image() -> GuestImage {
    use tapbook_lab::vm;
    let cache = vm::default_cache();
    let mut order = vm::kernel_order(vm::KernelChoice::Auto);
    let (kernel, initramfs) =
        vm::pick_kernel(&mut order, &cache).unwrap_or_else(|e| panic!("no guest kernel: {e}"));
    GuestImage { kernel: kernel.image, initrd: initramfs.path }
}

/// Boots a guest (TCG) in the lab with `netdev` (QEMU's -netdev value), MAC
/// 52:54:00:12:34:LAST, address 172.16.1.LAST, pinging `targets` (each after it has
/// answered once: the other guest may still be booting), then staying up.
fn boot(lab: &mut Lab, image: &GuestImage, netdev: &str, last: u8, targets: &[&str]) -> Responder {
    let append = format!(
        "console=ttyS0 loglevel=3 edd=off panic=-1 tapbook.mode=keep \
         tapbook.ip=172.16.1.{last} tapbook.ping={} tapbook.wait=60 tapbook.count=3",
        targets.join(",")
    );
    // ANCHOR: qemu
    let device = format!("virtio-net-pci,netdev=n0,mac=52:54:00:12:34:{last:02x},romfile=");
    let args = [
        "-name",
        &format!("guest{last}"),
        "-machine",
        "pc",
        "-accel",
        "tcg",
        "-m",
        "256",
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
        "-serial",
        "stdio",
        "-kernel",
        image.kernel.to_str().unwrap(),
        "-initrd",
        image.initrd.to_str().unwrap(),
        "-append",
        &append,
        "-netdev",
        netdev,
        "-device",
        &device,
    ];
    // ANCHOR_END: qemu
    lab.spawn("qemu-system-x86_64", &args, None)
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
    // QEMU exits when the guest's kernel panics (panic=-1 -no-reboot): stop waiting then.
    let is_done = |text: String| text.lines().any(|l| l.trim().starts_with("[guest] staying up"));
    let done = wait_until(Duration::from_secs(240), || {
        guest.wait_exit(Duration::ZERO).is_some() || is_done(guest.output())
    });
    let done = done && is_done(guest.output());
    assert!(done, "{what} did not finish:\n{}\nprogram:\n{}", guest.output(), program.output());
}

#[test]
fn a_qemu_guest_pings_the_kernel_through_the_relay() {
    require_lab!("a_qemu_guest_pings_the_kernel_through_the_relay", "qemu-system-x86_64");
    let dir = Scratch::new("relay-qemu");
    let image = guest_image();
    let sock = dir.path("guest.sock");
    let mut lab = Lab::new("relay11q");
    let mut relay = start(&mut lab, BIN_11, &["--stream", sock.to_str().unwrap()], &[&sock]);
    let netdev = format!("stream,id=n0,server=off,addr.type=unix,addr.path={}", sock.display());
    let mut guest = boot(&mut lab, &image, &netdev, 3, &["172.16.1.1"]);
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
    let dir = Scratch::new("switch-qemu");
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
    let _peer = Peer::stream(&peer, host(2));
    // ANCHOR: netdevs
    let stream = format!("stream,id=n0,server=off,addr.type=unix,addr.path={}", g3.display());
    let dgram = format!(
        "dgram,id=n0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
        theirs.display(),
        ours.display()
    );
    // ANCHOR_END: netdevs
    let targets = |other: &'static str| ["172.16.1.1", "172.16.1.2", other];
    let mut guest3 = boot(&mut lab, &image, &stream, 3, &targets("172.16.1.4"));
    let mut guest4 = boot(&mut lab, &image, &dgram, 4, &targets("172.16.1.3"));
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

// ---- Recordings for the book ---------------------------------------------------------

/// Drops the blocks of lines about IPv6 frames (the kernel's router solicitations and
/// MLD reports on tap4, which are noise in these chapters).
fn without_ipv6(text: &str) -> String {
    let ipv6 = |b: &String| b.lines().take(2).any(|l| l.trim_start().starts_with("IPv6 "));
    blocks(text).into_iter().filter(|b| !ipv6(b)).collect()
}

/// The output in blocks: each line that is not indented, with the indented lines under
/// it (a frame's block is its summary, "  from PORT: ..." and "  -> ...").
fn blocks(text: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    for line in text.lines() {
        match blocks.last_mut() {
            Some(block) if line.starts_with(' ') => *block += &format!("{line}\n"),
            _ => blocks.push(format!("{line}\n")),
        }
    }
    blocks
}

fn is_frame(block: &str) -> bool {
    block.lines().nth(1).is_some_and(|l| l.starts_with("  from "))
}

/// The guest's console from the line where its eth0 is up (before it: the BIOS, the
/// kernel, and the modules and virtio features that "Meet a real VM" shows), without
/// carriage returns.
fn console(text: &str) -> String {
    let text = text.replace('\r', "");
    text.find("[guest] eth0 is up").map_or(text.clone(), |at| text[at..].to_owned())
}

/// Records the outputs of chapter 11 and 12 into `$TAPBOOK_RECORD_DIR` (the book's
/// `book/src/output`): run as root with
/// `TAPBOOK_RECORD_DIR=$PWD/book/src/output cargo test --test switch record -- --ignored`.
#[test]
#[ignore = "records the book's output; run on purpose with TAPBOOK_RECORD_DIR set"]
fn record_book_output() {
    require_lab!("record_book_output", "qemu-system-x86_64", "strace");
    let out_dir =
        PathBuf::from(std::env::var_os("TAPBOOK_RECORD_DIR").expect("TAPBOOK_RECORD_DIR"));
    let save = |name: &str, text: &str| {
        std::fs::write(out_dir.join(name), text).unwrap_or_else(|e| panic!("{name}: {e}"));
    };
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("running a command");
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    save("11-help.txt", &run(Command::new(BIN_11).arg("--help")));
    save("12-help.txt", &run(Command::new(BIN_12).arg("--help")));
    let version = run(Command::new("qemu-system-x86_64").arg("--version"));
    let netdevs = run(Command::new("qemu-system-x86_64").args(["-netdev", "help"]));
    let netdevs: String = netdevs
        .lines()
        .filter(|l| !l.starts_with("qemu: module"))
        .map(|l| format!("{l}\n"))
        .collect();
    save(
        "11-qemu-netdevs.txt",
        &format!(
            "$ qemu-system-x86_64 --version\n{}$ qemu-system-x86_64 -netdev help\n{netdevs}",
            version.lines().next().map(|l| format!("{l}\n")).unwrap_or_default()
        ),
    );

    let dir = Scratch::at("/tmp/tb-rec");
    let image = guest_image();

    // Chapter 11: one guest on the relay, the relay under strace.
    {
        let sock = dir.path("guest3.sock");
        let trace = dir.path("relay.strace");
        let mut lab = Lab::new("rec11");
        let args = [
            "-o",
            trace.to_str().unwrap(),
            "-e",
            "trace=read,recvfrom,write,writev",
            "-xx",
            "-s",
            "8",
            BIN_11,
            "--stream",
            sock.to_str().unwrap(),
        ];
        let mut relay = start(&mut lab, "strace", &args, &[&sock]);
        let netdev = format!("stream,id=n0,server=off,addr.type=unix,addr.path={}", sock.display());
        let mut guest = boot(&mut lab, &image, &netdev, 3, &["172.16.1.1"]);
        wait_done(&mut guest, "the guest", &relay);
        let (_, out) = relay.stop();
        save("11-relay.txt", &without_ipv6(&out));
        save("11-guest.txt", &console(&guest.output()));
        // The guest's first ARP request: read from the socket with its length, written
        // to the tap without it.
        let strace = std::fs::read_to_string(&trace).expect("the trace");
        let lines: Vec<&str> = strace.lines().collect();
        let at = lines
            .iter()
            .position(|l| {
                l.starts_with("recvfrom(")
                    && l.contains("\\x00\\x00\\x00\\x2a\\xff\\xff\\xff\\xff\"")
            })
            .unwrap_or_else(|| panic!("no ARP request from the guest in:\n{strace}"));
        let write = lines[at..]
            .iter()
            .find(|l| {
                l.starts_with("write(") && l.contains("\\xff\\xff\\xff\\xff\\xff\\xff\\x52\\x54")
            })
            .expect("its write to the tap");
        save("11-strace.txt", &format!("{}\n{}\n", lines[at], write));
    }

    // Chapter 12: two guests, the kernel and a peer on the switch.
    {
        let (g3, peer) = (dir.path("guest3.sock"), dir.path("peer2.sock"));
        let (ours, theirs) = (dir.path("guest4.sock"), dir.path("qemu4.sock"));
        let mut lab = Lab::new("rec12");
        let dgram_spec = format!("{}:{}", ours.display(), theirs.display());
        let args = [
            "--tap",
            "tap4",
            "--stream",
            g3.to_str().unwrap(),
            "--dgram",
            &dgram_spec,
            "--stream",
            peer.to_str().unwrap(),
        ];
        let mut switch = start(&mut lab, BIN_12, &args, &[&g3, &ours, &peer]);
        let _peer = Peer::stream(&peer, host(2));
        let stream = format!("stream,id=n0,server=off,addr.type=unix,addr.path={}", g3.display());
        let dgram = format!(
            "dgram,id=n0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
            theirs.display(),
            ours.display()
        );
        let mut guest3 =
            boot(&mut lab, &image, &stream, 3, &["172.16.1.1", "172.16.1.2", "172.16.1.4"]);
        let mut guest4 =
            boot(&mut lab, &image, &dgram, 4, &["172.16.1.1", "172.16.1.2", "172.16.1.3"]);
        wait_done(&mut guest3, "guest 3", &switch);
        wait_done(&mut guest4, "guest 4", &switch);
        switch.signal(Signal::SIGUSR1);
        wait_until(Duration::from_secs(5), || switch.output().contains("MAC table"));
        let (_, out) = switch.stop();
        let out = without_ipv6(&out);
        save("12-switch.txt", &out);
        // The slices the chapter shows: the start (flooding, then learning), the first
        // frames between the two guests, and the counts and table at exit.
        let blocks = blocks(&out);
        let sixth = blocks.iter().enumerate().filter(|(_, b)| is_frame(b)).nth(5);
        let start = &blocks[..sixth.map_or(blocks.len(), |(at, _)| at + 1)];
        save("12-switch-start.txt", &start.concat());
        let between_guests = |b: &&String| {
            let head = b.lines().next().unwrap_or("");
            is_frame(b) && head.contains("172.16.1.3") && head.contains("172.16.1.4")
        };
        let meet: Vec<&str> =
            blocks.iter().filter(between_guests).take(6).map(String::as_str).collect();
        save("12-switch-guests.txt", &meet.concat());
        let end = out.rfind("\n\n").map_or(0, |at| at + 2);
        save("12-switch-exit.txt", &out[end..]);
        save("12-guest3.txt", &console(&guest3.output()));
        save("12-guest4.txt", &console(&guest4.output()));
    }
}
