//! End to end, diagnostics: when a program cannot start, or its surroundings change under
//! it, what it says must be right (the real cause, the interface's current name) and its
//! `Fix:` must be the exact command for this situation (the `--iface` and the network
//! namespace in use). Where the fix is a command, the test runs it (as root, without the
//! `sudo`) and checks that it fixes the problem.
//!
//! Each test runs in a network namespace of its own; the tests of `/dev/net/tun` bind-mount
//! over it inside a private mount namespace (`unshare -m`), never touching the real node.

use tapbook_lab as common;
use tapbook_lab::require_lab;

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use common::{Lab, RESPONDER_IP, UNPRIVILEGED_USER, ping_counts};
use nix::sys::signal::Signal;

const BIN_01: &str = env!("CARGO_BIN_EXE_01_open_clone");
const BIN_02: &str = env!("CARGO_BIN_EXE_02_hexdump");
const BIN_03: &str = env!("CARGO_BIN_EXE_03_arp_reply");
const BIN_04: &str = env!("CARGO_BIN_EXE_04_icmp_reply");
const BIN_05: &str = env!("CARGO_BIN_EXE_05_full_responder");
const BIN_08: &str = env!("CARGO_BIN_EXE_08_ipv6_responder");
const BIN_09: &str = env!("CARGO_BIN_EXE_09_offloads");
const BIN_10: &str = env!("CARGO_BIN_EXE_10_dhcp_server");

const ALL: [(&str, &str); 8] = [
    ("01", BIN_01),
    ("02", BIN_02),
    ("03", BIN_03),
    ("04", BIN_04),
    ("05", BIN_05),
    ("08", BIN_08),
    ("09", BIN_09),
    ("10", BIN_10),
];

const NOBODY: Option<&str> = Some(UNPRIVILEGED_USER);

/// The width of a terminal that nobody resized: every line we print must fit.
const COLUMNS: usize = 78;

fn assert_fits(what: &str, text: &str) {
    for line in text.lines() {
        assert!(
            line.chars().count() <= COLUMNS,
            "{what}: a line of {} columns:\n{line}\n\nin:\n{text}",
            line.chars().count()
        );
    }
}

fn assert_no_panic(text: &str) {
    for bad in ["panicked", "stack backtrace", "RUST_BACKTRACE"] {
        assert!(!text.contains(bad), "the program printed {bad:?}:\n{text}");
    }
}

/// Runs `bin ARGS` in the lab as `user` (or root) with RUST_BACKTRACE=1, stdin empty, and
/// waits up to 5 s for it to exit.
fn run_in(lab: &Lab, user: Option<&str>, bin: &str, args: &[&OsStr]) -> Output {
    let mut cmd = lab.command("setpriv");
    if let Some(user) = user {
        cmd.args(["--reuid", user, "--regid", &common::primary_group(user), "--clear-groups"]);
    }
    cmd.args(["--", "timeout", "5", "env", "RUST_BACKTRACE=1", bin]).args(args);
    cmd.stdin(Stdio::null()).output().expect("running the program")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// The command after "Fix:" in `output`, for root: without its "sudo " (and without the
/// parenthesised remark that may follow it on the next line). A line that ends in "&&"
/// goes on on the next, as in a shell.
fn fix_command(output: &str) -> String {
    let mut lines = output.lines().skip_while(|l| !l.starts_with("Fix:"));
    let mut command = match lines.next() {
        // A command too long for one line with "Fix: " comes on the next, indented.
        Some("Fix:") => lines.next().unwrap_or("").trim().to_owned(),
        Some(line) => line.strip_prefix("Fix: ").unwrap_or(line).to_owned(),
        None => panic!("no Fix: line in:\n{output}"),
    };
    while command.ends_with("&&") {
        command = format!("{command} {}", lines.next().unwrap_or("").trim());
    }
    command.replace("sudo ", "")
}

/// Runs a shell command (a printed fix) as root from the repository's root.
fn run_fix(command: &str) -> Output {
    let out = Command::new("sh")
        .args(["-c", command])
        .current_dir(common::repo_root())
        .env_remove("TAPBOOK_NETNS")
        .output()
        .expect("running the fix");
    assert!(out.status.success(), "the fix {command:?} failed:\n{}", text(&out));
    out
}

fn assert_usage_error(name: &str, out: &Output, says: &str) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(2), "{name}: not a usage error (status 2):\n{all}");
    assert!(all.contains(says), "{name} did not say {says:?}:\n{all}");
    assert_no_panic(&all);
    assert_fits(name, &all);
}

