//! ICMPv4 (RFC 792), the echo messages in particular: what `ping` sends and expects.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Identifier          |        Sequence Number        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Data ...
//! +-+-+-+-+-
//! ```
//!
//! The checksum covers the whole ICMP message, header and data, whatever its length
//! (odd lengths included). The identifier and sequence number are the echo messages'
//! "rest of header"; other types use those four bytes differently.

use std::ops::Range;

use super::{Error, Result, bytes, checksum};

/// The ICMP type field (the ones a ping exchange and a fresh interface produce).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Type {
    EchoReply,
    DestinationUnreachable,
    Redirect,
    EchoRequest,
    TimeExceeded,
    ParameterProblem,
    Unknown(u8),
}

impl From<u8> for Icmpv4Type {
    fn from(value: u8) -> Self {
        match value {
            0 => Icmpv4Type::EchoReply,
            3 => Icmpv4Type::DestinationUnreachable,
            5 => Icmpv4Type::Redirect,
            8 => Icmpv4Type::EchoRequest,
            11 => Icmpv4Type::TimeExceeded,
            12 => Icmpv4Type::ParameterProblem,
            other => Icmpv4Type::Unknown(other),
        }
    }
}

impl From<Icmpv4Type> for u8 {
    fn from(value: Icmpv4Type) -> Self {
        match value {
            Icmpv4Type::EchoReply => 0,
            Icmpv4Type::DestinationUnreachable => 3,
            Icmpv4Type::Redirect => 5,
            Icmpv4Type::EchoRequest => 8,
            Icmpv4Type::TimeExceeded => 11,
            Icmpv4Type::ParameterProblem => 12,
            Icmpv4Type::Unknown(other) => other,
        }
    }
}

impl Icmpv4Type {
    /// The highest type Linux knows (`NR_ICMP_TYPES`, 18: address mask reply).
    pub const HIGHEST_KNOWN: u8 = 18;

    /// An error message (RFC 1122 3.2.2): destination unreachable, source quench,
    /// redirect, time exceeded, parameter problem. No ICMP error may ever be sent about
    /// one of these, or two hosts could trade errors about each other's errors forever.
    pub fn is_error(value: u8) -> bool {
        matches!(value, 3 | 4 | 5 | 11 | 12)
    }
}

// ANCHOR: fields
mod field {
    use std::ops::Range;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ: Range<usize> = 6..8;
    /// Parameter Problem (type 12): the offset of the offending byte in the header
    /// quoted below; the three bytes after it are unused (zero).
    pub const PARAM_POINTER: usize = 4;
    pub const PARAM_UNUSED: Range<usize> = 5..8;
    pub const DATA: usize = 8;
}

/// Type, code, checksum and the four "rest of header" bytes.
pub const HEADER_LEN: usize = field::DATA;
// ANCHOR_END: fields

