//! Chapter 11: the framing of QEMU's `-netdev stream` (and the older `-netdev socket`),
//! written over any `Read` and `Write` so that it can be tested without a socket.
//!
//! A stream socket carries bytes, not frames. QEMU puts each frame's length in front of
//! it, 4 bytes big-endian (`net/stream.c`: `uint32_t len = htonl(size)`, then the
//! frame), and reads them back with `net_fill_rstate` (`net/net.c`), which refuses a
//! length beyond its buffer, `NET_BUFSIZE`, and ends the connection:
//!
//! ```text
//! +---------------+------------------------+---------------+--------------
//! | length (BE32) | frame (length bytes)   | length (BE32) | frame ...
//! +---------------+------------------------+---------------+--------------
//! ```
//!
//! A `read` returns whatever the kernel has: half a length, three frames and a bit of a
//! fourth. [`StreamReader`] keeps the bytes until a frame is whole. A `write` to a
//! non-blocking socket may take part of a frame; [`StreamWriter`] keeps the rest and
//! sends it before anything else, or the peer would read our next frame's bytes as the
//! end of this one and never find a length again. (`-netdev dgram` needs none of this:
//! one datagram is one frame.)

use std::io::{self, IoSlice, Read, Write};

/// QEMU's `NET_BUFSIZE` (`include/net/net.h`: 4096 + 65536): the longest frame it sends
/// or accepts on a socket netdev.
pub const MAX_FRAME_LEN: usize = 4096 + 65536;

/// The length in front of each frame.
pub const LENGTH_LEN: usize = 4;

// ANCHOR: errors
/// Why a stream connection cannot go on.
#[derive(Debug)]
pub enum StreamError {
    /// A length beyond [`MAX_FRAME_LEN`]. QEMU ends the connection ("oversized packet
    /// received"); so do we: there is no telling where the next length is.
    Oversized(u32),
    /// The peer closed the connection in the middle of a frame: `have` of the `want`
    /// bytes (length included) had arrived.
    ClosedMidFrame { have: usize, want: usize },
    /// The peer closed the connection between two frames, as QEMU does when it quits.
    Closed,
    /// The socket failed.
    Io(io::Error),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Oversized(len) => {
                write!(f, "a frame of {len} bytes announced (QEMU's limit: {MAX_FRAME_LEN})")
            }
            StreamError::ClosedMidFrame { have, want } => {
                write!(f, "closed in the middle of a frame ({have} of {want} bytes)")
            }
            StreamError::Closed => write!(f, "it closed the connection"),
            StreamError::Io(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for StreamError {}
// ANCHOR_END: errors

/// What one [`StreamReader::fill`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Read this many bytes (0: interrupted by a signal, or the buffer holds a whole
    /// frame already: take it with [`StreamReader::next_frame`]).
    Read(usize),
    /// Nothing to read now (a non-blocking socket said EAGAIN).
    WouldBlock,
    /// The peer closed the connection between two frames: a clean end.
    Closed,
}

// ANCHOR: reader
/// Reassembles frames from a byte stream. The buffer holds one frame of the largest size
/// and its length; a frame is handed out as a slice of it, never copied.
pub struct StreamReader {
    buf: Box<[u8]>,
    /// The bytes not handed out yet are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Frames of length 0 skipped (QEMU would pass them on, and the NIC drop them).
    pub empty_frames: u64,
}

impl StreamReader {
    pub fn new() -> StreamReader {
        let buf = vec![0; LENGTH_LEN + MAX_FRAME_LEN].into_boxed_slice();
        StreamReader { buf, start: 0, end: 0, empty_frames: 0 }
    }

    /// Reads once from `src` into the free end of the buffer. Call [`next_frame`] until
    /// it says `None` after each fill: a whole frame left in the buffer leaves no room.
    ///
    /// [`next_frame`]: StreamReader::next_frame
    pub fn fill(&mut self, src: &mut impl Read) -> Result<Fill, StreamError> {
        // Move the unfinished frame to the front, to make room behind it.
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Ok(Fill::Read(0));
        }
        match src.read(&mut self.buf[self.end..]) {
            Ok(0) if self.end > 0 => Err(StreamError::ClosedMidFrame {
                have: self.end,
                want: self.wanted().unwrap_or(LENGTH_LEN),
            }),
            Ok(0) => Ok(Fill::Closed),
            Ok(n) => {
                self.end += n;
                Ok(Fill::Read(n))
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(Fill::WouldBlock),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(Fill::Read(0)),
            Err(err) => Err(StreamError::Io(err)),
        }
    }

    /// The next whole frame in the buffer, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, StreamError> {
        loop {
            let Some(want) = self.wanted() else { return Ok(None) };
            if want > LENGTH_LEN + MAX_FRAME_LEN {
                return Err(StreamError::Oversized((want - LENGTH_LEN) as u32));
            }
            if self.end - self.start < want {
                return Ok(None);
            }
            let frame = self.start + LENGTH_LEN..self.start + want;
            self.start += want;
            if frame.is_empty() {
                self.empty_frames += 1;
                continue;
            }
            return Ok(Some(&self.buf[frame]));
        }
    }

