//! Chapter 12's last lab, with nothing from the kernel's network at all: a QEMU guest
//! (TCG) on `-netdev stream` to a port of `12_learning_switch`, whose other port is
//! `10_dhcp_server --stream`. No TAP, no namespace, no capability: every program runs
//! as the unprivileged user (when the test runs as root) or as the caller, and what
//! they exchange goes through UNIX sockets in a directory of ours. The guest's busybox
//! `udhcpc` must get its lease from our server, and its `ping` our replies.
//!
//! The guest boots the kernel and initramfs of `cargo lab vm` (`tapbook_lab::vm`),
//! copied where the unprivileged user can read them.

use tapbook_lab as common;
use tapbook_lab::require_lab;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::vm::{self, Accel, Guest, Mode, Verdict};
use common::{ScratchDir, UNPRIVILEGED_USER, is_root, primary_group, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BIN_10: &str = env!("CARGO_BIN_EXE_10_dhcp_server");
const BIN_12: &str = env!("CARGO_BIN_EXE_12_learning_switch");

/// A program we started, its output in a file; killed if still running when dropped.
struct Program {
    child: Child,
    log: PathBuf,
}

impl Program {
    /// Starts `bin ARGS` as the unprivileged user if we are root, else as ourselves.
    fn start(bin: &str, args: &[&str], log: PathBuf) -> Program {
        let mut cmd = if is_root() {
            let mut cmd = Command::new("setpriv");
            cmd.args(["--reuid", UNPRIVILEGED_USER, "--regid"])
                .arg(primary_group(UNPRIVILEGED_USER))
                .args(["--clear-groups", "--", bin]);
            cmd
        } else {
            Command::new(bin)
        };
        let file = std::fs::File::create(&log).expect("a log file");
        let err = file.try_clone().expect("the log file again");
        let child =
            cmd.args(args).stdin(Stdio::null()).stdout(file).stderr(err).spawn().expect("starting");
        Program { child, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), signal);
    }

    /// SIGTERM, then its exit status (5 s at most) and output.
    fn stop(&mut self) -> (Option<std::process::ExitStatus>, String) {
        self.signal(Signal::SIGTERM);
        let child = &mut self.child;
        let mut status = None;
        wait_until(Duration::from_secs(5), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        (status, self.output())
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The kernel and initramfs of `cargo lab vm`, copied into `dir` (readable by anyone).
fn guest_files(dir: &Path) -> (PathBuf, PathBuf) {
    let mut order = vm::kernel_order(vm::KernelChoice::Auto);
    let (kernel, initramfs) = vm::pick_kernel(&mut order, &vm::default_cache())
        .unwrap_or_else(|e| panic!("no guest kernel: {e}"));
    let (image, initrd) = (dir.join("vmlinuz"), dir.join("initrd.cpio.gz"));
    std::fs::copy(&kernel.image, &image).expect("copying the kernel");
    std::fs::copy(&initramfs.path, &initrd).expect("copying the initramfs");
    (image, initrd)
}

/// The row of the switch's first table for `mac`: its port.
fn table_port(text: &str, mac: &str) -> Option<String> {
    let table = common::ours::first_table(text);
    let row = table.lines().find(|l| l.trim_start().starts_with(mac))?;
    row.split_whitespace().nth(1).map(str::to_owned)
}

#[test]
fn a_guest_gets_its_lease_from_our_server_with_no_tap_no_namespace_and_no_root() {
    let test = "a_guest_gets_its_lease_from_our_server_with_no_tap_no_namespace_and_no_root";
    require_lab!(test, "qemu-system-x86_64", "busybox");
    // Anyone may make sockets in it (sticky, as /tmp): the programs run as nobody.
    let dir = ScratchDir::new("us-lease");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let (kernel, initramfs) = guest_files(&dir.0);
    let (guest_sock, server_sock) = (dir.path("guest1.sock"), dir.path("responder.sock"));
    let (guest_arg, server_arg) = (guest_sock.to_str().unwrap(), server_sock.to_str().unwrap());

    let mut switch = Program::start(
        BIN_12,
        &["--stream", guest_arg, "--stream", server_arg, "--quiet"],
        dir.path("switch.txt"),
    );
    let listening = wait_until(Duration::from_secs(10), || guest_sock.exists());
    assert!(listening && server_sock.exists(), "{}", switch.output());
    let mut server = Program::start(BIN_10, &["--stream", server_arg], dir.path("server.txt"));
    let connected = wait_until(Duration::from_secs(10), || {
        switch.output().contains("[responder] QEMU connected")
    });
    assert!(connected, "switch:\n{}\nserver:\n{}", switch.output(), server.output());

    // QEMU as the same user, on the switch's other port.
    let guest = Guest {
        kernel,
        initramfs,
        accel: Accel::Tcg,
        mode: Mode::Batch,
        count: 3,
        mac: vm::GUEST_MAC.to_owned(),
        append: "tapbook.ip=dhcp tapbook.ping=172.16.1.2".to_owned(),
    };
    let netdev = format!("stream,id=net0,server=off,addr.type=unix,addr.path={guest_arg}");
    let pidfile = dir.path("qemu.pid");
    let mut qemu = if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", UNPRIVILEGED_USER, "--regid"])
            .arg(primary_group(UNPRIVILEGED_USER))
            .args(["--clear-groups", "--", "qemu-system-x86_64"]);
        cmd
    } else {
        Command::new("qemu-system-x86_64")
    };
    qemu.args(vm::qemu_args(&guest, &netdev, &pidfile));
    let mut boot = vm::boot(qemu, &dir.path("console.txt"), false).expect("starting QEMU");
    let verdict = vm::watch_guest(&mut boot, Accel::Tcg, false);
    let console = vm::clean_console(&boot.console_text());
    assert_eq!(verdict, Verdict::Finished, "{console}\nserver:\n{}", server.output());

    // The table while every station is up (a program that hangs up is forgotten).
    switch.signal(Signal::SIGUSR1);
    wait_until(Duration::from_secs(5), || switch.output().contains("MAC table"));
    boot.poweroff();
    boot.stop(&pidfile);
    let (server_status, server_out) = server.stop();
    let (switch_status, switch_out) = switch.stop();

    assert!(
        console.contains("udhcpc: lease of 172.16.1.100 obtained from 172.16.1.2"),
        "{console}"
    );
    let summary = vm::ping_summary(&console, "172.16.1.2").unwrap_or_default();
    assert!(summary.starts_with("3 packets transmitted, 3 packets received"), "{console}");
    assert!(server_out.contains("DHCP: ACK 172.16.1.100"), "{server_out}");
    assert!(server_out.contains("  172.16.1.100    52:54:00:12:34:56  bound"), "{server_out}");
    assert!(server_status.is_some_and(|s| s.success()), "{server_out}");
    assert_eq!(table_port(&switch_out, vm::GUEST_MAC).as_deref(), Some("guest1"), "{switch_out}");
    assert_eq!(
        table_port(&switch_out, "02:00:00:00:00:02").as_deref(),
        Some("responder"),
        "{switch_out}"
    );
    assert!(switch_status.is_some_and(|s| s.success()), "{switch_out}");
}
