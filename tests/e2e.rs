//! End to end with the kernel's real clients: `ping` and `arping` against the chapter
//! binaries, each running as a separate process in a network namespace of its own.
//! See `common/mod.rs` for the lab; these tests need root and say so when skipped.

use tapbook_lab as common;
use tapbook_lab::require_lab;

use std::time::Duration;

use common::{Lab, RESPONDER_IP, RESPONDER_MAC, UNPRIVILEGED_USER, ping_counts};

const BIN_01: &str = env!("CARGO_BIN_EXE_01_open_clone");
const BIN_02: &str = env!("CARGO_BIN_EXE_02_hexdump");
const BIN_03: &str = env!("CARGO_BIN_EXE_03_arp_reply");
const BIN_04: &str = env!("CARGO_BIN_EXE_04_icmp_reply");
const BIN_05: &str = env!("CARGO_BIN_EXE_05_full_responder");

/// The payload sizes the course promises: empty, odd, ping's default, and the largest
/// that fits a 1500-byte MTU (a 1514-byte frame, which the C original truncated).
const PING_SIZES: [&str; 4] = ["0", "1", "56", "1472"];

/// Pings the responder `count` times with `size` bytes of data and asserts every request
/// got exactly one correct reply (ping itself checks the ICMP checksum and the data).
fn assert_ping_answered(lab: &Lab, size: &str, count: u32, log: impl Fn() -> String) {
    let out =
        lab.ping(&["-c", &count.to_string(), "-i", "0.1", "-W", "2", "-s", size, RESPONDER_IP]);
    let text = String::from_utf8_lossy(&out.stdout);
    let (sent, received) = ping_counts(&out);
    assert!(
        out.status.success() && sent == count && received == count,
        "ping -s {size}: {received} of {sent} answered\n{text}{}\nresponder:\n{}",
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    for bad in ["DUP!", "BAD CHECKSUM", "wrong data", "truncated"] {
        assert!(!text.contains(bad), "ping -s {size} saw {bad:?}:\n{text}");
    }
}

/// arping from the kernel's side: every request answered, with our MAC.
fn assert_arping_answered(lab: &Lab, log: impl Fn() -> String) {
    let out = lab.arping(&["-c", "3", "-w", "5", "-I", &lab.iface, RESPONDER_IP]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "arping failed:\n{text}\nresponder:\n{}", log());
    let replies = text.lines().filter(|l| l.contains(RESPONDER_MAC)).count();
    assert_eq!(replies, 3, "arping replies with {RESPONDER_MAC}:\n{text}\nresponder:\n{}", log());
}

#[test]
fn chapter_3_answers_arping() {
    require_lab!("chapter_3_answers_arping");
    let mut lab = Lab::new("arp03");
    let responder = lab.start(BIN_03, &[], None);
    assert_arping_answered(&lab, || responder.output());
    let output = responder.output();
    assert!(output.contains("<- ARP who-has 172.16.1.2 tell 172.16.1.1"), "{output}");
    assert!(output.contains("-> ARP reply 172.16.1.2 is-at 02:00:00:00:00:02"), "{output}");
}

#[test]
fn chapter_3_answers_arp_for_our_address_only() {
    require_lab!("chapter_3_answers_arp_for_our_address_only");
    let mut lab = Lab::new("arponly");
    let responder = lab.start(BIN_03, &[], None);
    let out = lab.arping(&["-c", "2", "-w", "3", "-I", &lab.iface, "172.16.1.77"]);
    assert!(
        !out.status.success(),
        "arping for 172.16.1.77 got an answer:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // ...and chapter 3 resolves ARP for ping but does not answer the ping itself.
    let out = lab.ping(&["-c", "2", "-i", "0.2", "-W", "1", RESPONDER_IP]);
    assert_eq!(ping_counts(&out).1, 0, "03 answered a ping:\n{}", responder.output());
    assert!(lab.ip(&["neigh", "show", RESPONDER_IP]).contains(RESPONDER_MAC));
}

#[test]
fn chapter_4_answers_ping_of_every_size() {
    require_lab!("chapter_4_answers_ping_of_every_size");
    let mut lab = Lab::new("ping04");
    let responder = lab.start(BIN_04, &[], None);
    for size in PING_SIZES {
        assert_ping_answered(&lab, size, 3, || responder.output());
    }
    let output = responder.output();
    assert!(output.contains("verified: IPv4 header checksum 0x"), "{output}");
    assert!(output.contains("computed: IPv4 header checksum 0x"), "{output}");
    assert!(output.contains("ICMP echo reply"), "{output}");
}

#[test]
fn chapter_5_answers_ping_and_arping_as_an_unprivileged_user() {
    require_lab!("chapter_5_answers_ping_and_arping_as_an_unprivileged_user");
    // As after `sudo scripts/setup.sh`: the tap belongs to the user, who runs the
    // responder with no privileges at all.
    let mut lab = Lab::with_owner("user05", UNPRIVILEGED_USER);
    let owner = lab.command("cat").arg("/sys/class/net/tap4/owner").output().unwrap();
    let nobody_uid = String::from_utf8_lossy(
        &common::run_ok(std::process::Command::new("id").args(["-u", UNPRIVILEGED_USER])).stdout,
    )
    .trim()
    .to_owned();
    assert_eq!(String::from_utf8_lossy(&owner.stdout).trim(), nobody_uid);

    let mut responder = lab.start(BIN_05, &[], Some(UNPRIVILEGED_USER));
    for size in PING_SIZES {
        assert_ping_answered(&lab, size, 3, || responder.output());
    }
    assert_arping_answered(&lab, || responder.output());

    let (status, output) = responder.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM should end 05 with status 0: {status:?}\n{output}"
    );
    assert!(output.contains("ICMP echo replies sent"), "no counters printed:\n{output}");
    let echo_replies = output
        .lines()
        .find(|l| l.ends_with("ICMP echo replies sent"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u32>().ok());
    assert_eq!(echo_replies, Some(12), "{output}");
}

#[test]
fn chapter_5_pcap_opens_in_tshark() {
    require_lab!("chapter_5_pcap_opens_in_tshark", "tshark");
    let mut lab = Lab::new("pcap05");
    let pcap = std::env::temp_dir().join(format!("{}.pcap", lab.netns));
    let mut responder = lab.start(BIN_05, &["--quiet", "--pcap", pcap.to_str().unwrap()], None);
    assert_ping_answered(&lab, "56", 2, || responder.output());
    let (status, output) = responder.stop();
    assert!(status.is_some_and(|s| s.success()), "{output}");
    assert!(!output.contains("<- "), "--quiet printed per-frame lines:\n{output}");
    let out = common::run_ok(std::process::Command::new("tshark").args([
        "-r",
        pcap.to_str().unwrap(),
        "-o",
        "ip.check_checksum:TRUE",
        "-T",
        "fields",
        "-e",
        "eth.src",
        "-e",
        "ip.src",
        "-e",
        "_ws.col.Info",
        "-e",
        "_ws.expert.message",
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    let replies: Vec<&str> = text.lines().filter(|l| l.contains("Echo (ping) reply")).collect();
    assert_eq!(replies.len(), 2, "tshark read:\n{text}");
    assert!(replies.iter().all(|l| l.starts_with(RESPONDER_MAC)), "{text}");
    assert!(!text.to_lowercase().contains("bad"), "tshark found a bad checksum:\n{text}");
    let _ = std::fs::remove_file(pcap);
}

#[test]
fn chapter_1_shows_a_persistent_tap_survive_and_a_transient_one_vanish() {
    require_lab!("chapter_1_shows_a_persistent_tap_survive_and_a_transient_one_vanish");
    let mut lab = Lab::new("clone01");
    // The persistent tap4 made by setup.sh; stdin is empty, so 01 closes at once.
    let mut persistent = lab.spawn(BIN_01, &[], None);
    assert!(
        persistent.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()),
        "{}",
        persistent.output()
    );
    let text = persistent.output();
    for expected in
        ["/dev/net/tun", "iff:\ttap4", "tun_flags  0x1802", "still exists: it is persistent"]
    {
        assert!(text.contains(expected), "01 output lacks {expected:?}:\n{text}");
    }
    // A name nobody made: root may create it, and it goes away with the descriptor.
    let mut transient = lab.spawn(BIN_01, &["--iface", "tapx"], None);
    assert!(
        transient.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()),
        "{}",
        transient.output()
    );
    let text = transient.output();
    assert!(text.contains("tun_flags  0x1002"), "{text}");
    assert!(text.contains("tapx vanished"), "{text}");
    assert!(!lab.ip(&["-o", "link"]).contains("tapx"));
}

#[test]
fn chapter_2_dumps_what_the_kernel_sends() {
    require_lab!("chapter_2_dumps_what_the_kernel_sends");
    let mut lab = Lab::new("dump02");
    let mut responder = lab.start(BIN_02, &[], None);
    // Nobody answers, but the kernel's ARP request goes out of tap4 and 02 shows it.
    let _ = lab.ping(&["-c", "1", "-W", "1", RESPONDER_IP]);
    let shown = common::wait_until(Duration::from_secs(5), || {
        responder.stdout_text().contains("ARP who-has 172.16.1.2")
    });
    let (status, output) = responder.stop();
    assert!(shown, "02 did not show the ARP request:\n{output}");
    assert!(status.is_some_and(|s| s.success()), "{output}");
    assert!(output.contains("Ethernet header (14 bytes)"), "{output}");
    assert!(output.contains("ARP packet (28 bytes)"), "{output}");
}

#[test]
fn chapter_5_answers_the_all_zero_echo_request() {
    require_lab!("chapter_5_answers_the_all_zero_echo_request", "tshark");
    // ping numbers its requests from 1 and wraps to 0 after 65535. With identifier 0
    // (-e 0) and no data (-s 0), request number 65536 is all zeros but its type: the one
    // echo request whose reply needs the checksum 0xffff, where RFC 1624's incremental
    // update gives 0x0000, which the kernel rejects (see respond::echo_reply).
    let mut lab = Lab::new("zero05");
    let pcap = std::env::temp_dir().join(format!("{}.pcap", lab.netns));
    let mut responder = lab.start(BIN_05, &["--quiet", "--pcap", pcap.to_str().unwrap()], None);
    let out = lab.ping(&["-f", "-q", "-e", "0", "-s", "0", "-c", "65536", "-W", "2", RESPONDER_IP]);
    let (status, output) = responder.stop();
    assert!(status.is_some_and(|s| s.success()), "{output}");
    assert_eq!(ping_counts(&out), (65536, 65536), "{}", String::from_utf8_lossy(&out.stdout));
    let fields = common::run_ok(std::process::Command::new("tshark").args([
        "-r",
        pcap.to_str().unwrap(),
        "-Y",
        "icmp.type == 0 && icmp.ident == 0 && icmp.seq == 0",
        "-T",
        "fields",
        "-e",
        "icmp.checksum",
    ]));
    let _ = std::fs::remove_file(&pcap);
    assert_eq!(String::from_utf8_lossy(&fields.stdout).trim(), "0xffff");
}

/// The lines ping prints for the route or the timestamps a reply brought back (`RR:` or
/// `TS:`): one entry a line, the tab-separated fields of each.
fn option_lines(ping_output: &str, label: &str) -> Vec<Vec<String>> {
    let Some(start) = ping_output.find(&format!("{label} \t")) else { return Vec::new() };
    // What follows "RR: " is the first entry's tab and fields; each further line, too.
    ping_output[start + label.len() + 1..]
        .lines()
        .take_while(|line| line.starts_with('\t'))
        .map(|line| line.split('\t').skip(1).map(str::to_owned).collect())
        .collect()
}

// ANCHOR: options_e2e
#[test]
fn chapter_5_returns_the_route_and_the_timestamps_as_linux_does() {
    require_lab!("chapter_5_returns_the_route_and_the_timestamps_as_linux_does");
    // Against Linux itself (a veth pair between two namespaces), `ping -R` prints
    //   RR: 172.16.1.1 / 172.16.1.2 / 172.16.1.2 / 172.16.1.1
    // The pinging kernel records itself as the request leaves and as the reply arrives;
    // the replier does it as the request arrives and as the reply leaves.
    let mut lab = Lab::with_owner("opts05", UNPRIVILEGED_USER);
    let mut responder = lab.start(BIN_05, &[], Some(UNPRIVILEGED_USER));
    let ping = |args: &[&str]| {
        let mut all = vec!["-c", "1", "-W", "2"];
        all.extend_from_slice(args);
        all.push(RESPONDER_IP);
        let out = lab.ping(&all);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(ping_counts(&out), (1, 1), "ping {args:?}:\n{text}\n{}", responder.output());
        text
    };
    let route = ["172.16.1.1", "172.16.1.2", "172.16.1.2", "172.16.1.1"];

    let text = ping(&["-R"]);
    let rr: Vec<String> = option_lines(&text, "RR:").into_iter().flatten().collect();
    assert_eq!(rr, route, "ping -R:\n{text}");

    // ping -T prints the first timestamp in milliseconds since midnight UT, the others
    // as differences from the one before: ours come from the same clock as the kernel's.
    let text = ping(&["-T", "tsonly"]);
    let ts = option_lines(&text, "TS:");
    assert_eq!(ts.len(), 4, "ping -T tsonly:\n{text}");
    assert!(ts[0][0].ends_with(" absolute"), "ping -T tsonly:\n{text}");
    for later in &ts[1..] {
        let ms: i64 = later[0].parse().unwrap_or(i64::MAX);
        assert!(
            ms.abs() < 1000,
            "a timestamp {ms} ms off: not milliseconds since midnight UT?\n{text}"
        );
    }

    let text = ping(&["-T", "tsandaddr"]);
    let ts = option_lines(&text, "TS:");
    let addrs: Vec<&str> = ts.iter().map(|entry| entry[0].as_str()).collect();
    assert_eq!(addrs, route, "ping -T tsandaddr:\n{text}");
    assert!(ts[1..].iter().all(|e| e[1].parse::<i64>().is_ok_and(|ms| ms.abs() < 1000)), "{text}");

    let (status, output) = responder.stop();
    assert!(status.is_some_and(|s| s.success()), "{output}");
}
// ANCHOR_END: options_e2e

#[test]
fn chapter_5_gives_every_reply_an_identification_of_its_own() {
    require_lab!("chapter_5_gives_every_reply_an_identification_of_its_own", "tshark");
    // `ping -M do` sends atomic datagrams (DF set) with identification 0, which RFC 6864
    // allows. The replies leave with DF clear, as Linux's do, so a router may fragment
    // them, and then their identifications must differ (RFC 791, RFC 6864 section 4).
    let mut lab = Lab::new("ident05");
    let pcap = std::env::temp_dir().join(format!("{}.pcap", lab.netns));
    let mut responder = lab.start(BIN_05, &["--quiet", "--pcap", pcap.to_str().unwrap()], None);
    let out = lab.ping(&["-M", "do", "-c", "5", "-i", "0.2", "-W", "2", RESPONDER_IP]);
    let (status, output) = responder.stop();
    assert!(status.is_some_and(|s| s.success()), "{output}");
    assert_eq!(ping_counts(&out), (5, 5), "{}", String::from_utf8_lossy(&out.stdout));
    let fields = common::run_ok(std::process::Command::new("tshark").args([
        "-r",
        pcap.to_str().unwrap(),
        "-Y",
        "icmp",
        "-T",
        "fields",
        "-e",
        "icmp.type",
        "-e",
        "ip.id",
        "-e",
        "ip.flags.df",
    ]));
    let _ = std::fs::remove_file(&pcap);
    let text = String::from_utf8_lossy(&fields.stdout);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let requests: Vec<&Vec<&str>> = rows.iter().filter(|r| r[0] == "8").collect();
    let replies: Vec<&Vec<&str>> = rows.iter().filter(|r| r[0] == "0").collect();
    assert_eq!((requests.len(), replies.len()), (5, 5), "{text}");
    assert!(requests.iter().all(|r| r[1] == "0x0000" && r[2] == "1"), "ping -M do sent:\n{text}");
    assert!(replies.iter().all(|r| r[2] == "0"), "a reply with DF set:\n{text}");
    let idents: std::collections::HashSet<&str> = replies.iter().map(|r| r[1]).collect();
    assert_eq!(idents.len(), 5, "replies with the same identification:\n{text}");
}