    /// The length of the next frame with its length field, once the field has arrived.
    fn wanted(&self) -> Option<usize> {
        let field = self.buf.get(self.start..self.start + LENGTH_LEN)?;
        if self.end - self.start < LENGTH_LEN {
            return None;
        }
        let len = u32::from_be_bytes(field.try_into().expect("the slice is LENGTH_LEN long"));
        Some(LENGTH_LEN + len as usize)
    }

    /// Bytes received but not handed out yet (an unfinished frame).
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }
}
// ANCHOR_END: reader

impl Default for StreamReader {
    fn default() -> Self {
        StreamReader::new()
    }
}

/// What [`StreamWriter::send`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The socket took all of it.
    Whole,
    /// The socket took part (or none) of it; the rest waits for [`StreamWriter::flush`].
    Queued,
    /// An earlier frame is still waiting: this one was dropped, as a switch drops what a
    /// busy port cannot take (QEMU, whose guest is not reading, would do the same).
    Dropped,
}

// ANCHOR: writer
/// Sends frames on a byte stream, each behind its length; keeps what a non-blocking
/// socket did not take, so that a frame is never cut.
#[derive(Default)]
pub struct StreamWriter {
    /// The unsent end of one frame (with its length), or nothing.
    pending: Vec<u8>,
}

impl StreamWriter {
    pub fn new() -> StreamWriter {
        StreamWriter::default()
    }

    /// Sends `frame` behind its length, in one `writev` when the socket takes it all.
    pub fn send(&mut self, dst: &mut impl Write, frame: &[u8]) -> io::Result<Sent> {
        if frame.len() > MAX_FRAME_LEN {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "frame too long for QEMU"));
        }
        if !self.flush(dst)? {
            return Ok(Sent::Dropped);
        }
        let length = (frame.len() as u32).to_be_bytes();
        let total = LENGTH_LEN + frame.len();
        let written = loop {
            match dst.write_vectored(&[IoSlice::new(&length), IoSlice::new(frame)]) {
                Ok(n) => break n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(err) => return Err(err),
            }
        };
        if written == total {
            return Ok(Sent::Whole);
        }
        // Keep the rest (the length's unsent bytes, then the frame's) and try it at once:
        // a writer may take one slice per call.
        let rest = length.iter().chain(frame).skip(written);
        self.pending.extend(rest);
        Ok(if self.flush(dst)? { Sent::Whole } else { Sent::Queued })
    }

    /// Sends what is still pending; `true` once nothing is (poll for writable if not).
    pub fn flush(&mut self, dst: &mut impl Write) -> io::Result<bool> {
        while !self.pending.is_empty() {
            match dst.write(&self.pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => drop(self.pending.drain(..n)),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) => return Err(err),
            }
        }
        Ok(true)
    }

    /// Whether part of a frame waits for the socket to take it.
    pub fn is_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}
