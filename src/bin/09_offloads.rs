//! Chapter 9: the virtio-net header for real. Opens the TAP as a VMM does (`IFF_VNET_HDR`,
//! `TUNSETOFFLOAD`), then either receives (prints each read's header, finishes partial
//! checksums and cuts superframes into wire-size frames) or, with `--send`, writes UDP
//! superframes for the kernel to cut. With `--queues N`, it reads N queues of a
//! multi-queue TAP, one thread each, and says which flows came out of which queue.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, bail};
use tapbook::Tap;
use tapbook::output::Output;
use tapbook::pcap::PcapWriter;
use tapbook::segment::{self, UdpFlow};
use tapbook::vnet::{self, Offloads, TapOptions};
use tapbook::wire::MacAddr;
use tapbook::wire::virtio_net::{GsoType, VirtioNetHeader, VirtioNetRepr};

const USAGE: &str = "\
Usage: 09_offloads [OPTIONS]

Opens a TAP with a virtio-net header and offloads as QEMU or Firecracker does.
Receives by default: one line per read, then the wire-size frames it holds.

Options:
  -i, --iface NAME      the TAP interface [default: tap4]
      --offloads LIST   what to accept: none, or some of
                        csum,tso4,tso6,uso4,uso6 [default: all five]
      --plain           no virtio-net header at all (chapter 1's TAP):
                        the kernel segments
      --hdr-len N       virtio-net header size, 10 or 12 [default: 12]
      --pcap FILE       write the wire-size frames (after finishing and
                        cutting) to FILE
      --raw-pcap FILE   write the frames exactly as read (superframes, partial
                        checksums)
  -q, --quiet           no line per read, only the final counts
      --queues N        open N queues (IFF_MULTI_QUEUE), one thread each,
                        and count the flows each receives [default: 1];
                        tap4 must be multi_queue
      --send ADDR:PORT  instead of receiving, send --bytes of UDP
                        from 172.16.1.2:9000
      --bytes N         how much to send [default: 64000]
      --segment N       payload bytes per datagram; one superframe carries up
                        to 64 KiB [default: 1000]
  -h, --help            print this help";

struct Options {
    iface: String,
    plain: bool,
    offloads: Offloads,
    hdr_len: usize,
    pcap: Option<PathBuf>,
    raw_pcap: Option<PathBuf>,
    quiet: bool,
    send: Option<SocketAddrV4>,
    bytes: usize,
    segment: u16,
    queues: usize,
}

fn parse_args() -> Result<Option<Options>, String> {
    let mut o = Options {
        iface: "tap4".into(),
        plain: false,
        offloads: Offloads::SEGMENTABLE,
        hdr_len: 12,
        pcap: None,
        raw_pcap: None,
        quiet: false,
        send: None,
        bytes: 64_000,
        segment: 1000,
        queues: 1,
    };
    // Arguments are bytes, not necessarily UTF-8: file names are taken as they are, the
    // rest must be text (see tapbook::cli).
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let Some(flag) = arg.to_str() else {
            return Err(format!("unexpected argument {arg:?}:\nit is not UTF-8, and no option is"));
        };
        let mut path = |what: &str| args.next().ok_or(format!("{flag} needs {what}"));
        let mut value = |what: &str| {
            path(what)?.into_string().map_err(|v| format!("{flag}: {v:?} is not UTF-8 text"))
        };
        match flag {
            "-h" | "--help" => return Ok(None),
            "-i" | "--iface" => o.iface = value("an interface name")?,
            "--offloads" => o.offloads = Offloads::parse(&value("a list")?)?,
            "--plain" => o.plain = true,
            "--hdr-len" => {
                o.hdr_len = match value("10 or 12")?.as_str() {
                    "10" => 10,
                    "12" => 12,
                    other => return Err(format!("--hdr-len: {other:?} is not 10 or 12")),
                }
            }
            "--pcap" => o.pcap = Some(path("a file name")?.into()),
            "--raw-pcap" => o.raw_pcap = Some(path("a file name")?.into()),
            "-q" | "--quiet" => o.quiet = true,
            "--send" => {
                let v = value("ADDR:PORT")?;
                o.send = Some(v.parse().map_err(|_| format!("--send: {v:?} is not ADDR:PORT"))?);
            }
            "--bytes" => {
                let v = value("a number")?;
                o.bytes = v.parse().map_err(|_| format!("--bytes: {v:?} is not a number"))?;
            }
            "--segment" => {
                let v = value("a number")?;
                o.segment = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1472).contains(n))
                    .ok_or(format!("--segment: {v:?} is not a number from 1 to 1472"))?;
            }
            "--queues" => {
                let v = value("a number")?;
                o.queues = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or(format!("--queues: {v:?} is not a number from 1 to 64"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(o))
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(Some(options)) => options,
        Ok(None) => {
            // `--help > /dev/full` is an error like any other.
            return tapbook::cli::exit_status(
                Output::stdout().write_all(USAGE.as_bytes()).map_err(Into::into),
            );
        }
        Err(why) => {
            tapbook::output::print_error(format_args!("Error: {why}\n\n{USAGE}"));
            return ExitCode::from(2);
        }
    };
    let result = tapbook::signals::stop_on_signals()
        .map_err(|errno| anyhow::anyhow!("installing the Ctrl-C and SIGTERM handlers: {errno}"))
        .and_then(|()| run(&options));
    tapbook::cli::exit_status(result)
}

fn run(o: &Options) -> anyhow::Result<()> {
    // ANCHOR: open
    let options = if o.plain {
        Tap::options()
    } else {
        Tap::options().vnet_hdr(o.hdr_len).offloads(o.offloads)
    };
    if o.queues > 1 {
        return receive_queues(o, &options);
    }
    let (tap, negotiated) = options.open(&o.iface)?;
    let mut out = BufWriter::new(Output::stdout());
    if let Some(notice) = tap.created_notice(Ipv4Addr::new(172, 16, 1, 2)) {
        writeln!(out, "{notice}\n")?;
    }
    print_attached(&mut out, &tap.name(), &negotiated)?;
    // ANCHOR_END: open
    match o.send {
        Some(to) => send(o, &tap, negotiated.vnet_hdr_len, to, &mut out),
        None => receive(o, &tap, negotiated.vnet_hdr_len, &mut out),
    }
}

fn pcap(path: &Option<PathBuf>) -> anyhow::Result<Option<PcapWriter<BufWriter<File>>>> {
    path.as_ref()
        .map(|p| {
            let file = File::create(p).with_context(|| format!("creating {}", p.display()))?;
            PcapWriter::new(BufWriter::new(file)).context("writing the pcap header")
        })
        .transpose()
}

/// How one read's header reads aloud.
fn describe(vnet: &VirtioNetRepr) -> String {
    let mut text = String::new();
    text += if vnet.needs_csum {
        "NEEDS_CSUM"
    } else if vnet.data_valid {
        "DATA_VALID"
    } else {
        "-"
    };
    let gso = match vnet.gso() {
        GsoType::None => "none",
        GsoType::TcpV4 => "TCPV4",
        GsoType::TcpV6 => "TCPV6",
        GsoType::Udp => "UDP",
        GsoType::UdpL4 => "UDP_L4",
        GsoType::Unknown(_) => "?",
    };
    text += &format!(" gso_type={} ({gso})", vnet.gso_type);
    if vnet.gso() != GsoType::None {
        text += &format!(" gso_size={} hdr_len={}", vnet.gso_size, vnet.hdr_len);
    }
    if vnet.needs_csum {
        text += &format!(" csum_start={} csum_offset={}", vnet.csum_start, vnet.csum_offset);
    }
    text
}

fn receive(
    o: &Options,
    tap: &tapbook::Tap,
    hdr_len: usize,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut wire_pcap = pcap(&o.pcap)?;
    let mut raw_pcap = pcap(&o.raw_pcap)?;
    let (mut reads, mut frames, mut superframes, mut completed, mut errors) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut bad_checksums = 0u64;

    // ANCHOR: receive
    let mut buf = vec![0u8; vnet::READ_BUFFER_LEN];
    let mut scratch = Vec::with_capacity(vnet::READ_BUFFER_LEN);
    while let Some(len) = tap.read_frame_or_idle(&mut buf, || out.flush())? {
        reads += 1;
        let now = SystemTime::now();
        let (header, frame) = buf[..len].split_at(hdr_len.min(len));
        let vnet = match hdr_len {
            0 => VirtioNetRepr::default(),
            _ => match VirtioNetHeader::new_checked(header) {
                Ok(header) => VirtioNetRepr::parse(&header),
                Err(err) => {
                    errors += 1;
                    writeln!(out, "read #{reads}: {len} bytes: bad virtio-net header: {err}")?;
                    continue;
                }
            },
        };
        if let Some(raw) = raw_pcap.as_mut() {
            raw.write_frame(frame, now)?;
        }
        let mut cut = Vec::new();
        let result = segment::segment(&vnet, frame, &mut scratch, |wire| {
            if !segment::l4_checksum_ok(wire) && segment::layout(wire).is_ok() {
                bad_checksums += 1;
            }
            cut.push(wire.len());
            if let Some(pcap) = wire_pcap.as_mut() {
                // An error here shows up again at the final flush.
                let _ = pcap.write_frame(wire, now);
            }
        });
        // ANCHOR_END: receive
        match result {
            Ok(n) => {
                frames += n as u64;
                superframes += u64::from(vnet.gso() != GsoType::None);
                completed += u64::from(vnet.needs_csum) * n as u64;
            }
            Err(_) => errors += 1,
        }
        if !o.quiet {
            let what = if hdr_len == 0 {
                format!("read #{reads}: {len} bytes (no header)")
            } else {
                format!(
                    "read #{reads}: {len} bytes = {hdr_len}-byte header + {} frame\n    {}",
                    frame.len(),
                    describe(&vnet)
                )
            };
            let into = match &result {
                Ok(1) => String::new(),
                Ok(n) => format!("\n    -> {n} frames of {:?} bytes", cut),
                Err(err) => format!("\n    -> cannot cut: {err}"),
            };
            writeln!(out, "{what}{into}")?;
        }
    }
    if let Some(pcap) = wire_pcap.as_mut() {
        pcap.flush().context("writing --pcap")?;
    }
    if let Some(pcap) = raw_pcap.as_mut() {
        pcap.flush().context("writing --raw-pcap")?;
    }
    writeln!(
        out,
        "{reads} reads, {frames} wire frames, {superframes} superframes, \
         {completed} checksums completed, {bad_checksums} bad checksums, {errors} errors"
    )?;
    out.flush()?;
    Ok(())
}

/// The MAC address the kernel gave the TAP: where our frames must be addressed.
fn tap_mac(iface: &str) -> anyhow::Result<MacAddr> {
    let path = format!("/sys/class/net/{iface}/address");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.trim().parse().map_err(|e| anyhow::anyhow!("{path}: {e}"))
}

/// The payload byte at position `i` of the flow: a pattern the receiver can check.
pub fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

fn send(
    o: &Options,
    tap: &tapbook::Tap,
    hdr_len: usize,
    to: SocketAddrV4,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if hdr_len == 0 {
        bail!("--send writes superframes, which need the virtio-net header: drop --plain");
    }
    let flow = UdpFlow {
        src_mac: MacAddr([0x02, 0, 0, 0, 0, 0x02]),
        dst_mac: tap_mac(&tap.name())?,
        src: Ipv4Addr::new(172, 16, 1, 2),
        dst: *to.ip(),
        src_port: 9000,
        dst_port: to.port(),
        ident: 0,
    };
    // ANCHOR: send
    // As many whole segments as fit in one 64 KiB IPv4 packet.
    let per_superframe = (65535 - 20 - 8) / usize::from(o.segment) * usize::from(o.segment);
    let payload: Vec<u8> = (0..o.bytes).map(pattern).collect();
    let mut frame = Vec::with_capacity(vnet::READ_BUFFER_LEN);
    let (mut writes, mut ident) = (0u64, 0u16);
    for chunk in payload.chunks(per_superframe) {
        let flow = UdpFlow { ident, ..flow };
        segment::build_udp_superframe(&flow, chunk, o.segment, hdr_len, &mut frame)?;
        tap.write_frame(&frame)?;
        writes += 1;
        ident = ident.wrapping_add(chunk.len().div_ceil(usize::from(o.segment)) as u16);
    }
    // ANCHOR_END: send
    writeln!(
        out,
        "sent {} bytes to {to} in {writes} writes of up to {} datagrams of {} bytes",
        o.bytes,
        per_superframe / usize::from(o.segment),
        o.segment
    )?;
    out.flush()?;
    Ok(())
}

/// The flow a wire-size frame belongs to, as `UDP 172.16.1.1:40001 > 172.16.1.2:9000`.
fn flow_of(wire: &[u8]) -> String {
    let Ok(layout) = segment::layout(wire) else {
        return other_flow(wire);
    };
    let addr = |at: usize, len: usize| -> Option<std::net::IpAddr> {
        let bytes = wire.get(at..at + len)?;
        Some(match len {
            4 => <[u8; 4]>::try_from(bytes).ok()?.into(),
            _ => <[u8; 16]>::try_from(bytes).ok()?.into(),
        })
    };
    let port = |at: usize| wire.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let (src, dst) = match layout.ip_version {
        4 => (addr(layout.ip + 12, 4), addr(layout.ip + 16, 4)),
        _ => (addr(layout.ip + 8, 16), addr(layout.ip + 24, 16)),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport)) =
        (src, dst, port(layout.l4), port(layout.l4 + 2))
    else {
        return "other (cut short)".to_owned();
    };
    let proto = if layout.protocol == tapbook::wire::IpProtocol::Tcp { "TCP" } else { "UDP" };
    let sock = |ip: std::net::IpAddr, port: u16| match ip {
        std::net::IpAddr::V4(ip) => format!("{ip}:{port}"),
        std::net::IpAddr::V6(ip) => format!("[{ip}]:{port}"),
    };
    format!("{proto} {} > {}", sock(src, sport), sock(dst, dport))
}

