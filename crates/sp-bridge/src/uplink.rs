//! A flat provider network's uplink (`physical_interface_mappings = public:eth0`): the
//! NIC goes under the network's bridge and its addresses and routes move onto the
//! bridge, in the Linux bridge agent's order —
//!
//! 1. each global address added to the bridge;
//! 2. each route of the NIC replaced onto the bridge (metric m−1, or 100 when it had none);
//! 3. the NIC's old routes deleted;
//! 4. the NIC's addresses deleted;
//! 5. the NIC enslaved to the bridge (released from another bridge first);
//! 6. each default gateway pinged through the bridge (ICMP echo out of it, as
//!    `ovs-attach` checks): one that does not answer undoes the move.
//!
//! Detach runs the reverse. Every step records how to undo it; if any step fails, the
//! steps done are undone in reverse order, so the host is never left without its
//! address or its default route (a [`Plan`] of `sp_kernel::steps`). [`Faults`] lets tests
//! fail at every step.

use netlink_packet_route::link::LinkMessage;
use sp_kernel::attrs;
use sp_kernel::links::require_link;
use sp_kernel::netlink::Netlink;
use std::net::IpAddr;
use std::time::Duration;

use futures::FutureExt;
use sp_kernel::probe::echo;
use sp_kernel::steps::{self, Custom, Faults, Metric, Plan, RolledBack, Step};
use sp_names::IfName;

use crate::{Change, Error, Object, Result, Setting};

/// How long a default gateway has to answer through the bridge after the move.
pub const GATEWAY_TIMEOUT: Duration = Duration::from_secs(5);

async fn bridge_and_nic(
    nl: &Netlink,
    bridge: &str,
    nic: &str,
) -> Result<(LinkMessage, LinkMessage)> {
    IfName::check(bridge)?;
    IfName::check(nic)?;
    let br = require_link(nl, bridge)?;
    if attrs::bridge(&br).is_none() {
        return Err(Error::WrongKind {
            name: bridge.into(),
            found: attrs::link_kind_word(&br),
            wanted: "bridge",
        });
    }
    let link = require_link(nl, nic)?;
    Ok((br, link))
}

/// Attaches `nic` to `bridge` with its addresses and routes (see the module docs).
/// Already attached with nothing left on the NIC: no change.
/// `gateway_timeout`: how long each default gateway has to answer through the bridge
/// after the move (`None`: not checked).
pub async fn attach(
    nl: &Netlink,
    bridge: &str,
    nic: &str,
    gateway_timeout: Option<Duration>,
    faults: &mut Faults,
    changes: &mut Vec<Change>,
) -> Result<()> {
    let (br, link) = bridge_and_nic(nl, bridge, nic).await?;
    let (bi, ni) = (br.header.index, link.header.index);
    let enslaved = attrs::link_master(&link) == Some(bi);
    let gateways: Vec<IpAddr> = steps::routes_via(nl, ni)?
        .iter()
        .filter(|r| r.header.destination_prefix_length == 0)
        .filter_map(attrs::route_gateway)
        .collect();
    let mut plan: Plan<Error> = Plan::new();
    // The bridge takes the NIC's MAC, set (not inherited): a bridge left to choose takes
    // the lowest of its ports', so the host's address would change MAC on the segment
    // whenever a port comes or goes.
    let mac = |l: &LinkMessage| attrs::link_mac(l).and_then(|m| <[u8; 6]>::try_from(m).ok());
    let mut mac_set = None;
    if let (Some(want), Some(old)) = (mac(&link), mac(&br)) {
        if want != old {
            mac_set = Some(want);
            plan.push(
                Step::SetMac {
                    link: bi,
                    name: bridge.into(),
                    mac: want,
                },
                Step::SetMac {
                    link: bi,
                    name: bridge.into(),
                    mac: old,
                },
            );
        }
    }
    let moved = plan.move_ip(nl, &link, &br, Metric::Agent)?;
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
    if let Some(within) = gateway_timeout {
        for gw in gateways {
            plan.push(
                Step::Custom(Custom {
                    what: format!("check that gateway {gw} answers through {bridge}"),
                    run: Box::new(move || {
                        async move {
                            match echo::answers(gw, bridge, within).await {
                                Ok(true) => Ok(()),
                                Ok(false) => Err(Error::GatewaySilent {
                                    gateway: gw,
                                    device: bridge.to_owned(),
                                    after: within,
                                }),
                                Err(source) => Err(Error::GatewayCheck {
                                    device: bridge.to_owned(),
                                    source,
                                }),
                            }
                        }
                        .boxed()
                    }),
                }),
                Step::Nothing,
            );
        }
    }
    plan.run(nl, faults).await?;
    if let Some(mac) = mac_set {
        changes.push(Change::set(
            Object::link(bridge),
            Setting::Mac {
                value: attrs::mac_text(&mac),
                of: Some(nic.into()),
            },
        ));
    }
    moved.report(nic, bridge, changes);
    if !enslaved {
        changes.push(Change::set(
            Object::link(nic),
            Setting::Master {
                value: bridge.into(),
            },
        ));
    }
    Ok(())
}

/// A flat network as `bridgectl ensure-network --uplink NIC` makes it: its bridge, with
/// `nic` moved under it ([`attach`]). The NIC must exist before anything is made; when
/// the attach fails, a bridge this call made is deleted again, so nothing is left.
pub async fn ensure_flat(
    nl: &Netlink,
    network_id: &str,
    nic: &str,
    gateway_timeout: Option<Duration>,
    faults: &mut Faults,
    changes: &mut Vec<Change>,
) -> Result<crate::network::Network> {
    IfName::check(nic)?;
    require_link(nl, nic)?;
    let mut made = Vec::new();
    let net = crate::network::ensure_network(nl, network_id, None, &mut made).await?;
    if let Err(cause) = attach(nl, &net.bridge, nic, gateway_timeout, faults, &mut made).await {
        // Deleted again only when this call created it.
        let rollback = match !net.created {
            true => vec![],
            false => sp_kernel::links::delete_link(nl, &net.bridge)
                .await
                .err()
                .map(Error::from)
                .into_iter()
                .collect(),
        };
        return Err(Error::RolledBack(Box::new(RolledBack { cause, rollback })));
    }
    changes.extend(made);
    Ok(net)
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
    let mut plan: Plan<Error> = Plan::new();
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
    let moved = plan.move_ip(nl, &br, &link, Metric::Unagent)?;
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
    moved.report(bridge, nic, changes);
    if enslaved {
        changes.push(Change::released(Object::link(nic), bridge));
    }
    Ok(())
}
