//! The recordings of "How real VMMs use TAP" (book/src/real-vmms.md): the system calls
//! QEMU makes on its tap next to the ones 01_open_clone makes, in a lab namespace made
//! for the purpose. QEMU runs with no guest at all (the firmware boots, finds no disk and
//! waits), under `strace -f -y -e trace=openat,ioctl`, and is stopped by its PID after a
//! few seconds. Only the lines about /dev/net/tun are kept, each with the name of the
//! thread that made it (QEMU runs with `-name ...,debug-threads=on` to name them).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::vm::TempDir;
use crate::{Lab, is_root, tool_exists, wait_until};

type Result<T> = std::result::Result<T, String>;

/// How long QEMU runs before it is stopped.
const SECONDS_TO_RUN: u64 = 2;

/// The kernel's names for the `tun_flags` bits set in `flags`:
/// `tap persist no_pi one_queue vnet_hdr`.
pub fn decode_tun_flags(flags: u32) -> String {
    tapbook::tap::iff_names(flags).join(" ")
}

fn hex(text: &str) -> u32 {
    u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).unwrap_or(0)
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The threads of process `pid` as (thread id, name), the main one first.
fn threads(pid: u32) -> Vec<(String, String)> {
    let comm = |tid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
            .map(|c| c.trim().to_owned())
            .unwrap_or_default()
    };
    let mut list = vec![(pid.to_string(), "main".to_owned())];
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for tid in dir.flatten().map(|e| e.file_name().to_string_lossy().into_owned()) {
            if tid != pid.to_string() {
                let name = comm(&tid);
                list.push((tid, name));
            }
        }
    }
    list
}

/// The lines of a trace about /dev/net/tun, each with the name of the thread that made
/// the call instead of its number.
fn tun_lines(trace: &str, threads: &[(String, String)]) -> String {
    let mut out = String::new();
    for line in trace.lines().filter(|l| l.contains("/dev/net/tun")) {
        let (tid, rest) = line.split_once(' ').unwrap_or((line, ""));
        let who = threads
            .iter()
            .find(|(t, _)| t == tid)
            .map_or_else(|| format!("pid {tid}"), |(_, n)| n.clone());
        out += &format!("{:<12} {}\n", format!("[{who}]"), rest.trim_start());
    }
    out
}