fn assert_failed(name: &str, status: ExitStatus, all: &str, says: &str) {
    assert_eq!(status.code(), Some(1), "{name} should fail with status 1:\n{all}");
    assert!(all.contains(says), "{name} did not say {says:?}:\n{all}");
    assert_no_panic(all);
    assert_fits(name, all);
}

// ---- Issue 10, item 5: arguments are bytes ------------------------------------------

#[test]
fn non_utf8_arguments_are_taken_as_paths_or_refused_with_a_message() {
    require_lab!("non_utf8_arguments_are_taken_as_paths_or_refused_with_a_message", "tshark");
    let mut lab = Lab::with_owner("bytes", UNPRIVILEGED_USER);
    // A flag that is not UTF-8, and a value that must be text but is not.
    let bad_flag = OsStr::from_bytes(b"--\xff");
    for (name, bin) in ALL {
        let out = run_in(&lab, NOBODY, bin, &[bad_flag]);
        assert_usage_error(name, &out, "--\\xFF");
        let out = run_in(&lab, NOBODY, bin, &[os("--iface"), OsStr::from_bytes(b"tap\xe9")]);
        assert_usage_error(name, &out, "is not UTF-8");
    }

    // A Latin-1 file name for --pcap (05) and --pcap/--raw-pcap (09): taken as it is.
    let dir = std::env::temp_dir().join(format!("{}.pcaps", lab.netns));
    std::fs::create_dir_all(&dir).expect("a directory");
    common::run_ok(Command::new("chmod").arg("777").arg(&dir));
    let mut latin1 = dir.clone().into_os_string();
    latin1.push(OsStr::from_bytes(b"/caf\xe9.pcap"));
    let mut responder = lab.start_os(BIN_05, &[os("--quiet"), os("--pcap"), &latin1], NOBODY);
    let out = lab.ping(&["-c", "2", "-i", "0.2", "-W", "2", RESPONDER_IP]);
    assert_eq!(ping_counts(&out), (2, 2), "{}", responder.output());
    let (status, output) = responder.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{output}");
    let read = Command::new("tshark").arg("-r").arg(&latin1).output().expect("tshark");
    let frames = String::from_utf8_lossy(&read.stdout).lines().count();
    assert!(frames >= 4, "the pcap written to caf\\xe9.pcap holds {frames} frames");

    let mut raw = dir.clone().into_os_string();
    raw.push(OsStr::from_bytes(b"/raw-caf\xe9.pcap"));
    let mut receiver = lab.start_os(BIN_09, &[os("--quiet"), os("--raw-pcap"), &raw], NOBODY);
    let _ = lab.ping(&["-c", "1", "-W", "1", RESPONDER_IP]);
    let (status, output) = receiver.stop();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.is_some_and(|s| s.success()), "09 --raw-pcap: {status:?}\n{output}");
}

// ---- Issue 10, item 9: addresses no host may use -------------------------------------

