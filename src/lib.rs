//! # tapbook: how virtual machines reach the network through a Linux TAP device
//!
//! The library is the toolbox the chapters share; the binaries in `src/bin/` are the
//! lessons. Which module serves which chapter:
//!
//! | module        | chapter | what it holds |
//! |---------------|---------|---------------|
//! | [`tap`]       | 1 | the clone device `/dev/net/tun`, `TUNSETIFF`, the owned TAP handle |
//! | [`tap::diagnose`] | 1 | why opening failed, and the fix for this interface and namespace |
//! | [`show`]      | 2 | one-line summaries and annotated hex dumps of frames |
//! | [`wire`]      | 2-4, 8, 10 | Ethernet, ARP, IPv4, ICMPv4, the internet checksum; IPv6, ICMPv6, NDP; UDP, DHCP |
//! | [`respond`](mod@respond) | 3-5, 8, 10 | frame in, reply (or the reason for silence) out: pure functions |
//! | [`signals`]   | 5 | Ctrl-C, SIGTERM and SIGHUP as a clean, race-free stop |
//! | [`output`]    | all | printing that cannot panic nor hold up a stop behind a full pipe |
//! | [`pcap`]      | 5 | a pcap writer for tshark and Wireshark |
//! | [`vnet`]      | 9 | opening a TAP as a VMM does: virtio-net header, offloads, queues |
//! | [`segment`]   | 9 | partial checksums finished, superframes cut into wire-size frames |
//! | [`cli`]       | all | `--iface`, `--ip`, `--mac` (refusing what no host may use), the defaults |
//! | [`dhcp`]      | 10 | a DHCP server: the lease table and the replies (UDP echo is in `respond`) |
//! | [`qemu_stream`] | 11 | QEMU's `-netdev stream` framing: a length, then the frame (pure, over `Read`/`Write`) |
//! | [`ports`]     | 11, 12 | the ports frames move between: a TAP, QEMU's stream and dgram sockets |
//! | [`switch`]    | 12 | a learning switch: frame and ingress port in, egress ports out (pure) |
//!
//! The arrows point one way: binaries use the library; `respond`, `dhcp` and `switch` use
//! `wire`; `ports` uses `tap` and `qemu_stream`; nothing in `wire`, `respond`, `dhcp`,
//! `qemu_stream` or `switch` touches a file descriptor or prints.

pub mod cli;
pub mod dhcp;
pub mod output;
pub mod pcap;
pub mod ports;
pub mod qemu_stream;
pub mod respond;
pub mod segment;
pub mod serve;
pub mod show;
pub mod signals;
pub mod switch;
pub mod tap;
pub mod vnet;
pub mod wire;

pub use cli::Args;
pub use respond::{DropReason, Host, Reply, Services, respond};
pub use tap::{FRAME_BUFFER_LEN, Tap, TapError};
