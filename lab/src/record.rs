//! `cargo lab record`: every program output the book shows, re-recorded from one list.
//!
//! [`RECORDINGS`] is that list. A [`Recording`] is one session in a lab of its own (or on
//! the host): its [`Step`]s run commands and write what they print into files of
//! book/src/output/, which the chapters include. The command a step shows (`$ ...`) *is*
//! the command that runs: the string goes to `sh -c` inside the lab, in a working
//! directory laid out like the repository (`target/release/` holds the programs just
//! built, `scripts/` the scripts), as the student would type it:
//!
//! - a command that starts with `sudo ` runs as the lab's root (`sudo` there sets
//!   `SUDO_USER` to the student, as sudo does, and execs the rest); any other runs as the
//!   student, an unprivileged user (`$SUDO_USER`, else `nobody`);
//! - `cargo` is the lab's, in the student's `~/.cargo/bin` (the home is the working
//!   directory): `cargo run [-q] --bin NAME [-- ARGS]` runs `target/release/NAME ARGS`,
//!   `--example NAME` `target/release/examples/NAME` (cargo itself would build again,
//!   as another user);
//! - `pgrep` and `pkill` look only at the lab's own network namespace (`--ns`), so that
//!   a recording never signals a process someone else runs as the same user;
//! - `$?` is the status of the file's previous command, as in a terminal.
//!
//! A background program ([`Step::Start`]) writes into its file as it runs, and commands
//! of other steps into the same file land after what it printed so far: the file reads
//! like the terminal it stands for. Each recording checks that the run went as the book
//! says ([`Step::Expect`]) before any file of book/src/output/ is replaced; a file is
//! written only by the recording that makes it.
//!
//! To add a recording: write one more `Recording { name, about, setup, steps }` into
//! [`RECORDINGS`], with the commands as the book shows them. Nothing else needs to know:
//! `cargo lab record NAME` runs it, `cargo lab record` runs them all, `--list` names it,
//! and the tests below check that each file it writes is written by it alone and read
//! only after it is written.
//!
//! Some recordings are Rust functions ([`Step::Call`]): the VM chapters' (lab/src/vm.rs,
//! vmm.rs) and chapters 11 and 12's (lab/src/switch_lab.rs), which boot guests and cut
//! their consoles and traces into pieces. They are in this list all the same, with the
//! files they write; where such a file shows a command, the function runs that string.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::{Lab, Responder, say, wait_until};

/// Where a recording runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// On the host, as the user running `cargo lab record` (for commands that make their
    /// own lab, such as `cargo lab demo`).
    Host,
    /// A fresh network namespace with `lo` up and nothing else.
    Bare,
    /// A fresh namespace with tap4 made by `scripts/setup.sh` for the student, the
    /// kernel's side with the fixed MAC [`KERNEL_MAC`].
    Tap4,
}

/// The recordings give the kernel's side of tap4 a fixed MAC address, so that the frames
/// (and the IPv6 link-local address derived from it) are the same from one recording to
/// the next. A student's tap4 has a random one.
pub const KERNEL_MAC: &str = "02:00:00:00:00:01";

