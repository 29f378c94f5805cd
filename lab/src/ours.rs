//! `cargo lab vm --network ours`: the guest's network is our code, end to end. QEMU's
//! `-netdev stream` connects the guest's NIC to a port of our learning switch
//! (`12_learning_switch`); the switch's other ports are tap4 (the kernel, 172.16.1.1)
//! and our DHCP server and responder (`10_dhcp_server --stream`, 172.16.1.2), which
//! has no TAP at all: it plays QEMU's part on a socket. The guest's own `udhcpc` gets
//! its lease from us, then it pings our responder and the kernel; with `--guests 2` a
//! second guest joins and the two ping each other.
//!
//! Every program runs as the caller: as root in a named namespace (the programs as the
//! user behind sudo, or nobody), else in a user namespace of the caller's own.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::vm::{
    Boot, GuestOptions, Mode, Options, TempDir, boot_guest, check_stop, clean_console, indent,
    kernel_order, lab_checks, pick_kernel, ping_summary, qemu_args, qemu_version, repo_path,
    seconds, section,
};
use crate::{IFACE, KERNEL_IP, Lab, RESPONDER_IP, cargo, catch_stop_signals};
use crate::{is_root, say, wait_until};

type Result<T> = std::result::Result<T, String>;

/// The guests' MACs: QEMU's prefix, then 12:34:56 and up (the first is QEMU's default,
/// as in the bridge lab).
pub fn guest_mac(n: u32) -> String {
    format!("52:54:00:12:34:{:02x}", 0x56 + n - 1)
}

/// Builds the chapter programs (cargo build --release) and returns their paths, in order.
pub fn build_release(bins: &[&str]) -> Result<Vec<PathBuf>> {
    let mut cmd = cargo();
    cmd.args(["build", "--release"]);
    for bin in bins {
        cmd.args(["--bin", bin]);
    }
    let out = cmd
        .args(["--message-format=json-render-diagnostics"])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("cargo build failed:\n{stderr}"));
    }
    for line in stderr.lines().filter(|l| l.trim_start().starts_with("Finished")) {
        say(format_args!("    {}", line.trim()));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let key = "\"executable\":\"";
    let built: Vec<PathBuf> = stdout
        .lines()
        .filter_map(|l| {
            let start = l.find(key)? + key.len();
            let end = l[start..].find('"')? + start;
            Some(PathBuf::from(&l[start..end]))
        })
        .collect();
    bins.iter()
        .map(|bin| {
            built
                .iter()
                .rfind(|p| p.ends_with(bin))
                .cloned()
                .ok_or(format!("cargo build did not say where {bin} is"))
        })
        .collect()
}

/// The address in udhcpc's "lease of ADDR obtained from SERVER, lease time N", and
/// the server's.
pub fn lease(console: &str) -> Option<(String, String)> {
    let line =
        console.lines().find(|l| l.contains("lease of ") && l.contains(" obtained from "))?;
    let rest = line.split("lease of ").nth(1)?;
    let (addr, rest) = rest.split_once(" obtained from ")?;
    let server = rest.split([',', ' ']).next()?;
    Some((addr.trim().to_owned(), server.to_owned()))
}

/// "(3, 3)" from busybox ping's "3 packets transmitted, 3 packets received, ...".
pub fn sent_received(summary: &str) -> Option<(u32, u32)> {
    let numbers: Vec<u32> =
        summary.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
    Some((*numbers.first()?, *numbers.get(1)?))
}

/// The switch's first table in `output` (the switch's own, or indented in ours):
/// "MAC table: ..." and the lines indented under it, without the indentation they share.
pub fn first_table(output: &str) -> String {
    let mut lines = output.lines().skip_while(|l| !l.trim_start().starts_with("MAC table:"));
    let Some(head) = lines.next() else { return String::new() };
    let indent = head.len() - head.trim_start().len();
    let under = |l: &&str| l.len() > indent + 2 && l[..indent + 2].trim().is_empty();
    let rows = lines.take_while(under).map(|l| format!("\n{}", &l[indent..]));
    std::iter::once(head[indent..].to_owned()).chain(rows).collect()
}

