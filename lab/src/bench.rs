//! `cargo lab bench`: how fast is the full responder? Flood it with the kernel's own ping
//! and compare it with the kernel itself and with the crudest user-space loop; and
//! `cargo lab bench offload`, the offloads' bulk UDP table (examples/offload_bench.rs).
//!
//! The labs are tapbook_lab's: a [`Lab`] with tap4 for the responders (started and
//! waited for with [`Lab::spawn`] and [`Lab::wait_attached`]), and two bare namespaces
//! joined by a veth pair for the kernel's reference. All of them go when the run ends.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use tapbook_lab::{Lab, RESPONDER_IP, RESPONDER_MAC, is_root, say, tell};

use crate::{Result, build, check_stop, number, split_option, target_dir, through_sudo, value};

const USAGE: &str = "\
Usage: cargo lab bench [OPTIONS]
       cargo lab bench offload [--seconds N | --quick]

Flood-ping four responders with the kernel's own 'ping -f -l PRELOAD -q', at each
payload size, and print a table of replies per second and loss:
  kernel    the kernel answering itself over a veth pair between two network
            namespaces (no TAP, no user space: the in-kernel reference);
  bare      examples/bare_loop.rs: blocking read, swap the addresses, patch the
            ICMP checksum, write (the user-space bound);
  quiet     05_full_responder --quiet (every check, counters, no output);
  output    05_full_responder with its per-frame lines going to a file.
Each figure is the best of several rounds, run interleaved (one of each in turn),
because a shared machine is noisy; loss counts every round. The ratios are to the
bare loop at the same size.

Builds the release binaries first (as you), then needs root for the namespaces: run as
a user, it goes through sudo for that part. Everything happens in namespaces it makes
and removes again, also on failure or Ctrl-C. The table goes to stdout (markdown);
progress to stderr.

Options:
  --short             a quick check that everything works (what cargo lab test runs):
                      3000 requests, 1 round; fails if a responder does not answer,
                      never on figures
  --count N           requests per figure (default: 100000)
  --rounds N          rounds (default: 5)
  --sizes \"A B\"       ICMP payload sizes in bytes (default: \"56 1472\"; at most 1472,
                      so that a frame fits the 1500-byte MTU)
  --preload N         requests in flight, ping's -l (default: 64)
  --cpus P,R          run ping on CPU P and the responders on CPU R (default: the
                      first and the last CPU). Left to the scheduler, the two share a
                      CPU in some runs and not in others, which halves or doubles the
                      figure; pinned, every run measures the same thing.
  --no-pin            leave the placement to the scheduler
  --no-realtime       run ping and the responders as ordinary processes. By default
                      they run with real-time priority (chrt --fifo 1), so that whatever
                      else the machine is doing waits while they run, instead of
                      deciding the figures. Both sleep whenever they have nothing to do.
  --save FILE         also write the table to FILE (e.g. book/src/output/bench.txt)
  --bin-dir DIR       use the binaries in DIR (05_full_responder and
                      examples/bare_loop) instead of building them
  --netns-prefix P    name the namespaces P-PID-... (default: tb-bench)
  -h, --help          this help

bench offload: cargo run --release --example offload_bench (built as you, run as root):
a bulk UDP flow each way through tap4, plain and with the virtio-net offloads, and
io_uring and multiqueue next to them. Its last line is the summary:
  offload-summary rx_ratio=R tx_ratio=T csum_errors=N mq_ratio=M uring_ratio=U
  --seconds N         seconds per row (default: 3)
  --quick             0.3 s per row (the quick check)

Reproduce the book's tables:  cargo lab bench --save book/src/output/bench.txt
                              cargo lab record offloads   (09-bench.txt)
";

const SHORT_COUNT: u32 = 3000;
const CONFIGS: [&str; 4] = ["kernel", "bare", "quiet", "output"];

struct Options {
    count: u32,
    rounds: u32,
    sizes: Vec<u32>,
    preload: u32,
    cpus: Option<(u32, u32)>,
    pin: bool,
    realtime: bool,
    save: Option<PathBuf>,
    bin_dir: Option<PathBuf>,
    prefix: String,
    short: bool,
}

