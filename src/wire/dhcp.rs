//! DHCP (RFC 2131), carried in a BOOTP message (RFC 951), with its options (RFC 2132).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------+---------------+---------------+---------------+
//! |     op (1)    |   htype (1)   |   hlen (1)    |   hops (1)    |
//! +---------------+---------------+---------------+---------------+
//! |                            xid (4)                            |
//! +-------------------------------+-------------------------------+
//! |           secs (2)            |           flags (2)           |
//! +-------------------------------+-------------------------------+
//! |                          ciaddr  (4)                          |
//! |                          yiaddr  (4)                          |
//! |                          siaddr  (4)                          |
//! |                          giaddr  (4)                          |
//! +---------------------------------------------------------------+
//! |                          chaddr  (16)                         |
//! |                          sname   (64)                         |
//! |                          file    (128)                        |
//! +---------------------------------------------------------------+
//! |  magic cookie 99.130.83.99 (4), then options (variable)       |
//! +---------------------------------------------------------------+
//! ```
//!
//! The options are type-length-value triples, each a code byte, a length byte and that
//! many bytes of value; code 0 (Pad) and code 255 (End) are single bytes. A client's
//! message says what it is in option 53 (DHCP message type); without the magic cookie it
//! is plain BOOTP, which this code does not serve.

use std::net::Ipv4Addr;
use std::ops::Range;

use super::ethernet::MacAddr;
use super::{Error, Result, bytes};

// ANCHOR: fields
mod field {
    use std::ops::Range;

    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const HOPS: usize = 3;
    pub const XID: Range<usize> = 4..8;
    pub const SECS: Range<usize> = 8..10;
    pub const FLAGS: Range<usize> = 10..12;
    pub const CIADDR: Range<usize> = 12..16;
    pub const YIADDR: Range<usize> = 16..20;
    pub const SIADDR: Range<usize> = 20..24;
    pub const GIADDR: Range<usize> = 24..28;
    /// The client's hardware address: 16 bytes, of which Ethernet uses the first 6.
    #[allow(dead_code)] // named for the layout: the server reads only the MAC in it
    pub const CHADDR: Range<usize> = 28..44;
    pub const CHADDR_MAC: Range<usize> = 28..34;
    /// Server name and boot file: a server that does not boot clients leaves them zero.
    #[allow(dead_code)]
    pub const SNAME: Range<usize> = 44..108;
    #[allow(dead_code)]
    pub const FILE: Range<usize> = 108..236;
    pub const MAGIC: Range<usize> = 236..240;
    pub const OPTIONS: usize = 240;
}

/// The fixed part and the magic cookie: where the options begin.
pub const HEADER_LEN: usize = field::OPTIONS;
/// RFC 2131's magic cookie, 99.130.83.99: the options that follow are DHCP's.
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// The BROADCAST bit of `flags` (RFC 2131 figure 2): the client cannot receive unicast
/// datagrams before it has an address, so the server must broadcast its replies.
pub const FLAG_BROADCAST: u16 = 0x8000;
/// BOOTP's minimum message (RFC 1542 section 3.3, "at least 300 octets"): some old
/// relays and clients drop anything shorter, so replies are padded to it.
pub const MIN_MESSAGE_LEN: usize = 300;
/// The UDP ports: the server listens on 67, the client on 68.
pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
// ANCHOR_END: fields

/// BOOTP's `op` field.
pub const BOOTREQUEST: u8 = 1;
pub const BOOTREPLY: u8 = 2;
/// `htype` for Ethernet (ARP's hardware type 1), with `hlen` 6.
pub const HTYPE_ETHERNET: u8 = 1;

// ANCHOR: option_codes
/// The option codes this server reads or writes (RFC 2132).
pub mod option {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    /// Option overload: more options in `sname` and `file` (not supported here).
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const CLIENT_ID: u8 = 61;
    pub const END: u8 = 255;
}
// ANCHOR_END: option_codes

