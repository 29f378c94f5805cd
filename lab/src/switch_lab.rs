//! Chapters 11 and 12's lab: `11_qemu_relay` and `12_learning_switch` in a lab namespace,
//! with the kernel on tap4 and, on the QEMU side, a peer of our own that speaks QEMU's
//! stream and dgram framing (written here from QEMU's description, not with the
//! library's `qemu_stream`) and answers ARP and ping with `tapbook::respond`, or real
//! QEMU guests (TCG) booted on `-netdev stream` and `-netdev dgram`.
//!
//! tests/switch.rs drives it end to end; [`record`] makes the chapters' recordings
//! (`cargo lab record switch`, one entry of [`crate::record::RECORDINGS`]).
//!
//! The guests boot the kernel and initramfs of `cargo lab vm` ([`crate::vm`], cached in
//! `$TAPBOOK_CACHE`, else `~/.cache/tapbook`), whose `/init` is `scripts/vm/init.sh`;
//! their address and what to ping come from the kernel's command line.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::Signal;
use tapbook::respond::{Host, Idents, Services, Timestamp, respond};
use tapbook::show::Summary;
use tapbook::wire::MacAddr;

use crate::vm::TempDir;
use crate::{Lab, Responder, is_root, unique_name, wait_until};

type Result<T> = std::result::Result<T, String>;

/// The station 172.16.1.LAST, MAC 02:00:00:00:00:LAST.
pub fn host(last: u8) -> Host {
    Host {
        ip: Ipv4Addr::new(172, 16, 1, last),
        ip6: format!("fd00:172:16:1::{last}").parse().expect("fd00:172:16:1::N is an address"),
        mac: MacAddr([0x02, 0, 0, 0, 0, last]),
    }
}

/// A station on a QEMU socket: answers ARP and ping as its `Host`, and keeps a summary
/// of every frame it received.
pub struct Peer {
    seen: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
    /// A stream peer's socket, to hang up with.
    sock: Option<UnixStream>,
}

