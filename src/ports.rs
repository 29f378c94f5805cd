//! Chapters 11 and 12: the ports a relay or a switch moves frames between, whatever is
//! behind them. A TAP ([`crate::tap`]); a UNIX stream socket where QEMU's
//! `-netdev stream` connects (frames behind their length, [`crate::qemu_stream`]); a
//! UNIX datagram socket paired with QEMU's `-netdev dgram` (one datagram, one frame).
//!
//! Every descriptor is non-blocking: a program waits for all its ports in one `ppoll`
//! ([`crate::signals::wait_any`]) and then takes from each what it has.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::poll::{PollFd, PollFlags};

use crate::qemu_stream::{Fill, MAX_FRAME_LEN, Sent, StreamError, StreamReader, StreamWriter};
use crate::tap::{Tap, TapError};

/// How large the buffer given to [`Port::receive`] must be: one byte more than the
/// longest frame QEMU sends, so that a longer datagram shows as cut, not as a frame.
pub const RECEIVE_BUFFER_LEN: usize = MAX_FRAME_LEN + 1;

// ANCHOR: spec
/// A port as the command line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// `--tap NAME`: a TAP interface; its other end is the kernel.
    Tap(String),
    /// `--stream PATH`: we listen at PATH; QEMU connects with
    /// `-netdev stream,id=n0,server=off,addr.type=unix,addr.path=PATH`.
    Stream(PathBuf),
    /// `--dgram OURS:THEIRS`: we bind OURS and send to THEIRS; QEMU pairs with
    /// `-netdev dgram,id=n0,local.type=unix,local.path=THEIRS,remote.type=unix,remote.path=OURS`.
    Dgram { ours: PathBuf, theirs: PathBuf },
    /// A program that plays QEMU's part (chapter 12's responder port): we connect to
    /// PATH, where a relay or a switch listens, as `-netdev stream,server=off` does.
    Connect(PathBuf),
}
// ANCHOR_END: spec

impl PortSpec {
    /// The port's short name in the program's output: the interface's name, or the
    /// socket file's name without its extension (`/run/lab/guest0.sock`: `guest0`).
    pub fn name(&self) -> String {
        let stem = |p: &Path| p.file_stem().map_or("?".into(), |s| s.to_string_lossy().into());
        match self {
            PortSpec::Tap(name) => name.clone(),
            PortSpec::Stream(path) => stem(path),
            PortSpec::Dgram { ours, .. } => stem(ours),
            PortSpec::Connect(path) => stem(path),
        }
    }

    /// `OURS:THEIRS`, the value of `--dgram`.
    pub fn parse_dgram(value: &str) -> Result<PortSpec, String> {
        match value.split_once(':') {
            Some((ours, theirs)) if !ours.is_empty() && !theirs.is_empty() => {
                Ok(PortSpec::Dgram { ours: ours.into(), theirs: theirs.into() })
            }
            _ => Err(format!("--dgram wants OURS:THEIRS, two socket paths (got {value:?})")),
        }
    }

    /// Opens the port: attaches to the TAP, or binds the socket.
    pub fn open(&self) -> anyhow::Result<Port> {
        let kind = match self {
            PortSpec::Tap(name) => Kind::Tap(Tap::open(name)?),
            PortSpec::Stream(path) => {
                remove_stale_socket(path)?;
                let listener = UnixListener::bind(path)
                    .with_context(|| format!("listening on {}", path.display()))?;
                listener.set_nonblocking(true).context("making the listener non-blocking")?;
                Kind::Stream { listener, path: path.clone(), conn: None }
            }
            PortSpec::Dgram { ours, theirs } => {
                remove_stale_socket(ours)?;
                let sock = UnixDatagram::bind(ours)
                    .with_context(|| format!("binding {}", ours.display()))?;
                sock.set_nonblocking(true).context("making the socket non-blocking")?;
                Kind::Dgram { sock, ours: ours.clone(), theirs: theirs.clone() }
            }
            PortSpec::Connect(path) => {
                let sock = UnixStream::connect(path).with_context(|| {
                    format!("connecting to {} (is the switch listening there?)", path.display())
                })?;
                sock.set_nonblocking(true).context("making the socket non-blocking")?;
                let conn =
                    Connection { sock, reader: StreamReader::new(), writer: StreamWriter::new() };
                Kind::Client { conn, closed: false }
            }
        };
        Ok(Port { name: self.name(), kind, counters: PortCounters::default() })
    }
}

impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortSpec::Tap(name) => write!(f, "{name} (TAP)"),
            PortSpec::Stream(path) => write!(f, "{} (stream, {})", self.name(), path.display()),
            PortSpec::Dgram { ours, theirs } => {
                write!(f, "{} (dgram, {} <-> {})", self.name(), ours.display(), theirs.display())
            }
            PortSpec::Connect(path) => write!(f, "{} (stream, to {})", self.name(), path.display()),
        }
    }
}

/// A socket file left by an earlier run would make `bind` fail (EADDRINUSE): remove it,
/// but only if it is a socket; anything else at that path is not ours to delete.
fn remove_stale_socket(path: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("removing the old socket {}", path.display())),
        Ok(_) => {
            anyhow::bail!("{} exists and is not a socket; choose another path", path.display())
        }
        Err(_) => Ok(()),
    }
}

/// What each port saw and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortCounters {
    pub received: u64,
    pub sent: u64,
    /// Frames we had for the port that it could not take (see [`Delivery::Dropped`]).
    pub dropped: u64,
}

/// One end of the relay or one port of the switch.
pub struct Port {
    pub name: String,
    kind: Kind,
    pub counters: PortCounters,
}

enum Kind {
    Tap(Tap),
    Stream {
        listener: UnixListener,
        path: PathBuf,
        conn: Option<Connection>,
    },
    Dgram {
        sock: UnixDatagram,
        ours: PathBuf,
        theirs: PathBuf,
    },
    /// Our connection to a switch's stream port; `closed` once the switch hung up.
    Client {
        conn: Connection,
        closed: bool,
    },
}

/// A QEMU connected to a stream port.
struct Connection {
    sock: UnixStream,
    reader: StreamReader,
    writer: StreamWriter,
}

/// What [`Port::receive`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A frame of this length, at the start of the buffer.
    Frame(usize),
    /// Nothing more for now.
    Idle,
    /// Something to tell: QEMU connected or went away, a datagram was ignored.
    Event(String),
}

/// What [`Port::send`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Part of it went, the rest follows when the socket has room.
    Queued,
    /// It could not go, for this reason; the program goes on.
    Dropped(&'static str),
}

