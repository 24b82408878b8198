//! The host NIC into an Open vSwitch bridge with its IP — what the packstack notes do by
//! hand with `ifcfg-eno1` (`TYPE=OVSPort`, `OVS_BRIDGE=br-ex`), `ifcfg-br-ex` and a network
//! restart, done live and undone on any failure.
//!
//! [`attach`] runs, in order:
//!
//! 1. `add-br` (only when the bridge is missing; `datapath_type` as asked), then waits
//!    until its internal interface exists in the kernel;
//! 2. the internal interface set up (if it is down);
//! 3. the NIC's global addresses added to the bridge, its routes (default included)
//!    replaced onto the bridge with the same metrics, its addresses deleted
//!    ([`Plan::move_ip`] with [`Metric::Same`]);
//! 4. the NIC added as a port of the bridge (or moved from another bridge when asked);
//! 5. the default gateways (IPv4, IPv6) pinged through the bridge (ICMP echo over a raw
//!    socket).
//!
//! Every step records its undo; a failure at any step undoes the steps done in reverse,
//! down to deleting the bridge if this call created it. [`detach`] is the reverse (the
//! bridge stays: it may carry Neutron's `qg-` ports). [`Faults`] lets tests fail at
//! every step.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use futures::FutureExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::RouteMessage;
use sp_kernel::attrs;
use sp_kernel::netlink::Netlink;
use sp_kernel::steps::{self, Custom, Metric, Moved, Plan, RolledBack, Step};
use sp_kernel::Setting;
pub use sp_kernel::{steps::Faults, Change as HostChange, Detail, Object};
use sp_names::IfName;

use crate::persist::HostIp;
use crate::state::State;
use sp_kernel::probe::echo;

use crate::{announce, BridgeSpec, Change, Error, Ovs, PortSpec};

/// How to attach.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// Datapath of a bridge this call creates (`netdev` without the kernel module).
    pub datapath_type: String,
    /// How long the gateway has to answer; `None` skips the check.
    pub gateway_timeout: Option<Duration>,
    /// A NIC that is a port of another bridge is moved instead of refused.
    pub move_from_other_bridge: bool,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            datapath_type: String::new(),
            gateway_timeout: Some(Duration::from_secs(5)),
            move_from_other_bridge: false,
        }
    }
}

/// A step that is not a netlink request, from an async closure failing with our error.
fn custom<'a, F, Fut>(what: String, f: F) -> Step<'a, Error>
where
    F: Fn() -> Fut + Send + Sync + 'a,
    Fut: Future<Output = Result<(), Error>> + Send + 'a,
{
    Step::Custom(Custom {
        what,
        run: Box::new(move || f().boxed()),
    })
}

/// The NIC: it must exist and not be enslaved to a Linux bridge or bond.
async fn nic_link(nl: &Netlink, nic: &str) -> Result<LinkMessage, Error> {
    IfName::check(nic)?;
    let link = nl
        .link_by_name(nic)?
        .ok_or_else(|| Error::NoDevice(nic.to_owned()))?;
    if let Some(master) = attrs::link_master(&link) {
        let links = nl.links()?;
        let name = links
            .iter()
            .find(|l| l.header.index == master)
            .and_then(attrs::link_name)
            .unwrap_or("?");
        // ovs-vswitchd's netdev ports are not kernel masters, so this is not OVS.
        return Err(Error::Enslaved {
            nic: nic.to_owned(),
            master: name.to_owned(),
        });
    }
    Ok(link)
}