// ANCHOR_END: writer

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::fixture;

    /// Gives its bytes out `step` at a time, then says WouldBlock once before each
    /// chunk after the first (as a non-blocking socket would), and finally end of file.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        step: usize,
        blocked: bool,
    }

    impl Trickle {
        fn new(bytes: Vec<u8>, step: usize) -> Trickle {
            Trickle { bytes, at: 0, step, blocked: true }
        }
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.blocked = !self.blocked;
            if self.blocked && self.at > 0 && self.at < self.bytes.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.step.min(buf.len()).min(self.bytes.len() - self.at);
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    /// Every frame `reader` gets out of `src` until it closes, or the error.
    fn read_all(src: &mut impl Read) -> (Vec<Vec<u8>>, Result<(), StreamError>) {
        let mut reader = StreamReader::new();
        let mut frames = Vec::new();
        loop {
            match reader.fill(src) {
                Ok(Fill::Closed) => return (frames, Ok(())),
                Ok(_) => {}
                Err(err) => return (frames, Err(err)),
            }
            loop {
                match reader.next_frame() {
                    Ok(Some(frame)) => frames.push(frame.to_vec()),
                    Ok(None) => break,
                    Err(err) => return (frames, Err(err)),
                }
            }
        }
    }

    fn framed(frames: &[&[u8]]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for frame in frames {
            bytes.extend((frame.len() as u32).to_be_bytes());
            bytes.extend(*frame);
        }
        bytes
    }

    #[test]
    fn frames_arrive_whole_whatever_the_reads_cut() {
        let arp = fixture!("arp_request_kernel");
        let ping = fixture!("icmp_echo_request_1472");
        let stream = framed(&[&arp, &ping, &arp]);
        for step in [1, 2, 3, 4, 5, 41, 42, 46, 1000, 100_000] {
            let (frames, end) = read_all(&mut Trickle::new(stream.clone(), step));
            assert!(end.is_ok(), "step {step}: {end:?}");
            assert_eq!(frames, vec![arp.clone(), ping.clone(), arp.clone()], "step {step}");
        }
    }

    #[test]
    fn the_bytes_qemu_sends_for_the_kernels_arp_request() {
        // The 42-byte request behind 00 00 00 2a, as strace shows QEMU's writev.
        let arp = fixture!("arp_request_kernel");
        let mut out = Vec::new();
        assert_eq!(StreamWriter::new().send(&mut out, &arp).unwrap(), Sent::Whole);
        assert_eq!(out[..4], [0x00, 0x00, 0x00, 0x2a]);
        assert_eq!(out[4..], arp[..]);
    }

    #[test]
    fn empty_frames_are_skipped_and_counted() {
        let arp = fixture!("arp_request_kernel");
        let stream = framed(&[&[], &arp, &[], &[]]);
        let mut src = Trickle::new(stream, 3);
        let mut reader = StreamReader::new();
        let mut frames = 0;
        while reader.fill(&mut src).unwrap() != Fill::Closed {
            while let Some(frame) = reader.next_frame().unwrap() {
                assert_eq!(frame, &arp[..]);
                frames += 1;
            }
        }
        assert_eq!((frames, reader.empty_frames), (1, 3));
    }

    #[test]
    fn an_oversized_length_ends_the_connection() {
        let arp = fixture!("arp_request_kernel");
        let mut stream = framed(&[&arp]);
        stream.extend(((MAX_FRAME_LEN + 1) as u32).to_be_bytes());
        stream.extend([0u8; 100]);
        let (frames, end) = read_all(&mut Trickle::new(stream, 7));
        assert_eq!(frames, vec![arp]);
        assert!(matches!(end, Err(StreamError::Oversized(n)) if n as usize == MAX_FRAME_LEN + 1));
        // The largest frame QEMU sends is fine.
        let big = vec![0x5a; MAX_FRAME_LEN];
        let (frames, end) = read_all(&mut Trickle::new(framed(&[&big]), 4096));
        assert!(end.is_ok());
        assert_eq!(frames, vec![big]);
        // 0xffffffff, as garbage would announce.
        let (_, end) = read_all(&mut Trickle::new(vec![0xff; 8], 8));
        assert!(matches!(end, Err(StreamError::Oversized(u32::MAX))));
    }

    #[test]
    fn a_peer_that_closes_mid_frame_is_reported() {
        let arp = fixture!("arp_request_kernel");
        let stream = framed(&[&arp, &arp]);
        // Cut inside the second frame's length, then inside its body.
        for (cut, have, want) in [(46 + 2, 2, 4), (46 + 10, 10, 46)] {
            let (frames, end) = read_all(&mut Trickle::new(stream[..cut].to_vec(), 5));
            assert_eq!(frames, vec![arp.clone()]);
            match end {
                Err(StreamError::ClosedMidFrame { have: h, want: w }) => {
                    assert_eq!((h, w), (have, want), "cut at {cut}")
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        // Closing between frames is a clean end.
        let (frames, end) = read_all(&mut Trickle::new(stream, 5));
        assert!(end.is_ok() && frames.len() == 2);
    }

    /// Takes `room` bytes, then says WouldBlock until `room` is raised.
    struct Narrow {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Narrow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.taken.extend(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_frame_the_socket_takes_in_part_is_finished_before_the_next() {
        let arp = fixture!("arp_request_kernel");
        let ping = fixture!("icmp_echo_request_56");
        for room in [0, 1, 3, 4, 5, 45] {
            let mut sock = Narrow { taken: Vec::new(), room };
            let mut writer = StreamWriter::new();
            assert_eq!(writer.send(&mut sock, &arp).unwrap(), Sent::Queued, "room {room}");
            assert!(writer.is_pending());
            // The socket is still full: the next frame is dropped, not interleaved.
            assert_eq!(writer.send(&mut sock, &ping).unwrap(), Sent::Dropped);
            sock.room = 1000;
            assert!(writer.flush(&mut sock).unwrap());
            assert_eq!(writer.send(&mut sock, &ping).unwrap(), Sent::Whole);
            // What went out reads back as exactly the two frames.
            let (frames, end) = read_all(&mut Trickle::new(sock.taken, 13));
            assert!(end.is_ok());
            assert_eq!(frames, vec![arp.clone(), ping.clone()], "room {room}");
        }
    }

    #[test]
    fn a_frame_qemu_would_refuse_is_not_sent() {
        let mut out = Vec::new();
        let err = StreamWriter::new().send(&mut out, &vec![0; MAX_FRAME_LEN + 1]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(out.is_empty());
    }
}