impl Port {
    // ANCHOR: poll_fd
    /// What to wait for on this port: a frame (or a connection) to read; and room to
    /// write, while a frame is half sent.
    pub fn poll_fd(&self) -> PollFd<'_> {
        match &self.kind {
            Kind::Tap(tap) => PollFd::new(tap.as_fd(), PollFlags::POLLIN),
            Kind::Stream { conn: Some(conn), .. } => {
                let out =
                    if conn.writer.is_pending() { PollFlags::POLLOUT } else { PollFlags::empty() };
                PollFd::new(conn.sock.as_fd(), PollFlags::POLLIN | out)
            }
            Kind::Stream { listener, .. } => PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            Kind::Dgram { sock, .. } => PollFd::new(sock.as_fd(), PollFlags::POLLIN),
            Kind::Client { conn, .. } => {
                let out =
                    if conn.writer.is_pending() { PollFlags::POLLOUT } else { PollFlags::empty() };
                PollFd::new(conn.sock.as_fd(), PollFlags::POLLIN | out)
            }
        }
    }
    // ANCHOR_END: poll_fd

    /// Whether a peer is there to send to: a TAP always is (the kernel), a stream port
    /// once QEMU has connected, a datagram port always (its peer may be absent: sending
    /// then fails and the frame is dropped).
    pub fn connected(&self) -> bool {
        !matches!(self.kind, Kind::Stream { conn: None, .. } | Kind::Client { closed: true, .. })
    }

    // ANCHOR: receive
    /// Takes the next frame (or event) this port has, without waiting. `buf` must be
    /// [`RECEIVE_BUFFER_LEN`] long. Call until it says [`Received::Idle`].
    pub fn receive(&mut self, buf: &mut [u8]) -> anyhow::Result<Received> {
        let got = match &mut self.kind {
            Kind::Tap(tap) => match tap.try_read_frame(buf)? {
                Some(len) => Received::Frame(len),
                None => Received::Idle,
            },
            Kind::Stream { listener, path, conn } => match conn {
                None => match listener.accept() {
                    Ok((sock, _)) => {
                        sock.set_nonblocking(true).context("making the connection non-blocking")?;
                        let reader = StreamReader::new();
                        *conn = Some(Connection { sock, reader, writer: StreamWriter::new() });
                        Received::Event(format!("QEMU connected to {}", path.display()))
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Received::Idle,
                    Err(e) => return Err(e).context(format!("accepting on {}", path.display())),
                },
                Some(c) => match stream_receive(c, buf) {
                    Ok(got) => got,
                    Err(why) => {
                        // QEMU closed, or sent what QEMU never would: the guest is gone
                        // from this port until a QEMU connects again.
                        *conn = None;
                        Received::Event(format!("QEMU disconnected: {why}"))
                    }
                },
            },
            Kind::Dgram { sock, theirs, .. } => match sock.recv_from(buf) {
                Ok((len, from)) if from.as_pathname() != Some(theirs.as_path()) => {
                    let from = from
                        .as_pathname()
                        .map_or("an unnamed socket".into(), |p| p.display().to_string());
                    Received::Event(format!("ignored {len} bytes from {from}"))
                }
                // The buffer is one byte longer than any frame QEMU sends: a datagram
                // that fills it was cut.
                Ok((len, _)) if len == buf.len() => Received::Event(format!(
                    "dropped a datagram of more than {MAX_FRAME_LEN} bytes"
                )),
                Ok((len, _)) => Received::Frame(len),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Received::Idle,
                // A signal: the next ppoll sees the datagram still waiting.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Received::Idle,
                Err(e) => return Err(e).context("receiving a datagram"),
            },
            Kind::Client { closed: true, .. } => Received::Idle,
            Kind::Client { conn, closed } => match stream_receive(conn, buf) {
                Ok(got) => got,
                Err(why) => {
                    *closed = true;
                    Received::Event(format!("the switch hung up: {why}"))
                }
            },
        };
        if let Received::Frame(_) = got {
            self.counters.received += 1;
        }
        Ok(got)
    }
    // ANCHOR_END: receive

    // ANCHOR: send
    /// Sends one frame out of this port, without waiting. A peer that is absent or
    /// busy costs this frame (counted), never the program.
    pub fn send(&mut self, frame: &[u8]) -> anyhow::Result<Delivery> {
        let delivery = match &mut self.kind {
            Kind::Tap(tap) => match tap.write_frame(frame) {
                Ok(()) => Delivery::Sent,
                Err(TapError::InterfaceDown { .. }) => Delivery::Dropped("the interface is down"),
                Err(err) => return Err(err.into()),
            },
            Kind::Stream { conn: None, .. } => Delivery::Dropped("no QEMU connected"),
            Kind::Stream { conn: Some(c), .. } => match c.writer.send(&mut c.sock, frame) {
                Ok(Sent::Whole) => Delivery::Sent,
                Ok(Sent::Queued) => Delivery::Queued,
                Ok(Sent::Dropped) => Delivery::Dropped("QEMU is not reading"),
                // EPIPE, ECONNRESET: QEMU is gone; the read side will say so.
                Err(_) => Delivery::Dropped("QEMU went away"),
            },
            Kind::Dgram { sock, theirs, .. } => match sock.send_to(frame, &*theirs) {
                Ok(_) => Delivery::Sent,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    Delivery::Dropped("QEMU is not reading")
                }
                // ENOENT, ECONNREFUSED: no QEMU at that path (yet, or any more).
                Err(e) if e.raw_os_error().is_some() => Delivery::Dropped("no QEMU at its path"),
                Err(e) => return Err(e).context("sending a datagram"),
            },
            Kind::Client { closed: true, .. } => Delivery::Dropped("the switch hung up"),
            Kind::Client { conn: c, .. } => match c.writer.send(&mut c.sock, frame) {
                Ok(Sent::Whole) => Delivery::Sent,
                Ok(Sent::Queued) => Delivery::Queued,
                Ok(Sent::Dropped) => Delivery::Dropped("the switch is not reading"),
                Err(_) => Delivery::Dropped("the switch went away"),
            },
        };
        match delivery {
            Delivery::Sent | Delivery::Queued => self.counters.sent += 1,
            Delivery::Dropped(_) => self.counters.dropped += 1,
        }
        Ok(delivery)
    }
    // ANCHOR_END: send

    /// Sends the rest of a half-sent frame, once `poll` said the socket has room.
    pub fn flush(&mut self) {
        if let Kind::Stream { conn: Some(c), .. } | Kind::Client { conn: c, .. } = &mut self.kind {
            // An error here shows again, and is handled, on the next read.
            let _ = c.writer.flush(&mut c.sock);
        }
    }
}

