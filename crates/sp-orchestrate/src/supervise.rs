//! Neutron's process monitor for dnsmasq and the metadata proxy
//! (`check_child_processes_action = respawn`), and the run lock every changing command
//! takes.
//!
//! [`supervise`] watches every dnsmasq of a node, and its metadata proxy
//! ([`Options::proxy`]), with a pidfd: one that ends — killed,
//! crashed, its namespace gone — is started again at once (under the run lock, so
//! never while an apply or destroy runs), with the same command line and files. Every
//! `interval` it also looks again without being woken (a dnsmasq an operator started
//! by hand, a namespace made again). SIGTERM or SIGINT end it cleanly.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use serde::Serialize;
use sp_config::desired::NodePlan;
use sp_kernel::Change;
use sp_neutron::qdhcp_namespace;

use crate::{Error, Result};

/// The run lock's name: an abstract unix socket. Abstract names belong to a network
/// namespace, so the lock is the node's — the kernel's network, not a path: runs in
/// containers that share the host's network but each have their own `/run` meet on
/// it, whatever `--state-dir` each names; it goes with the process that held it,
/// however that process ended.
pub const LOCK_NAME: &[u8] = b"stackplumb/run-lock";

/// The node's run lock, held while this lives.
#[derive(Debug)]
pub struct RunLock {
    _bound: std::os::unix::net::UnixListener,
}

/// Takes this node's run lock (of the calling thread's network namespace), waiting up
/// to `timeout` for another run to finish; a wait that times out names the holder —
/// its pid and uid, as the kernel gives them to a connection (`SO_PEERCRED`).
pub fn lock(timeout: Duration) -> Result<RunLock> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
    let addr = SocketAddr::from_abstract_name(LOCK_NAME)
        .map_err(|e| Error::Kernel(sp_kernel::Error::io("the run lock's name", e)))?;
    let start = Instant::now();
    loop {
        match UnixListener::bind_addr(&addr) {
            Ok(l) => return Ok(RunLock { _bound: l }),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) => return Err(Error::Kernel(sp_kernel::Error::io("take the run lock", e))),
        }
        if start.elapsed() < Duration::from_millis(50) {
            tracing::info!(?timeout, "another run holds the lock; waiting");
        }
        if start.elapsed() >= timeout {
            let holder = UnixStream::connect_addr(&addr)
                .ok()
                .and_then(|c| {
                    nix::sys::socket::getsockopt(&c, nix::sys::socket::sockopt::PeerCredentials)
                        .ok()
                })
                .map(|cred| match cred.pid() {
                    0 => format!("a process of uid {} in another pid namespace", cred.uid()),
                    pid => format!("pid {pid}, uid {}", cred.uid()),
                })
                .unwrap_or_else(|| "a process that just ended".into());
            return Err(Error::Locked(format!(
                "another stackplumb run ({holder}) holds this node's lock \
                 (abstract socket @{}); waited {timeout:?}",
                String::from_utf8_lossy(LOCK_NAME)
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the supervisor saw or did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "event")]
pub enum Event {
    /// A dnsmasq found running, now watched.
    Watching { network: String, pid: u32 },
    /// A dnsmasq started again (or its files written).
    Changed(Box<Change>),
    /// A restart that failed; tried again after the interval.
    Failed { network: String, error: String },
    /// The metadata proxy found running, now watched.
    WatchingProxy { pid: u32 },
    /// A restart of the metadata proxy that failed; tried again after the interval.
    ProxyFailed { error: String },
    /// Ended by a signal.
    Stopped { signal: String },
}

/// How to supervise.
#[derive(Debug, Clone)]
pub struct Options {
    /// How often to look again without being woken by an exit.
    pub interval: Duration,
    /// How long a restart waits for a running apply or destroy.
    pub lock_timeout: Duration,
    /// The node's metadata proxy, when it has one ([`crate::metadata_proxy`]).
    pub proxy: Option<sp_metadata::Proxy>,
}

/// The key of the proxy among the watched processes (networks are keyed by their ids).
const PROXY: &str = "metadata-proxy";

/// A network is not restarted more often than this (a dnsmasq that dies at once).
const MIN_GAP: Duration = Duration::from_secs(1);

/// Watches and restarts `plan`'s dnsmasq processes until SIGTERM or SIGINT; reports
/// every event. Blocks those signals in the calling thread (they arrive through a
/// signalfd): call it from the process's only thread.
pub fn supervise(plan: &NodePlan, opts: &Options, report: &mut dyn FnMut(Event)) -> Result<()> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGHUP);
    mask.thread_block()
        .map_err(|e| sp_kernel::Error::from_errno("block SIGTERM, SIGINT and SIGHUP", e))?;
    let signals = SignalFd::new(&mask).map_err(|e| sp_kernel::Error::from_errno("signalfd", e))?;
    let mut watched: BTreeMap<String, (u32, OwnedFd)> = BTreeMap::new();
    let mut last_start: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        for d in &plan.dhcp {
            let ns = qdhcp_namespace(&d.network_id);
            let running = match sp_dhcp::status(d, &ns) {
                Ok(sp_dhcp::State::Running(pid)) => Some(pid),
                _ => None,
            };
            let pid = match running {
                Some(pid) => pid,
                None => {
                    watched.remove(&d.network_id);
                    if last_start
                        .get(&d.network_id)
                        .is_some_and(|t| t.elapsed() < MIN_GAP)
                    {
                        continue;
                    }
                    last_start.insert(d.network_id.clone(), Instant::now());
                    let mut changes = Vec::new();
                    let restarted = lock(opts.lock_timeout).and_then(|_held| {
                        sp_dhcp::ensure(d, &ns, &mut changes).map_err(Error::from)
                    });
                    changes
                        .into_iter()
                        .map(|c| Event::Changed(Box::new(c)))
                        .for_each(&mut *report);
                    match restarted {
                        Ok(pid) => pid,
                        Err(e) => {
                            report(Event::Failed {
                                network: d.network_id.clone(),
                                error: e.to_string(),
                            });
                            continue;
                        }
                    }
                }
            };
            if watched.get(&d.network_id).is_some_and(|w| w.0 == pid) {
                continue;
            }
            match sp_kernel::procs::pidfd(pid) {
                Ok(fd) => {
                    watched.insert(d.network_id.clone(), (pid, fd));
                    report(Event::Watching {
                        network: d.network_id.clone(),
                        pid,
                    });
                }
                // Gone already: looked at again right away.
                Err(_) => {
                    watched.remove(&d.network_id);
                }
            }
        }
        if let Some(proxy) = &opts.proxy {
            watch_proxy(proxy, opts, &mut watched, &mut last_start, report);
        }
        let mut fds: Vec<PollFd> = std::iter::once(signals.as_fd())
            .chain(watched.values().map(|(_, fd)| fd.as_fd()))
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        // Woken early when a restart is due sooner than the interval.
        let due = last_start
            .values()
            .map(|t| MIN_GAP.saturating_sub(t.elapsed()))
            .filter(|d| !d.is_zero())
            .min();
        let expected = plan.dhcp.len() + usize::from(opts.proxy.is_some());
        let wait = match (watched.len() < expected, due) {
            (true, Some(d)) => d.min(opts.interval),
            _ => opts.interval,
        };
        let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(sp_kernel::Error::from_errno("poll", e).into()),
        }
        let signalled = fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        if signalled {
            let signal = match signals.read_signal() {
                Ok(Some(s)) => Signal::try_from(s.ssi_signo as i32)
                    .map_or_else(|_| s.ssi_signo.to_string(), |s| s.as_str().to_owned()),
                _ => "?".into(),
            };
            report(Event::Stopped { signal });
            return Ok(());
        }
    }
}

