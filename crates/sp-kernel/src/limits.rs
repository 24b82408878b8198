//! The process's own limits, in one place: how many descriptors it may hold, and what
//! its children get back.

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
