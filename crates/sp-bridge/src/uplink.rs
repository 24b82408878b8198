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

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::LinkUnspec;
use sp_kernel::attrs;
use sp_kernel::netlink::Netlink;

use crate::network::{require_link, set_link};
use crate::{input, Change, Error, Faults, Result};

/// `RTPROT_KERNEL`: routes the kernel derives from addresses; they follow the addresses.
const PROTO_KERNEL: u8 = 2;

/// One reversible kernel change.
#[derive(Debug, Clone)]
enum Step {
    AddAddress(AddressMessage),
    DelAddress(AddressMessage),
    AddRoute(RouteMessage),
    DelRoute(RouteMessage),
    SetMaster {
        link: u32,
        name: String,
        master: Option<u32>,
    },
    /// A `/proc/sys/net` value of this namespace.
    Sysctl {
        key: String,
        value: String,
    },
}

impl Step {
    fn undo(&self) -> Step {
        match self {
            Step::AddAddress(a) => Step::DelAddress(a.clone()),
            Step::DelAddress(a) => Step::AddAddress(a.clone()),
            Step::AddRoute(r) => Step::DelRoute(r.clone()),
            Step::DelRoute(r) => Step::AddRoute(r.clone()),
            Step::SetMaster { .. } | Step::Sysctl { .. } => {
                unreachable!("master and sysctl changes carry their own undo")
            }
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
            Step::AddRoute(r) => h.route().add(r.clone()).replace().execute().await,
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
        };
        res.map_err(|e| sp_kernel::Error::netlink(format!("{self:?}"), e).into())
    }
}

/// Global addresses of a link (scope universe), in kernel order.
async fn global_addresses(nl: &Netlink, index: u32) -> Result<Vec<AddressMessage>> {
    Ok(nl
        .addresses()
        .await?
        .into_iter()
        .filter(|a| a.header.index == index && u8::from(a.header.scope) == 0)
        .collect())
}

/// Main-table routes through a link that did not come from its addresses.
async fn routes_via(nl: &Netlink, index: u32) -> Result<Vec<RouteMessage>> {
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        out.extend(nl.routes(family).await?.into_iter().filter(|r| {
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

/// Runs `steps` in order; on failure undoes the done ones in reverse and reports both.
async fn run_all(nl: &Netlink, steps: Vec<(Step, Step)>, faults: &mut Faults) -> Result<()> {
    let mut done: Vec<Step> = Vec::new();
    for (step, undo) in steps {
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

fn pair(step: Step) -> (Step, Step) {
    let undo = step.undo();
    (step, undo)
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
    let addrs = global_addresses(nl, ni).await?;
    let routes = routes_via(nl, ni).await?;
    let enslaved = attrs::link_master(&link) == Some(bi);
    if enslaved && addrs.is_empty() && routes.is_empty() {
        return Ok(());
    }
    if addrs.is_empty() && !enslaved {
        return Err(Error::NoAddress(nic.to_owned()));
    }
    let mut steps = Vec::new();
    // The agent leaves IPv6 off on its bridges; IPv6 addresses of the NIC need it on.
    let key = format!("ipv6/conf/{bridge}/disable_ipv6");
    if addrs
        .iter()
        .any(|a| a.header.family == AddressFamily::Inet6)
        && sp_kernel::netns::read_net_sysctl(&key).is_ok_and(|v| v == "1")
    {
        steps.push((
            Step::Sysctl {
                key: key.clone(),
                value: "0".into(),
            },
            Step::Sysctl {
                key,
                value: "1".into(),
            },
        ));
    }
    for a in &addrs {
        steps.push(pair(Step::AddAddress(address_on(a, bi))));
    }
    for r in &routes {
        let m = attrs::route_metric(r);
        let metric = if m == 0 { 100 } else { m - 1 };
        steps.push(pair(Step::AddRoute(route_on(r, bi, metric))));
    }
    for r in &routes {
        steps.push(pair(Step::DelRoute(r.clone())));
    }
    for a in addrs.iter().rev() {
        steps.push(pair(Step::DelAddress(a.clone())));
    }
    if !enslaved {
        let old = attrs::link_master(&link);
        steps.push((
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
        ));
    }
    run_all(nl, steps, faults).await?;
    for a in &addrs {
        changes.push(Change::new(
            format!("address {}", describe(a)),
            format!("moved {nic} → {bridge}"),
        ));
    }
    for r in &routes {
        changes.push(Change::new(
            describe_route(r),
            format!("moved {nic} → {bridge}"),
        ));
    }
    if !enslaved {
        changes.push(Change::new(
            format!("link {nic}"),
            format!("enslaved to {bridge}"),
        ));
    }
    Ok(())
}

/// Reverses [`attach`]: the NIC leaves the bridge and gets the bridge's addresses and
/// routes back (same metrics). Not attached and nothing on the bridge: no change.
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
    let addrs = global_addresses(nl, bi).await?;
    let routes = routes_via(nl, bi).await?;
    if !enslaved && addrs.is_empty() && routes.is_empty() {
        return Ok(());
    }
    let mut steps = Vec::new();
    if enslaved {
        steps.push((
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
        ));
    }
    for a in &addrs {
        steps.push(pair(Step::AddAddress(address_on(a, ni))));
    }
    // Same metric: the replace takes the bridge's route over in place (same key), so
    // undoing it means putting the bridge's route back.
    for r in &routes {
        steps.push((
            Step::AddRoute(route_on(r, ni, attrs::route_metric(r))),
            Step::AddRoute(r.clone()),
        ));
    }
    for a in addrs.iter().rev() {
        steps.push(pair(Step::DelAddress(a.clone())));
    }
    run_all(nl, steps, faults).await?;
    // The routes were replaced in place (same key), so none is left on the bridge.
    for a in &addrs {
        changes.push(Change::new(
            format!("address {}", describe(a)),
            format!("moved {bridge} → {nic}"),
        ));
    }
    for r in &routes {
        changes.push(Change::new(
            describe_route(r),
            format!("moved {bridge} → {nic}"),
        ));
    }
    if enslaved {
        changes.push(Change::new(
            format!("link {nic}"),
            format!("released from {bridge}"),
        ));
    }
    Ok(())
}