/// A frame that is not TCP or UDP: its addresses and protocol are its flow, as for the
/// kernel's hash (ICMPv6 to two groups, two flows).
fn other_flow(wire: &[u8]) -> String {
    let (ethertype, ip) = (wire.get(12..14), wire.get(14..));
    match (ethertype, ip) {
        (Some([0x08, 0x00]), Some(ip)) if ip.len() >= 20 => {
            let src = std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            format!("IPv4 protocol {} {src} > {dst}", ip[9])
        }
        (Some([0x86, 0xdd]), Some(ip)) if ip.len() >= 40 => {
            let addr = |at: usize| {
                let bytes: [u8; 16] = ip[at..at + 16].try_into().expect("16 bytes in range");
                std::net::Ipv6Addr::from(bytes)
            };
            let next =
                if ip[6] == 58 { "ICMPv6".to_owned() } else { format!("IPv6 next {}", ip[6]) };
            format!("{next} {} > {}", addr(8), addr(24))
        }
        (Some(ethertype), _) => format!("EtherType {:02x}{:02x}", ethertype[0], ethertype[1]),
        _ => "a runt frame".to_owned(),
    }
}

/// What one queue's thread saw.
#[derive(Default)]
struct QueueCount {
    reads: u64,
    frames: u64,
    errors: u64,
    /// Wire-size frames per flow.
    flows: std::collections::BTreeMap<String, u64>,
}