#[test]
fn addresses_no_host_may_use_are_refused_with_the_reason() {
    require_lab!("addresses_no_host_may_use_are_refused_with_the_reason");
    let lab = Lab::with_owner("addrs", UNPRIVILEGED_USER);
    let ips = [
        ("255.255.255.255", "broadcast"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "this network"),
        ("127.0.0.1", "loopback"),
        ("240.0.0.1", "reserved"),
    ];
    let macs = [
        ("00:00:00:00:00:00", "all-zero"),
        ("01:00:5e:00:00:01", "group address"),
        ("ff:ff:ff:ff:ff:ff", "group address"),
    ];
    for (name, bin) in
        [("03", BIN_03), ("04", BIN_04), ("05", BIN_05), ("08", BIN_08), ("10", BIN_10)]
    {
        for (ip, why) in ips {
            let out = run_in(&lab, NOBODY, bin, &[os("--ip"), os(ip)]);
            assert_usage_error(name, &out, &format!("--ip {ip}:\n"));
            assert_usage_error(name, &out, why);
        }
        for (mac, why) in macs {
            let out = run_in(&lab, NOBODY, bin, &[os("--mac"), os(mac)]);
            assert_usage_error(name, &out, &format!("--mac {mac}:\n"));
            assert_usage_error(name, &out, why);
        }
    }
    // scripts/setup.sh refuses the same classes for the kernel's side.
    for (ip, _) in ips {
        let out = Command::new(common::repo_root().join("scripts/setup.sh"))
            .args(["--netns", &lab.netns, "--addr", &format!("{ip}/24")])
            .output()
            .expect("setup.sh");
        assert!(!out.status.success(), "setup.sh --addr {ip}/24 was accepted");
    }
}

// ---- Issue 10, item 12: messages that say what is really the matter -------------------

#[test]
fn names_the_kernel_refuses_are_called_invalid_with_the_reason() {
    require_lab!("names_the_kernel_refuses_are_called_invalid_with_the_reason");
    // As root, so that a name we let through reaches the kernel's TUNSETIFF.
    let lab = Lab::empty("names");
    let names: [(&[u8], &str); 8] = [
        (b"all", "reserved"),
        (b"default", "reserved"),
        (b"a%b", "'%'"),
        (b"tap 4", "white space"),
        (b"a/b", "'/'"),
        (b"tap\x01", "control character"),
        ("café".as_bytes(), "not plain ASCII"),
        (b"sixteen-bytes-xx", "longer than 15 bytes"),
    ];
    for (name, why) in names {
        let shown = String::from_utf8_lossy(name).into_owned();
        for (program, bin) in [("01", BIN_01), ("02", BIN_02), ("05", BIN_05), ("09", BIN_09)] {
            let out = run_in(&lab, None, bin, &[os("--iface"), OsStr::from_bytes(name)]);
            let all = text(&out);
            let what = format!("{program} --iface {shown:?}");
            assert_failed(&what, out.status, &all, "is not a valid interface name");
            assert!(all.contains(why), "{what} did not say why ({why:?}):\n{all}");
        }
    }
    assert_eq!(lab.ip(&["-o", "link"]).lines().count(), 1, "an interface was created");
}

#[test]
fn a_tun_or_a_foreign_interface_is_named_for_what_it_is_and_the_fix_works() {
    require_lab!("a_tun_or_a_foreign_interface_is_named_for_what_it_is_and_the_fix_works");
    // The introduction's exercise: a TUN called tun4 next to the lab's tap4.
    let mut lab = Lab::with_owner("tun4", UNPRIVILEGED_USER);
    lab.ip(&["tuntap", "add", "dev", "tun4", "mode", "tun", "user", UNPRIVILEGED_USER]);
    // The loopback interface is in every namespace, and it is no TUN/TAP.
    let out = run_in(&lab, NOBODY, BIN_02, &[os("--iface"), os("lo")]);
    let all = text(&out);
    assert_failed("02 --iface lo", out.status, &all, "not a TUN/TAP interface at all");

    let out = run_in(&lab, NOBODY, BIN_02, &[os("--iface"), os("tun4")]);
    let all = text(&out);
    assert_failed("02 --iface tun4", out.status, &all, "it is a TUN");
    let fix = fix_command(&all);
    let ns = &lab.netns;
    assert_eq!(
        fix,
        format!(
            "ip -n {ns} link del tun4 && ip -n {ns} tuntap add tun4 mode tap user {UNPRIVILEGED_USER}"
        ),
        "{all}"
    );
    let before = lab.ip(&["-o", "addr", "show", "dev", "tap4"]);
    run_fix(&fix);
    // tun4 is now a TAP we can attach to, and the lab's tap4 was left alone.
    assert_eq!(lab.ip(&["-o", "addr", "show", "dev", "tap4"]), before, "the fix changed tap4");
    // (It is down, so there is no carrier to wait for: wait for the banner.)
    let mut program = lab.spawn(BIN_02, &["--iface", "tun4"], NOBODY);
    let attached =
        common::wait_until(Duration::from_secs(5), || program.output().contains("Ctrl-C to stop"));
    assert!(attached, "02 did not attach to tun4:\n{}", program.output());
    let (status, output) = program.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{output}");
}

