//! The arguments every binary shares: `--iface`, `--ip`, `--ip6`, `--mac`, and for the full
//! responder `--quiet` and `--pcap`. With none, the lab defaults apply.
//!
//! Five flags do not need a parser crate; this one is written out so that a student can
//! read it.

use std::ffi::{OsStr, OsString};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::ports::PortSpec;
use crate::respond::Host;
use crate::wire::MacAddr;

// ANCHOR: defaults
/// The lab's defaults: `scripts/setup.sh` gives tap4 the address 172.16.1.1/24 on the
/// kernel's side; our responder is the other end of that link.
pub const DEFAULT_IFACE: &str = "tap4";
pub const DEFAULT_IP: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 2);
/// Our IPv6 address (chapter 8), in the unique local prefix fd00:172:16:1::/64 whose
/// `::1` setup.sh gives the kernel's side.
pub const DEFAULT_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x172, 0x16, 1, 0, 0, 0, 2);
/// Locally administered (second-lowest bit of the first byte set) and unicast (lowest bit
/// clear): an address no vendor's card will ever have.
pub const DEFAULT_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]);
// ANCHOR_END: defaults

/// What a binary accepts beyond the common flags.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    /// The binary's name, for the usage line.
    pub name: &'static str,
    /// One line saying what it does.
    pub about: &'static str,
    /// Whether `--ip` and `--mac` mean anything to it (not to 01 and 02).
    pub addresses: bool,
    /// Whether it takes `--quiet` and `--pcap FILE`.
    pub responder_flags: bool,
    /// Whether it can take its frames from a switch's socket instead of a TAP
    /// (`--stream PATH`, `--dgram OURS:THEIRS`; chapter 12's responder port).
    pub sockets: bool,
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub iface: String,
    pub ip: Ipv4Addr,
    pub ip6: Ipv6Addr,
    pub mac: MacAddr,
    pub quiet: bool,
    pub pcap: Option<PathBuf>,
    /// `--stream` or `--dgram`: a switch's port instead of the TAP `iface`.
    pub socket: Option<PortSpec>,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            iface: DEFAULT_IFACE.to_owned(),
            ip: DEFAULT_IP,
            ip6: DEFAULT_IP6,
            mac: DEFAULT_MAC,
            quiet: false,
            pcap: None,
            socket: None,
        }
    }
}

impl Args {
    /// Who we are on the link.
    pub fn host(&self) -> Host {
        Host { ip: self.ip, ip6: self.ip6, mac: self.mac }
    }

    /// Parses `std::env::args_os`; prints the usage and exits on `--help` (status 0, or 1 if
    /// the help cannot be written) or on a mistake (status 2), like any command-line tool.
    pub fn from_env(program: Program) -> Args {
        match Args::parse(program, std::env::args_os().skip(1)) {
            Ok(Some(args)) => args,
            Ok(None) => std::process::exit(print_help(program)),
            Err(message) => {
                crate::output::print_error(format_args!(
                    "{}: {message}\n\n{}",
                    program.name,
                    usage(program)
                ));
                std::process::exit(2);
            }
        }
    }

