//! IPv4 options (RFC 791 section 3.1), checked the way Linux checks them when a packet
//! arrives (`ip_options_compile` in `net/ipv4/ip_options.c`): a header the kernel would
//! answer with ICMP Parameter Problem is refused here with the same pointer, and the
//! options an echo reply carries back (Record Route and Timestamp) are found.
//!
//! ```text
//!  End of List (0), No Operation (1): one byte, no length
//!  every other option:         +--------+--------+--------+--------+----
//!                              |  type  | length |  data (length - 2 bytes)
//!                              +--------+--------+--------+--------+----
//!  Record Route (7):           |00000111| length |pointer | 4-byte address slots ...
//!  Timestamp (68):             |01000100| length |pointer |oflw|flg| slots ...
//!  Loose/Strict Source Route:  | 131/137| length |pointer | 4-byte addresses ...
//! ```
//!
//! The length counts the whole option, type and length bytes included. The pointer counts
//! from 1 at the type byte and points at the next free slot: 4 is the first one of a
//! Record Route, 5 of a Timestamp; a pointer past the length means the option is full.
//! A timestamp's flag (low four bits of its fourth byte) says what a slot holds: 0 a
//! timestamp only, 1 an address and a timestamp, 3 a timestamp for the address the
//! sender wrote there beforehand. Its high four bits count the hosts that found it full.

use std::net::Ipv4Addr;

use super::bytes;
use super::ipv4::MIN_HEADER_LEN;

// ANCHOR: kinds
pub const END_OF_LIST: u8 = 0;
pub const NO_OPERATION: u8 = 1;
pub const RECORD_ROUTE: u8 = 7;
pub const TIMESTAMP: u8 = 68;
/// Loose and strict source route: the sender chose the path, and RFC 1122 3.2.2.6 says
/// an echo reply MUST take that path back, reversed.
pub const LOOSE_SOURCE_ROUTE: u8 = 131;
pub const STRICT_SOURCE_ROUTE: u8 = 137;
/// Commercial IP Security Option: a security label, meaningful only to a host that has
/// been given the label's domain (Linux's netlabel); refused by every other host.
pub const CIPSO: u8 = 134;
pub const ROUTER_ALERT: u8 = 148;

/// The timestamp option's flags (RFC 791): what each slot holds.
pub const TS_ONLY: u8 = 0;
pub const TS_AND_ADDRESS: u8 = 1;
pub const TS_PRESPECIFIED: u8 = 3;
// ANCHOR_END: kinds

/// Where the options that matter to a host sit, as offsets from the start of the IPv4
/// header (the way ICMP counts them). Every other option is checked and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ipv4Options {
    pub record_route: Option<usize>,
    pub timestamp: Option<usize>,
    pub source_route: Option<usize>,
}

/// A malformed option: `pointer` is the offset, from the start of the IPv4 header, of the
/// byte found wrong, as an ICMP Parameter Problem reports it (RFC 792).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadOption {
    pub pointer: u8,
}

impl BadOption {
    fn at(offset: usize) -> BadOption {
        // A header is at most 60 bytes long, so every offset fits; saturate regardless.
        BadOption { pointer: u8::try_from(offset).unwrap_or(u8::MAX) }
    }
}