// ANCHOR: stream_receive
/// The next frame from a QEMU connection: one already in the reader's buffer, else read
/// more and look again. Copies the frame into `buf`, where the other ports' `send` can
/// take it while this port's buffer fills again.
fn stream_receive(c: &mut Connection, buf: &mut [u8]) -> Result<Received, StreamError> {
    loop {
        if let Some(frame) = c.reader.next_frame()? {
            // The caller's buffer is RECEIVE_BUFFER_LEN long, more than any frame here.
            let dst =
                buf.get_mut(..frame.len()).ok_or(StreamError::Oversized(frame.len() as u32))?;
            dst.copy_from_slice(frame);
            return Ok(Received::Frame(frame.len()));
        }
        match c.reader.fill(&mut c.sock)? {
            Fill::Read(_) => continue,
            Fill::WouldBlock => return Ok(Received::Idle),
            Fill::Closed => return Err(StreamError::Closed),
        }
    }
}
// ANCHOR_END: stream_receive

impl Drop for Port {
    /// Removes the socket files we made; QEMU's own are QEMU's.
    fn drop(&mut self) {
        match &self.kind {
            Kind::Stream { path, .. } => drop(std::fs::remove_file(path)),
            Kind::Dgram { ours, .. } => drop(std::fs::remove_file(ours)),
            Kind::Tap(_) | Kind::Client { .. } => {}
        }
    }
}

// ANCHOR: args
/// The command line of the relay (chapter 11: `--iface` and one QEMU port) and of the
/// switch (chapter 12: any number of `--tap`, `--stream` and `--dgram` ports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortArgs {
    pub ports: Vec<PortSpec>,
    /// `--ageing SECS`, the switch's ageing time.
    pub ageing: Option<std::time::Duration>,
    /// `--quiet`: no line per frame, only the events, the table and the counts.
    pub quiet: bool,
}
// ANCHOR_END: args

/// Which program is parsing: what it accepts and how its help reads.
#[derive(Debug, Clone, Copy)]
pub struct PortProgram {
    pub name: &'static str,
    pub about: &'static str,
    /// The switch: repeatable ports and `--ageing`. Else the relay: `--iface` (tap4 by
    /// default) and exactly one of `--stream` or `--dgram`.
    pub switch: bool,
}

impl PortArgs {
    /// Parses `std::env::args_os`; prints the help and exits on `--help`, or the mistake
    /// and the usage with status 2, as `cli::Args::from_env` does.
    pub fn from_env(program: PortProgram) -> PortArgs {
        match PortArgs::parse(program, std::env::args_os().skip(1)) {
            Ok(Some(args)) => args,
            Ok(None) => {
                use std::io::Write;
                let mut out = crate::output::Output::stdout();
                let status = match out.write_all(port_usage(program).as_bytes()) {
                    Ok(()) => 0,
                    Err(err) => {
                        crate::output::print_error(format_args!("Error: {err}"));
                        1
                    }
                };
                std::process::exit(status)
            }
            Err(message) => {
                crate::output::print_error(format_args!(
                    "{}: {message}\n\n{}",
                    program.name,
                    port_usage(program)
                ));
                std::process::exit(2);
            }
        }
    }

