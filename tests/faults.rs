//! End to end, faults: what happens to the programs when the system fails around them.
//! Each test runs the binaries as an unprivileged user (as after `sudo scripts/setup.sh`)
//! in a namespace of its own; only the lab's set-up, the kernel's tools and the fault
//! itself (deleting the interface, a second instance, a signal, strace) run as root.
//!
//! The promise: a clear message and a non-zero exit when the program cannot go on; no
//! panic and no backtrace, whatever fails, our own output included; no busy loop; a clean
//! stop with the counters on Ctrl-C, SIGTERM or SIGHUP, within a second, whatever the
//! program was waiting for (a frame, a full pipe, a pcap reader); and interrupted system
//! calls (EINTR) retried, never fatal.

use tapbook::tap::diagnose::fix_line;
use tapbook_lab as common;
use tapbook_lab::require_lab;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
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
        let fix = format!(
            "{}\n",
            fix_line(&format!(
                "sudo scripts/setup.sh --netns {} --user {UNPRIVILEGED_USER}",
                lab.netns
            ))
        );
        assert!(output.contains(&fix), "{output}");
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
            // The fix names the namespace the program runs in, and the user it runs as.
            let fix = format!(
                "{}\n",
                fix_line(&format!(
                    "sudo scripts/setup.sh --netns {} --user {UNPRIVILEGED_USER}",
                    lab.netns
                ))
            );
            assert_failed_with(status, &output, name, &fix);
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
    // The TAP's descriptor is the one 05 sleeps on in ppoll for a frame (POLLIN); the
    // other ppoll waits for room on standard output (POLLOUT).
    let tap_fd = log
        .lines()
        .filter(|l| l.contains("events=POLLIN"))
        .find_map(|l| l.strip_prefix("ppoll([{fd=")?.split(',').next())
        .unwrap_or_else(|| panic!("no ppoll for a frame in the trace:\n{log}"));
    for call in [format!("read({tap_fd},"), format!("write({tap_fd},"), "ppoll(".to_owned()] {
        let injected =
            log.lines().filter(|l| l.starts_with(&call) && l.contains("INJECTED")).count();
        assert!(injected >= 2, "only {injected} interrupted {call}... calls:\n{log}");
    }
}

// ---- Stopping, and our own output -------------------------------------------------

/// A program started by [`spawn_with`]; killed when dropped, even if the test fails.
struct Running {
    child: Child,
    stderr: PathBuf,
}