/// The child of `parent` (strace's one child: QEMU).
fn child_of(parent: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// QEMU on `tap` under strace for a few seconds: the trace, its threads, and (with
/// `state`) what the kernel shows about the tap while QEMU holds it.
fn trace_qemu(
    lab: &Lab,
    work: &Path,
    tag: &str,
    tap: &str,
    args: &[&str],
    state: Option<&Path>,
) -> Result<(String, Vec<(String, String)>)> {
    let trace = work.join(format!("{tag}.strace"));
    let console =
        std::fs::File::create(work.join(format!("{tag}.console"))).map_err(|e| e.to_string())?;
    // Run from / so that the traces do not show where the recording was started.
    let mut tracer = lab
        .command("env")
        .args(["-C", "/", "strace", "-f", "-y", "-e", "trace=openat,ioctl", "-o"])
        .arg(&trace)
        .args(["qemu-system-x86_64", "-name", "tapbook,debug-threads=on"])
        .args(args)
        .arg("-nographic")
        .stdin(Stdio::null())
        .stdout(console.try_clone().map_err(|e| e.to_string())?)
        .stderr(console)
        .spawn()
        .map_err(|e| format!("running strace: {e}"))?;
    let mut qemu = None;
    wait_until(Duration::from_secs(10), || {
        qemu = child_of(tracer.id());
        let exited = tracer.try_wait().is_ok_and(|s| s.is_some());
        exited || (qemu.is_some() && lab.attached_iface(tap))
    });
    let Some(qemu) = qemu.filter(|_| tracer.try_wait().is_ok_and(|s| s.is_none())) else {
        let _ = tracer.kill();
        let _ = tracer.wait();
        let console = std::fs::read_to_string(work.join(format!("{tag}.console")));
        return Err(format!("QEMU did not start:\n{}", console.unwrap_or_default()));
    };
    std::thread::sleep(Duration::from_secs(SECONDS_TO_RUN));
    let threads = threads(qemu);
    let recorded = match state {
        Some(file) => record_state(lab, tap, qemu, file),
        None => Ok(()),
    };
    let _ = kill(Pid::from_raw(qemu as i32), Signal::SIGTERM);
    let _ = tracer.wait();
    recorded?;
    let text = std::fs::read_to_string(&trace).map_err(|e| format!("reading the trace: {e}"))?;
    Ok((text, threads))
}

/// tapq0's flags, `ip -d link show` and QEMU's descriptors attached to a tap.
fn record_state(lab: &Lab, tap: &str, qemu: u32, file: &Path) -> Result<()> {
    let flags = run(lab.command("cat").arg(format!("/sys/class/net/{tap}/tun_flags")))?;
    let flags = flags.trim();
    let mut text = format!(
        "$ cat /sys/class/net/{tap}/tun_flags\n{flags}   ({})\n\n$ ip -d link show {tap}\n",
        decode_tun_flags(hex(flags))
    );
    text += &run(lab.command("ip").args(["-d", "link", "show", tap]))?;
    text += "\n$ grep iff /proc/QEMU/fdinfo/*     (QEMU's descriptors attached to a tap)\n";
    let mut fds: Vec<(u32, String)> = std::fs::read_dir(format!("/proc/{qemu}/fdinfo"))
        .map_err(|e| format!("reading QEMU's fdinfo: {e}"))?
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_string_lossy().parse().ok()?;
            let info = std::fs::read_to_string(e.path()).ok()?;
            let iff = info.lines().find(|l| l.starts_with("iff:"))?;
            Some((fd, iff.split_whitespace().collect::<Vec<_>>().join(" ")))
        })
        .collect();
    fds.sort();
    for (fd, iff) in fds {
        text += &format!("fdinfo/{fd}: {iff}\n");
    }
    std::fs::write(file, text).map_err(|e| format!("writing {}: {e}", file.display()))
}

/// TUNGETFEATURES on a fresh /dev/net/tun descriptor: the IFF_* flags this kernel knows.
fn tun_features() -> Result<u32> {
    use std::os::fd::AsRawFd;
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| format!("opening /dev/net/tun: {e}"))?;
    // TUNGETFEATURES is _IOR('T', 207, unsigned int); it works on a descriptor that is
    // not attached to any interface yet.
    const TUNGETFEATURES: nix::libc::c_ulong = 0x8004_54cf;
    let mut features: nix::libc::c_uint = 0;
    // SAFETY: the descriptor is open, and TUNGETFEATURES writes one unsigned int into
    // the variable it is given, which lives across the call.
    let rc = unsafe { nix::libc::ioctl(tun.as_raw_fd(), TUNGETFEATURES, &mut features) };
    if rc < 0 {
        return Err(format!("TUNGETFEATURES: {}", std::io::Error::last_os_error()));
    }
    Ok(features)
}

/// The files [`record`] writes.
pub const RECORDED: &[&str] = &[
    "vmm-qemu-strace.txt",
    "vmm-qemu-state.txt",
    "vmm-qemu-mq-strace.txt",
    "vmm-ours-strace.txt",
    "vmm-features.txt",
];

