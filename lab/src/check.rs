//! `cargo lab check [CHAPTER] [--junit FILE]`: grades the checkout it runs in, chapter by
//! chapter, as a course's checker does (CS144's `make check`, rustlings' `check`).
//!
//! Tier (a), no privilege: the tests of `src/respond/coursework.rs`, one rule each, on
//! frames captured from the kernel; [`CHECKS`] gives each one the line a student reads
//! when it fails: what went wrong, and where to read in the book (never the reference's
//! code). Tier (b): the student's own programs in a lab namespace (rootless when not
//! root), with the kernel's `arping` and `ping` talking to them.
//!
//! A `todo!("chapter N: ...")` reached, in a test or a program, is "not implemented yet".
//! The score is the checks passed, per chapter and in total; a check that could not run
//! (no lab here) is "skipped" and earns nothing. `--junit FILE` writes the same as JUnit
//! XML, which GitHub Classroom, Gradescope and most CI read.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use crate::{Lab, RESPONDER_IP, cargo, is_root, lab_user, repo_root, say, target_dir, tool_exists};

pub const USAGE: &str = "\
Usage: cargo lab check [CHAPTER] [OPTIONS]

Grade this checkout, chapter by chapter (1 to 5, or only CHAPTER):
  tier a  unit tests on frames captured from the kernel (no privilege needed)
  tier b  your programs in a lab namespace, with the kernel's arping and ping
For each check: pass, FAIL with what went wrong and where to read in the
book, todo (not implemented yet), or skipped (could not run here). Then a
score per chapter and in total. Exits 0 when every check that ran passed.

Options:
  --junit FILE  also write the results as JUnit XML (for a classroom's CI)
  --tier a|b    run one tier only
  -h, --help    this help

The unit checks stop after 600 s (TAPBOOK_CHECK_TIMEOUT=SECONDS): an endless
loop fails the checks that had not finished.
";

/// The book's chapters that have checks.
pub const CHAPTERS: [(u8, &str); 5] = [
    (1, "Clone devices and ioctl"),
    (2, "Reading frames"),
    (3, "ARP"),
    (4, "IPv4, ICMP and the internet checksum"),
    (5, "A full responder"),
];

/// One check: its id (the test's path under `respond::coursework::`, or `lab::...`), its
/// chapter, the rule it checks, what a failure means, and where to read.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    pub id: &'static str,
    pub chapter: u8,
    pub rule: &'static str,
    pub fail: &'static str,
    pub read: &'static str,
}

const fn check(
    id: &'static str,
    chapter: u8,
    rule: &'static str,
    fail: &'static str,
    read: &'static str,
) -> Check {
    Check { id, chapter, rule, fail, read }
}