/// A view of an ICMPv4 message. The buffer is the whole message: give it the IPv4
/// packet's payload (which the total length has already cut), never the rest of a frame.
#[derive(Debug, Clone)]
pub struct Icmpv4Message<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Message<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Message { buffer }
    }

    // ANCHOR: student_ch4_icmp_view "chapter 4: the ICMP view"
    /// Checks that the 8-byte header is there; every accessor relies on it. The data may
    /// be empty, and the checksum is checked separately ([`Self::verify_checksum`]).
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Icmpv4Message { buffer })
    }
    // ANCHOR_END: student_ch4_icmp_view

    fn u16_at(&self, range: Range<usize>) -> u16 {
        bytes::read_u16(self.buffer.as_ref(), range)
    }

    pub fn msg_type(&self) -> Icmpv4Type {
        Icmpv4Type::from(bytes::read_u8(self.buffer.as_ref(), field::TYPE))
    }

    pub fn msg_code(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), field::CODE)
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// The echo identifier (what ping uses to tell its replies from another ping's).
    pub fn echo_ident(&self) -> u16 {
        self.u16_at(field::ECHO_IDENT)
    }

    pub fn echo_seq_no(&self) -> u16 {
        self.u16_at(field::ECHO_SEQ)
    }

    /// A Parameter Problem's pointer: which byte of the quoted header was wrong.
    pub fn param_pointer(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), field::PARAM_POINTER)
    }

    /// The data after the 8-byte header: for ping, a timestamp and a pattern.
    pub fn data(&self) -> &[u8] {
        bytes::slice(self.buffer.as_ref(), field::DATA..)
    }

    /// The whole message, the length of the checksum's coverage.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    // ANCHOR: verify_checksum
    // ANCHOR: student_ch4_icmp_verify "chapter 4: the ICMP checksum"
    /// The checksum covers the whole message, data included, odd lengths too.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
    }
    // ANCHOR_END: student_ch4_icmp_verify
    // ANCHOR_END: verify_checksum
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Message<T> {
    fn set_u16(&mut self, range: Range<usize>, value: u16) {
        bytes::write_u16(self.buffer.as_mut(), range, value);
    }

    pub fn set_msg_type(&mut self, value: Icmpv4Type) {
        bytes::write_u8(self.buffer.as_mut(), field::TYPE, value.into());
    }

    pub fn set_msg_code(&mut self, value: u8) {
        bytes::write_u8(self.buffer.as_mut(), field::CODE, value);
    }

    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16(field::CHECKSUM, value);
    }

    pub fn set_echo_ident(&mut self, value: u16) {
        self.set_u16(field::ECHO_IDENT, value);
    }

    pub fn set_echo_seq_no(&mut self, value: u16) {
        self.set_u16(field::ECHO_SEQ, value);
    }

    /// Sets a Parameter Problem's pointer, and zeroes the three unused bytes after it.
    pub fn set_param_pointer(&mut self, value: u8) {
        bytes::write_u8(self.buffer.as_mut(), field::PARAM_POINTER, value);
        bytes::write(self.buffer.as_mut(), field::PARAM_UNUSED, [0; 3]);
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        bytes::slice_mut(self.buffer.as_mut(), field::DATA..)
    }

    // ANCHOR: fill_checksum
    // ANCHOR: student_ch4_icmp_fill "chapter 4: the ICMP checksum"
    /// Computes the checksum over the whole message with the checksum field zeroed.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(sum);
    }
    // ANCHOR_END: student_ch4_icmp_fill
    // ANCHOR_END: fill_checksum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::EthernetFrame;
    use crate::wire::fixtures::fixture;
    use crate::wire::ipv4::Ipv4Packet;

    fn icmp_of(frame: &[u8]) -> Vec<u8> {
        let eth = EthernetFrame::new_checked(frame).unwrap();
        Ipv4Packet::new_checked(eth.payload()).unwrap().payload().to_vec()
    }

    #[test]
    fn parses_and_verifies_the_kernels_echo_requests() {
        for (bytes, data_len) in [
            (fixture!("icmp_echo_request_0"), 0),
            (fixture!("icmp_echo_request_1"), 1),
            (fixture!("icmp_echo_request_56"), 56),
            (fixture!("icmp_echo_request_1472"), 1472),
        ] {
            let msg = icmp_of(&bytes);
            let msg = Icmpv4Message::new_checked(&msg[..]).unwrap();
            assert_eq!(msg.msg_type(), Icmpv4Type::EchoRequest);
            assert_eq!(msg.msg_code(), 0);
            assert_eq!(msg.data().len(), data_len);
            assert!(msg.verify_checksum(), "{data_len}-byte echo request");
        }
    }

    #[test]
    fn an_odd_length_message_is_checked_to_its_last_byte() {
        let bytes = fixture!("icmp_echo_request_1");
        let mut msg = icmp_of(&bytes);
        assert_eq!(msg.len(), 9);
        msg[8] ^= 0x80;
        assert!(!Icmpv4Message::new_checked(&msg[..]).unwrap().verify_checksum());
    }

    #[test]
    fn filling_the_checksum_reproduces_the_kernels() {
        let bytes = fixture!("icmp_echo_request_1472");
        let mut msg = icmp_of(&bytes);
        let original = Icmpv4Message::new_checked(&msg[..]).unwrap().checksum();
        let mut view = Icmpv4Message::new_checked(&mut msg[..]).unwrap();
        view.set_checksum(0xa5a5);
        view.fill_checksum();
        assert_eq!(view.checksum(), original);
    }

    #[test]
    fn rejects_a_truncated_header() {
        for len in 0..HEADER_LEN {
            let buf = vec![8u8; len];
            assert_eq!(Icmpv4Message::new_checked(&buf[..]).unwrap_err(), Error::Truncated);
        }
    }
}
