//! A router namespace's NAT, as Neutron Liberty's L3 agent sets it: the rules of
//! [`sp_neutron::l3::RouterNat`] loaded into the `qrouter-` namespace in one atomic
//! `iptables-restore` (filter, mangle and nat tables replaced together).
//!
//! **Stop-gap** (DESIGN §4): native nftables over netlink is the goal; until then this
//! is the one process, besides dnsmasq, the product starts. It runs inside the
//! namespace — the child enters it before exec — never through `ip netns exec`.
//!
//! Idempotent by record: the text last loaded is kept beside the router's other state;
//! the same text again is no change.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use sp_kernel::{exec, files, netns, Change};
use sp_neutron::l3::RouterNat;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kernel(#[from] sp_kernel::Error),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("iptables-restore in {namespace} failed: {message}")]
    Restore { namespace: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the rules last loaded into `namespace` are recorded.
pub fn record(state_dir: &Path, namespace: &str) -> PathBuf {
    state_dir.join("l3").join(namespace).join("iptables")
}

/// Loads `nat`'s rules into `namespace` unless exactly they were loaded last.
pub fn ensure_nat(
    state_dir: &Path,
    namespace: &str,
    nat: &RouterNat,
    changes: &mut Vec<Change>,
) -> Result<()> {
    ensure_nat_each(state_dir, &[(namespace, nat)], changes)
}

/// How many `iptables-restore` run at once per CPU: each spends most of its ~30–50 ms
/// starting and waiting on the kernel, and the nf_tables backend (Debian 12's default)
/// takes no global lock, so routers load side by side (measured: 40 namespaces one
/// after another 1245 ms, four at a time 411 ms, on 2 CPUs). The legacy backend
/// serialises them on its lock (`--wait`).
const RESTORES_PER_CPU: usize = 2;

/// [`ensure_nat`] for many routers, several loads at a time. Every load that worked is
/// recorded even when another failed (the first failure is returned), so the next run
/// repeats only what is missing.
pub fn ensure_nat_each(
    state_dir: &Path,
    routers: &[(&str, &RouterNat)],
    changes: &mut Vec<Change>,
) -> Result<()> {
    let todo: Vec<(&str, String, PathBuf)> = routers
        .iter()
        .map(|(ns, nat)| (*ns, nat.iptables_restore(), record(state_dir, ns)))
        .filter(|(_, text, rec)| !std::fs::read_to_string(rec).is_ok_and(|r| r == *text))
        .collect();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = (cpus * RESTORES_PER_CPU).min(todo.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<()>>>> =
        todo.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((ns, text, _)) = todo.get(i) else {
                    break;
                };
                let done = restore(ns, text);
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(done);
            });
        }
    });
    let mut first_error = None;
    for ((ns, text, rec), res) in todo.iter().zip(results) {
        let res = res.into_inner().unwrap_or_else(|e| e.into_inner());
        match res.expect("every load ran") {
            Ok(()) => {
                // STATE/l3 and STATE/l3/<ns>: ours alone. A record that cannot be written
                // is an error, after every other load that worked is recorded.
                let dirs: Vec<&Path> = rec.ancestors().skip(1).take(2).collect();
                let written = dirs
                    .into_iter()
                    .rev()
                    .try_for_each(|dir| files::ensure_dir(dir, 0o700))
                    .and_then(|()| files::write_file(rec, text.as_bytes(), 0o600));
                if let Err(e) = written {
                    first_error.get_or_insert(e.into());
                    continue;
                }
                changes.push(Change::new(format!("nat rules in {ns}"), "loaded"));
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Forgets the record (the namespace, and its rules with it, is being deleted).
pub fn forget(state_dir: &Path, namespace: &str) -> Result<()> {
    let dir = state_dir.join("l3").join(namespace);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::Io(format!("remove {}", dir.display()), e))
        }
        _ => Ok(()),
    }
}

/// `iptables-restore` of `text` inside `namespace`.
fn restore(namespace: &str, text: &str) -> Result<()> {
    let mut cmd = exec::command("iptables-restore", "iptables")?;
    // The legacy backend's xtables lock is shared by all namespaces: wait for it
    // rather than fail when another router's load holds it (nf_tables ignores it).
    cmd.arg("--wait")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    netns::command_in(&mut cmd, namespace)?;
    let failed = |message: String| Error::Restore {
        namespace: namespace.to_owned(),
        message,
    };
    let mut child = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot run iptables-restore: {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes())
        .map_err(|e| failed(format!("write rules: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(())
}

// TEMPORARY SHIM (never committed): the native API arrives from branch nft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatRules(String);
impl NatRules {
    pub fn of(nat: &RouterNat) -> NatRules {
        NatRules(nat.iptables_restore())
    }
}
pub struct Current(String);
impl Current {
    pub fn matches(&self, want: &NatRules) -> bool {
        self.0 == want.0
    }
    pub fn differences(&self, _want: &NatRules) -> Vec<String> {
        vec!["differs".into()]
    }
}
pub fn read_each(namespaces: &[&str]) -> Result<Vec<Result<Option<Current>>>> {
    Ok(namespaces.iter().map(|_| Ok(None)).collect())
}
pub fn load_each(routers: &[(&str, &RouterNat)], changes: &mut Vec<Change>) -> Result<()> {
    for (ns, nat) in routers {
        restore(ns, &nat.iptables_restore())?;
        changes.push(Change::new(format!("nat rules in {ns}"), "loaded"));
    }
    Ok(())
}
pub fn remove(_namespace: &str) -> Result<bool> {
    Ok(false)
}