/// Every check, in the order they are shown. Lines fit 78 columns with their indent.
pub const CHECKS: &[Check] = &[
    check(
        "lab::open_clone",
        1,
        "01_open_clone attaches tap4 as IFF_TAP | IFF_NO_PI",
        "01_open_clone did not attach tap4 with IFF_TAP and IFF_NO_PI",
        "Clone devices and ioctl, \"TUNSETIFF and struct ifreq\"",
    ),
    check(
        "ch2::summary_names_a_runt",
        2,
        "a frame shorter than 14 bytes is summarised as a runt",
        "the summary of a 10-byte frame is not \"runt frame, 10 bytes (...)\"",
        "Reading frames, \"Ethernet II\"",
    ),
    check(
        "ch2::summary_names_an_unknown_ethertype",
        2,
        "an unknown EtherType is named in hex, with the frame's length",
        "the summary of EtherType 0x88b5 is not \"EtherType 0x88b5, 60 bytes\"",
        "Reading frames, \"EtherTypes\"",
    ),
    check(
        "ch2::dump_labels_each_part_with_frame_offsets",
        2,
        "the hex dump labels each header and counts offsets from the frame",
        "the dump's labels or offsets are wrong (the payload starts at 000e)",
        "Reading frames, \"Reading a hex dump\"",
    ),
    check(
        "ch2::read_buffer_holds_a_full_frame",
        2,
        "the read buffer holds a full 1514-byte frame",
        "FRAME_BUFFER_LEN is shorter than 1500 bytes of IP plus 14 of Ethernet",
        "Reading frames, \"Why the buffer is MTU + 14\"",
    ),
    check(
        "ch3::answers_arping_byte_for_byte",
        3,
        "arping for 172.16.1.2 gets the kernel's own reply, byte for byte",
        "the reply to arping differs from the kernel's (or there is none)",
        "ARP, \"Who-has and is-at\"",
    ),
    check(
        "ch3::answers_the_kernels_who_has",
        3,
        "the reply goes to the asker, from our MAC, with our IP as sender",
        "the reply's addresses are wrong: to the asker, from your MAC and IP",
        "ARP, \"Who-has and is-at\"",
    ),
    check(
        "ch3::ignores_who_has_for_other_addresses",
        3,
        "a who-has for 172.16.1.9 gets no reply",
        "a who-has for 172.16.1.9 got a reply: answer only your own address",
        "ARP, \"Answer only for our own address\"",
    ),
    check(
        "ch3::ignores_arp_replies",
        3,
        "an ARP reply (operation 2) gets no reply",
        "an ARP reply got a reply: answer requests (operation 1) only",
        "ARP, \"Who-has and is-at\"",
    ),
    check(
        "ch3::arp_view_checks_length_and_types",
        3,
        "the ARP view refuses short packets and non-Ethernet/IPv4 ARP",
        "ArpPacket::new_checked accepts a short or a non-Ethernet/IPv4 packet",
        "ARP, \"The packet\"",
    ),
    check(
        "ch3::drops_every_truncated_request",
        3,
        "every truncation of a request is dropped, without a panic",
        "a truncated ARP request was answered, or made the code panic",
        "ARP, \"The packet\"",
    ),
    check(
        "lab::arping",
        3,
        "03_arp_reply answers the kernel's arping for 172.16.1.2",
        "the kernel's arping for 172.16.1.2 got no reply from 03_arp_reply",
        "ARP, \"Run it\"",
    ),
    check(
        "lab::arping_other",
        3,
        "03_arp_reply stays silent to arping for 172.16.1.9",
        "arping for 172.16.1.9 got a reply: answer only for your own address",
        "ARP, \"Answer only for our own address\"",
    ),
    check(
        "ch4::checksum_agrees_with_rfc_1071",
        4,
        "the internet checksum agrees with RFC 1071 for every length",
        "the checksum differs from RFC 1071's (look at odd lengths)",
        "IPv4, ICMP..., \"The internet checksum\"",
    ),
    check(
        "ch4::ipv4_view_rejects_what_cannot_be_read",
        4,
        "the IPv4 view refuses bad versions, header and total lengths",
        "Ipv4Packet::new_checked accepted a packet its accessors cannot read",
        "IPv4, ICMP..., \"The IPv4 header\"",
    ),
    check(
        "ch4::ipv4_payload_stops_at_total_length",
        4,
        "the IPv4 payload starts after the options and ends at total length",
        "the IPv4 payload includes options or Ethernet padding",
        "IPv4, ICMP..., \"Total length versus Ethernet padding\"",
    ),
    check(
        "ch4::ipv4_header_checksum_verifies_and_fills",
        4,
        "the IPv4 header checksum is verified and filled over the header",
        "the IPv4 header checksum is not verified or filled as the kernel's",
        "IPv4, ICMP..., \"Verifying versus computing\"",
    ),
    check(
        "ch4::icmp_checksum_covers_every_byte",
        4,
        "the ICMP checksum covers the whole message, odd lengths too",
        "the ICMP checksum misses bytes of the message (its data, or the last)",
        "IPv4, ICMP..., \"Verifying versus computing\"",
    ),
    check(
        "ch4::echo_reply_matches_the_kernels",
        4,
        "the echo reply is the kernel's but for the identification",
        "the echo reply differs from the kernel's, or its IPv4 checksum is bad",
        "IPv4, ICMP..., \"The responder: echo_reply\"",
    ),
    check(
        "ch4::echo_reply_of_odd_length_verifies",
        4,
        "ping -s 1 (an odd-length message) gets a valid reply",
        "ping -s 1 got no reply, or one with a bad ICMP checksum",
        "IPv4, ICMP..., \"The internet checksum\"",
    ),
    check(
        "ch4::echo_reply_after_ip_options",
        4,
        "ping -R (a 60-byte IPv4 header) gets the request's data back",
        "ping -R: the header is not 20 bytes; read IHL for its length",
        "IPv4, ICMP..., \"Header length and options\"",
    ),
    check(
        "ch4::echo_reply_leaves_the_padding_out",
        4,
        "Ethernet padding after the IPv4 packet is not echoed",
        "the reply echoed Ethernet padding: cut the payload at total length",
        "IPv4, ICMP..., \"Total length versus Ethernet padding\"",
    ),
    check(
        "ch4::echo_reply_goes_back_to_the_sender",
        4,
        "the reply goes to the sender's MAC and IP, from ours",
        "the reply's Ethernet or IPv4 addresses are not swapped right",
        "IPv4, ICMP..., \"The path of one ping\"",
    ),
    check(
        "ch4::ignores_echo_replies",
        4,
        "an echo reply gets no reply",
        "an echo reply got a reply: answer echo requests (type 8) only",
        "A full responder, \"Replies to every ICMP message\"",
    ),
    check(
        "ch4::ignores_a_damaged_icmp_message",
        4,
        "an ICMP message with a bad checksum gets no reply",
        "a damaged ICMP message got a reply: verify its checksum first",
        "IPv4, ICMP..., \"Verifying versus computing\"",
    ),
    check(
        "ch5::answers_ping",
        5,
        "a ping for 172.16.1.2 is answered",
        "a valid ping for 172.16.1.2 got no reply",
        "A full responder, \"Validation: what to drop, and why\"",
    ),
    check(
        "ch5::answers_a_dialogue_of_arp_then_ping",
        5,
        "an arping, then a ping, then a damaged ping: reply, reply, nothing",
        "a dialogue of arping, ping and a damaged ping went wrong",
        "A full responder, \"Validation: what to drop, and why\"",
    ),
    check(
        "ch5::ignores_a_damaged_ipv4_header",
        5,
        "a packet with a bad IPv4 header checksum is dropped",
        "a damaged IPv4 header was answered: verify the header checksum",
        "A full responder, \"Validation: what to drop, and why\"",
    ),
    check(
        "ch5::ignores_ping_for_other_addresses",
        5,
        "a ping for 172.16.1.9 is dropped",
        "a ping for 172.16.1.9 was answered: check the destination address",
        "A full responder, \"Validation: what to drop, and why\"",
    ),
    check(
        "ch5::ignores_impossible_sources",
        5,
        "pings from broadcast, multicast, 0/8, loopback or us are dropped",
        "a ping from an address no host may use was answered",
        "A full responder, \"Validation: what to drop, and why\"",
    ),
    check(
        "ch5::ignores_frames_for_other_macs",
        5,
        "a frame for another MAC is dropped",
        "a frame for 02:00:00:00:00:09 was answered: check the destination MAC",
        "A full responder, \"Validation: what to drop, and why\"",
    ),
    check(
        "ch5::drops_every_truncated_ping",
        5,
        "every truncation of a ping is dropped, without a panic",
        "a truncated ping was answered, or made the code panic",
        "A full responder, \"Garbage crashes it\"",
    ),
    check(
        "lab::ping",
        5,
        "05_full_responder answers the kernel's ping, 56 and 1472 bytes",
        "the kernel's ping (56 or 1472 bytes) got no reply from 05",
        "A full responder, \"A 1500-byte read buffer\" and \"Run it\"",
    ),
];

