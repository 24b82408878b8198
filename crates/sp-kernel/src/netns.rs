//! Network namespaces: identities, iproute2's named namespaces, entering on a thread.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statfs::{statfs, NSFS_MAGIC};

use crate::{Error, Result};

/// Where iproute2 keeps named network namespaces (`/var/run/netns` is the same on
/// systems where `/var/run` links to `/run`).
pub const RUN_DIR: &str = "/run/netns";
/// The legacy location, listed too when it is a different directory.
pub const VAR_RUN_DIR: &str = "/var/run/netns";
/// The network namespace of the calling *thread* (`/proc/self` names the process leader).
pub const THREAD_SELF: &str = "/proc/thread-self/ns/net";
/// The network namespace of PID 1: the host's root namespace.
pub const INIT: &str = "/proc/1/ns/net";
/// kthreadd's: every kernel thread lives in the initial network namespace, and its
/// link stays readable where PID 1's is not (an init that is not ptrace-readable).
pub const KTHREADD: &str = "/proc/2/ns/net";

/// The root network namespace and the file it is reachable through: that of PID 1,
/// or of kthreadd when PID 1's cannot be read. `None` when neither can (a container
/// with its own PID namespace and an unreadable init).
pub fn root() -> Option<(NsId, PathBuf)> {
    if let Ok(id) = NsId::of_path(INIT.as_ref()) {
        return Some((id, INIT.into()));
    }
    let comm = std::fs::read_to_string("/proc/2/comm").ok()?;
    if comm.trim() != "kthreadd" {
        return None;
    }
    NsId::of_path(KTHREADD.as_ref())
        .ok()
        .map(|id| (id, KTHREADD.into()))
}

/// The identity of a namespace: the nsfs inode (and its device), as `stat` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

impl NsId {
    /// Identity of the namespace file at `path` (`/run/netns/X`, `/proc/PID/ns/net`).
    pub fn of_path(path: &Path) -> Result<Self> {
        let md = std::fs::metadata(path)
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
        Ok(NsId {
            dev: md.dev(),
            ino: md.ino(),
        })
    }
}

/// An entry of `/run/netns`.
#[derive(Debug, Clone)]
pub struct NamedEntry {
    pub name: String,
    pub path: PathBuf,
    /// `Ok(id)` for a live namespace; `Err(reason)` for a stale file (what a crash between
    /// creating the file and bind-mounting the namespace on it, or a lazy unmount, leaves).
    pub state: std::result::Result<NsId, String>,
}

/// Lists the named namespaces in `/run/netns` and, when it is another directory,
/// `/var/run/netns`. A missing directory means no named namespaces.
pub fn list_named() -> Result<Vec<NamedEntry>> {
    let mut dirs = vec![PathBuf::from(RUN_DIR)];
    let run = std::fs::canonicalize(RUN_DIR).ok();
    if let Ok(var) = std::fs::canonicalize(VAR_RUN_DIR) {
        if Some(&var) != run.as_ref() {
            dirs.push(PathBuf::from(VAR_RUN_DIR));
        }
    }
    let mut out = Vec::new();
    for dir in dirs {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("read {}", dir.display()), e)),
        };
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(format!("read {}", dir.display()), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let state = named_state(&path);
            out.push(NamedEntry { name, path, state });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn named_state(path: &Path) -> std::result::Result<NsId, String> {
    match statfs(path) {
        Ok(fs) if fs.filesystem_type() == NSFS_MAGIC => {
            NsId::of_path(path).map_err(|e| e.to_string())
        }
        Ok(_) => Err("not a namespace (no namespace is mounted on this file)".to_owned()),
        Err(e) => Err(format!("cannot statfs: {e}")),
    }
}

/// Opens a namespace file (read-only, close-on-exec) for `setns` or `NETNSA_FD`.
pub fn open(path: &Path) -> Result<OwnedFd> {
    File::open(path)
        .map(OwnedFd::from)
        .map_err(|e| Error::io(format!("open namespace {}", path.display()), e))
}

/// Runs `f(i)` for every namespace `namespaces[i]` on a dedicated thread that has
/// entered that namespace, returning one result per namespace, in order. The threads
/// end afterwards, so no other thread — in particular no async runtime worker — ever
/// leaves its own namespace. Whatever `f` opens there (netlink sockets,
/// `/proc/sys/net` files) stays bound to that namespace. Many namespaces are shared
/// out over one thread per CPU, each taking the next one left.
pub fn run_in_each<N, T, F>(namespaces: &[N], f: F) -> Vec<Result<T>>
where
    N: AsFd + Sync,
    T: Send,
    F: Fn(usize) -> Result<T> + Send + Sync,
{
    run_in_each_while(namespaces, f, || ()).0
}

/// [`run_in_each`], while the calling thread runs `meanwhile` where it is (reading its
/// own namespace, say) instead of only waiting for the hop.
pub fn run_in_each_while<N, T, F, R>(
    namespaces: &[N],
    f: F,
    meanwhile: impl FnOnce() -> R,
) -> (Vec<Result<T>>, R)
where
    N: AsFd + Sync,
    T: Send,
    F: Fn(usize) -> Result<T> + Send + Sync,
{
    share_out(
        namespaces.len(),
        |i| {
            enter(namespaces[i].as_fd())
                .map_err(|e| Error::from_errno("enter network namespace (setns)", e))
                .and_then(|()| f(i))
        },
        meanwhile,
    )
}

/// Runs `each(i)` for every `i < count` on threads of their own (one per CPU at most,
/// and at least one: the calling thread never leaves its namespace), each taking the
/// next `i` left, so they finish together however uneven the items (or the CPU left
/// them by `meanwhile`, run meanwhile on the calling thread) are. Results in order.
fn share_out<T, R>(
    count: usize,
    each: impl Fn(usize) -> T + Sync,
    meanwhile: impl FnOnce() -> R,
) -> (Vec<T>, R)
where
    T: Send,
{
    /// Fewer items than this per thread are not worth another thread.
    const PER_THREAD: usize = 16;
    // Asked once per process: std reads /proc/self/cgroup and /proc/self/mountinfo
    // (for a CPU quota) each time, 0.2 ms on a host with a few hundred mounts, and an
    // apply hops about twenty times.
    static CPUS: OnceLock<usize> = OnceLock::new();
    let cpus = *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let threads = (count / PER_THREAD).clamp(1, cpus);
    let next = AtomicUsize::new(0);
    let (each, next) = (&each, &next);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break done;
                        }
                        done.push((i, each(i)));
                    }
                })
            })
            .collect();
        let here = meanwhile();
        let mut results: Vec<(usize, T)> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("namespace thread panicked"))
            .collect();
        results.sort_unstable_by_key(|(i, _)| *i);
        (results.into_iter().map(|(_, r)| r).collect(), here)
    })
}

