//! The Linux bridge agent's plumbing, natively over netlink (the `bridgectl` library).
//!
//! What Neutron Liberty's linuxbridge, L3 and DHCP agents do to the kernel with `brctl`,
//! `ip link`, `bridge fdb` and `ip neigh` — with the same names, device options and
//! order of operations (`shared/reference/neutron-liberty-dataplane.md`):
//!
//! * [`network`]: `brq…` bridges (forward delay 0, STP off, IPv6 off) and `vxlan-N`
//!   devices (dev = the interface holding `local_ip`, kernel-default UDP port, `proxy`
//!   with l2population, a group only in multicast mode).
//! * [`port`]: veth pairs whose namespace end is *born* in the namespace (`ns-`/`qr-`/
//!   `qg-` inside, `tap…` on the bridge), addresses, default routes, named namespaces
//!   made like iproute2's with `promote_secondaries` and `ip_forward`.
//! * [`l2pop`]: flood entries appended per remote VTEP, permanent neighbour + replaced FDB
//!   entry per remote port.
//! * [`uplink`]: a flat network's NIC moved under its bridge with addresses and routes,
//!   undone step by step if anything fails (a `sp_kernel::steps::Plan`).
//! * [`teardown`]: networks, ports and namespaces deleted in batches.
//! * [`show`]: what is there.
//!
//! The link primitives (set, ensure up / master, delete in one batch) and the reversible
//! steps are `sp_kernel`'s (`links`, `steps`), shared with `sp-ovs`.
//!
//! Every operation is `ensure`-style: it reads first and changes only what differs,
//! returning the [`Change`]s made (none on a second run).

mod error;
pub mod input;
pub mod l2pop;
pub mod network;
pub mod port;
pub mod show;
pub mod teardown;
pub mod uplink;

pub use error::{Error, Result};
pub use sp_kernel::{Change, Object, Setting};
