//! End to end with a real virtual machine: `cargo lab vm` (the binary cargo built for
//! these tests, run as a separate process) boots a Linux guest with QEMU on a TAP,
//! bridges it with `tap4`, runs `05_full_responder` there, and the guest's own (busybox)
//! `ping` must get its replies from our responder. As root in a named namespace, and as
//! an unprivileged user in a user namespace of its own (no root anywhere); both leave
//! nothing behind.
//!
//! Needs root (to become the unprivileged user too) and QEMU and busybox-static; prints
//! SKIPPED without them, except under CI (`CI` set), where that is a failure. The first
//! run downloads Debian's cloud kernel (about 27 MB) into the cache (`~/.cache/tapbook`,
//! and for the unprivileged user one under the temporary directory) when the host's own
//! kernel cannot serve as the guest's. Each run takes 15 to 40 seconds with the cache
//! warm, most of it booting the guest under TCG (and, where `/dev/kvm` exists but KVM
//! does not work, finding that out).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use tapbook_lab::ours::{first_table, guest_mac};
use tapbook_lab::vm::{GUEST_MAC, ping_summary};
use tapbook_lab::{
    RESPONDER_IP, RESPONDER_MAC, UNPRIVILEGED_USER, can_run_rootless, primary_group, repo_root,
    require_lab, run_ok,
};

const CARGO_LAB: &str = env!("CARGO_BIN_EXE_cargo-lab");

/// One run of `cargo lab vm` at a time: each ends by checking that the unprivileged user
/// has no QEMU left, which another run's guest would be (and two TCG guests at once only
/// make both slower).
static ONE_VM_RUN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_vm_run() -> std::sync::MutexGuard<'static, ()> {
    ONE_VM_RUN.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
const PINGS: u32 = 3;

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn netns_exists(name: &str) -> bool {
    let out = run_ok(Command::new("ip").args(["netns", "list"]));
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.split_whitespace().next() == Some(name))
}

/// Removes the namespace if `cargo lab vm` left it behind (it should not: the test checks).
struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// "(3, 3)" from busybox ping's "3 packets transmitted, 3 packets received, 0% ...".
fn sent_received(summary: &str) -> Option<(u32, u32)> {
    let numbers: Vec<u32> =
        summary.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
    Some((*numbers.first()?, *numbers.get(1)?))
}

/// A responder counter line, e.g. "         3  ICMP echo replies sent" -> 3.
fn counter(output: &str, label: &str) -> Option<u32> {
    output.lines().find_map(|line| {
        let (number, rest) = line.trim().split_once("  ")?;
        (rest.trim() == label).then(|| number.parse().ok())?
    })
}

/// What every run must show: the guest's pings answered by our responder, which saw the
/// guest's ARP and echo requests, and the bridge learnt both MACs on the right ports.
fn check_run(text: &str) {
    let summary = ping_summary(text, RESPONDER_IP).unwrap_or_else(|| {
        panic!("no ping summary for {RESPONDER_IP} in the guest's output:\n{text}")
    });
    assert_eq!(sent_received(&summary), Some((PINGS, PINGS)), "the guest's ping:\n{text}");
    assert!(text.contains(&format!("lladdr {RESPONDER_MAC}")), "guest's ARP entry:\n{text}");

    assert_eq!(counter(text, "ICMP echo replies sent"), Some(PINGS), "counters:\n{text}");
    assert!(counter(text, "ARP replies sent").unwrap_or(0) >= 1, "no ARP reply:\n{text}");
    assert!(
        text.contains("<- ARP who-has 172.16.1.2 tell 172.16.1.3")
            && text.contains("-> IPv4 172.16.1.2 > 172.16.1.3 ICMP echo reply"),
        "the responder's log should show the guest's ARP and ping:\n{text}"
    );

    let learnt = |mac: &str, port: &str| {
        text.lines().any(|line| {
            let line = line.trim();
            line.starts_with(&format!("{mac} dev {port} master br0")) && !line.contains("permanent")
        })
    };
    assert!(learnt(GUEST_MAC, "vnet0"), "bridge fdb: guest MAC on vnet0:\n{text}");
    assert!(learnt(RESPONDER_MAC, "tap4"), "bridge fdb: our MAC on tap4:\n{text}");
    assert!(text.contains("vnet0: tap no_pi persist vnet_hdr"), "QEMU's tap flags:\n{text}");
}

