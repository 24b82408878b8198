//! Processes and the network namespace each lives in, in one pass over `/proc`
//! (what `ip netns pids` does per namespace, done once for all of them).

use std::path::Path;

use crate::netns::NsId;

/// A process and the identity of its network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcNet {
    pub pid: i32,
    pub netns: NsId,
}

/// Every process whose network namespace could be read. Processes that vanish during
/// the scan, kernel threads without a namespace link and unreadable ones are left out.
pub fn scan() -> Vec<ProcNet> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<ProcNet> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let netns =
                NsId::of_path(&Path::new("/proc").join(pid.to_string()).join("ns/net")).ok()?;
            Some(ProcNet { pid, netns })
        })
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}

/// The command line of `pid` (`/proc/PID/cmdline`), or its `comm` in brackets for
/// kernel threads; `None` when the process is gone.
pub fn command_line(pid: i32) -> Option<Vec<String>> {
    let p = procfs::process::Process::new(pid).ok()?;
    match p.cmdline() {
        Ok(argv) if !argv.is_empty() => Some(argv),
        _ => p.stat().ok().map(|s| vec![format!("[{}]", s.comm)]),
    }
}

/// A descriptor that becomes readable once process `pid` has ended (`pidfd_open`) —
/// any process, not only a child of ours. A pid with no process fails with ESRCH.
pub fn pidfd(pid: u32) -> crate::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let pid = libc::pid_t::try_from(pid).map_err(|_| {
        crate::Error::io(
            format!("pidfd_open {pid}"),
            std::io::Error::from_raw_os_error(libc::ESRCH),
        )
    })?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(crate::Error::io(
            format!("pidfd_open {pid}"),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// The descriptor limits this process started with, when [`prepare_descriptors`] raised
/// them.
static STARTED_WITH: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();

/// The descriptor limits a child should get back (`netns::command_in` sets them between
/// fork and exec): the ones this process started with, if it raised its own.
pub fn inherited_descriptor_limit() -> Option<(u64, u64)> {
    STARTED_WITH.get().copied()
}

/// Readies this process to hold many descriptors — a run keeps three per namespace it
/// plugs (the namespace, two netlink sockets) — and must be called before it starts any
/// thread:
/// - the soft `RLIMIT_NOFILE` is raised to the hard one (Debian's default soft limit,
///   1024, is reached at some 340 router namespaces); children started in a namespace
///   get the original back ([`inherited_descriptor_limit`]);
/// - the descriptor table is grown now to 4096 slots (some 1300 namespaces' worth). The
///   kernel grows it by doubling, and while threads share it each growth waits for an
///   RCU grace period (`expand_fdtable`): that was 15–40 ms of a re-apply over 100
///   namespaces here, more right after namespaces were made.
///
/// Best effort: what cannot be done is left as it was.
pub fn prepare_descriptors() {
    const SLOTS: u64 = 4096;
    use nix::fcntl::{fcntl, FcntlArg};
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    use std::os::fd::{FromRawFd, OwnedFd};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let soft = match soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        true => {
            let _ = STARTED_WITH.set((soft, hard));
            hard
        }
        false => soft,
    };
    let Ok(highest) = i32::try_from(SLOTS.min(soft).saturating_sub(1)) else {
        return;
    };
    let Ok(null) = std::fs::File::open("/dev/null") else {
        return;
    };
    if let Ok(fd) = fcntl(&null, FcntlArg::F_DUPFD_CLOEXEC(highest)) {
        // SAFETY: a new descriptor, ours alone; closing it keeps the grown table.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}
