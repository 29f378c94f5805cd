//! End to end, faults: what happens to the programs when the system fails around them.
//! Each test runs the binaries as an unprivileged user (as after `sudo scripts/setup.sh`)
//! in a namespace of its own; only the lab's set-up, the kernel's tools and the fault
//! itself (deleting the interface, a second instance, a signal, strace) run as root.
//!
//! The promise: a clear message and a non-zero exit when the program cannot go on; no
//! panic and no backtrace; no busy loop; a clean stop with the counters on Ctrl-C or
//! SIGTERM; and interrupted system calls (EINTR) retried, never fatal.

mod common;

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use common::{Lab, RESPONDER_IP, Responder, UNPRIVILEGED_USER, ping_counts};
use nix::sys::signal::Signal;

const BIN_01: &str = env!("CARGO_BIN_EXE_01_open_clone");
const BIN_02: &str = env!("CARGO_BIN_EXE_02_hexdump");
const BIN_03: &str = env!("CARGO_BIN_EXE_03_arp_reply");
const BIN_04: &str = env!("CARGO_BIN_EXE_04_icmp_reply");
const BIN_05: &str = env!("CARGO_BIN_EXE_05_full_responder");

/// The programs that attach to the TAP and run until stopped.
const RESPONDERS: [(&str, &str); 4] =
    [("02", BIN_02), ("03", BIN_03), ("04", BIN_04), ("05", BIN_05)];

const NOBODY: Option<&str> = Some(UNPRIVILEGED_USER);

/// CPU time (user + system) a process has used so far, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name, in parentheses, may hold spaces: count fields after it.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    // Fields 14 and 15 of proc(5) are utime and stime; the first after ')' is field 3.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(14) + field(15)
}

/// Neither a panic nor a backtrace, whatever RUST_BACKTRACE says.
fn assert_no_panic(output: &str) {
    for bad in ["panicked", "stack backtrace", "RUST_BACKTRACE"] {
        assert!(!output.contains(bad), "the program printed {bad:?}:\n{output}");
    }
}

fn assert_failed_with(status: Option<ExitStatus>, output: &str, what: &str, message: &str) {
    let status = status.unwrap_or_else(|| panic!("{what} did not exit:\n{output}"));
    assert_eq!(status.code(), Some(1), "{what} should fail with status 1:\n{output}");
    assert!(output.contains(message), "{what} did not say {message:?}:\n{output}");
    assert_no_panic(output);
}

fn assert_ping_answered(lab: &Lab, count: u32, responder: &Responder) {
    let out = lab.ping(&["-c", &count.to_string(), "-i", "0.1", "-W", "2", RESPONDER_IP]);
    assert_eq!(
        ping_counts(&out),
        (count, count),
        "{}\nresponder:\n{}",
        String::from_utf8_lossy(&out.stdout),
        responder.output()
    );
}

/// "N  label" in 05's final counters.
fn counter(output: &str, label: &str) -> Option<u64> {
    output
        .lines()
        .find(|l| {
            l.trim_start().split_once(char::is_whitespace).is_some_and(|(_, r)| r.trim() == label)
        })
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
}

#[test]
fn deleting_the_interface_ends_every_program_promptly_with_a_message() {
    require_lab!("deleting_the_interface_ends_every_program_promptly_with_a_message");
    let mut lab = Lab::with_owner("gone", UNPRIVILEGED_USER);
    for (name, bin) in RESPONDERS {
        if name != "02" {
            // The lab made tap4 for the first round; later rounds recreate it, as the
            // message tells a student to.
            common::run_ok(
                std::process::Command::new(common::repo_root().join("scripts/setup.sh")).args([
                    "--netns",
                    &lab.netns,
                    "--user",
                    UNPRIVILEGED_USER,
                ]),
            );
        }
        let mut program = lab.start(bin, &[], NOBODY);
        let _ = lab.ping(&["-c", "1", "-W", "1", RESPONDER_IP]);
        let before = cpu_ticks(program.pid());
        let deleted = Instant::now();
        lab.ip(&["link", "del", "tap4"]);
        let status = program.wait_exit(Duration::from_secs(3));
        let took = deleted.elapsed();
        if status.is_none() {
            // Still there: is it spinning on a failing read?
            let spun = cpu_ticks(program.pid()) - before;
            panic!("{name} still runs 3 s after tap4 was deleted ({spun} ticks of CPU)");
        }
        let output = program.output();
        assert_failed_with(status, &output, name, "tap4 has been deleted");
        assert!(output.contains("Fix: recreate it with sudo scripts/setup.sh"), "{output}");
        assert!(took < Duration::from_secs(1), "{name} took {took:?} to notice");
        if name == "05" {
            assert!(counter(&output, "frames read").is_some_and(|n| n > 0), "{output}");
        }
    }
}