/// Option 53, the DHCP message type (RFC 2132 section 9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover,
    Offer,
    Request,
    Decline,
    Ack,
    Nak,
    Release,
    Inform,
    Unknown(u8),
}

impl From<u8> for MessageType {
    fn from(value: u8) -> Self {
        match value {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            other => MessageType::Unknown(other),
        }
    }
}

impl From<MessageType> for u8 {
    fn from(value: MessageType) -> Self {
        match value {
            MessageType::Discover => 1,
            MessageType::Offer => 2,
            MessageType::Request => 3,
            MessageType::Decline => 4,
            MessageType::Ack => 5,
            MessageType::Nak => 6,
            MessageType::Release => 7,
            MessageType::Inform => 8,
            MessageType::Unknown(other) => other,
        }
    }
}

/// A view of a BOOTP/DHCP message: the UDP payload.
#[derive(Debug, Clone)]
pub struct DhcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> DhcpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        DhcpPacket { buffer }
    }

    /// Checks that the fixed part and the magic cookie are there
    /// ([`Error::Truncated`]) and that the cookie is DHCP's ([`Error::Unsupported`]:
    /// plain BOOTP or something else on port 67). The options are checked as they are
    /// read ([`DhcpPacket::options`]).
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let packet = DhcpPacket { buffer };
        if packet.magic() != MAGIC_COOKIE {
            return Err(Error::Unsupported);
        }
        Ok(packet)
    }

    fn addr_at(&self, range: Range<usize>) -> Ipv4Addr {
        Ipv4Addr::from(bytes::read::<4>(self.buffer.as_ref(), range))
    }

    pub fn op(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), field::OP)
    }

    pub fn htype(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), field::HTYPE)
    }

    pub fn hlen(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), field::HLEN)
    }

    pub fn hops(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), field::HOPS)
    }

    /// The transaction ID the client chose: replies carry it back.
    pub fn xid(&self) -> u32 {
        u32::from_be_bytes(bytes::read(self.buffer.as_ref(), field::XID))
    }

    pub fn secs(&self) -> u16 {
        bytes::read_u16(self.buffer.as_ref(), field::SECS)
    }

    pub fn flags(&self) -> u16 {
        bytes::read_u16(self.buffer.as_ref(), field::FLAGS)
    }

    pub fn broadcast(&self) -> bool {
        self.flags() & FLAG_BROADCAST != 0
    }

    /// The client's current address, when it has one (renewing, releasing).
    pub fn ciaddr(&self) -> Ipv4Addr {
        self.addr_at(field::CIADDR)
    }

    /// "Your" address: the one the server gives.
    pub fn yiaddr(&self) -> Ipv4Addr {
        self.addr_at(field::YIADDR)
    }

    pub fn siaddr(&self) -> Ipv4Addr {
        self.addr_at(field::SIADDR)
    }

    /// The relay agent's address, 0 when the client is on our own link.
    pub fn giaddr(&self) -> Ipv4Addr {
        self.addr_at(field::GIADDR)
    }

    /// The first six bytes of `chaddr`: the client's MAC, for Ethernet.
    pub fn client_mac(&self) -> MacAddr {
        MacAddr(bytes::read(self.buffer.as_ref(), field::CHADDR_MAC))
    }

    pub fn magic(&self) -> [u8; 4] {
        bytes::read(self.buffer.as_ref(), field::MAGIC)
    }

    /// The options, each checked as it is read.
    pub fn options(&self) -> Options<'_> {
        Options { rest: bytes::slice(self.buffer.as_ref(), field::OPTIONS..), ended: false }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> DhcpPacket<T> {
    /// Zeroes the fixed part (`sname` and `file` included) and writes the cookie.
    pub fn clear_header(&mut self) {
        if let Some(header) = self.buffer.as_mut().get_mut(..field::MAGIC.start) {
            header.fill(0);
        }
        bytes::write(self.buffer.as_mut(), field::MAGIC, MAGIC_COOKIE);
    }

    pub fn set_op(&mut self, value: u8) {
        bytes::write_u8(self.buffer.as_mut(), field::OP, value);
    }

    pub fn set_hardware(&mut self, htype: u8, hlen: u8) {
        bytes::write_u8(self.buffer.as_mut(), field::HTYPE, htype);
        bytes::write_u8(self.buffer.as_mut(), field::HLEN, hlen);
    }

    pub fn set_xid(&mut self, value: u32) {
        bytes::write(self.buffer.as_mut(), field::XID, value.to_be_bytes());
    }

    pub fn set_flags(&mut self, value: u16) {
        bytes::write_u16(self.buffer.as_mut(), field::FLAGS, value);
    }

    pub fn set_ciaddr(&mut self, addr: Ipv4Addr) {
        bytes::write(self.buffer.as_mut(), field::CIADDR, addr.octets());
    }

    pub fn set_yiaddr(&mut self, addr: Ipv4Addr) {
        bytes::write(self.buffer.as_mut(), field::YIADDR, addr.octets());
    }

    pub fn set_siaddr(&mut self, addr: Ipv4Addr) {
        bytes::write(self.buffer.as_mut(), field::SIADDR, addr.octets());
    }

    pub fn set_giaddr(&mut self, addr: Ipv4Addr) {
        bytes::write(self.buffer.as_mut(), field::GIADDR, addr.octets());
    }

    pub fn set_client_mac(&mut self, mac: MacAddr) {
        bytes::write(self.buffer.as_mut(), field::CHADDR_MAC, mac.0);
    }

    /// The bytes from the options on, for writing them.
    pub fn options_mut(&mut self) -> &mut [u8] {
        bytes::slice_mut(self.buffer.as_mut(), field::OPTIONS..)
    }
}