    /// Parses arguments; `Ok(None)` means help was asked for.
    pub fn parse(
        program: PortProgram,
        args: impl IntoIterator<Item = impl Into<std::ffi::OsString>>,
    ) -> Result<Option<PortArgs>, String> {
        let mut parsed = PortArgs { ports: Vec::new(), ageing: None, quiet: false };
        let mut iface = crate::cli::DEFAULT_IFACE.to_owned();
        let mut args = args.into_iter().map(Into::into);
        while let Some(arg) = args.next() {
            let (flag, inline) = crate::cli::split_flag(&arg);
            let flag = flag.to_str().ok_or_else(|| format!("unexpected argument {arg:?}"))?;
            let mut value = |what: &str| {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{flag} needs {what}"))?
                    .into_string()
                    .map_err(|v| format!("{flag}: {v:?} is not UTF-8 text"))
            };
            match flag {
                "-h" | "--help" => return Ok(None),
                "-q" | "--quiet" => parsed.quiet = true,
                "-i" | "--iface" if !program.switch => iface = value("an interface name")?,
                "--tap" if program.switch => {
                    parsed.ports.push(PortSpec::Tap(value("an interface name")?))
                }
                "--stream" => parsed.ports.push(PortSpec::Stream(value("a socket path")?.into())),
                "--dgram" => parsed.ports.push(PortSpec::parse_dgram(&value("OURS:THEIRS")?)?),
                "--ageing" if program.switch => {
                    let v = value("a number of seconds")?;
                    let secs: u64 = v
                        .parse()
                        .ok()
                        .filter(|&s| s > 0)
                        .ok_or_else(|| format!("--ageing: {v:?} is not a number of seconds"))?;
                    parsed.ageing = Some(std::time::Duration::from_secs(secs));
                }
                _ => return Err(format!("unexpected argument {arg:?}")),
            }
        }
        if program.switch {
            if parsed.ports.len() < 2 {
                return Err("a switch needs two ports or more (--tap, --stream, --dgram)".into());
            }
        } else {
            if parsed.ports.len() != 1 {
                return Err("give one QEMU port: --stream PATH or --dgram OURS:THEIRS".into());
            }
            parsed.ports.insert(0, PortSpec::Tap(iface));
        }
        let mut names: Vec<String> = parsed.ports.iter().map(PortSpec::name).collect();
        names.sort();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("two ports named {:?}: give the sockets other names", twice[0]));
        }
        Ok(Some(parsed))
    }
}