// ANCHOR: queue_thread
/// One queue's thread: read until told to stop, cut what needs cutting, count each flow.
fn read_queue(tap: &tapbook::Tap, hdr_len: usize) -> anyhow::Result<QueueCount> {
    let mut count = QueueCount::default();
    let mut buf = vec![0u8; vnet::READ_BUFFER_LEN];
    let mut scratch = Vec::with_capacity(vnet::READ_BUFFER_LEN);
    while let Some(len) = tap.read_frame(&mut buf)? {
        count.reads += 1;
        let (header, frame) = buf[..len].split_at(hdr_len.min(len));
        let vnet = match hdr_len {
            0 => VirtioNetRepr::default(),
            _ => match VirtioNetHeader::new_checked(header) {
                Ok(header) => VirtioNetRepr::parse(&header),
                Err(_) => {
                    count.errors += 1;
                    continue;
                }
            },
        };
        let flows = &mut count.flows;
        match segment::segment(&vnet, frame, &mut scratch, |wire| {
            *flows.entry(flow_of(wire)).or_default() += 1;
        }) {
            Ok(n) => count.frames += n as u64,
            Err(_) => count.errors += 1,
        }
    }
    Ok(count)
}
// ANCHOR_END: queue_thread

// ANCHOR: receive_queues
/// What the kernel agreed to, on two lines that fit a terminal.
fn print_attached(
    out: &mut impl Write,
    name: &str,
    negotiated: &vnet::Negotiated,
) -> std::io::Result<()> {
    writeln!(out, "Attached to {name} (TUNGETFEATURES {:#06x}):", negotiated.features)?;
    write!(out, "vnet header {} bytes; offloads {}", negotiated.vnet_hdr_len, negotiated.offloads)?;
    if negotiated.refused != Offloads::NONE {
        write!(out, " (refused by this kernel: {})", negotiated.refused)?;
    }
    writeln!(out)
}