/// How a check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Failed; the detail is a line of what happened (a panic's message), if any.
    Fail(Option<String>),
    /// A `todo!()` was reached: its message ("chapter 4: the IPv4 view").
    Todo(String),
    /// Could not run here; why.
    Skipped(String),
}

/// The results of one run, in [`CHECKS`]' order.
pub type Results = Vec<(Check, Outcome)>;

pub fn command(args: &[String]) -> Result<ExitCode, String> {
    let mut chapter = None;
    let mut junit = None;
    let mut tiers = (true, true);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                say(USAGE.trim_end());
                return Ok(ExitCode::SUCCESS);
            }
            "--junit" => junit = Some(rest.next().ok_or("--junit needs a FILE")?.clone()),
            "--tier" => {
                tiers = match rest.next().map(String::as_str) {
                    Some("a") => (true, false),
                    Some("b") => (false, true),
                    _ => return Err("--tier needs a or b".into()),
                }
            }
            n if n.parse::<u8>().is_ok_and(|n| CHAPTERS.iter().any(|(c, _)| *c == n)) => {
                chapter = n.parse().ok();
            }
            other => return Err(format!("no chapter or option '{other}' (1 to 5; --help)")),
        }
    }
    let results = run(&repo_root(), chapter, tiers);
    say(report(&results).trim_end());
    if let Some(file) = junit {
        std::fs::write(&file, junit_xml(&results)).map_err(|e| format!("writing {file}: {e}"))?;
        say(format_args!("JUnit XML written to {file}"));
    }
    let skip_fails = std::env::var_os("CI").is_some();
    let ok = results.iter().all(|(_, o)| match o {
        Outcome::Pass => true,
        Outcome::Skipped(_) => !skip_fails,
        _ => false,
    });
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Runs the checks of `chapter` (or all) in the checkout at `root`.
pub fn run(root: &Path, chapter: Option<u8>, (tier_a, tier_b): (bool, bool)) -> Results {
    let wanted = |c: &Check| chapter.is_none_or(|n| n == c.chapter);
    let mut results: Results = Vec::new();
    if tier_a {
        let filter = match chapter {
            Some(n) => format!("respond::coursework::ch{n}::"),
            None => "respond::coursework::".to_owned(),
        };
        let unit = unit_tests(root, &filter);
        for c in CHECKS.iter().filter(|c| wanted(c) && !c.id.starts_with("lab::")) {
            let outcome = match &unit {
                Err(why) => Outcome::Fail(Some(why.clone())),
                Ok(run) => match run.found.iter().find(|(id, _)| id == c.id) {
                    Some((_, outcome)) => outcome.clone(),
                    None if run.timed_out => Outcome::Fail(Some(format!(
                        "did not finish within {} s: an endless loop?",
                        unit_timeout().as_secs()
                    ))),
                    None => Outcome::Fail(Some("this check did not run".into())),
                },
            };
            results.push((*c, outcome));
        }
    }
    if tier_b {
        let lab_checks: Vec<Check> =
            CHECKS.iter().filter(|c| wanted(c) && c.id.starts_with("lab::")).copied().collect();
        if !lab_checks.is_empty() {
            results.extend(lab_tests(root, &lab_checks));
        }
    }
    // Show them in the table's order.
    results.sort_by_key(|(c, _)| CHECKS.iter().position(|k| k.id == c.id));
    results
}

