//! A flat provider network's uplink (`physical_interface_mappings = public:eth0`): the
//! NIC goes under the network's bridge and its addresses and routes move onto the
//! bridge, in the Linux bridge agent's order —
//!
//! 1. each global address added to the bridge;
//! 2. each route of the NIC replaced onto the bridge (metric m−1, or 100 when it had none);
//! 3. the NIC's old routes deleted;
//! 4. the NIC's addresses deleted;
//! 5. the NIC enslaved to the bridge (released from another bridge first).
//!
//! Detach runs the reverse. Every step records how to undo it; if any step fails, the
//! steps done are undone in reverse order, so the host is never left without its
//! address or its default route. [`Faults`] lets tests fail at every step.

use futures::future::BoxFuture;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::{RouteAttribute, RouteFlags, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::LinkUnspec;
use sp_kernel::attrs;
use sp_kernel::netlink::Netlink;

use crate::network::{require_link, set_link};
use crate::{input, Change, Error, Faults, Result};

/// `RTPROT_KERNEL`: routes the kernel derives from addresses; they follow the addresses.
const PROTO_KERNEL: u8 = 2;

/// A step that is not a netlink request (an OVSDB transaction, a reachability check):
/// a description and the work itself.
pub struct Custom<'a> {
    pub what: String,
    pub run: Box<dyn Fn() -> BoxFuture<'a, Result<()>> + Send + Sync + 'a>,
}

/// One reversible change.
pub enum Step<'a> {
    AddAddress(AddressMessage),
    DelAddress(AddressMessage),
    AddRoute(RouteMessage),
    DelRoute(RouteMessage),
    /// Enslaves `link` to `master` (`None`: releases it).
    SetMaster {
        link: u32,
        name: String,
        master: Option<u32>,
    },
    /// Sets a link administratively up or down.
    SetUp {
        link: u32,
        name: String,
        up: bool,
    },
    /// A `/proc/sys/net` value of this namespace.
    Sysctl {
        key: String,
        value: String,
    },
    Custom(Custom<'a>),
    /// Nothing (the undo of a check).
    Nothing,
}

impl std::fmt::Debug for Step<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::AddAddress(a) => {
                write!(f, "add address {} (link {})", describe(a), a.header.index)
            }
            Step::DelAddress(a) => write!(
                f,
                "delete address {} (link {})",
                describe(a),
                a.header.index
            ),
            Step::AddRoute(r) => write!(f, "add {}", describe_route(r)),
            Step::DelRoute(r) => write!(f, "delete {}", describe_route(r)),
            Step::SetMaster { name, master, .. } => write!(f, "set master of {name} to {master:?}"),
            Step::SetUp { name, up, .. } => {
                write!(f, "set {name} {}", if *up { "up" } else { "down" })
            }
            Step::Sysctl { key, value } => write!(f, "{key}={value}"),
            Step::Custom(c) => f.write_str(&c.what),
            Step::Nothing => f.write_str("nothing"),
        }
    }
}

impl Step<'_> {
    /// The inverse of an address or route step.
    fn inverse<'b>(&self) -> Step<'b> {
        match self {
            Step::AddAddress(a) => Step::DelAddress(a.clone()),
            Step::DelAddress(a) => Step::AddAddress(a.clone()),
            Step::AddRoute(r) => Step::DelRoute(r.clone()),
            Step::DelRoute(r) => Step::AddRoute(r.clone()),
            other => unreachable!("{other:?} carries its own undo"),
        }
    }

    async fn run(&self, nl: &Netlink) -> Result<()> {
        let h = nl.handle();
        let res = match self {
            Step::AddAddress(a) => {
                let msg = RouteNetlinkMessage::NewAddress(a.clone());
                return Ok(nl
                    .ack(msg, NLM_F_CREATE | NLM_F_EXCL, || format!("{self:?}"))
                    .await?);
            }
            Step::DelAddress(a) => h.address().del(a.clone()).execute().await,
            Step::AddRoute(r) => {
                // A dumped route carries state flags (LINKDOWN when the NIC has no
                // carrier) that the kernel refuses in a request (EINVAL): keep onlink.
                let mut r = r.clone();
                r.header.flags &= RouteFlags::Onlink;
                h.route().add(r).replace().execute().await
            }
            Step::DelRoute(r) => h.route().del(r.clone()).execute().await,
            Step::Sysctl { key, value } => {
                return Ok(sp_kernel::netns::write_net_sysctl(key, value)?)
            }
            Step::SetMaster { link, name, master } => {
                let b = LinkUnspec::new_with_index(*link);
                let msg = match master {
                    Some(m) => b.controller(*m).build(),
                    None => b.nocontroller().build(),
                };
                return set_link(nl, msg, name, "change master of").await;
            }
            Step::SetUp { link, name, up } => {
                let b = LinkUnspec::new_with_index(*link);
                let msg = if *up { b.up() } else { b.down() }.build();
                return set_link(nl, msg, name, "set up/down").await;
            }
            Step::Custom(c) => return (c.run)().await,
            Step::Nothing => return Ok(()),
        };
        res.map_err(|e| sp_kernel::Error::netlink(format!("{self:?}"), e).into())
    }
}

