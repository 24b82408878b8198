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