/// `cargo lab record vmm`: writes [`RECORDED`] into `dirs.out`, with the 01_open_clone of
/// `dirs.bin`.
pub fn record(dirs: &crate::record::Dirs) -> Result<()> {
    for tool in ["ip", "strace", "qemu-system-x86_64"] {
        if !tool_exists(tool) {
            return Err(format!(
                "{tool} is missing: apt-get install iproute2 strace qemu-system-x86"
            ));
        }
    }
    let open_clone = dirs.bin.join("01_open_clone");
    let work = TempDir::new("vmm")?;
    let name = is_root().then(|| format!("tapbook-vmm-{}", std::process::id()));
    let lab = Lab::namespace(name)?;
    let ip = |args: &[&str]| run(lab.command("ip").args(args)).map(drop);
    let mut files: Vec<(&str, String)> = Vec::new();

    // 1. QEMU on a persistent tap.
    ip(&["tuntap", "add", "dev", "tapq0", "mode", "tap"])?;
    ip(&["link", "set", "tapq0", "up"])?;
    let state = work.0.join("vmm-qemu-state.txt");
    let args = ["-netdev", "tap,id=n0,ifname=tapq0,script=no,downscript=no"];
    let args = [&args[..], &["-device", "virtio-net-pci,netdev=n0"]].concat();
    let (trace, threads) = trace_qemu(&lab, &work.0, "qemu", "tapq0", &args, Some(&state))?;
    files.push((
        "vmm-qemu-strace.txt",
        format!(
            "$ strace -f -y -e trace=openat,ioctl qemu-system-x86_64 {} -nographic\n  (only the \
             lines about /dev/net/tun; [thread] is the QEMU thread that made the call)\n\n{}",
            args.join(" "),
            tun_lines(&trace, &threads)
        ),
    ));
    files.push((
        "vmm-qemu-state.txt",
        std::fs::read_to_string(&state).map_err(|e| format!("reading the state: {e}"))?,
    ));

    // 2. Two queues.
    ip(&["tuntap", "add", "dev", "tapq1", "mode", "tap", "multi_queue"])?;
    ip(&["link", "set", "tapq1", "up"])?;
    let args = ["-netdev", "tap,id=n1,ifname=tapq1,script=no,downscript=no,queues=2"];
    let args = [&args[..], &["-device", "virtio-net-pci,netdev=n1,mq=on,vectors=6"]].concat();
    let (trace, threads) = trace_qemu(&lab, &work.0, "qemu-mq", "tapq1", &args, None)?;
    files.push((
        "vmm-qemu-mq-strace.txt",
        format!(
            "$ strace -f -y -e trace=openat,ioctl qemu-system-x86_64 {} -nographic\n  (tapq1 was \
             made with: ip tuntap add dev tapq1 mode tap multi_queue)\n\n{}",
            args.join(" "),
            tun_lines(&trace, &threads)
        ),
    ));

    // 3. Ours.
    ip(&["tuntap", "add", "dev", "tap4", "mode", "tap"])?;
    ip(&["link", "set", "tap4", "up"])?;
    let trace_file = work.0.join("ours.strace");
    let out_text = lab
        .command("env")
        .args(["-C", "/", "strace", "-f", "-y", "-e", "trace=openat,ioctl", "-o"])
        .arg(&trace_file)
        .arg(&open_clone)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running strace: {e}"))?;
    if !out_text.status.success() {
        return Err(format!(
            "01_open_clone failed: {}{}",
            String::from_utf8_lossy(&out_text.stdout),
            String::from_utf8_lossy(&out_text.stderr)
        ));
    }
    let trace = std::fs::read_to_string(&trace_file).map_err(|e| e.to_string())?;
    let main = trace.split_whitespace().next().unwrap_or("").to_owned();
    files.push((
        "vmm-ours-strace.txt",
        format!(
            "$ strace -f -y -e trace=openat,ioctl target/release/01_open_clone </dev/null\n  (only \
             the lines about /dev/net/tun)\n\n{}",
            tun_lines(&trace, &[(main, "main".to_owned())])
        ),
    ));

    // 4. TUNGETFEATURES.
    let features = tun_features()?;
    let release = run(Command::new("uname").arg("-r"))?;
    files.push((
        "vmm-features.txt",
        format!(
            "TUNGETFEATURES on a fresh /dev/net/tun descriptor (kernel {}):\n{features:#x}   ({})\n",
            release.trim(),
            decode_tun_flags(features)
        ),
    ));
    drop(lab);

    for (name, text) in &files {
        let path = dirs.out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}
