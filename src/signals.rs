//! Ctrl-C and SIGTERM as a request to stop, without races (chapter 5).
//!
//! The handler only sets a flag. The difficulty is the moment between checking the flag
//! and going to sleep: a signal arriving there would be noticed only when the next frame
//! comes. So we sleep in `ppoll`, which swaps in the signal mask *atomically* with the
//! sleep: the stop signals are blocked while we check the flag and unblocked only inside
//! `ppoll`, where their arrival interrupts the sleep with EINTR.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signal::{pthread_sigmask, sigaction};

static STOP: AtomicBool = AtomicBool::new(false);

const STOP_SIGNALS: [Signal; 2] = [Signal::SIGINT, Signal::SIGTERM];

extern "C" fn request_stop(_signal: libc::c_int) {
    // Only async-signal-safe work in a handler: an atomic store is.
    STOP.store(true, Ordering::SeqCst);
}

// ANCHOR: install
/// Makes SIGINT (Ctrl-C) and SIGTERM set the stop flag instead of killing the process.
/// Without `SA_RESTART`, a blocking call interrupted by them returns EINTR.
///
/// Also gives SIGPIPE back its default action, which Rust's runtime sets to "ignore":
/// then `02_hexdump | head` ends quietly when `head` has read enough, like any Unix
/// filter, instead of `println!` panicking on EPIPE.
pub fn stop_on_signals() -> nix::Result<()> {
    let action =
        SigAction::new(SigHandler::Handler(request_stop), SaFlags::empty(), SigSet::empty());
    for signal in STOP_SIGNALS {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }?;
    }
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: restoring a default action installs no code of ours.
    unsafe { sigaction(Signal::SIGPIPE, &default) }?;
    Ok(())
}
// ANCHOR_END: install

/// Whether Ctrl-C or SIGTERM has arrived since [`stop_on_signals`].
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

// ANCHOR: wait_readable
/// Sleeps until `fd` is readable (or has an error or hang-up to report) or a stop signal
/// arrives. Returns at once if a stop was already requested.
pub fn wait_readable(fd: BorrowedFd<'_>) -> nix::Result<()> {
    let mut stop_signals = SigSet::empty();
    for signal in STOP_SIGNALS {
        stop_signals.add(signal);
    }
    let mut previous = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&stop_signals), Some(&mut previous))?;
    let result = if stop_requested() {
        Ok(())
    } else {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        // Sleep with the mask we had before: the stop signals can only arrive in here.
        match ppoll(&mut fds, None, Some(previous)) {
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(errno) => Err(errno),
        }
    };
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None)?;
    result
}
// ANCHOR_END: wait_readable