/// How long the unit checks may take, their compilation included, before the rest count
/// as not finished (a student's endless loop must not hang a classroom's CI): 600 s, or
/// `TAPBOOK_CHECK_TIMEOUT` seconds.
fn unit_timeout() -> Duration {
    let secs = std::env::var("TAPBOOK_CHECK_TIMEOUT").ok().and_then(|s| s.parse().ok());
    Duration::from_secs(secs.unwrap_or(600))
}

/// What [`unit_tests`] found: each test's id and outcome, and whether it had to stop them.
struct UnitRun {
    found: Vec<(String, Outcome)>,
    timed_out: bool,
}

/// Runs the unit tests matching `filter` in `root`: each test's id and outcome, or why
/// none could run (the code does not compile).
fn unit_tests(root: &Path, filter: &str) -> Result<UnitRun, String> {
    use std::os::unix::process::CommandExt;
    let dir = std::env::temp_dir().join(format!("tapbook-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    let file = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut child = cargo()
        .current_dir(root)
        .args(["test", "--lib", "--color", "never", filter, "--", "--color", "never"])
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(file(&out_path)?)
        .stderr(file(&err_path)?)
        // A group of its own, so that a timeout stops the test binary under cargo too.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("running cargo test: {e}"))?;
    let started = std::time::Instant::now();
    let mut timed_out = false;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > unit_timeout() || crate::stopped() => {
                let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
                let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                timed_out = true;
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("waiting for cargo test: {e}")),
        }
    }
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    if !timed_out && !stdout.contains("test result:") {
        return Err(format!("does not compile: {}", compile_error(&stderr)));
    }
    Ok(UnitRun { found: parse_test_output(&stdout), timed_out })
}

/// The compiler's first error in cargo's `stderr`, and on a second line where it is.
fn compile_error(stderr: &str) -> String {
    let mut lines = stderr.lines().skip_while(|l| !l.starts_with("error"));
    let first = lines.next().unwrap_or("cargo failed");
    match lines.find(|l| l.trim_start().starts_with("-->")).map(str::trim) {
        Some(at) => format!("{first}\n{at}"),
        None => first.to_owned(),
    }
}

/// The outcome of each test in libtest's plain output: `test NAME ... ok|FAILED`, and for
/// a failure the `---- NAME stdout ----` section with its panic message.
pub fn parse_test_output(stdout: &str) -> Vec<(String, Outcome)> {
    const PREFIX: &str = "respond::coursework::";
    let mut found = Vec::new();
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("test ").and_then(|l| l.strip_prefix(PREFIX)) else {
            continue;
        };
        let Some((name, result)) = rest.split_once(" ... ") else { continue };
        let outcome = match result.trim() {
            "ok" => Outcome::Pass,
            _ => failure(stdout, &format!("---- {PREFIX}{name} stdout ----")),
        };
        found.push((name.to_owned(), outcome));
    }
    found
}