/// Makes `/run/netns` exist and be a shared mount point, as `ip netns add` does, so
/// namespaces we mount there are seen by iproute2 in every mount namespace that shares
/// it — and theirs by us.
fn prepare_run_dir() -> Result<()> {
    std::fs::create_dir_all(RUN_DIR).map_err(|e| Error::io(format!("create {RUN_DIR}"), e))?;
    let shared = |what: &str| {
        mount(
            Some(""),
            RUN_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| Error::from_errno(format!("{what} {RUN_DIR}"), e))
    };
    match shared("make shared") {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself first (iproute2 does the same).
        Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {
            mount(
                Some(RUN_DIR),
                RUN_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| Error::from_errno(format!("bind {RUN_DIR} onto itself"), e))?;
            shared("make shared")
        }
        Err(e) => Err(e),
    }
}

/// The file of named namespace `name`.
pub fn named_path(name: &str) -> Result<PathBuf> {
    sp_names::NsName::check(name)?;
    Ok(Path::new(RUN_DIR).join(name))
}

/// Creates named network namespaces the way `ip netns add` does — a file in
/// `/run/netns` with the new namespace bind-mounted on it — on threads of their own (one
/// per CPU for many names, as [`run_in_each`]), and runs `f(i)` *inside* namespace
/// `names[i]` right after creating it (open a netlink socket, set sysctls), so no second
/// hop is needed. A name that exists fails with EEXIST for that entry; a failure (of `f`
/// too) leaves no file behind. The outer error is for an unusable `/run/netns`.
pub fn create_each<T, F>(names: &[&str], f: F) -> Result<Vec<Result<T>>>
where
    T: Send,
    F: Fn(usize) -> Result<T> + Send + Sync,
{
    prepare_run_dir()?;
    let (made, ()) = share_out(
        names.len(),
        |i| {
            create_here(names[i])?;
            // A namespace whose `f` failed is not left behind either.
            f(i).inspect_err(|_| {
                let _ = delete(names[i]);
            })
        },
        || (),
    );
    Ok(made)
}

/// On the calling (dedicated) thread: a new network namespace, mounted at `name`.
fn create_here(name: &str) -> Result<()> {
    let path = named_path(name)?;
    // A stale entry (a run killed between creating the file and mounting the namespace
    // on it) is finished: removed, then made anew.
    if named_state(&path).is_err() && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        std::fs::remove_file(&path)
            .map_err(|e| Error::io(format!("remove stale {}", path.display()), e))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
    let made = unshare(CloneFlags::CLONE_NEWNET)
        .inspect(|()| moved())
        .map_err(|e| Error::from_errno("create network namespace (unshare)", e))
        .and_then(|()| {
            mount(
                Some(THREAD_SELF),
                &path,
                Some("none"),
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| {
                Error::from_errno(format!("bind-mount namespace on {}", path.display()), e)
            })
        });
    if made.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    made
}