/// The guests that are up; each is stopped when this goes, also on an error or Ctrl-C.
struct Guests(Vec<(Boot, PathBuf)>);

impl Drop for Guests {
    fn drop(&mut self) {
        for (boot, pidfile) in &mut self.0 {
            boot.stop(pidfile);
        }
    }
}

const SWITCH: &str = "12_learning_switch";
const SERVER: &str = "10_dhcp_server";

pub fn run(options: &Options) -> Result<ExitCode> {
    let start = Instant::now();
    let root = is_root();
    let n = options.guests;
    say(format_args!(
        "tapbook VM lab, our network: {} on our switch, with our DHCP server and tap4",
        if n == 1 { "a Linux guest" } else { "two Linux guests" }
    ));

    let (server_bin, switch_bin) = match &options.bin {
        Some(bin) => {
            // --bin names the server; the switch is the one built next to it.
            let switch = bin.with_file_name(SWITCH);
            section(format_args!("1. The programs: {} and {}", bin.display(), switch.display()));
            (bin.clone(), switch)
        }
        None => {
            section(format_args!("1. Building {SERVER} and {SWITCH}"));
            let built = build_release(&[SERVER, SWITCH])?;
            for bin in &built {
                say(format_args!("    {}", repo_path(bin)));
            }
            (built[0].clone(), built[1].clone())
        }
    };
    let canonical =
        |p: &Path| std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()));
    let (server_bin, switch_bin) = (canonical(&server_bin)?, canonical(&switch_bin)?);
    let (netns, user) = lab_checks(options)?;
    let log = TempDir::new("vm-ours")?;
    // The sockets' directory: the programs' user makes its sockets there.
    let sockets = log.0.join("sockets");
    std::fs::create_dir_all(&sockets)
        .map_err(|e| format!("creating {}: {e}", sockets.display()))?;
    if root {
        let uid = nix::unistd::User::from_name(&user).ok().flatten().map(|u| u.uid.as_raw());
        std::os::unix::fs::chown(&sockets, uid, None)
            .map_err(|e| format!("chown {}: {e}", sockets.display()))?;
    }
    catch_stop_signals();

    section("2. The guest's kernel and initramfs");
    let mut kernels = kernel_order(options.kernel);
    std::fs::create_dir_all(&options.cache)
        .map_err(|e| format!("creating {}: {e}", options.cache.display()))?;
    let mut image = pick_kernel(&mut kernels, &options.cache)?;
    check_stop()?;

    match &netns {
        Some(name) => section(format_args!("3. The lab, in network namespace {name}")),
        None => section("3. The lab, in a user namespace of its own (no root, no sudo)"),
    }
    let mut lab = Lab::create(netns.clone(), if root { &user } else { "root" })?;
    say(format_args!("    tap4 with {KERNEL_IP}/24 (scripts/setup.sh): the kernel's port"));
    let how = if root { String::new() } else { " (you, with no capabilities)".to_owned() };

    // ANCHOR: ours
    let sock = |name: &str| sockets.join(format!("{name}.sock")).to_string_lossy().into_owned();
    let mut switch_args = vec!["--tap".to_owned(), IFACE.to_owned()];
    for g in 1..=n {
        switch_args.extend(["--stream".to_owned(), sock(&format!("guest{g}"))]);
    }
    switch_args.extend(["--stream".to_owned(), sock("responder"), "--quiet".to_owned()]);
    let server_args = ["--stream".to_owned(), sock("responder")];
    // ANCHOR_END: ours
    section(format_args!("4. {SWITCH}, as {user}{how}"));
    say(format_args!("    $ {SWITCH} {}", switch_args.join(" ")));
    let args: Vec<&str> = switch_args.iter().map(String::as_str).collect();
    let mut switch = lab.spawn(&switch_bin.to_string_lossy(), &args, Some(&user));
    let all = (1..=n).map(|g| format!("guest{g}")).chain(["responder".to_owned()]);
    let paths: Vec<PathBuf> = all.map(|name| PathBuf::from(sock(&name))).collect();
    let listening = wait_until(Duration::from_secs(10), || paths.iter().all(|p| p.exists()));
    if !listening || !lab.attached() {
        return Err(format!("{SWITCH} did not make its ports:\n{}", switch.output()));
    }
    say(indent(switch.output().trim_end(), "    "));

    section(format_args!("5. {SERVER} on the switch's port 'responder': no TAP, as {user}{how}"));
    say(format_args!("    $ {SERVER} {}", server_args.join(" ")));
    let mut server = lab.spawn(
        &server_bin.to_string_lossy(),
        &server_args.each_ref().map(String::as_str),
        Some(&user),
    );
    let connected = wait_until(Duration::from_secs(10), || {
        switch.output().contains("[responder] QEMU connected")
            || server.wait_exit(Duration::ZERO).is_some()
    });
    if !connected || server.wait_exit(Duration::ZERO).is_some() {
        return Err(format!("{SERVER} did not connect to the switch:\n{}", server.output()));
    }
    say(indent(server.output().trim_end(), "    "));
    check_stop()?;

    let mut guests = Guests(Vec::new());
    let mut addresses: Vec<String> = Vec::new();
    let mut accel_note = String::new();
    let mut accel = options.accel;
    for g in 1..=n {
        let netdev = format!(
            "stream,id=net0,server=off,addr.type=unix,addr.path={}",
            sock(&format!("guest{g}"))
        );
        // The second guest pings the first as well; the first pings the second when
        // the second is up (the handshake of scripts/vm/init.sh).
        let mut targets = vec![RESPONDER_IP.to_owned(), KERNEL_IP.to_owned()];
        targets.extend(addresses.iter().cloned());
        let wanted = GuestOptions {
            accel,
            mode: Mode::Batch,
            count: options.count,
            cache: options.cache.clone(),
            interactive: false,
            mac: guest_mac(g),
            append: format!("tapbook.ip=dhcp tapbook.ping={}", targets.join(",")),
        };
        section(format_args!(
            "{}. Booting guest {g} (QEMU {}, MAC {}) on the switch's port guest{g}",
            5 + g,
            qemu_version(),
            wanted.mac
        ));
        say(format_args!("    -netdev {netdev}"));
        let dir = log.0.join(format!("guest{g}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let pidfile = dir.join("qemu.pid");
        let booted = boot_guest(&wanted, &mut kernels, image.clone(), &dir, |guest| {
            let mut cmd = lab.command("qemu-system-x86_64");
            cmd.args(qemu_args(guest, &netdev, &pidfile));
            cmd
        })?;
        image = (booted.kernel.clone(), booted.initramfs.clone());
        if g == 1 {
            accel_note = booted.accel_note.clone();
        }
        // The next guest boots with what worked for this one (no second KVM attempt).
        accel = Some(booted.accel);
        let console = clean_console(&booted.run.console_text());
        let Some((addr, from)) = lease(&console) else {
            guests.0.push((booted.run, booted.pidfile));
            return Err(format!(
                "guest {g} got no DHCP lease; its console:\n{}",
                indent(&console, "    ")
            ));
        };
        say(format_args!(
            "    guest {g} got {addr} from {from}, did its pings in {} s",
            seconds(booted.boot_time)
        ));
        addresses.push(addr);
        guests.0.push((booted.run, booted.pidfile));
    }
    if n == 2 {
        // Guest 1 was up before guest 2 had an address: now it pings guest 2.
        let (first, _) = &mut guests.0[0];
        let done = |text: &str| text.matches("[guest] done; waiting for the host").count();
        let before = done(&first.console_text());
        if let Some(input) = first.input.as_mut() {
            let _ = writeln!(input, "ping {}", addresses[1]);
        }
        let pinged = wait_until(Duration::from_secs(60), || done(&first.console_text()) > before);
        if !pinged {
            return Err(format!("guest 1 did not ping guest 2 ({})", addresses[1]));
        }
    }

    // The table while every station is up: when a program hangs up, the switch forgets
    // the stations behind its port.
    switch.signal(Signal::SIGUSR1);
    let shown = wait_until(Duration::from_secs(5), || switch.output().contains("MAC table"));
    if !shown {
        return Err(format!("{SWITCH} printed no table on SIGUSR1:\n{}", switch.output()));
    }
    server.signal(Signal::SIGTERM);
    let server_status = server.wait_exit(Duration::from_secs(5));
    switch.signal(Signal::SIGTERM);
    let switch_status = switch.wait_exit(Duration::from_secs(5));
    let mut consoles = Vec::new();
    for (boot, _) in &mut guests.0 {
        boot.poweroff();
        consoles.push(clean_console(&boot.console_text()));
    }
    drop(guests);

    for (i, console) in consoles.iter().enumerate() {
        section(format_args!(
            "{}. Guest {}'s console (QEMU's -serial stdio), booted with {accel_note}",
            6 + n as usize + i,
            i + 1
        ));
        say(indent(console, "    "));
    }
    let next = 6 + 2 * n as usize;
    section(format_args!(
        "{next}. {SERVER}'s output, stopped with SIGTERM (its counters and leases)"
    ));
    say(indent(&server.output(), "    "));
    section(format_args!(
        "{}. {SWITCH}'s output: its table on SIGUSR1, then stopped with SIGTERM",
        next + 1
    ));
    say(indent(&switch.output(), "    "));

    section("Result");
    let mut failures = Vec::new();
    for (i, console) in consoles.iter().enumerate() {
        let g = i + 1;
        match lease(console) {
            Some((addr, from)) => say(format_args!("    guest {g}: lease of {addr} from {from}")),
            None => failures.push(format!("guest {g} got no lease")),
        }
        let mut targets = vec![RESPONDER_IP.to_owned(), KERNEL_IP.to_owned()];
        targets
            .extend(addresses.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, a)| a.clone()));
        for target in targets {
            let summary = ping_summary(console, &target);
            let got = summary.as_deref().and_then(sent_received);
            say(format_args!(
                "    guest {g}: ping {target}: {}",
                summary.as_deref().unwrap_or("no summary")
            ));
            if got.is_none_or(|(_, received)| received == 0) {
                failures.push(format!("guest {g}'s pings to {target} got no replies"));
            }
        }
    }
    say("    the switch's table while all were up (SIGUSR1):");
    say(indent(&first_table(&switch.output()), "    "));
    say(format_args!("    accelerator: {accel_note}"));
    say(format_args!("    took {} s in all", seconds(start.elapsed())));
    drop(lab);
    for (what, status) in [(SERVER, server_status), (SWITCH, switch_status)] {
        match status {
            Some(s) if s.success() => {}
            Some(s) => failures.push(format!("{what} exited with {s}")),
            None => failures.push(format!("{what} did not stop within 5 s of SIGTERM")),
        }
    }
    if !failures.is_empty() {
        return Err(failures.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_read_from_udhcpcs_line() {
        // busybox udhcpc 1.35 on the guest's console, as cargo lab vm --network ours got it.
        let console = "udhcpc: started, v1.35.0\nudhcpc: broadcasting discover\n\
                       udhcpc: broadcasting select for 172.16.1.100, server 172.16.1.2\n\
                       udhcpc: lease of 172.16.1.100 obtained from 172.16.1.2, lease time 3600\n";
        assert_eq!(lease(console), Some(("172.16.1.100".into(), "172.16.1.2".into())));
        assert_eq!(lease("udhcpc: no lease, failing\n"), None);
        assert_eq!(guest_mac(1), "52:54:00:12:34:56");
        assert_eq!(guest_mac(2), "52:54:00:12:34:57");
        assert_eq!(sent_received("3 packets transmitted, 2 packets received"), Some((3, 2)));
    }

    #[test]
    fn the_first_table_is_found_indented_or_not() {
        // 12_learning_switch's table on SIGUSR1, then a line of its own.
        let table = "MAC table: 2 entries, ageing 300 s\n  MAC                port        age\n  \
                     52:54:00:12:34:56  guest1      0.2 s\n  \
                     02:00:00:00:00:02  responder   0.7 s";
        let output = format!("[guest1] QEMU connected\n{table}\n[responder] forgot 1 station\n");
        assert_eq!(first_table(&output), table);
        assert_eq!(first_table(&indent(&output, "    ")), table);
        assert_eq!(first_table("no table"), "");
    }
}