#[test]
fn link_down_then_up_keeps_05_running_and_answering() {
    require_lab!("link_down_then_up_keeps_05_running_and_answering");
    let mut lab = Lab::with_owner("downup", UNPRIVILEGED_USER);
    let mut responder = lab.start(BIN_05, &["--quiet"], NOBODY);
    assert_ping_answered(&lab, 2, &responder);

    // Make a reply meet a downed interface: freeze 05, let a request wait in the TAP's
    // queue, take the link down, then let 05 read the request and try to answer.
    responder.signal(Signal::SIGSTOP);
    let out = lab.ping(&["-c", "1", "-W", "0.3", RESPONDER_IP]);
    assert_eq!(ping_counts(&out).1, 0);
    lab.ip(&["link", "set", "tap4", "down"]);
    responder.signal(Signal::SIGCONT);

    // Down for a second: 05 waits without using the CPU (a busy loop would use ~100 ticks).
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_ticks(responder.pid());
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(responder.pid()) - before;
    assert!(responder.wait_exit(Duration::ZERO).is_none(), "05 exited:\n{}", responder.output());
    assert!(spent <= 5, "05 used {spent} ticks of CPU in 1 s with the link down");

    lab.ip(&["link", "set", "tap4", "up"]);
    assert_ping_answered(&lab, 3, &responder);
    let (status, output) = responder.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{output}");
    assert!(
        counter(&output, "replies the kernel refused (interface down)").is_some_and(|n| n >= 1),
        "the reply written while tap4 was down is not counted:\n{output}"
    );
    assert_eq!(counter(&output, "ICMP echo replies sent"), Some(5), "{output}");
}

#[test]
fn a_second_instance_is_told_the_tap_is_already_in_use() {
    require_lab!("a_second_instance_is_told_the_tap_is_already_in_use");
    let mut lab = Lab::with_owner("busy", UNPRIVILEGED_USER);
    let first = lab.start(BIN_05, &[], NOBODY);
    for (name, bin) in RESPONDERS {
        // RUST_BACKTRACE=1 must not turn the message into a backtrace.
        let mut second = lab.spawn("env", &["RUST_BACKTRACE=1", bin], NOBODY);
        let status = second.wait_exit(Duration::from_secs(3));
        assert_failed_with(status, &second.output(), name, "tap4 is already in use");
    }
    // The first instance did not notice.
    assert_ping_answered(&lab, 2, &first);
}

#[test]
fn an_unprivileged_user_without_a_prepared_tap_is_told_to_run_setup() {
    require_lab!("an_unprivileged_user_without_a_prepared_tap_is_told_to_run_setup");
    // No tap4 at all, and a tap4 that belongs to root: both need `sudo scripts/setup.sh`.
    let mut empty = Lab::empty("nosetup");
    let mut roots = Lab::new("rootstap");
    for lab in [&mut empty, &mut roots] {
        for (name, bin) in [("01", BIN_01)].into_iter().chain(RESPONDERS) {
            let mut program = lab.spawn("env", &["RUST_BACKTRACE=1", bin], NOBODY);
            let status = program.wait_exit(Duration::from_secs(3));
            let output = program.output();
            assert_failed_with(status, &output, name, "run sudo scripts/setup.sh once");
            assert!(output.contains("(EPERM)"), "{output}");
        }
    }
    assert!(!empty.ip(&["-o", "link"]).contains("tap4"), "an unprivileged run created tap4");
}