    /// Parses arguments; `Ok(None)` means help was asked for.
    ///
    /// Arguments are bytes on Linux, not necessarily UTF-8: a file name may be
    /// `caf\xe9.pcap` (Latin-1). Where a path is expected (`--pcap`) any bytes are taken
    /// as they are; anywhere else, bytes that are not UTF-8 are a mistake we name.
    pub fn parse(
        program: Program,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Result<Option<Args>, String> {
        let mut parsed = Args::default();
        let mut args = args.into_iter().map(Into::into);
        while let Some(arg) = args.next() {
            // Accept both `--ip 10.0.0.2` and `--ip=10.0.0.2`.
            let (flag, inline) = split_flag(&arg);
            let flag = flag.to_str().ok_or_else(|| {
                format!("unexpected argument {arg:?}:\nit is not UTF-8, and no option is")
            })?;
            let mut value = |what: &str| {
                inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs {what}"))
            };
            // A value that must be text.
            let text = |value: OsString| {
                value.into_string().map_err(|v| format!("{flag}: {v:?} is not UTF-8 text"))
            };
            match flag {
                "-h" | "--help" => return Ok(None),
                "-i" | "--iface" => parsed.iface = text(value("an interface name")?)?,
                "--ip" if program.addresses => {
                    let v = text(value("an IPv4 address")?)?;
                    let ip =
                        v.parse().map_err(|_| format!("--ip: {v:?} is not an IPv4 address"))?;
                    check_host_ip(ip).map_err(|why| format!("--ip {ip}:\n{why}"))?;
                    parsed.ip = ip;
                }
                "--ip6" if program.addresses => {
                    let v = text(value("an IPv6 address")?)?;
                    let ip6: Ipv6Addr =
                        v.parse().map_err(|_| format!("--ip6: {v:?} is not an IPv6 address"))?;
                    if ip6.is_multicast() || ip6.is_unspecified() || ip6.is_loopback() {
                        return Err(format!("--ip6: {ip6} is not an address for a host"));
                    }
                    parsed.ip6 = ip6;
                }
                "--mac" if program.addresses => {
                    let v = text(value("a MAC address")?)?;
                    let mac: MacAddr = v.parse().map_err(|e| format!("--mac: {v:?}: {e}"))?;
                    check_host_mac(mac).map_err(|why| format!("--mac {mac}:\n{why}"))?;
                    parsed.mac = mac;
                }
                "-q" | "--quiet" if program.responder_flags => parsed.quiet = true,
                "--pcap" if program.responder_flags => {
                    parsed.pcap = Some(PathBuf::from(value("a file name")?))
                }
                "--stream" if program.sockets => {
                    let path = PathBuf::from(value("a socket path")?);
                    parsed.socket = Some(PortSpec::Connect(path));
                }
                "--dgram" if program.sockets => {
                    parsed.socket = Some(PortSpec::parse_dgram(&text(value("OURS:THEIRS")?)?)?);
                }
                _ => return Err(format!("unexpected argument {arg:?}")),
            }
        }
        Ok(Some(parsed))
    }
}

/// `--flag=value` as (`--flag`, `value`); anything else as itself, without a value.
pub fn split_flag(arg: &OsStr) -> (&OsStr, Option<OsString>) {
    let bytes = arg.as_bytes();
    match bytes.iter().position(|&b| b == b'=') {
        Some(at) if bytes.starts_with(b"--") => {
            (OsStr::from_bytes(&bytes[..at]), Some(OsStr::from_bytes(&bytes[at + 1..]).to_owned()))
        }
        _ => (arg, None),
    }
}

// ANCHOR: check_host
/// Refuses the IPv4 addresses no host may have as its own, with the reason. The same
/// classes as `scripts/setup.sh --addr` refuses for the kernel's side.
pub fn check_host_ip(ip: Ipv4Addr) -> Result<(), &'static str> {
    let first = ip.octets()[0];
    if ip.is_broadcast() {
        Err("the limited broadcast address (every host on the link) is no host's")
    } else if first == 0 {
        Err("0.x.x.x means \"this network\" (0.0.0.0: no address yet); no host's")
    } else if ip.is_loopback() {
        Err("127.x.x.x is loopback: it never appears on a link")
    } else if ip.is_multicast() {
        Err("224.0.0.0/4 is multicast: it names a group, never one host")
    } else if first >= 240 {
        Err("240.0.0.0/4 is reserved: Linux does not route it")
    } else {
        Ok(())
    }
}

/// Refuses the MAC addresses no host may have: the all-zero address (ARP's "unknown")
/// and group addresses (the lowest bit of the first byte set; broadcast is one).
pub fn check_host_mac(mac: MacAddr) -> Result<(), &'static str> {
    if mac.0 == [0; 6] {
        Err("the all-zero address means \"unknown\" (ARP requests carry it); no host's")
    } else if mac.is_multicast() {
        Err("a group address (lowest bit of the first byte set); a host needs a unicast one")
    } else {
        Ok(())
    }
}
// ANCHOR_END: check_host

