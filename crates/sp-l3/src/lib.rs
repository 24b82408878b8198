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
use std::process::{Command, Stdio};

use sp_kernel::{netns, Change};
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
    let text = nat.iptables_restore();
    let rec = record(state_dir, namespace);
    if std::fs::read_to_string(&rec).is_ok_and(|r| r == text) {
        return Ok(());
    }
    restore(namespace, &text)?;
    let dir = rec.parent().expect("has a parent");
    std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("create {}", dir.display()), e))?;
    std::fs::write(&rec, &text).map_err(|e| Error::Io(format!("write {}", rec.display()), e))?;
    changes.push(Change::new(format!("nat rules in {namespace}"), "loaded"));
    Ok(())
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
    let mut cmd = Command::new("iptables-restore");
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    netns::command_in(&mut cmd, namespace)?;
    let failed = |message: String| Error::Restore {
        namespace: namespace.to_owned(),
        message,
    };
    let mut child = cmd.spawn().map_err(|e| {
        failed(format!(
            "cannot run iptables-restore: {e} (Debian package iptables)"
        ))
    })?;
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
