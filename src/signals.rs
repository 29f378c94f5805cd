//! Ctrl-C, SIGTERM and SIGHUP as a request to stop, without races (chapter 5).
//!
//! The handler only sets a flag. The difficulty is the moment between checking the flag
//! and going to sleep: a signal arriving there would be noticed only when the next frame
//! comes. So we sleep in `ppoll`, which swaps in the signal mask *atomically* with the
//! sleep: the stop signals are blocked while we check the flag and unblocked only inside
//! `ppoll`, where their arrival interrupts the sleep with EINTR. We sleep there both for
//! the next frame ([`wait_readable`]) and for room in a full output pipe
//! ([`wait_writable`]), so no blocking call can keep a stop request waiting.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signal::{pthread_sigmask, sigaction};

static STOP: AtomicBool = AtomicBool::new(false);
static REPORT: AtomicBool = AtomicBool::new(false);

/// Ctrl-C, `kill` (and `systemctl stop`), and the terminal or ssh session going away.
const STOP_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

extern "C" fn request_stop(_signal: libc::c_int) {
    // Only async-signal-safe work in a handler: an atomic store is.
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn request_report(_signal: libc::c_int) {
    REPORT.store(true, Ordering::SeqCst);
}

fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in STOP_SIGNALS {
        set.add(signal);
    }
    set
}

// ANCHOR: install
/// Makes SIGINT (Ctrl-C), SIGTERM and SIGHUP set the stop flag instead of killing the
/// process. Without `SA_RESTART`, a blocking call interrupted by them returns EINTR.
///
/// A process inherits its signal mask from whoever started it, and a mask that blocks
/// SIGTERM would keep the request pending for ever: so we unblock the three.
///
/// Also gives SIGPIPE back its default action, which Rust's runtime sets to "ignore":
/// then `02_hexdump | head` ends quietly when `head` has read enough, like any Unix
/// filter, instead of reporting EPIPE as an error.
pub fn stop_on_signals() -> nix::Result<()> {
    let action =
        SigAction::new(SigHandler::Handler(request_stop), SaFlags::empty(), SigSet::empty());
    for signal in STOP_SIGNALS {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }?;
    }
    pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&stop_signals()), None)?;
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: restoring a default action installs no code of ours.
    unsafe { sigaction(Signal::SIGPIPE, &default) }?;
    Ok(())
}
// ANCHOR_END: install

/// Whether Ctrl-C, SIGTERM or SIGHUP has arrived since [`stop_on_signals`].
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

// ANCHOR: wait_readable
/// Sleeps until `fd` is readable (or has an error or hang-up to report) or a stop signal
/// arrives. Returns at once if a stop was already requested.
pub fn wait_readable(fd: BorrowedFd<'_>) -> nix::Result<()> {
    wait_until_ready(fd, PollFlags::POLLIN)
}

/// Sleeps until `fd` can take more output (or has an error or hang-up to report) or a
/// stop signal arrives. Returns at once if a stop was already requested.
pub fn wait_writable(fd: BorrowedFd<'_>) -> nix::Result<()> {
    wait_until_ready(fd, PollFlags::POLLOUT)
}

fn wait_until_ready(fd: BorrowedFd<'_>, events: PollFlags) -> nix::Result<()> {
    let mut previous = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&stop_signals()), Some(&mut previous))?;
    let result = if stop_requested() {
        Ok(())
    } else {
        let mut fds = [PollFd::new(fd, events)];
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

// ANCHOR: report_signal
/// Makes SIGUSR1 a request for a report (chapter 12: the switch prints its table), with
/// the same care as the stop signals: the handler sets a flag, and [`wait_any`] sleeps
/// with SIGUSR1 unblocked only inside `ppoll`.
///
/// Also ignores SIGPIPE, which [`stop_on_signals`] gave its default action: a program
/// that writes to sockets (a QEMU that went away) must get EPIPE, not be killed.
pub fn report_on_sigusr1() -> nix::Result<()> {
    let action =
        SigAction::new(SigHandler::Handler(request_report), SaFlags::empty(), SigSet::empty());
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGUSR1, &action) }?;
    let mut set = SigSet::empty();
    set.add(Signal::SIGUSR1);
    pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None)?;
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: ignoring a signal installs no code of ours.
    unsafe { sigaction(Signal::SIGPIPE, &ignore) }?;
    Ok(())
}

/// Whether SIGUSR1 arrived since the last call (the request is taken).
pub fn take_report_request() -> bool {
    REPORT.swap(false, Ordering::SeqCst)
}

/// Sleeps until one of `fds` is ready, or a stop signal or SIGUSR1 arrives (then
/// every `revents` is empty). Returns at once if a stop or a report is already due.
pub fn wait_any(fds: &mut [PollFd<'_>]) -> nix::Result<()> {
    let mut blocked = stop_signals();
    blocked.add(Signal::SIGUSR1);
    let mut previous = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), Some(&mut previous))?;
    let result = if stop_requested() || REPORT.load(Ordering::SeqCst) {
        Ok(())
    } else {
        match ppoll(fds, None, Some(previous)) {
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(errno) => Err(errno),
        }
    };
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None)?;
    result
}
// ANCHOR_END: report_signal