/// Global addresses of a link (scope universe), in kernel order.
pub async fn global_addresses(nl: &Netlink, index: u32) -> Result<Vec<AddressMessage>> {
    Ok(nl
        .addresses()?
        .into_iter()
        .filter(|a| a.header.index == index && u8::from(a.header.scope) == 0)
        .collect())
}

/// Main-table routes through a link that did not come from its addresses.
pub async fn routes_via(nl: &Netlink, index: u32) -> Result<Vec<RouteMessage>> {
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        out.extend(nl.routes(family)?.into_iter().filter(|r| {
            attrs::route_oif(r) == Some(index)
                && attrs::route_table(r) == 254
                && u8::from(r.header.protocol) != PROTO_KERNEL
                && u8::from(r.header.kind) == 1
        }));
    }
    Ok(out)
}

/// The same address on another link (label and lifetimes dropped).
fn address_on(a: &AddressMessage, index: u32) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header = a.header.clone();
    m.header.index = index;
    m.attributes = a
        .attributes
        .iter()
        .filter(|x| {
            matches!(
                x,
                AddressAttribute::Address(_)
                    | AddressAttribute::Local(_)
                    | AddressAttribute::Broadcast(_)
            )
        })
        .cloned()
        .collect();
    m
}

/// The same route through another link with metric `metric`.
fn route_on(r: &RouteMessage, index: u32, metric: u32) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header = r.header.clone();
    m.attributes = r
        .attributes
        .iter()
        .filter(|x| {
            matches!(
                x,
                RouteAttribute::Destination(_)
                    | RouteAttribute::Gateway(_)
                    | RouteAttribute::PrefSource(_)
                    | RouteAttribute::Table(_)
                    | RouteAttribute::Metrics(_)
            )
        })
        .cloned()
        .collect();
    m.attributes.push(RouteAttribute::Oif(index));
    if metric != 0 {
        m.attributes.push(RouteAttribute::Priority(metric));
    }
    m
}

/// How a moved route's metric is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// The Linux bridge agent's rule: m − 1, or 100 when the route had none, so the
    /// new route wins while both exist.
    Agent,
    /// Unchanged: the replace takes the old route over in place (same key).
    Same,
    /// The inverse of [`Metric::Agent`], for moving back: 100 → none, m → m + 1. So an
    /// attach and a detach leave the route as it was (but for an original metric of
    /// 101, which comes back as none).
    Unagent,
}

/// What a [`Plan::move_ip`] will move, for reporting.
#[derive(Debug, Clone, Default)]
pub struct Moved {
    pub addresses: Vec<String>,
    pub routes: Vec<String>,
}

/// An ordered list of reversible steps: run in order, and on any failure the steps
/// done are undone in reverse, so nothing is left half-done.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    steps: Vec<(Step<'a>, Step<'a>)>,
}

impl<'a> Plan<'a> {
    pub fn new() -> Self {
        Plan { steps: Vec::new() }
    }

    /// Appends a step and its undo.
    pub fn push(&mut self, step: Step<'a>, undo: Step<'a>) {
        self.steps.push((step, undo));
    }

