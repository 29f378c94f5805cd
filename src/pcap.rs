//! Chapter 5: writing every frame read and written to a classic pcap file, which tshark,
//! tcpdump and Wireshark open (`tshark -r replies.pcap`).
//!
//! The format (from libpcap's `pcap-savefile(5)`): a 24-byte file header, then for each
//! frame a 16-byte record header (seconds, microseconds, captured length, original
//! length) followed by the frame's bytes. We write in the machine's byte order, as
//! libpcap does; readers recognise it by the magic number.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

const MAGIC_MICROSECONDS: u32 = 0xa1b2_c3d4;
const VERSION_MAJOR: u16 = 2;
const VERSION_MINOR: u16 = 4;
/// The largest frame we will ever record (see [`crate::tap::FRAME_BUFFER_LEN`]).
const SNAPLEN: u32 = crate::tap::FRAME_BUFFER_LEN as u32;
/// LINKTYPE_ETHERNET: every record starts with an Ethernet header.
const LINKTYPE_ETHERNET: u32 = 1;

// ANCHOR: pcap
/// Writes frames to a pcap stream. Give it a `BufWriter`: records are small.
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut header = [0u8; 24];
        header[0..4].copy_from_slice(&MAGIC_MICROSECONDS.to_ne_bytes());
        header[4..6].copy_from_slice(&VERSION_MAJOR.to_ne_bytes());
        header[6..8].copy_from_slice(&VERSION_MINOR.to_ne_bytes());
        // 8..16: time zone offset and timestamp accuracy, both zero by convention.
        header[16..20].copy_from_slice(&SNAPLEN.to_ne_bytes());
        header[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
        out.write_all(&header)?;
        Ok(PcapWriter { out })
    }

    /// Appends one frame, stamped with `when`.
    pub fn write_frame(&mut self, frame: &[u8], when: SystemTime) -> io::Result<()> {
        let since_epoch = when.duration_since(UNIX_EPOCH).unwrap_or_default();
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let mut record = [0u8; 16];
        // Classic pcap stores 32-bit seconds: good until 2106.
        record[0..4].copy_from_slice(&(since_epoch.as_secs() as u32).to_ne_bytes());
        record[4..8].copy_from_slice(&since_epoch.subsec_micros().to_ne_bytes());
        record[8..12].copy_from_slice(&len.to_ne_bytes());
        record[12..16].copy_from_slice(&len.to_ne_bytes());
        self.out.write_all(&record)?;
        self.out.write_all(frame)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
// ANCHOR_END: pcap

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn writes_the_header_and_records_libpcap_expects() {
        let mut pcap = PcapWriter::new(Vec::new()).unwrap();
        let when = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_000);
        pcap.write_frame(&[0xaa; 42], when).unwrap();
        let bytes = pcap.out;
        assert_eq!(bytes.len(), 24 + 16 + 42);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 0xa1b2c3d4);
        assert_eq!(u32::from_ne_bytes(bytes[20..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(bytes[24..28].try_into().unwrap()), 1_700_000_000);
        assert_eq!(u32::from_ne_bytes(bytes[28..32].try_into().unwrap()), 123_456);
        assert_eq!(u32::from_ne_bytes(bytes[32..36].try_into().unwrap()), 42);
        assert_eq!(u32::from_ne_bytes(bytes[36..40].try_into().unwrap()), 42);
    }
}