/// A failed test's outcome from its section of the output: a `todo!()` reached, or the
/// first line of its panic message.
fn failure(stdout: &str, header: &str) -> Outcome {
    let Some(start) = stdout.find(header) else { return Outcome::Fail(None) };
    let section = &stdout[start + header.len()..];
    let section = &section
        [..section.find("\n---- ").or(section.find("\nfailures:")).unwrap_or(section.len())];
    panic_outcome(section)
}

/// What a panic's output says: `not yet implemented: chapter N: ...` is a `todo!()`.
fn panic_outcome(text: &str) -> Outcome {
    if let Some(at) = text.find("not yet implemented") {
        let message = text[at..].lines().next().unwrap_or("");
        let message = message.trim_start_matches("not yet implemented").trim_start_matches(": ");
        return Outcome::Todo(message.to_owned());
    }
    let mut lines = text.lines().skip_while(|l| !l.contains("panicked at"));
    let detail = lines.nth(1).map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("note:"));
    Outcome::Fail(detail.map(str::to_owned))
}

/// Tier (b): the student's programs in one lab namespace, one at a time.
fn lab_tests(root: &Path, checks: &[Check]) -> Results {
    let skip = |why: String| checks.iter().map(|c| (*c, Outcome::Skipped(why.clone()))).collect();
    let missing: Vec<&str> =
        ["ip", "arping", "ping", "setpriv"].into_iter().filter(|t| !tool_exists(t)).collect();
    if !missing.is_empty() {
        return skip(format!("needs {} (cargo lab install lab)", missing.join(", ")));
    }
    if !is_root() && crate::userns_blocked().is_some() {
        return skip("no user namespaces here, and not root (cargo lab doctor)".into());
    }
    let built = cargo()
        .current_dir(root)
        .args(["build", "--bins", "-q", "--color", "never"])
        .stdin(Stdio::null())
        .output();
    match built {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = format!("the programs do not compile: {}", compile_error(&stderr));
            return checks.iter().map(|c| (*c, Outcome::Fail(Some(why.clone())))).collect();
        }
        Err(e) => return skip(format!("running cargo build: {e}")),
    }
    let bin_dir = match target_dir() {
        Ok(dir) => dir.join("debug"),
        Err(e) => return skip(e),
    };
    let user = lab_user();
    let name = is_root().then(|| format!("tb-check-{}", std::process::id()));
    let mut lab = match Lab::create(name, &user) {
        Ok(lab) => lab,
        Err(e) => return skip(format!("no lab: {}", e.lines().next().unwrap_or(""))),
    };
    let bin = |name: &str| bin_dir.join(name).to_string_lossy().into_owned();
    let mut results = Vec::new();
    for c in checks {
        let outcome = match c.id {
            "lab::open_clone" => open_clone(&mut lab, &bin("01_open_clone"), &user),
            "lab::arping" => with_responder(&mut lab, &bin("03_arp_reply"), &user, |lab| {
                arping(lab, RESPONDER_IP) == Some(true)
            }),
            "lab::arping_other" => with_responder(&mut lab, &bin("03_arp_reply"), &user, |lab| {
                arping(lab, "172.16.1.9") == Some(false)
            }),
            "lab::ping" => with_responder(&mut lab, &bin("05_full_responder"), &user, |lab| {
                ping(lab, "56") && ping(lab, "1472")
            }),
            other => Outcome::Skipped(format!("no lab check called {other}")),
        };
        results.push((*c, outcome));
    }
    results
}

