//! Floor 1: thin, typed kernel interfaces.
//!
//! * [`netns`] — named network namespaces the way iproute2 keeps them (bind mounts under
//!   `/run/netns`), namespace identities, and entering a namespace on a dedicated thread
//!   so no thread of an async runtime is ever left in a foreign namespace.
//! * [`netlink`] — one rtnetlink handle per namespace, opened inside it.
//! * [`procs`] — which process lives in which network namespace (one pass over `/proc`),
//!   and the sockets a process holds.
//! * [`diag`] — the listening TCP sockets of the calling thread's namespace
//!   (`NETLINK_SOCK_DIAG`).
//! * [`caps`] — the capabilities this process holds, and which one a container left out.
//! * [`exec`] — programs started by absolute path from the system's directories, with a
//!   fixed environment.
//! * [`files`] — files written without following planted symlinks, modes set explicitly;
//!   configuration read only from regular files.
//! * [`limits`] — the process's descriptor limits, raised once before threads start.
//! * [`links`] — link primitives every operation uses: set, ensure up / master, require,
//!   delete in one batch, and one dump of a namespace's links ([`links::Links`]).
//! * [`steps`] — reversible plans: ordered steps with their undos, rolled back in
//!   reverse on failure; the move of a link's addresses and routes onto another.
//! * [`attrs`] — reading rtnetlink messages, the link data of VXLAN devices and
//!   bridges included, in one place.
//! * [`ethtool`] — a device's transmit checksum offload (`SIOCETHTOOL`), read and set in
//!   the namespace its socket was opened in.
//! * [`loopdev`] — loop devices through ioctl on `/dev/loop-control` and `/dev/loopN`.

pub mod attrs;
pub mod caps;
pub mod diag;
mod error;
pub mod ethtool;
pub mod exec;
pub mod files;
pub mod limits;
pub mod links;
pub mod loopdev;
pub mod netlink;
pub mod netns;
pub mod probe;
pub mod procs;
pub mod steps;

pub use error::{Error, Result};

/// One change made to the system, as operations report them (none on a second run).
/// In JSON: `object` and `action` (a verb), and the facts as typed fields — `pid`
/// (`old_pid` on a restart), `from`/`to` (a move), `peer` and `namespace` (a veth's other
/// end) — never in the words.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// What was changed: `bridge brq5b6a8b87-fd`, `address 192.168.0.1/24 on qr-…`.
    pub object: String,
    /// What was done: `created`, `set up`, `deleted`, `moved`, `stopped`…
    pub action: String,
    /// The facts of the change.
    #[serde(flatten)]
    pub detail: Detail,
    /// How the text output says it, when not `action` and the facts ([`Change::saying`]).
    #[serde(skip)]
    pub said: Option<String>,
}

/// The typed facts of a [`Change`]; each absent from the JSON when not known.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Detail {
    /// The process started, reloaded or stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The process a restart replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_pid: Option<u32>,
    /// Where a moved address or route was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Where it is now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// A veth's other end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The namespace the other end (or the moved link) is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The link it was done on or through (a gateway answering, an address announced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Why a best-effort step did not happen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Change {
    pub fn new(object: impl Into<String>, action: impl Into<String>) -> Self {
        Change {
            object: object.into(),
            action: action.into(),
            detail: Detail::default(),
            said: None,
        }
    }

    /// A change whose facts are `detail`, said in the text output as `said`.
    pub fn saying(
        object: impl Into<String>,
        action: &str,
        detail: Detail,
        said: impl Into<String>,
    ) -> Self {
        Change {
            detail,
            said: Some(said.into()),
            ..Change::new(object, action)
        }
    }

    /// A process `action` (`started`, `reloaded`, `stopped`): `pid`.
    pub fn process(object: impl Into<String>, action: &str, pid: u32) -> Self {
        let mut c = Change::new(object, action);
        c.detail.pid = Some(pid);
        c
    }

    /// A process restarted: `old` replaced by `pid`.
    pub fn restarted(object: impl Into<String>, old: u32, pid: u32) -> Self {
        let mut c = Change::process(object, "restarted", pid);
        c.detail.old_pid = Some(old);
        c
    }

    /// An address or route moved from one link to another.
    pub fn moved(object: impl Into<String>, from: &str, to: &str) -> Self {
        let mut c = Change::new(object, "moved");
        c.detail.from = Some(from.into());
        c.detail.to = Some(to.into());
        c
    }

    /// A veth created, its `peer` end in `namespace`.
    pub fn veth(object: impl Into<String>, peer: &str, namespace: &str) -> Self {
        let mut c = Change::new(object, "created");
        c.detail.peer = Some(peer.into());
        c.detail.namespace = Some(namespace.into());
        c
    }

    /// A link moved into `namespace`.
    pub fn moved_into(object: impl Into<String>, namespace: &str) -> Self {
        let mut c = Change::new(object, "moved");
        c.detail.namespace = Some(namespace.into());
        c
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(said) = &self.said {
            return write!(f, "{}: {said}", self.object);
        }
        write!(f, "{}: {}", self.object, self.action)?;
        let d = &self.detail;
        if let (Some(from), Some(to)) = (&d.from, &d.to) {
            write!(f, " {from} → {to}")?;
        }
        match (&d.peer, &d.namespace) {
            (Some(peer), Some(ns)) => write!(f, ", peer {peer} in {ns}")?,
            (None, Some(ns)) => write!(f, " into {ns}")?,
            _ => {}
        }
        match (d.old_pid, d.pid) {
            (Some(old), Some(pid)) => write!(f, " (pid {old} -> {pid})"),
            (None, Some(pid)) => write!(f, " (pid {pid})"),
            _ => Ok(()),
        }
    }
}