#[test]
fn ctrl_c_and_sigterm_stop_cleanly_with_the_counters() {
    require_lab!("ctrl_c_and_sigterm_stop_cleanly_with_the_counters");
    let mut lab = Lab::with_owner("signals", UNPRIVILEGED_USER);
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // Idle: asleep in ppoll when the signal comes.
        let mut responder = lab.start(BIN_05, &["--quiet"], NOBODY);
        assert_ping_answered(&lab, 2, &responder);
        std::thread::sleep(Duration::from_millis(100));
        responder.signal(signal);
        let status = responder.wait_exit(Duration::from_secs(2));
        let output = responder.output();
        assert!(status.is_some_and(|s| s.success()), "{signal} while idle: {status:?}\n{output}");
        assert_eq!(counter(&output, "ICMP echo replies sent"), Some(2), "{signal}\n{output}");
        assert_no_panic(&output);

        // Busy: a flood ping keeps it reading and writing when the signal comes.
        let mut responder = lab.start(BIN_05, &["--quiet"], NOBODY);
        let mut flood = lab.command("ping");
        let mut flood = flood
            .args(["-f", "-q", "-w", "3", RESPONDER_IP])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ping -f");
        std::thread::sleep(Duration::from_millis(500));
        let signalled = Instant::now();
        responder.signal(signal);
        let status = responder.wait_exit(Duration::from_secs(2));
        let took = signalled.elapsed();
        let _ = flood.kill();
        let _ = flood.wait();
        let output = responder.output();
        assert!(status.is_some_and(|s| s.success()), "{signal} while busy: {status:?}\n{output}");
        assert!(took < Duration::from_millis(500), "{signal} took {took:?} to stop 05");
        assert!(counter(&output, "ICMP echo replies sent").is_some_and(|n| n > 100), "{output}");
    }
    // The chapter 3 and 4 programs stop the same way (without counters).
    for (name, bin) in [("03", BIN_03), ("04", BIN_04)] {
        let mut program = lab.start(bin, &[], NOBODY);
        program.signal(Signal::SIGINT);
        let status = program.wait_exit(Duration::from_secs(2));
        assert!(status.is_some_and(|s| s.success()), "{name}: {status:?}\n{}", program.output());
    }
}

#[test]
fn interrupted_reads_and_writes_are_retried() {
    require_lab!("interrupted_reads_and_writes_are_retried", "strace");
    // strace's fault injection makes every other read, write and ppoll of the running
    // 05 fail with EINTR, exactly as a signal arriving mid-call would (05's only signal
    // handlers stop it, so a real signal cannot show the retry). Every ping must still
    // be answered, and the counters printed at the end, through interrupted writes too.
    let mut lab = Lab::with_owner("eintr", UNPRIVILEGED_USER);
    let mut responder = lab.start(BIN_05, &["--quiet"], NOBODY);
    let trace = std::env::temp_dir().join(format!("{}.strace", lab.netns));
    let pid = responder.pid().to_string();
    let mut strace = lab.spawn(
        "strace",
        &[
            "-p",
            &pid,
            "-o",
            trace.to_str().unwrap(),
            "-e",
            "trace=read,write,ppoll",
            "-e",
            "inject=read:error=EINTR:when=1+2",
            "-e",
            "inject=write:error=EINTR:when=1+2",
            "-e",
            "inject=ppoll:error=EINTR:when=1+2",
        ],
        None,
    );
    // strace reports "Process N attached" once it holds the process.
    assert!(
        common::wait_until(Duration::from_secs(5), || strace.output().contains("attached")),
        "strace did not attach:\n{}",
        strace.output()
    );
    for size in ["56", "1472"] {
        let out = lab.ping(&["-c", "5", "-i", "0.05", "-W", "2", "-s", size, RESPONDER_IP]);
        assert_eq!(ping_counts(&out), (5, 5), "ping -s {size} under EINTR:\n{out:?}");
    }
    let (status, output) = responder.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{output}");
    assert_eq!(counter(&output, "ICMP echo replies sent"), Some(10), "{output}");
    assert!(strace.wait_exit(Duration::from_secs(5)).is_some(), "strace did not end with 05");

    let log = std::fs::read_to_string(&trace).unwrap_or_default();
    let _ = std::fs::remove_file(&trace);
    // The TAP's descriptor is the one 05 sleeps on in ppoll.
    let tap_fd = log
        .split("ppoll([{fd=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no ppoll in the trace:\n{log}"));
    for call in [format!("read({tap_fd},"), format!("write({tap_fd},"), "ppoll(".to_owned()] {
        let injected =
            log.lines().filter(|l| l.starts_with(&call) && l.contains("INJECTED")).count();
        assert!(injected >= 2, "only {injected} interrupted {call}... calls:\n{log}");
    }
}