// ANCHOR: parse
impl Ipv4Options {
    /// Walks the options of `header` (a whole IPv4 header, options included) and applies
    /// Linux's rules to each: End of List ends the walk, No Operation is one byte, every
    /// other option has a length of at least 2 that stays within the header. Record Route
    /// and Timestamp need a pointer at a slot, or past the end when full; no option that
    /// carries a pointer may appear twice.
    // Inlined into the caller, this costs next to nothing for the usual header without
    // options (measured with `cargo bench --bench per_frame`: 8 ns of about 50 without).
    #[inline]
    pub fn parse(header: &[u8]) -> Result<Ipv4Options, BadOption> {
        let mut found = Ipv4Options::default();
        let mut at = MIN_HEADER_LEN;
        while let Some(&kind) = header.get(at) {
            let left = header.len() - at;
            match kind {
                END_OF_LIST => break,
                NO_OPERATION => {
                    at += 1;
                    continue;
                }
                _ => {}
            }
            let len = usize::from(bytes::read_u8(header, at + 1));
            if left < 2 || len < 2 || len > left {
                return Err(BadOption::at(at));
            }
            let option = bytes::slice(header, at..at + len);
            let bad = |offset: usize| Err(BadOption::at(at + offset));
            match kind {
                // Linux checks a source route's pointer only against the first slot:
                // the route is walked later, if ever (never here: see `respond`).
                LOOSE_SOURCE_ROUTE | STRICT_SOURCE_ROUTE => {
                    if len < 3 {
                        return bad(1);
                    }
                    if bytes::read_u8(option, 2) < 4 {
                        return bad(2);
                    }
                    if found.source_route.is_some() {
                        return bad(0);
                    }
                    found.source_route = Some(at);
                }
                RECORD_ROUTE => {
                    if found.record_route.is_some() {
                        return bad(0);
                    }
                    if let Some(offset) = check_pointer(option, 3, 4) {
                        return bad(offset);
                    }
                    found.record_route = Some(at);
                }
                TIMESTAMP => {
                    if found.timestamp.is_some() {
                        return bad(0);
                    }
                    if let Some(offset) = check_timestamp(option) {
                        return bad(offset);
                    }
                    found.timestamp = Some(at);
                }
                ROUTER_ALERT if len < 4 => return bad(1),
                // No CIPSO domain is known here: Linux's cipso_v4_validate() blames the
                // length if it is too short for one, and the domain otherwise.
                CIPSO if len < 8 => return bad(1),
                CIPSO => return bad(2),
                _ => {}
            }
            at += len;
        }
        Ok(found)
    }
}

/// Checks the pointer (byte 2) of an option whose slots start at `first`: the option
/// must be at least `min_len` long and, unless it is full, the slot the pointer names
/// must lie within it. Returns the offset of the wrong byte, if any.
fn check_pointer(option: &[u8], min_len: usize, first: usize) -> Option<usize> {
    let len = option.len();
    if len < min_len {
        return Some(1);
    }
    let pointer = usize::from(bytes::read_u8(option, 2));
    if pointer < first || (pointer <= len && pointer + 3 > len) {
        return Some(2);
    }
    None
}

/// A timestamp's pointer must also leave room for an address before the time when the
/// flag asks for one; a full option counts one more host in its overflow, and one that
/// has already counted 15 cannot.
fn check_timestamp(option: &[u8]) -> Option<usize> {
    if let Some(offset) = check_pointer(option, 4, 5) {
        return Some(offset);
    }
    let view = SlotOption::new(option);
    let pointer = view.pointer();
    if pointer <= option.len() {
        let pairs = matches!(view.flags(), TS_AND_ADDRESS | TS_PRESPECIFIED);
        if pairs && pointer + 7 > option.len() {
            return Some(2);
        }
    } else if view.flags() != TS_PRESPECIFIED && view.overflow() == 15 {
        return Some(3);
    }
    None
}
// ANCHOR_END: parse

// ANCHOR: slot_option
/// A view of one Record Route or Timestamp option (type, length, pointer, then 4-byte
/// slots), for reading and filling in its slots. `buffer` is the option alone.
#[derive(Debug)]
pub struct SlotOption<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SlotOption<T> {
    pub fn new(buffer: T) -> Self {
        SlotOption { buffer }
    }

    /// The option's own length (the buffer's).
    pub fn len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pointer: the 1-based position of the next free slot.
    pub fn pointer(&self) -> usize {
        usize::from(bytes::read_u8(self.buffer.as_ref(), 2))
    }

    /// Whether a 4-byte slot starts at 1-based `position` and ends within the option.
    pub fn has_slot(&self, position: usize) -> bool {
        position >= 1 && position + 3 <= self.len()
    }