/// 01_open_clone with no input: attaches, reports, and exits at end of input.
fn open_clone(lab: &mut Lab, bin: &str, user: &str) -> Outcome {
    let mut program = lab.spawn(bin, &[], Some(user));
    let status = program.wait_exit(Duration::from_secs(10));
    let output = program.output();
    if let Outcome::Todo(message) = panic_outcome(&output) {
        return Outcome::Todo(message);
    }
    let flags = output
        .lines()
        .find(|l| l.contains("/tun_flags"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok());
    const IFF_TAP: u32 = 0x0002;
    const IFF_NO_PI: u32 = 0x1000;
    match (status, flags) {
        (Some(s), Some(f)) if s.success() && f & (IFF_TAP | IFF_NO_PI) == IFF_TAP | IFF_NO_PI => {
            Outcome::Pass
        }
        (Some(s), Some(f)) if s.success() => Outcome::Fail(Some(format!("tun_flags 0x{f:04x}"))),
        _ => Outcome::Fail(output.lines().rfind(|l| !l.trim().is_empty()).map(str::to_owned)),
    }
}

/// Starts `bin` (as `user`), runs `talk` once it holds tap4, and stops it.
fn with_responder(lab: &mut Lab, bin: &str, user: &str, talk: impl Fn(&Lab) -> bool) -> Outcome {
    let mut responder = lab.spawn(bin, &[], Some(user));
    if let Err(e) = lab.wait_attached(&mut responder) {
        let (_, output) = responder.stop();
        if let Outcome::Todo(message) = panic_outcome(&output) {
            return Outcome::Todo(message);
        }
        return Outcome::Fail(e.lines().rfind(|l| !l.trim().is_empty()).map(str::to_owned));
    }
    let ok = talk(lab);
    let (_, output) = responder.stop();
    match panic_outcome(&output) {
        Outcome::Todo(message) => Outcome::Todo(message),
        // A program that dies on the first frame is silent too: not a pass.
        Outcome::Fail(detail) if output.contains("panicked") => {
            Outcome::Fail(Some(format!("it panicked: {}", detail.unwrap_or_default())))
        }
        _ if ok => Outcome::Pass,
        _ => Outcome::Fail(None),
    }
}

/// Whether one arping for `ip` got a reply (None: arping did not run).
fn arping(lab: &Lab, ip: &str) -> Option<bool> {
    let out = lab.command("arping").args(["-c", "1", "-w", "2", "-I", "tap4", ip]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(out.status.success() && !text.contains("Received 0 response"))
}

/// Whether one ping with `size` bytes of data got its reply.
fn ping(lab: &Lab, size: &str) -> bool {
    let out = lab.command("ping").args(["-c", "1", "-W", "2", "-s", size, RESPONDER_IP]).output();
    out.is_ok_and(|out| crate::ping_counts(&out).1 == 1)
}

/// The report a student reads: a line per check, a score per chapter and in total.
pub fn report(results: &Results) -> String {
    let mut text = String::new();
    let mut total = (0, 0);
    for (chapter, title) in CHAPTERS {
        let of: Vec<&(Check, Outcome)> =
            results.iter().filter(|(c, _)| c.chapter == chapter).collect();
        if of.is_empty() {
            continue;
        }
        let _ = writeln!(text, "chapter {chapter}: {title}");
        for (c, outcome) in &of {
            let _ = match outcome {
                Outcome::Pass => writeln!(text, "  pass  {}", c.rule),
                // Code that does not compile: the compiler's first error, and where.
                Outcome::Fail(Some(detail)) if detail.contains("not compile") => {
                    let _ = writeln!(text, "  FAIL  {}", c.rule);
                    for line in detail.lines() {
                        let _ = writeln!(text, "        {}", clip(line, 70));
                    }
                    Ok(())
                }
                Outcome::Fail(detail) => {
                    let _ = writeln!(text, "  FAIL  {}\n        {}", c.rule, c.fail);
                    if let Some(detail) = detail {
                        let _ = writeln!(text, "        ({})", clip(detail, 68));
                    }
                    writeln!(text, "        read: {}", c.read)
                }
                Outcome::Todo(message) => writeln!(
                    text,
                    "  todo  {}\n        not implemented yet: {}",
                    c.rule,
                    clip(message, 49)
                ),
                Outcome::Skipped(why) => {
                    writeln!(text, "  skip  {}\n        skipped: {}", c.rule, clip(why, 61))
                }
            };
        }
        let passed = of.iter().filter(|(_, o)| *o == Outcome::Pass).count();
        let skipped = of.iter().filter(|(_, o)| matches!(o, Outcome::Skipped(_))).count();
        let todo = of.iter().filter(|(_, o)| matches!(o, Outcome::Todo(_))).count();
        let _ = write!(text, "  score: {passed} of {}", of.len());
        if todo > 0 {
            let _ = write!(text, ", {todo} not implemented yet");
        }
        if skipped > 0 {
            let _ = write!(text, ", {skipped} skipped");
        }
        let _ = writeln!(text, "\n");
        total = (total.0 + passed, total.1 + of.len());
    }
    let _ = writeln!(text, "total: {} of {} checks passed", total.0, total.1);
    text
}

/// `text` cut to `width` characters, with "..." when cut.
fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    text.chars().take(width.saturating_sub(3)).collect::<String>() + "..."
}

/// The results as JUnit XML: a test suite per chapter, a test case per check.
pub fn junit_xml(results: &Results) -> String {
    let count =
        |of: &[&(Check, Outcome)], f: fn(&Outcome) -> bool| of.iter().filter(|(_, o)| f(o)).count();
    let failed = |o: &Outcome| matches!(o, Outcome::Fail(_) | Outcome::Todo(_));
    let skipped = |o: &Outcome| matches!(o, Outcome::Skipped(_));
    let all: Vec<&(Check, Outcome)> = results.iter().collect();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"tapbook\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">",
        all.len(),
        count(&all, failed),
        count(&all, skipped)
    );
    for (chapter, title) in CHAPTERS {
        let of: Vec<&(Check, Outcome)> =
            results.iter().filter(|(c, _)| c.chapter == chapter).collect();
        if of.is_empty() {
            continue;
        }
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\">",
            escape(&format!("chapter {chapter}: {title}")),
            of.len(),
            count(&of, failed),
            count(&of, skipped)
        );
        for (c, outcome) in of {
            let _ = write!(
                xml,
                "    <testcase classname=\"chapter{chapter}\" name=\"{}\"",
                escape(c.rule)
            );
            let _ = match outcome {
                Outcome::Pass => writeln!(xml, "/>"),
                Outcome::Fail(detail) => writeln!(
                    xml,
                    ">\n      <failure message=\"{}\">{}\nread: {}</failure>\n    </testcase>",
                    escape(c.fail),
                    escape(detail.as_deref().unwrap_or(c.fail)),
                    escape(c.read)
                ),
                Outcome::Todo(message) => writeln!(
                    xml,
                    ">\n      <failure message=\"not implemented yet\">{}</failure>\n    </testcase>",
                    escape(message)
                ),
                Outcome::Skipped(why) => {
                    writeln!(
                        xml,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        escape(why)
                    )
                }
            };
        }
        let _ = writeln!(xml, "  </testsuite>");
    }
    let _ = writeln!(xml, "</testsuites>");
    xml
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_student_line_fits_78_columns() {
        for c in CHECKS {
            assert!(8 + c.rule.len() <= 78, "{}: rule too long", c.id);
            assert!(8 + c.fail.len() <= 78, "{}: failure too long", c.id);
            assert!(14 + c.read.len() <= 78, "{}: read too long", c.id);
        }
    }

    #[test]
    fn every_unit_check_is_a_test_of_the_coursework_module() {
        let source =
            std::fs::read_to_string(repo_root().join("src/respond/coursework.rs")).unwrap();
        for c in CHECKS.iter().filter(|c| !c.id.starts_with("lab::")) {
            let (module, name) = c.id.split_once("::").unwrap();
            assert_eq!(module, format!("ch{}", c.chapter), "{}", c.id);
            assert!(source.contains(&format!("fn {name}()")), "no test {}", c.id);
        }
        // And every test there has a line for the student.
        for line in source.lines().filter(|l| l.trim_start().starts_with("fn ")) {
            let name = line.trim_start()[3..].split('(').next().unwrap();
            if line.starts_with("    fn ") && !["reply", "oracle"].contains(&name) {
                assert!(CHECKS.iter().any(|c| c.id.ends_with(&format!("::{name}"))), "{name}");
            }
        }
    }

    // libtest's output for a passing test, a todo!() reached and an assertion.
    const OUTPUT: &str = "\
running 3 tests
test respond::coursework::ch3::ignores_arp_replies ... ok
test respond::coursework::ch4::checksum_agrees_with_rfc_1071 ... FAILED
test respond::coursework::ch5::answers_ping ... FAILED