/// Waits (up to `within`) until ovs-vswitchd has made the bridge's internal device.
async fn bridge_device(nl: &Netlink, bridge: &str, within: Duration) -> Result<LinkMessage, Error> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(link) = nl.link_by_name(bridge)? {
            return Ok(link);
        }
        if Instant::now() >= deadline {
            return Err(Error::NoBridgeDevice {
                bridge: bridge.to_owned(),
                after: within,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The IPv4 and IPv6 default gateways among `routes`.
fn default_gateways(routes: &[RouteMessage]) -> (Option<IpAddr>, Option<IpAddr>) {
    let gw = |v4: bool| {
        routes
            .iter()
            .filter(|r| r.header.destination_prefix_length == 0)
            .filter_map(attrs::route_gateway)
            .find(|g| g.is_ipv4() == v4)
    };
    (gw(true), gw(false))
}

/// Checks the names and reads the NIC, the OVS configuration and where the NIC's port
/// is: `None` (no port), `Some(bridge name)` (empty for a port on no bridge).
async fn read(
    ovs: &Ovs,
    nl: &Netlink,
    bridge: &str,
    nic: &str,
) -> Result<(LinkMessage, State, Option<String>), Error> {
    IfName::check(bridge)?;
    if bridge == nic {
        return Err(Error::InvalidName {
            name: bridge.to_owned(),
            reason: "the bridge and the NIC must be different devices",
        });
    }
    let link = nic_link(nl, nic).await?;
    let st = State::read(&ovs.client).await?;
    let owner = st
        .port(nic)
        .map(|(_, owner)| owner.map_or_else(String::new, |b| b.str("name").to_owned()));
    Ok((link, st, owner))
}

/// Adds a step that pings each gateway out of `device`, when asked; returns them.
fn push_gateway_checks<'a>(
    plan: &mut Plan<'a, Error>,
    (v4, v6): (Option<IpAddr>, Option<IpAddr>),
    device: &'a str,
    within: Option<Duration>,
) -> Vec<IpAddr> {
    let Some(within) = within else {
        return vec![];
    };
    let gateways: Vec<IpAddr> = [v4, v6].into_iter().flatten().collect();
    for &gw in &gateways {
        plan.push(
            custom(
                format!("check that gateway {gw} answers through {device}"),
                move || async move {
                    match echo::answers(gw, device, within).await {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(Error::GatewaySilent {
                            gateway: gw,
                            device: device.to_owned(),
                            after: within,
                        }),
                        Err(source) => Err(Error::GatewayCheck {
                            device: device.to_owned(),
                            source,
                        }),
                    }
                },
            ),
            Step::Nothing,
        );
    }
    gateways
}

/// `nic` as a port of `bridge`.
fn uplink(nic: &str, bridge: &str) -> Object {
    Object::Uplink {
        nic: nic.into(),
        bridge: bridge.into(),
    }
}

/// A gateway that answered pings through `device`.
fn answers(gateway: IpAddr, device: &str) -> HostChange {
    let detail = Detail {
        device: Some(device.to_owned()),
        ..Detail::default()
    };
    let said = format!("answers through {device}");
    HostChange::saying(Object::Gateway { ip: gateway }, "answers", detail, said)
}

/// Announces the moved IPv4 addresses on `link` by gratuitous ARP, so neighbours that
/// cached the old MAC switch at once. Best effort: one that misses it asks again when its
/// entry goes stale.
fn announce(link: &LinkMessage, moved: &Moved, changes: &mut Vec<HostChange>) {
    let Some(mac) = attrs::link_mac(link).and_then(|m| <[u8; 6]>::try_from(m).ok()) else {
        return;
    };
    let name = attrs::link_name(link).unwrap_or("?");
    for a in &moved.addresses {
        let Some(Ok(ip)) = a.split('/').next().map(str::parse::<Ipv4Addr>) else {
            continue;
        };
        let object = Object::address(ip, None);
        let on = |error: Option<String>| Detail {
            device: Some(name.to_owned()),
            error,
            ..Detail::default()
        };
        changes.push(match announce::gratuitous_arp(link.header.index, mac, ip) {
            Ok(()) => HostChange::saying(
                object,
                "announced",
                on(None),
                format!("announced on {name} (gratuitous ARP)"),
            ),
            Err(e) => HostChange::saying(
                object,
                "not announced",
                on(Some(e.to_string())),
                format!("not announced on {name}: {e}"),
            ),
        });
    }
}

/// Folds a failure after the bridge was created, and the bridge's deletion, into one
/// rolled-back error.
fn undo_created(e: Error, deleted: Result<Change, Error>) -> Error {
    let (cause, mut rollback) = match e {
        Error::RolledBack(r) => (r.cause, r.rollback),
        other => (other, vec![]),
    };
    if let Err(d) = deleted {
        rollback.push(d);
    }
    Error::RolledBack(Box::new(RolledBack { cause, rollback }))
}

/// `ovs-attach BRIDGE NIC` (see the module docs). A second run changes nothing.
pub async fn attach(
    ovs: &Ovs,
    nl: &Netlink,
    bridge: &str,
    nic: &str,
    opts: &AttachOptions,
    faults: &mut Faults,
) -> Result<Vec<HostChange>, Error> {
    let (link, st, owner) = read(ovs, nl, bridge, nic).await?;
    if let Some(other) = owner.as_deref().filter(|o| *o != bridge) {
        if !opts.move_from_other_bridge {
            return Err(Error::PortOnOtherBridge {
                port: nic.to_owned(),
                bridge: bridge.to_owned(),
                other: other.to_owned(),
            });
        }
    }
    let is_port = owner.as_deref() == Some(bridge);
    let index = link.header.index;
    let has_addresses = !steps::global_addresses(nl, index)?.is_empty();
    let existing = nl.link_by_name(bridge)?;
    // A run killed after the move but before the port: the bridge holds the IP already.
    let bridge_has_addresses = match &existing {
        Some(b) => !steps::global_addresses(nl, b.header.index)?.is_empty(),
        None => false,
    };
    if !has_addresses && !is_port && !bridge_has_addresses {
        return Err(Error::NoAddress {
            nic: nic.to_owned(),
            bridge: bridge.to_owned(),
        });
    }
    let mut changes = Vec::new();
    let created = st.bridge(bridge).is_none();
    if created {
        let spec = BridgeSpec {
            datapath_type: opts.datapath_type.clone(),
            may_exist: true,
            fail_mode: None,
        };
        let within = ovs.timeout();
        let mut plan: Plan<Error> = Plan::new();
        plan.push(
            custom(format!("create bridge {bridge}"), move || {
                let spec = spec.clone();
                async move {
                    ovs.add_br(bridge, &spec).await?;
                    bridge_device(nl, bridge, within).await.map(drop)
                }
            }),
            custom(format!("delete bridge {bridge}"), move || async move {
                ovs.del_br(bridge, true).await.map(drop)
            }),
        );
        plan.run(nl, faults).await?;
        changes.push(HostChange::new(Object::bridge(bridge), "created"));
    } else if is_port && !has_addresses && existing.as_ref().is_some_and(attrs::link_is_up) {
        return Ok(changes);
    }
    let res = move_and_plug(
        ovs,
        nl,
        bridge,
        nic,
        &link,
        owner,
        opts,
        faults,
        &mut changes,
    )
    .await;
    match res {
        Ok(()) => Ok(changes),
        Err(e) if created => Err(undo_created(e, ovs.del_br(bridge, true).await)),
        Err(e) => Err(e),
    }
}

/// Steps 2–5 of [`attach`], once the bridge's device exists.
#[allow(clippy::too_many_arguments)]
async fn move_and_plug(
    ovs: &Ovs,
    nl: &Netlink,
    bridge: &str,
    nic: &str,
    link: &LinkMessage,
    owner: Option<String>,
    opts: &AttachOptions,
    faults: &mut Faults,
    changes: &mut Vec<HostChange>,
) -> Result<(), Error> {
    let br = bridge_device(nl, bridge, ovs.timeout()).await?;
    let bi = br.header.index;
    let routes = steps::routes_via(nl, link.header.index)?;
    // After a run killed midway the default routes may be on the bridge already.
    let gateways = match default_gateways(&routes) {
        (None, None) => default_gateways(&steps::routes_via(nl, bi)?),
        found => found,
    };
    let mut plan: Plan<Error> = Plan::new();
    let was_down = !attrs::link_is_up(&br);
    if was_down {
        plan.push(
            Step::SetUp {
                link: bi,
                name: bridge.into(),
                up: true,
            },
            Step::SetUp {
                link: bi,
                name: bridge.into(),
                up: false,
            },
        );
    }
    let moved = plan.move_ip(nl, link, &br, Metric::Same)?;
    let plugged = owner.as_deref() != Some(bridge);
    if plugged {
        let spec = PortSpec {
            move_from_other_bridge: opts.move_from_other_bridge,
            may_exist: true,
            ..PortSpec::new(nic, "")
        };
        let back = spec.clone();
        let undo = match owner.clone().filter(|o| !o.is_empty()) {
            Some(from) => custom(format!("move port {nic} back to {from}"), move || {
                let (from, spec) = (from.clone(), back.clone());
                async move { ovs.add_port(&from, &spec).await.map(drop) }
            }),
            None => custom(
                format!("delete port {nic} from {bridge}"),
                move || async move { ovs.del_port(Some(bridge), nic, true).await.map(drop) },
            ),
        };
        plan.push(
            custom(format!("add port {nic} to {bridge}"), move || {
                let spec = spec.clone();
                async move { ovs.add_port(bridge, &spec).await.map(drop) }
            }),
            undo,
        );
    }
    let checked = push_gateway_checks(&mut plan, gateways, bridge, opts.gateway_timeout);
    if plan.is_empty() {
        return Ok(());
    }
    plan.run(nl, faults).await?;
    if was_down {
        changes.push(HostChange::set(
            Object::link(bridge),
            Setting::State { value: "up" },
        ));
    }
    moved.report(nic, bridge, changes);
    if plugged {
        let to = Detail {
            to: Some(bridge.to_owned()),
            ..Detail::default()
        };
        changes.push(match owner.filter(|o| !o.is_empty()) {
            Some(from) => HostChange::saying(
                uplink(nic, bridge),
                "moved",
                Detail {
                    from: Some(from.clone()),
                    ..to
                },
                format!("moved to bridge {bridge} from bridge {from}"),
            ),
            None => HostChange::saying(
                uplink(nic, bridge),
                "added",
                to,
                format!("added to bridge {bridge}"),
            ),
        });
    }
    for gw in checked {
        changes.push(answers(gw, bridge));
    }
    announce(&br, &moved, changes);
    Ok(())
}

/// `ovs-attach --detach BRIDGE NIC`: the port leaves the bridge and the bridge's
/// addresses and routes go back onto the NIC (same metrics); the gateway is checked
/// through the NIC. The bridge stays. Already detached: no change.
pub async fn detach(
    ovs: &Ovs,
    nl: &Netlink,
    bridge: &str,
    nic: &str,
    opts: &AttachOptions,
    faults: &mut Faults,
) -> Result<Vec<HostChange>, Error> {
    let (link, _, owner) = read(ovs, nl, bridge, nic).await?;
    if let Some(other) = owner.as_deref().filter(|o| *o != bridge) {
        return Err(Error::PortNotOnBridge {
            port: nic.to_owned(),
            bridge: bridge.to_owned(),
            actual: other.to_owned(),
        });
    }
    let is_port = owner.is_some();
    let br = nl.link_by_name(bridge)?;
    let mut plan: Plan<Error> = Plan::new();
    if is_port {
        plan.push(
            custom(
                format!("delete port {nic} from {bridge}"),
                move || async move { ovs.del_port(Some(bridge), nic, true).await.map(drop) },
            ),
            custom(
                format!("add port {nic} back to {bridge}"),
                move || async move {
                    let spec = PortSpec {
                        may_exist: true,
                        ..PortSpec::new(nic, "")
                    };
                    ovs.add_port(bridge, &spec).await.map(drop)
                },
            ),
        );
    }
    let mut moved = Moved::default();
    let mut gateways = (None, None);
    if let Some(br) = &br {
        gateways = default_gateways(&steps::routes_via(nl, br.header.index)?);
        moved = plan.move_ip(nl, br, &link, Metric::Same)?;
    }
    if plan.is_empty() {
        return Ok(vec![]);
    }
    let checked = push_gateway_checks(&mut plan, gateways, nic, opts.gateway_timeout);
    plan.run(nl, faults).await?;
    let mut changes = Vec::new();
    if is_port {
        let from = Detail {
            from: Some(bridge.to_owned()),
            ..Detail::default()
        };
        changes.push(HostChange::saying(
            uplink(nic, bridge),
            "deleted",
            from,
            format!("deleted from bridge {bridge}"),
        ));
    }
    moved.report(bridge, nic, &mut changes);
    for gw in checked {
        changes.push(answers(gw, nic));
    }
    announce(&link, &moved, &mut changes);
    Ok(changes)
}

/// Whether an address was handed out with a lifetime (DHCP), not configured for good.
fn is_dynamic(a: &AddressMessage) -> bool {
    a.attributes
        .iter()
        .any(|x| matches!(x, AddressAttribute::CacheInfo(c) if c.ifa_valid != u32::MAX))
}

/// The host IP configuration for [`HostIp::render`]: read live from the NIC, or from the
/// bridge once attached. `datapath_type` overrides the bridge's own (when `ovs` is given
/// and knows the bridge).
pub async fn host_ip(
    ovs: Option<&Ovs>,
    nl: &Netlink,
    bridge: &str,
    nic: &str,
    datapath_type: Option<&str>,
) -> Result<HostIp, Error> {
    IfName::check(bridge)?;
    let link = nl
        .link_by_name(nic)?
        .ok_or_else(|| Error::NoDevice(nic.to_owned()))?;
    let mut holder = link.header.index;
    let mut addrs = steps::global_addresses(nl, holder)?;
    if addrs.is_empty() {
        if let Some(br) = nl.link_by_name(bridge)? {
            holder = br.header.index;
            addrs = steps::global_addresses(nl, holder)?;
        }
    }
    if addrs.is_empty() {
        return Err(Error::NoAddress {
            nic: nic.to_owned(),
            bridge: bridge.to_owned(),
        });
    }
    let (gateway, gateway6) = default_gateways(&steps::routes_via(nl, holder)?);
    let datapath_type = match (datapath_type, ovs) {
        (Some(d), _) => d.to_owned(),
        (None, Some(ovs)) => State::read(&ovs.client)
            .await?
            .bridge(bridge)
            .map(|b| b.str("datapath_type").to_owned())
            .unwrap_or_default(),
        (None, None) => String::new(),
    };
    let mac = attrs::link_mac(&link)
        .unwrap_or_default()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok(HostIp {
        bridge: bridge.to_owned(),
        nic: nic.to_owned(),
        mac,
        addresses: addrs
            .iter()
            .filter_map(|a| ipnet::IpNet::new(attrs::address_ip(a)?, a.header.prefix_len).ok())
            .collect(),
        gateway,
        gateway6,
        dhcp: addrs.iter().any(is_dynamic),
        datapath_type,
    })
}
