//! Neighbor Discovery (RFC 4861): IPv6's ARP, carried in ICMPv6. A Neighbor Solicitation
//! asks "who has this target address?", a Neighbor Advertisement answers with the target's
//! link-layer address. Both have the same shape:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|S|O|                     Reserved                            |  (NS: all reserved)
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Target Address (16 bytes)               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Options ...  (type, length in units of 8 bytes, value)
//! +-+-+-+-+-+-+-+-+-+-+-+-
//! ```

use std::net::Ipv6Addr;

use super::ethernet::MacAddr;
use super::{Error, Result, bytes};

// ANCHOR: fields
mod field {
    use std::ops::Range;

    pub const FLAGS: usize = 4;
    pub const RESERVED: Range<usize> = 4..8;
    pub const TARGET: Range<usize> = 8..24;
    pub const OPTIONS: usize = 24;
}

/// The fixed part of a solicitation or an advertisement, ICMPv6 header included.
pub const MESSAGE_LEN: usize = field::OPTIONS;

/// Neighbor Advertisement flags: sent by a Router, Solicited (an answer to a
/// solicitation), Override (replace what the cache holds).
pub const FLAG_ROUTER: u8 = 0x80;
pub const FLAG_SOLICITED: u8 = 0x40;
pub const FLAG_OVERRIDE: u8 = 0x20;

/// Option types (RFC 4861 4.6): the sender's and the target's link-layer address, and
/// (RFC 7527) the nonce Linux puts in its duplicate address detection probes.
pub const OPT_SOURCE_LL_ADDR: u8 = 1;
pub const OPT_TARGET_LL_ADDR: u8 = 2;
pub const OPT_NONCE: u8 = 14;

/// A link-layer address option for Ethernet: type, length 1 (8 bytes), the MAC.
pub const LL_ADDR_OPTION_LEN: usize = 8;
// ANCHOR_END: fields

/// A view of a Neighbor Solicitation or Advertisement.
#[derive(Debug, Clone)]
pub struct NdiscMessage<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NdiscMessage<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        NdiscMessage { buffer }
    }

    /// RFC 4861 7.1.1: the ICMP length is 24 bytes or more.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < MESSAGE_LEN {
            return Err(Error::Truncated);
        }
        Ok(NdiscMessage { buffer })
    }

    pub fn flags(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), field::FLAGS)
    }

    pub fn target(&self) -> Ipv6Addr {
        Ipv6Addr::from(bytes::read::<16>(self.buffer.as_ref(), field::TARGET))
    }

    /// The options, as (type, whole option) pairs.
    pub fn options(&self) -> NdiscOptions<'_> {
        NdiscOptions { rest: bytes::slice(self.buffer.as_ref(), field::OPTIONS..) }
    }

    /// Checks every option's length (RFC 4861 7.1.1: none is zero, none runs past the
    /// message) and returns the source link-layer address option's MAC, if there is one.
    pub fn source_ll_addr(&self) -> Result<Option<MacAddr>> {
        let mut found = None;
        for option in self.options() {
            let (kind, option) = option?;
            if kind == OPT_SOURCE_LL_ADDR {
                // An Ethernet address option is 8 bytes; a longer one is for another link.
                if option.len() != LL_ADDR_OPTION_LEN {
                    return Err(Error::BadLength);
                }
                found = Some(MacAddr(bytes::read(option, 2..8)));
            }
        }
        Ok(found)
    }
}