pub fn main(args: &[String]) -> Result<ExitCode> {
    if args.first().is_some_and(|a| a == "offload") {
        return offload(&args[1..]);
    }
    let mut o = Options {
        count: 100_000,
        rounds: 5,
        sizes: vec![56, 1472],
        preload: 64,
        cpus: None,
        pin: true,
        realtime: true,
        save: None,
        bin_dir: None,
        prefix: "tb-bench".into(),
        short: false,
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (option, inline) = split_option(arg);
        match option {
            "-h" | "--help" => {
                say(USAGE.trim_end());
                return Ok(ExitCode::SUCCESS);
            }
            "--short" => {
                o.short = true;
                o.count = SHORT_COUNT;
                o.rounds = 1;
            }
            "--count" => o.count = number(option, &value(option, inline, &mut rest)?)?,
            "--rounds" => o.rounds = number(option, &value(option, inline, &mut rest)?)?,
            "--preload" => o.preload = number(option, &value(option, inline, &mut rest)?)?,
            "--sizes" => {
                let v = value(option, inline, &mut rest)?;
                o.sizes = v
                    .split_whitespace()
                    .map(|s| s.parse().ok().filter(|n| *n <= 1472))
                    .collect::<Option<Vec<u32>>>()
                    .filter(|s| !s.is_empty())
                    .ok_or(format!("--sizes wants payload sizes from 0 to 1472, not '{v}'"))?;
            }
            "--cpus" => {
                let v = value(option, inline, &mut rest)?;
                let pair =
                    v.split_once(',').and_then(|(p, r)| Some((p.parse().ok()?, r.parse().ok()?)));
                o.cpus =
                    Some(pair.ok_or(format!("--cpus wants two CPU numbers like 0,1, not '{v}'"))?);
            }
            "--no-pin" => o.pin = false,
            "--no-realtime" => o.realtime = false,
            "--save" => o.save = Some(PathBuf::from(value(option, inline, &mut rest)?)),
            "--bin-dir" => o.bin_dir = Some(PathBuf::from(value(option, inline, &mut rest)?)),
            "--netns-prefix" => {
                let v = value(option, inline, &mut rest)?;
                let ok = v.len() <= 20
                    && v.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                if !ok {
                    return Err(format!("bad --netns-prefix '{v}'"));
                }
                o.prefix = v;
            }
            _ => return Err(format!("unknown option '{arg}' (try: cargo lab bench --help)")),
        }
    }
    let bin_dir = match o.bin_dir.clone() {
        Some(dir) => dir,
        None => {
            tell("Building 05_full_responder and examples/bare_loop (cargo build --release)");
            build(&["--bin", "05_full_responder", "--example", "bare_loop"])?;
            target_dir()?.join("release")
        }
    };
    let bin_dir =
        std::fs::canonicalize(&bin_dir).map_err(|e| format!("{}: {e}", bin_dir.display()))?;
    if !is_root() {
        let mut forward: Vec<String> =
            ["--bin-dir".into(), bin_dir.to_string_lossy().into_owned()].into();
        forward.extend(args.iter().cloned());
        if let Some(save) = &o.save {
            let save = std::path::absolute(save).map_err(|e| e.to_string())?;
            forward.push(format!("--save={}", save.display()));
        }
        forward.insert(0, "bench".into());
        return through_sudo("the benchmark needs root (network namespaces)", &forward);
    }
    let table = run(&o, &bin_dir)?;
    say(&table);
    if let Some(save) = &o.save {
        std::fs::write(save, format!("{table}\n"))
            .map_err(|e| format!("writing {}: {e}", save.display()))?;
        give_to_sudo_user(save);
        tell(format_args!("Saved the table to {}", save.display()));
    }
    Ok(ExitCode::SUCCESS)
}

/// Run through sudo, a file goes to the user who asked for it.
fn give_to_sudo_user(path: &std::path::Path) {
    let id = |var| std::env::var(var).ok().and_then(|v| v.parse::<u32>().ok());
    if let (Some(uid), Some(gid)) = (id("SUDO_UID"), id("SUDO_GID")) {
        let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    }
}

