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