/// One look at the metadata proxy: restarted (under the run lock) when it is not
/// running as wanted, watched by a pidfd when it is.
fn watch_proxy(
    proxy: &sp_metadata::Proxy,
    opts: &Options,
    watched: &mut BTreeMap<String, (u32, OwnedFd)>,
    last_start: &mut BTreeMap<String, Instant>,
    report: &mut dyn FnMut(Event),
) {
    let pid = match sp_metadata::status(proxy) {
        sp_metadata::State::Running(pid) => pid,
        _ => {
            watched.remove(PROXY);
            if last_start.get(PROXY).is_some_and(|t| t.elapsed() < MIN_GAP) {
                return;
            }
            last_start.insert(PROXY.to_owned(), Instant::now());
            let mut changes = Vec::new();
            let restarted = lock(opts.lock_timeout)
                .and_then(|_held| sp_metadata::restart(proxy, &mut changes).map_err(Error::from));
            changes
                .into_iter()
                .map(|c| Event::Changed(Box::new(c)))
                .for_each(&mut *report);
            match restarted {
                Ok(pid) => pid,
                Err(e) => {
                    report(Event::ProxyFailed {
                        error: e.to_string(),
                    });
                    return;
                }
            }
        }
    };
    if watched.get(PROXY).is_some_and(|w| w.0 == pid) {
        return;
    }
    match sp_kernel::procs::pidfd(pid) {
        Ok(fd) => {
            watched.insert(PROXY.to_owned(), (pid, fd));
            report(Event::WatchingProxy { pid });
        }
        Err(_) => {
            watched.remove(PROXY);
        }
    }
}