/// Whether `cmd ARGS true` runs here (taskset, chrt).
fn works(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .arg("true")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One measurement's result.
struct Measured {
    sent: u64,
    received: u64,
    rate: u64,
    cpu_ns: Option<u64>,
}

/// The CPU time the responder has used so far, in nanoseconds: the first field of
/// /proc/PID/schedstat, user and kernel time together. The kernel's work to take in each
/// reply and deliver it to ping's socket is done in the responder's write(2), so it counts
/// as the responder's.
fn cpu_ns(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

struct Bench<'a> {
    o: &'a Options,
    tap: Lab,
    ka: Lab,
    /// Held only so that the namespace lives as long as the run.
    _kb: Lab,
    ping_prefix: Vec<String>,
    responder_prefix: Vec<String>,
    responder: PathBuf,
    bare: PathBuf,
}

impl Bench<'_> {
    /// The kernel's flood ping from `lab`: -f sends the next request as soon as a reply
    /// comes back (or every 10 ms), -l keeps PRELOAD in flight. A responder that dies
    /// would leave ping sending 100 requests a second: timeout interrupts it as Ctrl-C
    /// would, and ping still prints its summary. (ping's own -w would stop at COUNT
    /// replies and call the requests still in flight lost.)
    fn flood(&self, kernel: bool, size: u32) -> Result<String> {
        let lab = if kernel { &self.ka } else { &self.tap };
        let deadline = 5 + self.o.count / 2000;
        let out = lab
            .command("timeout")
            .args(["-s", "INT", &deadline.to_string()])
            .args(&self.ping_prefix)
            .args(["ping", "-f", "-q", "-l", &self.o.preload.to_string()])
            .args(["-c", &self.o.count.to_string(), "-s", &size.to_string(), RESPONDER_IP])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running ping: {e}"))?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    fn measure(&mut self, config: &str, size: u32) -> Result<(Measured, Option<u64>, Option<u64>)> {
        let (out, cpu, counted, lines) = if config == "kernel" {
            (self.flood(true, size)?, None, None, None)
        } else {
            let (bin, args): (&PathBuf, Vec<&str>) = match config {
                "bare" => (&self.bare, vec!["tap4"]),
                "quiet" => (&self.responder, vec!["--quiet"]),
                _ => (&self.responder, vec![]),
            };
            let bin = bin.to_string_lossy().into_owned();
            let mut argv: Vec<&str> = self.responder_prefix.iter().map(String::as_str).collect();
            argv.push(&bin);
            argv.extend(args);
            let mut r = self.tap.spawn(argv[0], &argv[1..], None);
            self.tap.wait_attached(&mut r)?;
            let start = cpu_ns(r.pid());
            let out = self.flood(false, size)?;
            let end = cpu_ns(r.pid());
            let (status, _) = r.stop();
            let cpu = start.zip(end).map(|(s, e)| e.saturating_sub(s));
            let stdout = r.stdout_text();
            let _ = std::fs::remove_dir_all(r.stdout.parent().unwrap_or(&r.stdout));
            if config == "bare" {
                (out, cpu, None, None)
            } else {
                match status {
                    Some(s) if s.success() => {}
                    _ => {
                        return Err(format!(
                            "05_full_responder ({config}) exited with {status:?}:\n{}",
                            r.stderr_text()
                        ));
                    }
                }
                // The counters 05 printed on SIGTERM must account for the replies ping
                // received, and with output on, one "->" line per reply.
                let counted = stdout
                    .lines()
                    .find(|l| l.contains("ICMP echo replies sent"))
                    .and_then(|l| l.split_whitespace().next()?.parse().ok())
                    .ok_or("05_full_responder printed no counters")?;
                let lines = (config == "output")
                    .then(|| stdout.lines().filter(|l| l.starts_with("-> ")).count() as u64);
                (out, cpu, Some(counted), lines)
            }
        };
        let summary = out.lines().find(|l| l.contains("packets transmitted")).unwrap_or("");
        let numbers: Vec<u64> =
            summary.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
        let ms = summary
            .split(", ")
            .find_map(|part| part.strip_prefix("time ")?.strip_suffix("ms")?.parse::<u64>().ok());
        let (Some(&sent), Some(&received), Some(ms)) = (numbers.first(), numbers.get(1), ms) else {
            return Err(format!("{config}, {size} bytes: cannot read ping's summary:\n{out}"));
        };
        if received == 0 {
            return Err(format!("{config}, {size} bytes: no reply at all ({summary})"));
        }
        let rate = received * 1000 / ms.max(1);
        Ok((Measured { sent, received, rate, cpu_ns: cpu }, counted, lines))
    }
}