    /// Appends an address or route step; its undo is its inverse.
    fn push_inverse(&mut self, step: Step<'a>) {
        let undo = step.inverse();
        self.steps.push((step, undo));
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Moves `from`'s global addresses and its routes onto `to`, in the agent's order:
    /// (IPv6 on for `to` when it is off and IPv6 addresses come,) addresses added to
    /// `to`, routes replaced onto `to`, `from`'s routes deleted, `from`'s addresses
    /// deleted (last first, so the primary goes last). An address already on `to` is
    /// not added again, so a run killed midway is finished by the next.
    pub async fn move_ip(
        &mut self,
        nl: &Netlink,
        from: &LinkMessage,
        to: &LinkMessage,
        metric: Metric,
    ) -> Result<Moved> {
        let (fi, ti) = (from.header.index, to.header.index);
        let addrs = global_addresses(nl, fi).await?;
        let routes = routes_via(nl, fi).await?;
        let to_name = attrs::link_name(to).unwrap_or_default();
        let key = format!("ipv6/conf/{to_name}/disable_ipv6");
        if addrs
            .iter()
            .any(|a| a.header.family == AddressFamily::Inet6)
            && sp_kernel::netns::read_net_sysctl(&key).is_ok_and(|v| v == "1")
        {
            self.push(
                Step::Sysctl {
                    key: key.clone(),
                    value: "0".into(),
                },
                Step::Sysctl {
                    key,
                    value: "1".into(),
                },
            );
        }
        // Already on `to` (a run killed midway): neither added nor, on undo, deleted.
        let there: Vec<String> = global_addresses(nl, ti)
            .await?
            .iter()
            .map(describe)
            .collect();
        for a in addrs.iter().filter(|a| !there.contains(&describe(a))) {
            self.push_inverse(Step::AddAddress(address_on(a, ti)));
        }
        for r in &routes {
            let m = attrs::route_metric(r);
            match metric {
                Metric::Agent => {
                    let m = if m == 0 { 100 } else { m - 1 };
                    self.push_inverse(Step::AddRoute(route_on(r, ti, m)));
                }
                Metric::Unagent => {
                    let m = if m == 100 { 0 } else { m + 1 };
                    self.push_inverse(Step::AddRoute(route_on(r, ti, m)));
                }
                // The replace takes the old route over in place, so undoing it means
                // putting the old route back.
                Metric::Same => self.push(
                    Step::AddRoute(route_on(r, ti, m)),
                    Step::AddRoute(r.clone()),
                ),
            }
        }
        if metric != Metric::Same {
            for r in &routes {
                self.push_inverse(Step::DelRoute(r.clone()));
            }
        }
        for a in addrs.iter().rev() {
            self.push_inverse(Step::DelAddress(a.clone()));
        }
        Ok(Moved {
            addresses: addrs.iter().map(describe).collect(),
            routes: routes.iter().map(describe_route).collect(),
        })
    }

    /// Runs the plan; on failure undoes what was done, in reverse, and reports both
    /// the cause and any undo that failed.
    pub async fn run(self, nl: &Netlink, faults: &mut Faults) -> Result<()> {
        let mut done: Vec<Step<'a>> = Vec::new();
        for (step, undo) in self.steps {
            let res = match faults.step() {
                Ok(()) => step.run(nl).await,
                Err(e) => Err(e),
            };
            if let Err(cause) = res {
                let mut rollback = Vec::new();
                for u in done.iter().rev() {
                    if let Err(e) = u.run(nl).await {
                        rollback.push(e);
                    }
                }
                return Err(Error::RolledBack {
                    cause: Box::new(cause),
                    rollback,
                });
            }
            done.push(undo);
        }
        Ok(())
    }
}

async fn bridge_and_nic(
    nl: &Netlink,
    bridge: &str,
    nic: &str,
) -> Result<(LinkMessage, LinkMessage)> {
    input::ifname(bridge)?;
    input::ifname(nic)?;
    let br = require_link(nl, bridge).await?;
    if attrs::link_kind(&br) != Some(&netlink_packet_route::link::InfoKind::Bridge) {
        return Err(Error::WrongKind {
            name: bridge.into(),
            found: attrs::link_kind(&br).map_or("device".into(), |k| k.to_string()),
            wanted: "bridge",
        });
    }
    let link = require_link(nl, nic).await?;
    Ok((br, link))
}

fn describe(a: &AddressMessage) -> String {
    let ip = attrs::address_ip(a).map_or("?".into(), |ip| ip.to_string());
    format!("{ip}/{}", a.header.prefix_len)
}

fn describe_route(r: &RouteMessage) -> String {
    let dst = if r.header.destination_prefix_length == 0 {
        "default".to_owned()
    } else {
        format!("route /{}", r.header.destination_prefix_length)
    };
    match attrs::route_gateway(r) {
        Some(gw) => format!("{dst} via {gw}"),
        None => dst,
    }
}

/// Attaches `nic` to `bridge` with its addresses and routes (see the module docs).
/// Already attached with nothing left on the NIC: no change.
pub async fn attach(
    nl: &Netlink,
    bridge: &str,
    nic: &str,
    faults: &mut Faults,
    changes: &mut Vec<Change>,
) -> Result<()> {
    let (br, link) = bridge_and_nic(nl, bridge, nic).await?;
    let (bi, ni) = (br.header.index, link.header.index);
    let enslaved = attrs::link_master(&link) == Some(bi);
    let mut plan = Plan::new();
    let moved = plan.move_ip(nl, &link, &br, Metric::Agent).await?;
    if enslaved && plan.is_empty() {
        return Ok(());
    }
    if moved.addresses.is_empty() && !enslaved {
        return Err(Error::NoAddress(nic.to_owned()));
    }
    if !enslaved {
        let old = attrs::link_master(&link);
        plan.push(
            Step::SetMaster {
                link: ni,
                name: nic.into(),
                master: Some(bi),
            },
            Step::SetMaster {
                link: ni,
                name: nic.into(),
                master: old,
            },
        );
    }
    plan.run(nl, faults).await?;
    report(&moved, nic, bridge, changes);
    if !enslaved {
        changes.push(Change::new(
            format!("link {nic}"),
            format!("enslaved to {bridge}"),
        ));
    }
    Ok(())
}

/// Records what a move did.
pub fn report(moved: &Moved, from: &str, to: &str, changes: &mut Vec<Change>) {
    for a in &moved.addresses {
        changes.push(Change::new(
            format!("address {a}"),
            format!("moved {from} → {to}"),
        ));
    }
    for r in &moved.routes {
        changes.push(Change::new(r.clone(), format!("moved {from} → {to}")));
    }
}

/// Reverses [`attach`]: the NIC leaves the bridge and gets the bridge's addresses and
/// routes back, metrics as they were before the attach ([`Metric::Unagent`]). Not
/// attached and nothing on the bridge: no change.
pub async fn detach(
    nl: &Netlink,
    bridge: &str,
    nic: &str,
    faults: &mut Faults,
    changes: &mut Vec<Change>,
) -> Result<()> {
    let (br, link) = bridge_and_nic(nl, bridge, nic).await?;
    let (bi, ni) = (br.header.index, link.header.index);
    let enslaved = attrs::link_master(&link) == Some(bi);
    let mut plan = Plan::new();
    if enslaved {
        plan.push(
            Step::SetMaster {
                link: ni,
                name: nic.into(),
                master: None,
            },
            Step::SetMaster {
                link: ni,
                name: nic.into(),
                master: Some(bi),
            },
        );
    }
    let moved = plan.move_ip(nl, &br, &link, Metric::Unagent).await?;
    if plan.is_empty() {
        return Ok(());
    }
    // IPv6 was switched on for the NIC's IPv6 addresses: off again, as the agent keeps it.
    let key = format!("ipv6/conf/{bridge}/disable_ipv6");
    if moved.addresses.iter().any(|a| a.contains(':'))
        && sp_kernel::netns::read_net_sysctl(&key).is_ok_and(|v| v == "0")
    {
        plan.push(
            Step::Sysctl {
                key: key.clone(),
                value: "1".into(),
            },
            Step::Sysctl {
                key,
                value: "0".into(),
            },
        );
    }
    plan.run(nl, faults).await?;
    report(&moved, bridge, nic, changes);
    if enslaved {
        changes.push(Change::new(
            format!("link {nic}"),
            format!("released from {bridge}"),
        ));
    }
    Ok(())
}