impl Running {
    fn signal(&self, signal: Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal);
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` and returns the exit status (`None`: still running after 3 s) and
    /// how long the program took to exit.
    fn stop_with(&mut self, signal: Signal) -> (Option<ExitStatus>, Duration) {
        let sent = Instant::now();
        self.signal(signal);
        let status = self.wait_exit(Duration::from_secs(3));
        (status, sent.elapsed())
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// Runs `bin` in the lab as the unprivileged user, like `Lab::spawn`, but with the
/// standard input and output the test chooses; standard error goes to a file.
fn spawn_with(lab: &Lab, bin: &str, args: &[&str], stdin: Stdio, stdout: Stdio) -> Running {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let stderr = std::env::temp_dir().join(format!(
        "{}-{}-{}.stderr",
        lab.netns,
        Path::new(bin).file_name().map_or("bin".into(), |n| n.to_string_lossy()),
        RUNS.fetch_add(1, Ordering::SeqCst)
    ));
    let child = lab
        .command("setpriv")
        .args(["--reuid", UNPRIVILEGED_USER, "--regid"])
        .arg(common::primary_group(UNPRIVILEGED_USER))
        .args(["--clear-groups", "--", "env", "RUST_BACKTRACE=1", bin])
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(std::fs::File::create(&stderr).expect("a file for standard error"))
        .spawn()
        .expect("starting the binary");
    Running { child, stderr }
}

fn wait_attached(lab: &Lab, program: &Running) {
    let attached = common::wait_until(Duration::from_secs(10), || {
        lab.ip(&["-o", "link", "show", &lab.iface]).contains("LOWER_UP")
    });
    assert!(attached, "the program did not attach to tap4:\n{}", program.stderr_text());
}

/// A flood of pings that lasts `seconds` unless killed (each program below answers it,
/// or for 02, prints it). The static neighbour entry makes the kernel send its requests
/// at once, answered or not.
fn flood(lab: &Lab, seconds: u32) -> Child {
    lab.pin_responder("tap4");
    lab.command("ping")
        .args(["-f", "-q", "-i", "0.0002", "-w", &seconds.to_string(), RESPONDER_IP])
        .stdout(Stdio::null())
        .spawn()
        .expect("ping -f")
}

nix::ioctl_read_bad!(fionread, libc::FIONREAD, libc::c_int);

/// How many bytes wait in a pipe or FIFO to be read.
fn bytes_waiting(read_end: &OwnedFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD on a pipe writes one int, the bytes waiting in it, into `n`.
    unsafe { fionread(read_end.as_raw_fd(), &mut n) }.map_or(0, |_| n as usize)
}

/// Waits until the pipe is full: its reader has stopped reading, and what it holds no
/// longer grows while the program has frames to report. (Not "holds its capacity": the
/// kernel fills a pipe in whole pages, so a full pipe may hold a little less.)
fn wait_until_full(read_end: &OwnedFd, what: &str) {
    let capacity = nix::fcntl::fcntl(read_end, nix::fcntl::FcntlArg::F_GETPIPE_SZ)
        .expect("F_GETPIPE_SZ") as usize;
    let mut last = 0;
    let full = common::wait_until(Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(200));
        let now = bytes_waiting(read_end);
        let stuck = now == last && now > capacity / 2;
        last = now;
        stuck
    });
    assert!(full, "{what} did not fill its pipe: {last} bytes of {capacity}");
}

#[test]
fn a_stop_ends_programs_blocked_on_a_full_output_pipe() {
    require_lab!("a_stop_ends_programs_blocked_on_a_full_output_pipe");
    // `05_full_responder | less`, and less stops reading: the pipe fills, and the
    // program waits for room in it. Ctrl-C or SIGTERM must still end it within a second,
    // with status 0 and the counters on standard error, where they can still go.
    let lab = Lab::with_owner("fullpipe", UNPRIVILEGED_USER);
    for (name, bin) in [("02", BIN_02), ("04", BIN_04), ("05", BIN_05)] {
        for signal in [Signal::SIGTERM, Signal::SIGINT] {
            let (read_end, write_end) =
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("a pipe");
            let mut program = spawn_with(&lab, bin, &[], Stdio::null(), write_end.into());
            wait_attached(&lab, &program);
            let mut ping = flood(&lab, 10);
            wait_until_full(&read_end, name);
            let (status, took) = program.stop_with(signal);
            let _ = ping.kill();
            let _ = ping.wait();
            let stderr = program.stderr_text();
            assert!(
                status.is_some_and(|s| s.success()),
                "{name}, stdout full, {signal}: {status:?} after {took:?}\n{stderr}"
            );
            assert!(took < Duration::from_secs(1), "{name} took {took:?} to stop on {signal}");
            assert_no_panic(&stderr);
            match name {
                "02" => assert!(stderr.contains("frames read."), "02's count:\n{stderr}"),
                "05" => assert!(counter(&stderr, "frames read").is_some_and(|n| n > 0), "{stderr}"),
                _ => {}
            }
            drop(read_end);
        }
    }
}

/// A FIFO in a directory the unprivileged user can write to; removed when dropped.
struct Fifo(PathBuf);

impl Fifo {
    fn new(name: &str) -> Fifo {
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&path);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o666))
            .expect("mkfifo");
        // mkfifo's mode is filtered by our umask: make it writable for the test user.
        common::run_ok(Command::new("chmod").args(["666"]).arg(&path));
        Fifo(path)
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_pcap_fifo_neither_holds_the_tap_nor_holds_up_a_stop() {
    require_lab!("a_pcap_fifo_neither_holds_the_tap_nor_holds_up_a_stop");
    let mut lab = Lab::with_owner("pcapfifo", UNPRIVILEGED_USER);
    let log = std::env::temp_dir().join(format!("{}.stdout", lab.netns));

    // No program reads the FIFO: 05 says so at once, before attaching to tap4 (it used
    // to wait in open(), attached, deaf to SIGTERM).
    let fifo = Fifo::new(&format!("{}.fifo", lab.netns));
    let stdout = std::fs::File::create(&log).expect("a log file");
    let mut program =
        spawn_with(&lab, BIN_05, &["--pcap", fifo.arg()], Stdio::null(), stdout.into());
    let status = program.wait_exit(Duration::from_secs(1));
    let output =
        format!("{}{}", std::fs::read_to_string(&log).unwrap_or_default(), program.stderr_text());
    assert_failed_with(status, &output, "05 --pcap FIFO", "is a FIFO that no program is reading");
    drop(program);

    // The pcap file is opened before the TAP: with tap4 in use and a pcap file that
    // cannot be created, the pcap is what 05 complains about.
    let mut first = lab.start(BIN_05, &["--quiet"], NOBODY);
    let mut second = lab.spawn(BIN_05, &["--pcap", "/nonexistent/tapbook.pcap"], NOBODY);
    let status = second.wait_exit(Duration::from_secs(3));
    assert_failed_with(status, &second.output(), "05", "creating /nonexistent/tapbook.pcap");
    let _ = first.stop();

    // A reader that stops reading (a Wireshark that hangs): the FIFO fills, and 05 waits
    // for room in it. SIGTERM must still end it, with its counters.
    use std::os::unix::fs::OpenOptionsExt;
    let read_end: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo.0)
        .expect("opening the FIFO for reading")
        .into();
    let stdout = std::fs::File::create(&log).expect("a log file");
    let mut program =
        spawn_with(&lab, BIN_05, &["--quiet", "--pcap", fifo.arg()], Stdio::null(), stdout.into());
    wait_attached(&lab, &program);
    let mut ping = flood(&lab, 10);
    wait_until_full(&read_end, "05's pcap");
    let (status, took) = program.stop_with(Signal::SIGTERM);
    let _ = ping.kill();
    let _ = ping.wait();
    let output =
        format!("{}{}", std::fs::read_to_string(&log).unwrap_or_default(), program.stderr_text());
    let _ = std::fs::remove_file(&log);
    assert!(status.is_some_and(|s| s.success()), "{status:?} after {took:?}\n{output}");
    assert!(took < Duration::from_secs(1), "05 took {took:?} to stop");
    assert!(counter(&output, "frames read").is_some_and(|n| n > 0), "{output}");
    assert_no_panic(&output);
}

#[test]
fn output_errors_end_the_programs_with_a_message_not_a_panic() {
    require_lab!("output_errors_end_the_programs_with_a_message_not_a_panic");
    let mut lab = Lab::with_owner("outerr", UNPRIVILEGED_USER);
    let devfull = || std::fs::File::options().write(true).open("/dev/full").expect("/dev/full");

    // Standard output on a full device, from the first line on.
    for (name, bin) in [("01", BIN_01)].into_iter().chain(RESPONDERS) {
        let mut program = spawn_with(&lab, bin, &[], Stdio::null(), devfull().into());
        let status = program.wait_exit(Duration::from_secs(3));
        let stderr = program.stderr_text();
        assert_failed_with(status, &stderr, name, "writing to standard output: No space left");
        assert_eq!(stderr.lines().count(), 1, "{name}: not one line:\n{stderr}");
    }

    // The help, and a mistake whose message cannot be written.
    let unprivileged = || {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", UNPRIVILEGED_USER, "--regid"])
            .arg(common::primary_group(UNPRIVILEGED_USER))
            .args(["--clear-groups", "--", "env", "RUST_BACKTRACE=1", BIN_05]);
        cmd
    };
    let help = unprivileged().arg("--help").stdout(devfull()).output().expect("05 --help");
    let stderr = String::from_utf8_lossy(&help.stderr);
    assert_failed_with(Some(help.status), &stderr, "--help > /dev/full", "No space left");
    let mistake = unprivileged().arg("--bogus").stderr(devfull()).output().expect("05 --bogus");
    assert_eq!(mistake.status.code(), Some(2), "a usage error with stderr on /dev/full");

    // The disk fills while 05 runs: its counters reach standard error, followed by the
    // real error. A 64 KiB tmpfs, mounted in the mount namespace of `ip netns exec`
    // (private to this one process tree), stands for the disk.
    let dir = std::env::temp_dir().join(format!("{}.disk", lab.netns));
    std::fs::create_dir_all(&dir).expect("a mount point");
    let script = format!(
        "mount -t tmpfs -o size=64k,mode=1777 tapbook-full {dir} && \
         exec setpriv --reuid {user} --regid {group} --clear-groups -- \
         env RUST_BACKTRACE=1 {BIN_05} > {dir}/stdout",
        dir = dir.display(),
        user = UNPRIVILEGED_USER,
        group = common::primary_group(UNPRIVILEGED_USER),
    );
    let mut program = lab.spawn("sh", &["-c", &script], None);
    let attached = common::wait_until(Duration::from_secs(10), || {
        lab.ip(&["-o", "link", "show", "tap4"]).contains("LOWER_UP")
    });
    assert!(attached, "05 did not start on the small disk:\n{}", program.output());
    let mut ping = flood(&lab, 10);
    let status = program.wait_exit(Duration::from_secs(10));
    let _ = ping.kill();
    let _ = ping.wait();
    let _ = std::fs::remove_dir(&dir);
    let stderr = program.stderr_text();
    assert_failed_with(status, &stderr, "05 on a full disk", "No space left on device");
    assert!(stderr.lines().last().is_some_and(|l| l.starts_with("Error:")), "{stderr}");
    assert!(counter(&stderr, "frames read").is_some_and(|n| n > 0), "{stderr}");

    // A non-blocking standard output (another program on the terminal set O_NONBLOCK):
    // write says EAGAIN whenever the pipe is full. 04 waits for room instead of failing.
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)
            .expect("a non-blocking pipe");
    let mut program = spawn_with(&lab, BIN_04, &[], Stdio::null(), write_end.into());
    wait_attached(&lab, &program);
    let mut ping = flood(&lab, 10);
    wait_until_full(&read_end, "04");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        program.wait_exit(Duration::ZERO).is_none(),
        "04 ended on EAGAIN:\n{}",
        program.stderr_text()
    );
    // Read again: 04 carries on where it was, and stops cleanly.
    let drain = std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match nix::unistd::read(&read_end, &mut buf) {
                Ok(0) => break,
                Ok(n) => text.extend_from_slice(&buf[..n]),
                Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => break,
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    });
    std::thread::sleep(Duration::from_millis(300));
    let _ = ping.kill();
    let _ = ping.wait();
    let (status, _) = program.stop_with(Signal::SIGTERM);
    let stdout = drain.join().expect("the reader thread");
    let stderr = program.stderr_text();
    assert!(status.is_some_and(|s| s.success()), "04: {status:?}\n{stderr}");
    assert_no_panic(&stderr);
    assert!(stdout.contains("-> "), "04 printed no reply:\n{stderr}");
}

/// The number of records in a classic pcap file, or where it is cut.
fn pcap_records(bytes: &[u8]) -> Result<u64, String> {
    let mut at = 24;
    let mut records = 0;
    while at < bytes.len() {
        let header = bytes.get(at..at + 16).ok_or(format!("a record header cut at byte {at}"))?;
        let caplen = u32::from_ne_bytes([header[8], header[9], header[10], header[11]]) as usize;
        if at + 16 + caplen > bytes.len() {
            return Err(format!("a record cut at byte {at} of {}", bytes.len()));
        }
        at += 16 + caplen;
        records += 1;
    }
    Ok(records)
}

#[test]
fn sighup_stops_05_cleanly_with_whole_pcap_records() {
    require_lab!("sighup_stops_05_cleanly_with_whole_pcap_records");
    // The terminal closes, or the ssh session drops: the kernel sends SIGHUP, which by
    // default kills mid-write, without the counters.
    let mut lab = Lab::with_owner("sighup", UNPRIVILEGED_USER);
    let pcap = std::env::temp_dir().join(format!("{}.pcap", lab.netns));
    std::fs::File::create(&pcap).expect("the pcap file");
    common::run_ok(Command::new("chmod").arg("666").arg(&pcap));
    let pcap_arg = pcap.to_string_lossy().into_owned();
    let mut responder = lab.start(BIN_05, &["--quiet", "--pcap", &pcap_arg], NOBODY);
    let mut ping = flood(&lab, 10);
    std::thread::sleep(Duration::from_millis(500));
    let sent = Instant::now();
    responder.signal(Signal::SIGHUP);
    let status = responder.wait_exit(Duration::from_secs(3));
    let took = sent.elapsed();
    let _ = ping.kill();
    let _ = ping.wait();
    let output = responder.output();
    let bytes = std::fs::read(&pcap).unwrap_or_default();
    let _ = std::fs::remove_file(&pcap);
    assert!(status.is_some_and(|s| s.success()), "SIGHUP: {status:?}\n{output}");
    assert!(took < Duration::from_secs(1), "05 took {took:?} to stop on SIGHUP");
    assert_no_panic(&output);
    // Every frame read and every reply sent is in the file, whole.
    let read = counter(&output, "frames read").unwrap_or(0);
    let replies = counter(&output, "ICMP echo replies sent").unwrap_or(0)
        + counter(&output, "ARP replies sent").unwrap_or(0);
    assert!(replies > 100, "{output}");
    assert_eq!(pcap_records(&bytes), Ok(read + replies), "{output}");
}

#[test]
fn a_program_started_with_the_stop_signals_blocked_still_stops() {
    require_lab!("a_program_started_with_the_stop_signals_blocked_still_stops");
    // A signal mask is inherited through fork and exec: a parent that blocked SIGTERM
    // (some service managers and shells do, around a fork) hands that on to us.
    let mut lab = Lab::with_owner("sigmask", UNPRIVILEGED_USER);
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let mut responder =
            lab.start("env", &["--block-signal=INT,TERM,HUP", BIN_05, "--quiet"], NOBODY);
        assert_ping_answered(&lab, 1, &responder);
        let sent = Instant::now();
        responder.signal(signal);
        let status = responder.wait_exit(Duration::from_secs(3));
        let took = sent.elapsed();
        let output = responder.output();
        assert!(status.is_some_and(|s| s.success()), "{signal}, blocked: {status:?}\n{output}");
        assert!(took < Duration::from_secs(1), "{signal} took {took:?}");
        assert_eq!(counter(&output, "ICMP echo replies sent"), Some(1), "{output}");
    }
}

#[test]
fn waiting_for_enter_reads_a_bounded_amount() {
    require_lab!("waiting_for_enter_reads_a_bounded_amount");
    // `01_open_clone < /dev/zero`: an input without a newline used to be read (and kept)
    // for ever, some 250 MB a second. One read is enough to count as Enter.
    let lab = Lab::with_owner("devzero", UNPRIVILEGED_USER);
    let zero = std::fs::File::open("/dev/zero").expect("/dev/zero");
    let log = std::env::temp_dir().join(format!("{}.stdout", lab.netns));
    let stdout = std::fs::File::create(&log).expect("a log file");
    let mut program = spawn_with(&lab, BIN_01, &[], zero.into(), stdout.into());
    let status = program.wait_exit(Duration::from_secs(3));
    let output =
        format!("{}{}", std::fs::read_to_string(&log).unwrap_or_default(), program.stderr_text());
    let _ = std::fs::remove_file(&log);
    assert!(status.is_some_and(|s| s.success()), "01 < /dev/zero: {status:?}\n{output}");
    assert!(output.contains("Closed. tap4 still exists"), "{output}");
}
