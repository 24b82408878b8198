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
//! * [`Change`] — one change an operation made: a typed [`Object`], a verb, and the
//!   facts as typed fields ([`Setting`], [`Detail`]).

pub mod attrs;
pub mod caps;
mod change;
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

pub use change::{Change, Detail, Object, Setting};
pub use error::{Error, Result};
