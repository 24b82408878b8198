//! Floor 1: how the five binaries meet their operators: output, signals, the command
//! line ([`command`]: global options, help, completions, man pages), messages on
//! stderr ([`log`]), failures ([`error`]) and the exit codes ([`exit`]).
//!
//! * **A closed pipe ends a tool quietly**, as it ends `ip link | head -1`: output goes
//!   through [`outln!`]/[`out!`]/[`errln!`]/[`err!`], which never panic; the first write that
//!   fails with EPIPE marks the stream closed and later ones are dropped. Any other
//!   failure (a full disk) is said once on stderr and fails the run. The work goes on
//!   to its end — a command that changes the host is never stopped half-way by its
//!   reader going away — and [`finish`] then ends the process by SIGPIPE, as iproute2's
//!   tools end (status 141 in a shell).
//! * **SIGINT, SIGTERM and SIGHUP are taken at the end of the work** ([`init`]): the
//!   first one is noted and the run finishes (a demo tears its cloud down, an apply
//!   completes), then [`finish`] exits with 128 + the signal's number. A second one ends
//!   the process at once (the handler is reset after the first). A command that must
//!   react sooner (supervise) takes the signals itself.
//! * **The allocator is mimalloc** (without transparent huge pages), for every binary
//!   that links this crate: a `stackplumb plan` of 100 routers decodes and frees a few
//!   hundred thousand small netlink and nf_tables objects on three threads, and glibc's
//!   malloc and free were a seventh of its CPU. With huge pages, mimalloc's fresh
//!   memory was a 2 MiB page cleared at a time, an eighth of an apply (docs/stackplumb.md).

pub mod command;
pub mod error;
pub mod log;
pub mod time;

pub use command::Common;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::fmt;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" fn note(signal: libc::c_int) {
    SIGNALLED.store(signal, Ordering::SeqCst);
}

/// Installs the deferring handlers for SIGINT, SIGTERM and SIGHUP (see the crate docs).
/// Call first thing in `main`.
pub fn init() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a plain sigaction with an async-signal-safe handler (an atomic store).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = note as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART | libc::SA_RESETHAND;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(signal, &sa, std::ptr::null_mut());
        }
    }
}

/// The termination signal received, if any.
pub fn signalled() -> Option<i32> {
    match SIGNALLED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Whether standard output has been closed by its reader.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::SeqCst)
}

/// A write to standard output failed for another reason than a gone reader (a full
/// disk, EIO): said once on stderr, and the run fails.
static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);

fn write(closed: &AtomicBool, w: &mut dyn Write, args: fmt::Arguments) -> std::io::Result<()> {
    if closed.load(Ordering::SeqCst) {
        return Ok(());
    }
    match w.write_fmt(args).and_then(|()| w.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            closed.store(true, Ordering::SeqCst);
            Ok(())
        }
        other => other,
    }
}

/// Writes to standard output; see [`outln!`].
pub fn write_out(args: fmt::Arguments) {
    if let Err(e) = write(&STDOUT_CLOSED, &mut std::io::stdout().lock(), args) {
        if !STDOUT_FAILED.swap(true, Ordering::SeqCst) {
            write_err(format_args!(
                "standard output: {e}; the rest of the output is lost\n"
            ));
        }
    }
}

/// Writes to standard error; see [`errln!`]. A failing stderr has nowhere to be told.
pub fn write_err(args: fmt::Arguments) {
    let _ = write(&STDERR_CLOSED, &mut std::io::stderr().lock(), args);
}

/// `println!` that never panics: a closed standard output drops the line.
#[macro_export]
macro_rules! outln {
    () => { $crate::write_out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that never panics.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::write_out(format_args!($($arg)*)) };
}

/// `eprint!` that never panics.
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => { $crate::write_err(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    () => { $crate::write_err(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::write_err(format_args!("{}\n", format_args!($($arg)*))) };
}

/// The end of a run: by SIGPIPE when standard output was closed, with 128 + the signal
/// when a termination signal came, else with `code`.
pub fn finish(code: ExitCode) -> ExitCode {
    if stdout_closed() {
        // SAFETY: restore SIGPIPE's default action and raise it: the process ends here
        // as a C tool writing to a closed pipe would.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::raise(libc::SIGPIPE);
        }
    }
    match signalled() {
        Some(s) => ExitCode::from(128u8.saturating_add(u8::try_from(s).unwrap_or(127))),
        None if STDOUT_FAILED.load(Ordering::SeqCst) => ExitCode::FAILURE,
        None => code,
    }
}

/// Ends the process now with `code`: by SIGPIPE when standard output was closed (as
/// [`finish`]), with 1 when writing to it failed otherwise.
pub fn exit_now(code: u8) -> ! {
    let _ = finish(ExitCode::SUCCESS);
    std::process::exit(match STDOUT_FAILED.load(Ordering::SeqCst) {
        true => exit::FAILURE.into(),
        false => code.into(),
    })
}

/// The exit codes of the five tools (docs/exit-codes.md), one table for all.
pub mod exit {
    /// Done; converged; nothing found wrong.
    pub const SUCCESS: u8 = 0;
    /// The operation failed (what was done and what was not is reported).
    pub const FAILURE: u8 = 1;
    /// Bad arguments or input files (topology, configuration): nothing was changed.
    pub const USAGE: u8 = 2;
    /// Problems found (`status`, `netns-inspect --check`) at error level.
    pub const PROBLEMS: u8 = 3;
    /// Not converged: `plan --detailed-exitcode` with actions pending, `status` with
    /// differences, an `apply` that left some.
    pub const DIFFERS: u8 = 4;
    /// Another run held the lock past `--lock-timeout`.
    pub const LOCKED: u8 = 5;
    /// Needs root or a capability the process lacks: nothing was changed.
    pub const PRIVILEGE: u8 = 6;

    /// The table as every tool's `--help` and man page end with it.
    pub const TABLE: &str = "  0  success; converged; nothing found wrong
  1  the operation failed (what was done and what was not is said)
  2  usage or invalid input: nothing was changed
  3  problems found at error level
  4  not converged: changes pending, or left by an apply
  5  another run held the lock past --lock-timeout
  6  needs root or a capability the process lacks: nothing was changed";
}
