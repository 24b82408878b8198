//! The DHCP agent's dnsmasq, run the way Neutron runs it: Liberty's command line and
//! files (`sp_neutron::dhcp`), the process started *inside* the network's `qdhcp-`
//! namespace (the child enters it before exec — no `ip netns exec`), reloaded with
//! SIGHUP when its files change, started again when it died, stopped by PID.
//!
//! [`ensure`] is idempotent: files equal and the process alive with the same command
//! line in the right namespace → no change. dnsmasq is started by absolute path from
//! the system's directories with a fixed environment (`sp_kernel::exec`); its files are
//! written without following symlinks (`sp_kernel::files`).

use std::path::Path;
use std::process::Stdio;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sp_kernel::netns::{self, NsId};
use sp_kernel::{exec, files, Change, Object};
use sp_neutron::dhcp::Dnsmasq;

/// Errors of running dnsmasq.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kernel(#[from] sp_kernel::Error),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("dnsmasq for network {network} did not start: {message}")]
    Start { network: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a network's dnsmasq stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Running with this configuration's command line, in the namespace.
    Running(u32),
    /// A pid file whose process is gone, or runs something else.
    Dead,
    /// Never started (no pid file).
    Stopped,
}

/// The pid in dnsmasq's pid file, if any.
fn pid_of(d: &Dnsmasq) -> Option<u32> {
    // Regular files only, read without blocking: a FIFO planted there cannot hang us.
    files::read_config(&d.pid_file()).ok()?.trim().parse().ok()
}

/// Whether `pid` lives in namespace `ns` (any, for `None`).
fn in_namespace(pid: u32, ns: Option<NsId>) -> bool {
    ns.is_none_or(|id| {
        match NsId::of_path(format!("/proc/{pid}/ns/net").as_ref()) {
            Ok(other) => other == id,
            // Without CAP_SYS_PTRACE the namespace of dnsmasq (running as nobody) cannot
            // be read. The pid file, the command line (which names this network's own pid
            // file) and the user dnsmasq drops to identify it: a healthy dnsmasq is not
            // restarted for that, and another user's copy of its command line is not it.
            Err(sp_kernel::Error::NotPermitted { .. }) => {
                sp_kernel::procs::runs_as_dnsmasq_user(pid as i32)
            }
            Err(_) => false,
        }
    })
}

/// Whether `pid` runs exactly `argv` inside namespace `ns`.
fn runs(pid: u32, argv: &[String], ns: Option<NsId>) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let cmd: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    cmd == argv && in_namespace(pid, ns)
}

/// The state of `d`'s dnsmasq in `namespace`.
pub fn status(d: &Dnsmasq, namespace: &str) -> Result<State> {
    let ns = NsId::of_path(&netns::named_path(namespace)?).ok();
    Ok(match pid_of(d) {
        None => State::Stopped,
        Some(pid) if runs(pid, &d.argv(), ns) => State::Running(pid),
        Some(_) => State::Dead,
    })
}

/// Writes `content` to `path` (0644 — dnsmasq re-reads it as its own unprivileged user —
/// through a new file and a rename, never through a symlink) unless it is already so;
/// true when it changed.
fn write_if_changed(path: &Path, content: &str) -> Result<bool> {
    if files::read_config(path).is_ok_and(|c| c == content) {
        return Ok(false);
    }
    files::write_file(path, content.as_bytes(), 0o644)?;
    Ok(true)
}

/// One of dnsmasq's files whose content is not what is wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleFile {
    /// `host`, `addn_hosts` or `opts`.
    pub name: &'static str,
    /// Whether anything is at its path (a file, or what stands in its way).
    pub exists: bool,
    /// Its lines as found (none when it could not be read as a regular file).
    pub found: Vec<String>,
    /// The lines it should hold.
    pub wanted: Vec<String>,
}

/// The files of `d` (`host`, `addn_hosts`, `opts`) whose content is not what `d` wants
/// (missing ones included), with what they hold and should hold — read only.
pub fn stale_files(d: &Dnsmasq) -> Vec<StaleFile> {
    let lines = |s: &str| s.lines().map(str::to_owned).collect();
    files_of(d)
        .into_iter()
        .filter_map(|(name, content)| {
            let path = d.dir.join(name);
            let found = files::read_config(&path).ok();
            (found.as_ref() != Some(&content)).then(|| StaleFile {
                name,
                exists: std::fs::symlink_metadata(&path).is_ok(),
                found: found.as_deref().map_or_else(Vec::new, lines),
                wanted: lines(&content),
            })
        })
        .collect()
}