/// One thing a recording does. FILE is a name in book/src/output/ (or, not ending in
/// `.txt`, a log that is not published); COMMAND is a shell line, run as described in
/// the module's documentation.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// `$ COMMAND` and what it prints into FILE, after a blank line if FILE has text.
    Run(&'static str, &'static str),
    /// The same, right below what FILE holds (one terminal session, no blank line).
    Then(&'static str, &'static str),
    /// COMMAND as the lab's root, not recorded (preparing the lab); it must succeed.
    Do(&'static str),
    /// COMMAND started in the background (a trailing ` &` is shown, not run): `$ COMMAND`
    /// and the NOTE lines (if any) go into FILE, then what the program prints as it runs.
    Start(&'static str, &'static str, &'static str),
    /// Wait until the program started last holds tap4 (its carrier is on).
    Attached,
    /// Wait until a packet socket is open in the lab (tshark has started capturing).
    Capturing,
    /// Wait until FILE holds TEXT (up to 15 s).
    Printed(&'static str, &'static str),
    /// Wait this many milliseconds (what the kernel sends by itself, for instance).
    Sleep(u64),
    /// The lines of TEXT into FILE, as they are (commentary: `# ...`).
    Note(&'static str, &'static str),
    /// Send SIGNAL to the program started into FILE (`kill -SIGNAL PID`).
    Signal(&'static str, Signal),
    /// Send SIGNAL to the program's process group, as a terminal's Ctrl-C does (a pipeline
    /// stops whole), and wait for it to exit; its status becomes FILE's `$?`.
    Stop(&'static str, Signal),
    /// Wait for the program started into FILE to exit by itself (up to 15 s).
    Exit(&'static str),
    /// Type TEXT into the program started into FILE (its standard input).
    Type(&'static str, &'static str),
    /// FILE must hold TEXT, or the run did not go as the book says.
    Expect(&'static str, &'static str),
    /// FILE must hold exactly N lines that contain TEXT.
    ExpectCount(&'static str, &'static str, usize),
    /// Append to FILE what COMMAND prints, run in the directory of the new recordings (a
    /// file cut out of others; no `$` line).
    Derive(&'static str, &'static str),
    /// COMMAND, as root in the directory of the new recordings, must succeed (a check
    /// that [`Step::Expect`] cannot say).
    Check(&'static str),
    /// Every line of the program's FILE2 that starts with PREFIX (after blanks), run as
    /// printed, into FILE as [`Step::Run`] does: `RunPrinted(FILE, FILE2, PREFIX)`.
    RunPrinted(&'static str, &'static str, &'static str),
    /// A recording written in Rust, run as root on the host (it makes its own labs): it
    /// must write each of FILES into [`Dirs::out`], and fail rather than write a run
    /// that did not go as the book says.
    Call(&'static [&'static str], fn(&Dirs) -> Result<()>),
}

/// What a [`Step::Call`] is given.
pub struct Dirs {
    /// Where it writes its files (they reach book/src/output/ when the recording passes).
    pub out: PathBuf,
    /// The programs built for the recording (`PROGRAMS`; `examples/` below it).
    pub bin: PathBuf,
}

impl Step {
    /// The files the step writes into.
    pub fn files(&self) -> &[&'static str] {
        match self {
            Run(f, _) | Then(f, _) | Start(f, _, _) | Note(f, _) | Derive(f, _) => {
                std::slice::from_ref(f)
            }
            RunPrinted(f, _, _) => std::slice::from_ref(f),
            Call(files, _) => files,
            _ => &[],
        }
    }
}

/// One recording: a session in a lab of its own.
#[derive(Debug)]
pub struct Recording {
    /// What `cargo lab record NAME` calls it.
    pub name: &'static str,
    /// What it records, for `--list` and the progress lines.
    pub about: &'static str,
    pub setup: Setup,
    pub steps: &'static [Step],
}

use Signal::{SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use Step::*;

/// The programs `cargo lab record` builds (release) and puts into the lab's
/// `target/release/`.
pub const PROGRAMS: &[&str] = &[
    "01_open_clone",
    "02_hexdump",
    "03_arp_reply",
    "04_icmp_reply",
    "05_full_responder",
    "08_ipv6_responder",
    "09_offloads",
    "10_dhcp_server",
    "11_qemu_relay",
    "12_learning_switch",
];
/// The examples it builds too (into `target/release/examples/`).
pub const EXAMPLES: &[&str] = &["offload_bench", "read_one_frame"];

/// Every recording the book shows, in the order `cargo lab record` makes them.
pub static RECORDINGS: &[Recording] = &[
    Recording {
        name: "demo",
        about: "cargo lab demo, the README's first command (it makes its own lab)",
        setup: Setup::Host,
        steps: &[Run("demo.txt", "cargo lab demo"), Expect("demo.txt", "ICMP echo replies sent")],
    },
    Recording {
        name: "chapters",
        about: "the lab, and chapters 1 to 5: 01_open_clone ... 05_full_responder",
        setup: Setup::Bare,
        steps: CHAPTERS,
    },
    Recording {
        name: "responder",
        about: "the bytes of real pings (chapter 5) and every fault of the troubleshooting \
                appendix",
        setup: Setup::Tap4,
        steps: RESPONDER,
    },
    Recording {
        name: "ipv6",
        about: "chapter 8: 08_ipv6_responder and 05_full_responder with the kernel's IPv6",
        setup: Setup::Tap4,
        steps: IPV6,
    },
    Recording {
        name: "dhcp",
        about: "chapter 10: busybox udhcpc's lease from 10_dhcp_server, UDP echo, tshark",
        setup: Setup::Tap4,
        steps: DHCP,
    },
    Recording {
        name: "offloads",
        about: "chapter 9 and the Performance appendix: 09_offloads, tshark, offload_bench",
        setup: Setup::Bare,
        steps: OFFLOADS,
    },
    Recording {
        name: "switch",
        about: "chapters 11 and 12: 11_qemu_relay and 12_learning_switch with QEMU guests",
        setup: Setup::Bare,
        steps: SWITCH,
    },
    Recording {
        name: "vm-lab",
        about: "Meet a real VM: cargo lab vm, whole, in parts, and with --strace",
        setup: Setup::Host,
        steps: &[Call(crate::vm::VM_LAB_FILES, crate::vm::record_vm_lab)],
    },
    Recording {
        name: "vm-ours",
        about: "A learning switch: cargo lab vm --network ours --guests 2, its result",
        setup: Setup::Host,
        steps: &[Call(crate::vm::VM_OURS_FILES, crate::vm::record_vm_ours)],
    },
    Recording {
        name: "vmm",
        about: "How real VMMs use TAP: QEMU's and 01_open_clone's system calls on a tap",
        setup: Setup::Host,
        steps: &[Call(crate::vmm::RECORDED, crate::vmm::record)],
    },
];

/// Chapters 11 and 12: the tools as the chapters show them, then the guests
/// ([`crate::switch_lab::record`]).
const SWITCH: &[Step] = &[
    Run("11-qemu-netdevs.txt", "qemu-system-x86_64 --version | head -n 1"),
    Then("11-qemu-netdevs.txt", "qemu-system-x86_64 -netdev help 2>/dev/null"),
    Expect("11-qemu-netdevs.txt", "\nstream\ndgram\n"),
    Run("11-help.txt", "cargo run -q --bin 11_qemu_relay -- --help"),
    Expect("11-help.txt", "--stream PATH"),
    Run("12-help.txt", "cargo run -q --bin 12_learning_switch -- --help"),
    Expect("12-help.txt", "--stream PATH"),
    Call(crate::switch_lab::RECORDED, crate::switch_lab::record),
    Expect("11-guest.txt", "3 packets transmitted, 3 packets received"),
    Expect("11-relay.txt", "guest3 -> tap4:\n  ARP who-has 172.16.1.1 tell 172.16.1.3"),
    Expect("12-switch-exit.txt", "MAC table"),
];

/// Chapters 1 to 5, in one lab, in the order the book tells them.
const CHAPTERS: &[Step] = &[
    // Inside the namespace, setup.sh prints exactly what 'sudo scripts/setup.sh' prints
    // to a student.
    Run("lab-setup.txt", "sudo scripts/setup.sh"),
    Expect("lab-setup.txt", "created persistent TAP tap4"),
    Run("lab-doctor.txt", "scripts/doctor.sh"),
    Expect("lab-doctor.txt", "All checks passed"),
    Do("ip link set dev tap4 address 02:00:00:00:00:01"),
    Run("tun-device.txt", "stat -c '%n: %F %Hr:%Lr, mode %A' /dev/net/tun"),
    Run("tun-device.txt", "grep -w tun /proc/misc"),
    Run("tun-device.txt", "cat /sys/class/misc/tun/dev"),
    Expect("tun-device.txt", "10:200"),
    // ---- chapter 1: 01_open_clone waits for Enter, holding tap4.
    Start("01-persistent.txt", "cargo run -q --bin 01_open_clone", ""),
    Attached,
    Printed("01-persistent.txt", "Press Enter"),
    Run("01-while-open.txt", "ip -d link show tap4"),
    Run("01-while-open.txt", "cat /proc/$(pgrep -u \"$USER\" -x 01_open_clone)/fdinfo/3"),
    Run("01-ebusy.txt", "cargo run -q --bin 01_open_clone"),
    Expect("01-ebusy.txt", "EBUSY"),
    Type("01-persistent.txt", "\n"),
    Exit("01-persistent.txt"),
    Expect("01-persistent.txt", "still exists: it is persistent"),
    Expect("01-while-open.txt", "LOWER_UP"),
    Run("01-after-close.txt", "ip link show tap4"),
    Expect("01-after-close.txt", "NO-CARRIER"),
    // The system calls behind it: only those on the clone device (-P), the program's own
    // output thrown away so that strace's (on stderr) remains.
    Run(
        "01-strace.txt",
        "strace -P /dev/net/tun -e trace=openat,ioctl,fcntl,close target/release/01_open_clone \
         >/dev/null",
    ),
    Expect("01-strace.txt", "TUNSETIFF"),
    Run("01-eperm.txt", "cargo run -q --bin 01_open_clone -- --iface tap9"),
    Expect("01-eperm.txt", "EPERM"),
    // As root, with CAP_NET_ADMIN: a transient interface that lives as long as the fd.
    Run("01-transient.txt", "sudo target/release/01_open_clone --iface tap9"),
    Expect("01-transient.txt", "vanished with its last descriptor"),
    // For the exercises: a name pattern the kernel completes, and a multi-queue interface
    // that a single-queue request may not attach to.
    Run("01-pattern.txt", "sudo target/release/01_open_clone --iface 'tap%d'"),
    Expect("01-pattern.txt", "attached it to tap0"),
    Do("ip tuntap add dev tap6 mode tap multi_queue user \"$SUDO_USER\""),
    Run("01-einval.txt", "cargo run -q --bin 01_open_clone -- --iface tap6"),
    Expect("01-einval.txt", "EINVAL"),
    Do("ip link del dev tap6"),
    // ---- chapter 2: IPv6 configures tap4 once, at its first carrier after 'ip link set
    // up': the runs above used that up. Down and up again, as chapter 2 tells the student,
    // so that 02_hexdump sees the whole start (MLD, DAD, RS).
    Do("ip link set dev tap4 down && ip link set dev tap4 up"),
    Start("02-capture.txt", "sudo scripts/capture.sh --duration 12", ""),
    Capturing,
    Start("02-hexdump.txt", "cargo run -q --bin 02_hexdump", ""),
    Attached,
    Sleep(6000), // IPv6: MLD reports, DAD, two router solicitations
    Run("02-ping.txt", "ping -c 1 -W 2 172.16.1.2"),
    Run("02-neigh.txt", "ip neigh show dev tap4"),
    Stop("02-hexdump.txt", SIGINT),
    Exit("02-capture.txt"), // it stops by itself after --duration
    Expect("02-hexdump.txt", "router solicitation"),
    Expect("02-hexdump.txt", "ARP who-has 172.16.1.2 tell 172.16.1.1"),
    Expect("02-hexdump.txt", "frames read."),
    Expect("02-capture.txt", "Who has 172.16.1.2? Tell 172.16.1.1"),
    // Single frames out of that run, for the chapters that read them byte by byte.
    Derive("02-frame-rs.txt", FRAME_RS),
    Expect("02-frame-rs.txt", "router solicitation"),
    Derive("02-frame-arp.txt", FRAME_ARP),
    Expect("02-frame-arp.txt", "ARP who-has"),
    // ---- chapter 3. Chapters 3 to 5 start each responder, let the burst of IPv6 frames
    // a freshly attached interface sends go by (ignored or dropped), then drive it.
    Start("03-arp-reply.txt", "cargo run -q --bin 03_arp_reply", ""),
    Attached,
    Sleep(6000),
    Run("03-arping.txt", "sudo arping -c 3 -I tap4 172.16.1.2"),
    Run("03-arping-other.txt", "sudo arping -c 2 -I tap4 172.16.1.3"),
    Run("03-ping.txt", "ping -c 2 -W 1 172.16.1.2"),
    Run("03-neigh.txt", "ip neigh show dev tap4"),
    Run("03-route.txt", "ip route show dev tap4"),
    Stop("03-arp-reply.txt", SIGINT),
    Expect("03-arping.txt", "3 packets received"),
    Expect("03-arping-other.txt", "0 packets received"),
    Expect("03-neigh.txt", "172.16.1.2 lladdr 02:00:00:00:00:02"),
    Expect("03-arp-reply.txt", "-> ARP reply 172.16.1.2 is-at 02:00:00:00:00:02"),
    // For the exercises, in a second run: an address probe (RFC 5227, sender 0.0.0.0), a
    // unicast request (as the kernel sends to re-check a neighbour), and a sender that
    // claims our own address.
    Start("03-arp-reply-variants.txt", "cargo run -q --bin 03_arp_reply", ""),
    Attached,
    Sleep(6000),
    Run("03-arping-variants.txt", "sudo arping -c 1 -I tap4 -S 0.0.0.0 172.16.1.2"),
    Run("03-arping-variants.txt", "sudo arping -c 1 -I tap4 -t 02:00:00:00:00:02 172.16.1.2"),
    Run("03-arping-variants.txt", "sudo arping -c 1 -I tap4 -S 172.16.1.2 172.16.1.2"),
    Stop("03-arp-reply-variants.txt", SIGINT),
    Expect("03-arp-reply-variants.txt", "who-has 172.16.1.2 tell 0.0.0.0"),
    Expect("03-arp-reply-variants.txt", "(ignored: ARP bad sender)"),
    // ---- chapter 4
    Do("ip neigh flush dev tap4"), // so that the kernel asks for our MAC again
    Start("04-icmp-reply.txt", "cargo run -q --bin 04_icmp_reply", ""),
    Attached,
    Sleep(6000),
    Run("04-ping-56.txt", "ping -c 2 172.16.1.2"),
    Run("04-ping-1472.txt", "ping -c 2 -s 1472 -M do 172.16.1.2"),
    Stop("04-icmp-reply.txt", SIGINT),
    Expect("04-ping-56.txt", "2 received"),
    Expect("04-ping-1472.txt", "2 received"),
    Expect("04-icmp-reply.txt", "computed: IPv4 header checksum"),
    // ---- chapter 5
    Do("ip neigh flush dev tap4"),
    Start(
        "05-full-responder.txt",
        "cargo run -q --bin 05_full_responder -- --pcap tapbook.pcap",
        "",
    ),
    Attached,
    Sleep(6000),
    Start("05-capture.txt", "sudo scripts/capture.sh --filter 'arp or icmp' --duration 10", ""),
    Capturing,
    Run("05-ping.txt", "ping -c 3 172.16.1.2"),
    Run("05-arping.txt", "sudo arping -c 2 -I tap4 172.16.1.2"),
    Run("05-arping-other.txt", "sudo arping -c 1 -I tap4 172.16.1.3"),
    Run("05-ping-broadcast.txt", "ping -b -c 1 -W 1 172.16.1.255"),
    Run("05-stop.txt", "pkill -TERM -u \"$USER\" -f 'target/.*/05_full_responder'"),
    Exit("05-full-responder.txt"),
    Exit("05-capture.txt"),
    Run("05-tshark-r.txt", "tshark -r tapbook.pcap"),
    Run(
        "05-tshark-r.txt",
        "tshark -r tapbook.pcap -Y icmp -T fields -e frame.len -e ip.checksum -e icmp.checksum \
         -e icmp.checksum.status",
    ),
    Run("05-arp-reply-hex.txt", "tshark -r tapbook.pcap -x -Y 'arp.opcode == 2' | head -n 4"),
    Expect("05-ping.txt", "3 received"),
    Expect("05-arping.txt", "2 packets received"),
    Expect("05-full-responder.txt", "frames dropped"),
    Expect("05-tshark-r.txt", "Echo (ping) reply"),
];

/// 02_hexdump's first router solicitation, from its first line to the blank line after.
const FRAME_RS: &str = "awk '!on && /^#[0-9]+: / && /router solicitation/ { on = 1 } \
                        on && /^$/ { exit } on' 02-hexdump.txt";
const FRAME_ARP: &str = "awk '!on && /^#[0-9]+: / && /ARP who-has/ { on = 1 } \
                         on && /^$/ { exit } on' 02-hexdump.txt";

/// Chapter 5's bytes and the troubleshooting appendix: each fault as a student sees it.
const RESPONDER: &[Step] = &[
    // ---- the bytes of a ping, from 05's --pcap file.
    Start("echo.log", "cargo run -q --bin 05_full_responder -- --quiet --pcap tapbook.pcap", ""),
    Attached,
    Sleep(1000),
    Do("ping -c 1 -W 2 -s 56 172.16.1.2 && ping -c 1 -W 2 -s 1 172.16.1.2 \
        && ping -c 1 -W 2 -s 1472 172.16.1.2"),
    Run("echo-options.txt", "ping -R -c 1 172.16.1.2"),
    Expect("echo-options.txt", "1 received"),
    // The route both ways, our address twice (arrival and departure), as in Linux's reply.
    Expect("echo-options.txt", "RR: \t172.16.1.1"),
    ExpectCount("echo-options.txt", "\t172.16.1.2", 2),
    Stop("echo.log", SIGTERM),
    Run("echo-bytes.txt", "tshark -r tapbook.pcap -x -Y 'icmp && frame.len == 98'"),
    Expect("echo-bytes.txt", "08 00 45 00"),
    Run(
        "echo-fields.txt",
        "tshark -r tapbook.pcap -o ip.check_checksum:TRUE -Y icmp -T fields -E header=y \
         -e frame.len -e ip.hdr_len -e ip.len -e ip.checksum.status -e icmp.type \
         -e icmp.checksum.status",
    ),
    Expect("echo-fields.txt", "138\t60\t124\t1\t8\t1"),
    Expect("echo-fields.txt", "138\t60\t124\t1\t0\t1"),
    // ---- nothing attached
    Run("faults-no-carrier.txt", "ip link show tap4"),
    Run("faults-no-carrier.txt", "ip route show dev tap4"),
    Run("faults-no-carrier.txt", "ping -c 2 -W 1 172.16.1.2"),
    Run("faults-no-carrier.txt", "ping -c 1 -W 1 172.16.1.1"),
    Expect("faults-no-carrier.txt", "NO-CARRIER"),
    Expect("faults-no-carrier.txt", "linkdown"),
    Expect("faults-no-carrier.txt", "1 received"),
    // ---- down and up, under a running 05 (whose output becomes faults-deleted.txt)
    Start("faults-deleted.txt", "cargo run -q --bin 05_full_responder", ""),
    Attached,
    Sleep(1000),
    Run("faults-down-up.txt", "ping -c 1 -W 1 172.16.1.2"),
    Run("faults-down-up.txt", "sudo ip link set tap4 down"),
    Run("faults-down-up.txt", "ping -c 1 -W 1 172.16.1.2"),
    Run("faults-down-up.txt", "sudo ip link set tap4 up"),
    Attached,
    Sleep(1000),
    Run("faults-down-up.txt", "ping -c 1 -W 2 172.16.1.2"),
    Expect("faults-down-up.txt", "Network is unreachable"),
    ExpectCount("faults-down-up.txt", " 1 received", 2),
    // ---- a second instance
    Run(
        "faults-busy.txt",
        "cargo run -q --bin 05_full_responder     # a second one, while the first runs",
    ),
    Then("faults-busy.txt", "echo $?"),
    Expect("faults-busy.txt", "EBUSY"),
    // ---- the interface is deleted under the first
    Note("faults-deleted.txt", "# ... meanwhile, in another terminal:  sudo ip link del tap4"),
    Do("ip link del dev tap4"),
    Exit("faults-deleted.txt"),
    Then("faults-deleted.txt", "echo $?"),
    Expect("faults-deleted.txt", "has been deleted"),
    Expect("faults-deleted.txt", "$ echo $?\n1\n"),
    // ---- no tap prepared
    Run("faults-no-tap.txt", "cargo run -q --bin 05_full_responder"),
    Expect("faults-no-tap.txt", "EPERM"),
    // ---- a TUN where a TAP should be
    Run("faults-wrong-kind.txt", "sudo ip tuntap add dev tun5 mode tun user \"$USER\""),
    Run("faults-wrong-kind.txt", "cargo run -q --bin 01_open_clone -- --iface tun5"),
    Expect("faults-wrong-kind.txt", "EINVAL"),
    Do("ip link del dev tun5"),
    // ---- /dev/net/tun itself, covered in the lab's own mount namespace: the real
    // device node is never touched.
    Do(SETUP_AGAIN),
    Do("mknod /tmp/tapbook-tun c 10 200 && chmod 0600 /tmp/tapbook-tun \
        && mount --bind /tmp/tapbook-tun /dev/net/tun"),
    Run(
        "faults-eacces.txt",
        "stat -c '%A %U %G, character device %Hr:%Lr: %n' /dev/net/tun     # after: sudo \
         chmod 0600 /dev/net/tun",
    ),
    Then("faults-eacces.txt", "cargo run -q --bin 05_full_responder"),
    Expect("faults-eacces.txt", "Permission denied"),
    Do("umount /dev/net/tun && rm /tmp/tapbook-tun"),
    Do("mkdir -p -m 0755 /tmp/tapbook-empty && mount --bind /tmp/tapbook-empty /dev/net"),
    Run("faults-enoent.txt", "stat -c '%A %U %G, character device %Hr:%Lr: %n' /dev/net/tun"),
    Then("faults-enoent.txt", "cargo run -q --bin 05_full_responder"),
    Expect("faults-enoent.txt", "does not exist"),
    Do("umount /dev/net && rmdir /tmp/tapbook-empty"),
    // ---- root before any setup: the program creates tap4 itself, and says what the
    // kernel's side needs; those commands, run as printed, then ping.
    Do("ip link del dev tap4"),
    // The program runs in a terminal of its own: its first lines are the recording's.
    Start(
        "faults-created.log",
        "sudo target/release/05_full_responder     # as root, before scripts/setup.sh",
        "",
    ),
    Printed("faults-created.log", "Ctrl-C to stop"),
    Derive("faults-created.txt", "cat faults-created.log"),
    Note("faults-created.txt", "# ... in another terminal:"),
    Run("faults-created.txt", "ping -c 1 -W 1 172.16.1.2"),
    Expect("faults-created.txt", "Network is unreachable"),
    RunPrinted("faults-created.txt", "faults-created.log", "sudo ip "),
    Run("faults-created.txt", "ping -c 1 -W 2 172.16.1.2"),
    Expect("faults-created.txt", " 1 received"),
    Stop("faults-created.log", SIGTERM),
    // ---- the introduction's exercise 3: a TUN is not a TAP
    Do(SETUP_AGAIN),
    Run("intro-tun4.txt", "sudo ip tuntap add dev tun4 mode tun"),
    Run("intro-tun4.txt", "sudo target/release/02_hexdump --iface tun4"),
    Expect("intro-tun4.txt", "it is a TUN"),
    Do("ip link del dev tun4"),
    // ---- what the descriptor gives without IFF_NO_PI: 2 bytes of flags and the 2-byte
    // protocol (the EtherType) before the frame; wait for the kernel's ARP request.
    Do("ip neigh flush dev tap4"),
    Start(
        "faults-no-pi.txt",
        "cargo run -q --example read_one_frame -- --packet-info --buffer 2048 --want 0806",
        "",
    ),
    Attached,
    Sleep(500),
    Note("faults-no-pi.txt", "# meanwhile: ping -c 1 172.16.1.2"),
    Do("ping -c 1 -W 1 172.16.1.2 || true"),
    Exit("faults-no-pi.txt"),
    Expect("faults-no-pi.txt", "00 00 08 06 ff ff ff ff ff ff"),
    // A 1500-byte buffer, as a C program might have, and a ping whose frame is 1514
    // bytes. The kernel needs our MAC first: a static entry, as nobody answers ARP here.
    Do("ip neigh replace 172.16.1.2 lladdr 02:00:00:00:00:02 dev tap4 nud permanent"),
    Start(
        "faults-truncated.txt",
        "cargo run -q --example read_one_frame -- --buffer 1500 --want 0800",
        "",
    ),
    Attached,
    Sleep(500),
    Note("faults-truncated.txt", "# meanwhile: ping -c 1 -s 1472 172.16.1.2"),
    Do("ping -c 1 -W 1 -s 1472 172.16.1.2 || true"),
    Exit("faults-truncated.txt"),
    Expect("faults-truncated.txt", "were cut off"),
];

/// tap4 as the recording's lab had it (for the student, the kernel's side's fixed MAC).
const SETUP_AGAIN: &str = "scripts/setup.sh --user \"$SUDO_USER\" >/dev/null \
                           && ip link set dev tap4 address 02:00:00:00:00:01";

/// Chapter 8: IPv6.
const IPV6: &[Step] = &[
    Run("08-addresses.txt", "ip -6 addr show dev tap4"),
    Run("08-addresses.txt", "ip -6 route show dev tap4"),
    Expect("08-addresses.txt", "fd00:172:16:1::1/64"),
    Start("08-responder.txt", "cargo run -q --bin 08_ipv6_responder", ""),
    Attached,
    // Duplicate address detection of the link-local address takes a second; the router
    // solicitation, the last of what the kernel sends on its own, follows it.
    Printed("08-responder.txt", "router solicitation"),
    Run("08-ping6.txt", "ping -6 -c 2 fd00:172:16:1::2"),
    Run("08-ping6.txt", "ping -6 -c 2 fe80::ff:fe00:2%tap4"),
    ExpectCount("08-ping6.txt", " 2 received", 2),
    Run("08-ping6-mtu.txt", "ping -6 -c 1 -M do -s 1452 fd00:172:16:1::2"),
    Run("08-ping6-mtu.txt", "ping -6 -c 1 -M do -s 1453 fd00:172:16:1::2"),
    Expect("08-ping6-mtu.txt", "1460 bytes from fd00:172:16:1::2"),
    Expect("08-ping6-mtu.txt", "message too long, mtu: 1500"),
    Run("08-ndisc6.txt", "ndisc6 fd00:172:16:1::2 tap4"),
    Run("08-ndisc6.txt", "ip -6 neigh show dev tap4"),
    Expect("08-ndisc6.txt", "Target link-layer address: 02:00:00:00:00:02"),
    Expect("08-ndisc6.txt", "fd00:172:16:1::2 lladdr 02:00:00:00:00:02 REACHABLE"),
    Stop("08-responder.txt", SIGTERM),
    Expect("08-responder.txt", "MLDv2 report"),
    Expect(
        "08-responder.txt",
        "neighbor advertisement fd00:172:16:1::2 is-at 02:00:00:00:00:02 solicited override",
    ),
    // ---- the full responder answers both
    Do("ip -6 neigh flush dev tap4 && ip neigh flush dev tap4"),
    Start(
        "08-full-responder.txt",
        "cargo run -q --bin 05_full_responder -- --quiet",
        "# meanwhile: ping -c 2 172.16.1.2; ping -6 -c 2 fd00:172:16:1::2;\n\
         #            ping -6 -c 2 fe80::ff:fe00:2%tap4; then Ctrl-C",
    ),
    Attached,
    Sleep(2000),
    Do("ping -c 2 -W 2 172.16.1.2 >/dev/null && ping -6 -c 2 -W 2 fd00:172:16:1::2 >/dev/null \
        && ping -6 -c 2 -W 2 fe80::ff:fe00:2%tap4 >/dev/null"),
    Stop("08-full-responder.txt", SIGINT),
    Expect("08-full-responder.txt", "ICMPv6 echo replies sent"),
];

/// Chapter 10: UDP and DHCP.
const DHCP: &[Step] = &[
    // No IPv6 on tap4: its router solicitations and MLD reports would fill the log.
    Do("sysctl -qw net.ipv6.conf.tap4.disable_ipv6=1"),
    Start("capture.log", "sudo tshark -i tap4 -w dhcp.pcap -f udp", ""),
    Capturing,
    Start("10-dhcp-server.txt", "cargo run -q --bin 10_dhcp_server", ""),
    Attached,
    // ---- a lease, as udhcpc gets it
    Run("10-udhcpc.txt", "sudo busybox udhcpc -i tap4 -f -q -n -s scripts/dhcp/udhcpc.sh"),
    Expect("10-udhcpc.txt", "lease of 172.16.1.100 obtained from 172.16.1.2, lease time 3600"),
    Run("10-udhcpc.txt", "ip -4 addr show dev tap4"),
    Expect("10-udhcpc.txt", "inet 172.16.1.100/24"),
    // udhcpc -q leaves the address; the next client starts from scratch, as after a reboot.
    Run("10-udhcpc.txt", "sudo ip addr del 172.16.1.100/24 dev tap4"),
    // ---- renew (SIGUSR1) and release (SIGUSR2)
    Start(
        "10-renew-release.txt",
        "sudo busybox udhcpc -i tap4 -f -s scripts/dhcp/udhcpc.sh &",
        "# then: kill -USR1 %1 (renew); kill -USR2 %1 (release); kill %1",
    ),
    Printed("10-renew-release.txt", "script: bound"),
    // The script prints, then puts the address on tap4: the renewal is sent from it.
    Sleep(1000),
    Signal("10-renew-release.txt", SIGUSR1),
    Printed("10-renew-release.txt", "script: renew"),
    Signal("10-renew-release.txt", SIGUSR2),
    Printed("10-renew-release.txt", "unicasting a release"),
    Printed("10-dhcp-server.txt", "DHCP: RELEASE"),
    Sleep(500), // udhcpc's script says deconfig
    Stop("10-renew-release.txt", SIGTERM),
    Expect("10-renew-release.txt", "sending renew to server 172.16.1.2"),
    // udhcpc now and then misses the server's unicast ACK to its renewal (it answers
    // within 30 µs) and, 3 s later, renews by broadcast: not the exchange the chapter
    // tells. cargo lab record then makes the recording again.
    ExpectCount("10-renew-release.txt", "broadcasting renew", 0),
    Expect("10-renew-release.txt", "unicasting a release of 172.16.1.100 to 172.16.1.2"),
    // ---- UDP echo from a kernel socket
    Run("10-udp-echo.txt", "python3 scripts/dhcp/udp_echo.py"),
    Expect("10-udp-echo.txt", "1472 bytes sent, 1472 back from ('172.16.1.2', 7) same: True"),
    Run("10-udp-echo.txt", "grep Udp: /proc/net/snmp"),
    // ---- hostile DHCP
    Run("10-hostile.txt", "sudo python3 scripts/dhcp/hostile_dhcp.py"),
    Sleep(1000),
    // ---- the server's counts at exit
    Stop("10-dhcp-server.txt", SIGINT),
    Expect("10-dhcp-server.txt", "DHCP: OFFER 172.16.1.100"),
    Expect("10-dhcp-server.txt", "DHCP: RELEASE of 172.16.1.100"),
    Expect("10-dhcp-server.txt", "(ignored: DHCP malformed)"),
    Expect("10-dhcp-server.txt", "(ignored: DHCP through a relay)"),
    Expect("10-dhcp-server.txt", "UDP echo replies sent"),
    // What the server said of the hostile messages, below them.
    Derive(
        "10-hostile.txt",
        "grep -A1 -e '<- IPv4 172.16.1.1 > 172.16.1.2 UDP, 2[0-9][0-9] bytes' 10-dhcp-server.txt \
         | grep -v -e '^--$'",
    ),
    Expect("10-hostile.txt", "(ignored: DHCP malformed)"),
    Sleep(1000),
    Stop("capture.log", SIGINT),
    Do("chmod 0644 dhcp.pcap"),
    Run("10-tshark.txt", "tshark -r dhcp.pcap -Y 'dhcp.option.dhcp in {1,2,3,5}' -c 4"),
    Expect("10-tshark.txt", "DHCP ACK"),
    Run(
        "10-tshark-fields.txt",
        "tshark -r dhcp.pcap -Y 'dhcp.option.dhcp in {1,2,3,5}' -c 4 -T fields -E header=y \
         -e dhcp.option.dhcp -e ip.dst -e dhcp.flags.bc -e dhcp.ip.client -e dhcp.ip.your \
         -e dhcp.option.dhcp_server_id -e dhcp.option.ip_address_lease_time \
         -e dhcp.option.subnet_mask -e dhcp.option.router",
    ),
    Run(
        "10-tshark-offer.txt",
        "tshark -r dhcp.pcap -Y 'dhcp.option.dhcp == 2' -O dhcp | awk '/^Frame /{n++} n==1' \
         | sed -n '/^Dynamic Host/,$p'     # the first OFFER, its DHCP part",
    ),
    Expect("10-tshark-offer.txt", "DHCP: Offer (2)"),
];

/// Chapter 9 (offloads) and the Performance appendix's offload table. The programs run as
/// root, as the chapter's commands show; the kernel's sockets are scripts/udp-flows.py.
const OFFLOADS: &[Step] = &[
    // No IPv6 on interfaces made from now on: no router solicitation, no multicast report
    // between the frames. The kernel's side: a fixed MAC, 172.16.1.1/24, and a static
    // neighbour for 172.16.1.2 (nobody behind tap4 answers ARP for 09_offloads).
    Do("sysctl -qw net.ipv6.conf.default.disable_ipv6=1"),
    Do(OFFLOAD_LAB),
    // ---- receive: a partial checksum and a superframe
    Start(
        "09-receive.txt",
        "sudo target/release/09_offloads --raw-pcap raw.pcap --pcap wire.pcap",
        FLOWS_NOTE,
    ),
    Attached,
    Do(FLOWS),
    Sleep(500),
    Stop("09-receive.txt", SIGTERM),
    Expect("09-receive.txt", "gso_type=5 (UDP_L4) gso_size=1000"),
    Expect(
        "09-receive.txt",
        "-> 8 frames of [1042, 1042, 1042, 1042, 1042, 1042, 1042, 1042] bytes",
    ),
    Expect("09-receive.txt", "0 bad checksums, 0 errors"),
    Run("09-tshark-raw.txt", "tshark -r raw.pcap -o udp.check_checksum:TRUE -Y udp"),
    Run(
        "09-tshark-raw.txt",
        "tshark -r raw.pcap -o udp.check_checksum:TRUE -Y 'frame.number == 1' -O udp \
         | grep -m1 -A2 Checksum:",
    ),
    Expect("09-tshark-raw.txt", "Len=8000 [UDP CHECKSUM INCORRECT]"),
    Expect("09-tshark-raw.txt", "Checksum: 0x5b69 incorrect"),
    Run("09-tshark-wire.txt", "tshark -r wire.pcap -o udp.check_checksum:TRUE -Y udp"),
    Expect("09-tshark-wire.txt", "UDP 1042 40000 → 9000 Len=1000"),
    // Every checksum right after 09_offloads finished them.
    ExpectCount("09-tshark-wire.txt", "INCORRECT", 0),
    // ---- send: superframes for the kernel to cut
    Run("09-send.txt", "sudo nstat -n      # counters to zero"),
    Start(
        "09-send.txt",
        "sudo python3 scripts/udp-flows.py receive --at 172.16.1.1:9001 --bytes 300000 &",
        "",
    ),
    Printed("09-send.txt", "waiting"),
    Then("09-send.txt", "sudo target/release/09_offloads --send 172.16.1.1:9001 --bytes 300000"),
    Exit("09-send.txt"),
    Then("09-send.txt", "sudo nstat -z UdpInDatagrams UdpInErrors UdpInCsumErrors"),
    Expect("09-send.txt", "the socket received 300000 bytes in 300 datagrams"),
    Expect("09-send.txt", "in 5 writes of up to 65 datagrams"),
    Check("grep -Eq '^UdpInCsumErrors +0 ' 09-send.txt"),
    // ---- what 09_offloads leaves on a persistent tap4, as 02_hexdump sees it
    Start("09-leftover.txt", "sudo target/release/09_offloads      # then Ctrl-C", ""),
    Attached,
    Stop("09-leftover.txt", SIGINT),
    Start("09-leftover.txt", "sudo target/release/02_hexdump > hexdump.txt", FLOWS_NOTE),
    Attached,
    Do(FLOWS),
    Sleep(500),
    Stop("09-leftover.txt", SIGINT),
    Then("09-leftover.txt", "grep \"^#\" hexdump.txt"),
    Expect("09-leftover.txt", "8042 bytes: IPv4 172.16.1.1 > 172.16.1.2 UDP"),
    // The responder of chapter 5 on the same tap4, the offloads still on: ICMP is not
    // offloaded, so ping is answered as before.
    Start("09-leftover.txt", "sudo target/release/05_full_responder --quiet &", ""),
    Attached,
    Then("09-leftover.txt", "sudo ping -c 1 -s 1472 172.16.1.2 | grep received"),
    Stop("09-leftover.txt", SIGTERM),
    Expect("09-leftover.txt", "1 received"),
    // 09_offloads --plain sets the offloads back to none (open_with always sets them).
    Start("09-leftover.txt", "sudo target/release/09_offloads --plain      # then Ctrl-C", ""),
    Attached,
    Stop("09-leftover.txt", SIGINT),
    Start("09-leftover.txt", "sudo target/release/02_hexdump > hexdump.txt", FLOWS_NOTE),
    Attached,
    Do(FLOWS),
    Sleep(500),
    Stop("09-leftover.txt", SIGINT),
    Then("09-leftover.txt", "grep \"^#\" hexdump.txt"),
    Expect("09-leftover.txt", "offloads none"),
    ExpectCount("09-leftover.txt", "1042 bytes: IPv4", 8),
    // ---- two queues
    Note(
        "09-queues.txt",
        "# tap4 remade as a multi-queue TAP (a TAP is one kind or the other, for good):",
    ),
    Then("09-queues.txt", "sudo ip link del tap4"),
    Then("09-queues.txt", "sudo ip tuntap add dev tap4 mode tap multi_queue"),
    Then("09-queues.txt", "sudo ip link set tap4 address 02:00:00:00:00:01"),
    Then("09-queues.txt", "sudo ip addr add 172.16.1.1/24 dev tap4"),
    Then("09-queues.txt", "sudo ip link set tap4 up"),
    Then(
        "09-queues.txt",
        "sudo ip neigh replace 172.16.1.2 lladdr 02:00:00:00:00:02 dev tap4 nud permanent",
    ),
    Start(
        "09-queues.txt",
        "sudo target/release/09_offloads --queues 2",
        "# meanwhile, in a second terminal, then Ctrl-C in the first:\n\
         #   sudo python3 scripts/udp-flows.py send --flows 8 --datagrams 5 --size 100",
    ),
    Attached,
    Do("python3 scripts/udp-flows.py send --flows 8 --datagrams 5 --size 100"),
    Sleep(500),
    Stop("09-queues.txt", SIGINT),
    Expect("09-queues.txt", "every flow came out of one queue only"),
    Check("grep -q '^queue 0: .*, [1-9][0-9]* flows' 09-queues.txt"),
    Check("grep -q '^queue 1: .*, [1-9][0-9]* flows' 09-queues.txt"),
    // ---- the bench (it makes namespaces of its own, NS-PID, inside this lab's)
    Run("09-bench.txt", "sudo target/release/examples/offload_bench --netns-prefix NS"),
    Expect("09-bench.txt", "offload-summary rx_ratio="),
    Expect("09-bench.txt", " csum_errors=0 mq_ratio="),
];

/// tap4 for the offloads chapter (no setup.sh: no IPv6 address, a static neighbour).
const OFFLOAD_LAB: &str = "ip tuntap add dev tap4 mode tap \
    && ip link set tap4 address 02:00:00:00:00:01 && ip addr add 172.16.1.1/24 dev tap4 \
    && ip link set tap4 up \
    && ip neigh replace 172.16.1.2 lladdr 02:00:00:00:00:02 dev tap4 nud permanent";

/// The two flows of 09-receive.txt, and how the recordings show them.
const FLOWS: &str = "python3 scripts/udp-flows.py send --size 300 \
    && python3 scripts/udp-flows.py send --size 8000 --segment 1000";
const FLOWS_NOTE: &str = "# meanwhile, in a second terminal, then Ctrl-C in the first:\n\
    #   sudo python3 scripts/udp-flows.py send --size 300\n\
    #   sudo python3 scripts/udp-flows.py send --size 8000 --segment 1000";

/// What every step's shell knows: the few words of the book's commands that mean
/// something else in the lab (see the module's documentation).
const PRELUDE: &str = r#"# cargo lab record: the lab's meaning of sudo, pgrep and pkill.
sudo() { SUDO_USER=$USER exec "$@"; }
pgrep() { command pgrep --ns $$ --nslist net "$@"; }
pkill() { command pkill --ns $$ --nslist net "$@"; }
"#;

/// The lab's `cargo`, in the student's ~/.cargo/bin: `cargo run` runs the programs built
/// before the recording began (cargo itself would build again, as another user).
const CARGO: &str = r#"#!/bin/sh
# cargo in the lab of cargo lab record: cargo run [-q] --bin NAME [-- ARGS] runs
# target/release/NAME ARGS, --example NAME target/release/examples/NAME, both built
# before the recording began (lab/src/record.rs).
if [ "$1" != run ]; then echo "cargo lab record: only cargo run runs in the lab" >&2; exit 101; fi
shift
if [ "$1" = -q ]; then shift; fi
case $1 in
    --bin) program=target/release/$2 ;;
    --example) program=target/release/examples/$2 ;;
    *) echo "cargo lab record: cargo run --bin NAME or --example NAME" >&2; exit 101 ;;
esac
shift 2
if [ "$1" = -- ]; then shift; fi
exec "$program" "$@"
"#;

/// Where `cargo lab record` works, and for whom.
pub struct Recorder {
    /// The scratch directory: target/ and scripts/ for the lab, out/ for the recordings.
    pub work: PathBuf,
    /// book/src/output/, where the recordings go once a recording's checks pass.
    pub out: PathBuf,
    /// The unprivileged user who plays the student.
    pub student: String,
    /// The repository (scripts/ is copied from it; `Setup::Host` runs there).
    pub root: PathBuf,
}

type Result<T> = std::result::Result<T, String>;

impl Recorder {
    /// Lays out the scratch directory: the programs in `bin_dir` (release) copied into
    /// target/release/ where the student can run them, and the repository's scripts/.
    pub fn new(root: &Path, bin_dir: &Path, out: &Path, student: &str) -> Result<Recorder> {
        static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let work = std::env::temp_dir().join(format!("tapbook-record-{}-{n}", std::process::id()));
        let release = work.join("target/release");
        // Made first, so that its Drop removes the directory if anything below fails.
        let recorder = Recorder {
            work,
            out: out.to_path_buf(),
            student: student.to_owned(),
            root: root.into(),
        };
        std::fs::create_dir_all(release.join("examples"))
            .and_then(|()| std::fs::create_dir_all(recorder.work.join("out")))
            .map_err(|e| format!("creating {}: {e}", recorder.work.display()))?;
        let programs = PROGRAMS.iter().map(|p| (bin_dir.join(p), release.join(p)));
        let examples = EXAMPLES
            .iter()
            .map(|p| (bin_dir.join("examples").join(p), release.join("examples").join(p)));
        for (from, to) in programs.chain(examples) {
            std::fs::copy(&from, &to).map_err(|e| {
                format!(
                    "{}: {e} (build with: cargo build --release --bins --examples)",
                    from.display()
                )
            })?;
        }
        let copied = Command::new("cp")
            .arg("-R")
            .arg(root.join("scripts"))
            .arg(&recorder.work)
            .status()
            .map_err(|e| format!("running cp: {e}"))?;
        if !copied.success() {
            return Err("copying scripts/ failed".into());
        }
        chmod_tree(&recorder.work)?;
        Ok(recorder)
    }

    /// Makes `recording`, checks it, and only then copies its files into `out`; the
    /// names of the files written. A run whose checks fail is made again, up to three
    /// times in all (the kernel's tools have their races too), each failure said.
    pub fn record(&self, recording: &Recording) -> Result<Vec<String>> {
        let mut attempt = 1;
        loop {
            match self.record_once(recording) {
                Err(e) if attempt < 3 && !crate::stopped() => {
                    crate::tell(format_args!(
                        "   {}: attempt {attempt} failed, recording it again: {}",
                        recording.name,
                        e.lines().next().unwrap_or("")
                    ));
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn record_once(&self, recording: &Recording) -> Result<Vec<String>> {
        let run = self.work.join(recording.name);
        std::fs::create_dir_all(&run).map_err(|e| format!("creating {}: {e}", run.display()))?;
        let cargo = run.join(".cargo/bin/cargo");
        std::fs::create_dir_all(run.join(".cargo/bin"))
            .and_then(|()| std::fs::write(&cargo, CARGO))
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755))
            })
            .map_err(|e| format!("writing {}: {e}", cargo.display()))?;
        chmod_tree(&run.join(".cargo"))?;
        for dir in ["target", "scripts"] {
            let link = run.join(dir);
            if !link.exists() {
                std::os::unix::fs::symlink(self.work.join(dir), &link)
                    .map_err(|e| format!("linking {}: {e}", link.display()))?;
            }
        }
        let (uid, gid) = user_ids(&self.student)?;
        // The student's directory; root's tshark (dumpcap, which drops its capabilities)
        // writes its capture files here too.
        use std::os::unix::fs::PermissionsExt;
        std::os::unix::fs::chown(&run, Some(uid.as_raw()), Some(gid.as_raw()))
            .and_then(|()| std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o1777)))
            .map_err(|e| format!("chown {}: {e}", run.display()))?;
        let rec = self.work.join("out");
        for file in recording.steps.iter().flat_map(Step::files) {
            let _ = std::fs::remove_file(rec.join(file));
        }
        let lab = match recording.setup {
            Setup::Host => None,
            setup => {
                let dir = self.work.file_name().map_or("".into(), |n| n.to_string_lossy());
                let name = Some(format!("tb-{dir}-{}", recording.name));
                let mut lab = match setup {
                    Setup::Tap4 => Lab::create(name, &self.student)?,
                    _ => Lab::namespace(name)?,
                };
                lab.workdir = Some(run.clone());
                lab.private_mounts()?;
                Some(lab)
            }
        };
        let dir = if lab.is_some() { run.clone() } else { self.root.clone() };
        let mut session = Session {
            lab,
            dir,
            rec: rec.clone(),
            scripts: self.work.join(format!("{}-steps", recording.name)),
            student: self.student.clone(),
            jobs: HashMap::new(),
            stdin: HashMap::new(),
            last: None,
            status: HashMap::new(),
            written: Vec::new(),
            count: 0,
            bin: self.work.join("target/release"),
        };
        if session.lab.is_some() {
            // The student's home, as the programs and tools see it: the working directory.
            session.run_root(&format!(
                "mount -t tmpfs tapbook-home /home && mkdir /home/{0} && mount --bind {1} /home/{0}",
                self.student,
                run.display()
            ))?;
        }
        if recording.setup == Setup::Tap4 {
            session.run_root(&format!("ip link set dev tap4 address {KERNEL_MAC}"))?;
        }
        let result = recording.steps.iter().try_for_each(|step| {
            if crate::stopped() {
                return Err("stopped (signal); the lab is removed".to_owned());
            }
            session.step(step)
        });
        let written = std::mem::take(&mut session.written);
        drop(session);
        result?;
        let published: Vec<String> = written.into_iter().filter(|f| f.ends_with(".txt")).collect();
        for file in &published {
            let path = rec.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{file}: {e}"))?;
            // The terminal noise of tshark 4.x (a bare "tshark: " line) is not output.
            let text: String =
                text.split_inclusive('\n').filter(|l| l.trim_end() != "tshark:").collect();
            let text = crate::wrap::fit(&text, crate::wrap::WIDTH);
            let to = self.out.join(file);
            std::fs::write(&to, text).map_err(|e| format!("writing {}: {e}", to.display()))?;
            give_to_sudo_user(&to);
        }
        Ok(published)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if std::env::var_os("TAPBOOK_RECORD_KEEP").is_some() {
            crate::tell(format_args!("kept {} (TAPBOOK_RECORD_KEEP)", self.work.display()));
            return;
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// Everyone may read and enter (the student runs the programs and scripts from here).
fn chmod_tree(dir: &Path) -> Result<()> {
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir)
        .status()
        .map_err(|e| format!("running chmod: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("chmod -R a+rX {} failed", dir.display())) }
}

fn user_ids(user: &str) -> Result<(nix::unistd::Uid, nix::unistd::Gid)> {
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok((u.uid, u.gid)),
        _ => Err(format!("no such user: '{user}'")),
    }
}

/// Run through sudo, the file goes to the user who asked for it.
fn give_to_sudo_user(path: &Path) {
    let id = |var| std::env::var(var).ok().and_then(|v| v.parse::<u32>().ok());
    if let (Some(uid), Some(gid)) = (id("SUDO_UID"), id("SUDO_GID")) {
        let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    }
}

/// A recording as it runs: its lab, its background programs, its files.
struct Session {
    lab: Option<Lab>,
    /// The working directory of every command.
    dir: PathBuf,
    /// Where the new recordings are written.
    rec: PathBuf,
    /// Where each step's shell script is written (the shell reads it from there, so that
    /// a `pkill -f` pattern never matches the shell's own command line).
    scripts: PathBuf,
    student: String,
    jobs: HashMap<&'static str, Responder>,
    stdin: HashMap<&'static str, std::process::ChildStdin>,
    last: Option<&'static str>,
    /// Each file's `$?`.
    status: HashMap<&'static str, i32>,
    written: Vec<String>,
    count: usize,
    /// The programs built for the recording.
    bin: PathBuf,
}

impl Session {
    fn path(&self, file: &str) -> PathBuf {
        self.rec.join(file)
    }

    fn append(&mut self, file: &str, text: &str) -> Result<()> {
        if !self.written.iter().any(|f| f == file) {
            self.written.push(file.to_owned());
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(file))
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("writing {file}: {e}"))
    }

    fn text(&self, file: &str) -> String {
        std::fs::read_to_string(self.path(file)).unwrap_or_default()
    }

    fn output_file(&self, file: &str) -> Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(file))
            .map_err(|e| format!("opening {file}: {e}"))
    }

    /// `line` in `sh`, in the lab (as root when it starts with `sudo `, else as the
    /// student), or on the host; `$?` starts as `status`.
    fn shell(&mut self, line: &str, status: i32) -> Result<Command> {
        self.count += 1;
        std::fs::create_dir_all(&self.scripts)
            .map_err(|e| format!("creating {}: {e}", self.scripts.display()))?;
        let script = self.scripts.join(format!("{:03}.sh", self.count));
        std::fs::write(&script, format!("{PRELUDE}(exit {status})\n{line}\n"))
            .and_then(|()| chmod_tree(&self.scripts).map_err(std::io::Error::other))
            .map_err(|e| format!("writing {}: {e}", script.display()))?;
        let mut cmd = match &self.lab {
            Some(lab) => {
                let root = line.starts_with("sudo ");
                let mut cmd;
                if root {
                    cmd = lab.command("sh");
                } else {
                    cmd = lab.command("setpriv");
                    cmd.args(lab.setpriv_args(Some(self.student.as_str())));
                    cmd.arg("sh");
                }
                let home = format!("/home/{}", self.student);
                let path = std::env::var("PATH").unwrap_or_default();
                cmd.env("USER", &self.student)
                    .env("LOGNAME", &self.student)
                    .env("PATH", format!("{home}/.cargo/bin:{path}"))
                    .env("HOME", home);
                cmd
            }
            None => {
                // On the host, `cargo` is the one that runs us (under sudo, PATH may lack it).
                let mut cmd = Command::new("sh");
                let cargo_dir = std::env::var_os("CARGO")
                    .and_then(|c| Path::new(&c).parent().map(Path::to_path_buf));
                if let Some(dir) = cargo_dir {
                    let path = std::env::var_os("PATH").unwrap_or_default();
                    let dirs = std::iter::once(dir).chain(std::env::split_paths(&path));
                    if let Ok(joined) = std::env::join_paths(dirs) {
                        cmd.env("PATH", joined);
                    }
                }
                cmd
            }
        };
        cmd.arg(&script).current_dir(&self.dir);
        Ok(cmd)
    }

    /// Runs `line` into `file`: its status becomes the file's `$?`.
    fn run_into(&mut self, file: &'static str, line: &str, gap: bool) -> Result<()> {
        let gap = if gap && !self.text(file).is_empty() { "\n" } else { "" };
        self.append(file, &format!("{gap}$ {line}\n"))?;
        let status = self.status.get(file).copied().unwrap_or(0);
        let mut cmd = self.shell(line, status)?;
        let out = self.output_file(file)?;
        let err = self.output_file(file)?;
        let status = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| format!("running {line}: {e}"))?;
        self.status.insert(file, exit_code(status));
        Ok(())
    }

    /// A command as root in the lab, which must succeed.
    fn run_root(&mut self, line: &str) -> Result<()> {
        let mut cmd = self.shell(&format!("sudo sh -c '{}'", line.replace('\'', r"'\''")), 0)?;
        let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("running {line}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{line} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// `line` run in the directory of the recordings, on the host.
    fn here(&self, line: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", line]).current_dir(&self.rec).stdin(Stdio::null());
        cmd
    }

    fn job(&mut self, file: &str) -> Result<&mut Responder> {
        self.jobs.get_mut(file).ok_or(format!("no program was started into {file}"))
    }

    /// Waits for the program of `file` to end; its status becomes the file's `$?`.
    fn wait_job(&mut self, file: &'static str, timeout: Duration) -> Result<()> {
        let job = self.job(file)?;
        let status = job.wait_exit(timeout).ok_or(format!(
            "the program started into {file} did not end within {} s",
            timeout.as_secs()
        ))?;
        self.jobs.remove(file);
        self.stdin.remove(file);
        self.status.insert(file, exit_code(status));
        Ok(())
    }

    fn step(&mut self, step: &Step) -> Result<()> {
        match *step {
            Run(file, line) => self.run_into(file, line, true)?,
            Then(file, line) => self.run_into(file, line, false)?,
            Do(line) => self.run_root(line)?,
            Start(file, line, note) => {
                self.append(file, &format!("$ {line}\n"))?;
                if !note.is_empty() {
                    self.append(file, &format!("{note}\n"))?;
                }
                let shown = line.strip_suffix(" &").unwrap_or(line);
                let mut cmd = self.shell(shown, 0)?;
                cmd.stdin(Stdio::piped());
                cmd.process_group(0);
                let path = self.path(file);
                let lab = self.lab.as_mut().ok_or("a background program needs a lab")?;
                let mut job = lab.spawn_command(cmd, file, Some(&path));
                if let Some(stdin) = job.take_stdin() {
                    self.stdin.insert(file, stdin);
                }
                self.jobs.insert(file, job);
                self.last = Some(file);
            }
            Attached => {
                let file = self.last.ok_or("Attached: no program started")?;
                let job = self.jobs.get_mut(file).ok_or("Attached: the program ended")?;
                let lab = self.lab.as_ref().ok_or("Attached needs a lab")?;
                lab.wait_attached(job)?;
            }
            Capturing => {
                let lab = self.lab.as_ref().ok_or("Capturing needs a lab")?;
                let capturing = wait_until(Duration::from_secs(20), || {
                    lab.command("cat")
                        .arg("/proc/net/packet")
                        .output()
                        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().count() > 1)
                });
                if !capturing {
                    return Err("tshark did not start capturing within 20 s".into());
                }
            }
            Printed(file, text) => {
                if !wait_until(Duration::from_secs(15), || self.text(file).contains(text)) {
                    return Err(format!(
                        "waited 15 s for '{text}' in {file}; it reads:\n{}",
                        indent(&self.text(file))
                    ));
                }
            }
            Sleep(ms) => std::thread::sleep(Duration::from_millis(ms)),
            Note(file, text) => self.append(file, &format!("{text}\n"))?,
            Signal(file, signal) => self.job(file)?.signal(signal),
            Stop(file, signal) => {
                let pid = self.job(file)?.pid();
                self.stdin.remove(file);
                let _ = killpg(Pid::from_raw(pid as i32), signal);
                self.wait_job(file, Duration::from_secs(10))?;
            }
            Exit(file) => self.wait_job(file, Duration::from_secs(20))?,
            Type(file, text) => {
                let stdin = self.stdin.get_mut(file).ok_or(format!("no input into {file}"))?;
                stdin.write_all(text.as_bytes()).map_err(|e| format!("typing into {file}: {e}"))?;
            }
            Expect(file, text) => {
                let got = self.text(file);
                if !got.contains(text) {
                    return Err(format!(
                        "{file} does not contain '{text}': the run did not go as the book \
                         says. It reads:\n{}",
                        indent(&got)
                    ));
                }
            }
            ExpectCount(file, text, n) => {
                let got = self.text(file);
                let count = got.lines().filter(|l| l.contains(text)).count();
                if count != n {
                    return Err(format!(
                        "{file} has {count} lines with '{text}', not {n}: the run did not go \
                         as the book says. It reads:\n{}",
                        indent(&got)
                    ));
                }
            }
            Derive(file, line) => {
                let out = self.here(line).output().map_err(|e| format!("running {line}: {e}"))?;
                self.append(file, &String::from_utf8_lossy(&out.stdout))?;
            }
            Check(line) => {
                let ok = self.here(line).status().is_ok_and(|s| s.success());
                if !ok {
                    return Err(format!("check failed: {line}"));
                }
            }
            RunPrinted(file, from, prefix) => {
                let lines: Vec<String> = self
                    .text(from)
                    .lines()
                    .map(str::trim)
                    .filter(|l| l.starts_with(prefix))
                    .map(str::to_owned)
                    .collect();
                if lines.is_empty() {
                    return Err(format!("{from} holds no line starting with '{prefix}'"));
                }
                for line in lines {
                    // Leaked once per printed command of a recording: a few bytes.
                    let line: &'static str = Box::leak(line.into_boxed_str());
                    self.run_into(file, line, true)?;
                }
            }
            Call(files, record) => {
                for file in files {
                    self.written.push((*file).to_owned());
                }
                record(&Dirs { out: self.rec.clone(), bin: self.bin.clone() })?;
                if let Some(file) = files.iter().find(|f| !self.path(f).is_file()) {
                    return Err(format!("{file} was not written"));
                }
            }
        }
        Ok(())
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// The recordings named `names` (all when empty), in the list's order; an error names
/// the unknown ones.
pub fn select(names: &[String]) -> Result<Vec<&'static Recording>> {
    if let Some(bad) = names.iter().find(|n| !RECORDINGS.iter().any(|r| r.name == n.as_str())) {
        let known: Vec<&str> = RECORDINGS.iter().map(|r| r.name).collect();
        return Err(format!("no recording '{bad}' (one of: {})", known.join(", ")));
    }
    Ok(RECORDINGS
        .iter()
        .filter(|r| names.is_empty() || names.iter().any(|n| n == r.name))
        .collect())
}

/// Says what is recorded, one recording a line.
pub fn list() {
    for r in RECORDINGS {
        say(format_args!("{:<10} {}", r.name, r.about));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file a step needs written before it.
    fn reads(step: &Step) -> Option<&'static str> {
        match *step {
            Printed(f, _) | Signal(f, _) | Stop(f, _) | Exit(f) | Type(f, _) => Some(f),
            Expect(f, _) | ExpectCount(f, _, _) | RunPrinted(_, f, _) => Some(f),
            _ => None,
        }
    }

    #[test]
    fn every_file_is_made_by_one_recording_and_read_after_it_is_written() {
        let mut owner: HashMap<&str, &str> = HashMap::new();
        for r in RECORDINGS {
            let mut written: Vec<&str> = Vec::new();
            for step in r.steps {
                if let Some(f) = reads(step) {
                    assert!(
                        written.contains(&f),
                        "{}: {step:?} reads {f} before it is written",
                        r.name
                    );
                }
                for &f in step.files() {
                    if let Some(other) = owner.insert(f, r.name) {
                        assert_eq!(other, r.name, "{f} is written by {other} and {}", r.name);
                    }
                    written.push(f);
                }
            }
        }
    }

    #[test]
    fn every_recording_the_book_includes_is_in_the_list() {
        let made: Vec<&str> =
            RECORDINGS.iter().flat_map(|r| r.steps.iter().flat_map(Step::files).copied()).collect();
        let book = crate::repo_root().join("book/src");
        let mut missing = Vec::new();
        let mut pages = vec![book.clone()];
        while let Some(dir) = pages.pop() {
            for entry in std::fs::read_dir(&dir).expect("book/src") {
                let path = entry.expect("an entry").path();
                if path.is_dir() {
                    pages.push(path);
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&path) else { continue };
                for include in text.split("{{#include ").skip(1) {
                    let target = include.split("}}").next().unwrap_or("");
                    let Some(file) = target.split("output/").nth(1) else { continue };
                    // Made elsewhere: the benchmarks' tables (cargo lab bench --save,
                    // cargo bench), which are measurements, not a session.
                    let elsewhere = ["bench", "per-frame"];
                    if !made.contains(&file) && !elsewhere.iter().any(|p| file.starts_with(p)) {
                        missing.push(format!("{}: {file}", path.display()));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "included but recorded by no Recording: {missing:#?}");
    }

    #[test]
    fn a_shown_command_names_no_namespace_of_the_recorder() {
        for r in RECORDINGS {
            for step in r.steps {
                if let Run(_, c) | Then(_, c) | Start(_, c, _) = *step {
                    assert!(
                        !c.contains("netns exec") && !c.contains("tb-record"),
                        "{}: {c}",
                        r.name
                    );
                }
            }
        }
    }

    #[test]
    fn select_names_the_unknown() {
        assert_eq!(select(&[]).expect("all").len(), RECORDINGS.len());
        assert_eq!(select(&["dhcp".into()]).expect("one")[0].name, "dhcp");
        let e = select(&["nosuch".into()]).expect_err("unknown");
        assert!(e.contains("nosuch") && e.contains("chapters"), "{e}");
    }
}