// ANCHOR: options
/// The options of a message, as (code, value) pairs; Pad bytes are skipped. An option
/// whose length runs past the message, or a message that ends without an End option
/// (RFC 2131 section 4.1: the options end with it), is [`Error::Truncated`]; after an
/// error or the End option the iterator is done.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    rest: &'a [u8],
    ended: bool,
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<(u8, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        loop {
            let Some((&code, after)) = self.rest.split_first() else {
                self.ended = true;
                return Some(Err(Error::Truncated)); // no End option
            };
            match code {
                option::PAD => self.rest = after,
                option::END => {
                    self.ended = true;
                    return None;
                }
                _ => {
                    let value = after
                        .split_first()
                        .and_then(|(&len, value)| value.split_at_checked(usize::from(len)));
                    let Some((value, rest)) = value else {
                        self.ended = true;
                        return Some(Err(Error::Truncated)); // the value runs past the end
                    };
                    self.rest = rest;
                    return Some(Ok((code, value)));
                }
            }
        }
    }
}
// ANCHOR_END: options

// ANCHOR: request_repr
/// What a client's message says, read once: the fixed fields a server needs and the
/// options it understands. [`DhcpRequest::parse`] refuses what no client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpRequest {
    pub message_type: MessageType,
    pub xid: u32,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub client_mac: MacAddr,
    /// Option 50: the address the client asks for (REQUEST in SELECTING or INIT-REBOOT).
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54: the server the client chose among those that offered.
    pub server_id: Option<Ipv4Addr>,
    /// Option 51: the lease the client would like, in seconds.
    pub lease_time: Option<u32>,
}

