//! Chapter 10 end to end: busybox `udhcpc`, a real DHCP client, gets its lease from
//! `10_dhcp_server` on the kernel's side of tap4, renews it and releases it; a kernel UDP
//! socket gets its datagrams echoed (and the kernel, which checks every UDP checksum it
//! receives, accepts ours). Each test in a namespace of its own (see `common/mod.rs`).

use tapbook_lab as common;
use tapbook_lab::require_lab;

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::{Lab, RESPONDER_IP, wait_until};

const BIN_10: &str = env!("CARGO_BIN_EXE_10_dhcp_server");

/// The script udhcpc runs at each event (`scripts/dhcp/udhcpc.sh`): it prints the lease
/// and, once bound, puts the address on the interface (the kernel then sends renewals and
/// releases from it).
fn script(_lab: &Lab) -> PathBuf {
    common::repo_root().join("scripts/dhcp/udhcpc.sh")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `udhcpc` in the foreground until it has a lease (or gives up after 3 DISCOVERs).
fn udhcpc(lab: &Lab, extra: &[&str]) -> Output {
    let script = script(lab);
    let mut cmd = lab.command("busybox");
    cmd.args(["udhcpc", "-i", &lab.iface, "-f", "-q", "-n", "-t", "3", "-T", "1", "-s"])
        .arg(&script)
        .args(extra);
    cmd.output().expect("running busybox udhcpc")
}

#[test]
fn udhcpc_gets_its_lease_from_us() {
    require_lab!("udhcpc_gets_its_lease_from_us", "busybox");
    let mut lab = Lab::new("dhcp10");
    let mut server = lab.start(BIN_10, &[], None);
    let out = udhcpc(&lab, &[]);
    let client = text(&out);
    assert!(out.status.success(), "udhcpc failed:\n{client}\nserver:\n{}", server.output());
    assert!(
        client.contains("lease of 172.16.1.100 obtained from 172.16.1.2, lease time 3600"),
        "{client}"
    );
    assert!(
        client.contains(
            "bound ip=172.16.1.100 subnet=255.255.255.0 router=172.16.1.1 lease=3600 \
             serverid=172.16.1.2"
        ),
        "{client}"
    );
    assert!(lab.ip(&["-4", "addr", "show", &lab.iface]).contains("172.16.1.100/24"));
    let (_, log) = server.stop();
    for line in [
        "   DHCP: OFFER 172.16.1.100",
        "   DHCP: ACK 172.16.1.100",
        "-> IPv4 172.16.1.2 > 172.16.1.100 UDP, 308 bytes",
        "         2  DHCP replies sent",
        "1 leases",
    ] {
        assert!(log.contains(line), "no {line:?} in:\n{log}");
    }
    assert!(log.contains("bound"), "{log}");
}

#[test]
fn a_client_that_asks_for_broadcast_gets_broadcast_replies() {
    require_lab!("a_client_that_asks_for_broadcast_gets_broadcast_replies", "busybox");
    let mut lab = Lab::new("dhcpB");
    let mut server = lab.start(BIN_10, &[], None);
    let out = udhcpc(&lab, &["-B"]);
    assert!(out.status.success(), "udhcpc -B failed:\n{}\n{}", text(&out), server.output());
    let (_, log) = server.stop();
    assert!(log.contains("-> IPv4 172.16.1.2 > 255.255.255.255 UDP, 308 bytes"), "{log}");
    assert!(!log.contains("-> IPv4 172.16.1.2 > 172.16.1.100"), "{log}");
}

#[test]
fn udhcpc_renews_and_releases() {
    require_lab!("udhcpc_renews_and_releases", "busybox");
    let mut lab = Lab::new("dhcpR");
    let mut server = lab.start(BIN_10, &[], None);
    let script = script(&lab);
    let log = std::env::temp_dir().join(format!("{}-udhcpc.log", lab.netns));
    let log_file = std::fs::File::create(&log).expect("log file");
    let mut client = lab
        .command("busybox")
        .args(["udhcpc", "-i", &lab.iface, "-f", "-s"])
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        .spawn()
        .expect("starting udhcpc");
    let client_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let say = |signal| {
        let pid = nix::unistd::Pid::from_raw(client.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
    };
    let bound = wait_until(Duration::from_secs(10), || client_log().contains("script: bound"));
    assert!(bound, "no lease:\n{}\nserver:\n{}", client_log(), server.output());
    say(nix::sys::signal::Signal::SIGUSR1); // renew
    let renewed = wait_until(Duration::from_secs(10), || client_log().contains("script: renew"));
    assert!(renewed, "no renewal:\n{}\nserver:\n{}", client_log(), server.output());
    say(nix::sys::signal::Signal::SIGUSR2); // release
    let released =
        wait_until(Duration::from_secs(10), || server.output().contains("RELEASE of 172.16.1.100"));
    say(nix::sys::signal::Signal::SIGTERM);
    let _ = client.wait();
    let (_, out) = server.stop();
    assert!(released, "no release:\n{}\nserver:\n{out}", client_log());
    // The renewal came unicast from the leased address, and the ACK went back to it.
    assert!(out.contains("<- IPv4 172.16.1.100 > 172.16.1.2 UDP, 308 bytes"), "{out}");
    // The first lease, then the renewal. (udhcpc 1.35 sometimes misses the ACK to its
    // unicast renewal and broadcasts the renewal again: a third ACK, not an error of ours.)
    assert!(out.matches("   DHCP: ACK 172.16.1.100").count() >= 2, "{out}");
    assert!(out.contains("0 leases"), "{out}");
    assert!(client_log().contains("unicasting a release of 172.16.1.100"), "{}", client_log());
}

/// Sends `payload` from a kernel UDP socket in the namespace to `dst` port 7 and prints
/// what comes back within a second, as hex, or "timeout".
fn udp_echo(lab: &Lab, dst: &str, payload_hex: &str) -> String {
    let program = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)\n\
         s.settimeout(1.0)\n\
         s.sendto(bytes.fromhex('{payload_hex}'), ('{dst}', 7))\n\
         try:\n    data, peer = s.recvfrom(65535)\n    print(peer[0], peer[1], data.hex())\n\
         except socket.timeout:\n    print('timeout')\n"
    );
    let out = lab.command("python3").args(["-c", &program]).output().expect("running python3");
    assert!(out.status.success(), "python3: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The kernel's count of UDP datagrams it dropped for a bad checksum.
fn udp_checksum_errors(lab: &Lab) -> u64 {
    let snmp = lab.command("cat").arg("/proc/net/snmp").output().expect("reading /proc/net/snmp");
    let snmp = String::from_utf8_lossy(&snmp.stdout).into_owned();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap_or(""), udp.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "InCsumErrors")
        .and_then(|(_, value)| value.parse().ok())
        .expect("InCsumErrors in /proc/net/snmp")
}

#[test]
fn a_kernel_udp_socket_gets_its_datagrams_echoed() {
    require_lab!("a_kernel_udp_socket_gets_its_datagrams_echoed", "python3");
    let mut lab = Lab::new("udp10");
    let mut server = lab.start(BIN_10, &[], None);
    let big = "a5".repeat(1472);
    for payload in ["68656c6c6f", "", "00", &big] {
        let echoed = udp_echo(&lab, RESPONDER_IP, payload);
        assert_eq!(
            echoed,
            format!("{RESPONDER_IP} 7 {payload}").trim_end(),
            "{} bytes\nserver:\n{}",
            payload.len() / 2,
            server.output()
        );
    }
    // The kernel verified every checksum we computed: a wrong one is counted and dropped.
    assert_eq!(udp_checksum_errors(&lab), 0);
    // To the subnet's broadcast address: no answer (no amplifier).
    assert_eq!(udp_echo(&lab, "172.16.1.255", "68656c6c6f"), "timeout");
    let (_, log) = server.stop();
    assert!(log.contains("         4  UDP echo replies sent"), "{log}");
    assert!(log.contains("(ignored: not our MAC)"), "{log}");
}

#[test]
fn hostile_dhcp_from_the_kernel_side_is_dropped_and_counted() {
    require_lab!("hostile_dhcp_from_the_kernel_side_is_dropped_and_counted", "python3");
    let mut lab = Lab::new("dhcpX");
    let mut server = lab.start(BIN_10, &[], None);
    // From a kernel UDP socket bound to port 68: a BOOTREQUEST with a wrong magic
    // cookie, one whose option runs past the end, and one with no End option.
    let program = r#"
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('172.16.1.1', 68))
mac = bytes.fromhex(open('/sys/class/net/tap4/address').read().strip().replace(':', ''))
fixed = struct.pack('!BBBBIHH', 1, 1, 6, 0, 0x1234, 0, 0) + bytes(16) + mac + bytes(10 + 192)
for body in [bytes.fromhex('63825364350101ff'),     # magic cookie 99.130.83.100
             bytes.fromhex('63825363350101' + '0c40' + '6162'),  # option 12 claims 64 bytes
             bytes.fromhex('63825363350101')]:      # no End option
    s.sendto(fixed + body, ('172.16.1.2', 67))
"#;
    let out = lab.command("python3").args(["-c", program]).output().expect("running python3");
    assert!(out.status.success(), "python3: {}", text(&out));
    let counted = wait_until(Duration::from_secs(5), || {
        server.output().matches("(ignored: DHCP malformed)").count() == 3
    });
    let (_, log) = server.stop();
    assert!(counted, "{log}");
    assert!(log.contains("         3    DHCP malformed"), "{log}");
    assert!(log.contains("0 leases"), "{log}");
}