#[test]
fn eperm_names_the_interface_and_namespace_given_and_its_fix_works() {
    require_lab!("eperm_names_the_interface_and_namespace_given_and_its_fix_works");
    let mut lab = Lab::empty("eperm");
    for (name, bin) in ALL {
        let out = run_in(&lab, NOBODY, bin, &[os("--iface"), os("tap9")]);
        let all = text(&out);
        assert_failed(name, out.status, &all, "(EPERM)");
        let expected = format!(
            "scripts/setup.sh --iface tap9 --netns {} --user {UNPRIVILEGED_USER}",
            lab.netns
        );
        assert_eq!(fix_command(&all), expected, "{name}:\n{all}");
    }
    let out = run_in(&lab, NOBODY, BIN_05, &[os("--iface"), os("tap9")]);
    run_fix(&fix_command(&text(&out)));
    lab.iface = "tap9".into();
    let mut responder = lab.start(BIN_05, &["--iface", "tap9"], NOBODY);
    let out = lab.ping(&["-c", "1", "-W", "2", RESPONDER_IP]);
    assert_eq!(ping_counts(&out), (1, 1), "{}", responder.output());
    let _ = responder.stop();
    assert!(!lab.ip(&["-o", "link"]).contains("tap4:"), "the fix made a tap4 nobody asked for");
}

/// Runs `script` as root in a private mount namespace inside the lab's network
/// namespace, then `bin` (as `user`) with stdin empty. Returns what it printed.
fn in_private_mounts(lab: &Lab, script: &str, bin: &str, user: &str) -> Output {
    let group = common::primary_group(user);
    let full = format!(
        "set -e; {script}; exec setpriv --reuid {user} --regid {group} --clear-groups -- \
         env RUST_BACKTRACE=1 {bin} < /dev/null"
    );
    lab.command("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &full])
        .output()
        .expect("unshare")
}

#[test]
fn each_problem_with_dev_net_tun_is_diagnosed_with_its_own_fix() {
    // unshare comes with setpriv, a lab tool (util-linux).
    require_lab!("each_problem_with_dev_net_tun_is_diagnosed_with_its_own_fix");
    let lab = Lab::with_owner("clonedev", UNPRIVILEGED_USER);
    // A tmpfs for our fake nodes (device nodes need a file system that allows them),
    // over an empty directory of this test's: in the private mount namespace, nobody
    // else sees it, nor what it holds. (Not over /tmp: the binaries may live there.)
    let scratch = common::ScratchDir::new("fake");
    let dir = scratch.0.display();
    let fake = format!("mount -t tmpfs tb-fake {dir}");
    let cases: [(&str, String, &str, &str); 5] = [
        (
            "/dev/null over it",
            "mount --bind /dev/null /dev/net/tun".into(),
            "is character device 1:3, not the clone\ndevice 10:200",
            "Fix: sudo rm /dev/net/tun && sudo mknod -m 0666 /dev/net/tun c 10 200",
        ),
        (
            "a node with minor 201",
            format!(
                "{fake}; mknod -m 0666 {dir}/tun c 10 201; mount --bind {dir}/tun /dev/net/tun"
            ),
            "is character device 10:201",
            "Fix: sudo rm /dev/net/tun && sudo mknod -m 0666 /dev/net/tun c 10 200",
        ),
        (
            "a regular file",
            format!("{fake}; touch {dir}/tun; mount --bind {dir}/tun /dev/net/tun"),
            "is not a character device",
            "Fix: sudo rm /dev/net/tun && sudo mknod -m 0666 /dev/net/tun c 10 200",
        ),
        (
            "no node, the driver loaded",
            "mount -t tmpfs tb-empty /dev/net".into(),
            "although the tun driver is loaded",
            "Fix: sudo mkdir -p /dev/net && sudo mknod -m 0666 /dev/net/tun c 10 200",
        ),
        (
            "no node, no driver",
            "mount -t tmpfs tb-empty /dev/net; mount -t tmpfs tb-nomisc /sys/class/misc".into(),
            "the tun driver is not loaded",
            "Fix: sudo modprobe tun",
        ),
    ];
    for (case, script, says, fix) in cases {
        for (name, bin) in [("01", BIN_01), ("05", BIN_05), ("09", BIN_09)] {
            let out = in_private_mounts(&lab, &script, bin, UNPRIVILEGED_USER);
            let all = text(&out);
            let what = format!("{name}, {case}");
            assert_failed(&what, out.status, &all, says);
            assert!(all.contains(fix), "{what}: not the fix {fix:?}:\n{all}");
            assert!(!all.contains("typewriter"), "{what}:\n{all}");
        }
    }
    // The fix for a missing node, done where the node is missing: 01 then attaches.
    let script = "mount -t tmpfs tb-empty /dev/net; mkdir -p /dev/net && \
                  mknod -m 0666 /dev/net/tun c 10 200";
    let out = in_private_mounts(&lab, script, BIN_01, UNPRIVILEGED_USER);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("attached it to tap4"), "{}", text(&out));
}