/// Deletes named namespace `name` as `ip netns delete` does: lazy unmount, then unlink.
/// The kernel frees the namespace (and every link in it) once nothing else holds it.
pub fn delete(name: &str) -> Result<()> {
    let path = named_path(name)?;
    match umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(Error::from_errno(format!("unmount {}", path.display()), e)),
    }
    std::fs::remove_file(&path).map_err(|e| Error::io(format!("remove {}", path.display()), e))
}

/// Puts the calling thread (and the threads and processes it starts afterwards) into a
/// new network namespace and a private mount namespace whose `/run/netns` is an empty
/// tmpfs and whose `/sys` is a fresh sysfs showing this namespace's devices (to the
/// tools started inside: `ip`, dnsmasq): a sandbox whose named namespaces, links and
/// mounts vanish with the process, and from which the host's interfaces cannot be
/// changed. The demo runs in one; so does every root test (`sp_testenv::sandbox`).
pub fn enter_sandbox() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS)
        .map_err(|e| Error::from_errno("enter a sandbox (unshare)", e))?;
    moved();
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::from_errno("make / private in the sandbox", e))?;
    std::fs::create_dir_all(RUN_DIR).map_err(|e| Error::io(format!("create {RUN_DIR}"), e))?;
    mount(
        Some("tmpfs"),
        RUN_DIR,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0755"),
    )
    .map_err(|e| Error::from_errno(format!("tmpfs on {RUN_DIR} in the sandbox"), e))?;
    mount(
        Some("sysfs"),
        "/sys",
        Some("sysfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| Error::from_errno("mount a fresh sysfs on /sys in the sandbox", e))
}

/// Makes `cmd` run inside named namespace `name`: the child enters it between fork and
/// exec (what `ip netns exec` does, without the extra process and the slave mount
/// namespace — a process started this way sees the same `/run/netns` as we do).
pub fn command_in(cmd: &mut std::process::Command, name: &str) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let ns = open(&named_path(name)?)?;
    let limit = crate::limits::inherited_descriptor_limit();
    // SAFETY: setns and setrlimit are async-signal-safe; nothing else runs between fork
    // and exec.
    unsafe {
        cmd.pre_exec(move || {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            // The soft descriptor limit this process started with, not the one it raised
            // for itself (programs that close or select() up to it expect the usual).
            if let Some((soft, hard)) = limit {
                use nix::sys::resource::{setrlimit, Resource};
                setrlimit(Resource::RLIMIT_NOFILE, soft, hard)?;
            }
            Ok(())
        });
    }
    Ok(())
}

/// Whether `/proc/sys/net` can be written here (a container's default mounts `/proc/sys`
/// read-only): `Err` says how to run the container instead. Checked with `access(2)`,
/// which answers EROFS for a read-only mount without writing anything.
pub fn check_net_sysctl_writable() -> Result<()> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    match nix::unistd::access(path, nix::unistd::AccessFlags::W_OK) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EROFS) => Err(Error::io(
            "/proc/sys is read-only here (a container's default): run the container \
             with --privileged, or with --security-opt unmask=/proc/sys (podman) or \
             --security-opt systempaths=unconfined (docker)",
            std::io::Error::from_raw_os_error(libc::EROFS),
        )),
        Err(e) => Err(Error::from_errno(format!("access {path}"), e)),
    }
}

thread_local! {
    /// `/proc/sys/net` of the namespace this thread is in, opened at its first sysctl
    /// there ([`in_net_sysctls`]); forgotten when the thread moves ([`moved`]).
    static NET_SYSCTLS: std::cell::RefCell<Option<NetSysctls>> =
        const { std::cell::RefCell::new(None) };
}

/// A thread's `/proc/sys/net`, the directories of it opened so far (`ipv4`, `ipv6`, …)
/// and (checked in debug builds) the namespace it belongs to.
struct NetSysctls {
    dir: OwnedFd,
    subdirs: Vec<(String, OwnedFd)>,
    #[cfg(debug_assertions)]
    ns: u64,
}

impl NetSysctls {
    /// `/proc/sys/net/{name}`, opened at its first use.
    fn subdir(&mut self, name: &str) -> nix::Result<&OwnedFd> {
        use nix::fcntl::{openat, OFlag};
        let at = match self.subdirs.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
                let dir = openat(&self.dir, name, flags, nix::sys::stat::Mode::empty())?;
                self.subdirs.push((name.to_owned(), dir));
                self.subdirs.len() - 1
            }
        };
        Ok(&self.subdirs[at].1)
    }
}

