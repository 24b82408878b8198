//! Neutron's namespace metadata proxy, natively (docs/metadata.md): where Liberty runs one
//! `neutron-ns-metadata-proxy` (later one haproxy) per router and per isolated network,
//! one `stackplumb metadata-proxy` process listens in all of them — each socket opened by
//! a thread that entered its namespace (`sp_kernel::netns::run_in_each`), all served by
//! one tokio runtime ([`serve`]). Each request goes to the metadata agent's unix socket
//! with `X-Forwarded-For` and `X-Neutron-Router-ID` / `X-Neutron-Network-ID`
//! (`sp_neutron::metadata`), and its answer comes back as it is.
//!
//! The process is managed like dnsmasq: started daemonised ([`start`]: its first process
//! exits once every socket listens, or with the reason it cannot), recognised by its pid
//! file and its whole command line — which names every namespace it serves, so a changed
//! set of routers is a changed command line and a restart ([`restart`]) — and stopped by
//! PID after its identity is checked ([`stop`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use sp_kernel::{exec, files, Change, Object};
use sp_neutron::metadata::{Kind, Served};

pub mod serve;

/// The subcommand of the stackplumb binary that runs the proxy.
pub const SUBCOMMAND: &str = "metadata-proxy";

/// Errors of running the proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kernel(#[from] sp_kernel::Error),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("the metadata proxy did not start: {0}")]
    Start(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One node's proxy: the program that runs it (this stackplumb), its pid file, and the
/// namespaces it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// The stackplumb binary, by absolute path.
    pub program: PathBuf,
    pub pid_file: PathBuf,
    pub served: Vec<Served>,
}

impl Proxy {
    /// Its whole command line: `PROGRAM metadata-proxy --pid-file FILE` and
    /// `--router ID=SOCKET` / `--network ID=SOCKET` per namespace.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec![
            self.program.display().to_string(),
            SUBCOMMAND.to_owned(),
            "--pid-file".to_owned(),
            self.pid_file.display().to_string(),
        ];
        argv.extend(self.served.iter().flat_map(Served::args));
        argv
    }

    /// The namespaces it serves, in its command line's order.
    pub fn namespaces(&self) -> Vec<String> {
        self.served.iter().map(Served::namespace).collect()
    }
}

/// The namespaces a proxy's command line names.
pub fn namespaces_in(argv: &[String]) -> Vec<String> {
    argv.windows(2)
        .filter_map(|w| {
            let kind = match w[0].as_str() {
                "--router" => Kind::Router,
                "--network" => Kind::Network,
                _ => return None,
            };
            Served::parse(kind, &w[1]).ok().map(|s| s.namespace())
        })
        .collect()
}

/// Where a node's proxy stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Running with exactly this command line.
    Running(u32),
    /// A proxy of this pid file running with another command line (other namespaces,
    /// another program or socket): its pid, its command line and the one wanted
    /// ([`namespaces_in`] names the namespaces each serves).
    Other {
        pid: u32,
        found: Vec<String>,
        wanted: Vec<String>,
    },
    /// A pid file naming no proxy of ours.
    Dead,
    /// No pid file.
    Stopped,
}

