//! Chapter 5: what the full responder does with each frame it has read, written once for
//! `05_full_responder`, the test that frames cost no allocation (`tests/no_alloc.rs`) and
//! the benchmark (`benches/per_frame.rs`), so that what those two measure is what the
//! program runs.
//!
//! Decide, count, record, send, print: `respond` decides (pure, in `respond`), the
//! counters count, the pcap file records the request whatever becomes of it and the
//! reply only once the kernel took it, and the summary lines go to a buffered output.
//! Sending is the caller's (a TAP, or nothing in a test), through a closure.

use std::io::{self, Write};
use std::time::SystemTime;

use crate::pcap::PcapWriter;
use crate::respond::{Counters, Host, Idents, Services, Timestamp, respond};
use crate::show::Summary;
use crate::tap::TapError;

/// Where a frame's traces go: the pcap file (`--pcap`), and the per-frame lines
/// (none with `--quiet`).
pub struct FrameLog<P: Write, W: Write> {
    pub pcap: Option<PcapWriter<P>>,
    pub out: W,
    pub quiet: bool,
}

impl<P: Write, W: Write> FrameLog<P, W> {
    /// Writes out what is buffered: called when there is nothing else to do.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.pcap.as_mut().map_or(Ok(()), PcapWriter::flush)
    }
}

/// What became of a reply handed to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The kernel took it.
    Taken,
    /// The kernel refused it because the interface went down between our read and our
    /// write: the reply is lost, as it would be on a real wire.
    Refused,
}

/// The state the full responder keeps from frame to frame.
pub struct Responder {
    pub host: Host,
    pub services: Services,
    pub idents: Idents,
    pub counters: Counters,
}

// ANCHOR: serve_frame
impl Responder {
    /// One frame read from the TAP: answer it (into `reply`, which the caller owns),
    /// count it, record it and describe it. `send` hands a reply to the kernel.
    pub fn serve_frame<P: Write, W: Write>(
        &mut self,
        request: &[u8],
        reply: &mut [u8],
        log: &mut FrameLog<P, W>,
        send: impl FnOnce(&[u8]) -> Result<Sent, TapError>,
    ) -> anyhow::Result<()> {
        let now = Timestamp::now();
        let outcome = respond(&self.host, self.services, &mut self.idents, now, request, reply);
        self.counters.record(&outcome);
        if let Some(pcap) = log.pcap.as_mut() {
            pcap.write_frame(request, SystemTime::now())?;
        }
        match outcome {
            Ok(answer) => {
                let reply = &reply[..answer.len()];
                if send(reply)? == Sent::Refused {
                    self.counters.record_refused(answer);
                    return Ok(());
                }
                if let Some(pcap) = log.pcap.as_mut() {
                    pcap.write_frame(reply, SystemTime::now())?;
                }
                if !log.quiet {
                    writeln!(log.out, "<- {}\n-> {}", Summary(request), Summary(reply))?;
                }
            }
            Err(reason) => {
                if !log.quiet {
                    writeln!(log.out, "<- {}\n   dropped: {reason}", Summary(request))?;
                }
            }
        }
        Ok(())
    }
}
// ANCHOR_END: serve_frame