/// The `--help` text of the relay or the switch.
pub fn port_usage(program: PortProgram) -> String {
    let mut text = format!("{}\n\nUsage: {} [OPTIONS]\n\nOptions:\n", program.about, program.name);
    if program.switch {
        text += "      --tap NAME          a TAP port (the kernel is at its other end)\n";
    } else {
        text += "  -i, --iface NAME        the TAP to relay to [default: tap4]\n";
    }
    text += "      --stream PATH       listen at PATH for QEMU's -netdev stream\n";
    text += "      --dgram OURS:THEIRS bind OURS, send to THEIRS (QEMU's -netdev dgram)\n";
    if program.switch {
        text += "      --ageing SECS       forget a station not heard from for SECS\n";
        text += "                          [default: 300]\n";
        text += "  Each option adds a port; give two or more. kill -USR1 prints the table.\n";
    }
    text += "  -q, --quiet             no line per frame\n";
    text += "  -h, --help              print this help\n";
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::fixture;
    use std::io::{Read, Write};

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tapbook-ports-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn receive_all(port: &mut Port) -> Vec<Received> {
        let mut buf = vec![0; RECEIVE_BUFFER_LEN];
        let mut got = Vec::new();
        loop {
            match port.receive(&mut buf).unwrap() {
                Received::Idle => return got,
                r => got.push(r),
            }
        }
    }

    #[test]
    fn a_stream_port_speaks_qemus_framing_both_ways() {
        let dir = scratch("stream");
        let spec = PortSpec::Stream(dir.join("guest0.sock"));
        assert_eq!(spec.name(), "guest0");
        let mut port = spec.open().unwrap();
        let arp = fixture!("arp_request_kernel");
        assert_eq!(port.send(&arp).unwrap(), Delivery::Dropped("no QEMU connected"));

        // Play QEMU: connect, send two frames in one write, then half of a third.
        let mut qemu = UnixStream::connect(dir.join("guest0.sock")).unwrap();
        let mut bytes = Vec::new();
        for _ in 0..3 {
            bytes.extend((arp.len() as u32).to_be_bytes());
            bytes.extend(&arp);
        }
        qemu.write_all(&bytes[..2 * 46 + 20]).unwrap();
        let got = receive_all(&mut port);
        assert!(matches!(&got[0], Received::Event(e) if e.starts_with("QEMU connected")));
        assert_eq!(got[1..], [Received::Frame(42), Received::Frame(42)]);
        qemu.write_all(&bytes[2 * 46 + 20..]).unwrap();
        assert_eq!(receive_all(&mut port), [Received::Frame(42)]);
        assert_eq!(port.counters.received, 3);

        // And the other way: QEMU reads the length, then the frame.
        assert_eq!(port.send(&arp).unwrap(), Delivery::Sent);
        let mut back = vec![0; 46];
        qemu.read_exact(&mut back).unwrap();
        assert_eq!(back[..4], [0, 0, 0, 42]);
        assert_eq!(back[4..], arp[..]);

        // QEMU goes away in the middle of a frame: the port says so and listens again.
        qemu.write_all(&bytes[..10]).unwrap();
        drop(qemu);
        let got = receive_all(&mut port);
        assert!(
            matches!(&got[..], [Received::Event(e)] if e.contains("10 of 46 bytes")),
            "{got:?}"
        );
        assert!(!port.connected());
        let _again = UnixStream::connect(dir.join("guest0.sock")).unwrap();
        assert!(matches!(&receive_all(&mut port)[..], [Received::Event(_)]));
        assert!(port.connected());
        drop(port);
        assert!(!dir.join("guest0.sock").exists(), "the socket file is removed");
    }

    #[test]
    fn a_connecting_port_plays_qemus_part_and_says_when_the_switch_hangs_up() {
        let dir = scratch("connect");
        let path = dir.join("responder.sock");
        let err = PortSpec::Connect(path.clone()).open().err().unwrap();
        assert!(err.to_string().contains("is the switch listening there?"), "{err}");
        // The switch's side: a stream port, listening.
        let mut switch = PortSpec::Stream(path.clone()).open().unwrap();
        let spec = PortSpec::Connect(path.clone());
        assert_eq!(spec.name(), "responder");
        let mut ours = spec.open().unwrap();
        assert!(ours.connected());
        assert!(
            matches!(&receive_all(&mut switch)[..], [Received::Event(e)] if e.contains("connected"))
        );
        let arp = fixture!("arp_request_kernel");
        assert_eq!(ours.send(&arp).unwrap(), Delivery::Sent);
        assert_eq!(receive_all(&mut switch), [Received::Frame(42)]);
        assert_eq!(switch.send(&arp).unwrap(), Delivery::Sent);
        assert_eq!(receive_all(&mut ours), [Received::Frame(42)]);
        drop(switch);
        let got = receive_all(&mut ours);
        assert!(
            matches!(&got[..], [Received::Event(e)] if e.starts_with("the switch hung up")),
            "{got:?}"
        );
        assert!(!ours.connected());
        assert_eq!(ours.send(&arp).unwrap(), Delivery::Dropped("the switch hung up"));
    }

    #[test]
    fn a_dgram_port_takes_frames_from_its_peer_only() {
        let dir = scratch("dgram");
        let (ours, theirs) = (dir.join("switch.sock"), dir.join("qemu.sock"));
        let spec =
            PortSpec::parse_dgram(&format!("{}:{}", ours.display(), theirs.display())).unwrap();
        let mut port = spec.open().unwrap();
        let arp = fixture!("arp_request_kernel");
        assert_eq!(port.send(&arp).unwrap(), Delivery::Dropped("no QEMU at its path"));

        let _ = std::fs::remove_file(&theirs);
        let qemu = UnixDatagram::bind(&theirs).unwrap();
        qemu.send_to(&arp, &ours).unwrap();
        let stranger = UnixDatagram::unbound().unwrap();
        stranger.send_to(&arp, &ours).unwrap();
        let got = receive_all(&mut port);
        assert_eq!(got[0], Received::Frame(42));
        assert!(matches!(&got[1], Received::Event(e) if e.contains("ignored 42 bytes")));

        assert_eq!(port.send(&arp).unwrap(), Delivery::Sent);
        let mut back = vec![0; 100];
        assert_eq!(qemu.recv(&mut back).unwrap(), 42);
        assert!(PortSpec::parse_dgram("only-one-path").is_err());
        std::fs::remove_file(&theirs).unwrap();
    }

    const RELAY: PortProgram = PortProgram { name: "11", about: "test", switch: false };
    const SWITCH: PortProgram = PortProgram { name: "12", about: "test", switch: true };

    fn parse(program: PortProgram, args: &[&str]) -> Result<Option<PortArgs>, String> {
        PortArgs::parse(program, args.iter().copied())
    }

    #[test]
    fn the_relay_takes_a_tap_and_one_qemu_port() {
        let args = parse(RELAY, &["--stream", "/run/g.sock"]).unwrap().unwrap();
        assert_eq!(
            args.ports,
            [PortSpec::Tap("tap4".into()), PortSpec::Stream("/run/g.sock".into())]
        );
        let args = parse(RELAY, &["-i", "tap7", "--dgram=/a.sock:/b.sock"]).unwrap().unwrap();
        assert_eq!(args.ports[0], PortSpec::Tap("tap7".into()));
        assert_eq!(args.ports[1].name(), "a");
        assert!(parse(RELAY, &[]).is_err(), "no QEMU port");
        assert!(parse(RELAY, &["--stream", "/a", "--stream", "/b"]).is_err(), "two");
        assert!(parse(RELAY, &["--tap", "tap5", "--stream", "/a"]).is_err(), "--tap: switch");
        assert!(parse(RELAY, &["--dgram", "/a.sock"]).is_err(), "one path");
    }

    #[test]
    fn the_switch_takes_two_ports_or_more_with_distinct_names() {
        let args = parse(SWITCH, &["--tap", "tap4", "--stream", "/r/g0.sock", "--ageing", "20"])
            .unwrap()
            .unwrap();
        assert_eq!(args.ports.len(), 2);
        assert_eq!(args.ageing, Some(std::time::Duration::from_secs(20)));
        assert!(parse(SWITCH, &["--tap", "tap4"]).is_err(), "one port");
        assert!(parse(SWITCH, &["--stream", "/a/g.sock", "--stream", "/b/g.sock"]).is_err());
        assert!(parse(SWITCH, &["--tap", "a", "--tap", "b", "--ageing", "0"]).is_err());
        assert!(parse(SWITCH, &["--iface", "tap4", "--tap", "b"]).is_err(), "--iface: relay");
        assert_eq!(parse(SWITCH, &["--help"]).unwrap(), None);
        assert!(port_usage(SWITCH).lines().all(|l| l.len() <= 78));
        assert!(port_usage(RELAY).lines().all(|l| l.len() <= 78));
    }

    #[test]
    fn a_stale_socket_is_replaced_but_a_file_is_not() {
        let dir = scratch("stale");
        let path = dir.join("old.sock");
        let _ = std::fs::remove_file(&path);
        drop(UnixListener::bind(&path).unwrap());
        assert!(PortSpec::Stream(path.clone()).open().is_ok());
        let file = dir.join("notes.txt");
        std::fs::write(&file, "mine").unwrap();
        let err = PortSpec::Stream(file.clone()).open().err().unwrap();
        assert!(err.to_string().contains("is not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
    }
}
