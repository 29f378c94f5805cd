//! The programs' own output (the terminal, a pipe, a log file, the pcap file), written so
//! that it can neither panic nor keep a stop request waiting (chapter 5).
//!
//! `println!` panics when standard output fails (`> /dev/full`, a full disk, a
//! non-blocking pipe that says EAGAIN), and it sleeps inside `write(2)` for as long as a
//! pipe stays full: std retries the write that a signal interrupted, so Ctrl-C is never
//! seen. [`Output`] returns every error instead, and never sleeps inside `write`: it sleeps
//! in `ppoll` until the stream can take more ([`signals::wait_writable`]), where a stop
//! signal reaches it, and then writes no more than the stream is sure to take at once.
//!
//! After a stop request, output that a stream does not take within [`GRACE`] is dropped:
//! the program can then finish, and print its counters wherever they can still go
//! ([`print_last`]).

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::{SFlag, fstat};

use crate::signals;

/// How long a stream may still take to accept our output once a stop was requested: time
/// enough for a reader that is alive (`| tee`, `| less` scrolling) to catch up, short
/// enough that a stop never waits on one that is not.
pub const GRACE: Duration = Duration::from_millis(200);

// ANCHOR: output
/// Writes to a file descriptor: standard output or error, or a file we opened.
pub struct Output<F: AsFd> {
    fd: F,
    /// What the stream is, for error messages: "standard output", a file name.
    name: String,
    /// A regular file never makes a writer wait; a pipe, a terminal or a socket may.
    may_block: bool,
    /// Set once a stop was requested: the moment we stop waiting for this stream.
    deadline: Option<Instant>,
    /// The stream did not take our output before the deadline: the rest is dropped.
    stalled: bool,
}

impl Output<io::Stdout> {
    pub fn stdout() -> Self {
        Output::new(io::stdout(), "standard output")
    }
}

impl Output<io::Stderr> {
    pub fn stderr() -> Self {
        Output::new(io::stderr(), "standard error")
    }
}

impl<F: AsFd> Output<F> {
    pub fn new(fd: F, name: impl Into<String>) -> Self {
        let may_block = fstat(fd.as_fd()).map_or(true, |stat| {
            (SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT) != SFlag::S_IFREG
        });
        Output { fd, name: name.into(), may_block, deadline: None, stalled: false }
    }

    /// Whether output was dropped because the stream did not take it after a stop request.
    pub fn stalled(&self) -> bool {
        self.stalled
    }

    /// Waits until the stream can take more. Before a stop request, for as long as it
    /// takes; after one, until the deadline: `false` means the stream has stalled.
    fn wait(&mut self) -> io::Result<bool> {
        if !signals::stop_requested() {
            signals::wait_writable(self.fd.as_fd()).map_err(|errno| self.error(errno))?;
            if !signals::stop_requested() {
                return Ok(true);
            }
        }
        let deadline = *self.deadline.get_or_insert_with(|| Instant::now() + GRACE);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            match poll(&mut [PollFd::new(self.fd.as_fd(), PollFlags::POLLOUT)], timeout) {
                Ok(0) => return Ok(false),
                Ok(_) => return Ok(true),
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(self.error(errno)),
            }
        }
    }

    fn error(&self, errno: Errno) -> io::Error {
        io::Error::new(
            io::Error::from(errno).kind(),
            format!("writing to {}: {} ({errno:?})", self.name, errno.desc()),
        )
    }
}

impl<F: AsFd> Write for Output<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            if self.stalled {
                return Ok(buf.len());
            }
            // After waiting for POLLOUT, a pipe takes PIPE_BUF bytes without blocking: a
            // write of more could sleep in the kernel for the rest.
            let len = if self.may_block { buf.len().min(libc::PIPE_BUF) } else { buf.len() };
            if self.may_block && !self.wait()? {
                self.stalled = true;
                continue;
            }
            match nix::unistd::write(self.fd.as_fd(), &buf[..len]) {
                Ok(written) => return Ok(written),
                // A signal, or a stream someone made non-blocking: wait and try again.
                Err(Errno::EINTR | Errno::EAGAIN) => continue,
                // Asked to stop, we drop what cannot be written instead of failing.
                Err(_) if signals::stop_requested() => self.stalled = true,
                Err(errno) => return Err(self.error(errno)),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(()) // nothing is buffered here
    }
}
// ANCHOR_END: output

/// Opens a pcap or log file for writing: created, or truncated if it exists.
///
/// Opening a FIFO for writing sleeps until some program opens it for reading, and std
/// retries the `open` a signal interrupts: a stop request would wait for ever. So we open
/// it non-blocking, which fails at once with ENXIO when nobody reads; the descriptor stays
/// non-blocking, which [`Output`] handles.
pub fn create(path: &std::path::Path) -> anyhow::Result<Output<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ENXIO) => anyhow::anyhow!(
                "{} is a FIFO that no program is reading (ENXIO).\n\
                 Fix: start the reader first (for example wireshark -k -i {0}), then this \
                 program.",
                path.display()
            ),
            _ => anyhow::Error::new(err).context(format!("creating {}", path.display())),
        })?;
    Ok(Output::new(file, path.display().to_string()))
}

// ANCHOR: print_last
/// Prints a program's last words (its counters) to standard output if it still takes
/// them, else to standard error: stopped behind a full pipe or on a full disk, the
/// counters still reach the terminal. Fails quietly when neither works.
pub fn print_last(text: fmt::Arguments<'_>) {
    let mut stdout = BufWriter::new(Output::stdout());
    let printed = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
    if printed.is_err() || stdout.get_ref().stalled() {
        let mut stderr = BufWriter::new(Output::stderr());
        let _ = writeln!(stderr, "{text}").and_then(|()| stderr.flush());
    }
}
// ANCHOR_END: print_last

/// Prints an error message on standard error, in one `write`, so that it is not
/// interleaved with other output. Nothing is left to tell if that fails too.
pub fn print_error(text: fmt::Arguments<'_>) {
    let mut stderr = BufWriter::new(Output::stderr());
    let _ = writeln!(stderr, "{text}").and_then(|()| stderr.flush());
}
