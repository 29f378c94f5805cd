//! End to end with a real virtual machine: `scripts/vm-lab.sh` boots a Linux guest with
//! QEMU on a TAP device, bridges it with `tap4`, runs `05_full_responder` there, and the
//! guest's own (busybox) `ping` must get its replies from our responder. Everything runs
//! in a network namespace the script creates and removes.
//!
//! Needs root (like every end-to-end test) and QEMU, busybox-static and cpio; prints
//! SKIPPED without them, except under CI (`CI` set), where that is a failure. The first
//! run downloads Debian's cloud kernel (about 27 MB) into `~/.cache/tapbook` when the
//! host's own kernel cannot serve as the guest's. It takes 5 to 20 seconds with the
//! cache warm, most of it booting the guest (and, where `/dev/kvm` exists but KVM does
//! not work, finding that out).

use tapbook_lab as common;
use tapbook_lab::require_lab;

use std::process::Command;

use common::{RESPONDER_IP, RESPONDER_MAC, repo_root};

const BIN_05: &str = env!("CARGO_BIN_EXE_05_full_responder");
const GUEST_MAC: &str = "52:54:00:12:34:56";
const PINGS: u32 = 3;

/// Removes the namespace if the script left it behind (it should not: the test checks).
struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn netns_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|line| line.split_whitespace().next() == Some(name))
        })
        .unwrap_or(false)
}

/// The numbers on the line after busybox ping's "--- ADDR ping statistics ---":
/// "3 packets transmitted, 3 packets received, 0% packet loss" -> (3, 3).
fn guest_ping_summary(output: &str, addr: &str) -> Option<(u32, u32)> {
    let header = format!("--- {addr} ping statistics ---");
    let mut lines = output.lines().skip_while(|line| line.trim() != header);
    lines.next()?;
    let numbers: Vec<u32> =
        lines.next()?.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
    Some((*numbers.first()?, *numbers.get(1)?))
}

/// A responder counter line, e.g. "         3  ICMP echo replies sent" -> 3.
fn counter(output: &str, label: &str) -> Option<u32> {
    output.lines().find_map(|line| {
        let (number, rest) = line.trim().split_once("  ")?;
        (rest.trim() == label).then(|| number.parse().ok())?
    })
}

#[test]
fn a_linux_guest_pings_our_responder_across_a_bridge() {
    let test = "a_linux_guest_pings_our_responder_across_a_bridge";
    require_lab!(test, "qemu-system-x86_64", "busybox", "cpio");
    let netns = format!("tb-vm-{}", std::process::id());
    let _guard = NetnsGuard(netns.clone());
    let out = Command::new(repo_root().join("scripts/vm-lab.sh"))
        .args(["--netns", &netns, "--bin", BIN_05, "--count", &PINGS.to_string()])
        .env_remove("TAPBOOK_NETNS")
        .output()
        .expect("running scripts/vm-lab.sh");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scripts/vm-lab.sh failed:\n{text}");

    // The guest's side: every ping to our responder answered.
    let (sent, received) = guest_ping_summary(&text, RESPONDER_IP).unwrap_or_else(|| {
        panic!("no ping summary for {RESPONDER_IP} in the guest's output:\n{text}")
    });
    assert_eq!((sent, received), (PINGS, PINGS), "the guest's ping of {RESPONDER_IP}:\n{text}");
    assert!(text.contains(&format!("lladdr {RESPONDER_MAC}")), "guest's ARP entry:\n{text}");

    // Our side: the responder answered the guest's ARP and each echo request itself.
    let echo_replies = counter(&text, "ICMP echo replies sent");
    assert_eq!(echo_replies, Some(PINGS), "the responder's counters:\n{text}");
    let arp_replies = counter(&text, "ARP replies sent").unwrap_or(0);
    assert!(arp_replies >= 1, "the responder sent no ARP reply:\n{text}");
    assert!(
        text.contains("<- ARP who-has 172.16.1.2 tell 172.16.1.3")
            && text.contains("-> IPv4 172.16.1.2 > 172.16.1.3 ICMP echo reply"),
        "the responder's log should show the guest's ARP and ping:\n{text}"
    );

    // The bridge learnt the guest's MAC behind QEMU's tap and ours behind tap4.
    let learnt = |mac: &str, port: &str| {
        text.lines().any(|line| {
            let line = line.trim();
            line.starts_with(&format!("{mac} dev {port} master br0")) && !line.contains("permanent")
        })
    };
    assert!(learnt(GUEST_MAC, "vnet0"), "bridge fdb: guest MAC on vnet0:\n{text}");
    assert!(learnt(RESPONDER_MAC, "tap4"), "bridge fdb: our MAC on tap4:\n{text}");

    assert!(!netns_exists(&netns), "scripts/vm-lab.sh left namespace {netns} behind");
}

#[test]
fn vm_lab_help_and_bad_options() {
    let script = repo_root().join("scripts/vm-lab.sh");
    let help = Command::new(&script).arg("--help").output().expect("running vm-lab.sh --help");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "--help failed: {text}");
    for option in ["--keep", "--shell", "--kernel", "--accel", "--strace"] {
        assert!(text.contains(option), "--help does not mention {option}:\n{text}");
    }
    for bad in [&["--accel", "hvf"][..], &["--count", "0"], &["--keep", "--shell"], &["--bogus"]] {
        let out = Command::new(&script).args(bad).output().expect("running vm-lab.sh");
        assert_eq!(out.status.code(), Some(1), "vm-lab.sh {bad:?} should fail at once");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("error"), "vm-lab.sh {bad:?}: {stderr}");
    }
}

#[test]
fn guest_ping_summary_reads_busybox_output() {
    let output = "PING 172.16.1.2 (172.16.1.2): 56 data bytes\n\
                  64 bytes from 172.16.1.2: seq=0 ttl=64 time=15.188 ms\n\
                  \n    --- 172.16.1.2 ping statistics ---\n\
                  \x20   3 packets transmitted, 2 packets received, 33% packet loss\n";
    assert_eq!(guest_ping_summary(output, "172.16.1.2"), Some((3, 2)));
    assert_eq!(guest_ping_summary(output, "172.16.1.1"), None);
    let counters = "        21  frames read\n         3  ICMP echo replies sent\n";
    assert_eq!(counter(counters, "ICMP echo replies sent"), Some(3));
    assert_eq!(counter(counters, "ARP replies sent"), None);
}