    /// The address in the slot at 1-based `position`.
    pub fn addr_at(&self, position: usize) -> Ipv4Addr {
        let start = position.saturating_sub(1);
        Ipv4Addr::from(bytes::read::<4>(self.buffer.as_ref(), start..start + 4))
    }

    /// A timestamp option's flag (low four bits of byte 3).
    pub fn flags(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), 3) & 0x0f
    }

    /// A timestamp option's overflow count (high four bits of byte 3).
    pub fn overflow(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), 3) >> 4
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SlotOption<T> {
    pub fn set_pointer(&mut self, pointer: usize) {
        let pointer = u8::try_from(pointer).unwrap_or(u8::MAX);
        bytes::write_u8(self.buffer.as_mut(), 2, pointer);
    }

    /// Writes 4 bytes (an address, or a timestamp in network byte order) into the slot
    /// at 1-based `position`; nothing if the slot is not within the option.
    pub fn set_slot(&mut self, position: usize, value: [u8; 4]) {
        let start = position.saturating_sub(1);
        bytes::write(self.buffer.as_mut(), start..start + 4, value);
    }

    pub fn set_overflow(&mut self, overflow: u8) {
        let flags = self.flags();
        bytes::write_u8(self.buffer.as_mut(), 3, (overflow << 4) | flags);
    }
}
// ANCHOR_END: slot_option

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::HEADER_LEN;
    use crate::wire::fixtures::fixture;

    /// A 20-byte header followed by `options`.
    fn header(options: &[u8]) -> Vec<u8> {
        let mut h = vec![0x45; 20];
        h.extend_from_slice(options);
        h
    }

    fn pointer(options: &[u8]) -> Result<Ipv4Options, u8> {
        Ipv4Options::parse(&header(options)).map_err(|bad| bad.pointer)
    }

    #[test]
    fn finds_the_record_route_of_the_kernels_ping_r() {
        // NOP, then Record Route (type 7, length 39, pointer 8: 172.16.1.1 already in).
        let frame = fixture!("icmp_echo_request_options");
        let ip = &frame[HEADER_LEN..HEADER_LEN + 60];
        let options = Ipv4Options::parse(ip).unwrap();
        assert_eq!(options, Ipv4Options { record_route: Some(21), ..Default::default() });
        let rr = SlotOption::new(&ip[21..60]);
        assert_eq!((rr.len(), rr.pointer()), (39, 8));
        assert_eq!(rr.addr_at(4), Ipv4Addr::new(172, 16, 1, 1));
    }

    #[test]
    fn finds_the_timestamps_of_the_kernels_ping_t() {
        for (name, flags) in [("tsonly", TS_ONLY), ("tsandaddr", TS_AND_ADDRESS)] {
            let frame = match name {
                "tsonly" => fixture!("kernel_echo_request_tsonly"),
                _ => fixture!("kernel_echo_request_tsandaddr"),
            };
            let ihl = usize::from(frame[HEADER_LEN] & 0x0f) * 4;
            let ip = &frame[HEADER_LEN..HEADER_LEN + ihl];
            let options = Ipv4Options::parse(ip).unwrap();
            assert_eq!(options.timestamp, Some(20), "{name}");
            assert_eq!(SlotOption::new(&ip[20..]).flags(), flags, "{name}");
        }
    }

    // ANCHOR: bad_options
    #[test]
    fn points_where_linux_points() {
        // Each case was sent to a Linux 6.18 kernel over a veth pair (crafted with a
        // packet socket): the pointer is the one its ICMP Parameter Problem carried.
        let cases: [(&str, &[u8], u8); 19] = [
            ("length past the header", &[1, 7, 40, 4, 0], 21),
            ("length 1", &[7, 1, 0, 0], 20),
            ("Record Route of length 2", &[7, 2, 1, 0], 21),
            ("Record Route pointer 3", &[7, 7, 3, 0, 0, 0, 0, 0], 22),
            ("Record Route slot past the end", &[7, 7, 5, 0, 0, 0, 0, 0], 22),
            ("two Record Routes", &[7, 3, 4, 7, 3, 4, 0, 0], 23),
            ("Timestamp of length 3", &[68, 3, 5, 0], 21),
            ("Timestamp pointer 4", &[68, 8, 4, 0, 0, 0, 0, 0], 22),
            ("Timestamp full, overflow 15", &[68, 8, 9, 0xf0, 1, 2, 3, 4], 23),
            ("address and time, room for one", &[68, 8, 5, 1, 0, 0, 0, 0], 22),
            ("Router Alert of length 3", &[148, 3, 0, 0], 21),
            ("source route pointer 3", &[131, 7, 3, 172, 16, 1, 9, 0], 22),
            ("source route of length 2", &[131, 2, 0, 0], 21),
            ("CIPSO (no domain known)", &[134, 8, 0, 0, 0, 1, 0, 0], 22),
            ("CIPSO of length 6", &[134, 6, 0, 0, 0, 1, 0, 0], 21),
            ("Record Route, then a bad Timestamp", &[7, 7, 4, 0, 0, 0, 0, 68, 3, 5, 0, 0], 28),
            ("a lone type byte at the end", &[1, 1, 1, 7], 23),
            ("two source routes", &[131, 3, 4, 137, 3, 4, 0, 0], 23),
            ("two Timestamps", &[68, 4, 5, 0, 68, 4, 5, 0], 24),
        ];
        for (what, options, expected) in cases {
            assert_eq!(pointer(options), Err(expected), "{what}");
        }
    }
    // ANCHOR_END: bad_options

    #[test]
    fn accepts_what_linux_accepts() {
        let ok = |options: &[u8]| pointer(options).unwrap();
        assert_eq!(ok(&[]), Ipv4Options::default());
        assert_eq!(ok(&[0, 7, 99, 5]), Ipv4Options::default(), "nothing counts after the end");
        assert_eq!(ok(&[130, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), Ipv4Options::default());
        assert_eq!(ok(&[148, 4, 0, 0]), Ipv4Options::default(), "Router Alert");
        let full_rr = ok(&[7, 7, 8, 172, 16, 1, 1, 0]);
        assert_eq!(full_rr.record_route, Some(20), "a full Record Route is fine");
        let full_ts = ok(&[68, 8, 9, 0xe0, 1, 2, 3, 4]);
        assert_eq!(full_ts.timestamp, Some(20), "overflow 14 may still count one more");
        assert_eq!(ok(&[68, 8, 9, 0xf3, 1, 2, 3, 4]).timestamp, Some(20), "prespecified");
        assert_eq!(ok(&[68, 8, 5, 2, 0, 0, 0, 0]).timestamp, Some(20), "unknown flag 2");
        let both = ok(&[68, 8, 5, 0, 0, 0, 0, 0, 7, 7, 4, 0, 0, 0, 0, 0]);
        assert_eq!((both.timestamp, both.record_route), (Some(20), Some(28)));
        let lsrr = ok(&[131, 7, 4, 172, 16, 1, 9, 0]);
        assert_eq!(lsrr.source_route, Some(20));
    }

    #[test]
    fn slots_are_read_and_written_within_the_option() {
        let mut option = [7u8, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut view = SlotOption::new(&mut option[..]);
        assert!(view.has_slot(8) && !view.has_slot(9));
        view.set_slot(4, [172, 16, 1, 2]);
        view.set_slot(9, [9; 4]); // past the end: nothing
        view.set_pointer(8);
        assert_eq!(view.addr_at(4), Ipv4Addr::new(172, 16, 1, 2));
        assert_eq!(option, [7, 11, 8, 172, 16, 1, 2, 0, 0, 0, 0]);
        let mut ts = [68u8, 8, 9, 0x31, 0, 0, 0, 0];
        SlotOption::new(&mut ts[..]).set_overflow(4);
        assert_eq!(ts[3], 0x41);
    }
}
