//! Chapter 9: the virtio-net header (`struct virtio_net_hdr` in
//! `<linux/virtio_net.h>`, section 5.1.6 of the virtio 1.x specification) that a TAP
//! opened with `IFF_VNET_HDR` puts before every frame it hands out and expects before
//! every frame written to it.
//!
//! ```text
//!  byte 0     1          2..4       4..6       6..8         8..10         10..12
//! +--------+----------+----------+----------+------------+-------------+-------------+
//! | flags  | gso_type | hdr_len  | gso_size | csum_start | csum_offset | num_buffers |
//! +--------+----------+----------+----------+------------+-------------+-------------+
//!                       (16-bit fields little-endian)                   (only in the
//!                                                                        12-byte form)
//! ```
//!
//! Unlike every other header in this module the 16-bit fields are *little*-endian: the
//! header is a message between a driver and a device on the same machine, not a wire
//! format. (A TAP uses the host's byte order unless told otherwise with `TUNSETVNETLE`;
//! [`crate::vnet`] tells it "little-endian", which is what virtio 1.x devices speak.)
//!
//! `num_buffers` exists only when the header is 12 bytes long (`TUNSETVNETHDRSZ 12`, the
//! `virtio_net_hdr_mrg_rxbuf` form QEMU uses with mergeable receive buffers); the TAP
//! never fills it in, it just leaves room for it.

use super::{Error, Result, bytes};

mod field {
    use std::ops::Range;

    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Range<usize> = 2..4;
    pub const GSO_SIZE: Range<usize> = 4..6;
    pub const CSUM_START: Range<usize> = 6..8;
    pub const CSUM_OFFSET: Range<usize> = 8..10;
    pub const NUM_BUFFERS: Range<usize> = 10..12;
}

/// The original header: 10 bytes.
pub const HEADER_LEN: usize = field::CSUM_OFFSET.end;
/// With `num_buffers`: 12 bytes, the size every virtio 1.x device uses.
pub const HEADER_LEN_MRG_RXBUF: usize = field::NUM_BUFFERS.end;

// ANCHOR: flags
/// `flags`: the checksum from `csum_start` to the end of the frame still has to be
/// computed and stored at `csum_start + csum_offset`. The field already holds the sum of
/// the pseudo-header, so the job is one pass over the bytes (RFC 1071) and no more.
pub const FLAG_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum has been verified already (by a device, or because the frame
/// never left this machine); the receiver may skip checking it.
pub const FLAG_DATA_VALID: u8 = 2;
/// `flags`: "receive segment coalescing" information in the header (never from a TAP).
pub const FLAG_RSC_INFO: u8 = 4;
// ANCHOR_END: flags

// ANCHOR: gso_type
/// What kind of superframe this is, and so how to cut it into wire-size frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GsoType {
    /// An ordinary frame.
    None,
    /// A TCP over IPv4 superframe (TSO4): cut the TCP payload into `gso_size` pieces.
    TcpV4,
    /// The old UDP fragmentation offload (UFO): one datagram cut into IP fragments.
    /// Linux no longer produces it.
    Udp,
    /// A TCP over IPv6 superframe (TSO6).
    TcpV6,
    /// A UDP superframe (USO, Linux 6.2 and later): every `gso_size` bytes of payload
    /// become a datagram of their own, with its own UDP header.
    UdpL4,
    Unknown(u8),
}

/// The ECN bit ORed into `gso_type`: the TCP flow uses ECN, so CWR goes on the first
/// segment only.
pub const GSO_ECN: u8 = 0x80;

impl From<u8> for GsoType {
    fn from(value: u8) -> Self {
        match value & !GSO_ECN {
            0 => GsoType::None,
            1 => GsoType::TcpV4,
            3 => GsoType::Udp,
            4 => GsoType::TcpV6,
            5 => GsoType::UdpL4,
            other => GsoType::Unknown(other),
        }
    }
}

impl From<GsoType> for u8 {
    fn from(value: GsoType) -> Self {
        match value {
            GsoType::None => 0,
            GsoType::TcpV4 => 1,
            GsoType::Udp => 3,
            GsoType::TcpV6 => 4,
            GsoType::UdpL4 => 5,
            GsoType::Unknown(other) => other,
        }
    }
}
// ANCHOR_END: gso_type

