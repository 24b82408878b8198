//! What this node made — the one thing the state directory records about the data
//! plane. Nothing here stands in for a reading: the planner reads every object from the
//! kernel and uses the record only to tell *ours* from *someone else's*, so pruning and
//! `destroy` remove what this node made (after any topology change) and nothing of
//! another node or of the host.
//!
//! An object is recorded **before** it is made (a run killed between the two leaves a
//! record of something that may not exist — harmless: it reads as absent), and forgotten
//! **after** it is gone. A namespace is recorded with the identity (`st_dev`, `st_ino`)
//! the kernel gave it once it exists: a same-named namespace someone else made later is
//! not ours and is never deleted.
//!
//! The file is `<state>/stackplumb/owned.json`, 0600 in a 0700 directory, written
//! through a new file and a rename, never through a symlink (`sp_kernel::files`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sp_kernel::files;
use sp_kernel::netns::NsId;

use crate::{Error, Result};

/// The record's format version.
pub const SCHEMA: u32 = 1;

/// A namespace this node made, with its identity once known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsIdentity {
    pub dev: u64,
    pub ino: u64,
}

impl From<NsId> for NsIdentity {
    fn from(id: NsId) -> Self {
        NsIdentity {
            dev: id.dev,
            ino: id.ino,
        }
    }
}

/// An l2population entry this node wrote on `vxlan-<vni>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OwnedFdb {
    pub vni: u32,
    pub mac: String,
    pub dst: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OwnedNeighbour {
    pub vni: u32,
    pub ip: IpAddr,
    pub mac: String,
}

/// A NIC this node moved under one of its bridges (given back on prune or destroy).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OwnedUplink {
    pub nic: String,
    pub bridge: String,
}

/// Everything this node made, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owned {
    pub schema: u32,
    /// The node the record belongs to: a state directory serves one node.
    pub node: String,
    /// Named namespaces; `None` until the identity is read after creation.
    pub namespaces: BTreeMap<String, Option<NsIdentity>>,
    /// Bridges (`brq…`) and VXLAN devices in the node's namespace.
    pub bridges: BTreeSet<String>,
    pub vxlans: BTreeSet<String>,
    /// Ports with a host end (`tap…`): port id → the namespace of the other end.
    pub ports: BTreeMap<String, String>,
    pub uplinks: BTreeSet<OwnedUplink>,
    pub fdb: BTreeSet<OwnedFdb>,
    pub neighbours: BTreeSet<OwnedNeighbour>,
    /// Networks whose dnsmasq this node runs.
    pub dnsmasq: BTreeSet<String>,
    /// Router namespaces holding our NAT table.
    pub nat: BTreeSet<String>,
    /// The security groups' tables in the node's namespace.
    #[serde(default)]
    pub firewall: bool,
    /// Cinder's volume group, made here.
    pub volume_group: Option<String>,
    /// The metadata proxy runs from this state directory (records of before it have
    /// none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub metadata_proxy: bool,
}

/// The record file of `node` in state directory `state`: one per node, so nodes that
/// share a state directory (the demo, a test) keep apart what each made.
pub fn path(state: &Path, node: &str) -> Result<PathBuf> {
    let safe = !node.is_empty()
        && node.len() <= 64
        && !node.starts_with('.')
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !safe {
        return Err(Error::Preflight(format!(
            "node name {node:?}: only letters, digits, '.', '_' and '-' (at most 64, not starting with '.') can name its record; nothing was changed"
        )));
    }
    Ok(state.join("stackplumb").join(format!("owned-{node}.json")))
}

/// The largest record read (a thousand routers' worth is a few hundred KiB).
const MAX_BYTES: u64 = 64 << 20;

impl Owned {
    /// The record of `state` for `node`: empty when there is none yet. A record of
    /// another node is refused — one state directory per node.
    pub fn load(state: &Path, node: &str) -> Result<Owned> {
        let p = path(state, node)?;
        // Never read through a symlink planted as the record: it would name another
        // file's contents as ours.
        for at in [p.parent().expect("in a directory"), p.as_path()] {
            if std::fs::symlink_metadata(at).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(Error::Preflight(format!(
                    "{} is a symlink (a symlink is not followed); nothing was changed",
                    at.display()
                )));
            }
        }
        let text = match files::read_config(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Owned {
                    schema: SCHEMA,
                    node: node.to_owned(),
                    ..Default::default()
                })
            }
            Err(e) => return Err(Error::State(p, e)),
        };
        if text.len() as u64 > MAX_BYTES {
            return Err(Error::State(p, std::io::Error::other("record too large")));
        }
        let owned: Owned = serde_json::from_str(&text).map_err(|e| {
            Error::State(
                p.clone(),
                std::io::Error::other(format!("not a stackplumb record: {e}")),
            )
        })?;
        if owned.schema != SCHEMA {
            return Err(Error::State(
                p,
                std::io::Error::other(format!(
                    "record schema {} (this stackplumb reads {SCHEMA})",
                    owned.schema
                )),
            ));
        }
        if owned.node != node {
            return Err(Error::State(
                p,
                std::io::Error::other(format!("the record of node {}, not {node}", owned.node)),
            ));
        }
        Ok(owned)
    }

    /// Writes the record (0600 in a 0700 directory, never through a symlink).
    pub fn save(&self, state: &Path) -> Result<()> {
        files::ensure_top_dir(state, 0o755)?;
        let dir = state.join("stackplumb");
        files::ensure_dir(&dir, 0o700)?;
        let text = serde_json::to_vec_pretty(self).expect("a record serialises");
        files::write_file(&path(state, &self.node)?, &text, 0o600)?;
        Ok(())
    }

    /// Nothing recorded.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.bridges.is_empty()
            && self.vxlans.is_empty()
            && self.ports.is_empty()
            && self.uplinks.is_empty()
            && self.fdb.is_empty()
            && self.neighbours.is_empty()
            && self.dnsmasq.is_empty()
            && self.nat.is_empty()
            && !self.firewall
            && self.volume_group.is_none()
            && !self.metadata_proxy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_belongs_to_one_node() {
        let dir = sp_kernel::files::fresh_temp_dir(&std::env::temp_dir(), "owned-", 0o700)
            .expect("temp dir");
        let mut o = Owned::load(&dir, "controller").expect("empty");
        assert!(o.is_empty());
        o.bridges.insert("brq5b6a8b87-fd".into());
        o.namespaces
            .insert("qrouter-x".into(), Some(NsIdentity { dev: 4, ino: 4026 }));
        o.save(&dir).expect("save");
        assert_eq!(Owned::load(&dir, "controller").expect("load"), o);
        assert!(Owned::load(&dir, "compute").expect("its own").is_empty());
        assert!(
            Owned::load(&dir, "../x").is_err(),
            "a node name cannot name a path"
        );
        use std::os::unix::fs::PermissionsExt;
        let file = path(&dir, "controller").expect("a path");
        let mode = std::fs::metadata(file).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