// ANCHOR: run_program
/// What every chapter's `main` does around its own work: parse the command line (printing
/// the help, or the mistake, and exiting), make Ctrl-C, SIGTERM and SIGHUP a clean stop
/// (see [`crate::signals`]), run `body`, and turn its result into an exit status.
pub fn run_program(
    program: Program,
    body: impl FnOnce(&Args) -> anyhow::Result<()>,
) -> std::process::ExitCode {
    let args = Args::from_env(program);
    let result = crate::signals::stop_on_signals()
        .map_err(|errno| anyhow::anyhow!("installing the handlers of the stop signals: {errno}"))
        .and_then(|()| body(&args));
    exit_status(result)
}
// ANCHOR_END: run_program

// ANCHOR: exit_status
/// Ends a program: on error, prints the message (with its context, on one line each) on
/// standard error and returns a failure status. Returning `anyhow::Result` from `main`
/// would print the error's `Debug` form, which includes a backtrace whenever
/// `RUST_BACKTRACE` is set: a student needs the fix, not our call stack.
pub fn exit_status(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            crate::output::print_error(format_args!("Error: {err:#}"));
            std::process::ExitCode::FAILURE
        }
    }
}
// ANCHOR_END: exit_status

/// Prints the `--help` text and returns the exit status: `--help > /dev/full` is an
/// error like any other, reported on standard error.
fn print_help(program: Program) -> i32 {
    use std::io::Write;
    let mut out = crate::output::Output::stdout();
    match out.write_all(usage(program).as_bytes()) {
        Ok(()) => 0,
        Err(err) => {
            crate::output::print_error(format_args!("Error: {err}"));
            1
        }
    }
}