/// A view of a virtio-net header (10 or 12 bytes, as the buffer's length says).
#[derive(Debug, Clone)]
pub struct VirtioNetHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VirtioNetHeader<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        VirtioNetHeader { buffer }
    }

    // ANCHOR: new_checked
    /// Checks, once, that the buffer is exactly one header (10 or 12 bytes), that no
    /// flag or GSO type we do not know is set, and that a checksum request points inside
    /// the 64 KiB a frame can have. Whether `csum_start` lies within *this* frame is for
    /// the code holding the frame to check ([`crate::segment`] does).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let header = VirtioNetHeader { buffer };
        let len = header.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if len != HEADER_LEN && len != HEADER_LEN_MRG_RXBUF {
            return Err(Error::BadLength);
        }
        if header.flags() & !(FLAG_NEEDS_CSUM | FLAG_DATA_VALID) != 0 {
            return Err(Error::Unsupported);
        }
        if let GsoType::Unknown(_) = header.gso_type() {
            return Err(Error::Unsupported);
        }
        if header.gso_type() != GsoType::None && header.gso_size() == 0 {
            return Err(Error::BadLength);
        }
        Ok(header)
    }
    // ANCHOR_END: new_checked

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn le16(&self, range: std::ops::Range<usize>) -> u16 {
        u16::from_le_bytes(bytes::read(self.buffer.as_ref(), range))
    }

    pub fn flags(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), field::FLAGS)
    }

    pub fn needs_csum(&self) -> bool {
        self.flags() & FLAG_NEEDS_CSUM != 0
    }

    pub fn data_valid(&self) -> bool {
        self.flags() & FLAG_DATA_VALID != 0
    }

    pub fn gso_type(&self) -> GsoType {
        GsoType::from(self.raw_gso_type())
    }

    /// `gso_type` as the byte holds it, with the ECN bit.
    pub fn raw_gso_type(&self) -> u8 {
        bytes::read_u8(self.buffer.as_ref(), field::GSO_TYPE)
    }

    pub fn gso_ecn(&self) -> bool {
        self.raw_gso_type() & GSO_ECN != 0
    }

    /// A hint for how many bytes to copy into the first buffer. On receive, the Linux
    /// TAP fills in the length of the socket buffer's linear part, which is often more
    /// than the headers: do not use it to find the payload.
    pub fn hdr_len(&self) -> u16 {
        self.le16(field::HDR_LEN)
    }

    /// The payload bytes per segment (the MSS for TCP), when `gso_type` is not `None`.
    pub fn gso_size(&self) -> u16 {
        self.le16(field::GSO_SIZE)
    }

    /// Where the checksummed part begins, counted from the start of the Ethernet frame.
    pub fn csum_start(&self) -> u16 {
        self.le16(field::CSUM_START)
    }

    /// Where, counted from `csum_start`, the checksum goes: 6 for UDP, 16 for TCP.
    pub fn csum_offset(&self) -> u16 {
        self.le16(field::CSUM_OFFSET)
    }

    /// Only in the 12-byte form; `None` for a 10-byte header.
    pub fn num_buffers(&self) -> Option<u16> {
        (self.buffer.as_ref().len() >= HEADER_LEN_MRG_RXBUF).then(|| self.le16(field::NUM_BUFFERS))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VirtioNetHeader<T> {
    fn set_le16(&mut self, range: std::ops::Range<usize>, value: u16) {
        bytes::write(self.buffer.as_mut(), range, value.to_le_bytes());
    }

    pub fn set_flags(&mut self, value: u8) {
        bytes::write_u8(self.buffer.as_mut(), field::FLAGS, value);
    }

    pub fn set_gso_type(&mut self, value: GsoType) {
        bytes::write_u8(self.buffer.as_mut(), field::GSO_TYPE, value.into());
    }

    pub fn set_hdr_len(&mut self, value: u16) {
        self.set_le16(field::HDR_LEN, value);
    }

    pub fn set_gso_size(&mut self, value: u16) {
        self.set_le16(field::GSO_SIZE, value);
    }

    pub fn set_csum_start(&mut self, value: u16) {
        self.set_le16(field::CSUM_START, value);
    }

    pub fn set_csum_offset(&mut self, value: u16) {
        self.set_le16(field::CSUM_OFFSET, value);
    }

    /// Does nothing on a 10-byte header.
    pub fn set_num_buffers(&mut self, value: u16) {
        self.set_le16(field::NUM_BUFFERS, value);
    }
}

/// The semantic view: what the header asks of whoever handles the frame after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VirtioNetRepr {
    pub needs_csum: bool,
    pub data_valid: bool,
    /// `gso_type` with the ECN bit removed (see `ecn`).
    pub gso_type: u8,
    pub ecn: bool,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VirtioNetRepr {
    pub fn parse<T: AsRef<[u8]>>(header: &VirtioNetHeader<T>) -> VirtioNetRepr {
        VirtioNetRepr {
            needs_csum: header.needs_csum(),
            data_valid: header.data_valid(),
            gso_type: u8::from(header.gso_type()),
            ecn: header.gso_ecn(),
            hdr_len: header.hdr_len(),
            gso_size: header.gso_size(),
            csum_start: header.csum_start(),
            csum_offset: header.csum_offset(),
        }
    }

    pub fn gso(&self) -> GsoType {
        GsoType::from(self.gso_type)
    }

    /// Writes the header (either length); `num_buffers`, if there, becomes 0.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut VirtioNetHeader<T>) {
        let mut flags = 0;
        if self.needs_csum {
            flags |= FLAG_NEEDS_CSUM;
        }
        if self.data_valid {
            flags |= FLAG_DATA_VALID;
        }
        header.set_flags(flags);
        let ecn = if self.ecn { GSO_ECN } else { 0 };
        bytes::write_u8(header.buffer.as_mut(), field::GSO_TYPE, self.gso_type | ecn);
        header.set_hdr_len(self.hdr_len);
        header.set_gso_size(self.gso_size);
        header.set_csum_start(self.csum_start);
        header.set_csum_offset(self.csum_offset);
        header.set_num_buffers(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_header_of_a_uso_superframe() {
        // The 12 bytes before an 8,054-byte superframe read from tap4 by
        // `09_offloads --pcap` with TUN_F_CSUM|TUN_F_TSO4|TUN_F_USO4, while a UDP socket in
        // the namespace sent 8,000 bytes with UDP_SEGMENT 1000 to 172.16.1.2:9000
        // (Linux 6.18): NEEDS_CSUM, gso_type 5, hdr_len 42, gso_size 1000, csum_start 34,
        // csum_offset 6.
        let bytes = [0x01, 0x05, 0x2a, 0x00, 0xe8, 0x03, 0x22, 0x00, 0x06, 0x00, 0x00, 0x00];
        let header = VirtioNetHeader::new_checked(&bytes[..]).unwrap();
        assert!(header.needs_csum());
        assert!(!header.data_valid());
        assert_eq!(header.gso_type(), GsoType::UdpL4);
        assert_eq!(header.hdr_len(), 42);
        assert_eq!(header.gso_size(), 1000);
        assert_eq!(header.csum_start(), 34);
        assert_eq!(header.csum_offset(), 6);
        assert_eq!(header.num_buffers(), Some(0));

        let short = VirtioNetHeader::new_checked(&bytes[..10]).unwrap();
        assert_eq!(short.num_buffers(), None);
        assert_eq!(VirtioNetRepr::parse(&short), VirtioNetRepr::parse(&header));
    }

    #[test]
    fn emit_writes_every_byte() {
        let repr = VirtioNetRepr {
            needs_csum: true,
            data_valid: false,
            gso_type: GsoType::TcpV4.into(),
            ecn: true,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut buf = [0xa5u8; 12];
        repr.emit(&mut VirtioNetHeader::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [0x01, 0x81, 66, 0, 0xa8, 0x05, 34, 0, 16, 0, 0, 0]);
        let header = VirtioNetHeader::new_checked(&buf[..]).unwrap();
        assert_eq!(VirtioNetRepr::parse(&header), repr);
        assert!(header.gso_ecn());
        assert_eq!(header.gso_type(), GsoType::TcpV4);
    }

    #[test]
    fn rejects_what_it_cannot_handle() {
        for len in [0, 9, 11, 13] {
            assert!(VirtioNetHeader::new_checked(&[0u8; 13][..len]).is_err(), "{len}");
        }
        assert!(VirtioNetHeader::new_checked(&[0u8; 10][..]).is_ok());
        let mut bytes = [0u8; 10];
        bytes[0] = FLAG_RSC_INFO;
        assert_eq!(VirtioNetHeader::new_checked(&bytes[..]).unwrap_err(), Error::Unsupported);
        bytes[0] = 0;
        bytes[1] = 2; // a GSO type virtio never defined
        assert_eq!(VirtioNetHeader::new_checked(&bytes[..]).unwrap_err(), Error::Unsupported);
        bytes[1] = 5; // UDP_L4 with gso_size 0 would be a division by zero later
        assert_eq!(VirtioNetHeader::new_checked(&bytes[..]).unwrap_err(), Error::BadLength);
    }
}
