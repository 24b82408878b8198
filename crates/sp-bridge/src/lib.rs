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
//!   undone step by step if anything fails.
//! * [`teardown`]: networks, ports and namespaces deleted in batches.
//! * [`show`]: what is there.
//!
//! Every operation is `ensure`-style: it reads first and changes only what differs,
//! returning the [`Change`]s made (none on a second run).

pub mod error;
pub mod input;
pub mod l2pop;
pub mod network;
pub mod port;
pub mod show;
pub mod teardown;
pub mod uplink;

pub use error::{Error, Result};
pub use sp_kernel::Change;

use std::collections::BTreeMap;

use netlink_packet_route::link::LinkMessage;
use sp_kernel::attrs;
use sp_kernel::netlink::Netlink;

/// One dump of a namespace's links, by name and by index: the steps of one run look
/// links up here instead of asking the kernel once per link (a dump costs about what
/// fifty single queries do). Valid until something adds or removes a link.
#[derive(Debug, Default)]
pub struct Links {
    by_name: BTreeMap<String, LinkMessage>,
    names: BTreeMap<u32, String>,
}

impl Links {
    pub fn read(nl: &Netlink) -> Result<Links> {
        let mut out = Links::default();
        for l in nl.links()? {
            if let Some(n) = attrs::link_name(&l).map(str::to_owned) {
                out.names.insert(l.header.index, n.clone());
                out.by_name.insert(n, l);
            }
        }
        Ok(out)
    }

    pub fn get(&self, name: &str) -> Option<&LinkMessage> {
        self.by_name.get(name)
    }

    /// The name of link `index`.
    pub fn name(&self, index: u32) -> Option<&str> {
        self.names.get(&index).map(String::as_str)
    }
}

/// Counts the kernel-changing steps of an operation and fails on purpose at one of
/// them. Production code passes [`Faults::none`]; tests use [`Faults::at`] to prove that
/// a failure at any step is rolled back completely.
#[derive(Debug, Default)]
pub struct Faults {
    fail_at: Option<usize>,
    steps: usize,
}

impl Faults {
    /// Never fails.
    pub fn none() -> Self {
        Self::default()
    }

    /// Fails before the `n`th kernel-changing step (0-based).
    pub fn at(n: usize) -> Self {
        Faults {
            fail_at: Some(n),
            steps: 0,
        }
    }

    /// Called before each kernel-changing step.
    pub fn step(&mut self) -> Result<()> {
        let n = self.steps;
        self.steps += 1;
        if self.fail_at == Some(n) {
            return Err(Error::Injected(n));
        }
        Ok(())
    }

    /// How many steps were taken.
    pub fn steps(&self) -> usize {
        self.steps
    }
}