/// `--queues N`: one thread per queue. The main thread only waits: for Ctrl-C or SIGTERM
/// (which it passes on to every queue's thread, waking the one asleep in `ppoll`), or for
/// a thread that stopped on an error.
fn receive_queues(o: &Options, options: &TapOptions) -> anyhow::Result<()> {
    use std::os::unix::thread::JoinHandleExt;
    if o.send.is_some() || o.pcap.is_some() || o.raw_pcap.is_some() {
        bail!("--queues receives and counts flows: it does not take --send, --pcap or --raw-pcap");
    }
    let (taps, negotiated) = vnet::open_queues(&o.iface, options, o.queues)?;
    let mut out = BufWriter::new(Output::stdout());
    print_attached(&mut out, &taps[0].name(), &negotiated)?;
    writeln!(out, "{} queues (IFF_MULTI_QUEUE), one thread each", taps.len())?;
    out.flush()?;
    let hdr_len = negotiated.vnet_hdr_len;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let threads: Vec<_> = taps
        .into_iter()
        .map(|tap| {
            let done = done_tx.clone();
            std::thread::spawn(move || {
                let count = read_queue(&tap, hdr_len);
                let _ = done.send(());
                count
            })
        })
        .collect();
    // Until a stop signal arrives, or a thread ends on its own (an error).
    while !tapbook::signals::stop_requested() {
        if done_rx.recv_timeout(std::time::Duration::from_millis(100)).is_ok() {
            break;
        }
    }
    for thread in threads.iter().filter(|t| !t.is_finished()) {
        // SAFETY: a thread we started and have not joined yet: its pthread_t is valid.
        unsafe { libc::pthread_kill(thread.as_pthread_t(), libc::SIGTERM) };
    }
    let mut queues_of_flow = std::collections::BTreeMap::<String, Vec<usize>>::new();
    for (queue, thread) in threads.into_iter().enumerate() {
        let count =
            thread.join().map_err(|_| anyhow::anyhow!("queue {queue}'s thread panicked"))??;
        writeln!(
            out,
            "queue {queue}: {} reads, {} wire frames, {} errors, {} flows",
            count.reads,
            count.frames,
            count.errors,
            count.flows.len()
        )?;
        for (flow, frames) in &count.flows {
            writeln!(out, "    {flow:<48} {frames:>6} frames")?;
            queues_of_flow.entry(flow.clone()).or_default().push(queue);
        }
    }
    let split: Vec<_> = queues_of_flow.iter().filter(|(_, queues)| queues.len() > 1).collect();
    if split.is_empty() {
        writeln!(out, "every flow came out of one queue only")?;
    }
    for (flow, queues) in split {
        writeln!(out, "{flow} came out of queues {queues:?}")?;
    }
    out.flush()?;
    Ok(())
}
// ANCHOR_END: receive_queues