fn run(o: &Options, bin_dir: &std::path::Path) -> Result<String> {
    let responder = bin_dir.join("05_full_responder");
    let bare = bin_dir.join("examples/bare_loop");
    for bin in [&responder, &bare] {
        if !bin.is_file() {
            return Err(format!(
                "no {} (build with: cargo build --release --bins --examples)",
                bin.display()
            ));
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let (ping_cpu, responder_cpu) = o.cpus.unwrap_or((0, cpus - 1));
    let mut pin = o.pin;
    let mut realtime = o.realtime;
    // Pinning and real-time priority make the figures repeatable, but a container may not
    // allow them: then say so and measure without.
    if pin
        && !(works("taskset", &["-c", &ping_cpu.to_string()])
            && works("taskset", &["-c", &responder_cpu.to_string()]))
    {
        tell(format_args!(
            "warning: cannot pin to CPUs {ping_cpu},{responder_cpu} (taskset failed): leaving placement to the scheduler"
        ));
        pin = false;
    }
    if realtime && !works("chrt", &["--fifo", "1"]) {
        tell("warning: cannot use real-time priority (chrt --fifo 1 failed): measuring without it");
        realtime = false;
    }
    let prefix = |cpu: u32| {
        let mut p: Vec<String> = Vec::new();
        if realtime {
            p.extend(["chrt", "--fifo", "1"].map(String::from));
        }
        if pin {
            p.extend(["taskset".into(), "-c".into(), cpu.to_string()]);
        }
        p
    };
    let id = std::process::id();
    let name = |tag: &str| format!("{}-{id}-{tag}", o.prefix);
    tell(format_args!(
        "Setting up namespaces {} (tap4) and {} / {} (veth pair)",
        name("tap"),
        name("ka"),
        name("kb")
    ));
    let tap = Lab::create(Some(name("tap")), "root")?;
    // The bare loop answers no ARP: the kernel gets our MAC once and for all.
    tap.pin_responder("tap4");
    let ka = Lab::namespace(Some(name("ka")))?;
    let kb = Lab::namespace(Some(name("kb")))?;
    ka.ip(&["link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", &kb.netns]);
    kb.ip(&["link", "set", "veth1", "address", RESPONDER_MAC]);
    ka.ip(&["addr", "add", "172.16.1.1/24", "dev", "veth0"]);
    kb.ip(&["addr", "add", &format!("{RESPONDER_IP}/24"), "dev", "veth1"]);
    ka.ip(&["link", "set", "veth0", "up"]);
    kb.ip(&["link", "set", "veth1", "up"]);
    ka.pin_responder("veth0");
    let mut bench = Bench {
        o,
        tap,
        ka,
        _kb: kb,
        ping_prefix: prefix(ping_cpu),
        responder_prefix: prefix(responder_cpu),
        responder,
        bare,
    };

    let mut best: HashMap<(&str, u32), u64> = HashMap::new();
    let mut tx: HashMap<(&str, u32), u64> = HashMap::new();
    let mut rx: HashMap<(&str, u32), u64> = HashMap::new();
    let mut all: HashMap<(&str, u32), Vec<u64>> = HashMap::new();
    let mut cpu: HashMap<(&str, u32), u64> = HashMap::new();
    let sizes: Vec<String> = o.sizes.iter().map(u32::to_string).collect();
    tell(format_args!(
        "Flooding: {} requests per figure, {} round(s), payloads: {}",
        o.count,
        o.rounds,
        sizes.join(" ")
    ));
    for round in 1..=o.rounds {
        for &size in &o.sizes {
            // Rotate the order every round, so no configuration always runs first.
            for i in 0..CONFIGS.len() {
                let config = CONFIGS[(i + round as usize - 1) % CONFIGS.len()];
                let (m, counted, lines) = bench.measure(config, size)?;
                check_stop()?;
                let key = (config, size);
                *tx.entry(key).or_default() += m.sent;
                *rx.entry(key).or_default() += m.received;
                all.entry(key).or_default().push(m.rate);
                let b = best.entry(key).or_default();
                *b = (*b).max(m.rate);
                let per_reply = m.cpu_ns.map(|n| n / m.received);
                if let Some(p) = per_reply {
                    let c = cpu.entry(key).or_insert(p);
                    *c = (*c).min(p);
                }
                tell(format_args!(
                    "  round {round}/{}  {size:>4} bytes  {config:<6}  {:>7} replies/s  {}/{} answered  {}",
                    o.rounds,
                    m.rate,
                    m.received,
                    m.sent,
                    per_reply.map_or(String::new(), |p| format!("{p} ns CPU/reply"))
                ));
                if let Some(counted) = counted
                    && counted < m.received
                {
                    return Err(format!(
                        "{config}: ping got {} replies but 05_full_responder counted {counted}",
                        m.received
                    ));
                }
                if let Some(lines) = lines
                    && lines < m.received
                {
                    return Err(format!(
                        "output: {} replies but only {lines} '->' lines in the output file",
                        m.received
                    ));
                }
            }
        }
    }

    // ---- the table (markdown: the book includes it)
    let describe = |config: &str| match config {
        "kernel" => "the kernel itself, over veth",
        "bare" => "bare Rust loop (`examples/bare_loop.rs`)",
        "quiet" => "`05_full_responder --quiet`",
        _ => "`05_full_responder > file`",
    };
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                Some(
                    l.strip_prefix("model name")?.trim_start().strip_prefix(':')?.trim().to_owned(),
                )
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown".into(), |r| r.trim().to_owned());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map_or(String::new(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let mut placement = if pin {
        format!("ping on CPU {ping_cpu}, the responders on CPU {responder_cpu}")
    } else {
        "ping and the responders placed by the scheduler".to_owned()
    };
    if realtime {
        placement.push_str(", both at real-time priority");
    }
    let mut t = format!(
        "Flood ping (`ping -f -q -l {} -c {}`), best of {} interleaved round(s) per figure;\n\
         loss over all rounds; {placement}. Linux {kernel}, {cpus} x {model}, {date}.\n\n\
         | payload | responder | replies/s | loss | vs bare loop | CPU per reply | every round |\n\
         |--------:|-----------|----------:|-----:|-------------:|--------------:|-------------|\n",
        o.preload, o.count, o.rounds
    );
    for &size in &o.sizes {
        let bare = best[&("bare", size)];
        for config in CONFIGS {
            let key = (config, size);
            let (t_, r_) = (tx[&key], rx[&key]);
            let loss = if t_ > 0 { 100.0 * (t_ - r_) as f64 / t_ as f64 } else { 0.0 };
            let ratio = if bare > 0 { best[&key] as f64 / bare as f64 } else { 0.0 };
            let c =
                cpu.get(&key).map_or("-".to_owned(), |n| format!("{:.2} µs", *n as f64 / 1000.0));
            let rounds: Vec<String> = all[&key].iter().map(u64::to_string).collect();
            t.push_str(&format!(
                "| {size} B | {} | {} | {loss:.2}% | {ratio:.2}x | {c} | {} |\n",
                describe(config),
                best[&key],
                rounds.join(" ")
            ));
        }
    }
    let _ = o.short;
    Ok(t.trim_end().to_owned())
}

/// `cargo lab bench offload`: examples/offload_bench.rs, built as the caller and run as
/// root (through sudo if need be); its last line must be the summary.
fn offload(args: &[String]) -> Result<ExitCode> {
    let mut forward: Vec<String> = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (option, inline) = split_option(arg);
        match option {
            "-h" | "--help" => {
                say(USAGE.trim_end());
                return Ok(ExitCode::SUCCESS);
            }
            "--quick" => forward.push("--quick".into()),
            "--seconds" => {
                let v = value(option, inline, &mut rest)?;
                if !v.parse::<f64>().is_ok_and(|s| s > 0.0) {
                    return Err(format!("--seconds wants a number of seconds, not '{v}'"));
                }
                forward.extend(["--seconds".into(), v]);
            }
            _ => return Err(format!("unknown option '{arg}' (try: cargo lab bench --help)")),
        }
    }
    let mut shown = vec!["cargo", "run", "--release", "--example", "offload_bench", "--"];
    shown.extend(forward.iter().map(String::as_str));
    tell(format_args!(
        "Building: cargo build --release --example offload_bench; then, as root: {}",
        shown.join(" ")
    ));
    build(&["--example", "offload_bench"])?;
    let bin = target_dir()?.join("release/examples/offload_bench");
    let mut cmd = if is_root() {
        Command::new(&bin)
    } else {
        if !tapbook_lab::can_sudo() {
            return Err(
                "offload_bench needs root (a namespace, tap4): run it as root, or allow sudo"
                    .into(),
            );
        }
        let mut c = Command::new("sudo");
        c.arg(&bin);
        c
    };
    let out = cmd
        .args(&forward)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    say(text.trim_end());
    if !out.status.success() {
        return Err(format!("offload_bench failed ({})", out.status));
    }
    let last = text.lines().last().unwrap_or("");
    if !last.starts_with("offload-summary rx_ratio=") {
        return Err(format!("offload_bench's last line is not its summary: '{last}'"));
    }
    Ok(ExitCode::SUCCESS)
}
