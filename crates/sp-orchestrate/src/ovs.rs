//! The external side of the packstack notes, when `l3_agent.ini` says
//! `external_network_bridge = br-ex`: the Open vSwitch bridge holds the uplink NIC with
//! the host's address (`ovs-attach br-ex eth0`), and each router's gateway port `qg-…`
//! is an OVS internal port on it, moved into the router's namespace — as the L3 agent's
//! `OVSInterfaceDriver` plugs it (`external_ids` `iface-id`, `attached-mac`,
//! `iface-status`).
//!
//! A bridge this module creates is recorded (`<state>/ovs/<bridge>.ours`, written before
//! the bridge is made, so a run killed in between still knows) and deleted again by
//! [`take_down`] once nothing but its own port is left on it; a bridge that was there
//! before (a packstack host's br-ex) stays.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sp_config::desired::{NetPlan, NodePlan, PortPlan};
use sp_kernel::netlink::Netlink;
use sp_kernel::steps::{self, Faults};
use sp_kernel::{netns, Change, Detail, Object};
use sp_ovs::attach::{self, AttachOptions};
use sp_ovs::{BridgeSpec, Endpoint, Ovs, PortSpec};

use crate::{Dirs, Error, Result};

/// How long one OVSDB request, or ovs-vswitchd's catching up with it, may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a default gateway has to answer through the bridge after the move.
const GATEWAY_TIMEOUT: Duration = Duration::from_secs(5);

/// The networks of `plan` on Open vSwitch.
fn ovs_networks(plan: &NodePlan) -> impl Iterator<Item = &NetPlan> {
    plan.networks.iter().filter(|n| n.ovs)
}

/// The ports of `plan` that are OVS internal ports, with their bridge.
pub(crate) fn ovs_ports(plan: &NodePlan) -> impl Iterator<Item = (&PortPlan, &str)> {
    plan.ports.iter().filter_map(|p| {
        let n = ovs_networks(plan).find(|n| n.network_id == p.network_id)?;
        Some((p, n.bridge.as_str()))
    })
}

/// A connection to ovsdb-server when `plan` has anything on Open vSwitch.
pub(crate) async fn connect(plan: &NodePlan, dirs: &Dirs) -> Result<Option<Ovs>> {
    let Some(n) = ovs_networks(plan).next() else {
        return Ok(None);
    };
    Ovs::connect(&dirs.ovsdb, TIMEOUT, true)
        .await
        .map(Some)
        .map_err(|e| unreachable_db(&dirs.ovsdb, &n.bridge, e))
}

fn unreachable_db(db: &Endpoint, bridge: &str, e: sp_ovs::Error) -> Error {
    Error::Preflight(format!(
        "external_network_bridge = {bridge} (l3_agent.ini) needs Open vSwitch, but ovsdb-server at {db} does not answer: {e} (start openvswitch-switch, or give its socket with --ovsdb); nothing was changed"
    ))
}

/// The record that this program made `bridge`.
fn marker(state: &Path, bridge: &str) -> PathBuf {
    state.join("ovs").join(format!("{bridge}.ours"))
}

/// The datapath of a bridge we create: the kernel's when it has the openvswitch
/// module, otherwise ovs-vswitchd's userspace one.
fn datapath_type() -> &'static str {
    if Path::new("/sys/module/openvswitch").exists() {
        ""
    } else {
        "netdev"
    }
}

/// How the uplink is attached and detached: the gateway checked, a NIC on another
/// bridge refused; `datapath_type` for a bridge the attach creates.
fn attach_options(datapath_type: String) -> AttachOptions {
    AttachOptions {
        datapath_type,
        gateway_timeout: Some(GATEWAY_TIMEOUT),
        move_from_other_bridge: false,
    }
}