/// The `--help` text.
pub fn usage(program: Program) -> String {
    let mut text = format!("{}\n\nUsage: {} [OPTIONS]\n\nOptions:\n", program.about, program.name);
    text += &format!(
        "  -i, --iface NAME   the TAP interface to attach to [default: {DEFAULT_IFACE}]\n"
    );
    if program.addresses {
        text += &format!("      --ip ADDR      our IPv4 address [default: {DEFAULT_IP}]\n");
        text += &format!("      --ip6 ADDR     our IPv6 address [default: {DEFAULT_IP6}]\n");
        text += &format!("      --mac ADDR     our MAC address [default: {DEFAULT_MAC}]\n");
    }
    if program.responder_flags {
        text += "  -q, --quiet        print nothing per frame, only the final counts\n";
        text += "      --pcap FILE    also write every frame read and written to FILE (pcap)\n";
    }
    if program.sockets {
        text += "      --stream PATH  no TAP: connect to a switch's stream port at PATH\n";
        text += "                     (12_learning_switch --stream PATH), as QEMU does\n";
        text += "      --dgram OURS:THEIRS\n";
        text += "                     no TAP: bind OURS, send to THEIRS (a switch's\n";
        text += "                     --dgram THEIRS:OURS)\n";
    }
    text += "  -h, --help         print this help\n";
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: Program = Program {
        name: "05",
        about: "test",
        addresses: true,
        responder_flags: true,
        sockets: false,
    };
    const DUMP: Program = Program {
        name: "02",
        about: "test",
        addresses: false,
        responder_flags: false,
        sockets: false,
    };

    fn parse(program: Program, args: &[&str]) -> Result<Option<Args>, String> {
        Args::parse(program, args.iter().copied())
    }

    #[test]
    fn a_server_may_take_a_switchs_socket_instead_of_a_tap() {
        const SERVER: Program = Program {
            name: "10",
            about: "test",
            addresses: true,
            responder_flags: false,
            sockets: true,
        };
        let args = parse(SERVER, &["--stream", "/tmp/lab/responder.sock"]).unwrap().unwrap();
        assert_eq!(args.socket, Some(PortSpec::Connect("/tmp/lab/responder.sock".into())));
        let args = parse(SERVER, &["--dgram=/a.sock:/b.sock"]).unwrap().unwrap();
        assert_eq!(args.socket.map(|s| s.name()), Some("a".to_owned()));
        assert!(parse(SERVER, &["--dgram", "/a.sock"]).is_err(), "one path");
        assert_eq!(parse(SERVER, &[]).unwrap().unwrap().socket, None, "tap4 by default");
        assert!(parse(FULL, &["--stream", "/a.sock"]).is_err(), "05 has no sockets");
        assert!(usage(SERVER).lines().all(|l| l.len() <= 78), "{}", usage(SERVER));
    }

    #[test]
    fn no_arguments_means_the_lab_defaults() {
        let args = parse(FULL, &[]).unwrap().unwrap();
        assert_eq!(args, Args::default());
        assert_eq!(args.iface, "tap4");
        assert_eq!(args.ip, Ipv4Addr::new(172, 16, 1, 2));
        assert!(args.mac.is_local() && args.mac.is_unicast());
    }

    #[test]
    fn every_flag_in_both_spellings() {
        let args = parse(
            FULL,
            &[
                "--iface",
                "tap7",
                "--ip=10.0.0.2",
                "--ip6",
                "fd00::7",
                "--mac",
                "02:aa:bb:cc:dd:ee",
                "-q",
                "--pcap=x.pcap",
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(args.iface, "tap7");
        assert_eq!(args.ip, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(args.ip6, "fd00::7".parse::<Ipv6Addr>().unwrap());
        assert_eq!(args.mac.to_string(), "02:aa:bb:cc:dd:ee");
        assert!(args.quiet);
        assert_eq!(args.pcap, Some(PathBuf::from("x.pcap")));
        assert_eq!(parse(FULL, &["--help"]).unwrap(), None);
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(parse(FULL, &["--ip", "300.1.1.1"]).is_err());
        assert!(parse(FULL, &["--mac", "ff:ff:ff:ff:ff:ff"]).is_err());
        assert!(parse(FULL, &["--ip6", "172.16.1.2"]).is_err());
        assert!(parse(FULL, &["--ip6", "ff02::1"]).is_err(), "a group is not a host's address");
        assert!(parse(FULL, &["--iface"]).is_err());
        assert!(parse(DUMP, &["--quiet"]).is_err(), "02 has no --quiet");
        assert!(parse(DUMP, &["--ip", "10.0.0.2"]).is_err(), "02 answers nothing");
        assert!(usage(FULL).contains("--pcap") && !usage(DUMP).contains("--mac"));
    }

    #[test]
    fn addresses_no_host_may_use_are_refused() {
        for ip in ["255.255.255.255", "224.0.0.1", "0.0.0.0", "127.0.0.1", "240.0.0.1"] {
            assert!(parse(FULL, &["--ip", ip]).is_err(), "{ip}");
        }
        for mac in ["00:00:00:00:00:00", "01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff"] {
            assert!(parse(FULL, &["--mac", mac]).is_err(), "{mac}");
        }
        assert!(parse(FULL, &["--ip", "10.0.0.2", "--mac", "02:00:00:00:00:09"]).is_ok());
    }

    #[test]
    fn paths_take_any_bytes_other_values_must_be_text() {
        use std::os::unix::ffi::OsStringExt;
        let bytes = |b: &[u8]| OsString::from_vec(b.to_vec());
        let args = Args::parse(FULL, [bytes(b"--pcap"), bytes(b"caf\xe9.pcap")]).unwrap();
        assert_eq!(args.unwrap().pcap, Some(PathBuf::from(bytes(b"caf\xe9.pcap"))));
        let args = Args::parse(FULL, [bytes(b"--pcap=caf\xe9.pcap")]).unwrap();
        assert_eq!(args.unwrap().pcap, Some(PathBuf::from(bytes(b"caf\xe9.pcap"))));
        assert!(Args::parse(FULL, [bytes(b"--\xff")]).is_err());
        assert!(Args::parse(FULL, [bytes(b"--iface"), bytes(b"tap\xff")]).is_err());
    }
}