#[test]
fn after_a_rename_the_programs_use_the_new_name() {
    require_lab!("after_a_rename_the_programs_use_the_new_name");
    let mut lab = Lab::with_owner("rename", UNPRIVILEGED_USER);

    // 01 waits for Enter; meanwhile tap4 becomes lab0. Closing, it must not say that
    // tap4 vanished: lab0 is still there.
    let group = common::primary_group(UNPRIVILEGED_USER);
    let mut one = lab
        .command("setpriv")
        .args(["--reuid", UNPRIVILEGED_USER, "--regid", &group, "--clear-groups", "--", BIN_01])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("01");
    let attached = common::wait_until(Duration::from_secs(10), || {
        lab.ip(&["-o", "link", "show", "tap4"]).contains("LOWER_UP")
    });
    assert!(attached, "01 did not attach");
    lab.ip(&["link", "set", "tap4", "down"]);
    lab.ip(&["link", "set", "tap4", "name", "lab0"]);
    let _ = one.stdin.take().expect("stdin").write_all(b"\n");
    let out = one.wait_with_output().expect("01's output");
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("Closed. lab0 still exists"), "{all}");
    lab.ip(&["link", "set", "lab0", "name", "tap4"]);
    lab.ip(&["link", "set", "tap4", "up"]);

    // 04 meets the renamed interface down when it answers: the message and the fix name
    // lab0, in this namespace, and the fix works.
    let responder = lab.start(BIN_04, &[], NOBODY);
    responder.signal(Signal::SIGSTOP);
    // kill() returns before the stop takes effect: wait until the process is stopped
    // (state T in /proc/PID/stat), or on a loaded machine it may still answer after the
    // interface went down and before it was renamed.
    let stat = format!("/proc/{}/stat", responder.pid());
    let stopped = common::wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&stat)
            .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T')))
    });
    assert!(stopped, "04 did not stop");
    let _ = lab.ping(&["-c", "1", "-W", "0.3", RESPONDER_IP]);
    lab.ip(&["link", "set", "tap4", "down"]);
    lab.ip(&["link", "set", "tap4", "name", "lab0"]);
    responder.signal(Signal::SIGCONT);
    let said = common::wait_until(Duration::from_secs(5), || {
        responder.output().contains("reply not sent")
    });
    let output = responder.output();
    assert!(said, "04 did not try to answer:\n{output}");
    assert!(output.contains("cannot send on lab0: the interface is down"), "{output}");
    let fix = fix_command(&output);
    assert_eq!(fix, format!("ip -n {} link set lab0 up", lab.netns), "{output}");
    run_fix(&fix);
    let out = lab.ping(&["-c", "1", "-W", "2", RESPONDER_IP]);
    assert_eq!(ping_counts(&out), (1, 1), "after the fix:\n{}", responder.output());
}