/// Each OVS network's bridge with its uplink NIC, the NIC's addresses and routes moved
/// onto the bridge (checked by pinging the default gateway through it; undone if it
/// does not answer).
pub(crate) async fn ensure_bridges(
    ovs: &Ovs,
    nl: &Netlink,
    plan: &NodePlan,
    state: &Path,
    changes: &mut Vec<Change>,
) -> Result<()> {
    for n in ovs_networks(plan) {
        let datapath_type = datapath_type().to_owned();
        if !ovs.list_br().await?.contains(&n.bridge.to_string()) {
            let m = marker(state, &n.bridge);
            if let Some(dir) = m.parent() {
                sp_kernel::files::ensure_dir(dir, 0o700)?;
            }
            sp_kernel::files::write_file(&m, b"", 0o600)?;
        }
        let spec = BridgeSpec {
            datapath_type: datapath_type.clone(),
            may_exist: true,
            ..BridgeSpec::default()
        };
        let Some(nic) = &n.uplink else {
            if ovs.add_br(&n.bridge, &spec).await? == sp_ovs::Change::Created {
                changes.push(Change::new(ovs_bridge(&n.bridge), "created"));
            }
            continue;
        };
        let opts = attach_options(datapath_type);
        match attach::attach(ovs, nl, &n.bridge, nic, &opts, &mut Faults::none()).await {
            Ok(done) => changes.extend(done),
            // A NIC without an address (a dedicated external NIC): only the port.
            Err(sp_ovs::Error::NoAddress { .. }) => {
                if ovs.add_br(&n.bridge, &spec).await? == sp_ovs::Change::Created {
                    changes.push(Change::new(ovs_bridge(&n.bridge), "created"));
                }
                let port = PortSpec {
                    may_exist: true,
                    ..PortSpec::new(nic, "")
                };
                ovs.add_port(&n.bridge, &port).await?;
                changes.push(Change::saying(
                    Object::Uplink {
                        nic: nic.to_string(),
                        bridge: n.bridge.to_string(),
                    },
                    "added",
                    Detail {
                        to: Some(n.bridge.to_string()),
                        ..Detail::default()
                    },
                    format!("added to ovs bridge {}", n.bridge),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Whether device `name` is in named namespace `ns` (false when there is no `ns`).
async fn in_namespace(ns: &str, name: &str) -> Result<bool> {
    let path = netns::named_path(ns)?;
    if !path.exists() {
        return Ok(false);
    }
    let Ok(fd) = netns::open(&path) else {
        // A stale entry (a killed run): port::plug makes the namespace afresh.
        return Ok(false);
    };
    Ok(Netlink::open_in(fd)?.link_by_name(name)?.is_some())
}

/// Each gateway port as an OVS internal port on its bridge, its device on the host or
/// already in its namespace; `port::plug` moves it in and sets it. A port whose device
/// is gone (its namespace deleted under it) is made again.
pub(crate) async fn ensure_ports(
    ovs: &Ovs,
    nl: &Netlink,
    plan: &NodePlan,
    changes: &mut Vec<Change>,
) -> Result<()> {
    // Each bridge's ports read once (a read of the whole database each).
    let mut ports_of: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for n in ovs_networks(plan) {
        ports_of.insert(&n.bridge, ovs.list_ports(&n.bridge).await?);
    }
    for (p, bridge) in ovs_ports(plan) {
        let dev = p.kind.device(&p.port_id);
        let spec = PortSpec {
            may_exist: true,
            ..PortSpec::new(&dev, "internal").neutron(&p.port_id, &p.mac.to_string())
        };
        let on_bridge = ports_of[bridge].contains(&dev);
        if on_bridge
            && nl.link_by_name(&dev)?.is_none()
            && !in_namespace(&p.namespace, &dev).await?
        {
            ovs.del_port(Some(bridge), &dev, true).await?;
            changes.push(Change::saying(
                ovs_port(&dev, bridge, None),
                "deleted",
                Default::default(),
                format!("deleted from {bridge} (its device was gone)"),
            ));
        } else if on_bridge {
            continue;
        }
        ovs.add_port(bridge, &spec).await?;
        changes.push(Change::saying(
            ovs_port(&dev, bridge, Some(&p.port_id)),
            "created",
            Default::default(),
            format!("created on {bridge} (internal, iface-id {})", p.port_id),
        ));
    }
    Ok(())
}

/// An Open vSwitch bridge, as a change names it.
fn ovs_bridge(name: impl std::fmt::Display) -> Object {
    Object::OvsBridge {
        name: name.to_string(),
    }
}

/// An internal port `name` on `bridge` (for Neutron port `port_id`), as a change names it.
fn ovs_port(
    name: &str,
    bridge: impl std::fmt::Display,
    port_id: Option<&dyn std::fmt::Display>,
) -> Object {
    Object::OvsPort {
        name: name.to_owned(),
        bridge: bridge.to_string(),
        port_id: port_id.map(ToString::to_string),
    }
}

/// Before the namespaces go: the gateway ports off their bridges (their devices go
/// with them).
pub(crate) async fn remove_ports(
    ovs: &Ovs,
    plan: &NodePlan,
    changes: &mut Vec<Change>,
) -> Result<()> {
    for (p, bridge) in ovs_ports(plan) {
        let dev = p.kind.device(&p.port_id);
        if ovs.del_port(None, &dev, true).await? == sp_ovs::Change::Deleted {
            changes.push(Change::saying(
                ovs_port(&dev, bridge, None),
                "deleted",
                Default::default(),
                format!("deleted from {bridge}"),
            ));
        }
    }
    Ok(())
}

/// The uplinks back on their NICs with their addresses and routes; a bridge we made
/// deleted once only its own port is left on it.
pub(crate) async fn take_down(
    ovs: &Ovs,
    nl: &Netlink,
    plan: &NodePlan,
    state: &Path,
    changes: &mut Vec<Change>,
) -> Result<()> {
    for n in ovs_networks(plan) {
        let exists = ovs.list_br().await?.contains(&n.bridge.to_string());
        if let (Some(nic), true) = (&n.uplink, exists) {
            let opts = attach_options(String::new());
            changes
                .extend(attach::detach(ovs, nl, &n.bridge, nic, &opts, &mut Faults::none()).await?);
        }
        let m = marker(state, &n.bridge);
        if m.exists() {
            if exists && ovs.list_ports(&n.bridge).await?.is_empty() {
                ovs.del_br(&n.bridge, true).await?;
                changes.push(Change::new(ovs_bridge(&n.bridge), "deleted"));
            }
            std::fs::remove_file(&m).map_err(|e| Error::State(m.clone(), e))?;
        }
    }
    Ok(())
}

/// Which objects on Open vSwitch are there: each bridge, its uplink as a port, each
/// gateway port on its bridge with its device in the namespace.
pub(crate) async fn survey_items(
    nl: &Netlink,
    plan: &NodePlan,
    dirs: &Dirs,
) -> Result<Vec<(Object, String, bool)>> {
    let mut items = Vec::new();
    let mut item =
        |object: Object, said: String, present: bool| items.push((object, said, present));
    let Some(first) = ovs_networks(plan).next() else {
        return Ok(items);
    };
    let ovs = match Ovs::connect(&dirs.ovsdb, TIMEOUT, false).await {
        Ok(o) => o,
        Err(e) => {
            item(
                ovs_bridge(&first.bridge),
                format!(
                    "ovs bridge {} (ovsdb-server at {}: {e})",
                    first.bridge, dirs.ovsdb
                ),
                false,
            );
            return Ok(items);
        }
    };
    let bridges = ovs.list_br().await?;
    for n in ovs_networks(plan) {
        let present = bridges.contains(&n.bridge.to_string());
        item(
            ovs_bridge(&n.bridge),
            format!("ovs bridge {}", n.bridge),
            present,
        );
        let ports = match present {
            true => ovs.list_ports(&n.bridge).await?,
            false => vec![],
        };
        if let Some(nic) = &n.uplink {
            // A port, and its addresses moved off it.
            item(
                Object::Uplink {
                    nic: nic.to_string(),
                    bridge: n.bridge.to_string(),
                },
                format!("uplink {nic} on ovs bridge {}", n.bridge),
                ports.contains(&nic.to_string()) && !has_addresses(nl, nic).await?,
            );
        }
        for (p, _) in ovs_ports(plan).filter(|(_, b)| *b == n.bridge.as_str()) {
            let dev = p.kind.device(&p.port_id);
            item(
                ovs_port(&dev, &n.bridge, Some(&p.port_id)),
                format!("ovs port {dev} on {} in {}", n.bridge, p.namespace),
                ports.contains(&dev) && in_namespace(&p.namespace, &dev).await?,
            );
        }
    }
    Ok(items)
}

async fn has_addresses(nl: &Netlink, nic: &str) -> Result<bool> {
    Ok(match nl.link_by_name(nic)? {
        Some(l) => !steps::global_addresses(nl, l.header.index)?.is_empty(),
        None => false,
    })
}