fn files_of(d: &Dnsmasq) -> [(&'static str, String); 3] {
    [
        ("host", d.hosts_file()),
        ("addn_hosts", d.addn_hosts_file()),
        ("opts", d.opts_file()),
    ]
}

/// Files written, dnsmasq running in `namespace` with `d`'s command line; reloaded
/// (SIGHUP) when the host or option files changed, started when it is not running.
/// Returns the dnsmasq pid.
pub fn ensure(d: &Dnsmasq, namespace: &str, changes: &mut Vec<Change>) -> Result<u32> {
    // dnsmasq re-reads its files as its own unprivileged user: STATE/dhcp and its
    // network's directory 0755, each checked (a symlink planted at either is refused,
    // not followed).
    if let Some(all) = d.dir.parent() {
        files::ensure_dir(all, 0o755)?;
    }
    files::ensure_dir(&d.dir, 0o755)?;
    let mut changed = false;
    for (name, content) in files_of(d) {
        if write_if_changed(&d.dir.join(name), &content)? {
            changes.push(Change::new(
                Object::DhcpFile {
                    network_id: d.network_id.clone(),
                    file: name.to_string(),
                },
                "written",
            ));
            changed = true;
        }
    }
    match status(d, namespace)? {
        State::Running(pid) => {
            if changed {
                kill(Pid::from_raw(pid as i32), Signal::SIGHUP)
                    .map_err(|e| Error::Io(format!("reload dnsmasq {pid}"), e.into()))?;
                changes.push(Change::process(dnsmasq(&d.network_id), "reloaded", pid));
            }
            Ok(pid)
        }
        state => {
            if let (State::Dead, Some(pid)) = (state, pid_of(d)) {
                // A process still named by our pid file but with another command line
                // (an older configuration of this network) is ours: end it first.
                if ours(pid, &d.pid_file(), namespace)? {
                    end(pid)?;
                }
            }
            let pid = start(d, namespace)?;
            let what = if state == State::Dead {
                "restarted"
            } else {
                "started"
            };
            changes.push(Change::process(dnsmasq(&d.network_id), what, pid));
            Ok(pid)
        }
    }
}

/// The dnsmasq of `network_id`, as a change names it.
fn dnsmasq(network_id: &str) -> Object {
    Object::Dnsmasq {
        network_id: network_id.to_owned(),
    }
}

/// Whether `pid` is a dnsmasq of ours: its command line names `pid_file` (whatever
/// configuration it was started with) and it runs in `namespace`.
fn ours(pid: u32, pid_file: &Path, namespace: &str) -> Result<bool> {
    let marker = format!("--pid-file={}", pid_file.display());
    Ok(std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == marker.as_bytes()))
        && in_namespace(pid, NsId::of_path(&netns::named_path(namespace)?).ok()))
}

/// Ends the dnsmasq of a network no longer wanted — whatever configuration it runs,
/// known by the pid file in `dir` (its state directory) naming a process of ours in
/// `namespace` — and removes `dir`.
pub fn stop_dir(
    dir: &Path,
    network_id: &str,
    namespace: &str,
    changes: &mut Vec<Change>,
) -> Result<()> {
    let pid_file = dir.join("pid");
    let pid = files::read_config(&pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok());
    if let Some(pid) = pid {
        if ours(pid, &pid_file, namespace)? {
            end(pid)?;
            changes.push(Change::process(dnsmasq(network_id), "stopped", pid));
        }
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io(format!("remove {}", dir.display()), e)),
    }
}

/// Starts dnsmasq inside `namespace`. dnsmasq daemonises and its first process exits
/// only once the daemon is ready (or failed, with the reason on stderr).
fn start(d: &Dnsmasq, namespace: &str) -> Result<u32> {
    let _ = std::fs::remove_file(d.pid_file());
    let argv = d.argv();
    let mut cmd = exec::command("dnsmasq", "dnsmasq-base").map_err(|e| Error::Start {
        network: d.network_id.clone(),
        message: e.to_string(),
    })?;
    // argv[0] stays `dnsmasq`, as Neutron's agent leaves it: a running dnsmasq of this
    // configuration is recognised by its whole command line.
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    netns::command_in(&mut cmd, namespace)?;
    let out = cmd.output().map_err(|e| Error::Start {
        network: d.network_id.clone(),
        message: format!("cannot run dnsmasq: {e} (Debian package dnsmasq-base)"),
    })?;
    if !out.status.success() {
        return Err(Error::Start {
            network: d.network_id.clone(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    pid_of(d).ok_or_else(|| Error::Start {
        network: d.network_id.clone(),
        message: "no pid file after start".into(),
    })
}

/// Kills `pid` and waits (up to 5 s) until it is gone, so its sockets are free.
fn end(pid: u32) -> Result<()> {
    sp_kernel::procs::kill_and_wait(pid, std::time::Duration::from_secs(5))
        .map_err(|e| Error::Io(format!("stop dnsmasq {pid}"), e))
}

/// Ends `d`'s dnsmasq (by the PID in its pid file, only if it is ours) and removes
/// its state directory; nothing to do when it is not running.
pub fn stop(d: &Dnsmasq, namespace: &str, changes: &mut Vec<Change>) -> Result<()> {
    if let State::Running(pid) = status(d, namespace)? {
        end(pid)?;
        changes.push(Change::process(dnsmasq(&d.network_id), "stopped", pid));
    }
    match std::fs::remove_dir_all(&d.dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io(format!("remove {}", d.dir.display()), e)),
    }
}
