//! End to end, IPv6 (chapter 8): the kernel's own `ping -6`, `ndisc6` and neighbour cache
//! against 08 and 05, each running as an unprivileged user in a namespace of its own
//! whose tap4 has fd00:172:16:1::1/64 (scripts/setup.sh adds it, without DAD).

use tapbook_lab as common;
use tapbook_lab::require_lab;

use common::{Lab, RESPONDER_MAC, UNPRIVILEGED_USER, ping_counts};

const BIN_05: &str = env!("CARGO_BIN_EXE_05_full_responder");
const BIN_08: &str = env!("CARGO_BIN_EXE_08_ipv6_responder");

const OUR_IP6: &str = "fd00:172:16:1::2";
/// Our link-local address, from the MAC 02:00:00:00:00:02 by modified EUI-64. A
/// link-local address is ambiguous without its interface: `%tap4` says which link.
const OUR_LINK_LOCAL: &str = "fe80::ff:fe00:2%tap4";

/// The sizes the course promises: empty, odd, ping's default, and the largest that fits
/// a 1500-byte MTU (40 bytes of IPv6 header and 8 of ICMPv6 leave 1452).
const PING6_SIZES: [&str; 4] = ["0", "1", "56", "1452"];

/// `ping -6` with `size` bytes to `addr`: both requests answered, nothing wrong seen.
fn assert_ping6_answered(lab: &Lab, addr: &str, size: &str, log: impl Fn() -> String) {
    let out = lab.ping(&["-6", "-c", "2", "-i", "0.1", "-W", "2", "-s", size, addr]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        ping_counts(&out),
        (2, 2),
        "ping -6 -s {size} {addr}:\n{text}{}\nresponder:\n{}",
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    for bad in ["DUP!", "BAD CHECKSUM", "wrong data", "truncated"] {
        assert!(!text.contains(bad), "ping -6 -s {size} {addr} saw {bad:?}:\n{text}");
    }
}

/// `ndisc6` asks for our MAC with a neighbour solicitation of its own; then the kernel's
/// neighbour cache holds both our addresses as REACHABLE, at our MAC.
fn assert_ndisc6_and_reachable(lab: &Lab, log: impl Fn() -> String) -> String {
    let out = common::run_ok(lab.command("ndisc6").args(["-r", "2", OUR_IP6, &lab.iface]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains(&format!("Target link-layer address: {}", RESPONDER_MAC.to_uppercase()))
            || text.contains(&format!("Target link-layer address: {RESPONDER_MAC}")),
        "ndisc6:\n{text}\nresponder:\n{}",
        log()
    );
    let neigh = lab.ip(&["-6", "neigh", "show", "dev", &lab.iface]);
    for addr in [OUR_IP6, "fe80::ff:fe00:2"] {
        let line = neigh.lines().find(|l| l.starts_with(&format!("{addr} "))).unwrap_or("");
        assert!(
            line.contains(&format!("lladdr {RESPONDER_MAC}")) && line.contains("REACHABLE"),
            "{addr} is not REACHABLE at {RESPONDER_MAC}:\n{neigh}"
        );
    }
    format!("{text}{neigh}")
}

#[test]
fn chapter_8_answers_ping6_and_neighbour_discovery() {
    require_lab!("chapter_8_answers_ping6_and_neighbour_discovery", "ndisc6");
    let mut lab = Lab::with_owner("ipv6-08", UNPRIVILEGED_USER);
    let responder = lab.start(BIN_08, &[], Some(UNPRIVILEGED_USER));
    let log = || responder.output();
    for addr in [OUR_IP6, OUR_LINK_LOCAL] {
        for size in PING6_SIZES {
            assert_ping6_answered(&lab, addr, size, log);
        }
    }
    assert_ndisc6_and_reachable(&lab, log);
    let output = responder.output();
    for line in [
        "-> IPv6 fd00:172:16:1::2 > ",
        "ICMPv6 neighbor advertisement fd00:172:16:1::2 is-at 02:00:00:00:00:02 solicited override",
        "ICMPv6 echo reply",
        "(ignored: IPv6 for another address or group)",
    ] {
        assert!(output.contains(line), "08 printed no {line:?}:\n{output}");
    }
}

#[test]
fn chapter_5_answers_ipv6_too_and_tshark_finds_every_checksum_right() {
    require_lab!(
        "chapter_5_answers_ipv6_too_and_tshark_finds_every_checksum_right",
        "ndisc6",
        "tshark"
    );
    let mut lab = Lab::with_owner("ipv6-05", UNPRIVILEGED_USER);
    let pcap = std::env::temp_dir().join(format!("{}.pcap", lab.netns));
    let mut responder =
        lab.start(BIN_05, &["--pcap", pcap.to_str().unwrap()], Some(UNPRIVILEGED_USER));
    let log = || responder.output();
    for addr in [OUR_IP6, OUR_LINK_LOCAL] {
        for size in PING6_SIZES {
            assert_ping6_answered(&lab, addr, size, log);
        }
    }
    assert_ndisc6_and_reachable(&lab, log);
    // IPv4 still works beside it.
    let out = lab.ping(&["-c", "1", "-W", "2", common::RESPONDER_IP]);
    assert_eq!(ping_counts(&out), (1, 1), "{out:?}");
    let (status, output) = responder.stop();
    assert!(status.is_some_and(|s| s.success()), "{output}");

    let out = common::run_ok(std::process::Command::new("tshark").args([
        "-r",
        pcap.to_str().unwrap(),
        // tshark always verifies ICMPv6 checksums (the pseudo-header included).
        "-Y",
        "icmpv6",
        "-T",
        "fields",
        "-e",
        "eth.src",
        "-e",
        "icmpv6.checksum.status",
        "-e",
        "_ws.col.Info",
        "-e",
        "_ws.expert.message",
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    let ours: Vec<&str> = text.lines().filter(|l| l.starts_with(RESPONDER_MAC)).collect();
    let echo_replies = ours.iter().filter(|l| l.contains("Echo (ping) reply")).count();
    let adverts = ours.iter().filter(|l| l.contains("Neighbor Advertisement")).count();
    assert_eq!(echo_replies, 16, "8 sizes and addresses, twice each; tshark read:\n{text}");
    assert!(adverts >= 2, "an advertisement for each address and for ndisc6:\n{text}");
    // Status 1 is "good"; tshark marks a wrong checksum as status 0 and in the expert info.
    assert!(ours.iter().all(|l| l.split('\t').nth(1) == Some("1")), "{text}");
    assert!(!text.to_lowercase().contains("bad"), "tshark found a bad checksum:\n{text}");
    let counts = |label: &str| {
        output
            .lines()
            .find(|l| l.ends_with(label))
            .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok())
    };
    assert_eq!(counts("ICMPv6 echo replies sent"), Some(16), "{output}");
    let _ = std::fs::remove_file(pcap);
}

#[test]
fn chapter_5_answers_jumbo_ping6_at_mtu_9000() {
    require_lab!("chapter_5_answers_jumbo_ping6_at_mtu_9000");
    let mut lab = Lab::with_owner("ipv6-jumbo", UNPRIVILEGED_USER);
    lab.ip(&["link", "set", "tap4", "mtu", "9000"]);
    let responder = lab.start(BIN_05, &["--quiet"], Some(UNPRIVILEGED_USER));
    // 9000 - 40 - 8: the largest echo that fits, unfragmented (-M do).
    for addr in [OUR_IP6, OUR_LINK_LOCAL] {
        let args = ["-6", "-c", "2", "-i", "0.1", "-W", "2", "-M", "do", "-s", "8952", addr];
        let out = lab.ping(&args);
        assert_eq!(ping_counts(&out), (2, 2), "{out:?}\n{}", responder.output());
    }
}

#[test]
fn chapter_5_answers_for_the_address_ip6_names() {
    require_lab!("chapter_5_answers_for_the_address_ip6_names");
    let mut lab = Lab::with_owner("ipv6-addr", UNPRIVILEGED_USER);
    let responder = lab.start(BIN_05, &["--ip6", "fd00:172:16:1::9"], Some(UNPRIVILEGED_USER));
    assert_ping6_answered(&lab, "fd00:172:16:1::9", "56", || responder.output());
    // Nobody answers for the default address now: the kernel's solicitations go unanswered.
    let out = lab.ping(&["-6", "-c", "1", "-W", "2", OUR_IP6]);
    assert_eq!(ping_counts(&out).1, 0, "{out:?}");
    assert!(responder.output().contains("NDP for another address"), "{}", responder.output());
}
