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

/// Every process, by whether its network namespace could be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Processes and their namespaces, by pid.
    pub procs: Vec<ProcNet>,
    /// Processes whose namespace link this process may not read (another user's, without
    /// CAP_SYS_PTRACE — a container's default), by pid.
    pub hidden: Vec<i32>,
}

/// One pass over `/proc`. Processes that vanish during the scan and kernel threads
/// without a namespace link are left out; unreadable ones are [`Scan::hidden`].
pub fn scan() -> Scan {
    let mut out = Scan::default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        match NsId::of_path(&Path::new("/proc").join(pid.to_string()).join("ns/net")) {
            Ok(netns) => out.procs.push(ProcNet { pid, netns }),
            Err(crate::Error::NotPermitted { .. }) => out.hidden.push(pid),
            Err(_) => {}
        }
    }
    out.procs.sort_by_key(|p| p.pid);
    out.hidden.sort();
    out
}

/// What `pid`'s `--pid-file=` argument names, when the process runs with one (dnsmasq
/// does, as Neutron starts it), that file holds `pid`, and it can be trusted: an absolute
/// path to a regular file (not a symlink, not a FIFO or device — read without blocking)
/// owned by root or by the process's user (dnsmasq hands it to the user it drops to), in
/// a directory of root's that nobody else may write. How a process is placed when its
/// namespace link cannot be read.
pub fn pid_file_of(pid: i32) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let argv = command_line(pid)?;
    let file = Path::new(argv.iter().find_map(|a| a.strip_prefix("--pid-file="))?);
    let md = std::fs::symlink_metadata(file).ok()?;
    let dir = std::fs::symlink_metadata(file.parent()?).ok()?;
    let owner_ok = md.uid() == 0 || real_uid(pid) == Some(md.uid());
    let dir_ok = dir.is_dir() && dir.uid() == 0 && dir.mode() & 0o022 == 0;
    if !file.is_absolute() || !md.file_type().is_file() || !owner_ok || !dir_ok || md.len() > 32 {
        return None;
    }
    let held: i32 = crate::files::read_config(file).ok()?.trim().parse().ok()?;
    (held == pid).then(|| file.into())
}

/// Whether a command line is dnsmasq's (`dnsmasq` or a path ending in it).
pub fn is_dnsmasq(argv: &[String]) -> bool {
    argv.first()
        .and_then(|a| a.rsplit('/').next())
        .is_some_and(|b| b == "dnsmasq")
}

/// The real user id `pid` runs as (`/proc/PID/status`, readable without CAP_SYS_PTRACE).
pub fn real_uid(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The user id of user `name` in `/etc/passwd`.
pub fn user_uid(name: &str) -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// Whether `pid` runs as the user dnsmasq drops to: its `--user=` argument, else
/// `nobody` (dnsmasq's default). A process of another user with a copied command line is
/// not taken for it.
/// Anything but dnsmasq is turned down on its command line alone, before `/etc/passwd` is
/// read (a host may hide thousands of processes).
pub fn runs_as_dnsmasq_user(pid: i32) -> bool {
    let Some(argv) = command_line(pid) else {
        return false;
    };
    if !is_dnsmasq(&argv) {
        return false;
    }
    let user = argv
        .iter()
        .find_map(|a| a.strip_prefix("--user="))
        .unwrap_or("nobody");
    user_uid(user).is_some_and(|u| real_uid(pid) == Some(u))
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

/// SIGKILLs process `pid` and waits (up to `timeout`) until it has ended, so the
/// sockets and files it held are free. The signal goes through a pidfd opened first,
/// and the wait is on that pidfd: both reach the one process the pid named then,
/// never one that took its number since, and the wait ends the moment it exits (no
/// polling of `/proc`). A pid with no process is already ended: `Ok`.
pub fn kill_and_wait(pid: u32, timeout: std::time::Duration) -> std::io::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::{AsFd, AsRawFd};
    let fd = match pidfd(pid) {
        Ok(fd) => fd,
        Err(crate::Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => {
            return Ok(())
        }
        Err(e) => return Err(std::io::Error::other(e.to_string())),
    };
    // SAFETY: pidfd_send_signal takes a pidfd, a signal, a null siginfo and flags 0.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if sent < 0 {
        let e = std::io::Error::last_os_error();
        // Ended between the open and the signal.
        return if e.raw_os_error() == Some(libc::ESRCH) {
            Ok(())
        } else {
            Err(e)
        };
    }
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(0) => Err(std::io::Error::other(format!(
            "still running {} ms after SIGKILL",
            timeout.as_millis()
        ))),
        Ok(_) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The inodes of the sockets process `pid` holds (`/proc/PID/fd/*` → `socket:[N]`);
/// `None` when its descriptors cannot be read (it is gone, or it holds capabilities
/// this process lacks — `/proc/PID/fd` takes ptrace access then, CAP_SYS_PTRACE).
pub fn socket_inodes(pid: u32) -> Option<std::collections::BTreeSet<u64>> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut inodes = std::collections::BTreeSet::new();
    for e in dir.flatten() {
        match std::fs::read_link(e.path()) {
            Ok(l) => {
                let inode = l
                    .to_str()
                    .and_then(|l| l.strip_prefix("socket:[")?.strip_suffix(']'))
                    .and_then(|n| n.parse::<u64>().ok());
                inodes.extend(inode);
            }
            // The directory lists, its links do not read: hidden, not empty.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return None,
            // Closed since the listing.
            Err(_) => {}
        }
    }
    Some(inodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn kill_and_wait_returns_once_the_process_has_ended() {
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .expect("sleep");
        let t = Instant::now();
        kill_and_wait(child.id(), Duration::from_secs(5)).unwrap();
        // Ended (a zombie of ours until reaped): the kernel says SIGKILL ended it.
        let status = child
            .try_wait()
            .unwrap()
            .expect("ended before kill_and_wait returned");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }
}