impl Peer {
    /// The summaries of the frames received so far.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Hangs up, as a QEMU that exits does.
    pub fn hang_up(&self) {
        if let Some(sock) = &self.sock {
            let _ = sock.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Connects to `path` as QEMU's `-netdev stream,server=off` does, and from then on
    /// reads a 4-byte big-endian length and that many bytes, and answers likewise.
    pub fn stream(path: &Path, host: Host) -> Result<Peer> {
        if !wait_until(Duration::from_secs(10), || path.exists()) {
            return Err(format!("no socket at {} within 10 s", path.display()));
        }
        let mut sock = UnixStream::connect(path)
            .map_err(|e| format!("connecting to {} like QEMU: {e}", path.display()))?;
        let ours = sock.try_clone().map_err(|e| format!("a second handle on the socket: {e}"))?;
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
                if let Ok(mut log) = log.lock() {
                    log.push(Summary(&frame).to_string());
                }
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
        Ok(Peer { seen, thread: Some(thread), sock: Some(ours) })
    }

    /// Binds `ours` and exchanges one datagram per frame with `theirs`, as QEMU's
    /// `-netdev dgram` does.
    pub fn dgram(ours: &Path, theirs: &Path, host: Host) -> Result<Peer> {
        let sock = UnixDatagram::bind(ours)
            .map_err(|e| format!("binding the peer's socket {}: {e}", ours.display()))?;
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| format!("setting a timeout: {e}"))?;
        let theirs = theirs.to_owned();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let thread = std::thread::spawn(move || {
            let mut idents = Idents::new(7);
            let (mut frame, mut reply) = (vec![0u8; 70_000], vec![0u8; 2048]);
            while let Ok(len) = sock.recv(&mut frame) {
                let frame = &frame[..len];
                if let Ok(mut log) = log.lock() {
                    log.push(Summary(frame).to_string());
                }
                let now = Timestamp::now();
                if let Ok(answer) =
                    respond(&host, Services::IPV4, &mut idents, now, frame, &mut reply)
                {
                    let _ = sock.send_to(&reply[..answer.len()], &theirs);
                }
            }
        });
        Ok(Peer { seen, thread: Some(thread), sock: None })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // A stream peer ends when the program closes its socket; a dgram peer after its
        // timeout. Not waiting for the latter keeps a failing test quick.
        drop(self.thread.take());
    }
}

/// Starts a relay or switch in the lab (as the lab's root) and waits until it holds
/// tap4 and has made its sockets.
pub fn start(lab: &mut Lab, bin: &str, args: &[&str], sockets: &[&Path]) -> Result<Responder> {
    let mut program = lab.spawn(bin, args, None);
    lab.wait_attached(&mut program)?;
    if !wait_until(Duration::from_secs(10), || sockets.iter().all(|s| s.exists())) {
        return Err(format!("no sockets {sockets:?}:\n{}", program.output()));
    }
    Ok(program)
}

/// QEMU's `-netdev` for a guest that connects to the stream socket `path`.
// ANCHOR: netdevs
pub fn stream_netdev(path: &Path) -> String {
    format!("stream,id=n0,server=off,addr.type=unix,addr.path={}", path.display())
}

/// QEMU's `-netdev` for a guest bound to `local` that sends its frames to `remote`.
pub fn dgram_netdev(local: &Path, remote: &Path) -> String {
    format!(
        "dgram,id=n0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
        local.display(),
        remote.display()
    )
}
// ANCHOR_END: netdevs

/// The guest's kernel and `cargo lab vm`'s initramfs.
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// The kernel and initramfs `cargo lab vm` uses (this machine's kernel if it will do,
/// else Debian's cloud kernel, downloaded once into the cache).
pub fn guest_image() -> Result<GuestImage> {
    use crate::vm;
    let cache = vm::default_cache();
    let mut order = vm::kernel_order(vm::KernelChoice::Auto);
    let (kernel, initramfs) =
        vm::pick_kernel(&mut order, &cache).map_err(|e| format!("no guest kernel: {e}"))?;
    Ok(GuestImage { kernel: kernel.image, initrd: initramfs.path })
}

/// Boots a guest (TCG) in the lab with `netdev` (QEMU's -netdev value), MAC
/// 52:54:00:12:34:LAST, address 172.16.1.LAST, pinging `targets` (each after it has
/// answered once: the other guest may still be booting), then staying up.
pub fn boot(
    lab: &mut Lab,
    image: &GuestImage,
    netdev: &str,
    last: u8,
    targets: &[&str],
) -> Responder {
    let append = format!(
        "console=ttyS0 loglevel=3 edd=off panic=-1 tapbook.mode=keep \
         tapbook.ip=172.16.1.{last} tapbook.ping={} tapbook.wait=60 tapbook.count=3",
        targets.join(",")
    );
    let (kernel, initrd) = (image.kernel.to_string_lossy(), image.initrd.to_string_lossy());
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
        &kernel,
        "-initrd",
        &initrd,
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

/// Waits (up to 240 s) until the guest has said "[guest] staying up"; an error with its
/// console and `program`'s output if it did not, or QEMU exited first (the guest's
/// kernel panicked: panic=-1 -no-reboot).
pub fn wait_done(guest: &mut Responder, what: &str, program: &Responder) -> Result<()> {
    let said_done = |g: &Responder| {
        g.output().lines().any(|line| line.trim().starts_with("[guest] staying up"))
    };
    wait_until(Duration::from_secs(240), || {
        guest.wait_exit(Duration::ZERO).is_some() || said_done(guest) || crate::stopped()
    });
    if said_done(guest) {
        return Ok(());
    }
    if crate::stopped() {
        return Err("stopped (signal); the lab is removed".into());
    }
    Err(format!("{what} did not finish:\n{}\nprogram:\n{}", guest.output(), program.output()))
}

// ---- the recordings of chapters 11 and 12 ----------------------------------------------

/// The files [`record`] writes.
pub const RECORDED: &[&str] = &[
    "11-relay.txt",
    "11-guest.txt",
    "11-strace.txt",
    "12-switch.txt",
    "12-switch-start.txt",
    "12-switch-guests.txt",
    "12-switch-exit.txt",
    "12-guest3.txt",
    "12-guest4.txt",
];

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

/// The guest's console from its first "[guest]" line (before it: the BIOS's and the
/// kernel's escape sequences), without carriage returns.
fn console(text: &str) -> String {
    let text = text.replace('\r', "");
    text.find("[guest] eth0 is up").map_or(text.clone(), |at| text[at..].to_owned())
}

/// A lab of its own for one part of the recording, tap4 the lab root's.
fn lab(tag: &str) -> Result<Lab> {
    Lab::create(is_root().then(|| unique_name(tag)), "root")
}

/// Chapter 11 (one guest on the relay, the relay under strace) and chapter 12 (two
/// guests, the kernel and a [`Peer`] on the switch): [`RECORDED`], written into
/// `dirs.out`. The sockets are in /tmp/tb-rec, a short path, since the programs' lines
/// show it.
pub fn record(dirs: &crate::record::Dirs) -> Result<()> {
    let save = |name: &str, text: &str| {
        let path = dirs.out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    let (relay_bin, switch_bin) =
        (dirs.bin.join("11_qemu_relay"), dirs.bin.join("12_learning_switch"));
    let (relay_bin, switch_bin) = (relay_bin.to_string_lossy(), switch_bin.to_string_lossy());
    let dir = Path::new("/tmp/tb-rec");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let dir = TempDir(dir.to_owned());
    let image = guest_image()?;
    let path = |name: &str| dir.0.join(name);
    let text = |p: &Path| p.to_string_lossy().into_owned();

    // Chapter 11: one guest on the relay, the relay under strace.
    {
        let (sock, trace) = (path("guest3.sock"), path("relay.strace"));
        let mut lab = lab("rec11")?;
        let (sock_s, trace_s) = (text(&sock), text(&trace));
        let args = [
            "-o",
            &trace_s,
            "-e",
            "trace=read,recvfrom,write,writev",
            "-xx",
            "-s",
            "8",
            &relay_bin,
            "--stream",
            &sock_s,
        ];
        let mut relay = start(&mut lab, "strace", &args, &[&sock])?;
        let mut guest = boot(&mut lab, &image, &stream_netdev(&sock), 3, &["172.16.1.1"]);
        wait_done(&mut guest, "the guest", &relay)?;
        let (_, out) = relay.stop();
        save("11-relay.txt", &without_ipv6(&out))?;
        save("11-guest.txt", &console(&guest.output()))?;
        // The guest's first ARP request: read from the socket with its length, written
        // to the tap without it.
        let strace = std::fs::read_to_string(&trace).map_err(|e| format!("the trace: {e}"))?;
        let lines: Vec<&str> = strace.lines().collect();
        let at = lines
            .iter()
            .position(|l| {
                l.starts_with("recvfrom(")
                    && l.contains("\\x00\\x00\\x00\\x2a\\xff\\xff\\xff\\xff\"")
            })
            .ok_or_else(|| format!("no ARP request from the guest in:\n{strace}"))?;
        let write = lines[at..]
            .iter()
            .find(|l| {
                l.starts_with("write(") && l.contains("\\xff\\xff\\xff\\xff\\xff\\xff\\x52\\x54")
            })
            .ok_or("no write of the guest's ARP request to the tap")?;
        save("11-strace.txt", &format!("{}\n{}\n", lines[at], write))?;
    }

    // Chapter 12: two guests, the kernel and a peer on the switch.
    let (g3, peer) = (path("guest3.sock"), path("peer2.sock"));
    let (ours, theirs) = (path("guest4.sock"), path("qemu4.sock"));
    let _ = std::fs::remove_file(&g3);
    let mut lab = lab("rec12")?;
    let dgram_spec = format!("{}:{}", ours.display(), theirs.display());
    let (g3_s, peer_s) = (text(&g3), text(&peer));
    let args = ["--tap", "tap4", "--stream", &g3_s, "--dgram", &dgram_spec, "--stream", &peer_s];
    let mut switch = start(&mut lab, &switch_bin, &args, &[&g3, &ours, &peer])?;
    let _peer = Peer::stream(&peer, host(2))?;
    let targets = |other: &'static str| ["172.16.1.1", "172.16.1.2", other];
    let mut guest3 = boot(&mut lab, &image, &stream_netdev(&g3), 3, &targets("172.16.1.4"));
    let mut guest4 =
        boot(&mut lab, &image, &dgram_netdev(&theirs, &ours), 4, &targets("172.16.1.3"));
    wait_done(&mut guest3, "guest 3", &switch)?;
    wait_done(&mut guest4, "guest 4", &switch)?;
    switch.signal(Signal::SIGUSR1);
    wait_until(Duration::from_secs(5), || switch.output().contains("MAC table"));
    let (_, out) = switch.stop();
    let out = without_ipv6(&out);
    save("12-switch.txt", &out)?;
    // The slices the chapter shows: the start (flooding, then learning), the first
    // frames between the two guests, and the counts and table at exit.
    let blocks = blocks(&out);
    let sixth = blocks.iter().enumerate().filter(|(_, b)| is_frame(b)).nth(5);
    let start = &blocks[..sixth.map_or(blocks.len(), |(at, _)| at + 1)];
    save("12-switch-start.txt", &start.concat())?;
    let between_guests = |b: &&String| {
        let head = b.lines().next().unwrap_or("");
        is_frame(b) && head.contains("172.16.1.3") && head.contains("172.16.1.4")
    };
    let meet: Vec<&str> =
        blocks.iter().filter(between_guests).take(6).map(String::as_str).collect();
    save("12-switch-guests.txt", &meet.concat())?;
    let end = out.rfind("\n\n").map_or(0, |at| at + 2);
    save("12-switch-exit.txt", &out[end..])?;
    save("12-guest3.txt", &console(&guest3.output()))?;
    save("12-guest4.txt", &console(&guest4.output()))?;
    Ok(())
}