/// Called by everything here that moves the calling thread into another network
/// namespace (`setns`, `unshare`): its `/proc/sys/net` is another directory now.
fn moved() {
    NET_SYSCTLS.with_borrow_mut(|d| *d = None);
}

/// The calling thread enters namespace `ns`.
pub(crate) fn enter(ns: impl AsFd) -> nix::Result<()> {
    setns(ns, CloneFlags::CLONE_NEWNET)?;
    moved();
    Ok(())
}

/// Opens `/proc/sys/net/{key}` from the thread's `/proc/sys/net/{first component of key}`
/// directory, each opened once per thread and namespace. The dentry cache keeps every
/// namespace's `net`, and every namespace's `ipv4` and `ipv6`, under one parent and
/// name, and a lookup compares each of them (`proc_sys_compare`, under the sysctl lock):
/// with 100 routers' namespaces (6.18), `ipv6/conf/<bridge>/disable_ipv6` from
/// `/proc/sys/net` 27.8 µs, `ipv6` alone 22.0 µs, `<bridge>/disable_ipv6` from
/// `ipv6/conf` 6.6 µs; a path from `/` added 13–25 µs with 200.
fn in_net_sysctls(key: &str, flags: nix::fcntl::OFlag) -> std::io::Result<File> {
    use nix::fcntl::{open, openat, OFlag};
    use nix::sys::stat::Mode;
    // Keys are ours (a device's name cannot be `.` or `..`), but stay below the directory.
    // (An empty key is one empty component.)
    if key
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    NET_SYSCTLS.with_borrow_mut(|cached| {
        if cached.is_none() {
            let dir = open(
                "/proc/sys/net",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            *cached = Some(NetSysctls {
                dir,
                subdirs: Vec::new(),
                #[cfg(debug_assertions)]
                ns: std::fs::metadata(THREAD_SELF)?.ino(),
            });
        }
        let here = cached.as_mut().expect("just opened");
        #[cfg(debug_assertions)]
        assert_eq!(
            here.ns,
            std::fs::metadata(THREAD_SELF)?.ino(),
            "this thread changed network namespace without netns::moved()"
        );
        let (dir, name) = match key.split_once('/') {
            None => (&here.dir, key),
            Some((first, rest)) => (here.subdir(first)?, rest),
        };
        let f = openat(dir, name, flags | OFlag::O_CLOEXEC, Mode::empty())?;
        Ok(File::from(f))
    })
}

/// Writes a `/proc/sys/net/...` value in the calling thread's network namespace.
pub fn write_net_sysctl(key: &str, value: &str) -> Result<()> {
    use std::io::Write;
    in_net_sysctls(key, nix::fcntl::OFlag::O_WRONLY)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| Error::io(format!("write /proc/sys/net/{key}"), e))
}

/// Reads a `/proc/sys/net/...` value of the calling thread's network namespace
/// (sysctl files resolve to the namespace of the thread that opens them).
pub fn read_net_sysctl(key: &str) -> Result<String> {
    use std::io::Read;
    let mut s = String::new();
    in_net_sysctls(key, nix::fcntl::OFlag::O_RDONLY)
        .and_then(|mut f| f.read_to_string(&mut s))
        .map(|_| s.trim().to_owned())
        .map_err(|e| Error::io(format!("read /proc/sys/net/{key}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_keys_stay_under_proc_sys_net() {
        for bad in [
            "",
            "/ipv4/ip_forward",
            "ipv4//ip_forward",
            "../kernel/hostname",
            "ipv4/./x",
        ] {
            let e = read_net_sysctl(bad).expect_err(bad);
            assert!(e.to_string().contains("Invalid argument"), "{bad:?}: {e}");
        }
        // Readable by anyone: the first read opens the directory, the second reads the
        // file from the descriptor kept.
        for _ in 0..2 {
            assert!(matches!(
                read_net_sysctl("ipv4/ip_forward").as_deref(),
                Ok("0" | "1")
            ));
        }
    }

    #[test]
    fn names_that_could_escape_are_refused() {
        for bad in ["", "a/b", "..", "../x", "x..y", ".", "a\0b"] {
            assert!(named_path(bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "qrouter-006df4cc-6fb2-40e7-af58-dc68b6755165",
            "blue",
            "a.b",
        ] {
            assert_eq!(named_path(good).unwrap(), Path::new(RUN_DIR).join(good));
        }
        assert!(named_path(&"x".repeat(256)).is_err());
    }
}