impl DhcpRequest {
    /// Reads a client's message. [`Error::Unsupported`] if it is not a BOOTREQUEST for
    /// Ethernet, has no message type, or uses option overload (options in `sname` and
    /// `file`); [`Error::BadLength`] if an option we read has the wrong length;
    /// [`Error::Truncated`] if an option runs past the end or the End option is missing.
    pub fn parse<T: AsRef<[u8]>>(packet: &DhcpPacket<T>) -> Result<DhcpRequest> {
        if packet.op() != BOOTREQUEST || packet.htype() != HTYPE_ETHERNET || packet.hlen() != 6 {
            return Err(Error::Unsupported);
        }
        let mut message_type = None;
        let mut request = DhcpRequest {
            message_type: MessageType::Unknown(0),
            xid: packet.xid(),
            flags: packet.flags(),
            ciaddr: packet.ciaddr(),
            giaddr: packet.giaddr(),
            client_mac: packet.client_mac(),
            requested_ip: None,
            server_id: None,
            lease_time: None,
        };
        for item in packet.options() {
            let (code, value) = item?;
            match code {
                option::MESSAGE_TYPE => message_type = Some(MessageType::from(one(value)?)),
                option::REQUESTED_IP => request.requested_ip = Some(Ipv4Addr::from(four(value)?)),
                option::SERVER_ID => request.server_id = Some(Ipv4Addr::from(four(value)?)),
                option::LEASE_TIME => request.lease_time = Some(u32::from_be_bytes(four(value)?)),
                option::OVERLOAD => return Err(Error::Unsupported),
                _ => {}
            }
        }
        request.message_type = message_type.ok_or(Error::Unsupported)?;
        Ok(request)
    }

    pub fn broadcast(&self) -> bool {
        self.flags & FLAG_BROADCAST != 0
    }
}

fn one(value: &[u8]) -> Result<u8> {
    match value {
        [byte] => Ok(*byte),
        _ => Err(Error::BadLength),
    }
}

fn four(value: &[u8]) -> Result<[u8; 4]> {
    <[u8; 4]>::try_from(value).map_err(|_| Error::BadLength)
}
// ANCHOR_END: request_repr