failures:

---- respond::coursework::ch4::checksum_agrees_with_rfc_1071 stdout ----

thread 'respond::coursework::ch4::checksum_agrees_with_rfc_1071' (1) panicked at src/wire/checksum.rs:17:5:
not yet implemented: chapter 4: the internet checksum
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace

---- respond::coursework::ch5::answers_ping stdout ----

thread 'respond::coursework::ch5::answers_ping' (2) panicked at src/respond/coursework.rs:9:9:
no reply to ping: Ipv4BadChecksum

failures:
    respond::coursework::ch4::checksum_agrees_with_rfc_1071
";

    #[test]
    fn test_output_is_read_as_pass_todo_and_fail() {
        let found = parse_test_output(OUTPUT);
        assert_eq!(
            found,
            [
                ("ch3::ignores_arp_replies".to_owned(), Outcome::Pass),
                (
                    "ch4::checksum_agrees_with_rfc_1071".to_owned(),
                    Outcome::Todo("chapter 4: the internet checksum".into())
                ),
                (
                    "ch5::answers_ping".to_owned(),
                    Outcome::Fail(Some("no reply to ping: Ipv4BadChecksum".into()))
                ),
            ]
        );
    }

    fn sample() -> Results {
        let by = |id: &str| *CHECKS.iter().find(|c| c.id == id).unwrap();
        vec![
            (by("ch3::ignores_arp_replies"), Outcome::Pass),
            (by("ch3::ignores_who_has_for_other_addresses"), Outcome::Fail(Some("<&\">".into()))),
            (by("ch4::checksum_agrees_with_rfc_1071"), Outcome::Todo("chapter 4: x".into())),
            (by("lab::ping"), Outcome::Skipped("needs root".into())),
        ]
    }

    #[test]
    fn the_report_has_a_line_per_check_and_scores() {
        let text = report(&sample());
        assert!(text.contains("  pass  an ARP reply (operation 2) gets no reply\n"), "{text}");
        assert!(text.contains("        read: ARP, \"Answer only for our own address\""));
        assert!(text.contains("        not implemented yet: chapter 4: x"));
        assert!(text.contains("  score: 1 of 2\n"));
        assert!(text.contains("  score: 0 of 1, 1 not implemented yet\n"));
        assert!(text.contains("total: 1 of 4 checks passed"));
        assert!(text.lines().all(|l| l.chars().count() <= 78), "{text}");
    }

    /// A small well-formedness check: every tag closed in order, attributes quoted, no
    /// bare `<` or `&` in text; returns the element names in document order.
    fn xml_elements(xml: &str) -> Vec<(String, Vec<(String, String)>)> {
        let body = xml.strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n").unwrap();
        let mut stack: Vec<String> = Vec::new();
        let mut elements = Vec::new();
        let mut rest = body;
        while let Some(open) = rest.find('<') {
            let text = &rest[..open];
            assert!(!text.contains('>'), "bare > in {text:?}");
            for (i, _) in text.match_indices('&') {
                let entity = &text[i..text[i..].find(';').map_or(text.len(), |e| i + e + 1)];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&entity),
                    "{entity}"
                );
            }
            let close = rest[open..].find('>').unwrap() + open;
            let tag = &rest[open + 1..close];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "closing {name}");
            } else {
                let self_closing = tag.ends_with('/');
                let tag = tag.trim_end_matches('/');
                let (name, mut attrs) = tag.split_once(' ').unwrap_or((tag, ""));
                let mut parsed = Vec::new();
                while !attrs.trim().is_empty() {
                    let (key, after) = attrs.trim_start().split_once("=\"").unwrap();
                    let (value, after) = after.split_once('"').unwrap();
                    assert!(!value.contains('<') && !value.contains('"'), "{value}");
                    parsed.push((key.to_owned(), value.to_owned()));
                    attrs = after;
                }
                elements.push((name.to_owned(), parsed));
                if !self_closing {
                    stack.push(name.to_owned());
                }
            }
            rest = &rest[close + 1..];
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
        assert!(rest.trim().is_empty());
        elements
    }

    #[test]
    fn junit_is_well_formed_and_counts_right() {
        let xml = junit_xml(&sample());
        let elements = xml_elements(&xml);
        let attr = |i: usize, key: &str| {
            elements[i].1.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap()
        };
        assert_eq!(elements[0].0, "testsuites");
        assert_eq!(
            (attr(0, "tests"), attr(0, "failures"), attr(0, "skipped")),
            ("4".into(), "2".into(), "1".into())
        );
        let suites: Vec<usize> =
            (0..elements.len()).filter(|&i| elements[i].0 == "testsuite").collect();
        assert_eq!(suites.len(), 3, "chapters 3, 4 and 5");
        assert_eq!(elements.iter().filter(|e| e.0 == "testcase").count(), 4);
        assert_eq!(elements.iter().filter(|e| e.0 == "failure").count(), 2);
        assert_eq!(elements.iter().filter(|e| e.0 == "skipped").count(), 1);
        assert_eq!(attr(suites[0], "name"), "chapter 3: ARP");
        assert!(xml.contains("&lt;&amp;&quot;&gt;"));
    }
}