/// The options of a neighbour discovery message; an option of length 0 or one that runs
/// past the end yields an error (and ends the walk).
pub struct NdiscOptions<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NdiscOptions<'a> {
    type Item = Result<(u8, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, tail) = self.rest.split_first()?;
        let len = usize::from(tail.first().copied().unwrap_or(0)) * 8;
        let option = match self.rest.get(..len) {
            Some(option) if len > 0 => option,
            _ => {
                self.rest = &[];
                return Some(Err(if len == 0 { Error::BadLength } else { Error::Truncated }));
            }
        };
        self.rest = self.rest.get(len..).unwrap_or(&[]);
        Some(Ok((kind, option)))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> NdiscMessage<T> {
    /// Sets the flags byte and clears the 29 reserved bits after it.
    pub fn set_flags(&mut self, flags: u8) {
        bytes::write(self.buffer.as_mut(), field::RESERVED, [flags, 0, 0, 0]);
    }

    pub fn set_target(&mut self, target: Ipv6Addr) {
        bytes::write(self.buffer.as_mut(), field::TARGET, target.octets());
    }

    /// Writes a target link-layer address option right after the fixed part.
    pub fn set_target_ll_addr(&mut self, mac: MacAddr) {
        let [a, b, c, d, e, f] = mac.0;
        let option = [OPT_TARGET_LL_ADDR, 1, a, b, c, d, e, f];
        bytes::write(self.buffer.as_mut(), field::OPTIONS..field::OPTIONS + 8, option);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::fixture;

    #[test]
    fn reads_the_kernels_solicitations() {
        // Ethernet (14) + IPv6 (40): ICMPv6 starts at byte 54.
        let ns = fixture!("ipv6_ns_multicast");
        let m = NdiscMessage::new_checked(&ns[54..]).unwrap();
        assert_eq!(m.target(), "fd00:172:16:1::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(m.source_ll_addr(), Ok(Some(MacAddr([2, 0, 0, 0, 0, 1]))));
        let dad = fixture!("ipv6_ns_dad");
        let m = NdiscMessage::new_checked(&dad[54..]).unwrap();
        assert_eq!(m.source_ll_addr(), Ok(None), "a probe from :: carries no address");
        let kinds: Vec<u8> = m.options().map(|o| o.unwrap().0).collect();
        assert_eq!(kinds, [OPT_NONCE], "Linux's probes carry a nonce (RFC 7527)");
    }

    #[test]
    fn reads_the_kernels_advertisements() {
        let na = fixture!("kernel_na_solicited");
        let m = NdiscMessage::new_checked(&na[54..]).unwrap();
        assert_eq!(m.flags(), FLAG_SOLICITED | FLAG_OVERRIDE);
        let options: Vec<_> = m.options().map(|o| o.unwrap()).collect();
        assert_eq!(options, [(OPT_TARGET_LL_ADDR, &[2u8, 1, 2, 0, 0, 0, 0, 2][..])]);
        let na = fixture!("kernel_na_unicast");
        let m = NdiscMessage::new_checked(&na[54..]).unwrap();
        assert_eq!((m.flags(), m.options().count()), (FLAG_SOLICITED, 0));
    }

    #[test]
    fn refuses_options_of_length_zero_or_past_the_end() {
        let ns = fixture!("ipv6_ns_multicast");
        let mut icmp = ns[54..].to_vec();
        icmp[25] = 0;
        assert_eq!(
            NdiscMessage::new_checked(&icmp[..]).unwrap().source_ll_addr(),
            Err(Error::BadLength)
        );
        icmp[25] = 2;
        assert_eq!(
            NdiscMessage::new_checked(&icmp[..]).unwrap().source_ll_addr(),
            Err(Error::Truncated)
        );
        assert!(NdiscMessage::new_checked(&icmp[..23]).is_err());
    }

    #[test]
    fn writes_an_advertisement() {
        let mut buf = [0xa5u8; 32];
        let mut m = NdiscMessage::new_unchecked(&mut buf[..]);
        m.set_flags(FLAG_SOLICITED);
        m.set_target("fd00:172:16:1::2".parse().unwrap());
        m.set_target_ll_addr(MacAddr([2, 0, 0, 0, 0, 2]));
        let na = fixture!("kernel_na_solicited");
        assert_eq!(buf[4..8], [0x40, 0, 0, 0]);
        assert_eq!(buf[8..], na[54 + 8..]);
        assert_eq!(buf[..4], [0xa5; 4], "type, code and checksum are the caller's");
    }
}