#[test]
fn a_linux_guest_pings_our_responder_as_root_and_as_a_user() {
    let test = "a_linux_guest_pings_our_responder_as_root_and_as_a_user";
    require_lab!(test, "qemu-system-x86_64", "busybox");
    let _one = one_vm_run();
    let netns = format!("tb-vm-{}", std::process::id());
    let _guard = NetnsGuard(netns.clone());
    let out = Command::new(CARGO_LAB)
        .args(["vm", "--netns", &netns, "--count", &PINGS.to_string()])
        .env_remove("SUDO_USER")
        .stdin(Stdio::null())
        .output()
        .expect("running cargo lab vm");
    let said = text(&out);
    assert!(out.status.success(), "cargo lab vm failed:\n{said}");
    assert!(said.contains(&format!("== 3. The lab, in network namespace {netns}")), "{said}");
    assert!(said.contains(&format!("== 4. 05_full_responder on tap4, as {UNPRIVILEGED_USER}")));
    check_run(&said);
    assert!(!netns_exists(&netns), "cargo lab vm left namespace {netns} behind");

    // Rootless: the unprivileged user, with the release build the first run made, and a
    // kernel cache of its own (its home may not exist).
    if !can_run_rootless(test) {
        return;
    }
    let (out, group) = vm_as_user(&[], "05_full_responder");
    let said = text(&out);
    assert!(out.status.success(), "cargo lab vm as {UNPRIVILEGED_USER} failed:\n{said}");
    assert!(said.contains("in a user namespace of its own (no root, no sudo)"), "{said}");
    assert!(said.contains("(you, with no capabilities)"), "{said}");
    check_run(&said);
    let left = left_in_group(group);
    assert!(
        !left.lines().any(|l| l.contains("qemu-system") && !l.starts_with('Z')),
        "QEMU still running after cargo lab vm:\n{left}"
    );
}

/// What every run of `cargo lab vm --network ours` must show, for `guests` guests: each
/// got its lease from our DHCP server (udhcpc says so on its console), and its pings to
/// our responder, the kernel and the other guest were all answered; the switch's table
/// (on SIGUSR1, all stations up) has each guest's MAC on its port, ours on the
/// responder's, and the server lent one address per guest.
fn check_ours(text: &str, guests: u32) {
    let addresses: Vec<String> = (0..guests).map(|g| format!("172.16.1.{}", 100 + g)).collect();
    for (i, addr) in addresses.iter().enumerate() {
        let g = i + 1;
        let lease = format!("udhcpc: lease of {addr} obtained from {RESPONDER_IP}, lease time");
        assert!(text.contains(&lease), "guest {g}: no {lease:?} in:\n{text}");
        assert!(text.contains(&format!("guest {g}: lease of {addr} from {RESPONDER_IP}")));
        let others = addresses.iter().filter(|a| *a != addr);
        for target in [RESPONDER_IP, "172.16.1.1"].into_iter().chain(others.map(String::as_str)) {
            let line = format!(
                "guest {g}: ping {target}: {PINGS} packets transmitted, {PINGS} packets received"
            );
            assert!(text.contains(&line), "no {line:?} in:\n{text}");
        }
    }
    let table = first_table(text);
    let row =
        |mac: &str, port: &str| table.lines().any(|l| l.split_whitespace().take(2).eq([mac, port]));
    for g in 1..=guests {
        assert!(row(&guest_mac(g), &format!("guest{g}")), "guest {g}'s MAC:\n{table}");
    }
    assert!(row(RESPONDER_MAC, "responder"), "our MAC on the responder's port:\n{table}");
    assert!(text.contains(&format!("{guests} leases\n")), "the server's leases:\n{text}");
}

#[test]
fn guests_get_a_lease_from_our_server_through_our_switch_as_root_and_as_a_user() {
    let test = "guests_get_a_lease_from_our_server_through_our_switch_as_root_and_as_a_user";
    require_lab!(test, "qemu-system-x86_64", "busybox");
    let _one = one_vm_run();
    let netns = format!("tb-vmo-{}", std::process::id());
    let _guard = NetnsGuard(netns.clone());
    let out = Command::new(CARGO_LAB)
        .args(["vm", "--network", "ours", "--guests", "2", "--netns", &netns])
        .args(["--count", &PINGS.to_string()])
        .env_remove("SUDO_USER")
        .stdin(Stdio::null())
        .output()
        .expect("running cargo lab vm --network ours");
    let said = text(&out);
    assert!(out.status.success(), "cargo lab vm --network ours failed:\n{said}");
    assert!(said.contains(&format!("== 3. The lab, in network namespace {netns}")), "{said}");
    assert!(
        said.contains(&format!(
            "== 5. 10_dhcp_server on the switch's port 'responder': no TAP, as {UNPRIVILEGED_USER}"
        )),
        "{said}"
    );
    check_ours(&said, 2);
    assert!(!netns_exists(&netns), "cargo lab vm left namespace {netns} behind");

    // Rootless, one guest: the unprivileged user, with the programs the first run built.
    if !can_run_rootless(test) {
        return;
    }
    let (out, group) = vm_as_user(&["--network", "ours"], "10_dhcp_server");
    let said = text(&out);
    assert!(out.status.success(), "cargo lab vm --network ours as {UNPRIVILEGED_USER}:\n{said}");
    assert!(said.contains("in a user namespace of its own (no root, no sudo)"), "{said}");
    assert!(said.contains("no TAP, as nobody (you, with no capabilities)"), "{said}");
    check_ours(&said, 1);
    let left = left_in_group(group);
    assert!(
        !left.lines().any(|l| {
            ["qemu-system", "10_dhcp_server", "12_learning_switch"].iter().any(|p| l.contains(p))
                && !l.starts_with('Z')
        }),
        "still running after cargo lab vm:\n{left}"
    );
}