fn command_line(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// Whether `argv` is a proxy of pid file `pid_file` (whatever it serves).
fn is_ours(argv: &[String], pid_file: &Path) -> bool {
    let file = pid_file.display().to_string();
    argv.get(1).is_some_and(|a| a == SUBCOMMAND)
        && argv
            .windows(2)
            .any(|w| w[0] == "--pid-file" && w[1] == file)
}

/// The pid in `pid_file` (a regular file, read without blocking), if any.
fn pid_in(pid_file: &Path) -> Option<u32> {
    files::read_config(pid_file).ok()?.trim().parse().ok()
}

/// The state of `p`, read from its pid file and `/proc`.
pub fn status(p: &Proxy) -> State {
    if std::fs::symlink_metadata(&p.pid_file).is_err() {
        return State::Stopped;
    }
    let Some(pid) = pid_in(&p.pid_file) else {
        return State::Dead;
    };
    let wanted = p.argv();
    match command_line(pid) {
        Some(found) if found == wanted => State::Running(pid),
        Some(found) if is_ours(&found, &p.pid_file) => State::Other { pid, found, wanted },
        _ => State::Dead,
    }
}

/// `p` running (stopped first if a proxy of its pid file runs, whatever it serves):
/// what apply does when the planner found it missing, dead, serving other namespaces or
/// not listening in one of them. Returns the new pid.
pub fn restart(p: &Proxy, changes: &mut Vec<Change>) -> Result<u32> {
    let old = stop_quietly(&p.pid_file)?;
    let pid = start(p)?;
    changes.push(match old {
        Some(old) => Change::restarted(Object::MetadataProxy, old, pid),
        None => Change::process(Object::MetadataProxy, "started", pid),
    });
    Ok(pid)
}

/// Starts `p`: its first process exits once every socket listens and the pid file is
/// written (or with the reason on stderr). A fixed environment, stdin and stdout null.
pub fn start(p: &Proxy) -> Result<u32> {
    if !p.program.is_absolute() {
        return Err(Error::Start(format!(
            "{}: the proxy's program is named by absolute path",
            p.program.display()
        )));
    }
    let argv = p.argv();
    let out = std::process::Command::new(&p.program)
        .args(&argv[1..])
        .env_clear()
        .env("PATH", exec::CHILD_PATH)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .map_err(|e| Error::Start(format!("cannot run {}: {e}", p.program.display())))?;
    if !out.status.success() {
        return Err(Error::Start(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    match status(p) {
        State::Running(pid) => Ok(pid),
        other => Err(Error::Start(format!(
            "started, but its pid file {} reads {other:?}",
            p.pid_file.display()
        ))),
    }
}

/// Ends the proxy of `pid_file` — only a process whose command line is a proxy of that
/// pid file — and removes the file. Nothing to do when none runs.
pub fn stop(pid_file: &Path, changes: &mut Vec<Change>) -> Result<()> {
    if let Some(pid) = stop_quietly(pid_file)? {
        changes.push(Change::process(Object::MetadataProxy, "stopped", pid));
    }
    Ok(())
}

fn stop_quietly(pid_file: &Path) -> Result<Option<u32>> {
    let ours = pid_in(pid_file)
        .filter(|pid| command_line(*pid).is_some_and(|argv| is_ours(&argv, pid_file)));
    if let Some(pid) = ours {
        end(pid)?;
    }
    match std::fs::remove_file(pid_file) {
        Ok(()) => Ok(ours),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ours),
        Err(e) => Err(Error::Io(format!("remove {}", pid_file.display()), e)),
    }
}

/// Kills `pid` and waits (up to 5 s) until it is gone, so its ports are free.
fn end(pid: u32) -> Result<()> {
    sp_kernel::procs::kill_and_wait(pid, std::time::Duration::from_secs(5))
        .map_err(|e| Error::Io(format!("stop metadata proxy {pid}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_names_every_namespace_and_is_recognised_by_its_pid_file() {
        let p = Proxy {
            program: "/usr/bin/stackplumb".into(),
            pid_file: "/var/lib/neutron/stackplumb/metadata-proxy-controller.pid".into(),
            served: vec![
                Served {
                    kind: Kind::Router,
                    id: "006df4cc-6fb2-40e7-af58-dc68b6755165".into(),
                    socket: "/var/lib/neutron/metadata_proxy".into(),
                },
                Served {
                    kind: Kind::Network,
                    id: "5b6a8b87-fd03-46b5-a968-72bac5091b7c".into(),
                    socket: "/var/lib/neutron/metadata_proxy".into(),
                },
            ],
        };
        let argv = p.argv();
        assert_eq!(
            argv[..4],
            [
                "/usr/bin/stackplumb",
                "metadata-proxy",
                "--pid-file",
                "/var/lib/neutron/stackplumb/metadata-proxy-controller.pid"
            ]
        );
        assert_eq!(namespaces_in(&argv), p.namespaces());
        assert!(is_ours(&argv, &p.pid_file));
        assert!(!is_ours(&argv, Path::new("/other.pid")));
        let mut dnsmasq = argv.clone();
        dnsmasq[1] = "dnsmasq".into();
        assert!(!is_ours(&dnsmasq, &p.pid_file));
    }
}
