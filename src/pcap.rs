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
/// How many bytes of whole records we collect before writing them out: more than the
/// largest record, so that every record fits.
const BUFFER_LEN: usize = 128 * 1024;

/// Writes frames to a pcap stream. Records are collected in a buffer and reach `out` only
/// whole, never cut between their header and their bytes: however the program ends
/// (even by SIGKILL), the file holds whole records that tshark reads to the end.
pub struct PcapWriter<W: Write> {
    out: W,
    buffer: Vec<u8>,
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
        Ok(PcapWriter { out, buffer: Vec::with_capacity(BUFFER_LEN) })
    }

    /// Appends one frame, stamped with `when`.
    pub fn write_frame(&mut self, frame: &[u8], when: SystemTime) -> io::Result<()> {
        let since_epoch = when.duration_since(UNIX_EPOCH).unwrap_or_default();
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        // A frame is never longer than SNAPLEN (our read buffer); if one were, we would
        // record its first SNAPLEN bytes and its true length, as tcpdump -s does.
        let frame = &frame[..frame.len().min(SNAPLEN as usize)];
        let mut record = [0u8; 16];
        // Classic pcap stores 32-bit seconds: good until 2106.
        record[0..4].copy_from_slice(&(since_epoch.as_secs() as u32).to_ne_bytes());
        record[4..8].copy_from_slice(&since_epoch.subsec_micros().to_ne_bytes());
        record[8..12].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        record[12..16].copy_from_slice(&len.to_ne_bytes());
        if self.buffer.len() + record.len() + frame.len() > BUFFER_LEN {
            self.flush()?;
        }
        self.buffer.extend_from_slice(&record);
        self.buffer.extend_from_slice(frame);
        Ok(())
    }

    /// Writes out the records collected so far.
    pub fn flush(&mut self) -> io::Result<()> {
        let result = self.out.write_all(&self.buffer).and_then(|()| self.out.flush());
        self.buffer.clear();
        result
    }
}

impl<W: Write> Drop for PcapWriter<W> {
    /// Whatever ends the program, an error included, the records read so far are kept.
    fn drop(&mut self) {
        let _ = self.flush();
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
        pcap.flush().unwrap();
        let bytes = &pcap.out;
        assert_eq!(bytes.len(), 24 + 16 + 42);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 0xa1b2c3d4);
        assert_eq!(u32::from_ne_bytes(bytes[20..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_ne_bytes(bytes[24..28].try_into().unwrap()), 1_700_000_000);
        assert_eq!(u32::from_ne_bytes(bytes[28..32].try_into().unwrap()), 123_456);
        assert_eq!(u32::from_ne_bytes(bytes[32..36].try_into().unwrap()), 42);
        assert_eq!(u32::from_ne_bytes(bytes[36..40].try_into().unwrap()), 42);
    }

    /// Remembers where each `write` it was given ended.
    struct WriteEnds {
        written: usize,
        ends: Vec<usize>,
    }

    impl Write for WriteEnds {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written += buf.len();
            self.ends.push(self.written);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_write_ends_on_a_record_boundary() {
        // A program killed between two writes leaves a file tshark reads to the end only
        // if each write ended a record: a header written alone, its frame left in a
        // buffer, was the cut that SIGHUP used to leave.
        let mut pcap = PcapWriter::new(WriteEnds { written: 0, ends: Vec::new() }).unwrap();
        let sizes = [42, 98, 60, 1514, 9014, 65539, 342];
        let mut boundaries = vec![24];
        for round in 0..200 {
            let len = sizes[round % sizes.len()];
            pcap.write_frame(&vec![0x5a; len], SystemTime::now()).unwrap();
            boundaries.push(boundaries.last().unwrap() + 16 + len);
            if round % 37 == 0 {
                pcap.flush().unwrap();
            }
        }
        pcap.flush().unwrap();
        assert!(pcap.out.ends.len() > 10, "the buffer was never written out");
        assert_eq!(pcap.out.written, *boundaries.last().unwrap());
        for end in &pcap.out.ends {
            assert!(boundaries.contains(end), "a write ended at byte {end}, inside a record");
        }
    }
}