#[test]
fn vm_help_and_bad_options() {
    let help = Command::new(CARGO_LAB).args(["vm", "--help"]).output().expect("cargo lab vm");
    let said = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "--help failed: {said}");
    for option in ["--network", "--guests", "--keep", "--shell", "--kernel", "--accel", "--strace"]
    {
        assert!(said.contains(option), "--help does not mention {option}:\n{said}");
    }
    let bad: [&[&str]; 9] = [
        &["--accel", "hvf"],
        &["--count", "0"],
        &["--keep", "--shell"],
        &["--network", "slirp"],
        &["--guests", "2"],
        &["--network", "ours", "--guests", "3"],
        &["--network", "ours", "--shell"],
        &["--netns", ""],
        &["--bogus"],
    ];
    for args in bad {
        let out = Command::new(CARGO_LAB).arg("vm").args(args).output().expect("cargo lab vm");
        assert_eq!(out.status.code(), Some(1), "cargo lab vm {args:?} should fail at once");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("cargo lab: error: "), "cargo lab vm {args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "cargo lab vm {args:?} did something first");
    }
}

#[test]
fn reading_the_guests_ping_and_the_responders_counters() {
    // busybox ping's output and 05's counters, from a run of cargo lab vm.
    let output = "PING 172.16.1.2 (172.16.1.2): 56 data bytes\n\
                  64 bytes from 172.16.1.2: seq=0 ttl=64 time=15.188 ms\n\
                  \n    --- 172.16.1.2 ping statistics ---\n\
                  \x20   3 packets transmitted, 2 packets received, 33% packet loss\n";
    let summary = ping_summary(output, "172.16.1.2").expect("a summary");
    assert_eq!(sent_received(&summary), Some((3, 2)));
    assert_eq!(ping_summary(output, "172.16.1.1"), None);
    let counters = "        21  frames read\n         3  ICMP echo replies sent\n";
    assert_eq!(counter(counters, "ICMP echo replies sent"), Some(3));
    assert_eq!(counter(counters, "ARP replies sent"), None);
}

/// `cargo lab vm ARGS --count PINGS --bin BIN` as the unprivileged user, with the release
/// build of BIN a root run made, and a kernel cache of the user's own (its home may not
/// exist); in a process group of its own, whose number it returns too.
fn vm_as_user(args: &[&str], bin: &str) -> (Output, i32) {
    let debug = Path::new(CARGO_LAB).parent().expect("the binary's directory");
    let bin = debug.parent().expect("the target directory").join("release").join(bin);
    let cache = std::env::temp_dir().join(format!("tapbook-vm-cache-{UNPRIVILEGED_USER}"));
    std::fs::create_dir_all(&cache).expect("creating the user's kernel cache");
    run_ok(Command::new("chown").arg(UNPRIVILEGED_USER).arg(&cache));
    let child = Command::new("setpriv")
        .args(["--reuid", UNPRIVILEGED_USER, "--regid", &primary_group(UNPRIVILEGED_USER)])
        .args(["--clear-groups", "--", "env", "HOME=/nonexistent"])
        .arg(format!("TAPBOOK_CACHE={}", cache.display()))
        .arg(CARGO_LAB)
        .arg("vm")
        .args(args)
        .args(["--count", &PINGS.to_string(), "--bin"])
        .arg(&bin)
        .current_dir(repo_root())
        .env_remove("SUDO_USER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("running cargo lab vm as a user");
    let group = child.id() as i32;
    (child.wait_with_output().expect("waiting for cargo lab vm"), group)
}

/// What still runs in process group `group` (`ps` lines "STAT ARGS"): what a run left
/// behind, and nothing of another run of these tests on the same machine.
fn left_in_group(group: i32) -> String {
    let ps = Command::new("ps").args(["-e", "-o", "pgid=,stat=,args="]).output();
    let ps = String::from_utf8_lossy(&ps.expect("running ps").stdout).into_owned();
    ps.lines()
        .filter_map(|l| {
            let (pgid, rest) = l.trim_start().split_once(' ')?;
            (pgid.parse::<i32>().ok()? == group).then(|| format!("{}\n", rest.trim_start()))
        })
        .collect()
}