// ANCHOR: options_writer
/// Writes options one after the other into a buffer, and the End option last.
#[derive(Debug)]
pub struct OptionsWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> OptionsWriter<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        OptionsWriter { buf, len: 0 }
    }

    /// Appends one option; [`Error::Truncated`] if it does not fit with room left for
    /// End, [`Error::BadLength`] if the value is longer than 255 bytes.
    pub fn put(&mut self, code: u8, value: &[u8]) -> Result<()> {
        let len = u8::try_from(value.len()).map_err(|_| Error::BadLength)?;
        let end = self.len + 2 + value.len();
        // Keep one byte for End.
        if end >= self.buf.len() {
            return Err(Error::Truncated);
        }
        if let Some([c, l, rest @ ..]) = self.buf.get_mut(self.len..end) {
            *c = code;
            *l = len;
            rest.copy_from_slice(value);
        }
        self.len = end;
        Ok(())
    }

    /// Writes End and returns the length of the options written.
    pub fn finish(self) -> Result<usize> {
        let end = self.buf.get_mut(self.len).ok_or(Error::Truncated)?;
        *end = option::END;
        Ok(self.len + 1)
    }
}
// ANCHOR_END: options_writer

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::EthernetFrame;
    use crate::wire::fixtures::fixture;
    use crate::wire::ipv4::Ipv4Packet;
    use crate::wire::udp::UdpPacket;

    fn dhcp_of(frame: &[u8]) -> Vec<u8> {
        let eth = EthernetFrame::new_checked(frame).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        UdpPacket::new_checked(ip.payload()).unwrap().payload().to_vec()
    }

    #[test]
    fn reads_udhcpcs_discover_as_tcpdump_decoded_it() {
        let msg = dhcp_of(&fixture!("dhcp_discover"));
        let packet = DhcpPacket::new_checked(&msg[..]).unwrap();
        assert_eq!((packet.op(), packet.htype(), packet.hlen(), packet.hops()), (1, 1, 6, 0));
        assert_eq!(packet.xid(), 0x9a57_183b);
        assert!(!packet.broadcast());
        assert_eq!(packet.client_mac(), MacAddr([2, 0, 0, 0, 0, 1]));
        let codes: Vec<u8> = packet.options().map(|o| o.unwrap().0).collect();
        assert_eq!(codes, [53, 57, 55, 60, 61]);
        let request = DhcpRequest::parse(&packet).unwrap();
        assert_eq!(request.message_type, MessageType::Discover);
        assert_eq!(request.requested_ip, None);
        assert_eq!(request.ciaddr, Ipv4Addr::UNSPECIFIED);
    }

    /// The DISCOVER's options, up to and without End, for building variations.
    fn discover_options() -> (Vec<u8>, Vec<u8>) {
        let msg = dhcp_of(&fixture!("dhcp_discover"));
        let end = HEADER_LEN + msg[HEADER_LEN..].iter().position(|&b| b == 255).unwrap();
        // 53, 57, 55, 60, 61 have no 255 byte in their values (checked by the test above).
        (msg[..HEADER_LEN].to_vec(), msg[HEADER_LEN..end].to_vec())
    }

    fn parse(bytes: &[u8]) -> Result<DhcpRequest> {
        DhcpRequest::parse(&DhcpPacket::new_checked(bytes)?)
    }

    #[test]
    fn refuses_hostile_options() {
        let (header, options) = discover_options();
        let with = |tail: &[u8]| [&header[..], &options[..], tail].concat();
        assert!(parse(&with(&[255])).is_ok());
        // End missing: the message stops after the last option.
        assert_eq!(parse(&with(&[])), Err(Error::Truncated));
        // Padding but no End.
        assert_eq!(parse(&with(&[0, 0, 0])), Err(Error::Truncated));
        // An option whose length runs past the end of the message.
        assert_eq!(parse(&with(&[12, 200, b'x', b'y'])), Err(Error::Truncated));
        // A code with no length byte at all.
        assert_eq!(parse(&with(&[12])), Err(Error::Truncated));
        // Known options with the wrong length.
        assert_eq!(parse(&with(&[50, 3, 172, 16, 1, 255])), Err(Error::BadLength));
        assert_eq!(parse(&with(&[51, 8, 0, 0, 0, 0, 0, 0, 0, 1, 255])), Err(Error::BadLength));
        // Option overload: more options hidden in sname/file.
        assert_eq!(parse(&with(&[52, 1, 3, 255])), Err(Error::Unsupported));
        // Every truncation of the real message is refused, none panics.
        let whole = with(&[255]);
        for len in 0..whole.len() {
            assert!(parse(&whole[..len]).is_err(), "{len} bytes");
        }
    }

    #[test]
    fn refuses_wrong_cookie_op_and_hardware() {
        let msg = dhcp_of(&fixture!("dhcp_discover"));
        for (at, value, expected) in [
            (236, 0x64, Error::Unsupported), // magic cookie 100.130.83.99
            (0, 2, Error::Unsupported),      // a BOOTREPLY sent to the server port
            (1, 6, Error::Unsupported),      // IEEE 802 hardware
            (2, 16, Error::Unsupported),     // hlen 16
        ] {
            let mut bad = msg.clone();
            bad[at] = value;
            assert_eq!(parse(&bad), Err(expected), "byte {at} = {value}");
        }
        // No message type: BOOTP with a cookie, not DHCP.
        let (header, _) = discover_options();
        assert_eq!(parse(&[&header[..], &[255]].concat()), Err(Error::Unsupported));
    }

    #[test]
    fn options_writer_keeps_room_for_end() {
        let mut buf = [0xa5u8; 9];
        let mut w = OptionsWriter::new(&mut buf);
        w.put(option::MESSAGE_TYPE, &[2]).unwrap();
        w.put(option::ROUTER, &[172, 16, 1, 1]).unwrap_err();
        w.put(option::SUBNET_MASK, &[255, 255]).unwrap();
        assert_eq!(w.finish().unwrap(), 8);
        assert_eq!(buf[..8], [53, 1, 2, 1, 2, 255, 255, 255]);
    }
}