// ---- Issue 9: first contact -----------------------------------------------------------

#[test]
fn a_tap_the_program_creates_says_what_the_kernel_side_needs_and_that_works() {
    require_lab!("a_tap_the_program_creates_says_what_the_kernel_side_needs_and_that_works");
    // Root, before any setup: TUNSETIFF creates a transient tap4, down, no address.
    let mut lab = Lab::empty("created");
    let responder = lab.spawn(BIN_05, &[], None);
    let noticed = common::wait_until(Duration::from_secs(10), || {
        responder.output().contains("Ctrl-C to stop")
    });
    let output = responder.output();
    assert!(noticed, "05 did not start:\n{output}");
    assert!(output.contains("tap4 did not exist, so the kernel created it"), "{output}");
    assert_fits("05's notice", &output);
    let out = lab.ping(&["-c", "1", "-W", "1", RESPONDER_IP]);
    assert!(text(&out).contains("Network is unreachable"), "{}", text(&out));

    // The commands it printed, as given, make ping work.
    let commands: Vec<String> =
        output.lines().filter_map(|l| l.strip_prefix("    sudo ")).map(str::to_owned).collect();
    assert_eq!(commands.len(), 2, "{output}");
    for command in &commands {
        assert!(command.starts_with(&format!("ip -n {} ", lab.netns)), "{command}");
        run_fix(command);
    }
    let out = lab.ping(&["-c", "2", "-i", "0.2", "-W", "2", RESPONDER_IP]);
    assert_eq!(ping_counts(&out), (2, 2), "{}\n{}", text(&out), responder.output());
    drop(responder);
}

#[test]
fn help_banners_and_fixes_fit_in_78_columns() {
    require_lab!("help_banners_and_fixes_fit_in_78_columns");
    let mut lab = Lab::with_owner("columns", UNPRIVILEGED_USER);
    for (name, bin) in ALL {
        let out = run_in(&lab, NOBODY, bin, &[os("--help")]);
        assert!(out.status.success(), "{name} --help:\n{}", text(&out));
        assert_fits(&format!("{name} --help"), &text(&out));
        // A mistake prints the usage too.
        let out = run_in(&lab, NOBODY, bin, &[os("--bogus")]);
        assert_fits(&format!("{name} --bogus"), &text(&out));
    }
    // The banners, with the longest address and MAC there are.
    for (name, bin) in
        [("03", BIN_03), ("04", BIN_04), ("05", BIN_05), ("08", BIN_08), ("10", BIN_10)]
    {
        let args = ["--ip", "223.255.255.254", "--mac", "02:ff:ff:ff:ff:ff"];
        let mut program = lab.start(bin, &args, NOBODY);
        let (_, output) = program.stop();
        // The banner, up to the first frame: a frame's line (IPv6 addresses) may be longer.
        let banner: Vec<&str> = output.lines().take_while(|l| !l.starts_with("<-")).collect();
        assert_fits(&format!("{name}'s banner"), &banner.join("\n"));
    }
    let out = run_in(&lab, NOBODY, BIN_01, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_fits("01", &text(&out));
    for (name, bin) in [("02", BIN_02), ("09", BIN_09)] {
        let mut program = lab.start(bin, &[], NOBODY);
        let _ = lab.ping(&["-c", "1", "-W", "1", RESPONDER_IP]);
        let (_, output) = program.stop();
        let first = output.lines().take(3).collect::<Vec<_>>().join("\n");
        assert_fits(&format!("{name}'s banner"), &first);
    }
    // The messages of the common failures (each test above checks its own).
    let _busy = lab.start(BIN_05, &[], NOBODY);
    let out = run_in(&lab, NOBODY, BIN_05, &[]);
    assert_failed("05, tap4 in use", out.status, &text(&out), "already in use");
}
